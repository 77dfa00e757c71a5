"""Losses and the readout: the only code besides the encoders that looks at time.
Each loss maps (output spikes [T, B, K], output membrane [T, B, K], targets [B]) to a scalar."""
import contextlib
from functools import partial

import snntorch.functional as SF
import torch
import torch.nn.functional as F

from .errors import UsageError
from .models.neurons import spiking_layers
from .registry import Registry

# Each loss declares whether it reads the output spikes (then a non-spiking model cannot use it).
LOSSES = Registry("loss", declares=("needs_spikes",))

MSE_RATES = (0.8, 0.2)  # target firing rates of the correct and the other classes


def _spike_loss(sf_loss):
    def loss(spk, mem, targets):
        return sf_loss(spk, targets)
    return loss


@LOSSES.register("ce", needs_spikes=True)
def ce(time_steps):
    """Cross-entropy on the output spikes at every step, averaged (snnTorch ``ce_rate_loss``)."""
    return _spike_loss(SF.ce_rate_loss())


@LOSSES.register("count", needs_spikes=True)
def count(time_steps):
    """Cross-entropy on the total output spike counts (snnTorch ``ce_count_loss``)."""
    return _spike_loss(SF.ce_count_loss())


@LOSSES.register("mse", needs_spikes=True)
def mse(time_steps):
    """Squared error between spike counts and target counts, int(T x 0.8) for the correct class
    and int(T x 0.2) for the others (snnTorch ``mse_count_loss``)."""
    on, off = (int(time_steps * r) for r in MSE_RATES)
    if on == off:
        raise UsageError(f"--loss mse needs --time_steps of 2 or more: at T={time_steps} the target "
                         f"counts int(T x {MSE_RATES[0]}) and int(T x {MSE_RATES[1]}) are equal")
    return _spike_loss(SF.mse_count_loss(correct_rate=MSE_RATES[0], incorrect_rate=MSE_RATES[1]))


@LOSSES.register("ce-mem", needs_spikes=False)
def ce_mem(time_steps):
    """Cross-entropy on the time-averaged output membrane (for baselines: on their logits)."""
    def loss(spk, mem, targets):
        return F.cross_entropy(mem.mean(0), targets)
    return loss


def list_losses():
    return LOSSES.names()


def default_loss(spiking):
    """The loss a model trains with unless --loss says otherwise."""
    return "ce" if spiking else "ce-mem"


def get_loss(name, time_steps, spiking=True):
    """The loss ``name``; ``None`` gives the model's default (``ce`` for spiking models,
    ``ce-mem``, i.e. cross-entropy on logits, for the non-spiking baselines)."""
    name = name or default_loss(spiking)
    builder = LOSSES.lookup(name, "--loss")
    if LOSSES.info(name)["needs_spikes"] and not spiking:  # said first: a sweep runs such a model at T=1
        raise UsageError(f"--loss {name} reads output spikes, but the model is not spiking: "
                         "use --loss ce-mem (cross-entropy on its logits) or leave --loss out")
    return builder(time_steps)


class RateRegularizer:
    """``--rate_reg W --rate_target R``: adds ``W * sum_l relu(r_l - R)`` to the loss, where
    ``r_l`` is the mean firing rate of spiking layer ``l`` in the batch (spikes per neuron per
    step, over every time step, sample and neuron). With ``R = 0`` this is an L1 penalty on the
    layers' spike counts (snnTorch's ``l1_rate_sparsity`` per layer, normalised by the layer's
    size and T, so that one weight means the same for every layer); with ``R > 0`` only rates
    above the target are penalised, as in the upper-bound rate regularisers of Zenke and Vogels
    (2021). The spikes are read by forward hooks while :meth:`watch` lasts, the gradient flows
    through the surrogate. The output layer is left out: its spikes are what the loss reads."""

    def __init__(self, weight, target=0.0):
        self.weight, self.target = float(weight), float(target)
        self._rates = {}

    @contextlib.contextmanager
    def watch(self, model):
        """Record each spiking layer's rate in every forward call while the block lasts."""
        layers = spiking_layers(model)[:-1]
        if not layers:
            raise UsageError("--rate_reg penalises the firing rates of hidden spiking layers, and the model "
                             "has none: leave --rate_reg out")

        def hook(name, module, args, out):
            self._rates[name] = out[0].mean(dtype=torch.float32)  # [T, B, ...] -> spikes per neuron per step
        handles = [m.register_forward_hook(partial(hook, name)) for name, m in layers]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def penalty(self):
        """The penalty of the last forward call, and its layers' rates (detached floats)."""
        rates, self._rates = self._rates, {}
        total = sum(torch.relu(r - self.target) for r in rates.values())
        values = torch.stack(list(rates.values())).detach().tolist()  # one device sync for all layers
        return self.weight * total, dict(zip(rates, values))


def predict(spk, mem):
    """Predicted class [B] from outputs [T, B, K]: most output spikes, ties broken by the mean
    membrane (a model that emits no spikes is read by its membrane, i.e. its logits)."""
    counts = spk.sum(0)
    top = counts == counts.max(1, keepdim=True).values
    return mem.mean(0).masked_fill(~top, float("-inf")).argmax(1)


def scores(spk, mem):
    """The confidence [B, K] that goes with :func:`predict`: each class's share of a sample's
    output spikes, or, for a sample without output spikes (and for the non-spiking baselines,
    whose spikes are zeros), the softmax of the mean membrane."""
    counts = spk.sum(0).float()
    total = counts.sum(1, keepdim=True)
    return torch.where(total > 0, counts / total.clamp(min=1), torch.softmax(mem.mean(0).float(), 1))


__all__ = ["default_loss", "get_loss", "list_losses", "predict", "scores", "LOSSES", "RateRegularizer"]
