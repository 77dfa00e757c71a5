"""Neuromorphic chips a network is trained for (``snnclf train --chip``): each chip's limits,
checked against the network before any data is read, and the export target that carries a
trained network to the chip's own software (``snnclf export --target``).

A chip entry declares its summary, its export target, and ``check(cores, input_steps, in_shape,
num_classes, encoding, time_steps)``, which raises a one-line :class:`UsageError` naming the limit and the layer. The
network reaches the check as a list of :class:`Core` (each weighted layer with the pooling
around it and its neurons: what one core of the chip computes), read off the built model by
:func:`cores`.

The limits are those of the chips' own software, where it checks them: Sinabs 3.1.3's
``sinabs.backend.dynapcnn`` for Speck (``chips/dynapcnn.py``: each core's kernel, neuron and
bias memory; ``dynapcnn_layer.py``: the memory a layer needs; ``dvs_layer.py``: the input), and
Rockpool 3.1.0's Xylo mapper for Xylo (``rockpool.devices.xylo``).
"""
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import UsageError
from .models import get_model
from .models.layers import ChannelSum, Folded, TimeDropout
from .models.neurons import SpikingLayer
from .models.quant import Delay
from .registry import Registry

CHIPS = Registry("chip", declares=("summary", "target"))


def list_chips():
    return CHIPS.names()


@dataclass
class Core:
    """One weighted layer and what runs with it: the pooling of its currents before its neurons
    fire, its neurons, and the pooling of its spikes after them."""
    name: str
    kind: str  # "conv" or "fc"
    layer: nn.Module
    in_shape: tuple  # (C, H, W) it receives (an FC layer's input before flattening)
    out_shape: tuple  # (C, H, W) of its neurons, or (features,)
    pool_before: list = field(default_factory=list)  # pooling modules between the layer and its neurons
    neurons: nn.Module = None
    pool_after: list = field(default_factory=list)  # pooling modules of its spikes
    batch_norm: bool = False


def cores(model, in_shape):
    """The network ``model`` as a list of :class:`Core`, and what is done to the input itself
    before the first (its pooling, the sum of its channels).
    A stage that is no chain of layers (a residual block) is refused."""
    shape, found, input_pool = tuple(in_shape), [], []
    for name, stage in model.named_children():
        if isinstance(stage, SpikingLayer):
            found[-1].neurons = stage
        elif isinstance(stage, Folded):
            for i, layer in enumerate(stage):
                if isinstance(layer, (nn.Conv2d, nn.Linear)):
                    kind = "conv" if isinstance(layer, nn.Conv2d) else "fc"
                    found.append(Core(name, kind, layer, shape, ()))
                elif isinstance(layer, (nn.AvgPool2d, nn.MaxPool2d)):
                    if found and found[-1].neurons is None:
                        found[-1].pool_before.append(layer)
                    elif found:
                        found[-1].pool_after.append(layer)
                    else:
                        input_pool.append(layer)
                elif isinstance(layer, ChannelSum):
                    input_pool.append(layer)
                elif isinstance(layer, nn.BatchNorm2d):
                    found[-1].batch_norm = True
                shape = tuple(layer(torch.zeros(1, *shape)).shape[1:])
                if isinstance(layer, (nn.Conv2d, nn.Linear)):
                    found[-1].out_shape = shape
        elif not isinstance(stage, (TimeDropout, Delay)):
            raise UsageError(f"{name} ({type(stage).__name__}) is no chain of layers that a chip's cores run: "
                             "choose csnn, cnn, snn-mlp or an --arch")
    return found, input_pool


def _pool_text(pool):
    kind = ("max" if isinstance(pool, nn.MaxPool2d) else
            "sum" if getattr(pool, "divisor_override", None) == 1 else "average")
    k = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
    return kind, k


# --- Speck (SynSense): a DYNAP-CNN processor beside a 128x128 event camera, programmed through Sinabs

SPECK_KERNEL_MEMORY = (16, 16, 16, 32, 32, 64, 64, 16, 16)  # Ki words per core (Sinabs' get_constraints)
SPECK_NEURON_MEMORY = (64, 64, 64, 32, 32, 16, 16, 16, 16)  # Ki neurons per core
SPECK_SENSOR = 128  # the input: at most 128x128 pixels, 1 or 2 polarity channels (dvs_layer.py)
SPECK_POOLS = (1, 2, 4)  # sum pooling windows a core applies to its output spikes


def _pow2(n):
    return 2 ** math.ceil(math.log2(n)) if n > 1 else 1


