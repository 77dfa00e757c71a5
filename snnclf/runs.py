"""Run folders: ``<save_dir>/<run>/{best,last}.pt`` and ``<log_dir>/<run>/{config.json,
metrics.csv,train.log,eval.json,confusion_matrix.csv}``, and what a checkpoint and
``config.json`` hold. Every file is written to a temporary name and renamed, so a killed process
never leaves a half-written one."""
import csv
import json
import math
import os
import pickle
import re
import secrets
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import filelock
import torch

from . import __version__
from .errors import UsageError, WriteError, write_error

MAX_NAME_BYTES = 200  # a run name and the files named after it must fit a file name (255 bytes)
FORMAT = "snnclf-checkpoint"
VERSION = 1
# What a run's config.json records beside its options (see :func:`config_record`); a config file
# that is a run's config.json may hold these, and they are not options.
RECORDED = ("model_name", "in_shape", "num_classes", "class_names", "data_split", "num_params", "num_train", "num_val",
            "num_test", "processes", "global_batch_size", "snnclf_version", "torch_version")
METRIC_FIELDS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                 "seconds", "data_seconds", "spikes_per_sample"]


@dataclass
class Run:
    name: str
    ckpt_dir: Path
    log_dir: Path

    last = property(lambda self: self.ckpt_dir / "last.pt")
    best = property(lambda self: self.ckpt_dir / "best.pt")
    config = property(lambda self: self.log_dir / "config.json")
    metrics = property(lambda self: self.log_dir / "metrics.csv")
    train_log = property(lambda self: self.log_dir / "train.log")
    eval_json = property(lambda self: self.log_dir / "eval.json")

    def exists(self):
        return self.ckpt_dir.exists() or self.log_dir.exists()

    def replace_aside(self):
        """Move this run's folders aside (``--overwrite``), to be removed by
        :meth:`Aside.drop` once the new run has saved a checkpoint, or put back by
        :meth:`Aside.restore` if it fails before that: nothing is deleted until its replacement is safe."""
        moved = []
        try:
            for folder in (self.ckpt_dir, self.log_dir):
                if folder.exists():
                    aside = folder.with_name(f".{folder.name}.replaced-{secrets.token_hex(3)}")
                    folder.rename(aside)
                    moved.append((folder, aside))
        except OSError as err:
            Aside(moved).restore()
            raise WriteError(f"cannot replace run {self.name} ({err.strerror or err}): fix the folders' "
                             "permissions, or choose another --run") from None
        return Aside(moved)

    def prepare(self):
        """Create the run's folders, or say in one line why they cannot be written; a folder it
        made is removed again on failure. Removes temporary files a killed process left behind."""
        made = []
        try:
            for folder in (self.ckpt_dir, self.log_dir):
                made += [p for p in [folder, *folder.parents] if not p.exists()][::-1]
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryFile(dir=folder):  # read-only folders, full disks
                    pass
                for stale in folder.glob(".*.tmp"):
                    stale.unlink()
        except OSError as err:
            for path in reversed(made):
                shutil.rmtree(path, ignore_errors=True)
            raise write_error(err.filename or folder, err, "choose another --save_dir/--log_dir or free the folder",
                              "another --save_dir/--log_dir", folder=True) from None


class RunInUse(UsageError):
    """Another snnclf process holds the run (see :class:`RunLock`)."""


def check_name(name, flag="--run"):
    """``name`` if it can name a folder and the files named after it, or a one-line error."""
    shown = repr(name) if len(str(name)) <= 40 else repr(str(name)[:40]) + "..."
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or os.sep in name
            or "\x00" in name or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES):
        raise UsageError(f"{flag} {shown} is not a usable run name: use at most {MAX_NAME_BYTES} letters, "
                         "digits, '-', '_' or '.', without '/'")
    return name


