"""Losses and the readout: the only code besides the encoders that looks at time.
Each loss maps (output spikes [T, B, K], output membrane [T, B, K], targets [B]) to a scalar."""
import snntorch.functional as SF
import torch.nn.functional as F

from .errors import UsageError
from .registry import Registry

LOSSES = Registry("loss")

MSE_RATES = (0.8, 0.2)  # target firing rates of the correct and the other classes


def _spike_loss(sf_loss):
    def loss(spk, mem, targets):
        return sf_loss(spk, targets)
    loss.needs_spikes = True
    return loss


@LOSSES.register("ce")
def ce(time_steps):
    """Cross-entropy on the output spikes at every step, averaged (snnTorch ``ce_rate_loss``)."""
    return _spike_loss(SF.ce_rate_loss())


@LOSSES.register("count")
def count(time_steps):
    """Cross-entropy on the total output spike counts (snnTorch ``ce_count_loss``)."""
    return _spike_loss(SF.ce_count_loss())


@LOSSES.register("mse")
def mse(time_steps):
    """Squared error between spike counts and target counts, int(T x 0.8) for the correct class
    and int(T x 0.2) for the others (snnTorch ``mse_count_loss``)."""
    on, off = (int(time_steps * r) for r in MSE_RATES)
    if on == off:
        raise UsageError(f"--loss mse needs --time_steps of 2 or more: at T={time_steps} the target "
                         f"counts int(T x {MSE_RATES[0]}) and int(T x {MSE_RATES[1]}) are equal")
    return _spike_loss(SF.mse_count_loss(correct_rate=MSE_RATES[0], incorrect_rate=MSE_RATES[1]))


@LOSSES.register("ce-mem")
def ce_mem(time_steps):
    """Cross-entropy on the time-averaged output membrane (for baselines: on their logits)."""
    def loss(spk, mem, targets):
        return F.cross_entropy(mem.mean(0), targets)
    loss.needs_spikes = False
    return loss


def list_losses():
    return LOSSES.names()


def get_loss(name, time_steps, spiking=True):
    """The loss ``name``; ``None`` gives the model's default (``ce`` for spiking models,
    ``ce-mem``, i.e. cross-entropy on logits, for the non-spiking baselines)."""
    if name is None:
        name = "ce" if spiking else "ce-mem"
    fn = LOSSES.lookup(name, "--loss")(time_steps)
    if fn.needs_spikes and not spiking:
        raise UsageError(f"--loss {name} reads output spikes, but the model is not spiking: "
                         "use --loss ce-mem (cross-entropy on its logits) or leave --loss out")
    return fn


def predict(spk, mem):
    """Predicted class [B] from outputs [T, B, K]: most output spikes, ties broken by the mean
    membrane (a model that emits no spikes is read by its membrane, i.e. its logits)."""
    counts = spk.sum(0)
    top = counts == counts.max(1, keepdim=True).values
    return mem.mean(0).masked_fill(~top, float("-inf")).argmax(1)


__all__ = ["get_loss", "list_losses", "predict", "LOSSES"]
