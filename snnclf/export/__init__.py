"""``snnclf export``: a trained network written for other tools, then read back and run there.

Spiking networks go to NIR, the Neuromorphic Intermediate Representation (the ``nir`` package,
hdf5; :mod:`.nir`), in the form of a target (``--target``) that the tools reading it run
exactly. Non-spiking baselines go to ONNX (:mod:`.onnx`). Either way the written file is read
back and run by other frameworks (each NIR consumer that is installed, :mod:`.consumers`; or
onnxruntime) on test samples of the run's data set, and its outputs are compared with snnclf's
own network; the file is put in place only when every one of them agrees.
"""
import inspect
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..builders import check_fits, load_data, make_encoder, open_trained
from ..config import EVAL_SEED, LOG_DIR, SAVE_DIR
from ..data import is_event_dataset
from ..data.encoders import ENCODERS
from ..errors import UsageError, file_above, write_error
from ..losses import predict as readout
from ..models.quant import output_scale
from ..runs import RunLock, write_json
from ..utils import seeded
from . import consumers, envs, nir as nir_backend, onnx as onnx_backend, xylo as xylo_backend
from .consumers import list_consumers  # noqa: F401 -- the CLI lists the consumers from here
from .nir import TARGETS  # noqa: F401 -- the CLI reads the --target choices from here

FORMATS = ("nir", "onnx")
AGREEMENT = 0.999  # the least share of equal outputs (and of equal predictions) accepted


@dataclass
class Check:
    """How the exported file, run by one framework, compares with snnclf's network on ``samples``."""
    framework: str
    samples: int
    outputs: int  # compared values: (sample, step, neuron) spikes, or logits
    equal_outputs: float  # share of identical output spikes (NIR) or of logits within 1e-4 (ONNX)
    equal_predictions: float
    accuracy_snnclf: float
    accuracy_other: float
    max_logit_difference: float = None  # ONNX only
    tool: str = ""  # the consumer's name (NIR)
    convention: dict = None  # how the tool was run: dt, batch dimension, what it needed (NIR)
    max_membrane_difference: float = None  # output membrane, where the tool keeps it (NIR)

    @property
    def passed(self):
        return self.equal_outputs >= AGREEMENT and self.equal_predictions >= AGREEMENT


@dataclass
class Reference:
    """snnclf's own network on the first test samples: what every exported file is compared with."""
    inputs: torch.Tensor  # [T, N, ...], as snnclf eval encodes them
    spikes: torch.Tensor  # output spikes [T, N, K]; for a baseline, zeros
    membrane: torch.Tensor  # output membrane [T, N, K] (before its reset), or a baseline's logits
    predicted: torch.Tensor  # [N]
    labels: torch.Tensor  # [N]


def reference(trained, samples, data_dir=None, seed=EVAL_SEED):
    """The :class:`Reference` of the opened run ``trained`` (:func:`~snnclf.builders.open_trained`)
    on its first ``samples`` test samples, the input encoded with ``seed``."""
    cfg = trained.cfg
    data = load_data(cfg, data_dir=data_dir, test_only=True)
    check_fits(trained.checkpoint, data, trained.path, cfg.dataset)
    test = data.test
    x, y = test[list(range(min(samples, len(test))))]
    with seeded(seed):
        inputs = make_encoder(cfg)(x)
    with torch.no_grad():
        spk, mem = trained.model(inputs)
    return Reference(inputs, spk, mem, readout(spk, mem), y)


def default_format(model):
    return "nir" if model.spiking else "onnx"


