"""Optimizers and learning-rate schedulers by name. Schedulers step once per epoch.

A builder's keyword arguments are the options it takes, and their defaults are its defaults:
--help reads them (``Registry.defaults``), ``get_optimizer``/``get_scheduler`` refuse the
options a builder does not take. A scheduler declares whether its shape is laid out over the
run's epochs (then a run resumed with other --epochs would follow another schedule)."""
import inspect

import torch

from .errors import UsageError
from .flags import checked, given, number
from .registry import Registry

# The checks of the values these builders take: the flags use them (snnclf.config) and the
# builders apply them to what a Python caller gives, so both say the same thing.
CHECKS = {"lr": number(float, 0, low_open=True), "weight_decay": number(float, 0),
          "momentum": number(float, 0, 1, high_open=True), "step_size": number(int, 1),
          "milestones": number(int, 1), "gamma": number(float, 0, 1, low_open=True),
          "warmup": number(float, 0, 1, high_open=True)}

OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler", declares=("spans_epochs",))


def _fused(params):
    """Parameters, and whether torch's fused (single-kernel) Adam serves their device."""
    params = list(params)
    return params, bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)


@OPTIMIZERS.register("adam")
def adam(params, lr=2e-3, weight_decay=0.0):
    params, fused = _fused(params)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


@OPTIMIZERS.register("adamw")
def adamw(params, lr=2e-3, weight_decay=0.01):
    params, fused = _fused(params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


@OPTIMIZERS.register("sgd")
def sgd(params, lr=0.1, weight_decay=0.0, momentum=0.9):
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum)


@SCHEDULERS.register("cosine", spans_epochs=lambda step_size=None: True)
def cosine(optimizer, epochs, warmup=0.0):
    """Cosine decay from the initial rate to 0 over the run's epochs; with ``warmup``, the first
    that fraction of them (one at least) rises linearly from a tenth of the rate first, so the
    warm-up follows the run's length (its epochs as --min_steps sets them)."""
    lead = min(max(1, round(warmup * epochs)), epochs - 1) if warmup and epochs > 1 else 0
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs - lead))
    if not lead:
        return decay
    rise = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=lead)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [rise, decay], milestones=[lead])


@SCHEDULERS.register("step", spans_epochs=lambda step_size=None: step_size is None)
def step(optimizer, epochs, step_size=None, gamma=0.1):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs (default: a third of the run)."""
    step_size = step_size or max(1, epochs // 3)
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


@SCHEDULERS.register("multistep", spans_epochs=lambda step_size=None: False)
def multistep(optimizer, epochs, milestones=None, gamma=0.1):
    """Multiply the rate by ``gamma`` at each epoch in ``milestones``."""
    if not milestones:
        raise UsageError("--scheduler multistep needs --milestones, e.g. --milestones 10 15")
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma)


def list_optimizers():
    return OPTIMIZERS.names()


def list_schedulers():
    return SCHEDULERS.names()


def _options(builder):
    """A builder's options: its arguments with a default."""
    return {p.name: p.default for p in inspect.signature(builder).parameters.values()
            if p.default is not inspect.Parameter.empty}


def spans_epochs(name, step_size=None):
    """Whether scheduler ``name`` lays its schedule out over the run's --epochs."""
    return name is not None and SCHEDULERS.info(name)["spans_epochs"](step_size=step_size)


def get_optimizer(name, params, lr=None, weight_decay=None, momentum=None):
    """Optimizer ``name`` over ``params``; ``None`` keeps its default (Adam/AdamW lr 2e-3,
    SGD lr 0.1 with momentum 0.9)."""
    builder = OPTIMIZERS.lookup(name, "--optimizer")
    options = {k: checked(k, CHECKS[k], v) for k, v in
               given(dict(lr=lr, weight_decay=weight_decay, momentum=momentum)).items()}
    if "momentum" in options and "momentum" not in _options(builder):
        takers = [n for n in OPTIMIZERS.names() if "momentum" in _options(OPTIMIZERS[n])]
        raise UsageError(f"--momentum applies to --optimizer {' or '.join(takers)} only, not {name}; leave it out")
    return builder(params, **options)


def get_scheduler(name, optimizer, epochs, step_size=None, milestones=None, gamma=None, warmup=None):
    """Scheduler ``name`` (``None``: a constant learning rate, returns ``None``)."""
    if name is None:
        for flag, value in (("step_size", step_size), ("milestones", milestones), ("gamma", gamma),
                            ("warmup", warmup)):
            if value is not None:
                raise UsageError(f"--{flag} shapes a learning-rate schedule: add --scheduler step or "
                                 "--scheduler multistep, or leave it out")
        return None
    builder = SCHEDULERS.lookup(name, "--scheduler")
    options = given(dict(step_size=step_size, milestones=milestones, gamma=gamma, warmup=warmup))
    options = {k: [checked(k, CHECKS[k], m) for m in v] if k == "milestones" else checked(k, CHECKS[k], v)
               for k, v in options.items()}
    for option in options:
        if option not in _options(builder):
            takers = [n for n in SCHEDULERS.names() if option in _options(SCHEDULERS[n])]
            raise UsageError(f"--{option} applies to --scheduler {' and '.join(takers)} only, not {name}")
    return builder(optimizer, epochs, **options)
