"""Static images turned into event streams the way N-MNIST was recorded: the digit moves through
three saccades in front of a simulated event camera, whose pixels fire ON/OFF events when their
log intensity changes by a contrast threshold. The streams are written as N-MNIST ``.bin`` files
and read back through the same tonic path as the real data set."""
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .datasets import IDX_FILES, digits, mnist, scratch_folder
from .event_sets import NMNIST, simulated
from .events import CACHE_DIR, event_dataset, write_bin

SENSOR = NMNIST.sensor  # the simulated camera: N-MNIST's 34x34 ATIS crop (width, height, polarities)
SPLITS = {"train": "Train", "test": "Test"}  # the split folders of N-MNIST's layout


SIM_VERSION = 2  # 2: the image moves the way N-MNIST's recordings show it (1 had it reversed)
# How the digit moves on the sensor. In N-MNIST the camera is moved through a triangle of three
# saccades in front of a still screen, so the image moves the opposite way; the pan and tilt
# motors do not start and stop together, which bends the path. Each move is one axis (0: x to
# the right, 1: y down) displaced by some pixels between two times with a raised-cosine speed
# profile (still at both ends). Matched to real recordings by ``benchmarks/event_stats.py``:
# where ON events lie relative to OFF events in each 20 ms (the direction edges move) and the
# share of events per 10 ms (the speed), as measured on 300 real N-MNIST samples.
MOVES = (  # (axis, start ms, end ms, pixels)
    (1, 8.0, 80.0, -7.0), (0, 0.0, 22.0, 0.4), (0, 22.0, 95.0, -2.4),  # up, then bending left
    (0, 105.0, 215.0, -5.0), (1, 110.0, 190.0, 7.0),  # down and left
    (0, 218.0, 296.0, 7.0),  # right, back to the start
)
DURATION_MS = 306.0  # a recording's length
BASE = (6.0, 7.5)  # where the 28x28 digit sits on the 34x34 sensor at the start, centring the path
DT_MS = 2.0  # simulation step; events are spread uniformly within it
BACKGROUND = 0.1  # screen luminance behind the digit (a log sensor needs light to see)
THRESHOLD = 0.5  # contrast threshold in log intensity (about 4,000 events a digit, as in N-MNIST); mismatch 10%
JITTER_US = 300.0  # timing noise of each event
# Late events: a share of them comes this much later on average (exponentially distributed). The
# real recordings keep firing between saccades, where the image is still, at pixels the edges
# have just crossed (their number of distinct pixels matches without it): a slow pixel response.
LATE_SHARE, LATE_MS = 0.2, 15.0


def saccade_offsets(t_ms):
    """Offset (dx, dy) of the digit at times ``t_ms`` [F] -> [F, 2]: the sum of :data:`MOVES`."""
    offsets = np.zeros((len(t_ms), 2))
    for axis, start, end, pixels in MOVES:
        u = np.clip((t_ms - start) / (end - start), 0.0, 1.0)
        offsets[:, axis] += pixels * (1 - np.cos(np.pi * u)) / 2
    return offsets


