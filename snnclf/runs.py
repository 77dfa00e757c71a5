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
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from . import __version__
from .errors import UsageError

FORMAT = "snnclf-checkpoint"
VERSION = 1
# What a run's config.json records beside its options (see :func:`config_record`); a config file
# that is a run's config.json may hold these, and they are not options.
RECORDED = ("model_name", "in_shape", "num_classes", "class_names", "num_params", "num_train", "num_val",
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
              "num_classes": data.num_classes, "class_names": data.class_names, "num_params": num_params,
              "num_train": len(splits["train"]), "num_val": len(splits["val"]), "num_test": len(splits["test"]),
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