def speck_memory(core):
    """(kernel words, neuron words) the core needs, as Sinabs computes them (``memory_summary``):
    kernel c * 2^(ceil log2(kh kw) + ceil log2 f), neurons f * 2^(ceil log2 h + ceil log2 w). An FC
    layer is a convolution whose kernel covers its whole input, with 1x1 outputs."""
    c, h, w = core.in_shape if len(core.in_shape) == 3 else (core.in_shape[0], 1, 1)
    if core.kind == "conv":
        f, kh, kw = core.layer.out_channels, *core.layer.kernel_size
        oh, ow = core.out_shape[1:]
    else:
        f, kh, kw, oh, ow = core.layer.out_features, h, w, 1, 1
    return c * _pow2(kh * kw) * _pow2(f), f * _pow2(oh) * _pow2(ow)


def _place(needs, capacity):
    """An assignment of each layer to its own core whose capacity holds it (a bipartite matching,
    as Sinabs' mapper finds one), or ``None``."""
    fits = [[c for c, cap in enumerate(capacity) if all(n <= k for n, k in zip(need, cap))] for need in needs]
    owner = {}

    def assign(i, seen):
        for c in fits[i]:
            if c not in seen:
                seen.add(c)
                if c not in owner or assign(owner[c], seen):
                    owner[c] = i
                    return True
        return False
    return owner if all(assign(i, set()) for i in range(len(needs))) else None


def speck_check(found, input_pool, in_shape, num_classes, encoding, time_steps):
    c, h, w = in_shape
    if encoding not in ("events", "rate"):
        raise UsageError(f"--chip speck takes events: the input of --encoding {encoding} is analog; train on an "
                         "event data set (digits-events, nmnist, poker-dvs, ...) or with --encoding rate")
    if not 1 <= c <= 2 or h > SPECK_SENSOR or w > SPECK_SENSOR:
        raise UsageError(f"--chip speck: the input is {c}x{h}x{w} (channels x height x width); Speck's sensor input "
                         f"is 1 or 2 polarity channels of at most {SPECK_SENSOR}x{SPECK_SENSOR}: use --downsample")
    if len(found) > len(SPECK_KERNEL_MEMORY):
        raise UsageError(f"--chip speck: the network has {len(found)} layers ({', '.join(x.name for x in found)}) "
                         f"and Speck has {len(SPECK_KERNEL_MEMORY)} cores, one layer each: use fewer layers")
    for pool in input_pool:
        if isinstance(pool, ChannelSum):
            raise UsageError("--chip speck: PSUM sums the polarities, which Speck's sensor does itself "
                             "(merge_polarities) and which its NIR file cannot say: leave PSUM out")
        kind, k = _pool_text(pool)
        if kind != "sum" or k not in SPECK_POOLS:
            raise UsageError(f"--chip speck: the input is pooled by {kind} pooling {k}x{k}; Speck's sensor sums "
                             f"windows of {', '.join(map(str, SPECK_POOLS))}: use SP2 or SP4")
    for core in found:
        if core.pool_before:
            raise UsageError(f"--chip speck: {core.name} pools its currents before its neurons fire; Speck pools a "
                             "layer's spikes, after its neurons: write LIF before the pooling in --arch "
                             "(e.g. 8C3p1-LIF-SP2)")
        for pool in core.pool_after:
            kind, k = _pool_text(pool)
            if kind != "sum" or k not in SPECK_POOLS:
                raise UsageError(f"--chip speck: {core.name}'s spikes are pooled by {kind} pooling {k}x{k}; Speck "
                                 f"sums windows of {', '.join(map(str, SPECK_POOLS))}: use SP2 or SP4")
        if len(core.pool_after) > 1:
            raise UsageError(f"--chip speck: {core.name}'s spikes are pooled {len(core.pool_after)} times; a Speck "
                             "core pools its output once: use one larger window (SP4)")
    for core in found:
        if core.kind == "fc" and len(core.in_shape) == 3 and core.in_shape[1] != core.in_shape[2]:
            raise UsageError(f"--chip speck: {core.name} is a convolution over its whole {core.in_shape[1]}x"
                             f"{core.in_shape[2]} input on Speck, whose kernels are square: make the map before it "
                             "square (pool or crop the input to a square)")
    needs = [speck_memory(core) for core in found]
    capacity = [(k * 1024, n * 1024) for k, n in zip(SPECK_KERNEL_MEMORY, SPECK_NEURON_MEMORY)]
    largest_k, largest_n = max(SPECK_KERNEL_MEMORY) * 1024, max(SPECK_NEURON_MEMORY) * 1024
    for core, (kernel, neurons) in zip(found, needs):
        if kernel > largest_k:
            raise UsageError(f"--chip speck: {core.name} needs {kernel:,} words of kernel memory and Speck's largest "
                             f"core holds {largest_k:,}: give it fewer channels or outputs, or pool more before it")
        if neurons > largest_n:
            raise UsageError(f"--chip speck: {core.name} needs {neurons:,} words of neuron memory and Speck's largest "
                             f"core holds {largest_n:,}: give it fewer channels or pool more before it")
        if not any(kernel <= k and neurons <= n for k, n in capacity):
            raise UsageError(f"--chip speck: {core.name} needs {kernel:,} words of kernel and {neurons:,} of neuron "
                             "memory, which no single Speck core has (the cores with more kernel memory have less "
                             "neuron memory): make it smaller")
    if _place(needs, capacity) is None:
        raise UsageError("--chip speck: the layers fit Speck's cores one by one but not all together ("
                         + ", ".join(f"{x.name} {k:,}/{n:,}" for x, (k, n) in zip(found, needs))
                         + " words of kernel/neuron memory): make the larger layers smaller")


