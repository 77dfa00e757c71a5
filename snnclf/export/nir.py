"""The NIR backend of ``snnclf export``: a spiking network as a NIR graph, in the form (target)
that the tools reading it run exactly.

What is exported, layer by layer (:func:`nir_graph`): a convolution (stride, padding, groups) with
the batch norm after it folded into its weights; average and sum pooling; the first FC layer as
Flatten and Affine; the others as Affine; snnTorch ``Leaky`` neurons that reset to zero as NIR
LIF nodes (IF nodes, where a layer has no leak and the target asks for it). Anything NIR cannot
express exactly is refused before anything is written, naming the layer and what to train
instead: max pooling, the reset by subtraction, the adaptive threshold, snnTorch's ``Synaptic``
reset, residual blocks.

NIR's LIF is a continuous-time equation, ``tau dv/dt = (v_leak - v) + r I``; one forward-Euler
step of ``dt`` of it is snnTorch's ``v = beta v + I`` when ``tau = dt / (1 - beta)`` and
``r I`` is ``I / (1 - beta)``. That factor can sit in ``r`` (``r = tau / dt``, as snnTorch's
exporter writes it) or in the weights before the neuron (``r = 1``): both are the same network,
but tools that ignore ``r`` (Norse, Sinabs) run only the second. Which of the exact encodings
is written is a :class:`Form`, chosen by a target (:data:`TARGETS`); the default is the one
that the most tools run exactly. ``dt`` is :data:`DT`, written in the graph's metadata with the
input, the readout and the class names (:func:`describe`).
"""
import json
from dataclasses import dataclass
from typing import Optional

import numpy as np
import snntorch as snn
import torch
from torch import nn

from .. import __version__
from ..errors import UsageError
from ..models.layers import FlattenLinear, Folded, TimeDropout
from ..models.neurons import AdaptiveLeaky, SpikingLayer
from ..models.quant import ChipIF, Quantized, chip_values
from ..registry import Registry
from ..utils import need

DT = 1e-4  # seconds per step: snnTorch's importer hard-codes it, and the others default to it
NO_LEAK = 2.0 ** 40  # tau / dt of a layer without leak written as LIF: its beta, 1 - 2^-40, is 1 in float32
EXTRA = "pip install 'snnclf[export]'"


def require(module):
    """Import the optional package ``module`` this backend runs on, or a one-line error naming the install."""
    return need(module, "snnclf export --format nir", EXTRA)


@dataclass(frozen=True)
class Form:
    """Which of NIR's exact encodings of one network is written. Every form is the same network;
    they differ in where a constant sits, which decides which tools run the file as written."""
    fold_r: bool  # LIF: r = 1, the 1 / (1 - beta) folded into the weights before it (else r = tau / dt)
    sum_pool: bool  # average pooling as SumPool2d, its 1 / k^2 folded into the neighbouring weights
    no_leak_if: bool  # a layer without leak as an IF node (r = 1 / dt), else a LIF of tau = 2^40 dt
    # "1.0.4": the schema of nir 1.0.4, which Sinabs and Rockpool pin: no v_reset (its LIF and IF
    # reset by subtracting the threshold) and one value per layer for each neuron parameter
    # (Sinabs' importer refuses arrays over a convolution's neurons); "xylo": no NIR graph but Xylo's
    # specification (snnclf.export.xylo); else nir >= 1.0.6, reset to v_reset
    schema: str = "current"
    chip: Optional[str] = None  # the file holds the integers of a run trained with --chip CHIP
    flat: bool = False  # fully connected layers only, the input flattened (C * H * W,): no Flatten node

    @property
    def is_nir(self):
        """Whether the file is a NIR graph (else the chip's own specification: Xylo's)."""
        return self.schema != "xylo"

    @property
    def subtracts(self):
        """Whether the file's neurons reset by subtracting the threshold (else to zero)."""
        return self.schema == "1.0.4"


