"""Data: data sets (a registry), train/validation/test splits, batch loaders and encoders."""
import logging
from pathlib import Path

import torch
from torch.utils.data import (BatchSampler, DataLoader, DistributedSampler, RandomSampler,
                              SequentialSampler, Subset)

from ..errors import UsageError
from ..flags import checked, number
from ..registry import Registry
from . import datasets, event_sets, events, simulate
from .datasets import SPLIT_SEED, DataSet, split_indices, stratified
from .encoders import ENCODERS
from .events import CACHE_DIR

# Every data set, in one place. Each declares its event entry (an EventSet: it gives event frames,
# takes the event options and is its own encoding; None for images) and which files it reads under
# --data_dir: ("idx", folder) for <folder>/raw/*-ubyte in torchvision's layout, an EventSet for the
# recordings it names, None for data bundled with a library or made by snnclf; and an image set its
# input shape and classes, ((C, H, W), classes), which an event set's entry gives instead (shape None).
DATASETS = Registry("data set", declares=("events", "reads", "shape"))
DATASETS.register("digits", events=None, reads=None, shape=((1, 8, 8), 10))(datasets.digits)
DATASETS.register("mnist", events=None, reads=("idx", "MNIST"), shape=((1, 28, 28), 10))(datasets.mnist)
DATASETS.register("fashion-mnist", events=None, reads=("idx", "FashionMNIST"), shape=((1, 28, 28), 10))(
    datasets.fashion_mnist)
for _entry in event_sets.REAL:
    DATASETS.register(_entry.name, events=_entry, reads=_entry, shape=None)(event_sets.loader(_entry))
DATASETS.register("digits-events", events=simulate.DIGITS_EVENTS, reads=None, shape=None)(simulate.digits_events)
DATASETS.register("nmnist-sim", events=simulate.NMNIST_SIM, reads=("idx", "MNIST"), shape=None)(simulate.nmnist_sim)
DATASETS.register("fashion-events", events=simulate.FASHION_EVENTS, reads=("idx", "FashionMNIST"), shape=None)(
    simulate.fashion_events)
DATASETS.register("event-folder", events=simulate.EVENT_FOLDER, reads=simulate.EVENT_FOLDER, shape=None)(
    simulate.event_folder)


log = logging.getLogger(__name__)

# The checks of the values the splits and loaders take; the flags use them too (snnclf.config).
CHECKS = {"val_fraction": number(float, 0, 1, True, True), "subset": number(int, 1),
          "batch_size": number(int, 1)}

DATA_DIR = "data"  # where data files are looked for unless --data_dir says otherwise


def list_datasets():
    return DATASETS.names()


def list_encoders():
    return ENCODERS.names()


def get_encoder(name):
    return ENCODERS.lookup(name, "--encoding")


def is_event_dataset(name):
    """Whether data set ``name`` gives event frames (its frames are the input: no encoding)."""
    return event_set(name) is not None


def event_set(name):
    """The :class:`~snnclf.data.events.EventSet` of data set ``name``, or None for images."""
    return DATASETS.info(name, "--dataset")["events"]


def known_shape(name, downsample=None):
    """(input shape (C, H, W), classes) of data set ``name`` as far as it is known without reading
    a file: an image set's, or an event set's frames of its sensor at ``downsample`` (the entry's
    default when ``None``) when the entry names its classes; else ``None``."""
    declared = DATASETS.info(name, "--dataset")["shape"]
    if declared is not None:
        return declared
    entry = event_set(name)
    if entry is None or entry.classes is None:
        return None
    width, height = entry.frame_size(downsample)
    return (entry.sensor[2], height, width), len(entry.classes)


def load_dataset(name, data_dir=DATA_DIR, time_steps=None, test_only=False, train_only=False, subset=None,
                 val_fraction=0.1, **event_options):
    """The named data set as a :class:`DataSet`. Event data sets make ``time_steps`` frames per
    sample and take ``event_options`` (denoise_us, downsample, first_saccade_only, frame_ms, cache_dir);
    given to a static data set, those are refused. ``test_only``: only the test split will be
    read, so an event data set leaves its training recordings unframed (``train`` is None); a
    data set of images, held in memory, is whole either way; with ``train_only`` an event data set's
    official test recordings need not be there (training does not use them): without them ``test``
    is None, and where they are they are framed, ready for ``eval``.
    With ``subset`` (and the run's ``val_fraction``) an event data set frames only the training
    recordings :func:`make_splits` will use (see ``DataSet.chosen``)."""
    builder = DATASETS.lookup(name, "--dataset")
    given = {k: v for k, v in event_options.items() if v is not None and v is not False}  # a switch left off is not given
    if not is_event_dataset(name):
        for key in given:
            raise UsageError(f"--{key} applies to event data sets only "
                             f"({', '.join(n for n in DATASETS.names() if is_event_dataset(n))}), not {name}")
        return builder(data_dir=data_dir)
    if subset is not None and not test_only:
        _check_split(val_fraction, subset)
        given.update(subset=subset, val_fraction=val_fraction)
    return builder(data_dir=data_dir, time_steps=time_steps, test_only=test_only, train_only=train_only, **given)


