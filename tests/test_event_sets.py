"""Every registered event data set, from small files in its real format read by tonic's own
reader: frames whose labels match their recordings, splits, refusals in one line, and (slow) the
train / eval / predict / visualize-data commands on each."""
import json
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import event_formats
from snnclf.data import check_files, load_dataset
from snnclf.data.event_sets import REAL
from snnclf.data.events import scan, seeded_split
from snnclf.errors import UsageError

# N-MNIST has tests of its own (test_events.py) and files written by conftest.make_nmnist_folder.
# Each layout of a data set (tonic's copy, the authors' release) is a case of its own.
SETS = [pytest.param(layout, id=f"{entry.name}-{event_formats.layout_of(layout)}" if event_formats.layout_of(layout)
                     else entry.name)
        for entry in REAL if entry.name != "nmnist" for layout in entry.layouts]


def _make(entry, root, **options):
    """The fixture files of ``entry``'s layout under ``root``."""
    return event_formats.make_dataset(entry.name, root, layout=event_formats.layout_of(entry), **options)


def _small(entry):
    """A downsampling factor that gives frames of about 32 pixels: quick to train on."""
    return round(min(1.0, 32 / max(entry.sensor[:2])), 3)


def _load(entry, root, **options):
    return load_dataset(entry.name, str(root / "data"), time_steps=3, cache_dir=str(root / "cache"),
                        downsample=_small(entry), **options)


@pytest.mark.parametrize("entry", SETS)
def test_frames_hold_each_recording_under_its_own_label(tmp_path, entry):
    """Each class of the fixture is a blob of events at its own place: the frames of the test split
    are told apart by the nearest class mean of the training frames, which only works when every
    recording is read, framed and labelled as written."""
    written = _make(entry, tmp_path / "data", samples_per_class=10)
    data = _load(entry, tmp_path)
    n_files = sum(len(files) for files in written.values())
    assert len(data.train) + len(data.test) == n_files and data.events
    assert data.in_shape == (2, *reversed(entry.frame_size(_small(entry))))
    x, y = data.train[list(range(len(data.train)))]
    present = sorted(set(y.tolist()))  # the fixture writes a few of the data set's classes
    means = np.stack([x[y == k].sum(1).flatten(1).mean(0).numpy() for k in present])
    test_x, test_y = data.test[list(range(len(data.test)))]
    flat = test_x.sum(1).flatten(1).numpy()
    nearest = np.array(present)[((flat[:, None] - means[None]) ** 2).sum(-1).argmin(1)]
    assert (nearest == test_y.numpy()).mean() == 1.0
    # and each class sits where the fixture put it: class j of n at angle 2*pi*j/n about the middle
    # (ASL-DVS counts y from the bottom, and tonic turns it over)
    frames = x.sum((1, 2)).numpy()  # [N, H, W]
    h, w = np.indices(frames.shape[1:])
    centres = np.array([[(f * w).sum() / f.sum(), (f * h).sum() / f.sum()] for f in frames])
    for j, k in enumerate(present):
        dx, dy = centres[y.numpy() == k].mean(0) - centres.mean(0)
        angle = np.arctan2(-dy if entry.name == "asl-dvs" else dy, dx)
        gap = (angle - 2 * np.pi * j / len(present) + np.pi) % (2 * np.pi) - np.pi
        assert abs(gap) < 0.5, (data.class_names[k], angle)
    if entry.official_split:
        assert data.split == "official"
        assert len(data.test) == len(written["test"])
    else:  # a stratified split: every class on both sides, the same split every time
        assert data.split.startswith("seeded: stratified") and "cache/splits" in data.split
        assert set(test_y.tolist()) == set(present)
        for made in (tmp_path / "cache/splits").glob("*.json"):
            made.unlink()  # made again from the files alone: the same split
        again = _load(entry, tmp_path, denoise_us=1e9)
        assert again.split == data.split and again.test_y.tolist() == test_y.tolist()


@pytest.mark.parametrize("entry", SETS)
def test_the_test_split_is_read_alone_when_nothing_else_is_used(tmp_path, entry):
    """What eval --test_only, export and the drawing commands load: the same test frames, and no
    training frames made; where the split is official, the training recordings need not be there."""
    written = _make(entry, tmp_path / "data")
    whole = _load(entry, tmp_path)
    for frames in (tmp_path / "cache/frames").iterdir():
        shutil.rmtree(frames)
    for path in set(written.get("train", [])):  # an official split: its training recordings go
        path.unlink()
    alone = _load(entry, tmp_path, test_only=True)
    assert alone.train is None and alone.train_y is None and alone.class_names == whole.class_names
    x, y = alone.test[list(range(len(alone.test)))]
    x0, y0 = whole.test[list(range(len(whole.test)))]
    assert torch.equal(x, x0) and torch.equal(y, y0) and x.any()
    assert [f.name.split("-T")[0] for f in (tmp_path / "cache/frames").iterdir()] == [f"{entry.name}-test"]
    if "train" in written:
        with pytest.raises(UsageError, match="train split"):
            _load(entry, tmp_path)


def test_a_recording_keeps_its_side_of_a_split_when_files_are_added(tmp_path):
    """CIFAR10-DVS has no official split: snnclf's is kept in the cache, and files added later
    (a download completed, a class added) go to one side without moving any other file, so a run's
    training recordings never become test recordings."""
    entry = next(e for e in REAL if e.name == "cifar10-dvs")
    event_formats.make_dataset(entry.name, tmp_path / "data", samples_per_class=30)
    found, classes = scan(entry, tmp_path / "data")
    base = tmp_path / "data" / entry.folder
    train, test, path = seeded_split(entry, base, found["all"], classes, tmp_path / "cache")
    assert len(test) == 9 and sorted(r.label for r in test) == sorted(classes[:3] * 3)  # stratified
    event_formats.make_dataset(entry.name, tmp_path / "data", samples_per_class=60, classes=("airplane", "dog"),
                               seed=1)  # 30 more airplanes, and a class
    found, classes = scan(entry, tmp_path / "data")
    train2, test2, path2 = seeded_split(entry, base, found["all"], classes, tmp_path / "cache")
    assert path2 == path and set(train) <= set(train2) and set(test) <= set(test2)
    new = set(found["all"]) - set(train) - set(test)
    assert len(new) == 90 and 2 <= len(set(test2) & new) <= 20  # about a tenth of the new ones


@pytest.mark.parametrize("entry", SETS)
def test_a_corrupt_recording_is_named_in_one_line(tmp_path, entry):
    _make(entry, tmp_path / "data")
    bad = event_formats.corrupt_file(entry.name, tmp_path / "data", layout=event_formats.layout_of(entry))
    with pytest.raises(UsageError) as err:
        _load(entry, tmp_path)
    message = str(err.value)
    assert str(bad) in message and "replace" in message and "\n" not in message
    assert not list((tmp_path / "cache").glob("frames/.*"))  # no half-built cache is left


@pytest.mark.parametrize("entry", SETS)
def test_missing_files_name_the_page_and_the_layout(tmp_path, entry):
    with pytest.raises(UsageError) as err:
        _load(entry, tmp_path)
    message = str(err.value)
    assert entry.page in message and entry.layout() in message and "--data_dir" in message
    with pytest.raises(UsageError, match=f"--dataset {entry.name}: no {entry.title} recordings"):
        check_files(entry.name, str(tmp_path / "data"))
    assert not (tmp_path / "data").exists()  # nothing was downloaded or created


def test_a_reader_that_needs_a_package_names_the_install(tmp_path, monkeypatch):
    event_formats.make_dataset("cifar10-dvs", tmp_path / "data")
    monkeypatch.setitem(sys.modules, "aedat", None)  # as if it were not installed
    entry = next(e for e in REAL if e.name == "cifar10-dvs")
    with pytest.raises(UsageError, match=r'cifar10-dvs needs the aedat package to read its files: pip install "aedat'):
        _load(entry, tmp_path)


def test_options_that_do_not_fit_a_data_set_are_refused(tmp_path):
    event_formats.make_dataset("dvs-gesture", tmp_path / "data")
    entry = next(e for e in REAL if e.name == "dvs-gesture")
    with pytest.raises(UsageError, match="--first_saccade_only applies to saccade recordings"):
        _load(entry, tmp_path, first_saccade_only=True)
    with pytest.raises(UsageError, match=r"--downsample .* at least 4x4 on the 128x128 sensor of dvs-gesture \(0.031"):
        load_dataset("dvs-gesture", str(tmp_path / "data"), time_steps=3, downsample=0.02)


def test_fixed_windows_leave_later_events_out(tmp_path):
    """--frame_ms: T frames of that many milliseconds from the start; the fixture's recordings
    last 4.7-30 ms (as the real ones do), so 3 frames of 2 ms hold fewer events than 3 frames over
    the whole."""
    event_formats.make_dataset("poker-dvs", tmp_path / "data")
    entry = next(e for e in REAL if e.name == "poker-dvs")
    whole, short = _load(entry, tmp_path), _load(entry, tmp_path, frame_ms=2.0)
    a, b = whole.train[[0, 1, 2]][0], short.train[[0, 1, 2]][0]
    assert a.shape == b.shape and 0 < b.sum() < a.sum()
    assert (b.sum((2, 3, 4)) > 0).all()  # every 2 ms window of the first 6 ms has events


@pytest.mark.slow
@pytest.mark.parametrize("entry", SETS)
def test_train_eval_predict_and_draw_each_data_set(workdir, cli, entry):
    written = _make(entry, workdir / "data")
    small = ["--downsample", str(_small(entry)), "--time_steps", "3"]
    code, _, err = cli("train", "--preset", entry.name, "--epochs", "1", "--min_steps", "1", "--batch_size", "8",
                       "--run", "r", *small)
    assert code == 0, err
    config = json.loads((workdir / "logs/r/config.json").read_text())
    assert config["dataset"] == entry.name and config["data_split"].split(":")[0] in ("official", "seeded")
    code, out, err = cli("eval", "--run", "r", "--test_only", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["num_test"] == config["num_test"] and 0 <= result["test_accuracy"] <= 1
    recording = next(iter(written.values()))[0]
    code, out, err = cli("predict", "--run", "r", str(recording))
    assert code == 0, err
    lines = out.splitlines()[1:]  # after the line naming the run and checkpoint
    if entry.clips:  # a file of several gestures: one prediction each, named by its window, with its label
        assert len(lines) == written["train"].count(recording) and all("; labelled " in line for line in lines)
        assert all(line.startswith(f"{recording}@") for line in lines)
    else:
        assert len(lines) == 1 and lines[0].startswith(f"{recording}: ")
    assert all(line.split(": ")[1].split(" (")[0] in config["class_names"] for line in lines)
    code, _, err = cli("visualize-data", "--dataset", entry.name, "--num_samples", "4", "--out", "viz")
    assert code == 0, err
    for name in ("samples.png", "on_off.png"):
        with Image.open(workdir / "viz" / name) as picture:
            assert picture.size[0] > 100


def test_a_recording_that_names_no_class_is_refused_in_one_line(tmp_path):
    """DVS Gesture names each recording by its label (0.npy ... 10.npy)."""
    written = event_formats.make_dataset("dvs-gesture", tmp_path / "data")
    first = written["train"][0]
    (first.parent / "notes.npy").write_bytes(first.read_bytes())
    entry = next(e for e in REAL if e.name == "dvs-gesture")
    with pytest.raises(UsageError, match=r"notes.npy is not named as DVS Gesture names its recordings .*move or remove it"):
        _load(entry, tmp_path)


def test_the_layout_read_is_the_first_whose_needed_files_are_all_there(tmp_path):
    """POKER-DVS's originals beside part of tonic's copy: a load reads the layout that has all
    the files it needs (tonic's first), never a layout that lacks them."""
    root = tmp_path / "data"
    event_formats.make_dataset("poker-dvs", root, layout="original")  # x<suit>NN.aedat in root itself
    written = event_formats.make_dataset("poker-dvs", root)  # and tonic's POKERDVS/pips_{train,test}
    entry = next(e for e in REAL if e.name == "poker-dvs")

    def split(**options):
        return _load(entry, tmp_path, **options).split

    assert split() == split(train_only=True) == split(test_only=True) == "official"  # tonic's, whole
    for path in written["train"]:
        path.unlink()
    assert split().startswith("seeded") and split(train_only=True).startswith("seeded")  # tonic's lacks train
    assert split(test_only=True) == "official"  # tonic's test split is whole
    event_formats.make_dataset("poker-dvs", root)
    for path in written["test"]:
        path.unlink()
    assert split(train_only=True) == "official"  # training needs no test split
    assert split(test_only=True).startswith("seeded") and split().startswith("seeded")


def test_two_layouts_in_one_folder_keep_splits_of_their_own(tmp_path):
    """CIFAR10-DVS's original .aedat replacing tonic's .aedat4 in the same folder gets a stratified
    split of its own, not the other layout's split with every file new to it."""
    entry = next(e for e in REAL if e.name == "cifar10-dvs")
    written = event_formats.make_dataset(entry.name, tmp_path / "data", samples_per_class=10)
    first = _load(entry, tmp_path)
    for path in written["all"]:
        path.unlink()
    event_formats.make_dataset(entry.name, tmp_path / "data", samples_per_class=10, layout="original")
    second = _load(entry, tmp_path)
    assert len(list((tmp_path / "cache/splits").glob("*.json"))) == 2 and second.split != first.split
    assert sorted(second.test_y.tolist()) == sorted(first.test_y.tolist()) == [0, 1, 2]  # one of each class