def run_export(run=None, checkpoint=None, format=None, out=None, save_dir=SAVE_DIR, log_dir=LOG_DIR,
               samples=1000, data_dir=None, seed=EVAL_SEED, target=nir_backend.DEFAULT_TARGET, check=None,
               envs_dir=envs.DEFAULT_ROOT):
    """Export a run's ``best.pt`` (or ``checkpoint``) as ``format`` (default: nir for spiking
    models, onnx for the others) to ``out`` (default: beside the checkpoint), check it on the
    first ``samples`` test samples, and write the check to ``<log_dir>/<run>/export_<fmt>.json``.
    A NIR file is written in the form of ``target`` and run by each consumer in ``check``
    (default: those of the target's tools that are installed, and those that run in an
    environment of their own, built once under ``envs_dir``). Returns that record. The file is
    put in place only if every check passes; an existing ``out`` given by the user is never replaced."""
    trained = open_trained(run, checkpoint, save_dir, log_dir)
    path, cfg, model = trained.path, trained.cfg, trained.model
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
    tools = _tools(fmt, target, check)
    spec = fmt == "nir" and not nir_backend.TARGETS.lookup(target, "--target").is_nir  # Xylo's specification
    target_path = Path(out) if out else path.with_name(f"{cfg.run}.{'xylo.npz' if spec else fmt}")
    if out and target_path.exists():
        raise UsageError(f"{target_path} exists: remove it or choose another --out")
    if file_above(target_path):
        raise write_error(target_path, None, place="another --out")
    if not target_path.parent.is_dir():
        raise UsageError(f"no folder {target_path.parent} for --out: create it first")
    in_shape = trained.in_shape

    # check the layers before the data set is loaded: a refusal costs nothing
    if fmt == "nir":
        encoding_text = " ".join(inspect.getdoc(ENCODERS[cfg.encoding]).split("\n\n")[0].split())
        metadata = nir_backend.describe(cfg.run, cfg.dataset, in_shape, cfg.time_steps, cfg.encoding, encoding_text,
                                        is_event_dataset(cfg.dataset), trained.class_names, target)
        nir_backend.check_chip(target, cfg.chip)  # a chip's run to its target only, and only a chip's run there
        if spec:
            graph = xylo_backend.specification(model, metadata)
        else:
            graph = nir_backend.nir_graph(model, in_shape, metadata, target)
            nir_backend.require("nirtorch")
    else:
        net = onnx_backend.onnx_network(model)
        onnx_backend.require("onnxruntime")

    ref = reference(trained, samples, data_dir, seed)
    inputs, spk, mem, ours, y, n = ref.inputs, ref.spikes, ref.membrane, ref.predicted, ref.labels, len(ref.labels)
    mem = mem * output_scale(model)  # a --chip run's file holds integers: its membrane is in the chip's units

    tmp = target_path.with_name(f".{target_path.name}.check")
    try:
        if fmt == "nir":
            if spec:
                xylo_backend.write(tmp, graph)
            else:
                nir_backend.write(tmp, graph, target)
            checks = [check_nir(tool, tmp, inputs, spk, mem, ours, y, envs_dir) for tool in tools]
        else:
            checks = [_check_onnx(net, tmp, inputs, mem, ours, y)]
        failed = [c for c in checks if not c.passed]
        if failed:
            raise UsageError(f"the exported {fmt} file disagrees with snnclf's network: "
                             + "; ".join(_failure(c, n) for c in failed) + ": nothing was written")
        record = {"run": cfg.run, "checkpoint": str(path), "format": fmt, "file": str(target_path),
                  "bytes": tmp.stat().st_size, "dataset": cfg.dataset, "time_steps": cfg.time_steps,
                  "seed": seed, "checks": [{**asdict(c), "passed": c.passed} for c in checks]}
        if spec:
            record.update(format="xylo", target=target, form=nir_backend.TARGETS.info(target)["summary"],
                          arrays={k: list(v.shape) for k, v in graph.items() if k != "snnclf_metadata"})
        elif fmt == "nir":
            record.update(target=target, form=nir_backend.TARGETS.info(target)["summary"], dt=nir_backend.DT,
                          nodes=list(graph.nodes))
        log = trained.run.log_dir
        with RunLock(trained.run):  # the record first: a file is put in place only with its check kept
            if log.is_dir():
                write_json(log / f"export_{record['format']}.json", record)
            if out and target_path.exists():
                raise UsageError(f"{target_path} appeared while the check ran: remove it or choose another --out")
            os.replace(tmp, target_path)
    finally:
        tmp.unlink(missing_ok=True)
    return record


def _tools(fmt, target, check):
    """The NIR consumers that check the file: those named by ``check``, each installed, or the
    installed ones among the target's tools. Refused in one line before anything is read."""
    if fmt != "nir":
        if check or target != nir_backend.DEFAULT_TARGET:
            raise UsageError("--target and --check apply to --format nir; an ONNX file is checked by onnxruntime")
        return []
    form = nir_backend.TARGETS.lookup(target, "--target")
    if check:
        for tool in check:
            consumers.CONSUMERS.lookup(tool, "--check")
        # the tools that pin nir 1.0.4, and Xylo's, read their targets' files only; the others, nir >= 1.0.6's
        readers = set(nir_backend.TARGETS.info(target)["consumers"])
        wrong = [t for t in check if (t not in readers if form.schema != "current" else consumers.CONSUMERS.info(t)["env"])]
        if wrong:
            raise UsageError(f"--check {' '.join(wrong)}: --target {target}'s file is read by "
                             + (", ".join(sorted(readers)) if form.schema != "current" else
                                "the tools of nir 1.0.6 and newer, not by Sinabs, Speck's or Rockpool's software")
                             + ": check it with those, or choose the target of the tool")
        missing = [t for t in check if not consumers.installed(t) and not consumers.CONSUMERS.info(t)["env"]]
        if missing:
            raise UsageError(f"--check {' '.join(missing)}: not installed here ("
                             + "; ".join(f"{t}: {_install(t)}" for t in missing) + ")")
        return list(dict.fromkeys(check))
    return [t for t in nir_backend.TARGETS.info(target)["consumers"]
            if consumers.installed(t) or consumers.CONSUMERS.info(t)["env"]]


