"""Evaluation gives the same numbers every time, and leaves the process's random state alone."""
import json

import pytest
import torch
from PIL import Image

from snnclf.evaluate import run_eval

from conftest import QUICK, make_mnist_like, make_nmnist_folder

# a rate-encoded run that fires and learns (above chance), so the spikes drawn change its numbers
RATE = ["--subset", "400", "--batch_size", "50", "--encoding", "rate", "--time_steps", "6", "--epochs", "3"]


@pytest.mark.slow
def test_rate_encoded_eval_repeats_exactly_and_records_its_seed(workdir, cli):
    assert cli("train", *RATE, "--run", "r")[0] == 0
    runs = []
    for _ in range(3):
        code, out, err = cli("eval", "--run", "r", "--test_only", "--json")
        assert code == 0, err
        runs.append(json.loads(out))
    assert runs[0]["test_accuracy"] > 0.3  # above chance (0.1): its output neurons fire
    assert runs[0]["seed"] == 0 and json.loads((workdir / "logs/r/eval.json").read_text())["seed"] == 0
    for key in ("test_accuracy", "test_loss", "test_spikes_per_sample", "confusion_matrix", "efficiency"):
        assert runs[0][key] == runs[1][key] == runs[2][key], key
    other = json.loads(cli("eval", "--run", "r", "--test_only", "--json", "--seed", "7")[1])
    assert other["seed"] == 7 and other["test_loss"] != runs[0]["test_loss"]  # the spikes are drawn anew


def test_eval_leaves_the_global_random_state_as_it_was(workdir, cli):
    assert cli("train", *QUICK, "--encoding", "rate", "--run", "r")[0] == 0
    torch.manual_seed(123)
    before = torch.get_rng_state()
    expected = torch.rand(5)
    torch.set_rng_state(before)
    run_eval(run="r", test_only=True)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(torch.rand(5), expected)


@pytest.mark.slow
def test_eval_on_another_data_set_writes_its_own_files(workdir, cli):
    """A run trained on simulated events, tested on N-MNIST-format recordings: its results go
    beside the run's own, which stay as they were."""
    make_nmnist_folder(workdir / "data", per_class=(1, 3))
    code, _, err = cli("train", "--dataset", "digits-events", "--model", "cnn", "--time_steps", "4",
                       "--subset", "200", "--epochs", "1", "--run", "de")
    assert code == 0, err
    assert cli("eval", "--run", "de", "--test_only")[0] == 0
    own = (workdir / "logs/de/eval.json").read_bytes()
    code, out, err = cli("eval", "--run", "de", "--dataset", "nmnist", "--data_dir", "data", "--test_only")
    assert code == 0, err
    assert "nmnist (trained on digits-events)" in out
    result = json.loads((workdir / "logs/de/eval_nmnist.json").read_text())
    assert (result["dataset"], result["trained_on"], result["num_test"]) == ("nmnist", "digits-events", 30)
    assert sum(map(sum, result["confusion_matrix"])) == 30
    assert (workdir / "logs/de/eval.json").read_bytes() == own
    rows = [line.split(",") for line in (workdir / "logs/de/confusion_matrix_nmnist.csv").read_text().splitlines()]
    assert [list(map(int, row[1:])) for row in rows[1:]] == result["confusion_matrix"]
    for name in ("confusion_matrix_nmnist.png", "per_class_accuracy_nmnist.png"):
        with Image.open(workdir / "logs/de" / name) as image:
            assert image.format == "PNG" and min(image.size) >= 150, name


def test_eval_on_an_incompatible_data_set_is_refused_in_one_line(workdir, cli):
    make_mnist_like(workdir / "data")
    make_mnist_like(workdir / "data", folder="FashionMNIST", seed=1)
    assert cli("train", *QUICK, "--run", "dg")[0] == 0
    assert cli("train", "--dataset", "mnist", "--data_dir", "data", "--model", "snn-mlp", "--time_steps", "2",
               "--epochs", "1", "--run", "mn")[0] == 0
    before = sorted(p.name for p in (workdir / "logs/mn").iterdir())
    for args, fragment in ((["--run", "dg", "--dataset", "mnist", "--data_dir", "data"], "was made for inputs (1, 8, 8)"),
                           (["--run", "dg", "--dataset", "nmnist"], "choose a data set of its kind"),
                           (["--run", "mn", "--dataset", "fashion-mnist", "--data_dir", "data"],
                            "fashion-mnist: its classes (T-shirt/top, Trouser, Pullover, Dress, ...) are not those checkpoints/mn/best.pt learned")):
        code, _, err = cli("eval", *args, "--test_only")
        assert code == 2 and fragment in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in (workdir / "logs/mn").iterdir()) == before
