"""snnclf sweep: a grid of runs, collapsed, resumable, shardable, then compared."""
import pytest
import yaml
from PIL import Image

from snnclf.runs import load_checkpoint, read_json, read_metrics

GRID = ["--model", "snn-mlp", "--subset", "200", "--epochs", "2", "--batch_size", "50",
        "--beta", "0.5", "0.9", "--time_steps", "2", "3"]
POINTS = ["s-time_steps=2-beta=0.5", "s-time_steps=2-beta=0.9", "s-time_steps=3-beta=0.5",
          "s-time_steps=3-beta=0.9"]
SAME = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "spikes_per_sample")


def _table(workdir, name="s"):
    lines = (workdir / f"logs/{name}/compare.md").read_text().splitlines()
    return [dict(zip([h.strip() for h in lines[0].strip("|").split("|")],
                     [c.strip() for c in line.strip("|").split("|")])) for line in lines[2:]]


@pytest.mark.slow
def test_a_2x2_sweep_stopped_and_started_again_finishes_and_compares(workdir, cli, monkeypatch):
    from snnclf import train as train_module

    with monkeypatch.context() as patch:  # Ctrl-C in the third run, epoch 2, after step 2 (of 4)
        patch.setattr(train_module.StopOnSignal, "stop_at", (POINTS[2], 2, 2))
        code, _, err = cli("sweep", "--name", "s", *GRID)
    assert code == 130, err
    assert "sweep s stopped at point 3 of 4" in err and "run the same snnclf sweep command again" in err
    assert (workdir / "logs" / POINTS[1] / "eval.json").is_file()
    assert not (workdir / "logs" / POINTS[2] / "eval.json").exists()
    stopped = load_checkpoint(workdir / "checkpoints" / POINTS[2] / "last.pt")
    assert stopped["epoch"] == 1 and stopped["midway"]["totals"]["steps"] == 2
    assert not (workdir / "logs" / POINTS[3]).exists()

    code, out, err = cli("sweep", "--name", "s", *GRID)
    assert code == 0, err
    assert "point 1 of 4, s-time_steps=2-beta=0.5 (done, skipped)" in err
    assert f"point 3 of 4, {POINTS[2]} (resuming)" in err and f"point 4 of 4, {POINTS[3]} (training)" in err
    assert "4 of 4 points done" in out
    rows = _table(workdir)
    assert [r["run"] for r in rows] == POINTS
    assert [(r["beta"], r["T"]) for r in rows] == [("0.5", "2"), ("0.9", "2"), ("0.5", "3"), ("0.9", "3")]
    for name, row in zip(POINTS, rows):
        assert float(row["test acc. %"]) == pytest.approx(100 * read_json(workdir / f"logs/{name}/eval.json")["test_accuracy"], abs=0.006)
    for picture in ("sweep_time_steps.png", "sweep_beta.png", "compare_curves.png"):
        with Image.open(workdir / "logs/s" / picture) as image:
            assert image.format == "PNG" and image.size[0] > 300, picture

    # the resumed point trained as if never stopped
    code, _, err = cli("train", "--model", "snn-mlp", "--subset", "200", "--epochs", "2", "--batch_size", "50",
                       "--beta", "0.5", "--time_steps", "3", "--run", "whole")
    assert code == 0, err
    whole, resumed = (read_metrics(workdir / f"logs/{n}/metrics.csv") for n in ("whole", POINTS[2]))
    assert [{k: r[k] for k in SAME} for r in whole] == [{k: r[k] for k in SAME} for r in resumed]


def test_a_shard_trains_and_tests_its_points_and_compares_them(workdir, cli):
    """One point of two, tiny (the fast share of the tests around it): trained, tested, compared
    and drawn against the axis; the other point is left to the other shard."""
    grid = ["--model", "snn-mlp", "--subset", "100", "--epochs", "1", "--batch_size", "50", "--time_steps", "1", "2"]
    code, out, err = cli("sweep", "--name", "q", *grid, "--shard", "2/2")
    assert code == 0, err
    assert "point 1 of 1, q-time_steps=2 (training)" in err and "1 of 2 points done" in out and "left to other shards" in out
    row, = _table(workdir, "q")
    assert row["run"] == "q-time_steps=2" and row["T"] == "2"
    result = read_json(workdir / "logs/q-time_steps=2/eval.json")
    assert result["time_steps"] == 2 and float(row["test acc. %"]) == pytest.approx(100 * result["test_accuracy"], abs=0.006)
    assert not (workdir / "logs/q-time_steps=1").exists()
    with Image.open(workdir / "logs/q/sweep_time_steps.png") as image:
        assert image.format == "PNG" and image.size[0] > 300