# Each target says which tools it is for (the ``snnclf export`` check runs those that are installed).
TARGETS = Registry("target", declares=("summary", "consumers"))
DEFAULT_TARGET = "portable"
TARGETS.register("portable", consumers=("numpy", "snntorch", "spikingjelly", "norse"),
                 summary="r folded into the weights, sum pooling, a layer without leak as a LIF of "
                 "tau = 2^40 dt: the one file snnTorch, SpikingJelly and Norse all run")(
    Form(fold_r=True, sum_pool=True, no_leak_if=False))
TARGETS.register("snntorch", consumers=("numpy", "snntorch", "spikingjelly"),
                 summary="r = tau / dt and average pooling, as snnTorch's own exporter writes them "
                 "(not for Norse)")(
    Form(fold_r=False, sum_pool=False, no_leak_if=False))
TARGETS.register("portable-if", consumers=("numpy", "spikingjelly", "norse"),
                 summary="portable, with a layer without leak as NIR's IF node, its exact equation "
                 "(not for snnTorch, which reads IF as a leaky neuron)")(
    Form(fold_r=True, sum_pool=True, no_leak_if=True))


# Sinabs (Speck's software) and Rockpool (Xylo's) read nir 1.0.4, whose neurons reset by
# subtraction: they run exactly the networks of integrate-and-fire neurons (--beta 1 --reset
# subtract); a LIF of tau = 2^40 dt with r = tau / dt and the weights as trained (both ignore r).
SUBTRACTING = Form(fold_r=False, sum_pool=True, no_leak_if=False, schema="1.0.4")
TARGETS.register("sinabs", consumers=("sinabs",),
                 summary="nir 1.0.4's schema (no v_reset: reset by subtraction), one parameter value per layer, "
                 "integrate-and-fire layers as LIF of tau = 2^40 dt with r = tau / dt: what Sinabs runs")(SUBTRACTING)
TARGETS.register("rockpool", consumers=("rockpool",),
                 summary="the sinabs form of a network of fully connected layers, its input flattened (Rockpool "
                 "converts no Flatten, convolution or pooling)")(
    Form(fold_r=False, sum_pool=True, no_leak_if=False, schema="1.0.4", flat=True))
TARGETS.register("speck", consumers=("sinabs", "speck"),
                 summary="a --chip speck run's integers (8-bit weights, 16-bit thresholds) as nir 1.0.4 IF "
                 "nodes (Sinabs gives them min_v_mem = -threshold, as the chip holds it): Sinabs, then "
                 "Speck's cores in Sinabs' DynapcnnNetwork")(
    Form(fold_r=False, sum_pool=False, no_leak_if=True, schema="1.0.4", chip="speck"))

TARGETS.register("xylo", consumers=("xylo",),
                 summary="a --chip xylo run as Xylo Audio 2's specification (.npz: the integers XyloSim."
                 "from_specification takes, no NIR): run by Rockpool's XyloSim")(
    Form(fold_r=False, sum_pool=False, no_leak_if=False, schema="xylo", chip="xylo", flat=True))


def check_chip(target, chip):
    """Refuse a chip's target for a run not trained for that chip, and the other targets for a
    chip's run, in one line."""
    form = TARGETS.lookup(target, "--target")
    if form.chip != chip:
        raise UsageError(f"run trained with --chip {chip}: export it with --target {chip}, which writes the chip's "
                         "integers" if chip else f"--target {target} writes the integers of a run trained with --chip "
                         f"{form.chip}, and this run was not: train with --chip {form.chip}, or choose --target sinabs")


def list_targets():
    return TARGETS.names()


class _Refused(Exception):
    """A layer NIR cannot express: its name, what it is, and what to train instead."""


def _refuse(layer, what, instead):
    raise _Refused(layer, what, instead)


