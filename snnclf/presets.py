"""Recommended spiking recipes per data set: ``snnclf train --preset NAME``.

Each preset is the set of ``snnclf train`` flags it stands for; flags given on the command line
override them, and ``config.json`` records the values the run used together with the preset's
name. The recipes follow published small convolutional SNNs (direct input, batch norm, learnable
membrane decay as in Fang et al.'s PLIF, few time steps, a cosine schedule) plus small random
shifts; the README gives what each reached here and how long it took."""
from .data.event_sets import NMNIST, REAL as EVENT_SETS
from .registry import Registry

# Each preset declares how it was chosen: the study (in benchmarks/) that scored its choices on
# validation only, with what it reached, or why it was not measured.
PRESETS = Registry("preset", declares=("chosen",))
NOT_MEASURED = "adapted from the papers' recipe; not measured here (the data set is not on the machine that chose the others)"


def _register(name, summary, chosen, **flags):
    PRESETS.register(name, chosen=chosen)({"summary": summary, "flags": flags})


_COMMON = dict(model="csnn", encoding="direct", batch_norm=True, learn_beta=True,
               optimizer="adamw", scheduler="cosine")
_register("digits", "csnn with batch norm and learnable beta, T=4, AdamW 2e-3 cosine, 1-pixel "
          "shifts, 60 epochs (about 15 s on 2 CPU cores)",
          "kept on validation by benchmarks/presets.py against the tune study's best point (T=2): validation 99.77% "
          "(99.31-100%), test 99.26% (98.89-99.44%) on seeds 0, 1, 2, 0.637 uJ a test sample",
          dataset="digits", time_steps=4, lr=2e-3, weight_decay=0.01, shift=1, epochs=60, batch_size=64,
          **_COMMON)
_register("mnist", "csnn with batch norm and learnable beta, T=4, AdamW 2e-3 cosine, 2-pixel shifts, "
          "cross-entropy on the output membrane (--loss ce-mem), 10 epochs, batch 128 (about 14 minutes on 2 CPU cores)",
          "chosen on validation by benchmarks/presets.py among 5 candidates on seed 0 (losses, rotations, 20 epochs): "
          "validation 99.40% (99.37-99.42%), test 99.41% (99.35-99.46%) on seeds 0, 1, 2, 4.53 uJ a test sample",
          dataset="mnist", time_steps=4, lr=2e-3, weight_decay=0.01, shift=2, loss="ce-mem", epochs=10,
          batch_size=128, **_COMMON)
_register("fashion-mnist", "csnn with batch norm and learnable beta, T=4, AdamW 2e-3 cosine, 1-pixel shifts, "
          "40 epochs, batch 128",
          NOT_MEASURED,
          dataset="fashion-mnist", time_steps=4, lr=2e-3, weight_decay=0.01, shift=1, epochs=40,
          batch_size=128, **_COMMON)
# The event data sets' recipes are declared by their entries (snnclf.data.event_sets): a cnn with
# batch norm and learnable beta on T frames, as published small convolutional SNNs are.
_EVENTS = {**_COMMON, "model": "cnn", "encoding": None, "lr": 2e-3, "weight_decay": 0.01}
_EVENTS_CHOSEN = {"poker-dvs": "steps and warm-up chosen on validation by benchmarks/poker_dvs.py: validation 100% of 12 "
                               "on seeds 0, 1, 2; the originals' seeded test split 98.48% (95.45-100%) of 22"}
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
                  _EVENTS_CHOSEN.get(_entry.name, NOT_MEASURED), dataset=_entry.name, **_r, **_EVENTS)
_register("nmnist-sim", "the nmnist recipe trained on simulated events, to classify real N-MNIST "
          "recordings: plus each saccade moved by up to 1 pixel on its own, event dropout 0.2 and 200 "
          "background events a sample",
          "the augmentations follow the simulator's measured differences from real recordings, not tuned; on "
          "simulated recordings (--subset 10000 --epochs 5, one seed) validation 96.85%, test 97.00%",
          dataset="nmnist-sim", **NMNIST.recipe, saccade_shift=1, event_dropout=0.2, noise_events=200.0,
          **_EVENTS)


# Chips: a network that the chip holds, trained in its integers (--chip), on events (what the chip takes).
_register("speck-digits-events", "for SynSense Speck (--chip speck): 8C3p1-LIF-SP2-16C3p1-LIF-SP2-FC64-FC10, "
          "integrate-and-fire neurons on 8-bit weights, T=8 frames of simulated digit events, AdamW 2e-3 cosine, "
          "30 epochs (about 85 s on 2 CPU cores); export it with snnclf export --target speck",
          "the network is sized to Speck's cores, not tuned: validation 98.61, 98.61, 96.53% and test 97.13% "
          "(96.94-97.22%) on seeds 0, 1, 2",
          dataset="digits-events", chip="speck", arch="8C3p1-LIF-SP2-16C3p1-LIF-SP2-FC64-FC10", model="arch",
          time_steps=8, optimizer="adamw", lr=2e-3, weight_decay=0.01, scheduler="cosine", epochs=30, batch_size=64)

_register("xylo-poker-dvs", "for SynSense Xylo Audio 2 (--chip xylo): POKER-DVS as 32 frames of 4x4 pixels, "
          "the two polarities summed (16 inputs), PSUM-FC64-FC4 in Xylo's integers, AdamW 1e-2 cosine, 60 epochs, "
          "a quarter of the training recordings for validation (about 15 s on 2 CPU cores); export it with "
          "snnclf export --target xylo",
          "chosen on validation by benchmarks/xylo_recipe.py (a grid over seeds 0, 1, 2): validation 92.6%; "
          "held-out test 77.8% (75.00-83.33%) of 12",
          dataset="poker-dvs", chip="xylo", arch="PSUM-FC64-FC4", model="arch", downsample=0.11, time_steps=32,
          optimizer="adamw", lr=1e-2, weight_decay=0.01, scheduler="cosine", epochs=60, batch_size=16,
          val_fraction=0.25)


def preset_flags(name):
    """The flags preset ``name`` stands for."""
    return dict(PRESETS.lookup(name, "--preset")["flags"])


def describe():
    """One line per preset and how it was chosen, for ``snnclf train --help``."""
    return "; ".join(f"{name}: {PRESETS[name]['summary']} [{PRESETS.info(name)['chosen']}]" for name in PRESETS.names())
