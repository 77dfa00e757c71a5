"""snnclf train --tensorboard: event files that TensorBoard reads back."""
import importlib.util

import pytest

from snnclf.runs import read_metrics

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

RUN = ["--model", "snn-mlp", "--subset", "300", "--time_steps", "3", "--batch_size", "50", "--beta", "0.5",
       "--tensorboard", "--run", "tb"]


def _read(folder):
    """{tag: [(step, value), ...]} of every scalar, and the image tags, over the run's event files."""
    scalars, images = {}, set()
    for path in sorted(folder.glob("events.out.tfevents.*")):
        events = event_accumulator.EventAccumulator(str(path), size_guidance={"images": 0, "scalars": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in events.Scalars(tag))
        images |= set(events.Tags()["images"])
    return scalars, images


def test_tensorboard_holds_the_metrics_firing_rates_hparams_and_pictures(workdir, cli):
    code, _, err = cli("train", *RUN, "--epochs", "2")
    assert code == 0, err
    code, _, err = cli("train", "--run", "tb", "--resume", "--epochs", "3")  # the option is kept
    assert code == 0, err
    scalars, images = _read(workdir / "logs/tb")
    rows = read_metrics(workdir / "logs/tb/metrics.csv")
    for key, tag in (("train_loss", "loss/train"), ("val_accuracy", "accuracy/validation"), ("lr", "learning_rate"),
                     ("spikes_per_sample", "spikes_per_sample/train")):
        assert [s for s, _ in scalars[tag]] == [1, 2, 3], tag
        assert [v for _, v in scalars[tag]] == pytest.approx([r[key] for r in rows], rel=1e-6), tag
    for layer in ("fc1_lif", "fc2_lif", "fc3_lif"):
        steps = scalars[f"firing_rate/{layer}"]
        assert [s for s, _ in steps] == [1, 2, 3] and all(0 <= v <= 1 for _, v in steps)
    assert any(v > 0 for _, v in scalars["firing_rate/fc1_lif"])  # the layers fire: real counts
    best = max(r["val_accuracy"] for r in rows)
    assert scalars["hparam/best_val_accuracy"][-1][1] == pytest.approx(best)
    assert "pictures/curves" in images


def test_missing_tensorboard_is_one_line_before_anything_is_written(workdir, cli, monkeypatch):
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else found(name, *a))
    code, _, err = cli("train", *RUN, "--epochs", "1")
    assert code == 2 and "pip install tensorboard" in err and len(err.strip().splitlines()) == 1, err
    assert not (workdir / "logs").exists() and not (workdir / "checkpoints").exists()
