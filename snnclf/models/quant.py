"""Networks trained in a chip's number formats (quantization-aware training, ``--chip``).

A chip such as SynSense's Speck runs integrate-and-fire neurons on integers: 8-bit weights and
16-bit thresholds and membranes, with the membrane kept above a floor (``min_v_mem``). Sinabs
maps a float network onto it by scaling each layer's weights and threshold by one common factor
and rounding (``sinabs.backend.dynapcnn.discretize``); a network trained in floats then fires
differently on the chip. Here the network trains *through* that rounding: each weighted layer
computes with the integers the chip will hold, in integer units, and its neurons fire on the
integers, so the network snnclf trains and evaluates is the discretized one.

Per layer, as Sinabs' ``determine_discretization_scale`` and ``discretize_tensor`` do it:

    s      = 127 / max(w)              if |min(w)| <= max(w) * 128 / 127,   else  128 / |min(w)|
    w_int  = round(s * w)              (8 bits: the largest weight becomes 127, or the smallest -128)
    thr    = round(s * threshold),     min_v = -thr   (16 bits)

and the neuron, as Sinabs' ``IAF`` with ``SingleSpike`` and ``MembraneSubtract`` steps it::

    v      = v + I                     (I: the layer's integer input current)
    spike  = v >= thr
    v      = max(v - spike * thr, min_v)

Rounding passes the gradient straight through (the straight-through estimator), and the spike's
surrogate gradient is taken on ``(v - thr) / thr``, the distance to the threshold in units of
it, so the float network and its integer twin train alike. The layers have no bias: on Speck a
bias is a leak applied on the chip's own clock, not once per step.

Because every value is an integer below 2^24, float32 arithmetic is exact here, and the
exported integers (``snnclf export --target speck``) make Sinabs' own discretization the
identity: its scale comes out as 1.

Xylo (:class:`XyloLIF`) takes the same 8-bit weights, and its own neuron: a synaptic current and
a membrane that decay by bit shifts, 16-bit saturating additions, several spikes a step, and a
step of delay before each layer after the first (:class:`Delay`), as Rockpool's XyloSim computes
them. What each chip puts around the layers is :data:`ARITHMETIC`'s.
"""
import contextlib
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from .layers import FlattenLinear

WEIGHT_BITS = 8
STATE_BITS = 16


def discretization_scale(w, bits=WEIGHT_BITS):
    """The factor Sinabs scales ``w`` by to fit ``bits`` signed bits, computed as Sinabs computes
    it (in ``w``'s float type): the largest value goes to 2^(bits-1) - 1, or the most negative to
    -2^(bits-1) where that is the larger."""
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    w_min, w_max = w.min(), w.max()
    if abs(float(w_min)) <= abs(float(w_max)) * abs(low / high):
        return float(abs(high / w_max)) if float(w_max) != 0 else float("inf")
    return float(abs(low / w_min))


