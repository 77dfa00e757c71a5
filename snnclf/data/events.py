"""Event-camera data sets: N-MNIST's ``.bin`` files read through tonic, checked file by file, and
turned into frames [T, 2, H, W] kept in an on-disk cache keyed by every frame parameter."""
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import tonic
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import UsageError
from .datasets import DataSet, removed_on_failure, scratch_folder

log = logging.getLogger(__name__)

SENSOR = (34, 34, 2)  # N-MNIST's ATIS crop: width, height, polarities (tonic's order)
SPLITS = {"train": "Train", "test": "Test"}
CACHE_VERSION = 1  # bump when the way frames are made changes
CACHE_DIR = "data/cache"  # where frames and simulated recordings are kept unless told otherwise


# --- the file format -------------------------------------------------------------------------

def encode_bin(x, y, p, t):
    """Events as N-MNIST's 5-byte records: x, y, then polarity (bit 7) and a 23-bit microsecond
    timestamp over three bytes. Timestamps must lie below 2**23 (N-MNIST's ~0.3 s do)."""
    x, y, p, t = (np.asarray(a, dtype=np.int64) for a in (x, y, p, t))
    if len(t) and (t.min() < 0 or t.max() >= 2 ** 23):
        raise ValueError("timestamps must lie in [0, 2**23) microseconds")
    if len(x) and (min(x.min(), y.min()) < 0 or max(x.max(), y.max()) > 255):
        raise ValueError("coordinates must lie in 0..255 (y = 240 marks a timestamp overflow)")
    records = np.empty((len(t), 5), dtype=np.uint8)
    records[:, 0] = x
    records[:, 1] = y
    records[:, 2] = ((p & 1) << 7) | ((t >> 16) & 0x7F)
    records[:, 3] = (t >> 8) & 0xFF
    records[:, 4] = t & 0xFF
    return records.tobytes()


def write_bin(path, x, y, p, t):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_bin(x, y, p, t))


# --- folders of .bin files -------------------------------------------------------------------

def scan(root, name):
    """The ``.bin`` files of each split under ``root`` (``Train/<digit>/``, ``Test/<digit>/``),
    checked before tonic reads them: one line names the folder or file that is wrong."""
    found = {}
    for split, folder in SPLITS.items():
        base = Path(root) / folder
        files = sorted(base.glob("*/*.bin")) if base.is_dir() else []
        if not files:
            other = [f for s, f in SPLITS.items() if s != split]
            raise UsageError(f"{name}: no .bin files in {base} (expected {folder}/<digit>/*.bin beside "
                             f"{other[0]}/): the data set needs both splits")
        for label_dir in sorted({f.parent for f in files}):
            if label_dir.name not in {str(d) for d in range(10)}:
                raise UsageError(f"{name}: folder {label_dir} is not a label 0-9: N-MNIST keeps each "
                                 "class in a folder named by its digit")
        for f in files:
            size = f.stat().st_size
            if size == 0 or size % 5:
                raise UsageError(f"{name}: {f} is truncated or not an N-MNIST file ({size} bytes, "
                                 "not a whole number of 5-byte events); replace it")
        found[split] = files
    return found


