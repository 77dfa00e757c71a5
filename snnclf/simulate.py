"""``snnclf simulate``: an event-camera version of any image set, written as N-MNIST recordings.

The images (a registered static data set, or a folder with one subfolder of images per class) are
shown to the simulated camera of :mod:`snnclf.data.simulate`, which makes N-MNIST's three saccades
in front of each, and every recording is written as an N-MNIST ``.bin`` file under
``<out>/Train/<class>/`` and ``<out>/Test/<class>/``. ``snnclf train --dataset event-folder
--data_dir <out>`` then trains on them, and any tool that reads N-MNIST reads them."""
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data import CHECKS as DATA_CHECKS, DATA_DIR, DATASETS, is_event_dataset, load_dataset
from .data.datasets import stratified
from .data.simulate import SIM_VERSION, class_folders, generate, source_key, to_28
from .errors import UsageError
from .flags import checked, number
from .runs import write_json

CHECKS = {"subset": DATA_CHECKS["subset"], "test_fraction": number(float, 0, 1, True, True)}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _folder_images(folder, test_fraction):
    """The images of ``folder/<class>/*`` as grey [N, 1, 28, 28] in [0, 1] (torchvision's
    ImageFolder finds the classes and reads the files), split into train and test: stratified,
    ``test_fraction``, seed 0."""
    from torchvision import datasets, transforms

    class Classes(datasets.ImageFolder):
        def find_classes(self, directory):  # hidden folders (.ipynb_checkpoints, ...) are not classes
            names = sorted(d.name for d in Path(directory).iterdir() if d.is_dir() and not d.name.startswith("."))
            return names, {name: i for i, name in enumerate(names)}

    def small(picture):  # keep the aspect: to_28 places it as MNIST placed its digits
        picture.thumbnail((64, 64))
        return picture

    folder = Path(folder)
    to_input = transforms.Compose([transforms.Grayscale(), small, transforms.ToTensor()])
    try:
        found = Classes(str(folder), transform=to_input,
                        is_valid_file=lambda p: Path(p).suffix.lower() in IMAGE_SUFFIXES)
    except FileNotFoundError as err:  # no class folders, or a class folder without images
        raise UsageError(f"--dataset {folder}: {err}; put each class's images in a folder of its own "
                         "(FOLDER/<class>/*.png)") from None
    if len(found.classes) < 2:
        raise UsageError(f"--dataset {folder}: one class folder ({found.classes[0]}); a classifier needs two "
                         "or more, one folder of images each")
    class_folders(found.classes)  # two that would be written as one folder: refused before the images are read
    images, labels = [], []
    for i, (path, label) in enumerate(found.samples):
        try:
            with warnings.catch_warnings():  # Pillow's warning of a decompression bomb: refused as its error is
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                images.append(torch.from_numpy(to_28(found[i][0][None])))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise UsageError(f"--dataset {folder}: {path} has more pixels than Pillow opens safely "
                             f"({Image.MAX_IMAGE_PIXELS:,}, its guard against decompression bombs): shrink it, "
                             "or remove it") from None
        except OSError as err:  # not an image Pillow can read
            raise UsageError(f"--dataset {folder}: cannot read {path} as an image ({type(err).__name__}); "
                             "remove or replace it") from None
        labels.append(label)
    x, y = torch.cat(images)[:, None], torch.tensor(labels)
    n_test = max(1, round(len(y) * test_fraction))
    if len(y) < 2 or n_test >= len(y):
        raise UsageError(f"--dataset {folder}: {len(y)} images are too few for a train and a test split")
    test, train = stratified(y, n_test)
    return {"train": (x[train], y[train]), "test": (x[test], y[test])}, found.classes


def _registered_images(name, data_dir):
    if is_event_dataset(name):
        raise UsageError(f"--dataset {name} is already events: give an image data set "
                         f"({', '.join(n for n in DATASETS.names() if not is_event_dataset(n))}) or a folder of images")
    data = load_dataset(name, data_dir)
    if data.in_shape[0] != 1:
        raise UsageError(f"--dataset {name} has {data.in_shape[0]} channels: the simulated camera sees grey images")
    splits = {"train": data.train.tensors, "test": data.test.tensors}
    return splits, data.class_names


def _balanced(images, labels, size):
    """A class-balanced sample of ``size`` of the images (seed 0), in their order."""
    keep = stratified(labels, size)[0].sort().values
    return images[keep], labels[keep]


def simulate_events(dataset, out, data_dir=DATA_DIR, subset=None, test_fraction=0.2, seed=0):
    """Write the event version of ``dataset`` (a registered image data set, or a folder of class
    folders of images) into the new folder ``out``; returns what was written (also saved as
    ``<out>/simulation.json``)."""
    checked("test_fraction", CHECKS["test_fraction"], test_fraction)
    if subset is not None:
        checked("subset", CHECKS["subset"], subset)
    out = Path(out)
    if out.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        raise UsageError(f"--out {out} is the current folder or holds it: name a new folder for the recordings")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} already exists and is not empty: choose a new folder (nothing in it was changed)")
    if dataset in DATASETS:
        splits, names = _registered_images(dataset, data_dir)
    elif Path(dataset).is_dir():
        splits, names = _folder_images(dataset, test_fraction)
    else:
        raise UsageError(f"--dataset {dataset}: neither a data set ({', '.join(DATASETS.names())}) nor a folder")
    if subset is not None:  # the test split shrinks in proportion
        n_train = len(splits["train"][1])
        splits = {s: _balanced(*part, subset if s == "train" else max(1, round(subset * len(part[1]) / n_train)))
                  for s, part in splits.items()}
    start = time.perf_counter()
    generate(out, splits, source_key(dataset, data_dir), seed=seed, class_names=names, flag="--out", replace=False)
    seconds = time.perf_counter() - start
    files = {s: sorted((out / folder).glob("*/*.bin")) for s, folder in (("train", "Train"), ("test", "Test"))}
    events = [f.stat().st_size // 5 for fs in files.values() for f in fs]
    record = {"source": str(dataset), "simulator_version": SIM_VERSION, "seed": seed,
              "classes": sorted({f.parent.name for fs in files.values() for f in fs}),
              "recordings": {s: len(fs) for s, fs in files.items()},
              "events_per_recording": round(float(np.mean(events)), 1), "seconds": round(seconds, 1)}
    write_json(out / "simulation.json", record)
    return record


def format_record(record, out):
    return (f"wrote {record['recordings']['train']:,} training and {record['recordings']['test']:,} test recordings "
            f"of {len(record['classes'])} classes in {out} ({record['events_per_recording']:,.0f} events a "
            f"recording, {record['seconds']:.1f} s); train on them with: snnclf train --dataset event-folder "
            f"--data_dir {out}")
