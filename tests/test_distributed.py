"""Training on 2 CPU processes (torchrun, gloo on 127.0.0.1) equals one process with the same
global batch."""
import os
import subprocess
import sys

import pytest
import torch

from snnclf.runs import load_checkpoint, read_metrics

from conftest import run_command

# spiking, with a learnable neuron parameter inside DDP, learning visibly within two epochs
ARGS = ["--subset", "256", "--time_steps", "4", "--model", "snn-mlp", "--learn_beta", "--lr", "0.01",
        "--epochs", "2", "--device", "cpu"]


ENV = {**os.environ, "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
       "PYTHONWARNINGS": "ignore"}

pytestmark = pytest.mark.slow  # every test here starts torchrun


def torchrun(*args, cwd):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           "2", "-m", "snnclf", "train", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=ENV)


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    ddp = torchrun(*ARGS, "--batch_size", "32", "--run_name", "ddp", cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stdout[-2000:] + ddp.stderr[-3000:]
    assert "2 processes x batch 32 = global batch 64" in ddp.stderr
    assert ddp.stderr.count("epoch 1/2") == 1  # one process reports
    single = run_command("train", *ARGS, "--batch_size", "64", "--run", "single", cwd=tmp_path)
    assert single.returncode == 0, single.stderr

    rows = read_metrics(tmp_path / "logs/ddp/metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    ours, ref = load_checkpoint(tmp_path / "checkpoints/ddp/last.pt"), load_checkpoint(tmp_path / "checkpoints/single/last.pt")
    assert ours["epoch"] == 2 and len(ours["rng_per_process"]) == 2
    for key, value in ref["model"].items():
        assert torch.allclose(ours["model"][key].float(), value.float(), atol=1e-5), key
    for a, b in zip(rows, read_metrics(tmp_path / "logs/single/metrics.csv")):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-5 and a["val_accuracy"] == b["val_accuracy"]
    assert rows[1]["train_loss"] < rows[0]["train_loss"] - 0.1  # it learns
    assert {n for n in os.listdir(tmp_path / "checkpoints") if not n.endswith(".lock")} == {"ddp", "single"}

    resumed = torchrun("--run_name", "ddp", "--resume", "--epochs", "3", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [r["epoch"] for r in read_metrics(tmp_path / "logs/ddp/metrics.csv")] == [1, 2, 3]


# convolutions with batch norm (folded over time), rate input and dropout: every random draw and
# every batch statistic has to agree between 2 processes of 16 and 1 process of 32
BN_ARGS = ["--subset", "192", "--time_steps", "3", "--model", "arch", "--arch", "8C3p1-MP2-FC32-FC10",
           "--batch_norm", "--lr", "0.01", "--epochs", "2", "--device", "cpu"]


def test_batch_norm_over_two_processes_equals_one_process(tmp_path):
    ddp = torchrun(*BN_ARGS, "--batch_size", "16", "--run_name", "ddp", cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stdout[-2000:] + ddp.stderr[-3000:]
    single = run_command("train", *BN_ARGS, "--batch_size", "32", "--run", "single", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    ours, ref = (load_checkpoint(tmp_path / f"checkpoints/{r}/last.pt")["model"] for r in ("ddp", "single"))
    assert any(key.endswith("running_mean") for key in ref)
    moved = False
    for key, value in ref.items():
        assert torch.allclose(ours[key].float(), value.float(), atol=2e-5), key  # running stats too
        moved |= key.endswith("running_var") and not torch.allclose(value, torch.ones_like(value))
    assert moved  # the statistics were really updated
    for a, b in zip(read_metrics(tmp_path / "logs/ddp/metrics.csv"), read_metrics(tmp_path / "logs/single/metrics.csv")):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-5 and abs(a["val_loss"] - b["val_loss"]) < 1e-5

    # resuming with another number of processes cannot continue the run exactly: refused
    alone = run_command("train", "--run", "ddp", "--resume", "--epochs", "3", cwd=tmp_path)
    assert alone.returncode == 2 and "was trained by 2 processes" in alone.stderr
    assert len(alone.stderr.strip().splitlines()) == 1 and "Traceback" not in alone.stderr
