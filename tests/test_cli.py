"""The snnclf command as a user meets it: train, eval, runs on disk, resume, and refusals."""
import argparse
import json
import math
import pickle
import runpy
import sys

import pytest
import torch

from snnclf.builders import load_model
from snnclf.cli import build_parser
from snnclf.models import list_models
from snnclf.runs import load_checkpoint, read_metrics

from conftest import QUICK, idx_data_sets, make_mnist_like, run_command


@pytest.mark.slow
def test_installed_command_trains_then_evaluates_digits(tmp_path):
    train = run_command("train", "--subset", "600", "--epochs", "5", "--time_steps", "4", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    assert "best validation accuracy" in train.stderr
    run = "digits-csnn-T4"
    rows = read_metrics(tmp_path / f"logs/{run}/metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    best, last = (load_checkpoint(tmp_path / f"checkpoints/{run}/{name}.pt") for name in ("best", "last"))
    assert last["epoch"] == 5 and best["epoch"] == last["best_epoch"]  # best.pt: the epoch validation chose
    assert best["best_val_accuracy"] == max(r["val_accuracy"] for r in rows)
    config = json.loads((tmp_path / f"logs/{run}/config.json").read_text())
    assert (config["dataset"], config["subset"], config["epochs"], config["time_steps"]) == ("digits", 600, 5, 4)
    assert "epoch 5/5" in (tmp_path / f"logs/{run}/train.log").read_text()
    assert set(rows[0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                            "seconds", "data_seconds", "spikes_per_sample"}
    assert 0 <= rows[0]["data_seconds"] < rows[0]["seconds"]

    ev = run_command("eval", "--test_only", "--json", cwd=tmp_path)  # the most recent run
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    assert result["run"] == run and result["num_test"] == 360
    assert result["test_accuracy"] > 0.5  # chance is 0.1
    assert len(result["per_class_accuracy"]) == 10 and "test_loss" in result
    assert "train_accuracy" not in result
    assert json.loads((tmp_path / f"logs/{run}/eval.json").read_text())["test_accuracy"] == result["test_accuracy"]
    confusion = (tmp_path / f"logs/{run}/confusion_matrix.csv").read_text().splitlines()
    assert len(confusion) == 11 and sum(sum(map(int, line.split(",")[1:])) for line in confusion[1:]) == 360

    module = run_command("--help", cwd=tmp_path)
    assert module.returncode == 0 and "train" in module.stdout and "eval" in module.stdout


def test_the_package_runs_as_a_module(workdir, monkeypatch, capsys):
    """python -m snnclf, in this process (its subprocess twin below is slow)."""
    monkeypatch.setattr(sys, "argv", ["snnclf", "eval", "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("snnclf", run_name="__main__", alter_sys=True)
    assert done.value.code == 0 and "--test_only" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["snnclf", "eval", "--run", "never"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("snnclf", run_name="__main__", alter_sys=True)
    assert done.value.code == 2 and "no checkpoint at" in capsys.readouterr().err


@pytest.mark.slow
def test_python_dash_m_runs_the_cli(tmp_path):
    import subprocess

    out = subprocess.run([sys.executable, "-m", "snnclf", "eval", "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--test_only" in out.stdout


def _commands():
    """{command: its parser} of every command of the snnclf parser."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("command", sorted(_commands()))
def test_help_explains_every_flag_with_its_default(cli, command):
    code, out, _ = cli(command, "--help")
    assert code == 0
    text = "".join(out.split())  # argparse wraps lines, at spaces and after hyphens
    flags = [a for a in _commands()[command]._actions if a.option_strings and a.dest != "help"]
    assert flags
    for action in flags:  # shown with every spelling, and its help states the default
        assert all(spelling in out for spelling in action.option_strings), action.option_strings
        assert "(default: " in action.help, action.option_strings
        assert "".join(action.help.replace("%%", "%").split()) in text, action.option_strings
    if command == "train":
        for shown in ("--time_steps", "--time-steps", "--batch_size", "--batch-size", "--weight_decay",
                      "--data_dir", "(default: 8)", "(default: digits)", "(default: csnn)"):
            assert shown in out
        assert len(flags) >= 35


def test_eval_without_test_only_reports_every_split(workdir, cli):
    assert cli("train", *QUICK, "--model", "snn-mlp")[0] == 0
    code, out, err = cli("eval", "--run", "digits-snn-mlp-T2")
    assert code == 0, err
    for text in ("test accuracy", "val accuracy", "train accuracy", "per-class test accuracy"):
        assert text in out
    result = json.loads((workdir / "logs/digits-snn-mlp-T2/eval.json").read_text())
    assert result["num_train"] == 200 and result["num_val"] == 22 and result["num_test"] == 360


def test_kebab_and_underscore_spellings(workdir, cli):
    code, _, err = cli("train", "--subset", "100", "--epochs", "1", "--time-steps", "3",
                       "--batch-size", "25", "--weight-decay", "0.001", "--val-fraction", "0.2")
    assert code == 0, err
    config = json.loads((workdir / "logs/digits-csnn-T3/config.json").read_text())
    assert (config["time_steps"], config["batch_size"], config["weight_decay"],
            config["val_fraction"]) == (3, 25, 0.001, 0.2)


@pytest.mark.parametrize("model", list_models())
def test_every_model_trains_an_epoch_through_the_cli(workdir, cli, model):
    extra = ["--arch", "16C3-MP2-FC10"] if model == "arch" else ["--model", model]
    code, _, err = cli("train", "--subset", "200", "--epochs", "1", "--time_steps", "2", *extra)
    assert code == 0, err
    name = f"digits-{model}-T2"
    ckpt = load_checkpoint(workdir / f"checkpoints/{name}/best.pt")
    assert ckpt["model_name"] == model and ckpt["epoch"] == 1
    # one epoch: the optimizer stepped once per batch of the 200 training images, on every parameter
    batches = math.ceil(200 / ckpt["config"]["batch_size"])
    assert len(ckpt["optimizer"]["state"]) == len(ckpt["optimizer"]["param_groups"][0]["params"])
    assert {float(s["step"]) for s in ckpt["optimizer"]["state"].values()} == {batches}
    metrics = ckpt["metrics"]
    assert 0 <= metrics["train_accuracy"] <= 1 and 0 <= metrics["val_accuracy"] <= 1
    assert math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["val_loss"])


def test_checkpoint_round_trip(workdir, cli):
    assert cli("train", *QUICK, "--model", "resnet", "--beta", "0.7", "--learn_threshold")[0] == 0
    ckpt = load_checkpoint(workdir / "checkpoints/digits-resnet-T2/last.pt")
    for key in ("model_name", "model_kwargs", "model", "optimizer", "scheduler", "epoch", "metrics",
                "config", "rng"):
        assert key in ckpt
    assert ckpt["model_kwargs"]["beta"] == 0.7 and ckpt["model_kwargs"]["learn_threshold"] is True
    model = load_model(ckpt, torch.device("cpu"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, ckpt["model"][key]), key
    x = torch.rand(2, 4, 1, 8, 8)
    assert torch.equal(model(x)[0], load_model(ckpt, torch.device("cpu"))(x)[0])


def test_resume_continues_and_matches_an_uninterrupted_run(workdir, cli):
    # rate spikes and dropout draw random numbers, so equal rows need every RNG state restored;
    # the learning rate is constant, so a 2-epoch run extended to 3 is a run interrupted after 2
    common = ["--model", "snn-mlp", "--subset", "200", "--time_steps", "3", "--batch_size", "50",
              "--encoding", "rate", "--dropout", "0.2"]
    assert cli("train", *common, "--epochs", "3", "--run", "whole")[0] == 0
    assert cli("train", *common, "--epochs", "2", "--run", "cut")[0] == 0
    code, _, err = cli("train", "--run", "cut", "--resume", "--epochs", "3")
    assert code == 0, err
    assert "resuming run cut at epoch 3 of 3" in err
    whole, cut = read_metrics(workdir / "logs/whole/metrics.csv"), read_metrics(workdir / "logs/cut/metrics.csv")
    assert [r["epoch"] for r in cut] == [1, 2, 3]
    for a, b in zip(whole, cut):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "spikes_per_sample"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), (key, a, b)
    code, _, err = cli("train", "--run", "cut", "--resume")
    assert code == 2 and "already finished its 3 epochs" in err


def test_existing_run_is_not_touched_without_resume_or_overwrite(workdir, cli):
    assert cli("train", *QUICK)[0] == 0
    files = sorted(p for p in workdir.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    code, _, err = cli("train", *QUICK)
    assert code == 2 and "run digits-csnn-T2 exists" in err and "--resume" in err
    assert sorted(p for p in workdir.rglob("*") if p.is_file()) == files
    assert all(p.read_bytes() == data for p, data in before.items())
    code, _, err = cli("train", *QUICK[:-2], "--batch_size", "40", "--overwrite")
    assert code == 0, err
    assert json.loads((workdir / "logs/digits-csnn-T2/config.json").read_text())["batch_size"] == 40


def test_resume_refuses_a_changed_configuration(workdir, cli):
    assert cli("train", *QUICK)[0] == 0
    code, _, err = cli("train", "--run", "digits-csnn-T2", "--resume", "--epochs", "3", "--lr", "0.1")
    assert code == 2 and "not with --lr 0.1" in err
    assert cli("train", *QUICK, "--scheduler", "--run", "cos")[0] == 0
    code, _, err = cli("train", "--run", "cos", "--resume", "--epochs", "4")
    assert code == 2 and "laid out over its 2 epochs" in err  # a cosine schedule cannot stretch


@pytest.mark.parametrize("name, folder", idx_data_sets())
def test_train_and_eval_on_idx_files(workdir, cli, name, folder):
    make_mnist_like(workdir / "data", folder, n_train=300, n_test=100)
    code, _, err = cli("train", "--dataset", name, "--epochs", "3", "--time_steps", "2",
                       "--batch_size", "32", "--model", "snn-mlp")
    assert code == 0, err
    code, out, err = cli("eval", "--test_only", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["dataset"] == name and result["num_test"] == 100 and result["test_accuracy"] > 0.5


class _Evil:
    """Unpickling this calls open(marker, "w"): it would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused(workdir, cli):
    marker = workdir / "pwned"
    torch.save({"format": "snnclf-checkpoint", "model": _Evil(marker)}, workdir / "evil.pt")
    with open(workdir / "evil.pkl", "wb") as f:  # a plain pickle, newest protocol
        pickle.dump({"format": "snnclf-checkpoint", "model": _Evil(marker)}, f, protocol=pickle.HIGHEST_PROTOCOL)
    code, _, err = cli("eval", "--checkpoint", workdir / "evil.pt")
    assert code == 2 and "safe (weights-only) load refuses" in err and "io.open" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("eval", "--checkpoint", workdir / "evil.pkl")
    assert code == 2 and "not a readable checkpoint" in err
    (workdir / "ck" / "x").mkdir(parents=True)
    (workdir / "evil.pt").rename(workdir / "ck" / "x" / "last.pt")
    code, _, err = cli("train", "--resume", "--save_dir", workdir / "ck", "--run", "x")
    assert code == 2 and "refuses" in err
    assert not marker.exists()


BAD_INPUTS = [
    (["train", "--model", "nope"], "invalid choice: 'nope'"),
    (["train", "--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["train", "--encoding", "phase"], "invalid choice: 'phase'"),
    (["train", "--loss", "hinge"], "invalid choice: 'hinge'"),
    (["train", "--optimizer", "lbfgs"], "invalid choice: 'lbfgs'"),
    (["train", "--time_steps", "0"], "--time_steps: must be at least 1, got 0"),
    (["train", "--beta", "1.5"], "--beta: must be at most 1, got 1.5"),
    (["train", "--threshold", "0"], "--threshold: must be above 0, got 0"),
    (["train", "--lr", "-1"], "--lr: must be above 0, got -1"),
    (["train", "--batch_size", "0"], "--batch_size: must be at least 1, got 0"),
    (["train", "--epochs", "two"], "--epochs: expected an integer, got 'two'"),
    (["train", "--val_fraction", "1"], "--val_fraction: must be below 1"),
    (["train", "--arch", "12C5-XX-FC10"], "cannot read token 2 'XX'"),
    (["train", "--arch", "12C5-MP2-64C5-MP2-FC10", "--model", "csnn"], "both name a model"),
    (["train", "--model", "arch"], "--model arch needs --arch SPEC"),
    (["train", "--dataset", "mnist", "--data_dir", "empty"], "files are not in empty/MNIST/raw"),
    (["train", "--model", "ann-mlp", "--beta", "0.5"], "--beta does not apply to model ann-mlp"),
    (["train", "--alpha", "0.5"], "--alpha does not apply to model csnn"),
    (["train", "--model", "ann-cnn", "--loss", "count"], "not spiking: use --loss ce-mem"),
    (["train", "--loss", "mse", "--time_steps", "1"], "--loss mse needs --time_steps of 2 or more"),
    (["train", "--scheduler", "multistep"], "needs --milestones"),
    (["train", "--momentum", "0.9"], "--momentum applies to --optimizer sgd only"),
    (["train", "--surrogate", "triangular", "--slope", "3"], "--slope does not apply"),
    (["train", "--resume", "--overwrite"], "give one of them"),
    (["train", "--resume", "--run", "never"], "no checkpoint at"),
    (["train", "--run", "../escape"], "not a usable run name"),
    (["eval", "--run", "never"], "no checkpoint at"),
    (["eval"], "no trained run in checkpoints/"),
    (["eval", "--checkpoint", "notes.txt"], "is not a readable checkpoint"),
    (["eval", "--checkpoint", "zip_ok.pt"], "is not an snnclf checkpoint"),
    (["train", "--gamma", "0.5"], "--gamma shapes a learning-rate schedule"),
    (["train", "--milestones", "3"], "--milestones shapes a learning-rate schedule"),
    (["train", "--seed", "5000000000"], "--seed: must be at most 2147483647"),
    (["compare", "nothing"], "run nothing has no config.json"),
    (["visualize-activations", "--run", "nothing"], "no checkpoint at"),
    ([], "the following arguments are required: COMMAND"),
    (["fly"], "invalid choice: 'fly'"),
]
if not torch.cuda.is_available():
    BAD_INPUTS.append((["train", "--device", "cuda"], "no CUDA device is available"))


@pytest.mark.parametrize("args, fragment", BAD_INPUTS, ids=[" ".join(a) or "none" for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2(workdir, cli, args, fragment):
    (workdir / "notes.txt").write_text("not a checkpoint")
    torch.save({"weights": torch.ones(2)}, workdir / "zip_ok.pt")
    code, out, err = cli(*args)
    assert code == 2
    assert fragment in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (workdir / "checkpoints").exists() and not (workdir / "logs").exists()


@pytest.mark.slow
def test_compile_trains_and_evaluates_and_reports_its_cost(workdir, cli):
    code, _, err = cli("train", "--subset", "400", "--epochs", "3", "--time_steps", "4",
                       "--batch_size", "50", "--run", "compiled", "--compile")
    assert code == 0, err
    assert "torch.compile: the first training step took" in err
    config = json.loads((workdir / "logs/compiled/config.json").read_text())
    assert config["compile"] is True
    state = torch.load(workdir / "checkpoints/compiled/best.pt", weights_only=True)["model"]
    assert not any(key.startswith("_orig_mod") for key in state)  # the plain model's weights
    code, out, err = cli("eval", "--run", "compiled", "--test_only", "--compile", "--json")
    assert code == 0, err
    compiled = json.loads(out)
    plain = json.loads(cli("eval", "--run", "compiled", "--test_only", "--json")[1])
    assert compiled["test_accuracy"] == plain["test_accuracy"] > 0.3  # above chance (0.1)