def _install(tool):
    info = consumers.CONSUMERS.info(tool)
    return f"pip install --no-deps {' '.join(info['install'])}" if info["install"] else f"pip install {info['module']}"


def _failure(check, n):
    error = (check.convention or {}).get("error")
    if error:
        return f"{check.framework} cannot run it ({error})"
    return (f"{check.framework} gives {100 * check.equal_outputs:.2f}% identical outputs and "
            f"{100 * check.equal_predictions:.2f}% equal predictions on {n} samples ({100 * AGREEMENT:.1f}% needed)")


def _accuracy(predicted, labels):
    return float((predicted == labels).float().mean())


def compare(tool, outputs, spk, mem, ours, labels):
    """The :class:`Check` of consumer ``tool``'s :class:`~.consumers.Outputs` against snnclf's
    output spikes ``spk`` and membrane ``mem`` [T, N, K] and predictions ``ours`` [N]. A tool
    that keeps no membrane breaks ties between equal spike counts towards the lowest class."""
    o_spk, o_mem = outputs.spikes, outputs.membrane
    theirs = readout(o_spk, o_mem if o_mem is not None else torch.zeros_like(o_spk))
    same = o_spk.shape == spk.shape
    return Check(_named(tool), len(labels), spk.numel(),
                 float((o_spk == spk).float().mean()) if same else 0.0, _accuracy(theirs, ours),
                 _accuracy(ours, labels), _accuracy(theirs, labels), tool=tool, convention=outputs.convention,
                 max_membrane_difference=(float((o_mem - mem).abs().max()) if o_mem is not None and same else None))


def check_nir(tool, path, inputs, spk, mem, ours, labels, envs_dir=envs.DEFAULT_ROOT):
    """Run the NIR file ``path`` in consumer ``tool`` (here where it is installed, else in its own
    environment under ``envs_dir``) and compare it with snnclf's outputs; an error of the tool's
    is a failed check that names it."""
    python = envs.python_for(tool, envs_dir)  # a build that fails is the user's one line, not the tool's
    try:
        if python == sys.executable:
            outputs = consumers.run(tool, path, inputs, nir_backend.DT)
        else:
            outputs = envs.run_in(python, tool, path, inputs, nir_backend.DT)
    except Exception as err:  # the tool cannot read or run the file: its error is the finding
        return Check(_named(tool), len(labels), spk.numel(), 0.0, 0.0, _accuracy(ours, labels), 0.0, tool=tool,
                     convention={"error": consumers.error_line(err)})
    there = outputs.convention.pop("version", None)  # the version installed in the tool's own environment
    check = compare(tool, outputs, spk, mem, ours, labels)
    if there:
        check.framework = f"{tool} {there}"
    return check


def _named(tool):
    """The tool and its installed version, as a check names it."""
    return f"{tool} {consumers.version(tool)}".strip()


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


def _convention(conv):
    """How a tool was run, in words: ' (dt 0.0001 s, one sample at a time; a note)'."""
    if not conv or "dt" not in conv:
        return ""
    batch = "with a batch dimension" if conv.get("batch") else "one sample at a time"
    return f" (dt {conv['dt']:g} s, {batch}" + (f"; {conv['note']}" if conv.get("note") else "") + ")"


def format_export(r):
    """What ``snnclf export`` prints: the file, then one block per framework that ran it."""
    kind = "Xylo Audio 2 specification" if r["format"] == "xylo" else r["format"].upper()
    lines = [f"wrote {r['file']} ({kind}, {r['bytes']:,} bytes) from {r['checkpoint']}"]
    if r["format"] == "nir":
        lines.append(f"  graph: {' -> '.join(r['nodes'])}; LIF time step dt = {r['dt']:g} s; target {r['target']}")
    if r["format"] == "xylo":
        lines.append("  " + ", ".join(f"{k} {'x'.join(map(str, v)) or 'scalar'}" for k, v in r["arrays"].items()
                                      if k.startswith(("weights", "threshold"))) + f"; target {r['target']}")
    first = r["checks"][0]
    lines.append(f"checked on {first['samples']:,} test samples of {r['dataset']} (T={r['time_steps']}) with:")
    what = "logits within 1e-4" if r["format"] == "onnx" else "output spikes identical"
    for c in r["checks"]:
        lines.append(f"  {c['framework']}{_convention(c.get('convention'))}:")
        lines.append(f"    {what}: {100 * c['equal_outputs']:.2f}% of {c['outputs']:,}"
                     + (f" (largest difference {c['max_logit_difference']:.2e})"
                        if c["max_logit_difference"] is not None else ""))
        lines.append(f"    same predicted class: {100 * c['equal_predictions']:.2f}% of {c['samples']:,} samples "
                     f"(accuracy: snnclf {100 * c['accuracy_snnclf']:.2f}%, exported {100 * c['accuracy_other']:.2f}%)")
    return "\n".join(lines)
