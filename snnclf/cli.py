"""The ``snnclf`` command line: parses flags, dispatches to a command, and turns a user's mistake
into one line on stderr with exit code 2."""
import argparse
import inspect
import json
import logging
import os
import re
import sys
from pathlib import Path

from . import __version__, sweep, tune
from .config import DEFAULTS, DEVICES, GROUPS, RunConfig, dump, resolve
from .data import CACHE_DIR, list_datasets
from .errors import Interrupted, UsageError
from .evaluate import format_results, run_eval
from .export import TARGETS as NIR_TARGETS, format_export, list_consumers, run_export
from .flags import flag_of, given, number
from .neurobench import INSTALL as NEUROBENCH_INSTALL, table as neurobench_table
from .predict import as_dict, format_prediction, run_predict
from .simulate import CHECKS as simulate_checks, format_record, simulate_events
from .train import train
from .utils import keep_freed_memory
from .viz.activations import visualize
from .viz.compare import compare
from .viz.data import visualize_data


def _default(command, name):
    """The default of argument ``name`` of ``command``: its signature is the one place a
    command's defaults are written; --help reads them there, and the CLI passes only the values
    a user gave."""
    return inspect.signature(command).parameters[name].default


def _given(args, *leave_out):
    """The flags the user gave (``None``: not given), as keyword arguments of the command."""
    return {k: v for k, v in given(vars(args)).items() if k not in ("func", "command", *leave_out)}


class Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (not the usage block) and points at --help."""

    def error(self, message):
        message = re.sub(r"argument (--[\w-]+)(/--[\w-]+)*:", r"\1:", message)  # one spelling suffices
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _add(group, name, help, default_text=None, aliases=(), parse=None, choices=None, **kwargs):
    """Add ``--name`` and its kebab twin (``--time_steps`` and ``--time-steps``), stating the default
    ``default_text``. The value stays ``None`` when the flag is not given."""
    flags = [f"--{n}" for n in (name, *aliases) for n in dict.fromkeys([n, n.replace("_", "-")])]
    kwargs = given(kwargs)
    if parse is not None:
        kwargs["type"] = parse
    if choices is not None:
        kwargs["choices"] = list(choices() if callable(choices) else choices)
    text = f"{help} (default: {default_text})".replace("%", "%%")  # argparse formats help with %
    group.add_argument(*flags, dest=name, help=text, default=None, **kwargs)


def _add_config_flags(parser, several=False, ranges=False):
    """One flag per :class:`RunConfig` field, in its --help section, from the field's declaration.
    With ``several`` (sweep, tune), a flag that takes one value takes one or more, and --run is
    left out; with ``ranges`` (tune), numbers are taken as typed, so that ``LOW:HIGH[:log]`` can
    be a range (snnclf.tune checks them)."""
    sections = {name: parser.add_argument_group(name) for name in GROUPS[1:]}
    for f in RunConfig.ordered_fields():
        spec = flag_of(f)
        if several and f.name == "run":
            continue
        nargs = "+" if several and spec.action is None and spec.nargs is None and spec.const is None else spec.nargs
        target = parser if spec.group == "preset" else sections[spec.group]
        numeric = ranges and getattr(spec.parse, "kind", None)
        _add(target, f.name, spec.help + ("; a range: LOW:HIGH or LOW:HIGH:log" if numeric else ""),
             spec.stated_default(DEFAULTS[f.name]), spec.aliases, None if numeric else spec.parse, spec.choices,
             action=spec.action, nargs=nargs, const=spec.const, metavar=spec.metavar)


def _train_parser(sub):
    p = sub.add_parser("train", help="train a classifier (a new run, or --resume one)",
                       description="Train a spiking or non-spiking image classifier. Each run keeps "
                       "<save_dir>/<run>/{best,last}.pt and <log_dir>/<run>/{config.json,metrics.csv,train.log}.")
    _add(p, "config", "read options from a YAML or JSON file (a run's config.json replays that run "
         "under a new name); flags given with it win", default_text="none", metavar="FILE")
    _add(p, "print_config", "print the resolved options (preset, --config file and flags merged) as "
         "YAML that --config reads, and exit", default_text="off", action="store_true")
    _add_config_flags(p)
    r = [g for g in p._action_groups if g.title == "run"][0]
    _add(r, "resume", "continue the run from its last.pt", default_text="off", action="store_true")
    _add(r, "overwrite", "replace an existing run of the same name", default_text="off",
         action="store_true")
    p.set_defaults(func=_train)


def _sweep_parser(sub):
    p = sub.add_parser("sweep", help="train, test and compare a grid of runs",
                       description="Train and test one run per combination of the values given to "
                       "train options (an option given several values is an axis: --model ann-cnn csnn "
                       "--time_steps 1 10), then compare them. Runs are named <name>-<option>=<value>-...; "
                       "started again, a sweep skips finished runs and resumes interrupted ones.")
    _add(p, "name", "name of the sweep: the runs' prefix and <log_dir>/<name>/ for the comparison",
         default_text=_default(sweep.sweep, "name"))
    _add(p, "config", "read the options from a YAML or JSON file (a list of values is an axis); "
         "flags given with it win", default_text="none", metavar="FILE")
    _add(p, "shard", "run every N-th point from the K-th, so that N processes or machines sharing the "
         "run folders finish the sweep together", default_text="all points", metavar="K/N")
    _add_config_flags(p, several=True)
    p.set_defaults(func=_sweep)


def _tune_parser(sub):
    p = sub.add_parser("tune", help="search train options for accurate (and cheap) networks, with Optuna",
                       description="Search a space of train options with Optuna: give an option a range "
                       "(--lr 1e-4:1e-2:log, --beta 0.5:0.99) or several values (--time_steps 2 4 8); "
                       "options given one value are fixed. Each trial is a run <name>-t<number>. "
                       "--objective accuracy energy makes a multi-objective study whose Pareto front "
                       "is the result. Started again, or by several processes or machines sharing "
                       "--storage, the study goes on where it is. Needs: pip install 'snnclf[tune]'.")
    _add(p, "name", "name of the study: its trials' prefix and <log_dir>/<name>/ for its files",
         default_text=_default(tune.tune, "name"))
    _add(p, "config", "read the space from a YAML or JSON file (a list of values is a choice, "
         "{low: A, high: B, log: true} or 'A:B:log' a range); flags given with it win", default_text="none",
         metavar="FILE")
    _add(p, "objective", "accuracy (validation), or accuracy and one of energy, spikes, sops per sample "
         "(a Pareto front)", default_text="accuracy", nargs="+", choices=tuple(tune.OBJECTIVES))
    _add(p, "trials", "finished (or pruned) trials the study should have", default_text=_default(tune.tune, "trials"),
         parse=number(int, 1))
    _add(p, "timeout", "stop starting trials in this process after this many seconds", default_text="none",
         parse=number(float, 0, low_open=True), metavar="SECONDS")
    _add(p, "storage", "Optuna storage shared by the workers: a database URL (postgresql://..., "
         "mysql://..., sqlite:///...) or a journal file (on a disk every machine sees)",
         default_text="<log_dir>/<name>/study.journal", metavar="URL")
    _add(p, "sampler", "Optuna sampler", default_text=_default(tune.tune, "sampler"), choices=tune.SAMPLERS)
    _add(p, "sampler_seed", "seed of the sampler (a study run by one worker repeats its choices)",
         default_text="none", parse=number(int, 0, 2 ** 31 - 1))
    _add(p, "pruner", "stop unpromising trials from their per-epoch validation accuracy (Optuna's "
         "MedianPruner; single-objective studies)", default_text=_default(tune.tune, "pruner"),
         choices=tune.PRUNERS)
    _add(p, "reference", "runs drawn beside the front, measured as the trials are (e.g. the default run)",
         default_text="none", nargs="+", metavar="RUN")
    _add_config_flags(p, several=True, ranges=True)
    p.set_defaults(func=_tune)


def _predict_parser(sub):
    p = sub.add_parser("predict", help="classify your own files with a trained run",
                       description="Classify image files (PNG, JPEG, ...), .npy arrays and, for event "
                       "runs, the data set's recording files (.bin, .aedat4, .npy events, .mat) with a run's best.pt. Images are converted to the run's "
                       "input as its data were (channels, size, light digit on dark), and every change is "
                       "reported. Prints per file the class, its confidence (share of the output spikes) and "
                       "the output spikes per class; a file that cannot be read gets one line and the exit "
                       "code is 2, the others are still classified.")
    p.add_argument("files", nargs="+", metavar="FILE", help="files to classify")
    _add(p, "run", "run whose best.pt classifies", default_text="the most recently trained run",
         aliases=("run_name",))
    _checkpoint_flag(p, "use")
    _add(p, "save_dir", "folder of the runs' checkpoints", default_text=_default(run_predict, "save_dir"))
    _add(p, "top", "classes listed per file, best first", default_text=_default(run_predict, "top"),
         parse=number(int, 1))
    _add(p, "json", "print one JSON object on stdout", default_text="off", action="store_true")
    _add(p, "csv", "also write a table of the predictions to this CSV file", default_text="none", metavar="FILE")
    _add(p, "device", "auto: CUDA, then MPS, then CPU", default_text=_default(run_predict, "device"),
         choices=DEVICES)
    _seed_flag(p, run_predict)
    p.set_defaults(func=_predict)


def _simulate_parser(sub):
    p = sub.add_parser("simulate", help="make an event-camera version of an image set (N-MNIST recordings)",
                       description="Show each image to a simulated event camera making N-MNIST's three "
                       "saccades, and write the recordings as N-MNIST .bin files in OUT/Train/<class>/ and "
                       "OUT/Test/<class>/. Train on them with snnclf train --dataset event-folder --data_dir OUT.")
    _add(p, "dataset", "an image data set (digits, mnist, fashion-mnist) or a folder with one folder of images a "
         "class", default_text="required", required=True, metavar="NAME|FOLDER")
    _add(p, "out", "the new folder to write the recordings in", default_text="required", required=True)
    _add(p, "data_dir", "folder of the data set's files", default_text=_default(simulate_events, "data_dir"))
    _add(p, "subset", "simulate this many training images (class-balanced) and the test split in proportion",
         default_text="all", parse=simulate_checks["subset"])
    _add(p, "test_fraction", "a folder of images: the share held out as the test split (stratified, seed 0)",
         default_text=_default(simulate_events, "test_fraction"), parse=simulate_checks["test_fraction"])
    _add(p, "seed", "seed of the simulated camera's noise", default_text=_default(simulate_events, "seed"),
         parse=number(int, 0))
    p.set_defaults(func=_simulate)


def _simulate(args):
    record = simulate_events(**_given(args))
    print(format_record(record, args.out))
    return 0


def _export_parser(sub):
    p = sub.add_parser("export", help="write a run's network as NIR (spiking) or ONNX (non-spiking), checked",
                       description="Write a run's best.pt as a NIR graph (spiking networks) or an ONNX file "
                       "(the non-spiking baselines). The file is read back and run by other frameworks "
                       "on test samples (each NIR tool installed here, or those named by --check; "
                       "onnxruntime) and is kept only if every one agrees with snnclf's outputs on at "
                       "least 99.9%. Which tools run a NIR file exactly, and the --target each needs, "
                       "is in docs/nir.md. Layers NIR cannot express exactly (max pooling, reset by "
                       "subtraction, adaptive thresholds) are refused before anything is written. "
                       "Sinabs, Speck's software model and Rockpool pin an older nir: they run in "
                       "environments of their own, built once under --envs. "
                       "Needs: pip install 'snnclf[export]'.")
    _run_flags(p, run_export, "run to export", "folder where export_<format>.json (the check) is written")
    _checkpoint_flag(p, "export")
    _add(p, "format", "nir or onnx", default_text="nir for spiking models, onnx for the others",
         choices=("nir", "onnx"))
    _add(p, "target", "the form of the NIR file, for the tools that will run it: "
         + "; ".join(f"{name}: {NIR_TARGETS.info(name)['summary']}" for name in NIR_TARGETS.names()),
         default_text=_default(run_export, "target"), choices=NIR_TARGETS.names())
    _add(p, "check", "the NIR tools that run the file before it is kept (each installed here, or one that "
         "runs in an environment of its own: sinabs, speck, rockpool): " + ", ".join(list_consumers()),
         default_text="those of the target's tools installed here or in --envs", choices=list_consumers(), nargs="+",
         metavar="TOOL")
    _add(p, "envs_dir", "folder of the environments of the tools whose nir pin clashes with snnclf's (Sinabs, "
         "Rockpool), each built there on first use with pip", default_text="$SNNCLF_ENVS or ~/.cache/snnclf/envs",
         metavar="DIR", aliases=("envs",))
    _add(p, "out", "file to write (never replaced if it exists)",
         default_text="<save_dir>/<run>/<run>.nir or .onnx", metavar="PATH")
    _add(p, "samples", "test samples the check runs", default_text=_default(run_export, "samples"),
         parse=number(int, 1))
    _add(p, "data_dir", "override the run's data folder", default_text="the run's")
    _seed_flag(p, run_export)
    _add(p, "json", "print the result as one JSON object on stdout", default_text="off", action="store_true")
    p.set_defaults(func=_export)


def _checkpoint_flag(p, verb):
    _add(p, "checkpoint", f"a checkpoint file to {verb} instead of a run's best.pt", default_text="none",
         metavar="PATH")


def _seed_flag(p, command, more=""):
    _add(p, "seed", f"seed of random input (rate spikes){more}", default_text=_default(command, "seed"),
         parse=number(int, 0, 2 ** 31 - 1))


def _run_flags(p, command, run_help, log_help="folder of the runs' logs"):
    """--run (default: the most recent run), --save_dir and --log_dir of the commands that read a run."""
    _add(p, "run", run_help, default_text="the most recently trained run", aliases=("run_name",))
    _add(p, "save_dir", "folder of the runs' checkpoints", default_text=_default(command, "save_dir"))
    _add(p, "log_dir", log_help, default_text=_default(command, "log_dir"))


def _eval_parser(sub):
    p = sub.add_parser("eval", help="evaluate a trained run on the test split",
                       description="Evaluate a run's best.pt (validation-selected) on the test split "
                       "and, without --test_only, on train and validation. The model is rebuilt from "
                       "the checkpoint alone. Writes <log_dir>/<run>/eval.json and confusion_matrix.csv.")
    _run_flags(p, run_eval, "run to evaluate", "folder where eval.json and confusion_matrix.csv are written")
    _checkpoint_flag(p, "evaluate")
    _add(p, "test_only", "evaluate the test split only", default_text="off", action="store_true")
    _add(p, "time_steps", "override the run's number of time steps", default_text="the run's",
         parse=number(int, 1))
    _add(p, "batch_size", "override the run's batch size", default_text="the run's", parse=number(int, 1))
    _add(p, "device", "auto: CUDA, then MPS, then CPU", default_text=_default(run_eval, "device"),
         choices=DEVICES)
    _add(p, "data_dir", "override the run's data folder", default_text="the run's")
    _add(p, "dataset", "evaluate on another data set with the run's input shape and classes (e.g. a "
         "run trained on nmnist-sim on nmnist recordings); results go to eval_<dataset>.json",
         default_text="the run's", choices=list_datasets)
    _add(p, "compile", "run the model under torch.compile (see snnclf train --compile)",
         default_text="off", action="store_true")
    _seed_flag(p, run_eval, ": the same seed, the same numbers")
    _add(p, "neurobench", "also measure NeuroBench's metrics (footprint, connection and activation sparsity, "
         "synaptic operations, membrane updates) with NeuroBench itself, the network run step by step, beside "
         f"snnclf's counts on the same inputs; needs: {NEUROBENCH_INSTALL}", default_text="off", action="store_true")
    _add(p, "neurobench_samples", "test samples --neurobench measures (the first ones)",
         default_text=_default(run_eval, "neurobench_samples"), parse=number(int, 1))
    _add(p, "json", "print the results as one JSON object on stdout", default_text="off",
         action="store_true")
    p.set_defaults(func=_eval)


def _compare_parser(sub):
    p = sub.add_parser("compare", help="compare runs: accuracy bars, curves, a table",
                       description="Compare runs from their files: a test-accuracy bar chart (runs "
                       "evaluated with snnclf eval), training-loss and validation-accuracy curves "
                       "overlaid, and a table (Markdown and CSV) of model, T, encoding, parameters, "
                       "accuracy, spikes per sample and training time.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run names")
    _add(p, "log_dir", "folder of the runs' logs", default_text=_default(compare, "log_dir"))
    _add(p, "out", "output folder", default_text="<log_dir>/compare")
    p.set_defaults(func=_compare)


def _activations_parser(sub):
    p = sub.add_parser("visualize-activations", help="draw what a trained spiking network does",
                       description="Record every spiking layer of a run's best.pt on test samples "
                       "with forward hooks and draw spike rasters, membrane traces, firing rates, "
                       "the output neurons' race as a GIF, the first convolution's filters and, "
                       "with --tsne, a t-SNE map of the penultimate layer's spike counts.")
    _run_flags(p, visualize, "run to draw")
    _checkpoint_flag(p, "draw")
    _add(p, "num_samples", "test samples drawn (rasters use the first)",
         default_text=_default(visualize, "num_samples"), parse=number(int, 1))
    _add(p, "tsne", "add a t-SNE map of the penultimate layer (500 test samples)", default_text="off",
         action="store_true")
    _add(p, "out", "output folder", default_text="activations/<run>")
    p.set_defaults(func=_activations)


def _data_parser(sub):
    p = sub.add_parser("visualize-data", help="draw what a data set looks like",
                       description="A labelled grid of test samples; for static sets the input spike "
                       "trains of a sample under rate and latency encoding; for event sets a sample's "
                       "frames over time as a GIF, its ON/OFF event counts and the event rate.")
    _add(p, "dataset", "data set", default_text=_default(visualize_data, "dataset"), choices=list_datasets)
    _add(p, "num_samples", "samples in the grid", default_text=_default(visualize_data, "num_samples"),
         parse=number(int, 1))
    _add(p, "out", "output folder", default_text="activations/data/<dataset>")
    _add(p, "data_dir", "folder of the data files", default_text=_default(visualize_data, "data_dir"))
    _add(p, "cache_dir", "event data: frame cache and simulated data", default_text=CACHE_DIR)
    _add(p, "time_steps", "time steps drawn", default_text="25; event data: 30", parse=number(int, 1))
    p.set_defaults(func=_data)


def _data(args):
    files = visualize_data(**_given(args))
    print(f"wrote {len(files)} files in {Path(files[0]).parent}: " + ", ".join(Path(f).name for f in files))
    return 0


def _compare(args):
    rows, files = compare(**_given(args, "runs"), names=args.runs)
    print((Path(files[0])).read_text(), end="")
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def _activations(args):
    files = visualize(**_given(args))
    print(f"wrote {len(files)} files in {Path(files[0]).parent}: " + ", ".join(Path(f).name for f in files))
    return 0


def _train(args):
    flags = _given(args)
    if args.print_config and args.resume:
        raise UsageError("--print_config shows the options of a new run; a run's saved ones are in "
                         "<log_dir>/<run>/config.json")
    if args.print_config:
        print(dump(resolve(flags)[0]), end="")
        return 0
    train(flags)
    return 0


def _sweep(args):
    def test(cfg):
        run_eval(run=cfg.run, save_dir=cfg.save_dir, log_dir=cfg.log_dir, test_only=True, device=cfg.device)
    options = {k: v for k, v in _given(args).items() if k in ("name", "config", "shard")}
    print(sweep.sweep(_given(args, "name", "config", "shard"), **options, train=train, evaluate=test,
                      compare=compare), end="")
    return 0


def _tune(args):
    flags = _given(args)
    given = {k: flags.pop(k) for k in list(flags) if k in DEFAULTS}

    def test(run, save_dir, log_dir, device):  # where the study trained its trials, as it tells
        return run_eval(run=run, save_dir=save_dir, log_dir=log_dir, test_only=True, device=device)
    print(tune.tune(given, **flags, train=train, evaluate=test), end="")
    return 0


def _predict(args):
    found, info = run_predict(**_given(args, "json"))
    if args.json:
        print(json.dumps({**info, "predictions": [as_dict(p) for p in found]}))
    else:
        print(f"run {info['run']} ({info['checkpoint']})")
        for p in found:
            if not p.error:
                print(format_prediction(p))
    for p in found:
        if p.error:
            print(f"snnclf predict: error: {p.file}: {p.error}", file=sys.stderr)
    return 2 if any(p.error for p in found) else 0


def _export(args):
    record = run_export(**_given(args, "json"))
    print(json.dumps(record) if args.json else format_export(record))
    return 0


def _eval(args):
    if args.neurobench_samples is not None and not args.neurobench:
        raise UsageError("--neurobench_samples applies with --neurobench; add --neurobench or leave it out")
    results = run_eval(**_given(args, "json"))
    lines = [format_results(results)] + (neurobench_table(results["neurobench"]) if args.neurobench else [])
    print(json.dumps(results) if args.json else "\n".join(lines))
    return 0


def build_parser():
    parser = Parser(prog="snnclf", description="Train, evaluate and explain spiking neural network "
                    "image classifiers and their non-spiking baselines.")
    parser.add_argument("--version", action="version", version=f"snnclf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=Parser)
    _train_parser(sub)
    _eval_parser(sub)
    _data_parser(sub)
    _activations_parser(sub)
    _compare_parser(sub)
    _sweep_parser(sub)
    _tune_parser(sub)
    _predict_parser(sub)
    _export_parser(sub)
    _simulate_parser(sub)
    return parser


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        print("snnclf: interrupted", file=sys.stderr)
        return 130
    rank = int(os.environ.get("RANK", "0"))  # under torchrun, rank 0 alone reports progress
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(message)s" if rank == 0 else f"[rank {rank}] %(message)s",
                        stream=sys.stderr, force=True)
    keep_freed_memory()
    try:
        return args.func(args)
    except UsageError as err:
        print(f"snnclf {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Interrupted as stop:  # the message and how to resume are already logged
        return 128 + stop.signum
    except KeyboardInterrupt:
        print(f"snnclf {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # torch.compile's failures (no C++ compiler, an unsupported op)
        if not getattr(args, "compile", False) or not type(err).__module__.startswith(
                ("torch._dynamo", "torch._inductor")):
            raise
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        print(f"snnclf {args.command}: error: torch.compile failed ({first}): run without --compile",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