@pytest.mark.slow
def test_shards_split_the_points_and_compare_collects_them(workdir, cli):
    code, out, err = cli("sweep", "--name", "s", *GRID, "--shard", "2/2")
    assert code == 0, err
    assert "2 of 4 points done" in out and "left to other shards" in out
    assert sorted(p.name for p in (workdir / "logs").iterdir() if p.name != "s") == [POINTS[1], POINTS[3]]
    code, out, err = cli("sweep", "--name", "s", *GRID, "--shard", "1/2")
    assert code == 0, err
    assert "4 of 4 points done" in out
    assert [r["run"] for r in _table(workdir)] == POINTS


@pytest.mark.slow
def test_a_non_spiking_model_is_not_run_once_per_T(workdir, cli):
    (workdir / "study.yaml").write_text(yaml.safe_dump(
        {"model": ["ann-mlp", "snn-mlp"], "time_steps": [1, 3], "subset": 150, "epochs": 1}))
    code, out, err = cli("sweep", "--name", "study", "--config", "study.yaml")
    assert code == 0, err
    assert "time_steps=3, model=ann-mlp is the same run as study-time_steps=1-model=ann-mlp (collapsed)" in err
    assert [r["run"] for r in _table(workdir, "study")] == [
        "study-time_steps=1-model=ann-mlp", "study-time_steps=1-model=snn-mlp", "study-time_steps=3-model=snn-mlp"]


@pytest.mark.parametrize("args, fragment", [
    (["--time_steps", "2"], "a sweep needs an option with several values"),
    (["--time_steps", "2", "3", "--shard", "3/2"], "--shard 3/2: expected K/N with 1 <= K <= N"),
    (["--time_steps", "0", "3"], "--time_steps: must be at least 1, got 0"),
    (["--model", "csnn", "nope"], "invalid choice: 'nope'"),
    (["--config", "missing.yaml"], "--config missing.yaml: cannot read it"),
    (["--model", "ann-cnn", "csnn", "--loss", "mse"], "--loss mse reads output spikes, but the model is not spiking"),
])
def test_bad_sweeps_are_one_line_exit_2(workdir, cli, args, fragment):
    code, _, err = cli("sweep", *args)
    assert code == 2 and fragment in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (workdir / "logs").exists() and not (workdir / "checkpoints").exists()


@pytest.mark.slow
def test_only_direct_input_collapses_T_and_a_changed_sweep_is_not_reused(workdir, cli):
    grid = ["--model", "ann-mlp", "--encoding", "rate", "--time_steps", "2", "3", "--subset", "150", "--epochs", "1"]
    code, out, err = cli("sweep", "--name", "r", *grid)
    assert code == 0, err
    assert "collapsed" not in err and "2 of 2 points done" in out  # rate input differs at every step
    code, _, err = cli("sweep", "--name", "r", *grid[:-1], "2")  # --epochs 2: train on, then test again
    assert code == 0, err
    assert "point 1 of 2, r-time_steps=2 (resuming)" in err
    code, _, err = cli("sweep", "--name", "r", *grid[:-1], "2", "--lr", "0.01")
    assert code == 2 and "sweep point r-time_steps=2 exists with --lr" in err and "another --name" in err


def test_a_sweep_point_training_would_refuse_is_refused_before_any_run(workdir, cli):
    code, _, err = cli("sweep", "--model", "snn-mlp", "csnn", "--loss", "mse", "--time_steps", "1", "4")
    assert code == 2 and "--loss mse needs --time_steps of 2 or more" in err
    code, _, err = cli("sweep", "--model", "csnn", "snn-mlp", "--alpha", "0.5", "0.8")
    assert code == 2 and "--alpha does not apply to model" in err
    assert not (workdir / "logs").exists() and not (workdir / "checkpoints").exists()


TINY = ["--model", "snn-mlp", "--subset", "100", "--epochs", "1", "--batch_size", "50"]


def test_an_option_left_out_before_is_named_so(workdir, cli):
    assert cli("sweep", "--name", "s", *TINY, "--time_steps", "1", "2")[0] == 0
    code, _, err = cli("sweep", "--name", "s", *TINY, "--time_steps", "1", "2", "--lr", "0.01")
    assert code == 2 and "exists with --lr left to its default, not --lr 0.01" in err and "None" not in err, err


def test_a_point_another_sweep_is_training_is_left_to_it_as_such(workdir, cli):
    """Two identical sweeps: the second found the point the first is training (its folders made,
    no checkpoint yet) and called it "started before without a checkpoint"."""
    from snnclf.runs import RunLock, open_run

    held = open_run("s-time_steps=1", "checkpoints", "logs")
    held.prepare()  # as the first sweep's training has, before its first checkpoint
    with RunLock(held, wait=False, create=True):
        code, out, err = cli("sweep", "--name", "s", *TINY, "--time_steps", "1", "2")
    assert code == 0, err
    assert "s-time_steps=1 (in use by another process: left to it)" in err
    assert "without a checkpoint" not in err and "1 of 2 points done" in out