@dataclass
class _Layer:
    """One NIR node before it is written: parameters in float64, so folding rounds once."""
    name: str
    op: str  # conv, pool, flatten, affine, lif (if, once folded)
    p: dict
    shape: tuple  # the shape it receives (one sample)


WEIGHTED = ("conv", "affine")


def _conv(conv, norm, shape, where):
    """The convolution ``conv`` with the eval-mode batch norm ``norm`` (or ``None``) folded in:
    w' = w * g / sqrt(var + eps), b' = (b - mean) * g / sqrt(var + eps) + beta, in float64."""
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        _refuse(where, f"padding {conv.padding!r} ({conv.padding_mode})", "use numeric zero padding")
    weight = (chip_values(conv) if isinstance(conv, Quantized)  # a --chip run: the chip's integers
              else conv.weight.detach().double()).cpu()
    bias = (conv.bias.detach().double().cpu() if conv.bias is not None
            else torch.zeros(conv.out_channels, dtype=torch.float64))
    if norm is not None:
        scale = norm.weight.detach().double().cpu() / torch.sqrt(norm.running_var.double().cpu() + norm.eps)
        weight = weight * scale[:, None, None, None]
        bias = (bias - norm.running_mean.double().cpu()) * scale + norm.bias.detach().double().cpu()
    return dict(weight=weight.numpy(), bias=bias.numpy(), stride=tuple(conv.stride),
                padding=tuple(conv.padding), dilation=tuple(conv.dilation), groups=conv.groups)


def _pool(pool, where):
    if isinstance(pool, nn.MaxPool2d):
        _refuse(where, "max pooling, which NIR has no node for,",
                "train with --pool avg or sum, or AP2/SP2 in --arch")
    pair = (lambda v: tuple(v) if isinstance(v, tuple) else (v, v))
    if pool.ceil_mode or pool.padding not in (0, (0, 0)):
        _refuse(where, "pooling with padding or ceil_mode", "pool without padding")
    if pool.divisor_override not in (None, 1):
        _refuse(where, f"average pooling with divisor {pool.divisor_override}", "use average or sum pooling")
    return dict(kind="sum" if pool.divisor_override == 1 else "avg",  # sum: arch's SP tokens
                kernel_size=pair(pool.kernel_size), stride=pair(pool.stride or pool.kernel_size))


def _lif(cell, where, form):
    """The constants of the snnTorch ``Leaky`` ``cell`` (or a chip's neuron): its decay and threshold."""
    if isinstance(cell, ChipIF):
        thr, _ = cell.chip_threshold()
        return dict(beta=1.0, threshold=float(thr.detach()))
    if isinstance(cell, AdaptiveLeaky):
        _refuse(where, "the adaptive threshold (ALIF), which NIR has no node for,", "use leaky neurons")
    if isinstance(cell, snn.Synaptic):
        _refuse(where, "snnTorch's Synaptic reset (it clears the step's new input too, NIR's "
                "CubaLIF does not)", "use leaky neurons")
    if type(cell) is not snn.Leaky:
        _refuse(where, f"{type(cell).__name__} neurons", "use leaky neurons")
    beta = float(cell.beta.detach().clamp(0, 1))
    if form.subtracts:
        if int(cell.reset_mechanism_val) != 0:
            _refuse(where, "the reset to zero, which nir 1.0.4 (reset by subtraction) cannot express,",
                    "train with --reset subtract --beta 1.0, or choose --target portable")
        if beta != 1.0:
            _refuse(where, f"leaky neurons (beta {beta:g}), which Sinabs and Rockpool step otherwise than snnTorch,",
                    "train with --beta 1.0 --reset subtract (integrate-and-fire)")
    elif int(cell.reset_mechanism_val) != 1:
        _refuse(where, "the reset by subtraction, which NIR's LIF (reset to a fixed potential) "
                "cannot express,", "train with --reset zero, or choose --target sinabs")
    return dict(beta=beta, threshold=float(cell.threshold.detach()))


