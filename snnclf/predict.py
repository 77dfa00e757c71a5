"""``snnclf predict``: classify the user's own files with a trained run.

Images (PNG, JPEG, anything Pillow opens) are turned into the run's input the way its data were:
grey or colour as its channels are, resized to its size, scaled to [0, 1], and inverted when the
digit is dark on a light background (the data sets' digits are light on dark); each change is
reported. ``.npy`` arrays are taken as they are, in the run's shape ([C, H, W], or [H, W] for one
channel; for event runs [T, P, H, W] frames). Event runs read their data set's recording files in
any of its layouts (N-MNIST ``.bin``, CIFAR10-DVS ``.aedat4`` or the original ``.aedat``, DVS
Gesture ``.npy`` events [N, 4] or IBM's ``.aedat``, one prediction for each gesture its labels file
cuts from it, POKER-DVS ``.npy`` or the original ``.aedat``, ...) as the data set reads them, and
make their frames as the data set does. The run's encoder then makes the input over time, as
in ``snnclf eval`` (random encoders from ``--seed``)."""
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .builders import make_encoder, open_trained
from .config import EVAL_SEED, SAVE_DIR
from .data import event_set
from .data.events import file_clips, file_frames, layout_for_file
from .errors import UsageError
from .losses import predict as readout, scores as readout_scores
from .runs import new_file, write_csv
from .utils import resolve_device, seeded


@dataclass
class Prediction:
    file: str
    label: str = None
    confidence: float = None  # share of the output spikes in that class (softmax of the mean membrane without spikes)
    spikes: dict = field(default_factory=dict)  # output spikes per class
    top: list = field(default_factory=list)  # [(class, confidence)] best first
    notes: list = field(default_factory=list)  # what was done to the input
    error: str = None


def _image(path, shape):
    """An image file as a [C, H, W] tensor in [0, 1] of ``shape``, and what was changed."""
    channels, height, width = shape
    notes = []
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)  # as a viewer shows a photo taken sideways
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit or float grey: scale by its own range
        values = np.asarray(image, dtype=np.float32)
        if not np.isfinite(values).all():
            raise UsageError("the image holds NaN or infinite values")
        top = float(values.max()) if values.size and values.max() > 0 else 1.0
        notes.append(f"scaled from {image.mode} values 0..{top:g}")
        image = Image.fromarray((np.clip(values / top, 0, 1) * 255).round().astype(np.uint8), "L")
    source = image.mode  # the file's own mode (CMYK, P, LA, ...), named in the note below
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
        if image.mode == "RGBA":  # transparent pixels on white, as a viewer shows them
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, image).convert("RGB")
    mode = "L" if channels == 1 else "RGB"
    if source != mode:
        notes.append(f"converted from {source} to {mode}")
    if image.mode != mode:
        image = image.convert(mode)
    if image.size != (width, height):
        notes.append(f"resized from {image.size[0]}x{image.size[1]} to {width}x{height}")
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    x = torch.from_numpy(pixels.reshape(height, width, -1)).permute(2, 0, 1).contiguous()
    border = torch.cat([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], dim=1)
    if border.mean() > 0.5:  # a light background: the data sets' digits are light on dark
        notes.append("inverted (dark on light, the data's digits are light on dark)")
        x = 1.0 - x
    return x, notes


def _array(path, shape, events=False):
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise UsageError(f"not a .npy array numpy can read ({type(err).__name__})") from None
    if not isinstance(array, np.ndarray):
        raise UsageError("an .npz archive, not one .npy array: save the array with numpy.save")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise UsageError(f"an array of complex numbers ({array.dtype}): give real values")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise UsageError(f"an array of {array.dtype}, not of numbers")
    notes = []
    if array.dtype == np.uint8 and not events:
        notes.append("scaled from 0..255 to [0, 1]")
        array = array / 255.0
    x = torch.from_numpy(np.asarray(array, dtype=np.float32))
    if not torch.isfinite(x).all():
        raise UsageError("the array holds NaN or infinite values")
    low, high = (0.0, math.inf) if events else (0.0, 1.0)
    if x.numel() and (x.min() < low or x.max() > high):
        raise UsageError(f"values from {x.min():g} to {x.max():g}, but the run takes "
                         + ("event counts of 0 or more" if events else "images in [0, 1]"))
    if x.dim() == len(shape) - 1 and shape[0] == 1:
        x = x.unsqueeze(0)
    if tuple(x.shape) != tuple(shape):
        raise UsageError(f"an array of shape {array.shape}, but the run takes {tuple(shape)}")
    return x, notes


def _frames_file(path):
    """Whether a ``.npy`` file holds frames [T, P, H, W] rather than a recording's events
    ([N, 4] columns, as DVS Gesture and POKER-DVS keep them)."""
    if path.suffix.lower() != ".npy":
        return False
    try:
        return np.load(path, mmap_mode="r").ndim != 2
    except (ValueError, OSError):
        return True  # not an array: said so where arrays are read


