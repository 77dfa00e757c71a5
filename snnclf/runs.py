"""Run folders: ``<save_dir>/<run>/{best,last}.pt`` and ``<log_dir>/<run>/{config.json,
metrics.csv,train.log,eval.json,confusion_matrix.csv}``. Every file is written to a temporary
name and renamed, so a killed process never leaves a half-written one."""
import csv
import json
import os
import pickle
import re
import secrets
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import UsageError

FORMAT = "snnclf-checkpoint"
VERSION = 1
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
    confusion_csv = property(lambda self: self.log_dir / "confusion_matrix.csv")

    def exists(self):
        return self.ckpt_dir.exists() or self.log_dir.exists()

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
            raise UsageError(f"cannot write the run's files in {err.filename or folder} "
                             f"({err.strerror or err}): choose another --save_dir/--log_dir or free "
                             "the folder") from None


def open_run(name, save_dir, log_dir):
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise UsageError(f"--run {name!r} is not a usable run name: use letters, digits, '-', '_' or '.'")
    return Run(name, Path(save_dir) / name, Path(log_dir) / name)


def atomic_write(path, write, mode="w"):
    """Write through ``write(file)`` to a temporary file beside ``path``, then rename it over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full disk, a folder made read-only: the previous file is intact
        Path(tmp).unlink(missing_ok=True)
        raise UsageError(f"could not write {path} ({err.strerror or err}); the previous version is "
                         "intact: free space or fix permissions, then go on with --resume") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if not found:  # not a pickle this loader reads: text, random bytes, odd pickle opcodes
            raise UsageError(f"{path} is not a readable checkpoint: it is corrupt, truncated or of "
                             "another format") from None
        raise UsageError(f"{path} holds objects a safe (weights-only) load refuses (it would call "
                         f"{found[1]}); "
                         "it was not made by snnclf or was tampered with: do not load it") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise UsageError(f"{path} is not a readable checkpoint ({type(err).__name__}): it is corrupt, "
                         "truncated or of another format") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise UsageError(f"{path} is not an snnclf checkpoint: pass a best.pt or last.pt that snnclf wrote")
    return checkpoint


def write_json(path, obj):
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2) + "\n"))


def write_text(path, text):
    atomic_write(path, lambda f: f.write(text))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_metrics(path, rows):
    """All rows so far, rewritten whole (a few hundred rows at most), one per epoch."""
    def write(f):
        out = csv.DictWriter(f, METRIC_FIELDS)
        out.writeheader()
        out.writerows(rows)
    atomic_write(path, write)


def read_metrics(path):
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()}
                for row in csv.DictReader(f)]


def write_csv(path, header, rows):
    def write(f):
        out = csv.writer(f)
        out.writerow(header)
        out.writerows(rows)
    atomic_write(path, write)


def checkpoint_path(run, checkpoint, save_dir):
    """The checkpoint a command reads: the file ``checkpoint`` if given, else run ``run``'s
    ``best.pt`` (with no run named, the most recently trained one's)."""
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
