"""Operation counts and an energy estimate of what a network computes per sample, against the
same layers run once as a dense ANN.

No snnTorch or tonic function counts these; the counting follows SpikingJelly's operation
counter and counts what each network actually computes:

- a layer whose input is spikes does one accumulate per input spike per synapse it drives (its
  fan-out; for convolutions counted exactly, borders included), over all time steps: SOPs;
- a layer whose input is real-valued does dense multiply-accumulates (MACs) each time it runs:
  once per sample when its input is the same at every step (the first layer under direct
  encoding, or every layer of an ANN, which then runs once), at every step otherwise;
- every spiking neuron updates its membrane at every step (``beta * U + I``), counted as one MAC
  per neuron and step; the threshold comparison and the reset are not counted (as an ANN's ReLU
  is not).

The ANN side of the comparison is the same layers computing dense MACs once per sample (what an
ANN of that architecture does on a static image). Energy uses the commonly quoted 45 nm CMOS
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
    """Counts for ``inputs`` [T, B, ...], per sample, as a dict with a row per synaptic layer
    (``layers``), the firing rate per spiking layer (``rates``) and ``totals``."""
    steps, batch = inputs.shape[:2]
    spiking_model = getattr(model, "spiking", True)
    layers, rates = OrderedDict(), OrderedDict()

    def synaptic(name, layer, args, output):
        x = args[0]
        rows = x.shape[0]  # T*B folded, or B when a static input ran once (stride-0 time)
        repeat = steps * batch / rows  # how many (step, sample) pairs each row stands for
        binary = bool(((x >= 0) & (x == x.round())).all())  # spikes, or event counts
        per_row = _macs_per_row(layer, x, output)
        entry = layers.setdefault(name, {"layer": name, "type": type(layer).__name__, "spiking_input": binary,
                                         "input_spikes": 0.0, "fan_out": _fan_out(layer), "sops": 0.0,
                                         "macs": 0.0, "macs_ann": 0.0})
        entry["macs_ann"] = per_row  # one dense pass per sample
        if not (binary and spiking_model):
            entry["macs"] += per_row * rows / batch  # as often as the layer actually ran
        if binary and spiking_model:
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
    return summarize(list(layers.values()), list(rates.values()), steps, spiking=spiking_model)


def summarize(layers, rates, time_steps, spiking=True):
    """Totals and the energy estimate from per-layer counts."""
    sops = sum(r["sops"] for r in layers)
    macs = sum(r["macs"] for r in layers)
    updates = sum(r["neurons"] for r in rates) * time_steps if spiking else 0
    macs_ann = sum(r["macs_ann"] for r in layers)
    return {
        "layers": layers, "rates": rates,
        "totals": {"time_steps": time_steps, "spiking": spiking, "sops": sops, "macs": macs,
                   "neuron_updates": updates, "macs_ann": macs_ann,
                   "energy_uj": (sops * E_AC_PJ + (macs + updates) * E_MAC_PJ) * 1e-6,
                   "energy_ann_uj": macs_ann * E_MAC_PJ * 1e-6,
                   "pj_per_ac": E_AC_PJ, "pj_per_mac": E_MAC_PJ,
                   "note": "estimate: arithmetic only, 45 nm figures; memory access not counted; "
                           "the ANN side runs the same layers once per sample"},
    }


def merge(parts):
    """Average per-sample counts of several batches (weights: their sizes)."""
    total = sum(n for n, _ in parts)
    first = parts[0][1]
    layers = [{**row, **{k: sum(p["layers"][i][k] * n for n, p in parts) / total
                         for k in ("input_spikes", "sops", "macs", "macs_ann")}}
              for i, row in enumerate(first["layers"])]
    rates = [{**row, "spikes": sum(p["rates"][i]["spikes"] * n for n, p in parts) / total,
              "rate": sum(p["rates"][i]["rate"] * n for n, p in parts) / total} for i, row in enumerate(first["rates"])]
    return summarize(layers, rates, first["totals"]["time_steps"], spiking=first["totals"]["spiking"])


def measure(model, dataset, encode, batch_size, device, samples=512):
    """Per-sample SOPs, MACs, firing rates and the energy estimate over the first ``samples`` of
    ``dataset`` (test samples for ``snnclf eval``, validation samples when ``snnclf tune``
    selects networks), encoded by ``encode`` [B, ...] -> [T, B, ...]."""
    parts = []
    for start in range(0, min(samples, len(dataset)), batch_size):
        x, _ = dataset[list(range(start, min(start + batch_size, samples, len(dataset))))]
        parts.append((len(x), count(model, encode(x.to(device)))))
    counts = merge(parts)
    counts["samples"] = sum(n for n, _ in parts)
    return counts


def table(counts):
    """The counts as printable lines."""
    t = counts["totals"]
    lines = [f"{'layer':<10} {'input':<7} {'spikes in':>10} {'fan-out':>8} {'SOPs':>12} {'MACs':>12} "
             f"{'ANN MACs':>12}"]
    for r in counts["layers"]:
        kind = "spikes" if r["spiking_input"] and t["spiking"] else "real"
        lines.append(f"{r['layer']:<10} {kind:<7} {r['input_spikes']:>10.1f} {r['fan_out']:>8} "
                     f"{r['sops']:>12,.0f} {r['macs']:>12,.0f} {r['macs_ann']:>12,.0f}")
    for r in counts["rates"]:
        lines.append(f"{r['layer']:<10} firing rate {r['rate']:.4f} spikes/neuron/step ({r['spikes']:.1f} spikes)")
    units = f"{t['pj_per_ac']} pJ/AC, {t['pj_per_mac']} pJ/MAC, 45 nm; arithmetic only"
    if not t["spiking"]:
        lines.append(f"per sample at T={t['time_steps']}: {t['macs']:,.0f} MACs (a non-spiking model; "
                     f"{t['macs_ann']:,.0f} in one pass); energy estimate {t['energy_uj']:.3f} uJ ({units})")
        return lines
    lines.append(f"per sample at T={t['time_steps']}: {t['sops']:,.0f} SOPs + {t['macs']:,.0f} MACs + "
                 f"{t['neuron_updates']:,.0f} neuron updates (1 MAC each) = {t['energy_uj']:.3f} uJ; "
                 f"the same layers as an ANN, run once: {t['macs_ann']:,.0f} MACs = "
                 f"{t['energy_ann_uj']:.3f} uJ ({units})")
    return lines
