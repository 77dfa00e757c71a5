"""The NIR backend of ``snnclf export``: a spiking network as a NIR graph, and the graph run back
through snnTorch's ``import_from_nir``.

What is exported, layer by layer (:func:`nir_graph`): a convolution (stride, padding, groups) with
the batch norm after it folded into its weights; average and sum pooling; the first FC layer as
Flatten and Affine; the others as Affine; snnTorch ``Leaky`` neurons that reset to zero as NIR
LIF nodes. Anything NIR cannot express exactly is refused before anything is written, naming
the layer and what to train instead: max pooling, the reset by subtraction, the adaptive
threshold, snnTorch's ``Synaptic`` reset, residual blocks.

NIR's LIF is a continuous-time equation, ``tau dv/dt = (v_leak - v) + r I``; a step of ``dt`` of
it is snnTorch's ``v = beta v + I`` when ``tau = dt / (1 - beta)`` and ``r = tau / dt``. ``dt`` is
the one snnTorch's exporter and importer agree on, :data:`DT`, and is written in the graph's
metadata. The graph works on one sample without a batch dimension, as NIR defines it.
"""
import contextlib
import io

import numpy as np
import snntorch as snn
import torch
from torch import nn

from ..errors import UsageError
from ..models.layers import FlattenLinear, Folded, TimeDropout
from ..models.neurons import AdaptiveLeaky, SpikingLayer
from ..utils import need

DT = 1e-4  # seconds per step: snnTorch's export_nir and import_nir both use it
TAU_NO_LEAK = DT * 1e12  # the time constant written for beta = 1 (no leak)
EXTRA = "pip install 'snnclf[export]'"


def require(module):
    """Import the optional package ``module`` this backend runs on, or a one-line error naming the install."""
    return need(module, "snnclf export --format nir", EXTRA)


class _Refused(Exception):
    """A layer NIR cannot express: its name, what it is, and what to train instead."""


def _refuse(layer, what, instead):
    raise _Refused(layer, what, instead)


def _conv(nir, conv, norm, shape, where):
    """A NIR Conv2d of ``conv``, with the eval-mode batch norm ``norm`` (or ``None``) folded in:
    w' = w * g / sqrt(var + eps), b' = (b - mean) * g / sqrt(var + eps) + beta, in float64."""
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        _refuse(where, f"padding {conv.padding!r} ({conv.padding_mode})", "use numeric zero padding")
    weight = conv.weight.detach().double().cpu()
    bias = (conv.bias.detach().double().cpu() if conv.bias is not None
            else torch.zeros(conv.out_channels, dtype=torch.float64))
    if norm is not None:
        scale = norm.weight.detach().double().cpu() / torch.sqrt(norm.running_var.double().cpu() + norm.eps)
        weight = weight * scale[:, None, None, None]
        bias = (bias - norm.running_mean.double().cpu()) * scale + norm.bias.detach().double().cpu()
    return nir.Conv2d(input_shape=tuple(shape[1:]), weight=weight.float().numpy(),
                      stride=tuple(conv.stride), padding=tuple(conv.padding),
                      dilation=tuple(conv.dilation), groups=conv.groups, bias=bias.float().numpy())


def _pool(nir, pool, where):
    if isinstance(pool, nn.MaxPool2d):
        _refuse(where, "max pooling, which NIR has no node for,",
                "train with --pool avg or sum, or AP2/SP2 in --arch")
    pair = (lambda v: np.array(v if isinstance(v, tuple) else (v, v)))
    if pool.ceil_mode or pool.padding not in (0, (0, 0)):
        _refuse(where, "pooling with padding or ceil_mode", "pool without padding")
    if pool.divisor_override not in (None, 1):
        _refuse(where, f"average pooling with divisor {pool.divisor_override}", "use average or sum pooling")
    kind = nir.SumPool2d if pool.divisor_override == 1 else nir.AvgPool2d  # sum: arch's SP tokens
    return kind(kernel_size=pair(pool.kernel_size), stride=pair(pool.stride or pool.kernel_size),
                padding=np.array((0, 0)))


def _lif(nir, cell, shape, where):
    """A NIR LIF node of the snnTorch ``Leaky`` ``cell``, one value per neuron of ``shape``."""
    if isinstance(cell, AdaptiveLeaky):
        _refuse(where, "the adaptive threshold (ALIF), which NIR has no node for,", "use leaky neurons")
    if isinstance(cell, snn.Synaptic):
        _refuse(where, "snnTorch's Synaptic reset (it clears the step's new input too, NIR's "
                "CubaLIF does not)", "use leaky neurons")
    if type(cell) is not snn.Leaky:
        _refuse(where, f"{type(cell).__name__} neurons", "use leaky neurons")
    if int(cell.reset_mechanism_val) != 1:
        _refuse(where, "the reset by subtraction, which NIR's LIF (reset to a fixed potential) "
                "cannot express,", "train with --reset zero")
    beta = float(cell.beta.detach().clamp(0, 1))
    # beta 1 (no leak; a learned beta can reach it) has tau = infinity, which the importers cannot
    # divide by: it is written as TAU_NO_LEAK, whose beta, 1 - 1e-12, is 1 in float32 arithmetic
    tau = np.full(shape, DT / (1.0 - beta) if beta < 1.0 else TAU_NO_LEAK)
    return nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros(shape),
                   v_threshold=np.full(shape, float(cell.threshold.detach())), v_reset=np.zeros(shape))


