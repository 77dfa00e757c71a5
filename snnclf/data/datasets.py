"""Static image data sets, each loaded once into tensors: digits (bundled), mnist, fashion-mnist."""
import logging
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from ..errors import UsageError, write_error

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

log = logging.getLogger(__name__)

SPLIT_SEED = 0  # the seed of every split snnclf makes, whatever --seed: runs stay comparable

@dataclass
class DataSet:
    """A data set's train and test parts as torch ``Dataset`` s whose items are (input, label);
    indexing with a list of indices returns a whole batch. Static images are [C, H, W] in [0, 1];
    event data sets (``events=True``) give frames [T, C, H, W] of event counts."""

    train: Dataset  # None when only the test split was asked for (load_dataset's test_only)
    test: Dataset
    train_y: torch.Tensor  # [N] int64, for class-balanced splits (None with train)
    test_y: torch.Tensor  # [M] int64
    class_names: list
    in_shape: tuple  # (C, H, W) of one image or one frame
    events: bool = False
    split: str = "official"  # how train and test were divided: recorded in each run's config.json
    chosen: Optional[tuple] = None  # (train, validation) indices into ``train`` when only those were read (--subset)

    @property
    def num_classes(self):
        return len(self.class_names)


def split_indices(train_y, val_fraction=0.1, subset=None):
    """(train, validation) indices into a training split of labels ``train_y``: the validation
    split (``val_fraction`` of it, class-balanced) is held out of train and selects the best epoch;
    ``subset`` keeps that many training samples and shrinks the validation split in proportion.
    ``snnclf.data.make_splits`` takes them, and an event data set asked for a subset frames only them."""
    n = len(train_y)
    n_val = max(1, round(n * val_fraction))
    if n_val >= n:
        raise UsageError(f"--val_fraction {val_fraction} leaves no training images out of {n}")
    val_idx, train_idx = stratified(train_y, n_val, SPLIT_SEED)
    if subset is not None and subset < len(train_idx):
        keep, _ = stratified(train_y[train_idx], subset, SPLIT_SEED)
        train_idx = train_idx[keep]
        n_val = max(1, round(subset * val_fraction / (1.0 - val_fraction)))
        keep, _ = stratified(train_y[val_idx], n_val, SPLIT_SEED)
        val_idx = val_idx[keep]
    return train_idx, val_idx


def images(train_x, train_y, test_x, test_y, class_names, split="official"):
    """A static :class:`DataSet` held in memory: images [N, C, H, W] and labels [N]."""
    return DataSet(TensorDataset(train_x, train_y), TensorDataset(test_x, test_y), train_y, test_y,
                   list(class_names), tuple(train_x.shape[1:]), split=split)


