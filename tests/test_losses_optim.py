"""Every loss, the readout, every optimizer and scheduler."""
import inspect
import math

import pytest
import torch

from snnclf.errors import UsageError
from snnclf.losses import LOSSES, default_loss, get_loss, list_losses, predict
from snnclf.optim import SCHEDULERS, get_optimizer, get_scheduler, list_optimizers, list_schedulers


@pytest.mark.parametrize("name", list_losses())
def test_every_loss_is_lower_for_the_right_answer(name):
    T, y = 10, torch.tensor([2, 0])
    right_spk = torch.zeros(T, 2, 4)
    right_spk[:, 0, 2] = 1
    right_spk[:, 1, 0] = 1
    wrong_spk = right_spk.roll(1, dims=2)
    mem_right, mem_wrong = right_spk * 2 - 1, wrong_spk * 2 - 1
    loss = get_loss(name, T)
    assert loss(right_spk, mem_right, y) < loss(wrong_spk, mem_wrong, y)


@pytest.mark.parametrize("name", list_losses())
def test_every_loss_gives_gradients(name):
    spk = torch.rand(6, 3, 5, requires_grad=True)
    mem = torch.randn(6, 3, 5, requires_grad=True)
    get_loss(name, 6)(spk, mem, torch.tensor([0, 1, 4])).backward()
    grads = (spk.grad if spk.grad is not None else 0) + (mem.grad if mem.grad is not None else 0)
    assert torch.is_tensor(grads) and grads.abs().sum() > 0


def test_default_loss_depends_on_the_model():
    assert LOSSES.info(default_loss(spiking=True))["needs_spikes"]
    assert not LOSSES.info(default_loss(spiking=False))["needs_spikes"]
    with pytest.raises(UsageError, match="not spiking: use --loss ce-mem"):
        get_loss("ce", 4, spiking=False)


def test_mse_needs_enough_steps():
    with pytest.raises(UsageError, match="--loss mse needs --time_steps of 2 or more"):
        get_loss("mse", 1)


def test_readout_counts_spikes_and_breaks_ties_by_membrane():
    spk = torch.zeros(3, 2, 3)
    spk[:, 0, 1] = 1  # sample 0: class 1 fires most
    spk[0, 1, 0] = spk[0, 1, 2] = 1  # sample 1: tie between classes 0 and 2
    mem = torch.zeros(3, 2, 3)
    mem[:, 0, 2] = 5.0  # a higher membrane does not beat more spikes
    mem[:, 1, 2] = 0.5
    mem[:, 1, 1] = 9.0  # not among the tied classes
    assert predict(spk, mem).tolist() == [1, 2]
    assert predict(torch.zeros(3, 1, 3), torch.tensor([[[0.1, 0.7, 0.2]]]).expand(3, 1, 3)).tolist() == [1]


@pytest.mark.parametrize("name", list_optimizers())
def test_every_optimizer_steps(name):
    w = torch.nn.Parameter(torch.ones(3))
    opt = get_optimizer(name, [w], lr=0.1)
    (w ** 2).sum().backward()
    opt.step()
    assert (w < 1).all()


def test_optimizer_flags_are_checked():
    w = [torch.nn.Parameter(torch.ones(1))]
    with pytest.raises(UsageError, match="--momentum applies to --optimizer sgd only"):
        get_optimizer("adam", w, momentum=0.9)
    with pytest.raises(UsageError, match="--lr: must be above 0"):
        get_optimizer("sgd", w, lr=0)
    assert get_optimizer("adamw", w).defaults["weight_decay"] == 0.01
    assert get_optimizer("sgd", w, momentum=0.5).defaults["momentum"] == 0.5


# The rates at epochs 0, 1 and 2 of a 2-epoch run from lr 1, worked out by hand, with these options.
BY_HAND = {
    "cosine": ({}, [1.0, 0.5, 0.0]),
    "step": ({"step_size": 1, "gamma": 0.5}, [1.0, 0.5, 0.25]),
    "multistep": ({"milestones": [2], "gamma": 0.1}, [1.0, 1.0, 0.1]),
}


@pytest.mark.parametrize("name", list_schedulers())
def test_every_scheduler_decays(name):
    """Every registered scheduler lowers the rate over the run and never raises it; where the
    rates were worked out by hand, it gives exactly those."""
    takes = inspect.signature(SCHEDULERS[name]).parameters
    kwargs, expected = BY_HAND.get(name, ({"milestones": [1]} if "milestones" in takes else {}, None))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0)
    sched = get_scheduler(name, opt, epochs=2, **kwargs)
    seen = []
    for _ in range(3):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[-1] < seen[0] and all(b <= a for a, b in zip(seen, seen[1:])), seen
    if expected is not None:
        assert seen == pytest.approx(expected, abs=1e-9)


def test_a_cosine_warm_up_rises_over_its_share_of_the_run_then_decays():
    """--warmup F: the first F of the epochs rise linearly from a tenth of the rate, then the cosine
    runs over the rest; the warm-up scales with the run (a run --min_steps lengthens keeps its share)."""
    for epochs, lead in ((20, 2), (200, 20)):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0)
        sched = get_scheduler("cosine", opt, epochs, warmup=0.1)
        seen = []
        for _ in range(epochs):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert seen[0] == pytest.approx(0.1) and seen[lead] == pytest.approx(1.0)
        assert all(b > a for a, b in zip(seen[:lead], seen[1:lead + 1]))  # rising
        assert all(b < a for a, b in zip(seen[lead:], seen[lead + 1:]))  # then falling
        assert seen[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * (epochs - lead - 1) / (epochs - lead))))
    with pytest.raises(UsageError, match="--warmup applies to --scheduler cosine only"):
        get_scheduler("step", torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0), 5, warmup=0.1)


def test_scheduler_flags_are_checked():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0)
    assert get_scheduler(None, opt, 5) is None
    with pytest.raises(UsageError, match="needs --milestones"):
        get_scheduler("multistep", opt, 5)
    with pytest.raises(UsageError, match="--milestones applies to --scheduler multistep only"):
        get_scheduler("cosine", opt, 5, milestones=[2])