@dataclass
class Aside:
    """A replaced run's folders, moved aside: [(folder, where it is now)]."""

    moved: list

    def drop(self):
        for _, aside in self.moved:
            shutil.rmtree(aside, ignore_errors=True)
        self.moved = []

    def restore(self):
        for folder, aside in reversed(self.moved):
            shutil.rmtree(folder, ignore_errors=True)
            aside.rename(folder)
        self.moved = []


def open_run(name, save_dir, log_dir):
    check_name(name)
    return Run(name, Path(save_dir) / name, Path(log_dir) / name)


class RunLock:
    """The lock of one run: while a process trains, evaluates or exports a run, no other snnclf
    process writes into its folders (two trainings of one run would mix their files, and one's
    start would delete the other's temporary files). An advisory lock on
    ``<save_dir>/.<run>.lock`` through the ``filelock`` package (fcntl on Unix, msvcrt on
    Windows), so a process that dies releases it. ``create``: make ``save_dir`` to hold the lock
    file (a training); without it, a ``save_dir`` that does not exist means no process trains
    there, and nothing is locked."""

    def __init__(self, run, wait=False, create=False):
        self.run, self.create = run, create
        self.path = run.ckpt_dir.parent / f".{run.name}.lock"
        self._lock = filelock.FileLock(self.path, timeout=-1 if wait else 0)
        self._held = False
        self._made = []  # folders this lock created, removed again if the run wrote nothing there

    def __enter__(self):
        if not self.path.parent.is_dir():
            if not self.create:
                return self
            self._made = [p for p in [self.path.parent, *self.path.parent.parents] if not p.exists()]
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise write_error(self.path.parent, err, "choose another --save_dir or fix its permissions",
                                  "another --save_dir", folder=True) from None
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise RunInUse(f"run {self.run.name} is in use by another snnclf process (training, "
                           "evaluating or exporting it): wait for it to finish, or choose another --run") from None
        except OSError as err:
            raise WriteError(f"cannot lock run {self.run.name} in {self.path.parent} ({err.strerror or err}): "
                             "choose another --save_dir or fix its permissions") from None
        self._held = True
        return self

    def __exit__(self, *exc):
        if self._held:
            self._lock.release()
            self._held = False
        if self._made and [p.name for p in self.path.parent.iterdir()] == [self.path.name]:
            # a save_dir made for a run that wrote nothing (refused, or failed before its first
            # file): leave no empty folders behind
            self.path.unlink(missing_ok=True)
            for folder in self._made:
                try:
                    folder.rmdir()
                except OSError:
                    break


def atomic_write(path, write, mode="w"):
    """Write through ``write(file)`` to a temporary file beside ``path``, then rename it over. A
    failure of the operating system (a full disk, an unwritable folder, a path under a file) or
    of torch's writer on it is one :class:`WriteError`; the previous file, if any, is intact."""
    path, tmp, seen = Path(path), None, None
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "it is a folder", str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _temporary(path)
        with os.fdopen(fd, mode) as f:
            seen = _Watched(f)
            write(seen)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, RuntimeError):
            if seen is None or seen.error is None:
                raise  # not a failed write: a bug, to be seen whole
            err = seen.error  # torch's writer reports the file's failure as a RuntimeError
        kept = "; the previous version is intact" if path.is_file() else ""
        raise write_error(path, err, f"free space, fix the folder's permissions or choose another place{kept}") from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


class _Watched:
    """A file that remembers the operating system's error on a write: torch's checkpoint writer
    swallows it and raises a RuntimeError of its own ("unexpected pos ..."), which alone cannot
    tell a full disk from a bug."""

    def __init__(self, file):
        self._file, self.error = file, None

    def write(self, data):
        try:
            return self._file.write(data)
        except OSError as err:
            self.error = err
            raise

    def __getattr__(self, name):
        return getattr(self._file, name)


