"""Event-camera data sets, any of them: each is an :class:`EventSet` entry (``event_sets.py``) that
declares its sensor, classes, file layout, split and reader (tonic's class, or a reader of the
format its authors publish), and may name other layouts of the same data set (:attr:`EventSet.alternatives`:
tonic's copy and the original release). Here the layout present is found, its recordings are found
and checked, read one by one, split when the data set has no official split, and turned into frames
[T, P, H, W] kept in an on-disk cache keyed by every frame parameter, the layout included."""
import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import tonic
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import UsageError, write_error
from ..flags import checked, number
from ..runs import write_json
from .datasets import (SPLIT_SEED, DataSet, release_scratch, removed_on_failure, scratch_folder, split_indices,
                       stratified)

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # bump when the way frames are made changes (2: any data set, --frame_ms; 3: layouts)
CACHE_DIR = "data/cache"  # where frames, splits and simulated recordings are kept unless told otherwise
EVENTS = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
# The checks of the framing options; the flags use them too (snnclf.config).
CHECKS = {"denoise_us": number(float, 0, low_open=True), "frame_ms": number(float, 0, low_open=True),
          "downsample": number(float, 0, 1, low_open=True)}


@dataclass(frozen=True)
class EventSet:
    """What snnclf needs to know about one event data set; everything else is shared.

    ``files`` maps each split to the files of it (a glob under ``<data_dir>/<folder>/``); a data
    set without an official split has one key, ``"all"``, and is split by snnclf (stratified,
    ``test_fraction``, seed :data:`SPLIT_SEED`). ``label`` gives a file's class name, ``item`` what
    tonic's ``__getitem__`` expects in its ``data`` list for that file.

    An entry that reads its authors' own format gives ``read`` (a path -> events with fields x, y,
    t, p) instead of going through tonic; one whose files each hold several labelled samples (DVS
    Gesture's) gives ``clips`` (a path -> [(class index, start µs, end µs)]); ``select`` keeps the
    files of a split where one glob cannot say it (a split by user). ``alternatives`` are the
    same data set's other layouts (same name, sensor and classes): the first whose files are
    present is read."""

    name: str
    title: str  # the data set's own name, for messages
    reader: type  # tonic's data set class: its __getitem__ reads (and converts) one recording
    sensor: tuple  # (width, height, polarities), tonic's order; frames are made on it
    files: dict  # split -> glob of its recordings under <data_dir>/<folder>
    classes: Optional[tuple]  # class names (label k is classes[k]); None: the class folders found, sorted
    page: str  # where the files come from
    label: Callable = lambda path: path.parent.name  # noqa: E731  a file's class name (its folder's)
    item: Callable = str  # what tonic's data list holds for one file
    test_fraction: float = 0.2  # the held-out share when there is no official split
    starts_at_zero: bool = False  # timestamps count from the recording's start (else: from its first event)
    crop: bool = False  # recordings vary in size: events outside the sensor are cropped, not refused
    downsample: Optional[float] = None  # the spatial factor used unless --downsample says otherwise
    saccades: tuple = ()  # N-MNIST-style recordings: when each saccade starts, and the end (ms)
    download: bool = False  # whether tonic is asked to download the files when none are there
    needs: tuple = ()  # (module, pip requirement) pairs the reader imports
    reference: str = ""  # a published accuracy to compare with, and where it is from
    recipe: Optional[dict] = None  # the train flags of its preset (``--preset <name>``), beside the shared ones
    subfolder: Optional[str] = None  # the folder under --data_dir ("": --data_dir itself); None: tonic's
    obtain: Optional[str] = None  # how a user gets the files, in words; None: "download them from <page>"
    read: Optional[Callable] = None  # path -> events (x, y, t, p); None: tonic's class reads the file
    clips: Optional[Callable] = None  # path -> [(class index, start, end µs)]: several samples a file
    select: Optional[Callable] = None  # (split, path) -> whether the file belongs to the split
    layout_name: str = "tonic"  # which release of the data set this layout is, for messages and the cache
    alternatives: tuple = ()  # the data set's other layouts (EventSet entries), tried in order

    @property
    def folder(self):
        return self.reader.__name__ if self.subfolder is None else self.subfolder  # tonic's: the class name

    @property
    def suffix(self):
        return Path(next(iter(self.files.values()))).suffix

    @property
    def official_split(self):
        return "all" not in self.files

    def layout(self):
        return ", ".join(dict.fromkeys(str(Path(self.folder) / pattern) for pattern in self.files.values()))

    @property
    def layouts(self):
        """This layout and the data set's others, in the order they are tried."""
        return (self, *self.alternatives)

    def holds(self):
        """What the folder --data_dir names holds, in words."""
        return f"{self.folder}/" if self.folder else " and ".join(dict.fromkeys(
            f"{Path(p).parts[0]}/" if len(Path(p).parts) > 1 else p for p in self.files.values()))

    def frame_size(self, downsample=None):
        """(width, height) of the frames at spatial factor ``downsample`` (None: the entry's)."""
        factor = self.downsample if downsample is None else downsample
        return _side(self.sensor[0], factor or 1.0), _side(self.sensor[1], factor or 1.0)


