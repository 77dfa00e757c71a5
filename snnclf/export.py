"""``snnclf export``: a trained network written for other tools, then read back and run there.

Spiking networks go to NIR, the Neuromorphic Intermediate Representation (the ``nir`` package,
hdf5), which snnTorch, Norse, SpikingJelly, Sinabs, Rockpool and Lava-DL read, and through them
neuromorphic chips. Non-spiking baselines go to ONNX. Either way the written file is read back
and run by another framework (snnTorch's ``import_from_nir``, or onnxruntime) on test samples
of the run's data set, and its outputs are compared with snnclf's own network; the file is put
in place only when they agree.

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
import importlib
import io
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import snntorch as snn
import torch
from torch import nn

from .builders import check_fits, load_data, load_model, make_encoder
from .config import EVAL_SEED, LOG_DIR, SAVE_DIR, RunConfig
from .data import make_splits
from .errors import UsageError
from .losses import predict as readout
from .models.layers import FlattenLinear, Folded, TimeDropout
from .models.neurons import AdaptiveLeaky, SpikingLayer
from .runs import checkpoint_path, load_checkpoint, open_run, write_json
from .utils import seeded

DT = 1e-4  # seconds per step: snnTorch's export_nir and import_nir both use it
TAU_NO_LEAK = DT * 1e12  # the time constant written for beta = 1 (no leak)
FORMATS = ("nir", "onnx")
AGREEMENT = 0.999  # the least share of equal outputs (and of equal predictions) accepted
EXTRA = "pip install 'snnclf[export]'"


def _need(module, what):
    """Import ``module``, or say in one line which install brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{what} needs the {module} package: {EXTRA}") from None


# ---------------------------------------------------------------------------------------- NIR

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
    nir = _need("nir", "snnclf export --format nir")
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
    nir = _need("nir", "snnclf export --format nir")
    _need("nirtorch", "snnclf export --format nir")
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


# --------------------------------------------------------------------------------------- ONNX

def onnx_network(model):
    """The non-spiking ``model`` as a plain per-image network [N, C, H, W] -> logits [N, K]:
    its layers in order, without the time dimension (over T frames its readout averages the
    logits) and without dropout."""
    layers = [layer for stage in model.children() if not isinstance(stage, TimeDropout) for layer in stage]
    return nn.Sequential(*layers).eval()  # eval at the top too: the exporter reads the top's mode


def write_onnx(net, example, path):
    """``net`` as an ONNX file with a free batch size. The TorchScript-based exporter: the
    torch.export-based one needs one more package (onnxscript) for these plain feed-forward
    networks, and gives them the same operators."""
    _need("onnx", "snnclf export --format onnx")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation notice, on every call
        torch.onnx.export(net, (example,), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)


def onnxruntime_logits(path, inputs):
    """Logits [T, N, K] of the ONNX file ``path`` run by onnxruntime on ``inputs`` [T, N, ...]."""
    ort = _need("onnxruntime", "snnclf export --format onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    T, N = inputs.shape[:2]
    flat = inputs.reshape(T * N, *inputs.shape[2:]).contiguous().numpy()
    out = session.run(["logits"], {"input": flat})[0]
    return torch.from_numpy(out).reshape(T, N, -1)


# ------------------------------------------------------------------------------- the command

@dataclass
class Check:
    """How the exported file, run elsewhere, compares with snnclf's network on ``samples``."""
    framework: str
    samples: int
    outputs: int  # compared values: (sample, step, neuron) spikes, or logits
    equal_outputs: float  # share of identical output spikes (NIR) or of logits within 1e-4 (ONNX)
    equal_predictions: float
    accuracy_snnclf: float
    accuracy_other: float
    max_logit_difference: float = None  # ONNX only

    @property
    def passed(self):
        return self.equal_outputs >= AGREEMENT and self.equal_predictions >= AGREEMENT


def default_format(model):
    return "nir" if model.spiking else "onnx"


def run_export(run=None, checkpoint=None, fmt=None, out=None, save_dir=SAVE_DIR, log_dir=LOG_DIR,
               samples=1000, data_dir=None, seed=EVAL_SEED):
    """Export a run's ``best.pt`` (or ``checkpoint``) as ``fmt`` (default: nir for spiking
    models, onnx for the others) to ``out`` (default: beside the checkpoint), check it on the
    first ``samples`` test samples, and write the check to ``<log_dir>/<run>/export_<fmt>.json``.
    Returns that record. The file is put in place only if the check passes; an existing
    ``out`` given by the user is never replaced."""
    path = checkpoint_path(run, checkpoint, save_dir)
    ckpt = load_checkpoint(path)
    cfg = RunConfig.from_dict(ckpt["config"])
    model = load_model(ckpt, torch.device("cpu"))
    fmt = fmt or default_format(model)
    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "nir" and not model.spiking:
        raise UsageError(f"run {cfg.run} is a non-spiking baseline ({cfg.model}); NIR describes spiking "
                         "networks: use --format onnx")
    if fmt == "onnx" and model.spiking:
        raise UsageError(f"run {cfg.run} is spiking ({cfg.model}); ONNX has no spiking neurons: use "
                         "--format nir")
    if samples < 1:
        raise UsageError("--samples must be at least 1: the export is always checked")
    target = Path(out) if out else path.with_name(f"{cfg.run}.{fmt}")
    if out and target.exists():
        raise UsageError(f"{target} exists: remove it or choose another --out")
    if not target.parent.is_dir():
        raise UsageError(f"no folder {target.parent} for --out: create it first")
    in_shape = tuple(ckpt["model_kwargs"]["in_shape"])

    # check the layers before the data set is loaded: a refusal costs nothing
    metadata = {"snnclf_run": cfg.run, "dataset": cfg.dataset, "time_steps": cfg.time_steps,
                "encoding": cfg.encoding or "", "class_names": list(ckpt["class_names"])}
    if fmt == "nir":
        metadata.update(dt=DT, readout="the class with the most output spikes over the time steps; "
                        "ties: the highest mean membrane of the output layer")
        graph = nir_graph(model, in_shape, metadata)
        _need("nirtorch", "snnclf export --format nir")
    else:
        net = onnx_network(model)
        _need("onnxruntime", "snnclf export --format onnx")

    data = load_data(cfg, data_dir=data_dir)
    check_fits(ckpt, data, path, cfg.dataset)
    test = make_splits(data, cfg.val_fraction, cfg.subset)["test"]
    n = min(samples, len(test))
    x, y = test[list(range(n))]
    with seeded(seed):
        inputs = make_encoder(cfg)(x)  # [T, N, ...], as snnclf eval makes them
    with torch.no_grad():
        spk, mem = model(inputs)
    ours = readout(spk, mem)

    tmp = target.with_name(f".{target.name}.check")
    try:
        check = (_check_nir(graph, tmp, inputs, spk, ours, y) if fmt == "nir"
                 else _check_onnx(net, tmp, inputs, mem, ours, y))
        if not check.passed:
            raise UsageError(f"the exported {fmt} file disagrees with snnclf's network "
                             f"({100 * check.equal_outputs:.2f}% equal outputs, "
                             f"{100 * check.equal_predictions:.2f}% equal predictions on {n} samples; "
                             f"{100 * AGREEMENT:.1f}% needed): nothing was written")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)

    record = {"run": cfg.run, "checkpoint": str(path), "format": fmt, "file": str(target),
              "bytes": target.stat().st_size, "dataset": cfg.dataset, "time_steps": cfg.time_steps,
              "seed": seed, "check": {**asdict(check), "passed": check.passed}}
    if fmt == "nir":
        record.update(dt=DT, nodes=list(graph.nodes))
    log = open_run(cfg.run, save_dir, log_dir).log_dir
    if log.is_dir():
        write_json(log / f"export_{fmt}.json", record)
    return record


