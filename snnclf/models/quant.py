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
"""
import contextlib

import torch
from torch import nn
from torch.nn import functional as F

from .layers import FlattenLinear

WEIGHT_BITS = 8
STATE_BITS = 16


def discretization_scale(w, bits=WEIGHT_BITS):
    """The factor Sinabs scales ``w`` by to fit ``bits`` signed bits (a plain float): the largest
    value goes to 2^(bits-1) - 1, or the most negative to -2^(bits-1) where that is the larger."""
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    w_min, w_max = float(w.min()), float(w.max())
    if abs(w_min) <= abs(w_max) * abs(low / high):
        return abs(high / w_max) if w_max != 0 else float("inf")
    return abs(low / w_min)


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
    :class:`Quantized` layer, held outside the module tree): forward(current, v) -> (spikes, v,
    membrane), where ``v`` is the state after the reset and the floor, and ``membrane`` the
    value compared with the threshold, in float units (divided by the layer's scale).

    ``threshold`` is the float threshold (learnable with ``learn_threshold``); the chip's is
    ``round(s * threshold)``, one value for the whole layer."""

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

    def chip_threshold(self):
        """(the integer threshold, the scale s), as the chip holds them."""
        layer = self._source[0]
        s = layer.scale()
        thr = self.threshold * s
        return (thr if layer.float_mode else _round(thr)), s

    def forward(self, current, v):
        thr, s = self.chip_threshold()
        pre = v + current
        if self._source[0].float_mode:
            z = (pre - thr) / thr
            spikes = self.spike_grad(z) if self.training else (z >= 0).to(pre.dtype)
        else:
            # on integers v >= thr is v - thr + 1/2 > 0, which is what the surrogate's forward tests
            spikes = self.spike_grad((pre - thr + 0.5) / thr)
        v = torch.maximum(pre - spikes.detach() * thr, -thr.detach())
        return spikes, v, pre / s


class ChipLayer(nn.Module):
    """A population of :class:`ChipIF` neurons run over time: current [T, B, ...] -> (spikes,
    membrane), each [T, B, ...], state from zero at every call (as :class:`~.neurons.SpikingLayer`)."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def forward(self, x):
        v = torch.zeros_like(x[0])
        spikes, membrane = [], []
        for x_t in x.unbind(0):
            spk, v, mem = self.cell(x_t, v)
            spikes.append(spk)
            membrane.append(mem)
        return torch.stack(spikes), torch.stack(membrane)


@contextlib.contextmanager
def float_twin(model):
    """While the block lasts, ``model``'s quantized layers compute with unrounded weights and
    thresholds: the network before discretization (``snnclf eval`` reports both)."""
    layers = [m for m in model.modules() if isinstance(m, Quantized)]
    for m in layers:
        m.float_mode = True
    try:
        yield model
    finally:
        for m in layers:
            del m.float_mode


def is_quantized(model):
    return any(isinstance(m, Quantized) for m in model.modules())


def chip_values(layer):
    """The integer weights the chip holds for the quantized ``layer``, as a float64 tensor (the
    threshold's are :meth:`ChipIF.chip_threshold`'s)."""
    with torch.no_grad():  # the very operations of the forward pass, so the same roundings
        return torch.round(layer.weight.detach() * layer.scale()).double()


def output_scale(model):
    """The scale of the output layer's integers: its membrane on the chip is the model's times it."""
    cells = [m for m in model.modules() if isinstance(m, ChipIF)]
    return cells[-1].chip_threshold()[1] if cells else 1.0