# --- finding and reading the files -----------------------------------------------------------

@dataclass(frozen=True)
class Recording:
    """One sample: a file, its class name, and the part of the file it is (``window``: start and
    end µs of a clip in a file of several; None: the whole file)."""

    path: Path
    label: str
    window: Optional[tuple] = None

    def name(self, base):
        """The sample's name relative to ``base``, unique among the data set's."""
        rel = self.path.relative_to(base).as_posix()
        return rel if self.window is None else f"{rel}@{self.window[0]}-{self.window[1]}"


def resolve(entry, root, test_only=False, train_only=False):
    """The layout of the data set ``entry`` to read under ``root``: the first of
    :attr:`EventSet.layouts` whose files that a load needs (see :func:`needed`) are all there, else
    the first with any file there (its missing split is then named), else ``entry`` itself."""
    for layout in entry.layouts:
        if not _absent(layout, Path(root) / layout.folder, needed(layout, test_only, train_only)):
            return layout
    return next((layout for layout in entry.layouts if _present(layout, root)), entry)


def layout_for_file(entry, path):
    """The layout of the data set ``entry`` that reads a file of ``path``'s suffix, or None."""
    suffix = Path(path).suffix.lower()
    return next((layout for layout in entry.layouts if layout.suffix == suffix), None)

def needed(entry, test_only=False, train_only=False):
    """The entry's file patterns a load reads, by split: the test split's alone when nothing else
    is used (``eval --test_only``), the train split's alone for training (validation is held out
    of it), but all of them for a set without an official split, whose test split is drawn from
    all its recordings."""
    for alone, split in ((test_only, "test"), (train_only, "train")):
        if alone and split in entry.files:
            return {split: entry.files[split]}
    return entry.files


def _files(entry, base, split, pattern):
    return sorted(f for f in base.glob(pattern) if entry.select is None or entry.select(split, f))


def _recordings(entry, f):
    """The samples of file ``f``: the file, or each labelled clip of it."""
    if entry.clips is None:
        return [Recording(f, entry.label(f))]
    try:
        clips = entry.clips(f)
    except (OSError, ValueError) as err:
        raise UsageError(f"{entry.name}: cannot read the labels of {f} ({err}): {entry.title} keeps them "
                         f"beside each recording as {entry.layout()}; replace it") from None
    return [Recording(f, entry.classes[k], (start, end)) for k, start, end in clips]


