"""Encoders: the only place where time is made. Each turns images [B, C, H, W] in [0, 1]
into the input of a model, [T, B, C, H, W]."""
from snntorch import spikegen

from ..registry import Registry

ENCODERS = Registry("encoding")


@ENCODERS.register("direct")
def direct(x, time_steps):
    """The image itself as input current at every step. ``expand`` gives a stride-0 time
    dimension, so a model can tell without comparing values that every step is the same."""
    return x.expand(time_steps, *x.shape)


@ENCODERS.register("rate")
def rate(x, time_steps):
    """Bernoulli spikes: each pixel fires at each step with its intensity as probability."""
    return spikegen.rate(x, num_steps=time_steps)


@ENCODERS.register("latency")
def latency(x, time_steps):
    """One spike per pixel, brighter pixels earlier; pixels below 0.01 never fire
    (snnTorch's linear, normalised latency code, as in its tutorials)."""
    return spikegen.latency(x, num_steps=time_steps, tau=5, threshold=0.01,
                            clip=True, normalize=True, linear=True)


@ENCODERS.register("events")
def events(x, time_steps):
    """Event frames [B, T, C, H, W] are already spikes over time: only time moves to the front."""
    return x.transpose(0, 1)