def check_files(name, data_dir=DATA_DIR, train_only=False):
    """Refuse, in one line, a data set whose files (as its entry declares them) are not under
    ``data_dir``: what a sweep checks for each of its points before it trains the first.
    ``train_only``: the official test split need not be there (a search scores on validation)."""
    reads = DATASETS.info(name, "--dataset")["reads"]
    if reads is None:
        return
    if isinstance(reads, events.EventSet):
        problem = events.missing(reads, data_dir, train_only=train_only)
        if problem:
            raise UsageError(f"--dataset {problem}")
        return
    kind, folder = reads
    raw = Path(data_dir) / folder / "raw"
    missing = [f for f in datasets.IDX_FILES if not (raw / f).is_file() and not (raw / f"{f}.gz").is_file()]
    if missing:
        raise UsageError(f"--dataset {name}: {', '.join(missing)} are not in {raw}: put them there (or their "
                         f".gz), or pass --data_dir to the folder that holds {folder}/raw")


def _check_split(val_fraction, subset):
    checked("val_fraction", CHECKS["val_fraction"], val_fraction)
    if subset is not None:
        checked("subset", CHECKS["subset"], subset)


def make_splits(data, val_fraction=0.1, subset=None):
    """Train, validation and test datasets (the first two are :class:`Subset` s of ``data.train``)
    as :func:`split_indices` chooses them. The test split is never used for selection. An event
    data set loaded with the same ``subset`` framed only the recordings chosen (``data.chosen``:
    where they are in its ``train``)."""
    _check_split(val_fraction, subset)
    if data.chosen is not None:
        train_idx, val_idx = data.chosen
    else:
        train_idx, val_idx = split_indices(data.train_y, val_fraction, subset)
    return {"train": Subset(data.train, train_idx.tolist()), "val": Subset(data.train, val_idx.tolist()),
            "test": data.test}


def make_loader(dataset, batch_size, shuffle=False, seed=0, epoch=0, skip=0, rank=0, world=1):
    """Batches of an in-memory dataset, of ``batch_size`` per process.

    The sampler yields whole index lists, so each batch is one gather instead of ``batch_size``
    item lookups and a collate. A shuffled loader draws epoch ``epoch``'s order from ``seed +
    epoch``, so any epoch can be replayed; ``skip`` leaves out its first batches (those an
    interrupted epoch already trained on). With ``world`` processes, torch's
    ``DistributedSampler`` (same seed, ``set_epoch``) gives this ``rank`` every world-th sample of
    the same order, so the processes' batches together are the batches of one process with a
    ``world`` times larger batch; unshuffled, the shards are disjoint and uneven, for evaluation."""
    checked("batch_size", CHECKS["batch_size"], batch_size)
    if world > 1 and shuffle:
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
    elif world > 1:
        sampler = list(range(rank, len(dataset), world))
    elif shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed + epoch))
    else:
        sampler = SequentialSampler(dataset)
    batches = BatchSampler(sampler, batch_size, drop_last=False)
    if skip:
        batches = list(batches)[skip:]
    # A DataLoader draws a base seed from its generator each time it is iterated; without its own
    # generator it would take one from the global RNG, and a run resumed mid-epoch (global RNG
    # restored before the loader starts) would then differ from one never stopped.
    return DataLoader(dataset, sampler=batches, batch_size=None, generator=torch.Generator().manual_seed(seed))


__all__ = ["CACHE_DIR", "DATA_DIR", "DATASETS", "CHECKS", "DataSet", "check_files", "event_set", "get_encoder", "is_event_dataset", "list_datasets", "list_encoders", "load_dataset",
           "make_loader", "make_splits"]
