"""Stateless layers over time: they see all T steps at once, folded into the batch."""
import torch
from torch import nn


class Folded(nn.Sequential):
    """Stateless layers (conv, pool, linear, batch norm, ReLU) applied to [T, B, ...] by folding
    time into the batch: one call on [T*B, ...] instead of T calls.

    When every step holds the same values (a stride-0 time dimension, as the direct encoder
    makes) the layers run once, on one step, and the result is expanded again; batch-norm
    statistics of T identical copies equal those of one.

    With ``step_by_step`` set, the layers are called once per step instead (the reference
    execution; batch norm in training mode then normalises each step on its own)."""

    step_by_step = False

    def forward(self, x):  # [T, B, ...] -> [T, B, ...]
        if self.step_by_step:
            return torch.stack([super(Folded, self).forward(x_t) for x_t in x.unbind(0)])
        if x.stride(0) == 0:
            y = super().forward(_channels_last(x[0]))
            return y.expand(x.shape[0], *y.shape)
        y = super().forward(_channels_last(x.flatten(0, 1)))
        return y.unflatten(0, x.shape[:2])


def _channels_last(x):
    """Images in channels-last layout: oneDNN's convolutions and max-pooling run faster on it
    (pooling about 3x on the CPU), and every layer after keeps it. A no-op when already so.
    Measured side by side against the default layout (same weights; csnn at T=1 and 5, cnn at
    T=5), it trained 1.2-1.7x and ran inference 1.6-2.1x faster on an AMD EPYC (Zen 4), with
    AVX-512 and limited to AVX2 alike."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


class FlattenLinear(nn.Linear):
    """``nn.Flatten()`` then ``nn.Linear`` on images [N, C, H, W], as one layer with
    ``nn.Linear``'s weight and state dict (the key a checkpoint names it by stays the same).

    The plain flatten and matmul on every device. Computing the product as one convolution whose
    kernel covers the whole image (oneDNN instead of MKL on the CPU) was tried and dropped, because
    which is faster depends on the CPU: measured side by side on an AMD EPYC (Zen 4) training
    csnn, the convolution was 0-4% faster with AVX-512 and 1.6-2.0x slower with the libraries
    limited to AVX2 (``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2``:
    most laptops and older servers have no AVX-512, and ARM machines no AVX at all); inference with the matmul was
    as fast or faster on both. ``benchmarks/speed.py`` (with ``--isa avx2``: as without AVX-512)
    times the whole models."""

    def __init__(self, in_shape, out_features, bias=True):
        channels, height, width = in_shape
        super().__init__(channels * height * width, out_features, bias)
        self.in_shape = (channels, height, width)

    def forward(self, x):  # [N, C, H, W] -> [N, out_features]
        return super().forward(x.flatten(1))

    def extra_repr(self):
        return f"in_shape={self.in_shape}, out_features={self.out_features}, bias={self.bias is not None}"


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
        self.to(memory_format=torch.channels_last)  # conv weights too (see _channels_last)

    def forward(self, x):
        mem = None
        for stage in self:
            x = stage(x)
            if isinstance(x, tuple):
                x, mem = x
        if not self.spiking:
            return x.new_zeros(()).expand_as(x), x
        return x, mem


class ChannelSum(nn.Module):
    """The input's channels summed into one: [N, C, H, W] -> [N, 1, H, W] (``PSUM`` in --arch: an
    event camera's ON and OFF events counted together, as Speck's sensor can merge them and as
    Xylo's 16 inputs need)."""

    def forward(self, x):
        return x.sum(1, keepdim=True)