def _layers(model, in_shape, form):
    """The network as a chain of :class:`_Layer` in snnclf's own form. Raises :class:`UsageError`
    naming every layer NIR cannot express."""
    shape = tuple(in_shape)
    layers, refused = [], {}  # refused: (what, instead) -> the layers
    for name, stage in model.named_children():
        try:
            layers += _stage(name, stage, shape, form)
        except _Refused as why:  # go on, to name every layer NIR cannot express
            layer, what, instead = why.args
            refused.setdefault((what, instead), []).append(layer)
        out = stage(torch.zeros(1, 1, *shape))  # [T=1, B=1, ...], or (spikes, membrane)
        shape = tuple((out[0] if isinstance(out, tuple) else out).shape[2:])
    if refused:
        raise UsageError("cannot export to NIR: " + "; ".join(
            f"{what} in {', '.join(layers)} ({instead})" for (what, instead), layers in refused.items()))
    return layers, shape


def _stage(name, stage, shape, form):
    """The layers of one stage of the network, which receives ``shape``."""
    if isinstance(stage, TimeDropout):  # nothing at inference
        return []
    if isinstance(stage, SpikingLayer):
        return [_Layer(name, "lif", _lif(stage.cell, name, form), shape)]
    if not isinstance(stage, Folded):
        _refuse(name, f"{type(stage).__name__} (a branching block)", "export a chain of layers: csnn, cnn, snn-mlp or --arch")
    out, layers = [], list(stage)
    for i, layer in enumerate(layers):
        where = name if i == 0 else f"{name}.{i}"
        if isinstance(layer, nn.Conv2d):
            norm = layers[i + 1] if i + 1 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm2d) else None
            out.append(_Layer(name, "conv", _conv(layer, norm, shape, where), shape))
        elif isinstance(layer, nn.BatchNorm2d):
            if i == 0 or not isinstance(layers[i - 1], nn.Conv2d):
                _refuse(where, "batch norm that does not follow a convolution", "put it after one")
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            out.append(_Layer(f"{name}_pool" if i else name, "pool", _pool(layer, where), shape))
        elif isinstance(layer, FlattenLinear):
            out.append(_Layer(f"{name}_flatten", "flatten", {}, shape))
            out.append(_Layer(name, "affine", _weights(layer), (int(np.prod(shape)),)))
        elif isinstance(layer, nn.Linear):
            out.append(_Layer(name, "affine", _weights(layer), shape))
        elif not isinstance(layer, nn.Identity):
            _refuse(where, f"{type(layer).__name__}, which has no exact NIR export here,",
                    "non-spiking models export with --format onnx" if isinstance(layer, nn.ReLU)
                    else "build the model from conv, pooling and FC layers")
        shape = tuple(layer(torch.zeros(1, *shape)).shape[1:])  # what the next layer receives
    return out


def _weights(linear):
    if isinstance(linear, Quantized):  # a --chip run: the integers the chip holds
        return dict(weight=chip_values(linear).cpu().numpy(), bias=np.zeros(linear.out_features))
    weight = linear.weight.detach().double().cpu().numpy()
    bias = None if linear.bias is None else linear.bias.detach().double().cpu().numpy()
    return dict(weight=weight, bias=bias)


def _scale(layers, i, factor, direction):
    """Multiply the input of layer ``i`` by ``factor`` through the nearest weighted layer before
    it (its weights and bias; ``direction`` -1) or after it (its weights; +1), across pooling and
    flattening only, which are linear. Returns whether there was one."""
    j = i + direction
    while 0 <= j < len(layers) and layers[j].op in ("pool", "flatten"):
        j += direction
    if not (0 <= j < len(layers)) or layers[j].op not in WEIGHTED:
        return False
    p = layers[j].p
    p["weight"] = p["weight"] * factor
    if direction < 0 and p.get("bias") is not None:
        p["bias"] = p["bias"] * factor
    return True