def _accuracy(predicted, labels):
    return float((predicted == labels).float().mean())


def _check_nir(graph, path, inputs, spk, ours, labels):
    """Write ``graph`` to ``path``, run it through snnTorch, and compare with snnclf's output
    spikes ``spk`` and predictions ``ours``."""
    nir = _need("nir", "snnclf export --format nir")
    nir.write(str(path), graph)
    o_spk, o_mem = snntorch_outputs(path, inputs)
    theirs = readout(o_spk, o_mem)
    return Check(f"snnTorch {snn.__version__} (import_from_nir)", len(labels), spk.numel(),
                 float((o_spk == spk).float().mean()), _accuracy(theirs, ours),
                 _accuracy(ours, labels), _accuracy(theirs, labels))


def _check_onnx(net, path, inputs, logits, ours, labels):
    """Write ``net`` to ``path`` as ONNX, run it in onnxruntime, and compare with snnclf's
    ``logits`` [T, N, K] and predictions ``ours``."""
    write_onnx(net, inputs[0, :1].contiguous(), path)
    if inputs.stride(0) == 0:  # direct input: every step is the same image, run it once
        inputs, logits = inputs[:1], logits[:1]
    theirs_logits = onnxruntime_logits(path, inputs)
    theirs = theirs_logits.mean(0).argmax(1)
    ort = _need("onnxruntime", "snnclf export --format onnx")
    gap = (theirs_logits - logits).abs()
    return Check(f"onnxruntime {ort.__version__}", len(labels), logits.numel(),
                 float((gap <= 1e-4).float().mean()), _accuracy(theirs, ours),
                 _accuracy(ours, labels), _accuracy(theirs, labels), float(gap.max()))


def format_export(r):
    """What ``snnclf export`` prints."""
    c = r["check"]
    lines = [f"wrote {r['file']} ({r['format'].upper()}, {r['bytes']:,} bytes) from {r['checkpoint']}"]
    if r["format"] == "nir":
        lines.append(f"  graph: {' -> '.join(r['nodes'])}; LIF time step dt = {r['dt']:g} s")
    lines.append(f"checked with {c['framework']} on {c['samples']:,} test samples of {r['dataset']} "
                 f"(T={r['time_steps']}):")
    what = "output spikes identical" if r["format"] == "nir" else "logits within 1e-4"
    lines.append(f"  {what}: {100 * c['equal_outputs']:.2f}% of {c['outputs']:,}"
                 + (f" (largest difference {c['max_logit_difference']:.2e})" if c["max_logit_difference"] is not None else ""))
    lines.append(f"  same predicted class: {100 * c['equal_predictions']:.2f}% of {c['samples']:,} samples "
                 f"(accuracy: snnclf {100 * c['accuracy_snnclf']:.2f}%, exported {100 * c['accuracy_other']:.2f}%)")
    return "\n".join(lines)
