"""The exception type for mistakes a user can fix (the CLI prints it as one line, exit 2), and the
one line a refused write becomes."""
import os
from pathlib import Path


class UsageError(Exception):
    """Bad input: the message says what is wrong and what to do."""


class WriteError(UsageError):
    """A file could not be written (a full disk, an unwritable folder); nothing was replaced."""


def file_above(path, folder=False):
    """The file that stands where a folder of ``path`` (or, with ``folder``, ``path`` itself) must
    be, or ``None``."""
    path = Path(path)
    above = next((p for p in [*[path] * folder, *path.parents] if os.path.lexists(p)), None)
    return above if above is not None and not above.is_dir() else None


def write_error(path, err, advice="free space, fix the folder's permissions or choose another place",
                place="another place", folder=False):
    """The one line for a write of ``path`` (a file, or with ``folder`` a folder to make) that the
    operating system refused with ``err``. A file where a folder must be (``--csv img.png/out.csv``)
    is named as such: the system's own words for it, 'File exists' or 'Not a directory', point at
    space and permissions instead."""
    above = file_above(path, folder)
    if above is not None:
        return WriteError(f"cannot write {path}: {above} is a file, not a folder (nothing was changed): "
                          f"choose {place}")
    return WriteError(f"cannot write {path} ({getattr(err, 'strerror', None) or err}): {advice}")


class NonFiniteLoss(UsageError):
    """The loss became NaN or infinite: training cannot go on from there."""


class Interrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after saving ``last.pt``; exit with 128 + signum."""

    def __init__(self, signum):
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum
