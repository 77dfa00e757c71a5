"""``snnclf simulate``: N-MNIST-format recordings of any image set, read back through tonic, and
trained on with --dataset event-folder; what it refuses, it refuses in one line and changes nothing."""
import json

import numpy as np
import pytest
import tonic
from PIL import Image

from snnclf.data import load_dataset
from snnclf.data.event_sets import NMNIST


def _image_folder(root, classes=("circle", "bar", "cross"), per_class=6, size=40):
    """Class folders of PNG images of different sizes, a shape per class (light on dark)."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        for i in range(per_class):
            picture = np.zeros((size + i, size), np.uint8)
            h, w = picture.shape
            yy, xx = np.indices(picture.shape)
            if k == 0:
                picture[(yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (w / 4) ** 2] = 255
            elif k == 1:
                picture[:, w // 2 - 3: w // 2 + 3] = 255
            else:
                picture[np.abs(yy - xx * h / w) < 3] = 255
                picture[np.abs(yy - (w - xx) * h / w) < 3] = 255
            picture = np.clip(picture + rng.integers(0, 30, picture.shape), 0, 255).astype(np.uint8)
            path = root / name / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(picture).save(path)


def test_simulate_a_data_set_into_nmnist_files(workdir, cli):
    code, out, err = cli("simulate", "--dataset", "digits", "--out", "ev", "--subset", "40")
    assert code == 0, err
    assert "wrote 40 training and 10 test recordings of 10 classes in ev" in out
    assert "snnclf train --dataset event-folder --data_dir ev" in out
    record = json.loads((workdir / "ev/simulation.json").read_text())
    assert record["recordings"] == {"train": 40, "test": 10} and record["classes"] == [str(d) for d in range(10)]
    files = sorted((workdir / "ev/Train").glob("*/*.bin"))
    assert len(files) == 40 and {f.parent.name for f in files} == set(record["classes"])
    events = tonic.io.read_mnist_file(str(files[0]), dtype=NMNIST.reader.dtype)  # real N-MNIST files
    assert 500 < len(events) and events["x"].max() < 34 and set(events["p"].tolist()) == {0, 1}
    data = load_dataset("event-folder", str(workdir / "ev"), time_steps=3, cache_dir=str(workdir / "cache"))
    assert len(data.train) == 40 and len(data.test) == 10 and data.class_names == record["classes"]


def test_simulate_a_folder_of_images(workdir, cli):
    _image_folder(workdir / "shapes")
    code, out, err = cli("simulate", "--dataset", "shapes", "--out", "shape-events", "--test_fraction", "0.5")
    assert code == 0, err
    record = json.loads((workdir / "shape-events/simulation.json").read_text())
    assert record["classes"] == ["bar", "circle", "cross"] and record["recordings"] == {"train": 9, "test": 9}
    data = load_dataset("event-folder", "shape-events", time_steps=2, cache_dir="cache")
    x, y = data.test[list(range(len(data.test)))]
    assert sorted(y.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2] and x.sum() > 0  # stratified, all classes


def test_simulate_refuses_in_one_line_and_changes_nothing(workdir, cli):
    (workdir / "taken").mkdir()
    (workdir / "taken/mine.txt").write_text("keep")
    code, _, err = cli("simulate", "--dataset", "digits", "--out", "taken")
    assert code == 2 and "--out taken already exists and is not empty" in err
    assert (workdir / "taken/mine.txt").read_text() == "keep" and len(list((workdir / "taken").iterdir())) == 1
    code, _, err = cli("simulate", "--dataset", "nmnist", "--out", "x")
    assert code == 2 and "--dataset nmnist is already events" in err
    code, _, err = cli("simulate", "--dataset", "no-such-thing", "--out", "x")
    assert code == 2 and "neither a data set" in err
    _image_folder(workdir / "shapes", per_class=2)
    (workdir / "shapes/bar/broken.png").write_bytes(b"not a png")
    code, _, err = cli("simulate", "--dataset", "shapes", "--out", "x")
    assert code == 2 and "broken.png as an image" in err and len(err.strip().splitlines()) == 1
    assert not (workdir / "x").exists() and not list(workdir.glob(".x.*"))


@pytest.mark.slow
def test_a_network_learns_from_simulated_folder_events(workdir, cli):
    _image_folder(workdir / "shapes", per_class=20)
    assert cli("simulate", "--dataset", "shapes", "--out", "ev")[0] == 0
    code, _, err = cli("train", "--dataset", "event-folder", "--data_dir", "ev", "--model", "cnn", "--time_steps", "4",
                       "--epochs", "4", "--batch_size", "8", "--run", "r")
    assert code == 0, err
    code, out, err = cli("eval", "--run", "r", "--test_only", "--json")
    assert code == 0, err
    assert json.loads(out)["test_accuracy"] > 0.6  # three shapes: chance is a third


def test_small_subsets_and_the_current_folder(workdir, cli):
    code, out, err = cli("simulate", "--dataset", "digits", "--out", "few", "--subset", "5")
    assert code == 0, err  # fewer images than classes: a random sample, not a stratified one
    assert json.loads((workdir / "few/simulation.json").read_text())["recordings"]["train"] == 5
    assert oct((workdir / "few").stat().st_mode & 0o777) != oct(0o700)  # readable like any folder made by hand
    (workdir / "empty").mkdir()
    code, _, err = cli("simulate", "--dataset", "digits", "--out", ".", "--subset", "5")
    assert code == 2 and "--out . is the current folder or holds it" in err
    code, _, err = cli("simulate", "--dataset", "digits", "--out", "empty", "--subset", "5")
    assert code == 0, err  # an empty folder is used
    assert len(list((workdir / "empty/Train").glob("*/*.bin"))) == 5


def test_a_class_renamed_is_refused_by_eval(workdir, cli):
    _image_folder(workdir / "shapes", per_class=4)
    assert cli("simulate", "--dataset", "shapes", "--out", "ev", "--test_fraction", "0.5")[0] == 0
    assert cli("train", "--dataset", "event-folder", "--data_dir", "ev", "--model", "snn-mlp", "--time_steps", "2",
               "--epochs", "1", "--run", "r")[0] == 0
    for split in ("Train", "Test"):
        (workdir / "ev" / split / "bar").rename(workdir / "ev" / split / "line")
    code, _, err = cli("eval", "--run", "r", "--dataset", "event-folder", "--data_dir", "ev", "--test_only")
    assert code == 2 and "event-folder: its classes (circle, cross, line, ...) are not those" in err


def test_a_folder_given_files_while_simulating_is_left_as_it_is(tmp_path):
    """generate(replace=False) takes the place of an empty folder only: one that got files while
    the recordings were made keeps them, and the recordings are not written."""
    import torch

    from snnclf.data.simulate import generate
    from snnclf.errors import UsageError

    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    splits = {s: (torch.rand(2, 1, 28, 28), torch.tensor([0, 1])) for s in ("train", "test")}
    with pytest.raises(UsageError, match="--out .*out was given files while the recordings were made"):
        generate(out, splits, "k", flag="--out", replace=False)
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("classes, named", [(("a-b", "a\\b", "c"), "'a-b' and 'a\\\\b'"),
                                            (("x", "x "), "'x' and 'x '"),
                                            (("only",), "one class folder (only)")])
def test_classes_that_would_be_merged_or_a_single_class_are_refused(workdir, cli, classes, named):
    """'a-b' and 'a\\b' would both be written as the folder a-b, 'x' and 'x ' as x: read back,
    two classes would be one. One class trains to a meaningless 100%."""
    _image_folder(workdir / "shapes", classes=classes, per_class=2)
    code, _, err = cli("simulate", "--dataset", "shapes", "--out", "ev")
    assert code == 2 and named in err and len(err.strip().splitlines()) == 1, err
    assert not (workdir / "ev").exists() and not list(workdir.glob(".ev.*"))


@pytest.mark.parametrize("limit", [700, 1500])  # an error, a warning
def test_an_image_too_large_for_pillow_is_refused_in_one_line(workdir, cli, monkeypatch, limit):
    """Pillow's guard against decompression bombs: an error above twice its limit (a 14000x14000
    image), a warning printed raw above it. Both are one line naming the file; the limit is
    lowered here so that 40x40 images cross it."""
    _image_folder(workdir / "shapes", per_class=2)
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(workdir / "shapes/bar/big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    code, _, err = cli("simulate", "--dataset", "shapes", "--out", "ev")
    assert code == 2 and "more pixels than Pillow opens safely" in err and len(err.strip().splitlines()) == 1, err
    assert not (workdir / "ev").exists()