def _temporary(path):
    """A new hidden file beside ``path``, opened for writing. Made with mode 0666 so the system
    applies the user's umask, as for any file they create (``mkstemp`` would make it 0600, and
    reading the umask means setting it, which changes process-wide state)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), str(tmp)
        except FileExistsError:
            continue


def save_checkpoint(checkpoint, path):
    atomic_write(path, lambda f: torch.save(checkpoint, f), "wb")


def load_checkpoint(path):
    """A checkpoint dict read with ``weights_only=True``: tensors and plain values only, so a
    file crafted to run code when unpickled is refused and runs nothing."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no checkpoint at {path}: check --run/--checkpoint, or train the run first")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: we refuse anyway
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's wording: "Unsupported global: GLOBAL os.system" (2.4-2.5), "Trying to load
        # unsupported GLOBAL posix.system whose module posix is blocked" (2.6 on)
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(err))
        if not found:  # not a pickle this loader reads: text, random bytes, odd pickle opcodes
            raise UsageError(f"{path} is not a readable checkpoint: it is corrupt, truncated or of "
                             "another format") from None
        raise UsageError(f"{path} holds objects a safe (weights-only) load refuses (it would call "
                         f"{found[1]}); "
                         "it was not made by snnclf or was tampered with: do not load it") from None
    except Exception as err:  # noqa: BLE001 -- the unpickler fails on foreign bytes with any error
        # (IndexError, KeyError, UnicodeDecodeError, RuntimeError, zipfile.BadZipFile, ...): all are
        # "not a checkpoint", said in one line
        raise UsageError(f"{path} is not a readable checkpoint ({type(err).__name__}): it is corrupt, "
                         "truncated or of another format") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise UsageError(f"{path} is not an snnclf checkpoint: pass a best.pt or last.pt that snnclf wrote")
    return checkpoint


def new_file(path, flag):
    """Check that ``path`` can be written as a new file (an output the user named): refuse an
    existing file, which might be an image or a checkpoint of theirs, and a folder."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder: name a file in it")
    if path.exists():
        raise UsageError(f"{flag} {path} exists: remove it or name a new file (snnclf never writes over it)")
    return path


def check_keys(checkpoint, path, keys):
    """Refuse a checkpoint that carries snnclf's marker but lacks what snnclf writes in it."""
    missing = [k for k in keys if k not in checkpoint]
    if missing:
        raise UsageError(f"{path} lacks {', '.join(map(repr, missing))}, which every snnclf checkpoint holds: "
                         "it is damaged or was not written by snnclf train")
    return checkpoint


def write_json(path, obj):
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2) + "\n"))


def write_text(path, text):
    atomic_write(path, lambda f: f.write(text))


def read_json(path):
    """A JSON file a run wrote, or a one-line error naming it."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UsageError(f"{path} cannot be read ({getattr(err, 'strerror', None) or type(err).__name__}): "
                         "it is damaged; restore it or remove the run") from None


def write_metrics(path, rows):
    """All rows so far, rewritten whole (a few hundred rows at most), one per epoch: the columns
    of :data:`METRIC_FIELDS`, then any others the rows have (``rate_<layer>`` with --rate_reg)."""
    fields = METRIC_FIELDS + [k for k in (rows[0] if rows else {}) if k not in METRIC_FIELDS]

    def write(f):
        out = csv.DictWriter(f, fields)
        out.writeheader()
        out.writerows(rows)
    atomic_write(path, write)


def read_metrics(path):
    """The rows of a run's ``metrics.csv``, or a one-line error naming the file if it is damaged."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not set(METRIC_FIELDS) <= set(reader.fieldnames):
                raise ValueError("its header is not snnclf's")
            return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in reader]
    except (OSError, UnicodeDecodeError, ValueError, TypeError, csv.Error) as err:
        raise UsageError(f"{path} cannot be read ({getattr(err, 'strerror', None) or err}): it is damaged; "
                         "restore it or remove the run") from None


def write_csv(path, header, rows):
    def write(f):
        out = csv.writer(f)
        out.writerow(header)
        out.writerows(rows)
    atomic_write(path, write)