def render(images, offsets):
    """What the sensor sees: images [B, 28, 28] in [0, 1] shifted by ``offsets`` [F, 2] (sub-pixel,
    bilinear) onto the 34x34 sensor -> [B, F, 34, 34]."""
    b, h, w = images.shape
    frames = len(offsets)
    ys, xs = torch.meshgrid(torch.arange(SENSOR[1], dtype=torch.float32),
                            torch.arange(SENSOR[0], dtype=torch.float32), indexing="ij")
    off = torch.as_tensor(offsets, dtype=torch.float32)
    src_x = xs[None] - BASE[0] - off[:, 0, None, None]  # [F, 34, 34] image column seen by each pixel
    src_y = ys[None] - BASE[1] - off[:, 1, None, None]
    grid = torch.stack([2 * src_x / (w - 1) - 1, 2 * src_y / (h - 1) - 1], dim=-1)  # [F, 34, 34, 2]
    src = torch.as_tensor(images, dtype=torch.float32)[:, None].expand(b, frames, h, w)
    out = F.grid_sample(src.reshape(b * frames, 1, h, w), grid.repeat(b, 1, 1, 1),
                        mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.view(b, frames, SENSOR[1], SENSOR[0]).numpy()


def simulate(images, rng):
    """Event streams for images [B, 28, 28] in [0, 1]: a list of B tuples (x, y, p, t) of arrays,
    t in microseconds, sorted by time."""
    b = len(images)
    t_ms = np.arange(0.0, DURATION_MS + DT_MS, DT_MS)
    log_i = np.log(BACKGROUND + (1 - BACKGROUND) * render(images, saccade_offsets(t_ms)), dtype=np.float32)
    contrast = THRESHOLD * np.clip(1 + 0.1 * rng.standard_normal((b, SENSOR[1], SENSOR[0])), 0.5, None)
    reference = log_i[:, 0].copy()
    parts = []
    for f in range(1, len(t_ms)):
        crossings = np.trunc((log_i[:, f] - reference) / contrast)
        where = np.nonzero(crossings)
        if where[0].size:
            n = crossings[where]
            reference[where] += n * contrast[where]
            parts.append((np.full(n.size, f), *where, n.astype(np.int64)))
    if not parts:
        return [(np.zeros(0, int),) * 4 for _ in range(b)]
    f, s, y, x, n = (np.concatenate(a) for a in zip(*parts))
    reps = np.abs(n)  # a pixel crossing k thresholds in one step fires k events
    f, s, y, x, p = (np.repeat(a, reps) for a in (f, s, y, x, (n > 0).astype(np.int64)))
    t = ((f - 1) * DT_MS + rng.random(f.size) * DT_MS) * 1000 + rng.normal(0, JITTER_US, f.size)
    t += (rng.random(f.size) < LATE_SHARE) * rng.exponential(LATE_MS * 1000, f.size)
    keep = t < DURATION_MS * 1000  # the recording stops
    s, y, x, p, t = s[keep], y[keep], x[keep], p[keep], t[keep]
    t = np.clip(np.round(t), 0, None).astype(np.int64)
    order = np.lexsort((t, s))
    s, x, y, p, t = s[order], x[order], y[order], p[order], t[order]
    bounds = np.searchsorted(s, np.arange(b + 1))
    return [(x[i:j], y[i:j], p[i:j], t[i:j]) for i, j in zip(bounds[:-1], bounds[1:])]


def to_28(images):
    """Images [N, 1, H, W] in [0, 1] as [N, 28, 28], the size of an MNIST digit on N-MNIST's screen."""
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.shape[-2:] != (28, 28):
        images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    return images[:, 0].clamp(0, 1).numpy()


def generate(folder, splits, source_key, seed=0, batch=64):
    """Write ``splits`` ({"train": (images [N, 1, H, W], labels [N]), "test": ...}) as N-MNIST
    ``.bin`` files under ``folder`` (``Train/<digit>/<index>.bin``, ``Test/...``), unless a finished
    copy made from the same source and seed is there. The folder appears whole or not at all."""
    folder = Path(folder)
    key = {"version": SIM_VERSION, "seed": seed, "source": source_key,
           "sizes": {s: len(labels) for s, (_, labels) in splits.items()}}
    marker = folder / "complete.json"
    if marker.is_file() and json.loads(marker.read_text()) == key:
        return folder
    tmp = scratch_folder(folder.parent, f".{folder.name}.")
    try:
        rng = np.random.default_rng(seed)
        for split, (images, labels) in splits.items():
            images, labels = to_28(images), np.asarray(labels)
            for start in tqdm(range(0, len(labels), batch), desc=f"{folder.name} {split}: simulating events",
                              unit="batch", dynamic_ncols=True, mininterval=1.0):
                streams = simulate(images[start:start + batch], rng)
                for i, (x, y, p, t) in enumerate(streams, start):
                    write_bin(tmp / SPLITS[split] / str(int(labels[i])) / f"{i:05d}.bin", x, y, p, t)
        (tmp / "complete.json").write_text(json.dumps(key))
        if folder.exists():
            shutil.rmtree(folder)  # an older or unfinished copy
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def source_key(*parts):
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]


DIGITS_EVENTS = simulated("digits-events", "DigitsEvents", "the simulated event version of the bundled digits")
NMNIST_SIM = simulated("nmnist-sim", "NMNISTSim", "the simulated event version of MNIST")


def digits_events(data_dir=None, *, cache_dir=CACHE_DIR, **options):
    """The bundled digits (same split) as simulated N-MNIST-style recordings; made once under
    ``<cache_dir>/DigitsEvents/``. Needs no download."""
    static = digits()
    parts = {"train": static.train.tensors, "test": static.test.tensors}
    import sklearn
    generate(Path(cache_dir) / "DigitsEvents", parts, source_key("digits", sklearn.__version__))
    return event_dataset(DIGITS_EVENTS, cache_dir, cache_dir=cache_dir, **options)


def nmnist_sim(data_dir, *, cache_dir=CACHE_DIR, **options):
    """MNIST from ``<data_dir>/MNIST/raw`` as simulated N-MNIST recordings; made once (about
    6 ms a digit) under ``<cache_dir>/NMNISTSim/``."""
    static = mnist(data_dir)
    parts = {"train": static.train.tensors, "test": static.test.tensors}
    raw = Path(data_dir) / "MNIST" / "raw"
    key = source_key("mnist", *(f"{f}:{(raw / f).stat().st_size}:{(raw / f).stat().st_mtime_ns}"
                                for f in IDX_FILES))
    generate(Path(cache_dir) / "NMNISTSim", parts, key)
    return event_dataset(NMNIST_SIM, cache_dir, cache_dir=cache_dir, **options)
