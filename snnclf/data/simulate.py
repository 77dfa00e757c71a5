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

from ..errors import UsageError, write_error
from .datasets import IDX_FILES, digits, fashion_mnist, mnist, release_scratch, scratch_folder
from .event_sets import NMNIST, simulated
from .events import CACHE_DIR, event_dataset, write_bin

SENSOR = NMNIST.sensor  # the simulated camera: N-MNIST's 34x34 ATIS crop (width, height, polarities)
SPLITS = {"train": "Train", "test": "Test"}  # the split folders of N-MNIST's layout


# 2: the image moved the way the ON-minus-OFF offsets of a bright digit point (1 had it reversed).
# 3: the image moves the way the event centroids of each saccade put it (down, then up and right,
#    then left: v2's path reversed, about 0.8 times as large, and placed so the three saccades'
#    centroids fall within 0.2 px of the real ones, not 2.5-6 px off), and the polarity is what
#    N-MNIST's files call it: there, ON (p=1) events trail a moving bright edge. Threshold lowered
#    to keep ~4,100 events a recording over the shorter path; move timing refitted to the rate.
SIM_VERSION = 3
# How the digit moves on the sensor. In N-MNIST the camera is moved through a triangle of three
# saccades in front of a still screen, so the image moves the opposite way; the pan and tilt
# motors do not start and stop together, which bends the path. Each move is one axis (0: x to
# the right, 1: y down) displaced by some pixels between two times with a raised-cosine speed
# profile (still at both ends). Matched to real recordings by ``benchmarks/event_stats.py``
# (1,000 MNIST digits against real N-MNIST): the centroid of each saccade's events (where the
# digit is: the middle of the part of the path it sweeps, weighted by speed), the share of events
# per 10 ms (the speed) and where ON events lie relative to OFF events in each 20 ms.
#
# The geometry: the centroids M1, M2, M3 of the three saccades' events in real recordings,
# (14.8, 18.2), (18.0, 17.9), (17.4, 15.5), are each near the middle of a closed triangle's side,
# so its corners are P0 = M1 + M3 - M2 (14.2, 15.9), P1 = M1 + M2 - M3 (15.4, 20.6) and
# P2 = M2 + M3 - M1 (20.6, 15.2): the digit moves down by ~5 px, then up and right, then left
# back; v2's up / down-left / right path (taken from the ON-OFF offsets) cannot give those
# centroids with any placement. Both fit once N-MNIST's ON events are those behind a bright
# edge: :data:`ON_WHEN_DARKER`. (A dark digit on a bright screen would do too, but its thinner
# edges give 15% fewer active pixels and 12% fewer events than real, and a narrower spread.)
MOVES = (  # (axis, start ms, end ms, pixels)
    (1, 5.0, 80.0, 5.5), (0, 0.0, 25.0, -0.4), (0, 25.0, 86.0, 2.6),  # down, then bending right
    (0, 90.0, 221.0, 3.7), (1, 113.0, 181.0, -5.5),  # right and up
    (0, 218.0, 290.0, -5.9),  # left, back to the start
)
ON_WHEN_DARKER = True  # N-MNIST's polarity: p=1 for a pixel getting darker (see above)
DURATION_MS = 306.0  # a recording's length
# Where the 28x28 digit's corner sits on the 34x34 sensor at the start: its centre of mass (MNIST
# centres it at (14, 14)) starts near P0 above, at (14.3, 15.4); fitted, as the speed weighting
# along the bent path and the digits' shapes move each saccade's centroid a little.
BASE = (0.3, 1.4)
DT_MS = 2.0  # simulation step; events are spread uniformly within it
BACKGROUND = 0.1  # screen luminance behind the digit (a log sensor needs light to see)
THRESHOLD = 0.43  # contrast threshold in log intensity (about 4,100 events a digit, as in N-MNIST); mismatch 10%
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
    on = (n < 0) if ON_WHEN_DARKER else (n > 0)
    f, s, y, x, p = (np.repeat(a, reps) for a in (f, s, y, x, on.astype(np.int64)))
    t = ((f - 1) * DT_MS + rng.random(f.size) * DT_MS) * 1000 + rng.normal(0, JITTER_US, f.size)
    t += (rng.random(f.size) < LATE_SHARE) * rng.exponential(LATE_MS * 1000, f.size)
    t = np.clip(np.round(t), 0, None).astype(np.int64)
    keep = t < DURATION_MS * 1000  # the recording stops (rounded first, so no event lies on its end)
    s, y, x, p, t = s[keep], y[keep], x[keep], p[keep], t[keep]
    order = np.lexsort((t, s))
    s, x, y, p, t = s[order], x[order], y[order], p[order], t[order]
    bounds = np.searchsorted(s, np.arange(b + 1))
    return [(x[i:j], y[i:j], p[i:j], t[i:j]) for i, j in zip(bounds[:-1], bounds[1:])]