def fingerprint(files):
    """A hash of the files' names, sizes and times: adding, replacing or removing one changes it."""
    digest = hashlib.sha1()
    for f in files:
        st = f.stat()
        digest.update(f"{f.parent.name}/{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class NMNIST(tonic.datasets.NMNIST):
    """tonic's N-MNIST over the extracted files that are present, whatever their number.

    tonic trusts a folder only when it also holds its zip files and at least 10,000 ``.bin``
    files, and downloads otherwise; snnclf checks the folder itself (:func:`scan`) and reads the
    files through tonic. Subclasses read other folders of the same format: tonic names the folder
    after the class (``<root>/<ClassName>/``)."""

    def _check_exists(self):
        return True


# --- frames and their cache ------------------------------------------------------------------

def frame_key(name, split, files, time_steps, denoise_us=None, downsample=None,
              first_saccade_only=False):
    """Every parameter that changes the frames, and the hash that names their cache folder."""
    params = {"dataset": name, "split": split, "time_steps": int(time_steps),
              "denoise_us": denoise_us, "downsample": downsample,
              "first_saccade_only": bool(first_saccade_only), "files": fingerprint(files),
              "version": CACHE_VERSION}
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    return params, digest


def _side(pixels, factor):
    """Frame side after tonic's ``Downsample``, which scales coordinates and rounds them down."""
    return int((pixels - 1) * factor) + 1


def frame_shape(time_steps, downsample=None):
    factor = downsample or 1.0
    return (time_steps, SENSOR[2], _side(SENSOR[1], factor), _side(SENSOR[0], factor))


def _to_frames(events, time_steps, downsample):
    """Events -> counts [T, P, H, W] in T equal windows from 0 past the last event, so every event
    is counted (tonic's ``ToFrame(n_time_bins=T)`` ends its last bin at the last timestamp,
    exclusive, and drops the events there)."""
    sensor = SENSOR
    if downsample:
        events = tonic.transforms.Downsample(spatial_factor=downsample)(events)
        sensor = (_side(SENSOR[0], downsample), _side(SENSOR[1], downsample), SENSOR[2])
    if len(events) == 0:
        return np.zeros((time_steps, sensor[2], sensor[1], sensor[0]), dtype=np.int16)
    window = -(-(int(events["t"].max()) + 1) // time_steps)  # ceil: T windows cover [0, last]
    to_frame = tonic.transforms.ToFrame(sensor_size=sensor, time_window=window, start_time=0,
                                        end_time=window * time_steps)
    frames = to_frame(events)
    assert frames.shape[0] == time_steps, frames.shape
    return frames


class EventFrames(Dataset):
    """Frames of one split from the cache: items (frames [T, P, H, W] float, label). A list
    index reads a whole batch from the memory-mapped file at once."""

    def __init__(self, folder):
        self.frames = np.load(Path(folder) / "frames.npy", mmap_mode="r")  # [N, T, P, H, W] uint8
        self.labels = torch.from_numpy(np.load(Path(folder) / "labels.npy"))

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        if isinstance(index, list):
            order = np.argsort(index)  # read the file in order, hand the batch back as asked
            block = np.empty((len(index), *self.frames.shape[1:]), dtype=self.frames.dtype)
            block[order] = self.frames[np.asarray(index)[order]]
            return torch.from_numpy(block).float(), self.labels[index]
        return torch.from_numpy(np.array(self.frames[index])).float(), self.labels[index]


def cached_frames(name, split, files, root_class, root, cache_dir, time_steps, denoise_us=None,
                  downsample=None, first_saccade_only=False):
    """The split's frames, built once (with a progress bar) under
    ``<cache_dir>/frames/<name>-<split>-T<T>-<hash>/`` and read from there afterwards."""
    params, digest = frame_key(name, split, files, time_steps, denoise_us, downsample,
                               first_saccade_only)
    folder = Path(cache_dir) / "frames" / f"{name}-{split}-T{time_steps}-{digest}"
    if (folder / "key.json").is_file():
        return EventFrames(folder)
    transform = _SafeDenoise(denoise_us) if denoise_us else None
    events = root_class(str(root), train=(split == "train"), first_saccade_only=first_saccade_only,
                        transform=transform)
    shape = frame_shape(time_steps, downsample)
    tmp = scratch_folder(folder.parent, f".{folder.name}.")
    try:
        frames = np.lib.format.open_memmap(tmp / "frames.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(events), *shape))
        labels = np.asarray(events.targets, dtype=np.int64)
        clipped = 0
        for i in tqdm(range(len(events)), desc=f"{name} {split}: events -> {time_steps} frames",
                      unit="sample", dynamic_ncols=True, mininterval=1.0):
            try:
                sample, _ = events[i]
            except Exception as err:  # tonic's reader fails on malformed records
                raise UsageError(f"{name}: cannot read {events.data[i]} ({type(err).__name__}); "
                                 "replace the file") from None
            if not _inside(sample):
                raise UsageError(f"{name}: {events.data[i]} has events outside the {SENSOR[0]}x"
                                 f"{SENSOR[1]} sensor: it is corrupt or not N-MNIST; replace it")
            counts = _to_frames(sample, time_steps, downsample)
            clipped += int((counts > 255).sum())
            frames[i] = np.minimum(counts, 255)
        frames.flush()
        del frames
        np.save(tmp / "labels.npy", labels)
        (tmp / "key.json").write_text(json.dumps({**params, "samples": len(labels),
                                                  "clipped_counts": clipped}, indent=2))
        os.replace(tmp, folder)  # the cache appears whole or not at all
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if clipped:
        log.warning("%s %s: %d frame counts above 255 were clipped", name, split, clipped)
    return EventFrames(folder)


def _inside(events):
    return not len(events) or (events["x"].max() < SENSOR[0] and events["y"].max() < SENSOR[1]
                               and events["x"].min() >= 0 and events["y"].min() >= 0)


def file_frames(path, time_steps, denoise_us=None, downsample=None, first_saccade_only=False):
    """The frames [T, P, H, W] of one N-MNIST ``.bin`` file, made as the data sets make theirs
    (read by tonic, first saccade, denoising, counts capped at 255), or a one-line error."""
    try:
        events = tonic.io.read_mnist_file(str(path), dtype=NMNIST.dtype)
    except Exception as err:  # tonic's reader fails on malformed records
        raise UsageError(f"cannot read it as N-MNIST events ({type(err).__name__})") from None
    if not len(events):
        raise UsageError("it holds no events: an empty or truncated recording")
    if first_saccade_only:
        events = events[events["t"] < 1e5]  # as tonic's NMNIST(first_saccade_only=True)
    if not _inside(events):
        raise UsageError(f"it has events outside the {SENSOR[0]}x{SENSOR[1]} sensor: corrupt or not N-MNIST")
    if denoise_us:
        events = _SafeDenoise(denoise_us)(events)
    return np.minimum(_to_frames(events, time_steps, downsample), 255)


# --- the registered event data sets --------------------------------------------------------

class _SafeDenoise:
    """tonic's ``Denoise``, which fails on a sample without events."""

    def __init__(self, filter_time):
        self.denoise = tonic.transforms.Denoise(filter_time=filter_time)

    def __call__(self, events):
        return self.denoise(events) if len(events) else events


def event_dataset(name, root_class, root, *, time_steps, cache_dir, denoise_us=None,
                  downsample=None, first_saccade_only=False):
    """A :class:`DataSet` of frames from the N-MNIST-format folder ``<root>/<root_class name>``."""
    if denoise_us is not None and denoise_us <= 0:
        raise UsageError(f"--denoise_us must be positive, got {denoise_us}")
    if downsample is not None and not (0 < downsample <= 1 and _side(SENSOR[0], downsample) >= 4):
        raise UsageError(f"--downsample must lie in (0, 1] and leave frames of at least 4x4 (0.1 or more), "
                         f"e.g. 0.5 for 17x17 frames; got {downsample}")
    files = scan(Path(root) / root_class.__name__, name)
    parts = {split: cached_frames(name, split, files[split], root_class, root, cache_dir, time_steps,
                                  denoise_us, downsample, first_saccade_only) for split in SPLITS}
    for split, part in parts.items():
        if len(part) == 0:
            raise UsageError(f"{name}: the {split} split has no samples")
    return DataSet(parts["train"], parts["test"], parts["train"].labels, parts["test"].labels,
                   [str(d) for d in range(10)], frame_shape(time_steps, downsample)[1:], events=True)


def nmnist(data_dir, *, cache_dir=CACHE_DIR, **options):
    """N-MNIST from ``<data_dir>/NMNIST/{Train,Test}/<digit>/*.bin`` (tonic's layout, extracted);
    with no files there, tonic is asked to download them."""
    folder = Path(data_dir) / "NMNIST"
    if not any(folder.glob("*/*/*.bin")):
        try:
            with removed_on_failure(folder):
                tonic.datasets.NMNIST(str(data_dir), train=True)  # downloads and extracts train.zip
                tonic.datasets.NMNIST(str(data_dir), train=False)
        except Exception as err:  # offline, or a broken archive
            raise UsageError(f"nmnist: no N-MNIST files in {folder} and downloading them failed "
                             f"({type(err).__name__}); put the extracted Train/<digit>/*.bin and "
                             f"Test/<digit>/*.bin there (or pass --data_dir to the folder that holds NMNIST/)") from None
    return event_dataset("nmnist", NMNIST, data_dir, cache_dir=cache_dir, **options)
