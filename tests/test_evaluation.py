"""Evaluation gives the same numbers every time, and leaves the process's random state alone."""
import json

import torch

from snnclf.evaluate import run_eval

from conftest import QUICK

# a rate-encoded run that fires and learns (above chance), so the spikes drawn change its numbers
RATE = ["--subset", "400", "--batch_size", "50", "--encoding", "rate", "--time_steps", "6", "--epochs", "3"]


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