def scan(entry, root, test_only=False, train_only=False):
    """The recordings (:class:`Recording`) of each split (``"all"`` when there is no official
    split; only ``"test"`` with ``test_only`` where there is one) under ``root/<folder>``, and the
    class names in order, checked before they are read: one line names the folder or file that is
    wrong."""
    base = Path(root) / entry.folder
    found, names = {}, set()
    for split, pattern in needed(entry, test_only, train_only).items():
        files = _files(entry, base, split, pattern)
        if not files:
            raise UsageError(f"{entry.name}: no {entry.title} files matching {pattern} in {base}: {entry.title} "
                             f"keeps its recordings as {entry.layout()}")
        for f in files:
            try:
                size = f.stat().st_size
            except OSError as err:  # a link to nowhere, or a loop of links
                raise UsageError(f"{entry.name}: {f} cannot be read ({err.strerror}): a broken link? remove it or "
                                 "point it at a recording") from None
            if size == 0 or (entry.suffix == ".bin" and size % 5):
                raise UsageError(f"{entry.name}: {f} is truncated or not {entry.title} data ({size} bytes"
                                 f"{', not a whole number of 5-byte events' if entry.suffix == '.bin' else ''}); "
                                 "replace it")
            try:
                entry.label(f)
            except (ValueError, IndexError):  # a file name that does not say a class
                raise UsageError(f"{entry.name}: {f} is not named as {entry.title} names its recordings "
                                 f"({entry.layout()}): move or remove it") from None
        found[split] = [r for f in files for r in _recordings(entry, f)]
        names.update(r.label for r in found[split])
    if entry.classes is None:  # the class folders found: those of the splits left unread count too
        for split, pattern in entry.files.items():
            for f in base.glob(pattern) if split not in found else ():
                with contextlib.suppress(ValueError, IndexError):  # a misnamed file is named when its split is read
                    names.add(entry.label(f))
    classes = list(entry.classes or sorted(names))
    unknown = sorted(names - set(classes))
    if unknown:
        bad = next(r.path for recs in found.values() for r in recs if r.label == unknown[0])
        raise UsageError(f"{entry.name}: {bad} is of class {unknown[0]!r}, which {entry.title} does not have "
                         f"({', '.join(classes)}): move or remove it")
    return found, classes


def fingerprint(recordings):
    """A hash of the recordings' files (names, sizes and times), classes and clips: adding,
    replacing, removing or relabelling one changes it."""
    digest = hashlib.sha1()
    for r in recordings:
        st = r.path.stat()
        digest.update(f"{r.path.parent.name}/{r.path.name}:{st.st_size}:{st.st_mtime_ns}:{r.label}:{r.window}\n"
                      .encode())
    return digest.hexdigest()


def tonic_reader(entry, **options):
    """An instance of the entry's tonic class that reads the files put into its ``data`` list.

    tonic's class finds its files only when the download archive lies beside them, and downloads
    otherwise; this one is told its files are there, looks for them in a folder that does not
    exist, and is handed one file at a time by :func:`read_events`."""
    for module, requirement in entry.needs:
        try:
            __import__(module)
        except ImportError:
            raise UsageError(f"{entry.name} needs the {module} package to read its files: "
                             f"pip install \"{requirement}\"") from None
    present = type(entry.reader.__name__, (entry.reader,), {"_check_exists": lambda self: True})
    return present(os.devnull, **options)


def file_reader(entry, **options):
    """path -> the raw events of one file of layout ``entry`` (tonic's class with ``options``, or
    the entry's own reader); the last file read is kept, for a file of several clips."""
    if entry.read is None:
        reader = tonic_reader(entry, **options)

        def read(path):
            reader.data, reader.targets = [entry.item(path)], [0]
            return reader[0][0]
    else:
        read = entry.read
    return functools.lru_cache(maxsize=1)(read)


