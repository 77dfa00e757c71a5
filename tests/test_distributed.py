"""Training on 2 CPU processes (torchrun, gloo on 127.0.0.1) equals one process with the same
global batch."""
import os
import subprocess
import sys

import torch

from snnclf.runs import load_checkpoint, read_metrics

from conftest import run_command

# spiking, with a learnable neuron parameter inside DDP, learning visibly within two epochs
ARGS = ["--subset", "256", "--time_steps", "4", "--model", "snn-mlp", "--learn_beta", "--lr", "0.01",
        "--epochs", "2", "--device", "cpu"]


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                          "2", "-m", "snnclf", "train", *ARGS, "--batch_size", "32", "--run_name", "ddp"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
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
    assert set(os.listdir(tmp_path / "checkpoints")) == {"ddp", "single"}

    resumed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                              "--nproc_per_node", "2", "-m", "snnclf", "train", "--run_name", "ddp",
                              "--resume", "--epochs", "3"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [r["epoch"] for r in read_metrics(tmp_path / "logs/ddp/metrics.csv")] == [1, 2, 3]
