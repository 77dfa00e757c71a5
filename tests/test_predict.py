"""snnclf predict: the user's own files classified by a trained run."""
import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from snnclf.cli import main
from snnclf.data import load_dataset

from conftest import copy_runs, make_nmnist_folder

TRAIN = ["train", "--model", "snn-mlp", "--time_steps", "4", "--epochs", "6", "--run", "digits"]


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    """The run TRAIN makes, trained once for the tests of this file (in a folder of its own)."""
    root = tmp_path_factory.mktemp("trained")
    before = os.getcwd()
    os.chdir(root)
    try:
        assert main(TRAIN) == 0
    finally:
        os.chdir(before)
    return root


@pytest.fixture
def trained(trained_once, workdir):
    """This test's folder, holding a copy of that run's checkpoints/ and logs/."""
    return copy_runs(trained_once, workdir)


def _drawn(image, path):
    """A digit as a user would draw it: 48x48, dark on a white background, in colour."""
    pixels = (255 * (1 - image[0].numpy())).astype(np.uint8)
    Image.fromarray(pixels).resize((48, 48), Image.Resampling.BILINEAR).convert("RGB").save(path)


def test_drawn_digits_are_converted_and_classified(trained, cli):
    workdir = trained
    test = load_dataset("digits", "data").test
    files = []
    for i in range(30):
        x, y = test[i]
        files.append((workdir / f"digit_{i}_is_{int(y)}.png", int(y)))
        _drawn(x, files[-1][0])
    code, out, err = cli("predict", "--run", "digits", *[f for f, _ in files])
    assert code == 0, err
    lines = out.splitlines()[1:]
    assert len(lines) == 30
    assert "converted from RGB to L; resized from 48x48 to 8x8; inverted" in lines[0]
    right = sum(line.split(": ")[1].split(" ")[0] == str(y) for line, (_, y) in zip(lines, files))
    assert right >= 20, out  # chance is 3 of 30: the conversion gives the run what it was trained on


def test_a_cmyk_or_palette_image_is_named_by_its_own_mode(trained, cli):
    workdir = trained
    x, _ = load_dataset("digits", "data").test[0]
    _drawn(x, workdir / "rgb.png")
    with Image.open(workdir / "rgb.png") as rgb:
        rgb.convert("CMYK").save(workdir / "cmyk.jpg")
        rgb.convert("P").save(workdir / "palette.png")
    code, out, err = cli("predict", "--run", "digits", "cmyk.jpg", "palette.png")
    assert code == 0, err
    lines = out.splitlines()[1:]
    assert "converted from CMYK to L" in lines[0] and "converted from P to L" in lines[1]


def test_an_image_past_pillows_bomb_guard_is_refused_in_one_line(trained, cli, monkeypatch):
    """Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that: both are one line."""
    workdir = trained
    Image.new("L", (100, 100)).save(workdir / "big.png")
    Image.new("L", (300, 300)).save(workdir / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6_000)  # big.png's 10,000 pixels warn, huge.png's 90,000 err
    code, out, err = cli("predict", "--run", "digits", "big.png", "huge.png")
    assert "Warning" not in err and "Traceback" not in err
    for name in ("big.png", "huge.png"):
        assert any(line.startswith(f"snnclf predict: error: {name}: more pixels than Pillow opens safely")
                   for line in err.splitlines()), err


def test_unreadable_files_get_a_line_each_and_the_rest_are_classified(trained, cli):
    workdir = trained
    x, _ = load_dataset("digits", "data").test[0]
    np.save(workdir / "good.npy", x[0].numpy())  # [H, W]: one channel
    np.save(workdir / "wrong.npy", np.zeros((3, 5)))
    (workdir / "notes.txt").write_text("not an image")
    code, out, err = cli("predict", "good.npy", "notes.txt", "missing.png", "wrong.npy", "--top", "2",
                         "--csv", "out.csv")
    assert code == 2
    assert out.splitlines()[1].startswith("good.npy: ") and len(out.splitlines()) == 2
    errors = err.strip().splitlines()
    assert len(errors) == 3 and "Traceback" not in err
    assert "notes.txt: not an image Pillow can read" in errors[0]
    assert "missing.png: no such file" in errors[1]
    assert "wrong.npy: an array of shape (3, 5), but the run takes (1, 8, 8)" in errors[2]
    with open(workdir / "out.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == ["good.npy", "notes.txt", "missing.png", "wrong.npy"]
    assert rows[0]["class"] and not rows[0]["error"] and rows[1]["error"]
    code, out, _ = cli("predict", "good.npy", "--json", "--top", "2")
    found = json.loads(out)
    assert code == 0 and found["run"] == "digits" and len(found["classes"]) == 10
    p = found["predictions"][0]
    assert p["class"] == p["top"][0]["class"] and len(p["top"]) == 2
    assert 0 < p["confidence"] <= 1
    assert [t["confidence"] for t in p["top"]] == sorted((t["confidence"] for t in p["top"]), reverse=True)


def test_odd_inputs_are_converted_or_refused_in_one_line(trained, cli):
    workdir = trained
    x, _ = load_dataset("digits", "data").test[0]
    np.save(workdir / "bytes.npy", (255 * x.numpy()).round().astype(np.uint8))
    np.save(workdir / "big.npy", 3 * x.numpy())
    with open(workdir / "arch.npy", "wb") as f:  # an .npz archive under a .npy name
        np.savez(f, a=x.numpy())
    (workdir / "empty.npy").write_bytes(b"")
    pixels = (65535 * x[0].numpy()).astype(np.uint16)
    Image.fromarray(pixels).save(workdir / "deep.png")  # 16-bit grey
    Image.fromarray((255 * x[0].numpy()).astype(np.uint8)).convert("P").save(workdir / "palette.png")
    code, out, err = cli("predict", "bytes.npy", "big.npy", "arch.npy", "empty.npy", "deep.png", "palette.png")
    assert code == 2 and "Traceback" not in err
    assert "scaled from 0..255 to [0, 1]" in out and "scaled from I" in out
    assert len(out.splitlines()) == 4  # header, bytes.npy, deep.png, palette.png
    errors = err.strip().splitlines()
    assert len(errors) == 3
    assert "big.npy: values from 0 to 3, but the run takes images in [0, 1]" in errors[0]
    assert "arch.npy: an .npz archive" in errors[1] and "empty.npy: not a .npy array" in errors[2]
    labels = {line.split(": ")[0]: line.split(": ")[1].split(" ")[0] for line in out.splitlines()[1:]}
    assert labels["bytes.npy"] == labels["deep.png"] == labels["palette.png"]  # the same digit, however stored


@pytest.mark.slow
def test_an_event_run_classifies_nmnist_files(workdir, cli):
    written = make_nmnist_folder(workdir / "data", per_class=(1, 1))
    code, _, err = cli("train", "--dataset", "digits-events", "--model", "cnn", "--time_steps", "4",
                       "--subset", "200", "--epochs", "1", "--run", "ev")
    assert code == 0, err
    files = sorted(str(p) for p in written)[:3]
    code, out, err = cli("predict", "--run", "ev", *files, "--json")
    assert code == 0, err
    found = json.loads(out)
    assert [p["file"] for p in found["predictions"]] == files
    for p in found["predictions"]:  # a class of the run's, with its share of the output spikes
        assert p["class"] in found["classes"] and 0 <= p["confidence"] <= 1 and not p.get("error")
    (workdir / "x.png").write_bytes(b"")
    code, _, err = cli("predict", "--run", "ev", "x.png")
    assert code == 2 and "takes events: give simulated digits .bin recordings or .npy frames" in err
