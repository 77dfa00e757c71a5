"""``snnclf export``: a trained network written for other tools, then read back and run there.

Spiking networks go to NIR, the Neuromorphic Intermediate Representation (the ``nir`` package,
hdf5; :mod:`.nir`). Non-spiking baselines go to ONNX (:mod:`.onnx`). Either way the written file
is read back and run by another framework (snnTorch's ``import_from_nir``, or onnxruntime) on
test samples of the run's data set, and its outputs are compared with snnclf's own network; the
file is put in place only when they agree.
"""
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import snntorch as snn
import torch

from ..builders import check_fits, load_data, make_encoder, open_trained
from ..config import EVAL_SEED, LOG_DIR, SAVE_DIR
from ..data import make_splits
from ..errors import UsageError
from ..losses import predict as readout
from ..runs import RunLock, write_json
from ..utils import seeded
from . import nir as nir_backend, onnx as onnx_backend

FORMATS = ("nir", "onnx")
AGREEMENT = 0.999  # the least share of equal outputs (and of equal predictions) accepted


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


def run_export(run=None, checkpoint=None, format=None, out=None, save_dir=SAVE_DIR, log_dir=LOG_DIR,
               samples=1000, data_dir=None, seed=EVAL_SEED):
    """Export a run's ``best.pt`` (or ``checkpoint``) as ``format`` (default: nir for spiking
    models, onnx for the others) to ``out`` (default: beside the checkpoint), check it on the
    first ``samples`` test samples, and write the check to ``<log_dir>/<run>/export_<fmt>.json``.
    Returns that record. The file is put in place only if the check passes; an existing
    ``out`` given by the user is never replaced."""
    trained = open_trained(run, checkpoint, save_dir, log_dir)
    path, ckpt, cfg, model = trained.path, trained.checkpoint, trained.cfg, trained.model
    fmt = format or default_format(model)
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
    in_shape = trained.in_shape

    # check the layers before the data set is loaded: a refusal costs nothing
    metadata = {"snnclf_run": cfg.run, "dataset": cfg.dataset, "time_steps": cfg.time_steps,
                "encoding": cfg.encoding or "", "class_names": trained.class_names}
    if fmt == "nir":
        metadata.update(dt=nir_backend.DT, readout="the class with the most output spikes over the time "
                        "steps; ties: the highest mean membrane of the output layer")
        graph = nir_backend.nir_graph(model, in_shape, metadata)
        nir_backend.require("nirtorch")
    else:
        net = onnx_backend.onnx_network(model)
        onnx_backend.require("onnxruntime")

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
        record = {"run": cfg.run, "checkpoint": str(path), "format": fmt, "file": str(target),
                  "bytes": tmp.stat().st_size, "dataset": cfg.dataset, "time_steps": cfg.time_steps,
                  "seed": seed, "check": {**asdict(check), "passed": check.passed}}
        if fmt == "nir":
            record.update(dt=nir_backend.DT, nodes=list(graph.nodes))
        log = trained.run.log_dir
        with RunLock(trained.run):  # the record first: a file is put in place only with its check kept
            if log.is_dir():
                write_json(log / f"export_{fmt}.json", record)
            if out and target.exists():
                raise UsageError(f"{target} appeared while the check ran: remove it or choose another --out")
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return record


def _accuracy(predicted, labels):
    return float((predicted == labels).float().mean())


def _check_nir(graph, path, inputs, spk, ours, labels):
    """Write ``graph`` to ``path``, run it through snnTorch, and compare with snnclf's output
    spikes ``spk`` and predictions ``ours``."""
    nir_backend.require("nir").write(str(path), graph)
    o_spk, o_mem = nir_backend.snntorch_outputs(path, inputs)
    theirs = readout(o_spk, o_mem)
    return Check(f"snnTorch {snn.__version__} (import_from_nir)", len(labels), spk.numel(),
                 float((o_spk == spk).float().mean()), _accuracy(theirs, ours),
                 _accuracy(ours, labels), _accuracy(theirs, labels))


def _check_onnx(net, path, inputs, logits, ours, labels):
    """Write ``net`` to ``path`` as ONNX, run it in onnxruntime, and compare with snnclf's
    ``logits`` [T, N, K] and predictions ``ours``."""
    onnx_backend.write_onnx(net, inputs[0, :1].contiguous(), path)
    if inputs.stride(0) == 0:  # direct input: every step is the same image, run it once
        inputs, logits = inputs[:1], logits[:1]
    theirs_logits = onnx_backend.onnxruntime_logits(path, inputs)
    theirs = readout(torch.zeros_like(theirs_logits), theirs_logits)  # a baseline's spikes are zeros
    ort = onnx_backend.require("onnxruntime")
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
