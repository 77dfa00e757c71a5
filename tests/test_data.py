"""Data sets from real-format files, splits, loaders and every encoder."""
import logging

import pytest
import torch

from snnclf.data import get_encoder, list_encoders, load_dataset, make_loader, make_splits
from snnclf.errors import UsageError

from conftest import idx_data_sets, make_mnist_like


def everything(dataset):
    """(inputs, labels) of a whole dataset, gathered with one list index as the loader does."""
    return dataset[list(range(len(dataset)))]


def test_digits_is_bundled_and_split_fixed():
    a, b = load_dataset("digits"), load_dataset("digits")
    (train_x, _), (test_x, _) = everything(a.train), everything(a.test)
    assert train_x.shape == (1437, 1, 8, 8) and test_x.shape == (360, 1, 8, 8)
    assert torch.equal(a.test_y, b.test_y) and torch.equal(train_x, everything(b.train)[0])
    assert 0.0 <= train_x.min() and train_x.max() <= 1.0 and a.in_shape == (1, 8, 8)
    assert torch.bincount(a.test_y).min() >= 35  # stratified: every class ~36 times


def test_splits_are_disjoint_stratified_and_subset_scales_validation():
    data = load_dataset("digits")
    splits = make_splits(data, val_fraction=0.1)
    n_train, n_val = len(splits["train"]), len(splits["val"])
    assert n_train + n_val == 1437 and n_val == 144
    train_rows = {tuple(r.flatten().tolist()) for r in everything(splits["train"])[0]}
    val_rows = {tuple(r.flatten().tolist()) for r in everything(splits["val"])[0]}
    assert len(val_rows) == n_val and not (val_rows & train_rows)  # load_digits has no duplicate images
    small = make_splits(data, val_fraction=0.1, subset=200)
    assert len(small["train"]) == 200 and len(small["val"]) == 22
    assert torch.bincount(everything(small["train"])[1]).min() >= 19
    assert len(small["test"]) == 360  # the test split is never cut


@pytest.mark.parametrize("val_fraction, subset, balanced", [(0.995, None, False), (0.1, 1290, False),
                                                           (0.5, 3, False), (0.1, 200, True)])
def test_extreme_splits_still_work_and_say_when_they_are_not_balanced(val_fraction, subset, balanced, caplog):
    with caplog.at_level(logging.WARNING, logger="snnclf"):
        splits = make_splits(load_dataset("digits"), val_fraction=val_fraction, subset=subset)
    assert len(splits["train"]) >= 1 and len(splits["val"]) >= 1
    said = [r.getMessage() for r in caplog.records if "unbalanced" in r.getMessage()]
    assert bool(said) != balanced, said


@pytest.mark.parametrize("value", [0.0, 1.0, 1.5])
def test_bad_val_fraction(value):
    with pytest.raises(UsageError, match="--val_fraction"):
        make_splits(load_dataset("digits"), val_fraction=value)


def test_loader_order_replays_per_seed():
    ds = make_splits(load_dataset("digits"))["train"]
    first = [y for _, y in make_loader(ds, 100, shuffle=True, seed=7)]
    again = [y for _, y in make_loader(ds, 100, shuffle=True, seed=7)]
    other = [y for _, y in make_loader(ds, 100, shuffle=True, seed=8)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    assert sum(len(y) for y in first) == len(ds)


@pytest.mark.parametrize("name", list_encoders())
@pytest.mark.parametrize("T", [1, 5])
def test_encoders_shape_and_range(name, T):
    x = torch.rand(4, 1, 8, 8)
    if name == "events":  # event frames [B, T, C, H, W] arrive with their time steps
        x = (torch.rand(4, T, 1, 8, 8) > 0.7).float()
        out = get_encoder(name)(x, T)
        assert out.shape == (T, 4, 1, 8, 8) and torch.equal(out[T - 1, 2], x[2, T - 1])
        return
    out = get_encoder(name)(x, T)
    assert out.shape == (T, 4, 1, 8, 8)
    assert out.min() >= 0 and out.max() <= 1
    if name == "direct":
        assert torch.equal(out[T - 1], x) and (T == 1 or out.stride(0) == 0)
    else:
        assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_rate_code_follows_intensity_and_latency_fires_once():
    x = torch.tensor([[0.0, 0.2, 0.9]])
    rate = get_encoder("rate")(x.expand(2000, 3), 10).mean((0, 1))
    assert torch.allclose(rate, x[0], atol=0.02)
    lat = get_encoder("latency")(torch.tensor([[0.05, 0.5, 1.0]]), 10)
    assert lat.sum(0).tolist() == [[1.0, 1.0, 1.0]]
    first = lat.argmax(0)[0].tolist()
    assert first[2] < first[1] < first[0]  # brighter fires earlier


@pytest.mark.parametrize("name, folder", idx_data_sets())
def test_torchvision_sets_load_from_idx_files(tmp_path, name, folder):
    make_mnist_like(tmp_path, folder, n_train=50, n_test=20)
    data = load_dataset(name, str(tmp_path))
    (train_x, _), (test_x, _) = everything(data.train), everything(data.test)
    assert train_x.shape == (50, 1, 28, 28) and test_x.shape == (20, 1, 28, 28)
    assert train_x.max() == 1.0 and data.train_y.tolist()[:3] == [0, 1, 2]
    assert data.num_classes == 10
    if name == "fashion-mnist":
        assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"


def test_gzipped_idx_files_are_unpacked(tmp_path):
    make_mnist_like(tmp_path, "MNIST", n_train=30, n_test=10, gz=True)  # as downloaded by hand
    assert len(load_dataset("mnist", str(tmp_path)).train) == 30


def test_missing_files_say_which_and_where(tmp_path):
    with pytest.raises(UsageError) as err:
        load_dataset("fashion-mnist", str(tmp_path / "nothing"))
    message = str(err.value)
    assert "train-images-idx3-ubyte" in message and "FashionMNIST/raw" in message
    assert "\n" not in message
    assert not (tmp_path / "nothing").exists()  # the failed download leaves no empty folders


def test_corrupt_idx_is_refused(tmp_path):
    raw = make_mnist_like(tmp_path, "MNIST", n_train=30, n_test=10)
    data = (raw / "train-images-idx3-ubyte").read_bytes()
    (raw / "train-images-idx3-ubyte").write_bytes(data[:1000])  # truncated
    with pytest.raises(UsageError, match="corrupt or truncated"):
        load_dataset("mnist", str(tmp_path))
    (raw / "train-images-idx3-ubyte").write_bytes(b"not an idx file at all")
    with pytest.raises(UsageError, match="corrupt or truncated"):
        load_dataset("mnist", str(tmp_path))
