"""Stateless layers over time: they see all T steps at once, folded into the batch."""
import torch
from torch import nn


class Folded(nn.Sequential):
    """Stateless layers (conv, pool, linear, batch norm, ReLU) applied to [T, B, ...] by folding
    time into the batch: one call on [T*B, ...] instead of T calls.

    When every step holds the same values (a stride-0 time dimension, as the direct encoder
    makes) the layers run once, on one step, and the result is expanded again; batch-norm
    statistics of T identical copies equal those of one."""

    def forward(self, x):  # [T, B, ...] -> [T, B, ...]
        if x.stride(0) == 0:
            y = super().forward(x[0])
            return y.expand(x.shape[0], *y.shape)
        y = super().forward(x.flatten(0, 1))
        return y.unflatten(0, x.shape[:2])


class TimeDropout(nn.Module):
    """Dropout whose mask is drawn once per sample and kept for every time step (as
    SpikingJelly's ``layer.Dropout``): a neuron dropped at one step stays dropped for the whole
    sample instead of flickering. ``nn.Dropout`` on folded time would draw a new mask per step."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x):  # [T, B, ...]
        if not self.training or self.p == 0:
            return x
        mask = torch.empty_like(x[0]).bernoulli_(1 - self.p).div_(1 - self.p)
        if x.stride(0) == 0:  # keep the "same at every step" property
            return (x[0] * mask).expand_as(x)
        return x * mask

    def extra_repr(self):
        return f"p={self.p}"


class Network(nn.Sequential):
    """A classifier: input [T, B, C, H, W] -> (output spikes [T, B, K], output membrane [T, B, K]).

    Its stages run in order; neuron layers return (spikes, membrane) and pass their spikes on.
    A non-spiking network (``spiking=False``, the ANN baselines) ends in logits: it returns them
    as its "membrane" and emits no spikes (a stride-0 zero tensor), so one readout serves both."""

    def __init__(self, *args, spiking=True):
        super().__init__(*args)
        self.spiking = spiking

    def forward(self, x):
        mem = None
        for stage in self:
            x = stage(x)
            if isinstance(x, tuple):
                x, mem = x
        if not self.spiking:
            return x.new_zeros(()).expand_as(x), x
        return x, mem