def read_events(entry, read, path, window=None):
    """The events of one recording (read by ``read``, a :func:`file_reader`) as an array of
    :data:`EVENTS` sorted by time, with timestamps from the recording's start (or the clip's
    ``window`` start), or a one-line error naming the file."""
    try:  # a NaN, infinite or huge value made an integer (by the reader or here) is an error, not a warning
        with np.errstate(invalid="raise", over="raise"):
            raw = read(str(path)).ravel()  # ASL-DVS's come as a column [N, 1], the shape of its MATLAB vectors
            events = np.empty(len(raw), dtype=EVENTS)
            for field in EVENTS.names:
                if raw[field].dtype.kind == "f" and not np.isfinite(raw[field]).all():
                    raise FloatingPointError(field)
                events[field] = raw[field]
    except Exception as err:  # the readers fail in many ways on a malformed file
        if isinstance(err, FloatingPointError):
            why = "values that are NaN, infinite or too large for whole-number times and coordinates"
        elif entry.read is not None and isinstance(err, ValueError):  # snnclf's own readers say what is wrong
            why = str(err)
        else:
            why = type(err).__name__
        raise UsageError(f"{entry.name}: cannot read {path} as {entry.title} events ({why}); replace the file") from None
    events = events[np.argsort(events["t"], kind="stable")]
    if window is not None:
        events = events[(events["t"] >= window[0]) & (events["t"] < window[1])]
        events["t"] -= window[0]
    elif len(events) and not entry.starts_at_zero:
        events["t"] -= events["t"][0]
    return events


def inside(entry, events, path):
    """The events on the entry's sensor: outside it they are cropped (recordings of varying
    size) or the file is refused as corrupt."""
    width, height = entry.sensor[:2]
    on = ((events["x"] >= 0) & (events["x"] < width) & (events["y"] >= 0) & (events["y"] < height)
          & (events["p"] >= 0) & (events["p"] < entry.sensor[2]))
    if entry.crop or on.all():
        return events[on]
    raise UsageError(f"{entry.name}: {path} has events outside the {width}x{height} sensor: it is corrupt "
                     f"or not {entry.title}; replace it")


# --- the split ---------------------------------------------------------------------------------

def _share(name):
    """A number in [0, 1) fixed by a file's relative path (and the split's seed): where a file that
    is new to a split goes, the same on every machine."""
    return int(hashlib.sha1(f"{SPLIT_SEED}:{name}".encode()).hexdigest()[:15], 16) / 16 ** 15


def seeded_split(entry, base, files, classes, cache_dir, tag=""):
    """Train and test files of a data set without an official split: a stratified split of
    ``test_fraction`` with seed :data:`SPLIT_SEED`, kept in ``<cache_dir>/splits/<name>-<hash of
    the folder>.json``. A file keeps its side for good: files added later go to test when their
    path's :func:`_share` is below ``test_fraction``, so no training recording ever becomes a
    test one. ``base``: the folder the files' names are relative to; ``tag``: the layout, where it
    is not the data set's first (two layouts in one folder are split apart). Returns (train files,
    test files, the split file)."""
    names = [f.name(base) for f in files]
    where = hashlib.sha1(f"{base.resolve()}{'|' + tag if tag else ''}".encode()).hexdigest()[:12]
    path = Path(cache_dir) / "splits" / f"{entry.name}-{where}.json"
    record = json.loads(path.read_text()) if path.is_file() else None
    if record is None:
        if len(files) < 2:
            raise UsageError(f"{entry.name}: {len(files)} recording in {base}: a train/test split needs at least two")
        labels = torch.tensor([classes.index(f.label) for f in files])
        held, kept = stratified(labels, max(1, round(len(files) * entry.test_fraction)))
        record = {"data_set": entry.name, "folder": str(base), "seed": SPLIT_SEED,
                  "test_fraction": entry.test_fraction,
                  "test": sorted(names[i] for i in held), "train": sorted(names[i] for i in kept)}
    known = set(record["test"]) | set(record["train"])
    new = [n for n in names if n not in known]
    if new or not path.is_file():
        record["test"] = sorted(set(record["test"]) | {n for n in new if _share(n) < entry.test_fraction})
        record["train"] = sorted(set(record["train"]) | {n for n in new if _share(n) >= entry.test_fraction})
        write_json(path, record)
    test = set(record["test"])
    return ([f for f, n in zip(files, names) if n not in test], [f for f, n in zip(files, names) if n in test],
            path)