def _apply(layers, form):
    """The chain in ``form``: the constants moved to where the form puts them (in place)."""
    for i, layer in enumerate(layers):
        if layer.op == "pool" and layer.p["kind"] == "avg" and form.sum_pool:
            area = float(np.prod(layer.p["kernel_size"]))
            if _scale(layers, i, 1 / area, -1) or _scale(layers, i, 1 / area, +1):
                layer.p["kind"] = "sum"  # 1 / k^2 of a 2x2 window is a power of two: exact in floats
        elif layer.op == "lif":
            beta = layer.p["beta"]
            if beta == 1.0 and form.no_leak_if:
                layer.op = "if"
                continue
            gain = 1 / (1 - beta) if beta < 1.0 else NO_LEAK  # r I = I / (1 - beta): tau / dt
            layer.p["tau"] = DT * gain
            layer.p["r"] = gain
            if form.fold_r and _scale(layers, i, gain, -1):
                layer.p["r"] = 1.0
    return layers


def _node(nir, layer, form):
    """The NIR node of ``layer``, parameters in float32 (neuron constants in float64, as the
    importers compute beta = 1 - dt / tau from them; float32 for a chip, whose software refuses
    float64 thresholds)."""
    p, shape = layer.p, layer.shape
    if form.schema == "1.0.4" and (form.chip or len(shape) > 1):
        shape = (1,)  # one value per layer: Sinabs refuses arrays over a convolution's neurons, Speck per-neuron thresholds
    f32 = (lambda a: np.asarray(a, dtype=np.float32))
    if layer.op == "conv":
        return nir.Conv2d(input_shape=tuple(shape[1:]), weight=f32(p["weight"]), stride=p["stride"],
                          padding=p["padding"], dilation=p["dilation"], groups=p["groups"], bias=f32(p["bias"]))
    if layer.op == "pool":
        kind = nir.SumPool2d if p["kind"] == "sum" else nir.AvgPool2d
        return kind(kernel_size=np.array(p["kernel_size"]), stride=np.array(p["stride"]), padding=np.array((0, 0)))
    if layer.op == "flatten":
        return nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
    if layer.op == "affine":
        if p["bias"] is None:
            return nir.Linear(weight=f32(p["weight"]))
        return nir.Affine(weight=f32(p["weight"]), bias=f32(p["bias"]))
    full = (lambda v: np.full(shape, v, dtype=np.float32 if form.chip else np.float64))
    if layer.op == "if":  # dv/dt = r I: one step of dt adds dt r I = I
        return nir.IF(r=full(1 / DT), v_threshold=full(p["threshold"]), v_reset=full(0.0))
    return nir.LIF(tau=full(p["tau"]), r=full(p["r"]), v_leak=full(0.0), v_threshold=full(p["threshold"]),
                   v_reset=full(0.0))


def nir_graph(model, in_shape, metadata=None, target=DEFAULT_TARGET):
    """The NIR graph of the spiking :class:`~snnclf.models.layers.Network` ``model`` (in eval mode)
    for one sample of ``in_shape`` (C, H, W), in the form of ``target`` (a name of
    :data:`TARGETS`, or a :class:`Form`): a chain from ``input`` to ``output``, with node names
    from the model's layers (whether the run's --chip suits the target is :func:`check_chip`'s).
    Raises :class:`UsageError` naming every layer NIR cannot express."""
    nir = require("nir")
    form = target if isinstance(target, Form) else TARGETS.lookup(target, "--target")
    layers, out_shape = _layers(model, in_shape, form)
    if form.flat:
        other = [layer.name for layer in layers if layer.op in ("conv", "pool")]
        if other:
            raise UsageError(f"cannot export to --target {target}: {', '.join(other)} "
                             f"{'is a' if len(other) == 1 else 'are'} convolution or pooling, which the tool does "
                             "not convert: train fully connected layers (--model snn-mlp, or an --arch of FC layers)")
        layers = [layer for layer in layers if layer.op != "flatten"]
        in_shape = (int(np.prod(in_shape)),)
    chain = [("input", nir.Input(input_type={"input": np.array(tuple(in_shape))}))]
    chain += [(layer.name, _node(nir, layer, form)) for layer in _apply(layers, form)]
    last = next(node for _, node in reversed(chain) if isinstance(node, (nir.LIF, nir.IF)))
    last.metadata = {"role": "the output layer, neuron k for class k of the graph's class_names: the "
                     "graph's readout reads its spikes, and its membrane before the reset"}
    chain.append(("output", nir.Output(output_type={"output": np.array(out_shape)})))
    names = [n for n, _ in chain]
    # nir's type check would refuse the one value per layer of nir 1.0.4's schema over a convolution
    return nir.NIRGraph(nodes=dict(chain), edges=list(zip(names[:-1], names[1:])), metadata=metadata or {},
                        type_check=form.schema != "1.0.4")


