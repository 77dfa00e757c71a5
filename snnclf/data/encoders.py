"""Encoders: the only place where time is made. Each turns images [B, C, H, W] in [0, 1]
into the input of a model, [T, B, C, H, W]."""
from snntorch import spikegen

from ..registry import Registry

# Each encoding declares whether it draws random numbers (then two runs of it differ unless seeded)
# and whether it is the one for event data (frames that already are spikes).
ENCODERS = Registry("encoding", declares=("random", "for_events"))


@ENCODERS.register("direct", random=False, for_events=False)
def direct(x, time_steps):
    """The image itself as input current at every step. ``expand`` gives a stride-0 time
    dimension, so a model can tell without comparing values that every step is the same."""
    return x.expand(time_steps, *x.shape)


@ENCODERS.register("rate", random=True, for_events=False)
def rate(x, time_steps):
    """Bernoulli spikes: each pixel fires at each step with its intensity as probability."""
    return spikegen.rate(x, num_steps=time_steps)


@ENCODERS.register("latency", random=False, for_events=False)
def latency(x, time_steps):
    """One spike per pixel, brighter pixels earlier; pixels below 0.01 never fire
    (snnTorch's linear, normalised latency code, as in its tutorials)."""
    return spikegen.latency(x, num_steps=time_steps, tau=5, threshold=0.01,
                            clip=True, normalize=True, linear=True)


@ENCODERS.register("events", random=False, for_events=True)
def events(x, time_steps):
    """Event frames [B, T, C, H, W] are already spikes over time: only time moves to the front."""
    return x.transpose(0, 1)
