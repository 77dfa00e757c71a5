"""Shared test helpers: tiny data sets in the real file formats, and the CLI run in-process."""
import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from snnclf.cli import main

ROOT = Path(__file__).resolve().parents[1]


def write_idx(path, array, gz=False):
    """Write ``array`` (uint8) as an IDX file: magic 0x0000 08 <ndim>, big-endian dims, data."""
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def make_mnist_like(root, folder="MNIST", n_train=120, n_test=40, seed=0, gz=False):
    """A tiny MNIST-format data set under ``root/<folder>/raw``: 28x28 images whose class is a
    bright bar at a class-specific place, learnable in a few steps."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, size=(n, 28, 28))
        for i, y in enumerate(labels):
            images[i, 2 + 2 * y: 5 + 2 * y, 4:24] = 255
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, gz)
    return raw


def idx_data_sets():
    """(name, folder) of every registered static data set read from IDX files (torchvision's
    layout), from the data set registry."""
    from snnclf.data import DATASETS, list_datasets

    infos = {name: DATASETS.info(name) for name in list_datasets()}
    return [(name, info["reads"][1]) for name, info in infos.items()
            if not info["events"] and info["reads"] and info["reads"][0] == "idx"]


def copy_runs(source, workdir):
    """Copy the runs trained once in ``source`` (its checkpoints/ and logs/) into a test's folder."""
    import shutil

    for part in ("checkpoints", "logs"):
        shutil.copytree(Path(source) / part, Path(workdir) / part)
    return workdir


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in an empty folder, so checkpoints/ and logs/ land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def cli(capsys):
    """Run ``snnclf ARGS`` in this process; returns (exit code, stdout, stderr)."""
    def run(*args):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse errors and --help
            code = exit_.code
        out, err = capsys.readouterr()
        return code, out, err
    return run


def run_command(*args, cwd, timeout=300):
    """Run the installed ``snnclf`` console script (the way a user does) in a subprocess."""
    exe = Path(sys.executable).with_name("snnclf")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "snnclf"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(cmd + [str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


QUICK = ["--subset", "200", "--epochs", "2", "--time_steps", "2", "--batch_size", "50"]


def make_nmnist_folder(root, folder="NMNIST", per_class=(4, 2), seed=0, classes=range(10)):
    """A tiny N-MNIST-format folder: ``root/<folder>/{Train,Test}/<digit>/<n>.bin``. Each sample
    is a few hundred events in a class-specific square over ~300 ms, so classes are learnable.
    Returns {path: (x, y, p, t)} of what was written."""
    from snnclf.data.events import write_bin

    rng = np.random.default_rng(seed)
    written = {}
    for split, n in zip(("Train", "Test"), per_class):
        for digit in classes:
            for k in range(n):
                count = int(rng.integers(200, 400))
                cx, cy = 4 + 3 * (digit % 5) * 2, 6 + 14 * (digit // 5)
                x = np.clip(cx + rng.integers(0, 6, count), 0, 33)
                y = np.clip(cy + rng.integers(0, 6, count), 0, 33)
                p = rng.integers(0, 2, count)
                t = np.sort(rng.integers(0, 300_000, count))
                path = Path(root) / folder / split / str(digit) / f"{k:05d}.bin"
                write_bin(path, x, y, p, t)
                written[path] = (x, y, p, t)
    return written