# --- frames and their cache ------------------------------------------------------------------

def frame_key(entry, split, files, classes, framing):
    """Every parameter that changes the frames or their labels (the entry's sensor and reading, the
    effective downsampling, the framing options, the files, the class list that numbers the
    labels), and the hash that names their cache folder."""
    params = {"dataset": entry.name, "layout": entry.layout_name, "split": split, "classes": [str(c) for c in classes],
              "sensor": list(entry.sensor), "crop": entry.crop, "starts_at_zero": entry.starts_at_zero,
              "time_steps": int(framing.time_steps), "denoise_us": framing.denoise_us,
              "downsample": framing.downsample or entry.downsample, "frame_ms": framing.frame_ms,
              "first_saccade_only": bool(framing.first_saccade_only), "files": fingerprint(files),
              "version": CACHE_VERSION}
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    return params, digest


def _side(pixels, factor):
    """Frame side after tonic's ``Downsample``, which scales coordinates and rounds them down."""
    return int((pixels - 1) * factor) + 1


def frame_shape(entry, time_steps, downsample=None):
    width, height = entry.frame_size(downsample)
    return (time_steps, entry.sensor[2], height, width)


def to_frames(entry, events, time_steps, downsample=None, frame_ms=None):
    """Events -> counts [T, P, H, W]. By default T equal windows from 0 past the last event, so
    every event is counted (tonic's ``ToFrame(n_time_bins=T)`` ends its last bin at the last
    timestamp, exclusive, and drops the events there); with ``frame_ms``, T windows of that many
    milliseconds from the start, and later events are left out."""
    factor = entry.downsample if downsample is None else downsample
    width, height = entry.frame_size(factor)
    sensor = (width, height, entry.sensor[2])
    if factor and factor != 1:
        events = tonic.transforms.Downsample(spatial_factor=factor)(events)
    if frame_ms:
        window = int(round(frame_ms * 1000))
    elif len(events):
        window = -(-(int(events["t"].max()) + 1) // time_steps)  # ceil: T windows cover [0, last]
    if len(events) == 0 or (frame_ms and events["t"].min() >= window * time_steps):
        return np.zeros((time_steps, sensor[2], sensor[1], sensor[0]), dtype=np.int16)
    to_frame = tonic.transforms.ToFrame(sensor_size=sensor, time_window=window, start_time=0,
                                        end_time=window * time_steps)
    frames = to_frame(events[events["t"] < window * time_steps])
    if len(frames) < time_steps:  # tonic stops at the last window that has events
        frames = np.concatenate([frames, np.zeros((time_steps - len(frames), *frames.shape[1:]), frames.dtype)])
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


@dataclass(frozen=True)
class Framing:
    """How recordings become frames: every option that changes them."""

    time_steps: int
    denoise_us: Optional[float] = None
    downsample: Optional[float] = None
    first_saccade_only: bool = False
    frame_ms: Optional[float] = None

    @staticmethod
    def events(entry, read, recording):
        """The events of one :class:`Recording` (read by ``read``, a :func:`file_reader`) on the
        entry's sensor."""
        return inside(entry, read_events(entry, read, recording.path, recording.window), recording.path)

    def frames(self, entry, events):
        """The frames [T, P, H, W] of one recording's events, counts capped at 255, and how many were capped."""
        if self.denoise_us and len(events):  # tonic's Denoise fails on a recording without events
            events = tonic.transforms.Denoise(filter_time=self.denoise_us)(events)
        counts = to_frames(entry, events, self.time_steps, self.downsample, self.frame_ms)
        return np.minimum(counts, 255), int((counts > 255).sum())

    def reader(self, entry):
        return file_reader(entry, **({"first_saccade_only": self.first_saccade_only} if entry.saccades else {}))


def cached_frames(entry, split, files, classes, cache_dir, framing):
    """The frames of ``files`` (one split), built once (with a progress bar) under
    ``<cache_dir>/frames/<name>-<split>-T<T>-<hash>/`` and read from there afterwards."""
    params, digest = frame_key(entry, split, files, classes, framing)
    folder = Path(cache_dir) / "frames" / f"{entry.name}-{split}-T{framing.time_steps}-{digest}"
    if (folder / "key.json").is_file():
        return EventFrames(folder)
    reader = framing.reader(entry)
    shape = frame_shape(entry, framing.time_steps, framing.downsample)
    tmp = scratch_folder(folder.parent, f".{folder.name}.")
    try:
        labels = np.asarray([classes.index(f.label) for f in files], dtype=np.int64)
        clipped, blank = 0, 0
        # Written as a stream of frames after the .npy header, not through a memory map: a full
        # disk then fails a write (an error said in one line), where a map's pages would kill the
        # process with SIGBUS when written back.
        with open(tmp / "frames.npy", "wb") as out:
            np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                                                       "fortran_order": False, "shape": (len(files), *shape)})
            for recording in tqdm(files, desc=f"{entry.name} {split}: events -> {framing.time_steps} frames",
                                  unit="sample", dynamic_ncols=True, mininterval=1.0):
                frames, capped = framing.frames(entry, framing.events(entry, reader, recording))
                out.write(frames.astype(np.uint8).tobytes())
                clipped += capped
                blank += not frames.any()
        if framing.frame_ms and blank == len(files):
            raise UsageError(f"--frame_ms {framing.frame_ms:g}: every frame of the {entry.name} {split} split is blank "
                             f"(no recording has events in its first {framing.time_steps * framing.frame_ms:g} ms): "
                             "give a longer --frame_ms or more --time_steps")
        np.save(tmp / "labels.npy", labels)
        (tmp / "key.json").write_text(json.dumps({**params, "samples": len(labels),
                                                  "clipped_counts": clipped}, indent=2))
        os.replace(tmp, folder)  # the cache appears whole or not at all
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(folder, err, "free space, or pass --cache_dir to a folder on a disk with room",
                          "another --cache_dir") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        release_scratch(tmp)
    if clipped:
        log.warning("%s %s: %d frame counts above 255 were clipped", entry.name, split, clipped)
    if blank:
        log.warning("%s %s: %d of %d recordings have no events in their frames%s", entry.name, split, blank,
                    len(files), f" (the first {framing.time_steps * framing.frame_ms:g} ms)" if framing.frame_ms else "")
    return EventFrames(folder)


