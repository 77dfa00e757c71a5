"""Training on 2 CPU processes (torchrun, gloo on 127.0.0.1) equals one process with the same
global batch; in one process nothing of it is set up, and the cross-process batch norm's
statistics are those of every process's batch together."""
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from snnclf import distributed
from snnclf.runs import load_checkpoint, read_metrics

from conftest import run_command

# spiking, with a learnable neuron parameter inside DDP, learning visibly within two epochs
ARGS = ["--subset", "256", "--time_steps", "4", "--model", "snn-mlp", "--learn_beta", "--lr", "0.01",
        "--epochs", "2", "--device", "cpu"]


ENV = {**os.environ, "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
       "PYTHONWARNINGS": "ignore"}


def torchrun(*args, cwd):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           "2", "-m", "snnclf", "train", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=ENV)


@pytest.mark.slow  # torchrun
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


@pytest.mark.slow  # torchrun
def test_the_layers_firing_rates_are_those_of_every_process_s_samples(tmp_path):
    """--rate_reg's per-layer rates in metrics.csv: 2 processes of 32 log what 1 process of 64
    logs (the penalty's target 0 makes it linear, so the runs stay equal)."""
    args = [*ARGS, "--epochs", "1", "--rate_reg", "0.01"]
    ddp = torchrun(*args, "--batch_size", "32", "--run_name", "ddp", cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = run_command("train", *args, "--batch_size", "64", "--run", "single", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    ours, ref = (read_metrics(tmp_path / f"logs/{r}/metrics.csv")[0] for r in ("ddp", "single"))
    rates = [k for k in ref if k.startswith("rate_")]
    assert rates == [k for k in ours if k.startswith("rate_")] and rates
    for key in rates + ["train_loss"]:
        assert abs(ours[key] - ref[key]) < 1e-5, key


# convolutions with batch norm (folded over time), rate input and dropout: every random draw and
# every batch statistic has to agree between 2 processes of 16 and 1 process of 32
BN_ARGS = ["--subset", "192", "--time_steps", "3", "--model", "arch", "--arch", "8C3p1-MP2-FC32-FC10",
           "--batch_norm", "--lr", "0.01", "--epochs", "2", "--device", "cpu"]


@pytest.mark.slow  # torchrun
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


# run under torchrun: train() returns with nothing left holding the process group (with the cyclic
# garbage collector off, so only what train() freed itself is gone)
LEFT_BEHIND = """
import gc, sys, torch
from snnclf.train import train
gc.disable()
train({"model": "snn-mlp", "subset": 64, "time_steps": 2, "epochs": 1, "device": "cpu", "batch_size": 16,
       "run": "r"})
alive = [o for o in gc.get_objects() if isinstance(o, torch.nn.parallel.DistributedDataParallel)]
sys.exit(f"{len(alive)} DistributedDataParallel model(s) outlive the run" if alive else 0)
"""


@pytest.mark.slow  # torchrun
def test_a_run_leaves_nothing_that_holds_the_process_group_to_the_interpreter_s_exit(tmp_path):
    """Freed at exit, a DDP model's gloo group can abort a process whose run went well (SIGABRT,
    "terminate called without an active exception"): the run frees it before it returns."""
    (tmp_path / "left_behind.py").write_text(LEFT_BEHIND)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "left_behind.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]


def test_one_process_sets_nothing_up_and_torchrun_s_variables_say_the_rank(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = distributed.from_environment()
    assert (ctx.rank, ctx.world, ctx.enabled, ctx.is_main) == (0, 1, False, True)
    assert ctx.sum([1.5, 2.0]) == [1.5, 2.0] and ctx.gather("mine") == ["mine"]
    assert ctx.any(0) is False and ctx.any(3) is True
    cpu = torch.device("cpu")
    model = nn.Linear(3, 2)
    assert distributed.setup(ctx, cpu) == cpu and not torch.distributed.is_initialized()
    assert distributed.wrap(ctx, model, cpu) is model
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    second = distributed.from_environment()
    assert (second.rank, second.world, second.local_rank, second.enabled, second.is_main) == (1, 2, 1, True, False)


class _Partner:
    """``all_reduce`` as one process sees it when a second process holds batch ``theirs``:
    CrossProcessBatchNorm reduces the channel sums and the count, then the squared deviations from
    the mean of both batches; each call adds what the partner contributes."""

    def __init__(self, theirs):
        self.theirs, self.mean = theirs, None

    def __call__(self, mine):
        dims = [0, 2, 3]
        if self.mean is None:
            count = self.theirs.new_full((1,), self.theirs.numel() / self.theirs.shape[1])
            total = mine + torch.cat([self.theirs.sum(dims), count])
            self.mean = (total[:-1] / total[-1]).detach().view(1, -1, 1, 1)
            return total
        return mine + (self.theirs - self.mean).square().sum(dims)


def test_cross_process_batch_norm_normalises_over_every_process_s_batch(monkeypatch):
    """sync_batch_norm swaps in CrossProcessBatchNorm with the same values; alone it is BatchNorm2d,
    and beside a second process it normalises, and keeps running statistics, as BatchNorm2d does
    on both processes' batches at once."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Sequential(nn.BatchNorm2d(3)))
    model[1].running_mean.fill_(0.5)  # a state to carry over
    before = {k: v.clone() for k, v in model.state_dict().items()}
    distributed.sync_batch_norm(model)
    assert [type(m).__name__ for m in model.modules() if "BatchNorm" in type(m).__name__] == ["CrossProcessBatchNorm"] * 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    state = {k[2:]: v for k, v in before.items() if k.startswith("1.")}
    synced, plain = model[1], nn.BatchNorm2d(3)
    plain.load_state_dict(state)
    mine, theirs = torch.randn(4, 3, 5, 5) * 2 + 1, torch.randn(6, 3, 5, 5) - 1
    assert torch.allclose(synced(mine), plain(mine))  # no process group: BatchNorm2d itself

    synced.load_state_dict(state)
    plain.load_state_dict(state)
    import torch.distributed.nn.functional as collective
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(collective, "all_reduce", _Partner(theirs))
    ours, both = synced(mine), plain(torch.cat([mine, theirs]))
    assert torch.allclose(ours, both[:4], atol=1e-5)
    assert torch.allclose(synced.running_mean, plain.running_mean, atol=1e-6)
    assert torch.allclose(synced.running_var, plain.running_var, atol=1e-5)  # unbiased over both batches
    assert not torch.allclose(ours, nn.functional.batch_norm(mine, None, None, training=True), atol=1e-2)
