"""A ``--chip xylo`` run as Xylo Audio 2's specification: the arrays Rockpool's
``XyloSim.from_specification`` takes (and, with SynSense's driver, ``config_from_specification``
writes to the chip), in one ``.npz`` file.

Why not NIR: Xylo's neuron decays by bit shifts, floors, saturates at 16 bits and delays each
layer after the first by a step, none of which a NIR node says; Rockpool's NIR importer gives
float neurons that its Xylo mapper cannot take (``LIFNeuronTorch`` has no graph), and its
quantizers round the trained integers again (``channel_quantize`` also drops hidden biases). The
specification is what the chip holds, integer for integer, so nothing is rounded twice.

The network (fully connected, checked by :mod:`snnclf.chips`) maps as Xylo lays it out: the first
layer's weights are ``weights_in`` [inputs, hidden]; each later hidden layer's are a block of
``weights_rec`` [hidden, hidden] (the chip's recurrent weights, which is why it sees the spikes a
step late); the last layer's are ``weights_out`` [hidden, outputs], from the last hidden block.
"""
import json

import numpy as np
from torch import nn
from torch.nn import functional as F

from ..models.layers import ChannelSum
from ..models.neurons import ChipLayer
from ..models.quant import Quantized, chip_values


def layers(model):
    """(weighted layer, neuron) pairs of the ``--chip xylo`` network ``model``, in order (that the
    run is one is :func:`snnclf.export.nir.check_chip`'s)."""
    return list(zip([m for m in model.modules() if isinstance(m, Quantized)],
                    [m.cell for m in model.modules() if isinstance(m, ChipLayer)]))


def input_steps(model):
    """What the host does to the input before the chip, in order: ``"psum"`` (its channels summed,
    ``PSUM`` in --arch) and ``k`` (its counts summed over k x k windows, ``SPk``)."""
    steps = []
    for module in model.modules():
        if isinstance(module, Quantized):
            break
        if isinstance(module, ChannelSum):
            steps.append("psum")
        elif isinstance(module, nn.AvgPool2d):
            k = module.kernel_size
            steps.append(k if isinstance(k, int) else k[0])
    return steps


def host_input(frames, steps):
    """What the chip receives from event ``frames`` [T, N, C, H, W]: the host's ``steps`` done
    (:func:`input_steps`), flattened to [T, N, C * H * W]."""
    x = frames.flatten(0, 1)
    for step in steps:
        x = x.sum(1, keepdim=True) if step == "psum" else F.avg_pool2d(x, step, divisor_override=1)
    return x.unflatten(0, frames.shape[:2]).flatten(2)


def specification(model, metadata):
    """The Xylo Audio 2 specification of ``model`` (numpy arrays, integers) and its metadata (a
    JSON text under ``snnclf_metadata``, with what the host does to the input)."""
    pairs = layers(model)
    metadata = {**metadata, "input_steps": input_steps(model),
                "input_layout": "[T, C * H * W] integer event counts per step, after the host's input_steps, in "
                "order: 'psum' sums the channels (polarities) into one, k sums k x k windows; Xylo caps them at 15"}
    hidden, out_layer = pairs[:-1], pairs[-1][0]
    sizes = [layer.out_features for layer, _ in hidden]
    total, starts = sum(sizes), np.cumsum([0] + sizes)
    n_in = pairs[0][0].in_features
    spec = {"weights_in": np.zeros((n_in, total), np.int64), "weights_rec": np.zeros((total, total), np.int64),
            "weights_out": np.zeros((total, out_layer.out_features), np.int64)}
    thresholds, dash_syn, dash_mem = [], [], []
    for i, (layer, cell) in enumerate(pairs):
        w = chip_values(layer).numpy().astype(np.int64).T  # [inputs, outputs]
        if i == 0:
            spec["weights_in"][:, starts[0]:starts[1]] = w
        elif i < len(hidden):
            spec["weights_rec"][starts[i - 1]:starts[i], starts[i]:starts[i + 1]] = w
        else:
            spec["weights_out"][starts[-2]:starts[-1]] = w
        thr = int(cell.chip_threshold()[0].detach())  # within 16 bits: the neuron holds it there
        n = layer.out_features
        thresholds.append(np.full(n, thr))
        dash_syn.append(np.full(n, cell.dash_syn))
        dash_mem.append(np.full(n, cell.dash_mem))
    spec.update(threshold=np.concatenate(thresholds[:-1]), threshold_out=thresholds[-1],
                dash_syn=np.concatenate(dash_syn[:-1]), dash_syn_out=dash_syn[-1],
                dash_mem=np.concatenate(dash_mem[:-1]), dash_mem_out=dash_mem[-1],
                bias=np.zeros(total, np.int64), bias_out=np.zeros(out_layer.out_features, np.int64),
                weight_shift_in=np.array(0), weight_shift_rec=np.array(0), weight_shift_out=np.array(0))
    spec["snnclf_metadata"] = np.array(json.dumps(metadata))
    return spec


def write(path, spec):
    """``spec`` as one ``.npz`` file at ``path`` exactly (``np.savez`` given a name adds ``.npz``)."""
    with open(path, "wb") as f:
        np.savez(f, **spec)


def read(path):
    """(the arrays ``XyloSim.from_specification`` takes, the metadata) of a written file."""
    with np.load(path) as f:
        spec = {k: f[k] for k in f.files}
    metadata = json.loads(str(spec.pop("snnclf_metadata")))
    for key in ("weight_shift_in", "weight_shift_rec", "weight_shift_out"):
        spec[key] = int(spec[key])
    return spec, metadata

