"""The event-camera data sets, one :class:`~snnclf.data.events.EventSet` entry each, read through
tonic's own classes from the files its download leaves (``--data_dir`` holds the folder tonic names
after the class), and, where the authors publish another layout, that one too (an entry's
``alternatives``: the original POKER-DVS and CIFAR10-DVS recordings, DVS Gesture's IBM release),
read by :mod:`snnclf.data.aedat`. Adding a data set tonic reads is one entry here; ``snnclf.data``
registers them.

Sensor sizes, classes and file layouts are tonic's. ``reference`` is a published accuracy read in
the paper or its code's README; where none could be checked (N-Caltech101, ASL-DVS) it is empty
and the manual says so. The default ``downsample`` keeps frames small
enough for a small convolutional SNN on a laptop CPU; ``--downsample 1`` gives the full sensor."""
import re
from dataclasses import replace
from functools import partial

import numpy as np
import tonic

from . import aedat
from .events import CACHE_DIR, EventSet, event_dataset


def also(entry, layout_name, files, page, **changes):
    """``entry`` with one more layout of its data set: the same name, title, sensor, classes, split
    share and default downsampling (derived here, so they cannot differ), its own ``files`` under
    the entry's folder (``subfolder`` to change it), ``page`` and reader (``read``, ``clips``,
    ``label``, ...); none of tonic's reading options, download, reference or recipe."""
    fresh = dict(item=str, needs=(), download=False, obtain=None, reference="", recipe=None, alternatives=())
    layout = replace(entry, files=files, page=page, layout_name=layout_name, **{**fresh, **changes})
    return replace(entry, alternatives=(*entry.alternatives, layout))


NMNIST = EventSet(
    "nmnist", "N-MNIST", tonic.datasets.NMNIST, (34, 34, 2),
    {"train": "Train/*/*.bin", "test": "Test/*/*.bin"}, tuple(str(d) for d in range(10)),
    "https://www.garrickorchard.com/datasets/n-mnist", starts_at_zero=True, saccades=(0, 105, 210, 306),
    download=True,
    reference="99.61%: PLIF, Fang et al., ICCV 2021 (arXiv:2007.05785), T=10; best test epoch, 99.57% "
              "when a validation split picks it",
    recipe=dict(time_steps=10, shift=2, epochs=25, batch_size=128))

CIFAR10_DVS = EventSet(
    "cifar10-dvs", "CIFAR10-DVS", tonic.datasets.CIFAR10DVS, (128, 128, 2), {"all": "*/*.aedat4"},
    tuple(tonic.datasets.CIFAR10DVS.classes), "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671",
    test_fraction=0.1, downsample=0.5, needs=(("aedat", "aedat>=2"),), layout_name="tonic's AEDAT 4 copy",
    reference="74.80%: PLIF, Fang et al., ICCV 2021 (arXiv:2007.05785), 128x128, T=20, the first 900 "
              "recordings of each class for training; best test epoch, 69.00% when a validation split picks it",
    recipe=dict(time_steps=10, shift=4, epochs=30, batch_size=64))
# The original release: one zip a class, each unpacking to <class>/cifar10_<class>_<n>.aedat, jAER
# AEDAT 2.0 from a DVS128 (tonic's copy converted them to AEDAT 4).
CIFAR10_DVS = also(CIFAR10_DVS, "the original AEDAT 2.0 release", {"all": "*/*.aedat"},
                   "https://figshare.com/articles/dataset/CIFAR10-DVS/4724671",
                   read=partial(aedat.read_dvs128, transpose=True))
CIFAR10_DVS_ORIGINAL = CIFAR10_DVS.alternatives[0]

def _gesture_user(path):
    """The user number of an IBM recording's name, userNN_<lighting>.aedat (0 for another name,
    which the file scan names as misnamed)."""
    match = re.fullmatch(r"user(\d+)_\w+\.aedat", path.name)
    return int(match.group(1)) if match else 0


def _gesture_file(path):
    if not _gesture_user(path):
        raise ValueError(f"{path.name} is not userNN_<lighting>.aedat")
    return ""  # a file of all gestures: its clips carry the classes


def _gesture_clips(path):
    """The labelled gestures of one IBM recording: its ``_labels.csv`` beside it."""
    return aedat.read_labels(path.with_name(path.stem + "_labels.csv"))


DVS_GESTURE = EventSet(
    "dvs-gesture", "DVS Gesture", tonic.datasets.DVSGesture, (128, 128, 2),
    {"train": "ibmGestureTrain/*/*.npy", "test": "ibmGestureTest/*/*.npy"},
    tuple(tonic.datasets.DVSGesture.classes), "https://research.ibm.com/interactive/dvsgesture/",
    label=lambda path: tonic.datasets.DVSGesture.classes[int(path.stem)], downsample=0.25,
    layout_name="tonic's .npy copy",
    obtain="unpack tonic's archives ibmGestureTrain.tar.gz and ibmGestureTest.tar.gz, which "
           "tonic.datasets.DVSGesture downloads",
    reference="97.57%: PLIF, Fang et al., ICCV 2021 (arXiv:2007.05785), 128x128, T=20; best test epoch, "
              "96.53% when a validation split picks it",
    recipe=dict(time_steps=16, shift=2, epochs=30, batch_size=32))