def _said_of_the_file(err, entry, path):
    """A data set's one-line error said of the file the user named: without the data set's prefix."""
    return UsageError(str(err).removeprefix(f"{entry.name}: ").replace(f"{path} ", "it ", 1))


def file_clips(entry, path):
    """The labelled samples (:class:`Recording` s) of a recording file whose layout holds several
    a file (DVS Gesture's IBM release, cut by the labels file beside it), or None for a file that
    is one sample."""
    layout = layout_for_file(entry, path)
    if layout is None or layout.clips is None:
        return None
    try:
        return _recordings(layout, Path(path))
    except UsageError as err:
        raise _said_of_the_file(err, layout, path) from None


def file_frames(entry, path, time_steps, denoise_us=None, downsample=None, first_saccade_only=False,
                frame_ms=None, window=None):
    """The frames [T, P, H, W] of one recording file (``window``: of the clip from ``start`` to
    ``end`` µs in it), made as the data set makes its frames (read by the same reader, the same
    options, counts capped at 255), or a one-line error."""
    framing = Framing(time_steps, denoise_us, downsample, bool(first_saccade_only), frame_ms)
    if Path(path).stat().st_size == 0:
        raise UsageError("it holds no events: an empty or truncated recording")
    entry = layout_for_file(entry, path) or entry
    try:
        events = framing.events(entry, framing.reader(entry), Recording(Path(path), "", window))
    except UsageError as err:
        raise _said_of_the_file(err, entry, path) from None
    if len(events) == 0:
        raise UsageError("it holds no events: an empty recording")
    frames, _ = framing.frames(entry, events)
    return frames


