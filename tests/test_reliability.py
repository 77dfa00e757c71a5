"""Interruption, exact resume, killed writes, numerical faults and unwritable folders."""
import errno
import signal
import subprocess
import sys
import time
from functools import partial

import pytest
import torch

from snnclf import losses, runs
from snnclf.data import get_encoder, load_dataset
from snnclf.engine import train_one_epoch
from snnclf.losses import get_loss
from snnclf.models import get_model
from snnclf.optim import get_optimizer
from snnclf.runs import load_checkpoint, read_metrics

from conftest import QUICK, ROOT, run_command

SAME = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "spikes_per_sample")
RUN = ["--epochs", "4", "--encoding", "rate", "--dropout", "0.2", "--scheduler"]


def _start(tmp_path, *args):
    exe = [sys.executable, "-m", "snnclf"]
    return subprocess.Popen(exe + ["train", *RUN, *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_last_pt_and_resume_equals_an_uninterrupted_run(tmp_path, signum):
    whole = run_command("train", *RUN, "--run", "whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr

    proc = _start(tmp_path, "--run", "cut")
    metrics = tmp_path / "logs/cut/metrics.csv"
    deadline = time.time() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):  # epoch 1 done
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    stopped = load_checkpoint(tmp_path / "checkpoints/cut/last.pt")
    assert stopped["epoch"] >= 1 and stopped["epoch"] < 4

    resumed = run_command("train", "--run", "cut", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a = read_metrics(tmp_path / "logs/whole/metrics.csv")
    b = read_metrics(tmp_path / "logs/cut/metrics.csv")
    assert [r["epoch"] for r in b] == [1, 2, 3, 4]
    for row_a, row_b in zip(a, b):
        assert {k: row_a[k] for k in SAME} == {k: row_b[k] for k in SAME}
    final_a = load_checkpoint(tmp_path / "checkpoints/whole/last.pt")["model"]
    final_b = load_checkpoint(tmp_path / "checkpoints/cut/last.pt")["model"]
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)


@pytest.mark.parametrize("stop_at, said, resumed, steps_saved", [
    ((2, 3), "interrupted in epoch 2 after step 3", "resuming run cut at epoch 2 of 4, step 4", 3),
    ((2, None), "interrupted after epoch 2", "resuming run cut at epoch 3 of 4\n", None),
], ids=["mid-epoch", "after-validation"])
def test_a_stopped_run_resumes_exactly(workdir, cli, monkeypatch, stop_at, said, resumed, steps_saved):
    """A Ctrl-C arriving right after a given step (or after an epoch's validation) saves last.pt
    and exits 130; the resumed run's metrics equal those of a run never stopped."""
    args = ["--model", "snn-mlp", "--subset", "300", "--batch_size", "50", "--time_steps", "3", *RUN]
    assert cli("train", *args, "--run", "whole")[0] == 0
    from snnclf import train as train_module

    with monkeypatch.context() as patch:  # 6 steps an epoch
        patch.setattr(train_module.StopOnSignal, "stop_at", ("cut", *stop_at))
        code, _, err = cli("train", *args, "--run", "cut")
    assert code == 130 and said in err
    stopped = load_checkpoint(workdir / "checkpoints/cut/last.pt")
    if steps_saved is None:  # a whole epoch: nothing part-way
        assert stopped["epoch"] == 2 and not stopped.get("midway")
    else:
        assert stopped["epoch"] == 1 and stopped["midway"]["totals"]["steps"] == steps_saved
    code, _, err = cli("train", "--run", "cut", "--resume")
    assert code == 0 and resumed in err
    a, b = read_metrics(workdir / "logs/whole/metrics.csv"), read_metrics(workdir / "logs/cut/metrics.csv")
    assert [{k: r[k] for k in SAME} for r in a] == [{k: r[k] for k in SAME} for r in b]


KILL_DURING_WRITE = """
import os, signal, sys, torch
from snnclf import runs
path = sys.argv[1]
runs.save_checkpoint({"format": runs.FORMAT, "value": torch.zeros(1000)}, path)
def dying_save(obj, f):
    f.write(b"PK half of a checkpoint")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = dying_save
runs.save_checkpoint({"format": runs.FORMAT, "value": torch.ones(1000)}, path)
"""


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "ck" / "run" / "last.pt"
    out = subprocess.run([sys.executable, "-c", KILL_DURING_WRITE, str(path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert torch.equal(load_checkpoint(path)["value"], torch.zeros(1000))
    stale = list(path.parent.glob(".last.pt.*.tmp"))
    assert len(stale) == 1  # the half-written temporary file, never renamed into place
    runs.open_run("run", tmp_path / "ck", tmp_path / "logs").prepare()
    assert not list(path.parent.glob("*.tmp")) and path.exists()


def test_nan_loss_stops_with_epoch_and_step_and_keeps_best(workdir, cli, monkeypatch):
    real = losses.LOSSES["ce"]
    seen = {"train_steps": 0}

    def poisoned(time_steps):
        fn = real(time_steps)

        def loss(spk, mem, y):
            value = fn(spk, mem, y)
            if torch.is_grad_enabled():
                seen["train_steps"] += 1
                if seen["train_steps"] == 6:  # epoch 2 (4 steps per epoch), step 2
                    return value * float("nan")
            return value
        return loss
    monkeypatch.setitem(losses.LOSSES, "ce", poisoned)
    code, _, err = cli("train", "--subset", "200", "--epochs", "3", "--time_steps", "2", "--batch_size", "50")
    assert code == 2
    assert "the loss became nan at epoch 2, step 2" in err and "--grad_clip" in err
    assert err.strip().splitlines()[-1].startswith("snnclf train: error:") and "Traceback" not in err
    assert load_checkpoint(workdir / "checkpoints/digits-csnn-T2/best.pt")["epoch"] == 1
    assert load_checkpoint(workdir / "checkpoints/digits-csnn-T2/last.pt")["epoch"] == 1


def test_full_disk_is_one_line_and_keeps_the_previous_checkpoint(workdir, cli, monkeypatch):
    real_save = torch.save

    def save(obj, f, *a, **k):  # the disk fills in epoch 2: every checkpoint of it fails
        if isinstance(obj, dict) and obj.get("format") == runs.FORMAT and obj["epoch"] >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)
    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", save)
        code, _, err = cli("train", *QUICK)
    assert code == 2 and "No space left on device" in err and "--resume" in err
    assert "Traceback" not in err
    ckpt_dir = workdir / "checkpoints/digits-csnn-T2"
    assert load_checkpoint(ckpt_dir / "last.pt")["epoch"] == 1
    assert not list(ckpt_dir.glob("*.tmp")) and not list(ckpt_dir.glob(".*"))
    code, _, err = cli("train", "--run", "digits-csnn-T2", "--resume")
    assert code == 0 and "resuming run digits-csnn-T2 at epoch 2 of 2" in err, err
    assert load_checkpoint(ckpt_dir / "last.pt")["epoch"] == 2  # space again: epoch 2 trained and saved
    assert [r["epoch"] for r in read_metrics(workdir / "logs/digits-csnn-T2/metrics.csv")] == [1, 2]


@pytest.mark.parametrize("flag", ["--save_dir", "--log_dir"])
def test_unwritable_output_folder_is_refused_before_training(workdir, cli, flag):
    (workdir / "a_file").write_text("not a folder")
    code, _, err = cli("train", *QUICK, flag, "a_file/runs")
    assert code == 2 and "a_file is a file, not a folder" in err
    assert len(err.strip().splitlines()) == 1
    assert not (workdir / "checkpoints").exists() and not (workdir / "logs").exists()
    assert (workdir / "a_file").read_text() == "not a folder"


def test_checkpoint_for_another_input_shape_is_refused(workdir, cli):
    assert cli("train", *QUICK, "--model", "snn-mlp")[0] == 0
    ckpt = load_checkpoint(workdir / "checkpoints/digits-snn-mlp-T2/best.pt")
    ckpt["model_kwargs"]["in_shape"] = [1, 28, 28]
    torch.save(ckpt, workdir / "other.pt")
    code, _, err = cli("eval", "--checkpoint", "other.pt")
    assert code == 2 and "was made for inputs (1, 28, 28)" in err and "digits has (1, 8, 8)" in err


def test_grad_clip_limits_the_update(workdir, cli):
    # one SGD step of lr 1 moves the weights by exactly the (clipped) gradient
    x, y = load_dataset("digits").train[list(range(64))]
    moved = {}
    for clip in (None, 0.01):
        torch.manual_seed(0)
        model = get_model("csnn", (1, 8, 8), 10, threshold=0.2)  # low enough to fire untrained
        assert model(get_encoder("direct")(x, 4))[0].sum() > 0  # its output neurons fire
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        optimizer = get_optimizer("sgd", model.parameters(), lr=1.0)
        train_one_epoch(model, [(x, y)], partial(get_encoder("direct"), time_steps=4), get_loss("ce", 4),
                        optimizer, torch.device("cpu"), grad_clip=clip, progress=False)
        moved[clip] = float((torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm())
    assert moved[None] > 0.05  # unclipped, the step is larger than the clip ...
    assert abs(moved[0.01] - 0.01) < 1e-4  # ... and clipped it is the clip's norm
    code, _, err = cli("train", *QUICK, "--grad_clip", "0", "--run", "x")
    assert code == 2 and "--grad_clip: must be above 0" in err