def nir_graph(model, in_shape, metadata=None):
    """The NIR graph of the spiking :class:`~snnclf.models.layers.Network` ``model`` (in eval mode)
    for one sample of ``in_shape`` (C, H, W): a chain from ``input`` to ``output``, with node names
    from the model's layers. Raises :class:`UsageError` naming every layer NIR cannot express."""
    nir = require("nir")
    shape = tuple(in_shape)
    chain = [("input", nir.Input(input_type={"input": np.array(shape)}))]
    refused = {}  # (what, instead) -> the layers
    for name, stage in model.named_children():
        try:
            chain += _stage(nir, name, stage, shape)
        except _Refused as why:  # go on, to name every layer NIR cannot express
            layer, what, instead = why.args
            refused.setdefault((what, instead), []).append(layer)
        out = stage(torch.zeros(1, 1, *shape))  # [T=1, B=1, ...], or (spikes, membrane)
        shape = tuple((out[0] if isinstance(out, tuple) else out).shape[2:])
    if refused:
        raise UsageError("cannot export to NIR: " + "; ".join(
            f"{what} in {', '.join(layers)} ({instead})" for (what, instead), layers in refused.items()))
    chain.append(("output", nir.Output(output_type={"output": np.array(shape)})))
    names = [n for n, _ in chain]
    return nir.NIRGraph(nodes=dict(chain), edges=list(zip(names[:-1], names[1:])), metadata=metadata or {})


def _stage(nir, name, stage, shape):
    """The NIR nodes [(name, node)] of one stage of the network, which receives ``shape``."""
    if isinstance(stage, TimeDropout):  # nothing at inference
        return []
    if isinstance(stage, SpikingLayer):
        return [(name, _lif(nir, stage.cell, shape, name))]
    if not isinstance(stage, Folded):
        _refuse(name, f"{type(stage).__name__} (a branching block)", "export a chain of layers: csnn, cnn, snn-mlp or --arch")
    nodes, layers = [], list(stage)
    for i, layer in enumerate(layers):
        where = name if i == 0 else f"{name}.{i}"
        if isinstance(layer, nn.Conv2d):
            norm = layers[i + 1] if i + 1 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm2d) else None
            nodes.append((name, _conv(nir, layer, norm, shape, where)))
        elif isinstance(layer, nn.BatchNorm2d):
            if i == 0 or not isinstance(layers[i - 1], nn.Conv2d):
                _refuse(where, "batch norm that does not follow a convolution", "put it after one")
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            nodes.append((f"{name}_pool" if i else name, _pool(nir, layer, where)))
        elif isinstance(layer, FlattenLinear):
            nodes.append((f"{name}_flatten", nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0,
                                                         end_dim=-1)))
            nodes.append((name, _affine(nir, layer)))
        elif isinstance(layer, nn.Linear):
            nodes.append((name, _affine(nir, layer)))
        elif not isinstance(layer, nn.Identity):
            _refuse(where, f"{type(layer).__name__}, which has no exact NIR export here,",
                    "non-spiking models export with --format onnx" if isinstance(layer, nn.ReLU)
                    else "build the model from conv, pooling and FC layers")
        shape = tuple(layer(torch.zeros(1, *shape)).shape[1:])  # what the next layer receives
    return nodes


def _affine(nir, linear):
    weight = linear.weight.detach().cpu().float().numpy()
    if linear.bias is None:
        return nir.Linear(weight=weight)
    return nir.Affine(weight=weight, bias=linear.bias.detach().cpu().float().numpy())


def snntorch_outputs(path, inputs):
    """Run the NIR file ``path`` through snnTorch's ``import_from_nir``: output spikes and the
    output layer's membrane (before its reset, as snnclf's readout reads it), each [T, N, K],
    for ``inputs`` [T, N, ...]. One sample at a time, since a NIR graph has no batch dimension."""
    nir = require("nir")
    require("nirtorch")
    from snntorch.import_nir import import_from_nir
    from snntorch.utils import reset

    graph = nir.read(str(path))
    with contextlib.redirect_stdout(io.StringIO()):  # the importer prints its progress
        net = import_from_nir(graph)
    last = "output"  # the output layer's neurons: back along the edges from the output node
    while not isinstance(graph.nodes[last], nir.LIF):
        last = next(a for a, b in graph.edges if b == last)
    neuron = net.get_submodule(last)
    seen = {}

    def membrane(module, args):  # the membrane this step reaches before it fires and resets
        prev = module.mem if module.mem.shape == args[0].shape else torch.zeros_like(args[0])
        seen["mem"] = module.beta.clamp(0, 1) * prev + args[0]

    hook = neuron.register_forward_pre_hook(membrane)
    spikes, mems = [], []
    try:
        with torch.no_grad():
            for n in range(inputs.shape[1]):
                reset(net)
                state = None
                for t in range(inputs.shape[0]):
                    out, state = net(inputs[t, n], state) if state is not None else net(inputs[t, n])
                    spikes.append(out.float())
                    mems.append(seen["mem"].float())
    finally:
        hook.remove()
    T, N = inputs.shape[:2]
    return (torch.stack(spikes).reshape(N, T, -1).transpose(0, 1),
            torch.stack(mems).reshape(N, T, -1).transpose(0, 1))
