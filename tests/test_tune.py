"""snnclf tune (Optuna studies over train options) and the spike-rate regulariser it searches."""
import csv
import subprocess
import sys

import pytest
import torch

from snnclf.losses import RateRegularizer
from snnclf.models import get_model
from snnclf.runs import read_json, read_metrics

optuna = pytest.importorskip("optuna")

SMALL = ["--model", "snn-mlp", "--subset", "300", "--batch_size", "50", "--time_steps", "2"]


def _trials(workdir, name):
    with open(workdir / "logs" / name / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_the_rate_regulariser_penalises_hidden_layers_above_the_target():
    torch.manual_seed(0)
    model = get_model("snn-mlp", (1, 8, 8), 10, threshold=0.1)  # fires readily
    x = torch.rand(4, 8, 1, 8, 8)
    for target in (0.0, 0.05):
        reg = RateRegularizer(2.0, target)
        with reg.watch(model):
            spk, mem = model(x)
            penalty, rates = reg.penalty()
        assert list(rates) == ["fc1_lif", "fc2_lif"]  # hidden layers; the output layer is the loss's
        assert penalty.item() == pytest.approx(2.0 * sum(max(r - target, 0.0) for r in rates.values()), rel=1e-5)
        penalty.backward()  # the gradient reaches the weights through the surrogate
        assert model.fc1[0].weight.grad.abs().sum() > 0
        model.zero_grad()
    with pytest.raises(Exception, match="no spiking layers|has none"):
        with RateRegularizer(1.0).watch(get_model("ann-mlp", (1, 8, 8), 10)):
            pass


def test_layers_are_named_as_in_the_bare_model_inside_ddp_and_compile():
    """torch.compile around DDP names a layer _orig_mod.module.fc1_lif: its rate column is still
    rate_fc1_lif, as TensorBoard's firing rates name it."""
    from torch import nn

    from snnclf.models.neurons import spiking_layers
    model = get_model("snn-mlp", (1, 8, 8), 10)
    ddp, compiled = nn.Module(), nn.Module()
    ddp.module = model
    compiled._orig_mod = ddp
    assert [n for n, _ in spiking_layers(compiled)] == [n for n, _ in spiking_layers(model)] == \
        ["fc1_lif", "fc2_lif", "fc3_lif"]
    reg = RateRegularizer(1.0)
    with reg.watch(compiled):
        model(torch.rand(2, 3, 1, 8, 8))
        assert list(reg.penalty()[1]) == ["fc1_lif", "fc2_lif"]


def test_rate_reg_is_recorded_and_logged_per_layer(workdir, cli):
    code, _, err = cli("train", *SMALL, "--epochs", "1", "--rate_reg", "0.01", "--rate_target", "0.02")
    assert code == 0, err
    config = read_json(workdir / "logs/digits-snn-mlp-T2/config.json")
    assert config["rate_reg"] == 0.01 and config["rate_target"] == 0.02
    row = read_metrics(workdir / "logs/digits-snn-mlp-T2/metrics.csv")[0]
    assert 0 < row["rate_fc1_lif"] < 1 and 0 <= row["rate_fc2_lif"] < 1
    code, _, err = cli("train", "--model", "ann-mlp", "--rate_reg", "0.1", "--run", "x")
    assert code == 2 and "--rate_reg" in err
    code, _, err = cli("train", "--rate_target", "0.1", "--run", "y")
    assert code == 2 and "give --rate_reg" in err


def test_a_run_is_stopped_early_only_before_its_last_epoch(workdir):
    """A search's pruner may ask after any epoch; after the last one the run is finished, and a
    trial that trained all its epochs counts as complete, not pruned."""
    from snnclf.train import train
    asked = []
    flags = {"model": "snn-mlp", "subset": 200, "batch_size": 50, "time_steps": 2}

    def stop(epoch, row):
        asked.append(epoch)
        return True
    early = train({**flags, "epochs": 2, "run": "early"}, epoch_callback=stop)
    assert early["stopped_at"] == 1 and asked == [1]
    assert len(read_metrics(workdir / "logs/early/metrics.csv")) == 1
    whole = train({**flags, "epochs": 1, "run": "whole"}, epoch_callback=stop)
    assert whole["stopped_at"] is None and asked == [1, 1]


@pytest.mark.slow
def test_the_regulariser_lowers_the_spike_count_at_the_same_accuracy(workdir, cli):
    """csnn on digits, 8 epochs, with and without --rate_reg 0.01. On 360 test images one
    standard error of an accuracy near 97% is 0.9 points; the regularised run must stay within
    two of them (1.8 points) while its synaptic operations (spikes times fan-out) drop by 5% or more."""
    results = {}
    for name, extra in (("plain", []), ("reg", ["--rate_reg", "0.01"])):
        assert cli("train", "--epochs", "8", "--run", name, *extra)[0] == 0
        code, out, err = cli("eval", "--run", name, "--test_only", "--json")
        assert code == 0, err
        import json

        results[name] = json.loads(out)
    plain, reg = results["plain"], results["reg"]
    assert reg["test_accuracy"] >= plain["test_accuracy"] - 0.018
    assert reg["efficiency"]["totals"]["sops"] <= 0.95 * plain["efficiency"]["totals"]["sops"]


def test_a_one_trial_study_trains_an_ordinary_run_from_its_space(workdir, cli):
    """The fast share of the studies below: one tiny trial, whose value is its run's."""
    code, out, err = cli("tune", "--name", "one", "--trials", "1", "--model", "snn-mlp", "--subset", "100",
                         "--batch_size", "50", "--time_steps", "2", "--epochs", "1", "--lr", "1e-3", "2e-3",
                         "--sampler_seed", "0")
    assert code == 0, err
    assert "study one: 1 trials (1 complete)" in out
    trial, = _trials(workdir, "one")
    assert trial["state"] == "COMPLETE" and float(trial["lr"]) in (1e-3, 2e-3)
    config = read_json(workdir / "logs" / trial["run"] / "config.json")
    assert config["lr"] == float(trial["lr"]) and config["time_steps"] == 2 and config["subset"] == 100
    row, = read_metrics(workdir / "logs" / trial["run"] / "metrics.csv")
    assert float(trial["val_accuracy"]) == pytest.approx(row["val_accuracy"]) and float(trial["energy_uj"]) > 0


@pytest.mark.slow
def test_a_small_study_trains_ordinary_runs_and_reports(workdir, cli):
    code, out, err = cli("tune", "--name", "s", "--trials", "3", *SMALL, "--epochs", "1",
                         "--lr", "1e-3:1e-2:log", "--beta", "0.8", "0.95", "--objective", "accuracy", "energy",
                         "--sampler_seed", "0")
    assert code == 0, err
    assert "study s: 3 trials (3 complete)" in out and "Pareto front" in out
    trials = _trials(workdir, "s")
    assert [t["state"] for t in trials] == ["COMPLETE"] * 3
    for t in trials:
        assert 1e-3 <= float(t["lr"]) <= 1e-2 and float(t["beta"]) in (0.8, 0.95)
        assert 0.1 < float(t["val_accuracy"]) <= 1 and float(t["energy_uj"]) > 0
        config = read_json(workdir / "logs" / t["run"] / "config.json")
        assert config["lr"] == pytest.approx(float(t["lr"]), rel=1e-3)
    run = trials[0]["run"]
    assert cli("eval", "--run", run, "--test_only")[0] == 0  # an ordinary run folder
    retrain = next(line for line in out.splitlines() if line.startswith("retrain"))
    assert f"snnclf train --config logs/{retrain.split('(')[1].split(')')[0]}/config.json --run s-best" in retrain
    from PIL import Image

    with Image.open(workdir / "logs/s/front.png") as image:
        assert image.size[0] > 300
    assert read_json(workdir / "logs/s/importances.json").keys() <= {"accuracy", "energy"}


@pytest.mark.slow
def test_a_study_stopped_mid_trial_goes_on_where_it_stopped(workdir, cli, monkeypatch):
    from snnclf import train as train_module

    args = ["tune", "--name", "r", "--trials", "3", *SMALL, "--epochs", "2", "--lr", "1e-3:1e-2:log",
            "--sampler_seed", "0"]
    monkeypatch.setattr(train_module.StopOnSignal, "stop_at", ("r-t001", 2, 3))
    code, _, err = cli(*args)
    assert code == 130, err
    midway = torch.load(workdir / "checkpoints/r-t001/last.pt", weights_only=True)
    assert midway["epoch"] == 1 and midway["midway"]["totals"]["steps"] == 3
    monkeypatch.setattr(train_module.StopOnSignal, "stop_at", None)
    code, out, err = cli(*args)
    assert code == 0, err
    assert "resuming run r-t001 at epoch 2 of 2, step 4" in err
    done = [t for t in _trials(workdir, "r") if t["state"] == "COMPLETE"]
    assert len(done) == 3 and "r-t001" in {t["run"] for t in done}
    assert [r["epoch"] for r in read_metrics(workdir / "logs/r-t001/metrics.csv")] == [1, 2]


@pytest.mark.slow
def test_pruning_stops_trials_that_fall_behind(workdir, cli):
    code, out, err = cli("tune", "--name", "p", "--trials", "6", *SMALL, "--epochs", "3", "--lr", "3e-4", "5e-3",
                         "--sampler", "random", "--sampler_seed", "0")
    assert code == 0, err
    pruned = [t for t in _trials(workdir, "p") if t["state"] == "PRUNED"]
    assert pruned, _trials(workdir, "p")
    for t in pruned:  # stopped before its last epoch, its files an ordinary (resumable) run
        assert len(read_metrics(workdir / "logs" / t["run"] / "metrics.csv")) < 3
        assert float(t["lr"]) == 3e-4


@pytest.mark.slow
def test_two_workers_share_one_study_without_running_a_trial_twice(tmp_path):
    cmd = [sys.executable, "-m", "snnclf", "tune", "--name", "w", "--trials", "4", *SMALL, "--epochs", "1",
           "--lr", "1e-3:1e-2:log"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trials = _trials(tmp_path, "w")
    done = [t for t in trials if t["state"] == "COMPLETE"]
    assert 4 <= len(done) <= 5  # each worker stops once 4 are done; one may be finishing its last
    runs = [t["run"] for t in trials]
    assert len(runs) == len(set(runs))
    for run in runs:  # each trained once: one row per epoch
        assert len(read_metrics(tmp_path / "logs" / run / "metrics.csv")) == 1


@pytest.mark.parametrize("args, message", [
    (["--model", "snn-mlp", "ann-mlp", "--beta", "0.5:0.9"], "--beta does not apply to model ann-mlp"),
    (["--loss", "mse", "--time_steps", "1", "4"], "--loss mse needs --time_steps of 2 or more"),
    (["--lr", "1e-2:1e-4"], "low end must be below"),
    (["--lr", "0:1e-2:log"], "must be above 0"),
    (["--lr", "1e-3:1e-2:cubic"], "LOW:HIGH or LOW:HIGH:log"),
    (["--model", "csnn:snn-mlp"], "invalid choice"),
    (["--time_steps", "4"], "needs a search space"),
    (["--time_steps", "2", "100000000"], "lower --time_steps or --batch_size"),  # a point over memory
    (["--dataset", "digits", "mnist", "--data_dir", "nowhere", "--lr", "1e-3", "2e-3"], "not in nowhere"),
])
def test_a_space_with_an_invalid_point_is_refused_before_the_first_trial(workdir, cli, args, message):
    code, _, err = cli("tune", "--name", "bad", *args)
    assert code == 2 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (workdir / "checkpoints").exists() and not (workdir / "logs").exists()


def test_an_empty_list_in_the_space_file_is_refused_in_one_line(workdir):
    from snnclf.errors import UsageError
    from snnclf.tune import make_space
    (workdir / "space.yaml").write_text("lr: []\n")
    with pytest.raises(UsageError, match="--lr: an empty list; give one value or several"):
        make_space({}, "space.yaml")


@pytest.mark.slow
def test_a_space_from_a_file(workdir, cli):
    (workdir / "space.yaml").write_text("model: snn-mlp\nsubset: 300\nbatch_size: 50\ntime_steps: [2, 3]\n"
                                        "epochs: 1\nlr: {low: 1.0e-3, high: 1.0e-2, log: true}\nbeta: '0.8:0.9'\n")
    code, out, err = cli("tune", "--name", "f", "--trials", "2", "--config", "space.yaml", "--sampler_seed", "1")
    assert code == 0, err
    for t in _trials(workdir, "f"):
        assert int(t["time_steps"]) in (2, 3) and 0.8 <= float(t["beta"]) <= 0.9


@pytest.mark.slow
def test_the_report_tests_the_trials_where_a_config_file_put_them(workdir, cli):
    (workdir / "space.yaml").write_text("model: snn-mlp\nsubset: 200\nbatch_size: 50\ntime_steps: 2\nepochs: 1\n"
                                        "lr: [1.0e-3, 2.0e-3]\nsave_dir: ck\nlog_dir: lg\n")
    code, out, err = cli("tune", "--name", "d", "--trials", "1", "--config", "space.yaml")
    assert code == 0, err
    assert not (workdir / "checkpoints").exists() and not (workdir / "logs").exists()
    with open(workdir / "lg/d/trials.csv", newline="") as f:
        (trial,) = list(csv.DictReader(f))
    assert read_json(workdir / "lg" / trial["run"] / "eval.json")["run"] == trial["run"]


@pytest.mark.slow
def test_a_study_of_that_name_with_another_space_is_refused(workdir, cli):
    base = ["tune", "--name", "same", "--trials", "1", *SMALL, "--epochs", "1"]
    assert cli(*base, "--lr", "1e-3", "2e-3", "--sampler_seed", "0")[0] == 0
    code, _, err = cli(*base, "--lr", "1e-3", "5e-3")
    assert code == 2 and "another space" in err


def test_tune_without_optuna_names_the_install(workdir, cli, monkeypatch):
    import importlib

    real = importlib.import_module

    def missing(name, *a, **k):
        if name == "optuna":
            raise ImportError("No module named 'optuna'")
        return real(name, *a, **k)
    monkeypatch.setattr(importlib, "import_module", missing)
    code, _, err = cli("tune", "--lr", "1e-3", "2e-3")
    assert code == 2 and "pip install 'snnclf[tune]'" in err


@pytest.mark.slow  # torchrun
def test_a_worker_of_two_torchrun_processes_trains_each_trial_together(tmp_path):
    """A worker started by torchrun: rank 0 runs the study, and every trial is one run trained by
    both processes (global batch 2 x 25), as snnclf train under torchrun trains it."""
    import os

    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "snnclf", "tune", "--name", "d", "--trials", "2", "--model", "snn-mlp", "--subset",
                          "300", "--batch_size", "25", "--time_steps", "2", "--epochs", "1", "--device", "cpu",
                          "--lr", "1e-3:1e-2:log", "--sampler_seed", "0"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert out.stderr.count("2 processes x batch 25 = global batch 50") == 2  # one line per trial, rank 0's
    assert out.stdout.count("study d: 2 trials (2 complete)") == 1  # rank 0 reports
    trials = _trials(tmp_path, "d")
    assert [t["state"] for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:
        assert read_json(tmp_path / "logs" / t["run"] / "config.json")["processes"] == 2


@pytest.mark.parametrize("content", [b"lr: [1.0e-3, 2.0e-3]\n", b"a\nb\n", b"", b"PK\x03\x04\x00\x01"])
def test_a_storage_file_that_is_not_a_journal_is_refused_untouched(workdir, cli, content):
    """A space file typed where --config was meant: Optuna would append a record to it."""
    (workdir / "space.yaml").write_bytes(content)
    code, _, err = cli("tune", "--name", "j", "--storage", "space.yaml", *SMALL, "--lr", "1e-3", "2e-3")
    assert code == 2 and "--storage space.yaml exists and is not an Optuna journal" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert (workdir / "space.yaml").read_bytes() == content
    assert not (workdir / "checkpoints").exists() and not (workdir / "logs").exists()


def test_a_study_whose_every_trial_fails_says_so_in_one_line(workdir, cli):
    """Each failed trial is one logged line (Optuna's report of it was a traceback), and a study
    with no trial but failed ones is an error, with trials.csv saying why."""
    for n in range(2):
        (workdir / "logs" / f"f-t00{n}").mkdir(parents=True)  # the trials' run names, taken
    code, _, err = cli("tune", "--name", "f", "--trials", "1", *SMALL, "--epochs", "1", "--lr", "1e-3", "2e-3")
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("snnclf tune: error: study f: every trial failed (2)")
    assert "trial 0 (f-t000) failed: run f-t000 exists" in err
    assert [t["state"] for t in _trials(workdir, "f")] == ["FAIL", "FAIL"]
    assert "f-t001 exists" in _trials(workdir, "f")[1]["error"]


def test_ctrl_c_in_a_trial_says_to_run_the_study_again(workdir, cli, monkeypatch):
    from snnclf import train as train_module

    monkeypatch.setattr(train_module.StopOnSignal, "stop_at", ("i-t000", 1, None))
    code, _, err = cli("tune", "--name", "i", "--trials", "1", *SMALL, "--subset", "100", "--epochs", "2",
                       "--lr", "1e-3", "2e-3")
    assert code == 130 and "Traceback" not in err, err
    assert "go on with: the same snnclf tune command" in err and "snnclf train" not in err


@pytest.mark.parametrize("text, message", [
    ('lr: {low: 0.0001, high: 0.01, log: "false"}', "log is 'false', not true or false"),
    ("lr: {low: 0.0001, high: 0.01, log: true, step: 0.001}", "a step or log, not both"),
    ("lr: {low: 0.001, high: 0.01, step: 0}", "a step is a number above 0"),
    ("time_steps: {low: 2, high: 8, step: 1.5}", "a step is an integer above 0"),
    ("lr: {low: 0.001, high: 0.01, stride: 2}", "with log: true or step: S"),
])
def test_a_range_in_a_space_file_is_read_as_written(workdir, text, message):
    """A quoted "false" was read as true (a log scale); a range's step (Optuna's) was refused."""
    from snnclf.errors import UsageError
    from snnclf.tune import make_space

    (workdir / "space.yaml").write_text(text + "\n")
    with pytest.raises(UsageError, match=message):
        make_space({}, "space.yaml")


def test_a_range_with_a_step_draws_its_multiples(workdir):
    from snnclf.tune import make_space

    (workdir / "space.yaml").write_text("lr: {low: 0.001, high: 0.01, step: 0.003}\ntime_steps: {low: 2, high: 8, "
                                        "step: 3}\nbeta: {low: 0.5, high: 0.9, log: false}\n")
    space = make_space({}, "space.yaml")
    assert not space.params["beta"].log and space.params["time_steps"].step == 3
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = [{n: p.suggest(study.ask()) for n, p in space.params.items()} for _ in range(30)]
    assert {round(d["lr"], 6) for d in drawn} <= {0.001, 0.004, 0.007, 0.01}
    assert {d["time_steps"] for d in drawn} <= {2, 5, 8} and len({d["time_steps"] for d in drawn}) > 1


@pytest.mark.parametrize("sampler", ["random", "tpe", "nsga2"])
def test_workers_with_one_sampler_seed_draw_other_points(workdir, sampler):
    """Two workers given the same --sampler_seed drew the same points (t000 and t001 alike), and a
    study started again drew its first points anew; one worker still repeats its choices."""
    from pathlib import Path

    from snnclf.tune import _study, make_space

    space = make_space({"lr": ["1e-4:1e-2:log"], "beta": ["0.5:0.99"]})

    def open_study(name):
        return _study(optuna, name, space, ("accuracy",), None, Path(name), sampler, 7, "none")

    def draw(study):
        trial = study.ask()
        point = tuple(p.suggest(trial) for p in space.params.values())
        study.tell(trial, point[0])
        return point
    one, two = open_study("a"), open_study("a")  # two workers of study a
    shared = [draw(s) for _ in range(3) for s in (one, two)]
    later = [draw(open_study("a")) for _ in range(2)]  # started again
    assert len(set(shared + later)) == len(shared + later)
    alone = [draw(s) for s in [open_study("b")] for _ in range(6)]
    assert alone == [draw(s) for s in [open_study("c")] for _ in range(6)]  # one worker: the same choices


def test_a_range_of_an_event_option_needs_a_step(workdir, cli):
    """--frame_ms 1:10 drew a new value, and so framed the data set into a new cache, every trial."""
    code, _, err = cli("tune", "--name", "e", "--dataset", "digits-events", "--frame_ms", "20:80", *SMALL[:2])
    assert code == 2 and "--frame_ms: each value frames the data set anew" in err, err
    assert len(err.strip().splitlines()) == 1 and not (workdir / "logs").exists()
