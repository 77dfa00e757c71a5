"""Recommended spiking recipes per data set: ``snnclf train --preset NAME``.

Each preset is the set of ``snnclf train`` flags it stands for; flags given on the command line
override them, and ``config.json`` records the values the run used together with the preset's
name. The recipes follow published small convolutional SNNs (direct input, batch norm, learnable
membrane decay as in Fang et al.'s PLIF, few time steps, a cosine schedule) plus small random
shifts; the README gives what each reached here and how long it took."""
from .data.event_sets import NMNIST, REAL as EVENT_SETS
from .registry import Registry

PRESETS = Registry("preset")


def _register(name, summary, **flags):
    PRESETS.register(name)({"summary": summary, "flags": flags})


_COMMON = dict(model="csnn", encoding="direct", batch_norm=True, learn_beta=True,
               optimizer="adamw", scheduler="cosine")
_register("digits", "csnn with batch norm and learnable beta, T=4, AdamW 2e-3 cosine, 1-pixel "
          "shifts, 60 epochs (about 15 s on 2 CPU cores)",
          dataset="digits", time_steps=4, lr=2e-3, weight_decay=0.01, shift=1, epochs=60, batch_size=64,
          **_COMMON)
_register("mnist", "csnn with batch norm and learnable beta, T=4, AdamW 2e-3 cosine, 2-pixel shifts, "
          "40 epochs, batch 128 (23 to 40 minutes on 2 CPU cores)",
          dataset="mnist", time_steps=4, lr=2e-3, weight_decay=0.01, shift=2, epochs=20, batch_size=128,
          **_COMMON)
_register("fashion-mnist", "the mnist recipe on Fashion-MNIST: T=4, 1-pixel shifts, 40 epochs",
          dataset="fashion-mnist", time_steps=4, lr=2e-3, weight_decay=0.01, shift=1, epochs=40,
          batch_size=128, **_COMMON)
# The event data sets' recipes are declared by their entries (snnclf.data.event_sets): a cnn with
# batch norm and learnable beta on T frames, as published small convolutional SNNs are.
_EVENTS = {**_COMMON, "model": "cnn", "encoding": None, "lr": 2e-3, "weight_decay": 0.01}
for _entry in EVENT_SETS:
    if _entry.recipe:
        _r = _entry.recipe
        _width, _height = _entry.frame_size()
        _register(_entry.name, f"cnn with batch norm and learnable beta on {_entry.title}: T={_r['time_steps']} frames "
                  f"of {_width}x{_height}, AdamW 2e-3 cosine, {_r['shift']}-pixel shifts, {_r['epochs']} epochs"
                  + (f" and at least {_r['min_steps']} optimizer steps" if _r.get("min_steps") else "")
                  + (f", the first {_r['warmup']:.0%} of them a linear warm-up" if _r.get("warmup") else "")
                  + (f", {_r['val_fraction']:.0%} of the training recordings for validation"
                     if _r.get("val_fraction") else "")
                  + (f" (published: {_entry.reference.split(',')[0].replace(':', ',')})" if _entry.reference else ""),
                  dataset=_entry.name, **_r, **_EVENTS)
_register("nmnist-sim", "the nmnist recipe trained on simulated events, to classify real N-MNIST "
          "recordings: plus each saccade moved by up to 1 pixel on its own, event dropout 0.2 and 200 "
          "background events a sample",
          dataset="nmnist-sim", **NMNIST.recipe, saccade_shift=1, event_dropout=0.2, noise_events=200.0,
          **_EVENTS)


# Chips: a network that the chip holds, trained in its integers (--chip), on events (what the chip takes).
_register("speck-digits-events", "for SynSense Speck (--chip speck): 8C3p1-LIF-SP2-16C3p1-LIF-SP2-FC64-FC10, "
          "integrate-and-fire neurons on 8-bit weights, T=8 frames of simulated digit events, AdamW 2e-3 cosine, "
          "30 epochs (about 85 s on 2 CPU cores); export it with snnclf export --target speck",
          dataset="digits-events", chip="speck", arch="8C3p1-LIF-SP2-16C3p1-LIF-SP2-FC64-FC10", model="arch",
          time_steps=8, optimizer="adamw", lr=2e-3, weight_decay=0.01, scheduler="cosine", epochs=30, batch_size=64)

_register("xylo-poker-dvs", "for SynSense Xylo Audio 2 (--chip xylo): POKER-DVS as 32 frames of 4x4 pixels, "
          "the two polarities summed (16 inputs), PSUM-FC64-FC4 in Xylo's integers, AdamW 1e-2 cosine, 60 epochs, "
          "a quarter of the training recordings for validation (about 15 s on 2 CPU cores); export it with "
          "snnclf export --target xylo",
          dataset="poker-dvs", chip="xylo", arch="PSUM-FC64-FC4", model="arch", downsample=0.11, time_steps=32,
          optimizer="adamw", lr=1e-2, weight_decay=0.01, scheduler="cosine", epochs=60, batch_size=16,
          val_fraction=0.25)


def preset_flags(name):
    """The flags preset ``name`` stands for."""
    return dict(PRESETS.lookup(name, "--preset")["flags"])


def describe():
    """One line per preset, for ``snnclf train --help``."""
    return "; ".join(f"{name}: {PRESETS[name]['summary']}" for name in PRESETS.names())