def to_28(images):
    """Images [N, 1, H, W] in [0, 1] as [N, 28, 28], the size of an MNIST digit on N-MNIST's screen.
    Images of another size are placed the way MNIST placed its digits: the bounding box of what is
    not black, scaled (aspect kept) to fit 20x20, in the 28x28 field with its centre of mass at
    (14, 14). (Upscaled to fill the field, scikit-learn's 8x8 digits would be cut by the sensor's
    edges during the saccades, and their events would lie 0.7 px further from real N-MNIST's.)"""
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.shape[-2:] == (28, 28):
        return images[:, 0].clamp(0, 1).numpy()
    out = np.zeros((len(images), 28, 28), np.float32)
    for k, image in enumerate(images[:, 0].clamp(0, 1)):
        rows, cols = torch.nonzero(image.sum(1))[:, 0], torch.nonzero(image.sum(0))[:, 0]
        if not len(rows):
            continue  # a black image stays black
        ink = image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        scale = 20 / max(ink.shape)
        size = tuple(max(1, round(n * scale)) for n in ink.shape)
        patch = F.interpolate(ink[None, None], size=size, mode="bilinear", align_corners=False,
                              antialias=scale < 1)[0, 0].clamp(0, 1).numpy()
        ys, xs = np.indices(patch.shape)
        mass = max(patch.sum(), 1e-12)
        top, left = (round(14 - (c * patch).sum() / mass) for c in (ys, xs))
        top, left = min(max(top, 0), 28 - size[0]), min(max(left, 0), 28 - size[1])
        out[k, top:top + size[0], left:left + size[1]] = patch
    return out


def class_folder(name):
    """A class name as a folder name ('T-shirt/top' -> 'T-shirt-top')."""
    return str(name).replace("/", "-").replace("\\", "-").strip() or "_"


def class_folders(class_names):
    """The folder of each class (:func:`class_folder`), or a one-line error where two classes would
    share one ('a-b' and 'a\\b', 'x' and 'x '): their recordings would be read back as one class."""
    folders = {}
    for name in class_names:
        other = folders.setdefault(class_folder(name), name)
        if other != name:
            raise UsageError(f"classes {other!r} and {name!r} would both be written as the folder "
                             f"{class_folder(name)!r}, one class when read back: rename one of them")
    return list(folders)


def generate(folder, splits, source_key, seed=0, batch=64, class_names=None, flag="--cache_dir", replace=True):
    """Write ``splits`` ({"train": (images [N, 1, H, W], labels [N]), "test": ...}) as N-MNIST
    ``.bin`` files under ``folder`` (``Train/<class>/<index>.bin``, ``Test/...``; the class folder
    is the label, or its name in ``class_names``), unless a finished copy made from the same source
    and seed is there. The folder appears whole or not at all; an older copy there is replaced, or
    with ``replace=False`` only an empty folder, and anything else is a one-line error naming
    ``flag``."""
    folder = Path(folder)
    names = class_folders(class_names) if class_names is not None else None
    key = {"version": SIM_VERSION, "seed": seed, "source": source_key,
           "sizes": {s: len(labels) for s, (_, labels) in splits.items()}}
    marker = folder / "complete.json"
    if marker.is_file() and json.loads(marker.read_text()) == key:
        return folder
    tmp = scratch_folder(folder.parent, f".{folder.name}.", flag)
    try:
        rng = np.random.default_rng(seed)
        for split, (images, labels) in splits.items():
            images, labels = to_28(images), np.asarray(labels)
            for start in tqdm(range(0, len(labels), batch), desc=f"{folder.name} {split}: simulating events",
                              unit="batch", dynamic_ncols=True, mininterval=1.0):
                streams = simulate(images[start:start + batch], rng)
                for i, (x, y, p, t) in enumerate(streams, start):
                    label = names[int(labels[i])] if names else str(int(labels[i]))
                    write_bin(tmp / SPLITS[split] / label / f"{i:05d}.bin", x, y, p, t)
        (tmp / "complete.json").write_text(json.dumps(key))
        if folder.exists() and replace:
            shutil.rmtree(folder)  # an older or unfinished copy
        elif folder.exists():
            try:
                folder.rmdir()  # an empty folder, and nothing else, gives way
            except OSError:
                raise UsageError(f"{flag} {folder} was given files while the recordings were made: nothing "
                                 "was written there; choose a new folder") from None
        os.replace(tmp, folder)
    except OSError as err:  # a full disk: the recordings written so far go with their folder
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(folder, err, f"free space or choose another {flag} (nothing was kept)",
                          f"another {flag}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        release_scratch(tmp)
    return folder


def source_key(*parts):
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]