# IBM's release (DvsGesture.tar.gz): userNN_<lighting>.aedat (AEDAT 3.1), each holding all 11
# gestures of one person under one lighting, cut by userNN_<lighting>_labels.csv; trials_to_train.txt
# lists users 1-23 and trials_to_test.txt users 24-29.
DVS_GESTURE = also(DVS_GESTURE, "IBM's AEDAT 3.1 release", {"train": "user*_*.aedat", "test": "user*_*.aedat"},
                   "https://research.ibm.com/interactive/dvsgesture/", subfolder="DvsGesture", label=_gesture_file,
                   read=aedat.read_aedat31, clips=_gesture_clips,
                   select=lambda split, path: (_gesture_user(path) <= 23) == (split == "train"),
                   obtain="download DvsGesture.tar.gz from https://research.ibm.com/interactive/dvsgesture/, each "
                          "userNN_<lighting>.aedat with its userNN_<lighting>_labels.csv beside it")
DVS_GESTURE_IBM = DVS_GESTURE.alternatives[0]

# Recordings of varying size, at most 233x173: tonic moves each to the origin, and the frames are
# 240x180 (the screen area of the recording), each recording at their top left; events beyond are cropped.
N_CALTECH101 = EventSet(
    "n-caltech101", "N-Caltech101", tonic.datasets.NCALTECH101, (240, 180, 2), {"all": "Caltech101/*/*.bin"},
    None, "https://www.garrickorchard.com/datasets/n-caltech101", test_fraction=0.1, crop=True, downsample=0.25,
    reference="", recipe=dict(time_steps=10, shift=2, epochs=30, batch_size=32))

SUITS = {"club": "cl", "diamond": "di", "heart": "he", "spade": "sp"}  # the original names -> tonic's classes


def _suit(path):
    match = re.fullmatch(r"x(club|diamond|heart|spade)\d+i?\.aedat", path.name)
    if match is None:
        raise ValueError(f"{path.name} is not x<suit>NN.aedat")
    return SUITS[match.group(1)]


POKER_DVS = EventSet(
    "poker-dvs", "POKER-DVS", tonic.datasets.POKERDVS, (35, 35, 2),
    {"train": "pips_train/*/*.npy", "test": "pips_test/*/*.npy"}, tuple(tonic.datasets.POKERDVS.classes),
    "http://www2.imse-cnm.csic.es/caviar/POKERDVS.html",
    item=np.load, layout_name="tonic's .npy copy",
    reference="100%: Stromatias et al., Front. Neurosci. 11:350, 2017 (a spiking conv net with a readout "
              "trained by SGD on spike histograms, not a surrogate-gradient SNN)",
    recipe=dict(time_steps=10, shift=1, epochs=30, min_steps=600, warmup=0.05, batch_size=16, val_fraction=0.25))
# The 131 original recordings as IMSE-CNM publishes them: x{club,diamond,heart,spade}NN[i].aedat, jAER
# AEDAT 2.0 with DVS128 addresses, all in one folder and without a split (tonic's 68 are some of them,
# event for event, with t from 0).
POKER_DVS = also(POKER_DVS, "the original jAER recordings", {"all": "x*.aedat"},
                 "http://www2.imse-cnm.csic.es/caviar/POKERDVS.html", subfolder="", label=_suit, read=aedat.read_dvs128)
POKER_DVS_ORIGINAL = POKER_DVS.alternatives[0]

ASL_DVS = EventSet(
    "asl-dvs", "ASL-DVS", tonic.datasets.ASLDVS, (240, 180, 2), {"all": "*/*.mat"},
    tuple(c for c in "abcdefghiklmnopqrstuvwxy"), "https://github.com/PIX2NVS/NVS2Graph", downsample=0.25,
    reference="", recipe=dict(time_steps=10, shift=2, epochs=10, batch_size=64))

REAL = (NMNIST, CIFAR10_DVS, DVS_GESTURE, N_CALTECH101, POKER_DVS, ASL_DVS)


def downsample_defaults():
    """The data sets' default ``--downsample`` factors in words, for ``--help``."""
    by_factor = {}
    for entry in REAL:
        by_factor.setdefault(entry.downsample or 1, []).append(entry.name)
    return "; ".join(f"{factor:g} for {', '.join(names)}" for factor, names in sorted(by_factor.items(), reverse=True))


def simulated(name, folder, title, **changes):
    """An entry for N-MNIST-format recordings that snnclf simulates into ``<cache_dir>/<folder>``."""
    reader = type(folder, (tonic.datasets.NMNIST,), {"__doc__": f"{title}, read like N-MNIST."})
    return replace(NMNIST, **{"name": name, "title": title, "reader": reader, "download": False,
                              "page": "snnclf simulate", "reference": "", "recipe": None, **changes})


def loader(entry):
    """The data set builder of ``entry``: ``loader(entry)(data_dir, time_steps=T, **event_options)``."""
    def load(data_dir, *, time_steps, cache_dir=CACHE_DIR, **options):
        return event_dataset(entry, data_dir, time_steps=time_steps, cache_dir=cache_dir, **options)

    load.__doc__ = f"{entry.title} from <data_dir>/{entry.folder}/ ({entry.layout()})."
    return load