# --- the data set ------------------------------------------------------------------------------

def saccade_frames(entry, time_steps, first_saccade_only=False, frame_ms=None):
    """The frames of each saccade (a slice of the T frames each) of the entry's recordings: a frame
    belongs to the saccade its middle falls in. The frames span the recording (the first saccade
    with ``first_saccade_only``: tonic keeps t < 100 ms), or ``frame_ms`` each."""
    if not entry.saccades:
        raise UsageError(f"{entry.name} does not record saccades: --saccade_shift applies to N-MNIST and the "
                         "simulated sets")
    span = 100.0 if first_saccade_only else entry.saccades[-1]
    middles = (np.arange(time_steps) + 0.5) * (frame_ms or span / time_steps)
    which = np.searchsorted(np.asarray(entry.saccades[1:-1]), middles, side="right")
    return [slice(int(np.argmax(which == k)), int(len(which) - np.argmax(which[::-1] == k)))
            for k in sorted(set(which.tolist()))]


def check_options(entry, denoise_us=None, downsample=None, first_saccade_only=False, frame_ms=None):
    """Refuse, in one line, event options that do not fit the entry."""
    for name, value in (("denoise_us", denoise_us), ("downsample", downsample), ("frame_ms", frame_ms)):
        checked(name, CHECKS[name], value)
    if downsample is not None and min(entry.frame_size(downsample)) < 4:
        smallest = 4 / min(entry.sensor[:2])
        raise UsageError(f"--downsample must lie in (0, 1] and leave frames of at least 4x4 on the {entry.sensor[0]}x"
                         f"{entry.sensor[1]} sensor of {entry.name} ({smallest:.2g} or more); got {downsample}")
    if first_saccade_only and not entry.saccades:
        raise UsageError(f"--first_saccade_only applies to saccade recordings (N-MNIST and the simulated sets), "
                         f"not {entry.name}")


def _none_in(entry, data_dir):
    return f"{entry.name}: no {entry.title} recordings in {Path(data_dir) / entry.folder}"


def _how(layout):
    """How a user gets the layout's files, in words."""
    return layout.obtain or f"download them from {layout.page}"


def _get_them(entry, how):
    return (f"{how} and put them there as {entry.layout()} (or pass --data_dir to the folder that holds "
            f"{entry.holds()})")


def _absent(layout, base, patterns):
    return {split: pattern for split, pattern in patterns.items() if not _files(layout, base, split, pattern)}


def _present(layout, root):
    """Whether any split of the layout has files under ``root``."""
    return len(_absent(layout, Path(root) / layout.folder, layout.files)) < len(layout.files)


def missing(entry, data_dir, test_only=False, train_only=False):
    """A one-line error for a data set none of whose layouts has its files (those ``test_only``
    needs) under ``data_dir``, or None. It names the split that is missing where a layout has
    the others, and else every layout and where each is downloaded."""
    partial = None
    for layout in entry.layouts:
        base = Path(data_dir) / layout.folder
        absent = _absent(layout, base, needed(layout, test_only, train_only))
        if not absent:
            return None
        if partial is None and _present(layout, data_dir):
            there = [split for split in layout.files if split not in absent]
            partial = (f"{entry.name}: no {entry.title} recordings of the {' or '.join(absent)} split in {base} "
                       f"(none match {', '.join(dict.fromkeys(absent.values()))}; the {' and '.join(there)} split "
                       f"{'is' if len(there) == 1 else 'are'} there): "
                       f"{_get_them(layout, _how(layout))}")
    if partial is not None:
        return partial
    if len(entry.layouts) == 1:
        return f"{_none_in(entry, data_dir)}: {_get_them(entry, _how(entry))}"
    ways = "; or ".join(f"{layout.layout_name} as {layout.layout()} ({_how(layout)})" for layout in entry.layouts)
    holds = " or ".join(dict.fromkeys(layout.holds() for layout in entry.layouts))
    return (f"{entry.name}: no {entry.title} recordings in {data_dir}: put there {ways}; or pass --data_dir to "
            f"the folder that holds {holds}")


