"""Seeding, random-number state, device choice, optional packages and the CPU allocator, shared by
the commands."""
import contextlib
import ctypes
import ctypes.util
import importlib
import random

import numpy as np
import torch

from .errors import UsageError

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters, from glibc's malloc.h


def keep_freed_memory():
    """Let the CPU reuse freed tensor memory instead of returning it to the system.

    glibc serves every allocation above 32 MB with a fresh ``mmap`` and unmaps it on free, so
    each large activation of a training step (a [T*B, ...] tensor is often 50-200 MB) is
    page-faulted in again, zero-filled by the kernel: on this project's 2-core test machine that
    made an element-wise op on an 80 MB tensor 6x slower than the arithmetic. PyTorch has a
    caching allocator for CUDA but none for the CPU, so this turns off glibc's ``mmap`` path and
    its trimming (what jemalloc or tcmalloc would give, without preloading either). Memory freed
    by one step then serves the next. Returns whether the setting took (glibc only)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2 ** 30))
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, Windows, musl)
        return False


def need(module, what, install):
    """Import the optional package ``module``, or say in one line that ``what`` needs it and
    which ``install`` brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{what} needs the {module} package: {install}") from None


def seed_everything(seed):
    """Seed Python, NumPy and torch (every device) from one number."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def seeded(seed, device=None):
    """Draw torch's random numbers (rate spikes, dropout) from ``seed`` while the block lasts,
    then give back the global random state as it was: evaluation repeats exactly, and a
    training run around it draws what it would have drawn anyway."""
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def rng_state():
    """Every global random state as plain data a ``weights_only`` load accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_device(name):
    """``auto`` picks CUDA, then MPS, then CPU; a named device must exist."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if name == "mps" and not mps:
        raise UsageError("--device mps: no Apple MPS device is available here; use --device cpu or auto")
    return torch.device(name)