def load_input(path, cfg, in_shape):
    """One input of the run's shape from ``path``, and the notes on what was done to it."""
    path = Path(path)
    if path.is_dir():
        raise UsageError("it is a folder, not a file: name the files in it")
    if not path.is_file():
        raise UsageError("no such file")
    entry = event_set(cfg.dataset)
    suffix = path.suffix.lower()
    if entry is not None and layout_for_file(entry, path) is not None and not _frames_file(path):
        frames = file_frames(entry, path, cfg.time_steps, cfg.denoise_us, cfg.downsample, cfg.first_saccade_only,
                             cfg.frame_ms)
        return torch.from_numpy(frames).float(), []
    if suffix == ".npy":
        return _array(path, (cfg.time_steps, *in_shape) if entry else in_shape, entry is not None)
    if entry is not None:
        suffixes = " or ".join(dict.fromkeys(layout.suffix for layout in entry.layouts))
        raise UsageError(f"run {cfg.run} takes events: give {entry.title} {suffixes} recordings or .npy "
                         f"frames [{cfg.time_steps}, {', '.join(map(str, in_shape))}]")
    try:
        with warnings.catch_warnings():  # Pillow's warning of a decompression bomb: refused as its error is
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _image(path, in_shape)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UsageError(f"more pixels than Pillow opens safely ({Image.MAX_IMAGE_PIXELS:,}, its guard against "
                         "decompression bombs): shrink the image") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise UsageError(f"not an image Pillow can read ({type(err).__name__}), nor a .npy array") from None


def load_inputs(path, cfg, in_shape):
    """[(name, input, notes)] of one file: the file, or each labelled sample of a recording that
    holds several (DVS Gesture's IBM release: named ``<file>@<start>-<end>``, noted with its label)."""
    entry = event_set(cfg.dataset)
    clips = file_clips(entry, path) if entry is not None and Path(path).is_file() else None
    if clips is None:
        x, notes = load_input(path, cfg, in_shape)
        return [(str(path), x, notes)]
    return [(f"{path}@{clip.window[0]}-{clip.window[1]}", torch.from_numpy(file_frames(
                entry, path, cfg.time_steps, cfg.denoise_us, cfg.downsample, cfg.first_saccade_only, cfg.frame_ms,
                clip.window)).float(), [f"labelled {clip.label}"]) for clip in clips]


def run_predict(files, run=None, checkpoint=None, save_dir=SAVE_DIR, top=3, device="auto", seed=EVAL_SEED,
                csv=None):
    """A :class:`Prediction` for each of ``files`` with the run's ``best.pt`` (or ``checkpoint``):
    a file that cannot be read gets its error, and the others are still classified. ``csv``: a
    new file to write the table of predictions to (an existing file is never replaced)."""
    if csv is not None:
        new_file(csv, "--csv")
    device = resolve_device(device)
    trained = open_trained(run, checkpoint, save_dir, device=device)
    cfg, model, names, in_shape = trained.cfg, trained.model, trained.class_names, trained.in_shape
    encode = make_encoder(cfg)
    results = []
    for file in files:
        try:
            inputs = load_inputs(file, cfg, in_shape)
        except UsageError as err:
            results.append(Prediction(str(file), error=str(err)))
            continue
        for name, x, notes in inputs:
            with seeded(seed, device), torch.no_grad():
                spk, mem = model(encode(x.unsqueeze(0).to(device)))  # a batch of one
            counts, scores = spk.sum(0)[0], readout_scores(spk, mem)[0]
            label = int(readout(spk, mem)[0])
            order = [label] + [i for i in scores.argsort(descending=True).tolist() if i != label]
            results.append(Prediction(name, names[label], float(scores[label]),
                                      {n: int(c) for n, c in zip(names, counts.tolist())},
                                      [(names[i], float(scores[i])) for i in order[:top]], notes))
    if csv is not None:
        write_predictions(csv, results, names)
    return results, {"run": cfg.run, "checkpoint": str(trained.path), "classes": names}


def format_prediction(p):
    """One line per file, as ``snnclf predict`` prints it."""
    if p.error:
        return f"{p.file}: {p.error}"
    top = ", ".join(f"{name} {100 * c:.1f}%" for name, c in p.top[1:])
    spikes = " ".join(f"{n}:{c}" for n, c in p.spikes.items())
    line = f"{p.file}: {p.label} ({100 * p.confidence:.1f}%{', then ' + top if top else ''})"
    line += f"; output spikes {spikes}" if any(p.spikes.values()) else "; no output spikes (read by membrane)"
    return line + (f"; {'; '.join(p.notes)}" if p.notes else "")


def as_dict(p):
    return {"file": p.file, "class": p.label, "confidence": p.confidence, "spikes": p.spikes,
            "top": [{"class": n, "confidence": c} for n, c in p.top], "notes": p.notes, "error": p.error}



def write_predictions(path, predictions, names):
    """The predictions as a CSV table: file, class, confidence, output spikes per class, notes, error."""
    new_file(path, "--csv")
    write_csv(path, ["file", "class", "confidence", *[f"spikes_{n}" for n in names], "notes", "error"],
              [[p.file, p.label or "", "" if p.confidence is None else f"{p.confidence:.4f}",
                *[p.spikes.get(n, "") for n in names], "; ".join(p.notes), p.error or ""] for p in predictions])