def scratch_folder(parent, prefix, flag="--cache_dir"):
    """A new hidden temporary folder ``<parent>/<prefix><8 hex digits>`` (``parent`` created if
    needed), where a cache or a generated data set is written before it is renamed into place; an
    unwritable ``parent`` is a one-line error naming ``flag``. Made with mode 0777 so the system
    applies the user's umask, as for a folder made by hand, once it is in place (``mkdtemp``'s
    would stay private). The folder is locked (``flock``) while this process lives: the scratch
    folders of ``prefix`` that no living process holds (a process killed by SIGKILL or a power
    cut) are removed first. :func:`release_scratch` lets the lock go once the folder is renamed."""
    parent = Path(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(parent, prefix)
        while True:
            folder = parent / f"{prefix}{secrets.token_hex(4)}"
            try:
                folder.mkdir(0o777)
            except FileExistsError:
                continue
            if _hold(folder):
                return folder
    except OSError as err:
        raise write_error(parent, err, f"choose another {flag} or fix its permissions", f"another {flag}",
                          folder=True) from None


_HELD = {}  # scratch folder -> the descriptor whose lock says its maker lives


def _hold(folder):
    """Lock ``folder`` for this process's life; False if another process removed it first (it
    took the folder for a dead one's in the instant before the lock)."""
    if fcntl is None:  # no flock (Windows): nothing is locked, and nothing is taken for stale
        return True
    fd = os.open(folder, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(folder))
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return False
    _HELD[str(folder)] = fd
    return True


def release_scratch(folder):
    """Let the lock of a scratch folder go (it was renamed into place, or removed)."""
    fd = _HELD.pop(str(folder), None)
    if fd is not None:
        os.close(fd)


def _remove_stale(parent, prefix):
    """Remove the scratch folders of ``prefix`` in ``parent`` whose lock no living process holds."""
    if fcntl is None:
        return
    for folder in parent.iterdir():
        name = folder.name
        if not (name.startswith(prefix) and re.fullmatch(r"[0-9a-f]{8}", name[len(prefix):])) \
                or str(folder) in _HELD or folder.is_symlink() or not folder.is_dir():
            continue
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its maker is alive
            os.close(fd)
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
            log.info("removed %s, left by a process that was killed while writing it", folder)
        finally:
            os.close(fd)


@contextmanager
def removed_on_failure(folder):
    """Run a block that may create ``folder``; if it fails, remove what it created of the path
    (a failed download leaves no empty folders behind)."""
    made = [p for p in [Path(folder), *Path(folder).parents] if not p.exists()]
    try:
        yield
    except BaseException:
        if made:
            shutil.rmtree(made[-1], ignore_errors=True)  # the outermost folder that was new
        raise


def stratified(labels, size, seed=SPLIT_SEED):
    """Indices of a class-balanced sample of ``size`` items of ``labels`` [N], and of the rest
    (a random sample, with a warning, where a balanced one is impossible): every split snnclf makes."""
    from sklearn.model_selection import train_test_split

    index = torch.arange(len(labels)).numpy()
    if size >= len(labels):
        return torch.from_numpy(index), torch.zeros(0, dtype=torch.int64)
    counts = torch.bincount(labels)
    classes = int((counts > 0).sum())
    balanced = counts[counts > 0].min() >= 2 and min(size, len(labels) - size) >= classes
    if not balanced:
        log.warning("a class-balanced split of %d of %d samples is impossible (%s); taking a random, "
                    "unbalanced one", size, len(labels),
                    "a class has a single sample" if counts[counts > 0].min() < 2 else
                    f"one part would be smaller than the {classes} classes")
    stratify = labels.numpy() if balanced else None
    picked, rest = train_test_split(index, train_size=size, stratify=stratify, random_state=seed)
    return torch.from_numpy(picked), torch.from_numpy(rest)


def digits(data_dir=None):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images), a fixed stratified
    80/20 train/test split. Never downloads anything; ``data_dir`` is not used."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # pixel values are 0..16
    y = torch.tensor(bunch.target, dtype=torch.int64)
    train_idx, test_idx = train_test_split(
        torch.arange(len(y)).numpy(), test_size=0.2, stratify=y.numpy(), random_state=SPLIT_SEED
    )
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return images(x[train_idx], y[train_idx], x[test_idx], y[test_idx], [str(i) for i in range(10)],
                  split=f"seeded: stratified 80%/20% of the images (seed {SPLIT_SEED})")


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _torchvision_images(cls, data_dir, name):
    """Read an MNIST-layout data set through torchvision into tensors (its ``.data``, not PIL images).

    torchvision looks for ``<data_dir>/<cls.__name__>/raw/<IDX files>``; when they are missing it
    tries to download them, and a failed download (offline) becomes one line naming the files."""
    from torchvision.datasets.utils import extract_archive

    raw = os.path.join(data_dir, cls.__name__, "raw")
    for file in IDX_FILES:  # files downloaded by hand often arrive gzipped
        path = os.path.join(raw, file)
        if not os.path.isfile(path) and os.path.isfile(path + ".gz"):
            extract_archive(path + ".gz", raw)
    if not all(os.path.isfile(os.path.join(raw, f)) for f in IDX_FILES):
        log.debug("%s: files not in %s, trying to download them", name, raw)
        try:
            with removed_on_failure(raw):
                cls(data_dir, train=True, download=True)  # also unpacks .gz files that are present
        except Exception as err:  # any network or archive failure means the same to the user
            raise UsageError(
                f"{name}: the files are not in {raw} and downloading them failed "
                f"({type(err).__name__}); put {', '.join(IDX_FILES)} (or their .gz) there "
                f"(or pass --data_dir to the folder that holds {cls.__name__}/raw)"
            ) from None
    try:
        splits = [cls(data_dir, train=train, download=False) for train in (True, False)]
    except Exception as err:  # torchvision asserts or fails to reshape on a malformed file
        raise UsageError(
            f"{name}: the IDX files in {raw} are corrupt or truncated "
            f"({str(err) or type(err).__name__}); delete them and download them again"
        ) from None
    (train, test) = splits
    for part in splits:
        if part.data.ndim != 3 or len(part.data) != len(part.targets) or len(part.data) == 0:
            raise UsageError(
                f"{name}: the IDX files in {raw} do not hold matching images and labels "
                f"({tuple(part.data.shape)} images, {len(part.targets)} labels); replace them"
            )

    def scaled(part):
        return part.data.unsqueeze(1).float().div_(255.0)  # [N, 1, 28, 28] in [0, 1]

    names = [c.split(" - ")[-1] for c in train.classes]
    labels = torch.cat([train.targets, test.targets])
    if labels.min() < 0 or labels.max() >= len(names):
        raise UsageError(f"{name}: labels in {raw} lie outside 0..{len(names) - 1}; replace the label files")
    return images(scaled(train), train.targets.long(), scaled(test), test.targets.long(), names)


def mnist(data_dir):
    import torchvision

    return _torchvision_images(torchvision.datasets.MNIST, data_dir, "mnist")


def fashion_mnist(data_dir):
    import torchvision

    return _torchvision_images(torchvision.datasets.FashionMNIST, data_dir, "fashion-mnist")