DIGITS_EVENTS = simulated("digits-events", "DigitsEvents", "simulated digits")
NMNIST_SIM = simulated("nmnist-sim", "NMNISTSim", "simulated MNIST")
FASHION_EVENTS = simulated("fashion-events", "FashionEvents", "simulated Fashion-MNIST",
                           classes=None)
# Recordings ``snnclf simulate`` wrote (of any images) in the folder --data_dir names, classes as found.
EVENT_FOLDER = simulated("event-folder", "EventFolder", "N-MNIST-format", classes=None, subfolder="",
                         page="snnclf simulate", obtain="make them with snnclf simulate --dataset IMAGES --out DIR")


def digits_events(data_dir=None, *, cache_dir=CACHE_DIR, **options):
    """The bundled digits (same split) as simulated N-MNIST-style recordings; made once under
    ``<cache_dir>/DigitsEvents/``. Needs no download."""
    static = digits()
    parts = {"train": static.train.tensors, "test": static.test.tensors}
    import sklearn
    generate(Path(cache_dir) / "DigitsEvents", parts, source_key("digits", sklearn.__version__))
    return event_dataset(DIGITS_EVENTS, cache_dir, cache_dir=cache_dir, **options)


def _idx_key(data_dir, folder):
    raw = Path(data_dir) / folder / "raw"
    return source_key(folder, *(f"{f}:{(raw / f).stat().st_size}:{(raw / f).stat().st_mtime_ns}" for f in IDX_FILES))


def fashion_events(data_dir, *, cache_dir=CACHE_DIR, **options):
    """Fashion-MNIST from ``<data_dir>/FashionMNIST/raw`` as simulated recordings, one folder a
    class name; made once under ``<cache_dir>/FashionEvents/``."""
    static = fashion_mnist(data_dir)
    parts = {"train": static.train.tensors, "test": static.test.tensors}
    generate(Path(cache_dir) / "FashionEvents", parts, _idx_key(data_dir, "FashionMNIST"),
             class_names=static.class_names)
    return event_dataset(FASHION_EVENTS, cache_dir, cache_dir=cache_dir, **options)


def event_folder(data_dir, *, cache_dir=CACHE_DIR, **options):
    """N-MNIST-format recordings in ``<data_dir>/Train/<class>/*.bin`` and ``<data_dir>/Test/...``,
    as ``snnclf simulate --out`` writes them."""
    return event_dataset(EVENT_FOLDER, data_dir, cache_dir=cache_dir, **options)


def nmnist_sim(data_dir, *, cache_dir=CACHE_DIR, **options):
    """MNIST from ``<data_dir>/MNIST/raw`` as simulated N-MNIST recordings; made once (about
    6 ms a digit) under ``<cache_dir>/NMNISTSim/``."""
    static = mnist(data_dir)
    parts = {"train": static.train.tensors, "test": static.test.tensors}
    generate(Path(cache_dir) / "NMNISTSim", parts, _idx_key(data_dir, "MNIST"))
    return event_dataset(NMNIST_SIM, cache_dir, cache_dir=cache_dir, **options)