def trained_checkpoint(run, checkpoint, save_dir):
    """The checkpoint a command reads: the file ``checkpoint`` if given, else run ``run``'s
    ``best.pt`` (the validation-selected epoch; with no run named, the most recently trained one's)."""
    if checkpoint is not None:
        return Path(checkpoint)
    return open_run(run or latest_run(save_dir), save_dir, save_dir).best


def latest_run(save_dir):
    """The name of the run whose ``last.pt`` was written most recently."""
    found = sorted(Path(save_dir).glob("*/last.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UsageError(f"no trained run in {save_dir}/: train one with 'snnclf train', or pass "
                         "--run NAME / --checkpoint PATH")
    return found[-1].parent.name


def selection_key(accuracy, loss):
    """How epochs are ranked to choose a run's best: the highest validation accuracy, and among
    equal accuracies the lowest validation loss (a small validation set often reaches 100% early
    and stays there). A larger key is better."""
    return (accuracy, -loss)


# --- what a run's files hold -------------------------------------------------------------------

@dataclass
class RunState:
    """Where a run stands: what ``last.pt`` restores and each epoch moves on."""

    epoch: int = 0  # whole epochs done
    best_accuracy: float = -1.0  # validation accuracy of the best epoch so far
    best_epoch: int = 0
    best_loss: float = math.inf  # its validation loss (breaks ties in accuracy)
    rows: list = field(default_factory=list)  # the rows of metrics.csv so far
    midway: Optional[dict] = None  # an epoch stopped part-way: {"epoch", "totals", "seconds"}

    def improved_by(self, accuracy, loss):
        return selection_key(accuracy, loss) > selection_key(self.best_accuracy, self.best_loss)


def config_record(options, model_name, data, splits, num_params, processes, batch_size):
    """What ``config.json`` holds: the run's ``options`` and the facts of :data:`RECORDED`."""
    record = {**options, "model_name": model_name, "in_shape": list(data.in_shape),
              "num_classes": data.num_classes, "class_names": data.class_names, "data_split": data.split,
              "num_params": num_params,
              "num_train": len(splits["train"]), "num_val": len(splits["val"]), "num_test": None if splits["test"] is None else len(splits["test"]),
              "processes": processes, "global_batch_size": batch_size * processes,
              "snnclf_version": __version__, "torch_version": torch.__version__}
    assert set(record) - set(options) == set(RECORDED)
    return record


def make_checkpoint(state, options, model_name, model_kwargs, class_names, model, optimizer, scheduler=None,
                    scaler=None, rngs=None, per_process=False):
    """The checkpoint of a run at ``state``: a plain dict of tensors and plain values. ``rngs``
    holds every process's random states (``per_process``: several processes, all kept)."""
    return {
        "format": FORMAT, "version": VERSION, "model_name": model_name, "model_kwargs": model_kwargs,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": state.epoch, "midway": state.midway, "best_val_accuracy": state.best_accuracy,
        "best_epoch": state.best_epoch, "best_val_loss": state.best_loss,
        "metrics": state.rows[-1] if state.rows else None, "config": options, "class_names": class_names,
        "rng": rngs[0], "rng_per_process": rngs if per_process else None, "snnclf_version": __version__,
    }


def midway(checkpoint):
    """The part-way epoch a checkpoint holds, or ``None`` (``"partial"`` in checkpoints of
    snnclf before the key was renamed)."""
    return checkpoint.get("midway", checkpoint.get("partial"))


def restore(checkpoint, model, optimizer, scheduler=None, scaler=None, rows=()):
    """Load a checkpoint's training state into the parts; its :class:`RunState` (with the
    metrics.csv ``rows`` of the epochs it has done)."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    if scaler is not None and checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])
    done = checkpoint["epoch"]
    return RunState(done, checkpoint["best_val_accuracy"], checkpoint["best_epoch"],
                    checkpoint.get("best_val_loss", math.inf), [r for r in rows if r["epoch"] <= done],
                    midway(checkpoint))