CHIPS.register("speck", summary="SynSense Speck (DYNAP-CNN cores beside a 128x128 event camera), through "
               "Sinabs: 9 cores, 8-bit weights, 16-bit thresholds and membranes, sum pooling of spikes",
               target="speck")(speck_check)


# --- Xylo (SynSense Xylo Audio 2, SYNS61201): a fully connected SNN core, programmed through Rockpool

XYLO_INPUTS, XYLO_HIDDEN, XYLO_OUTPUTS = 16, 1000, 8


def xylo_check(found, input_pool, in_shape, num_classes, encoding, time_steps):
    inputs = math.prod(found[0].in_shape)  # after any pooling of the input, which the host does before the chip
    for core in found:
        if core.kind == "conv" or core.pool_before or core.pool_after:
            raise UsageError(f"--chip xylo: {core.name} is a {'convolution' if core.kind == 'conv' else 'pooled layer'}; "
                             "Xylo has fully connected layers only: choose --model snn-mlp or an --arch of FC layers")
    for pool in (p for p in input_pool if not isinstance(p, ChannelSum)):
        kind, k = _pool_text(pool)
        if kind != "sum":
            raise UsageError(f"--chip xylo: the input is pooled by {kind} pooling; Xylo takes event counts: sum them "
                             f"(SP{k}), as the host does before the chip")
    if encoding not in ("events", "rate"):
        raise UsageError(f"--chip xylo takes events: the input of --encoding {encoding} is analog; train on an "
                         "event data set or with --encoding rate")
    if inputs > XYLO_INPUTS:
        raise UsageError(f"--chip xylo: the input has {inputs} channels ({'x'.join(map(str, found[0].in_shape))}); Xylo "
                         f"takes at most {XYLO_INPUTS}: sum the input over windows first (SP2-FC... in --arch), or use "
                         "--downsample")
    if len(found) < 2:
        raise UsageError(f"--chip xylo: the network has one layer ({found[0].name}); Xylo maps at least two, a hidden "
                         f"and an output layer: add a hidden layer (e.g. FC32-FC{num_classes})")
    hidden = sum(core.layer.out_features for core in found[:-1])
    if hidden > XYLO_HIDDEN:
        raise UsageError(f"--chip xylo: the hidden layers ({', '.join(x.name for x in found[:-1])}) have {hidden} "
                         f"neurons; Xylo has {XYLO_HIDDEN}: make them narrower")
    if time_steps < len(found):
        raise UsageError(f"--chip xylo: each layer after the first sees the spikes of the step before, so the output "
                         f"of these {len(found)} layers answers from step {len(found)} on, and --time_steps {time_steps} "
                         "ends before: use more time steps")
    out = found[-1].layer.out_features
    if out > XYLO_OUTPUTS:
        raise UsageError(f"--chip xylo: {found[-1].name} has {out} output neurons (one per class); Xylo has "
                         f"{XYLO_OUTPUTS}: choose a data set of at most {XYLO_OUTPUTS} classes")


CHIPS.register("xylo", summary="SynSense Xylo Audio 2, through Rockpool: fully connected layers, at most 16 "
               "inputs, 1000 hidden and 8 output neurons, 8-bit weights, synaptic and membrane decays by bit shifts, "
               "each layer a step after the one before", target="xylo")(xylo_check)


def check(chip, cfg, in_shape, num_classes):
    """Refuse, in one line naming the limit and the layer, the network ``cfg`` asks for if
    ``chip`` cannot hold it, for inputs of ``in_shape`` and ``num_classes`` classes. The network
    is built (small: no data is read) and read as cores."""
    name, options = cfg.model_spec()
    with torch.random.fork_rng(devices=[]):
        model = get_model(name, in_shape, num_classes, **options)
    found, input_pool = cores(model, in_shape)
    CHIPS.lookup(chip, "--chip")(found, input_pool, tuple(in_shape), num_classes, cfg.encoding, cfg.time_steps)