def _round(x):
    """``round(x)`` forward, identity backward (the straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


class Quantized:
    """A weighted layer computing with its weights as the chip holds them: ``round(s * w)`` in
    integer units (see the module's docstring). ``float_mode`` (:func:`float_twin`) computes with
    ``s * w`` unrounded instead: the same network in floats, for the accuracy before discretization."""

    float_mode = False

    def scale(self):
        return discretization_scale(self.weight.detach())

    def chip_weight(self):
        w = self.weight * self.scale()
        return w if self.float_mode else _round(w)


class QuantConv2d(Quantized, nn.Conv2d):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, bias=False, **kwargs)

    def forward(self, x):
        return self._conv_forward(x, self.chip_weight(), None)


class QuantLinear(Quantized, nn.Linear):
    def __init__(self, in_features, out_features):
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x):
        return F.linear(x, self.chip_weight())


class QuantFlattenLinear(Quantized, FlattenLinear):
    def __init__(self, in_shape, out_features):
        super().__init__(in_shape, out_features, bias=False)

    def forward(self, x):
        return F.linear(x.flatten(1), self.chip_weight())


class ChipIF(nn.Module):
    """The chip's integrate-and-fire neuron on the integer current of its layer ``source`` (a
    :class:`Quantized` layer, held outside the module tree): forward(current, v) -> (spikes,
    membrane, v), or ``step`` with the layer's threshold and scale given, where ``v`` is the state after the reset and the floor, and ``membrane`` the
    value compared with the threshold, in float units (divided by the layer's scale).

    ``threshold`` is the float threshold (learnable with ``learn_threshold``); the chip's is
    ``round(s * threshold)``, one value for the whole layer."""

    num_states = 1

    def __init__(self, threshold=1.0, spike_grad=None, learn_threshold=False):
        super().__init__()
        value = torch.as_tensor(float(threshold))
        if learn_threshold:
            self.threshold = nn.Parameter(value)
        else:
            self.register_buffer("threshold", value)
        self.spike_grad = spike_grad
        self._source = []  # [the weighted layer before it]: a list keeps it out of the module tree

    def attach(self, layer):
        self._source[:] = [layer]
        return self

    @property
    def exact(self):
        """Whether it computes in the chip's integers (else the float twin, :func:`float_twin`)."""
        return not self._source[0].float_mode

    def chip_threshold(self):
        """(the integer threshold, the scale s), as the chip holds them: ``round(s * threshold)``
        within the chip's 16 bits, from 1 to 32767 (a threshold the rounding would take past them
        is held at the end, as the chip must; Sinabs' discretization then keeps it)."""
        layer = self._source[0]
        s = layer.scale()
        thr = self.threshold * s
        if self.exact:
            thr = thr + (thr.detach().round().clamp(1, 2 ** (STATE_BITS - 1) - 1) - thr).detach()
        return thr, s

    def fire(self, v, thr):
        """Spikes where ``v >= thr``, with the surrogate gradient of ``(v - thr) / thr``. On
        integers ``v >= thr`` is ``v - thr + 1/2 > 0``, which is what the surrogate's forward tests
        (its gradient taken half a unit, in units of the threshold, from the float twin's)."""
        if self.exact:
            return self.spike_grad((v - thr + 0.5) / thr)
        z = (v - thr) / thr
        return self.spike_grad(z) if self.training else (z >= 0).to(v.dtype)

    def forward(self, current, *state):
        """One step with the layer's constants computed here; :class:`~.neurons.ChipLayer`
        computes them once per call and runs :meth:`step`."""
        return self.step(current, *self.chip_threshold(), *state)

    def step(self, current, thr, s, v):
        pre = v + current
        spikes = self.fire(pre, thr)
        v = torch.maximum(pre - spikes.detach() * thr, -thr.detach())
        return spikes, pre / s, v


def _decay(x, dash, exact):
    """What a bit-shift decay takes from ``x`` in a step: ``x >> dash`` (a floor), at least one
    unit towards zero, as XyloSim computes it; its gradient that of ``x / 2^dash``."""
    soft = x * 2.0 ** -dash
    if not exact:
        return soft
    q = torch.floor(x.detach() * 2.0 ** -dash)
    return soft + (torch.where(q == 0, torch.sign(x.detach()), q) - soft).detach()


def _saturate(x, exact):
    """16-bit saturation of XyloSim's additions (the gradient passes unchanged)."""
    return x + (x.clamp(-(2 ** (STATE_BITS - 1)), 2 ** (STATE_BITS - 1) - 1) - x).detach() if exact else x


class XyloLIF(ChipIF):
    """Xylo Audio 2's neuron, as XyloSim steps it (integers, 16-bit saturating), on the integer
    current of its layer: forward(current, isyn, v) -> (spikes, membrane, isyn, v)::

        isyn = sat(isyn + I);   isyn -= decay(isyn, dash_syn)
        v    = sat(v + sat(-decay(v, dash_mem) + isyn))
        n    = min(floor(v / thr), max_spikes) where v >= thr;   v -= n * thr

    ``decay(x, d)`` is ``x >> d``, at least one unit towards zero. A hidden neuron fires up to 31
    spikes a step, an output neuron one. The float twin decays by ``x / 2^d``, without floor or
    saturation."""

    num_states = 2

    def __init__(self, threshold=1.0, spike_grad=None, learn_threshold=False, dash_syn=1, dash_mem=4,
                 max_spikes=31):
        super().__init__(threshold, spike_grad, learn_threshold)
        self.dash_syn, self.dash_mem, self.max_spikes = int(dash_syn), int(dash_mem), int(max_spikes)

    def step(self, current, thr, s, isyn, v):
        exact = self.exact
        isyn = _saturate(isyn + current, exact)
        isyn = isyn - _decay(isyn, self.dash_syn, exact)
        v = _saturate(v + _saturate(isyn - _decay(v, self.dash_mem, exact), exact), exact)
        one = self.fire(v, thr)
        # floor(v / thr) is below 1 exactly where v < thr (thr > 0): no comparison or zeros needed
        count = torch.floor(v.detach() / thr.detach()).clamp(0, self.max_spikes)
        spikes = one + (count - one).detach()  # several spikes a step, with the surrogate gradient of one
        pre = v
        v = v - spikes.detach() * thr
        return spikes, pre / s, isyn, v

    def extra_repr(self):
        return f"dash_syn={self.dash_syn}, dash_mem={self.dash_mem}, max_spikes={self.max_spikes}"


class Delay(nn.Module):
    """Spikes [T, B, ...] one step late (zeros first): on Xylo a layer after the first sees the
    spikes its inputs fired in the step before."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x[:1]), x[:-1]])


class InputClamp(nn.Module):
    """Input event counts capped at ``most`` per channel and step, as the chip takes them."""

    def __init__(self, most):
        super().__init__()
        self.most = most

    def forward(self, x):
        return x.clamp(max=self.most)

    def extra_repr(self):
        return f"most={self.most}"


@dataclass(frozen=True)
class Arithmetic:
    """How a chip computes, beyond its 8-bit weights: what the builder puts around the layers."""
    lag: bool  # each layer after the first sees the spikes of the step before (a Delay before it)
    input_most: Optional[int]  # input counts per channel and step are capped at this


# The chips' arithmetic, by the name --chip takes (their limits are snnclf.chips').
ARITHMETIC = {"speck": Arithmetic(lag=False, input_most=None),
              "xylo": Arithmetic(lag=True, input_most=15)}  # XyloSim: MAX_NUM_INP_SPIKES 15


@contextlib.contextmanager
def float_twin(model):
    """While the block lasts, ``model``'s quantized layers compute with unrounded weights and
    thresholds: the network before discretization (``snnclf eval`` reports both)."""
    layers = [(m, m.float_mode) for m in model.modules() if isinstance(m, Quantized)]
    for m, _ in layers:
        m.float_mode = True
    try:
        yield model
    finally:
        for m, before in layers:
            m.float_mode = before


def is_quantized(model):
    return any(isinstance(m, Quantized) for m in model.modules())


def chip_values(layer):
    """The integer weights the chip holds for the quantized ``layer``, as a float64 tensor (the
    threshold's are :meth:`ChipIF.chip_threshold`'s)."""
    with torch.no_grad():  # the forward pass's own weights, so the same roundings
        return layer.chip_weight().double()


def output_scale(model):
    """The scale of the output layer's integers: its membrane on the chip is the model's times it."""
    cells = [m for m in model.modules() if isinstance(m, ChipIF)]
    return cells[-1].chip_threshold()[1] if cells else 1.0
