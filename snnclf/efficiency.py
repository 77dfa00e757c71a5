"""Operation counts and an energy estimate: per synaptic layer, the synaptic operations (SOPs)
its input spikes cause against the multiply-accumulates (MACs) the same layer does as a dense ANN,
and the firing rate of every spiking layer.

No snnTorch or tonic function counts these; the counting follows SpikingJelly's operation
counter: a layer whose input is spikes does one accumulate per input spike per synapse it drives
(its fan-out; for convolutions counted exactly, borders included), over all time steps; a layer whose input is real-valued (the first layer under
direct encoding) does dense MACs at every step. Energy uses the commonly quoted 45 nm CMOS
figures (Horowitz, ISSCC 2014): 0.9 pJ per 32-bit accumulate, 4.6 pJ per multiply-accumulate. It
is an estimate of arithmetic only: memory access and data movement are not counted."""
from collections import OrderedDict
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .models.neurons import SpikingLayer

E_AC_PJ = 0.9
E_MAC_PJ = 4.6


def _fan_out(layer):
    if isinstance(layer, nn.Conv2d):
        return layer.out_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
    return layer.out_features


def _macs_per_row(layer, inputs, output):
    """Dense MACs of one call on one row of the (folded) batch."""
    if isinstance(layer, nn.Conv2d):
        per_output = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        return output[0].numel() * per_output
    return layer.in_features * layer.out_features


@torch.no_grad()
def count(model, inputs):
    """Counts for ``inputs`` [T, B, ...], per sample (summed over all T), as a dict with a row per
    synaptic layer (``layers``), the firing rate per spiking layer (``rates``) and ``totals``."""
    steps, batch = inputs.shape[:2]
    layers, rates = OrderedDict(), OrderedDict()

    def synaptic(name, layer, args, output):
        x = args[0]
        rows = x.shape[0]  # T*B folded, or B when a static input ran once (stride-0 time)
        repeat = steps * batch / rows  # how many (step, sample) pairs each row stands for
        binary = bool(((x >= 0) & (x == x.round())).all())  # spikes, or event counts
        macs = _macs_per_row(layer, x, output) * rows * repeat / batch
        entry = layers.setdefault(name, {"layer": name, "type": type(layer).__name__, "spiking_input": binary,
                                         "input_spikes": 0.0, "fan_out": _fan_out(layer), "sops": 0.0,
                                         "macs_dense": 0.0})
        entry["macs_dense"] += macs
        if binary:
            spikes = float(x.sum()) * repeat / batch
            entry["input_spikes"] += spikes
            if isinstance(layer, nn.Conv2d) and layer.groups == 1:
                # exact: a spike drives only the outputs whose window holds it (fewer at borders)
                ones = x.new_ones(1, layer.in_channels, *layer.kernel_size)
                reach = F.conv2d(x.float(), ones, None, layer.stride, layer.padding, layer.dilation)
                entry["sops"] += float(reach.sum()) * layer.out_channels * repeat / batch
            else:
                entry["sops"] += spikes * entry["fan_out"]

    def spiking(name, module, args, output):
        spk = output[0]
        entry = rates.setdefault(name, {"layer": name, "neurons": spk[0, 0].numel(), "spikes": 0.0})
        entry["spikes"] += float(spk.sum()) / batch
        entry["rate"] = entry["spikes"] / (entry["neurons"] * steps)

    handles = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            handles.append(m.register_forward_hook(partial(synaptic, name)))
        elif isinstance(m, SpikingLayer):
            handles.append(m.register_forward_hook(partial(spiking, name)))
    try:
        model(inputs)
    finally:
        for h in handles:
            h.remove()
    return summarize(list(layers.values()), list(rates.values()), spiking=getattr(model, "spiking", True))


def summarize(layers, rates, spiking=True):
    """Totals and the energy estimate from per-layer counts."""
    macs_dense = sum(r["macs_dense"] for r in layers)
    sops = sum(r["sops"] for r in layers) if spiking else 0.0
    macs_snn = sum(r["macs_dense"] for r in layers if not r["spiking_input"]) if spiking else macs_dense
    return {
        "layers": layers, "rates": rates,
        "totals": {"sops": sops, "macs_snn": macs_snn, "macs_dense": macs_dense,
                   "energy_snn_uj": (sops * E_AC_PJ + macs_snn * E_MAC_PJ) * 1e-6,
                   "energy_dense_uj": macs_dense * E_MAC_PJ * 1e-6,
                   "pj_per_ac": E_AC_PJ, "pj_per_mac": E_MAC_PJ,
                   "note": "estimate: arithmetic only, 45 nm figures; memory access not counted"},
    }


def merge(parts):
    """Average per-sample counts of several batches (weights: their sizes)."""
    total = sum(n for n, _ in parts)
    first = parts[0][1]
    layers = [{**row, **{k: sum(p["layers"][i][k] * n for n, p in parts) / total
                         for k in ("input_spikes", "sops", "macs_dense")}} for i, row in enumerate(first["layers"])]
    rates = [{**row, "spikes": sum(p["rates"][i]["spikes"] * n for n, p in parts) / total,
              "rate": sum(p["rates"][i]["rate"] * n for n, p in parts) / total} for i, row in enumerate(first["rates"])]
    return summarize(layers, rates, spiking=bool(first["rates"]))


def table(counts):
    """The counts as printable lines."""
    lines = [f"{'layer':<10} {'input':<7} {'spikes in':>10} {'fan-out':>8} {'SOPs':>12} {'dense MACs':>12}"]
    for r in counts["layers"]:
        kind = "spikes" if r["spiking_input"] else "real"
        lines.append(f"{r['layer']:<10} {kind:<7} {r['input_spikes']:>10.1f} {r['fan_out']:>8} "
                     f"{r['sops']:>12,.0f} {r['macs_dense']:>12,.0f}")
    for r in counts["rates"]:
        lines.append(f"{r['layer']:<10} firing rate {r['rate']:.4f} spikes/neuron/step ({r['spikes']:.1f} spikes)")
    t = counts["totals"]
    if not counts["rates"]:
        lines.append(f"per sample: {t['macs_dense']:,.0f} MACs (a non-spiking model); energy estimate "
                     f"{t['energy_dense_uj']:.3f} uJ ({t['pj_per_mac']} pJ/MAC, 45 nm; arithmetic only)")
        return lines
    lines.append(f"per sample: {t['sops']:,.0f} SOPs + {t['macs_snn']:,.0f} MACs as an SNN, "
                 f"{t['macs_dense']:,.0f} MACs as a dense ANN; energy estimate {t['energy_snn_uj']:.3f} uJ "
                 f"vs {t['energy_dense_uj']:.3f} uJ ({t['pj_per_ac']} pJ/AC, {t['pj_per_mac']} pJ/MAC, 45 nm; "
                 "arithmetic only)")
    return lines