def download(entry, data_dir):
    """Ask tonic to download the data set, for an entry that allows it; a failure is one line."""
    try:
        with removed_on_failure(Path(data_dir) / entry.folder):
            for train in (True, False):
                entry.reader(str(data_dir), train=train)
    except Exception as err:  # offline, or a broken archive
        raise UsageError(f"{_none_in(entry, data_dir)} and downloading them failed ({type(err).__name__}); "
                         f"{_get_them(entry, 'download them from ' + entry.page)}") from None


def event_dataset(entry, root, *, time_steps, cache_dir=CACHE_DIR, denoise_us=None, downsample=None,
                  first_saccade_only=False, frame_ms=None, test_only=False, train_only=False, subset=None,
                  val_fraction=0.1):
    """A :class:`DataSet` of frames of the entry's recordings under ``root/<folder>``. With
    ``test_only`` the training recordings are neither needed (where the split is official) nor
    framed, and the data set's ``train`` and ``train_y`` are None; with ``train_only`` the official
    test recordings are not needed (training holds its validation split out of the training
    recordings): without them ``test`` and ``test_y`` are None. With ``subset`` only the training
    recordings that ``snnclf.data.make_splits`` will use with it (and ``val_fraction``) are framed:
    ``chosen`` says where they are."""
    check_options(entry, denoise_us, downsample, first_saccade_only, frame_ms)
    data_set, entry = entry, resolve(entry, root, test_only, train_only)
    if entry.download and not any((Path(root) / entry.folder).glob(f"**/*{entry.suffix}")):
        download(entry, root)
    elif problem := missing(data_set, root, test_only, train_only):
        raise UsageError(problem)
    base = Path(root) / entry.folder
    train_only = train_only and entry.official_split and bool(_absent(entry, base, needed(entry, test_only=True)))
    if train_only:
        log.warning("%s: no test split in %s; training validates on a split of the training recordings, and "
                    "snnclf eval will need the test split (%s)", entry.name, Path(root) / entry.folder,
                    entry.files["test"])
    found, classes = scan(entry, root, test_only, train_only)
    split = "official"
    if not entry.official_split:
        train, test, path = seeded_split(entry, base, found["all"], classes, cache_dir,
                                         "" if entry is data_set else entry.layout_name)
        found = {"train": train, "test": test}
        split = (f"seeded: stratified {1 - entry.test_fraction:.0%}/{entry.test_fraction:.0%} of the recordings "
                 f"(seed {SPLIT_SEED}), test files listed in {path}")
    chosen = None
    if subset is not None and "train" in found:
        labels = torch.tensor([classes.index(r.label) for r in found["train"]])
        train_idx, val_idx = split_indices(labels, val_fraction, subset)
        keep = sorted({*train_idx.tolist(), *val_idx.tolist()})
        if len(keep) < len(found["train"]):  # the frames of these alone (a cache of their own)
            where = {i: k for k, i in enumerate(keep)}
            found["train"] = [found["train"][i] for i in keep]
            chosen = tuple(torch.tensor([where[i] for i in idx.tolist()]) for idx in (train_idx, val_idx))
    framing = Framing(time_steps, denoise_us, downsample, bool(first_saccade_only), frame_ms)
    parts = {s: cached_frames(entry, s, found[s], classes, cache_dir, framing)
             for s in (("test",) if test_only else ("train",) if train_only else ("train", "test"))}
    for s, part in parts.items():
        if len(part) == 0:
            raise UsageError(f"{entry.name}: the {s} split has no samples")
    train, test = parts.get("train"), parts.get("test")
    return DataSet(train, test, None if train is None else train.labels, None if test is None else test.labels, classes,
                   frame_shape(entry, time_steps, downsample)[1:], events=True, split=split, chosen=chosen)


# --- the N-MNIST file format (the simulator writes it) ---------------------------------------

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