def write(path, graph, target):
    """Write ``graph`` to ``path`` in the schema of ``target``: for nir 1.0.4's, the v_reset that
    this nir writes is taken out again (nir 1.0.4's reader refuses it; without it, its neurons
    reset by subtraction)."""
    nir = require("nir")
    nir.write(str(path), graph)
    if TARGETS.lookup(target, "--target").schema == "1.0.4":
        import h5py  # nir's own file format library
        with h5py.File(path, "a") as f:
            for node in f["node/nodes"].values():
                if "v_reset" in node:
                    del node["v_reset"]


def describe(run, dataset, in_shape, time_steps, encoding, encoding_text, events, class_names, target):
    """The graph's metadata: what a stranger needs to feed the file and read its answer, in
    plain types (str, float, int, lists of them). ``nir.read`` gives strings back as bytes and
    numbers as NumPy scalars; the ``json`` entry holds the same keys as one JSON text, which
    ``json.loads`` reads into plain Python whichever way it comes back."""
    meta = {
        "dt": DT,
        "time_steps": int(time_steps),
        "input_shape": [int(d) for d in in_shape],
        "input_layout": "(C, H, W): one sample per call, without a batch dimension; one call per time step",
        "input_encoding": f"{encoding}: {encoding_text}",
        "input_range": ("event counts per pixel and frame, 0 or more" if events
                        else "[0, 1]: the image's pixel intensities scaled to [0, 1]"),
        "readout": ("the predicted class is the output neuron with the most spikes over the "
                    f"{int(time_steps)} steps; a tie goes to the highest mean, over the steps, of the "
                    "output LIF node's membrane potential after the step's input and before its "
                    "reset (the value compared with v_threshold), which the graph does not output: "
                    "read it from the last LIF node's state"),
        "class_names": [str(c) for c in class_names],
        "snnclf_version": __version__,
        "snnclf_run": str(run),
        "dataset": str(dataset),
        "target": str(target),
        "form": TARGETS.info(target)["summary"],
        "nir_schema": {"1.0.4": "1.0.4: no v_reset; every LIF and IF node resets by subtracting its threshold",
                       "xylo": "none: the file is Xylo Audio 2's specification, the keyword arguments of Rockpool's "
                       "XyloSim.from_specification; input counts per channel and step, flattened (C * H * W)"}.get(
                           TARGETS[target].schema, "1.0.6 or newer: neurons reset to v_reset"),
    }
    if TARGETS[target].chip:
        meta["chip"] = (f"{TARGETS[target].chip}: weights and thresholds are the chip's integers; each IF "
                        "node's membrane is kept at or above -v_threshold (Sinabs' min_v_mem), as on the chip")
    meta["json"] = json.dumps(meta)
    return meta


def read_metadata(graph):
    """The graph's metadata in plain Python types (``nir.read`` gives bytes and NumPy values)."""
    raw = graph.metadata.get("json")
    return json.loads(raw) if raw is not None else dict(graph.metadata)
