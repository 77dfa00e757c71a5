"""The ``snnclf`` command line: parses flags, dispatches to a command, and turns a user's mistake
into one line on stderr with exit code 2."""
import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path

from . import __version__
from .data import list_datasets, list_encoders
from .errors import Interrupted, UsageError
from .losses import list_losses
from .models import list_models, list_surrogates
from .models.neurons import RESETS
from .optim import list_optimizers, list_schedulers
from .presets import PRESETS, describe as describe_presets
from .train import DEFAULTS
from .utils import keep_freed_memory


class Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (not the usage block) and points at --help."""

    def error(self, message):
        message = re.sub(r"argument (--[\w-]+)(/--[\w-]+)*:", r"\1:", message)  # one spelling suffices
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(kind, low=None, high=None, low_open=False, high_open=False):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if value != value:  # NaN
            raise argparse.ArgumentTypeError("expected a number, got nan")
        if low is not None and (value < low or (low_open and value == low)):
            raise argparse.ArgumentTypeError(f"must be {'above' if low_open else 'at least'} {low}, got {text}")
        if high is not None and (value > high or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"must be {'below' if high_open else 'at most'} {high}, got {text}")
        return value
    return parse


def _add(group, name, help, default_text=None, aliases=(), **kwargs):
    """Add ``--name`` and its kebab twin (``--time_steps`` and ``--time-steps``), stating the default."""
    flags = [f"--{n}" for n in (name, *aliases) for n in dict.fromkeys([n, n.replace("_", "-")])]
    default = default_text if default_text is not None else DEFAULTS.get(name)
    help = f"{help} (default: {default})"
    kwargs.setdefault("default", None)
    group.add_argument(*flags, dest=name, help=help, **kwargs)


def _train_parser(sub):
    p = sub.add_parser("train", help="train a classifier (a new run, or --resume one)",
                       description="Train a spiking or non-spiking image classifier. Each run keeps "
                       "<save_dir>/<run>/{best,last}.pt and <log_dir>/<run>/{config.json,metrics.csv,train.log}.")
    _add(p, "preset", "a recommended recipe: sets the data set, model, neurons, T, optimizer, schedule, "
         "augmentation and epochs; flags you give override it. " + describe_presets(), default_text="none",
         choices=PRESETS.names())
    d = p.add_argument_group("data")
    _add(d, "dataset", "data set", choices=list_datasets())
    _add(d, "data_dir", "folder holding MNIST/raw, FashionMNIST/raw (torchvision's layout), NMNIST/ "
         "(tonic's)")
    _add(d, "val_fraction", "fraction of the training images held out to select the best epoch",
         type=_number(float, 0, 1, True, True))
    _add(d, "subset", "train on this many training images (the validation split shrinks in proportion)",
         default_text="all", type=_number(int, 1))
    _add(d, "encoding", "how images become input over time: direct (the image as current every step), "
         "rate (Bernoulli spikes), latency (one spike per pixel, brighter first); event data sets "
         "are their own input (events)", default_text="direct; event data sets: events",
         choices=list_encoders())
    _add(d, "time_steps", "number of time steps T (1: a single-step SNN); event data sets: frames per "
         "sample", type=_number(int, 1))
    e = p.add_argument_group("event data (nmnist, nmnist-sim, digits-events)")
    _add(e, "first_saccade_only", "keep only the first of the three saccades (t < 100 ms)",
         default_text="off", action="store_true")
    _add(e, "denoise_us", "drop events with no neighbour within this many microseconds (tonic Denoise)",
         default_text="off", type=_number(float, 0, low_open=True))
    _add(e, "downsample", "spatial factor, e.g. 0.5 for 17x17 frames (tonic Downsample)",
         default_text="1", type=_number(float, 0, 1, low_open=True))
    _add(e, "cache_dir", "folder of the frame cache and the simulated event data sets",
         default_text="data/cache")

    m = p.add_argument_group("model")
    _add(m, "model", "network", choices=list_models())
    _add(m, "arch", "a conv SNN in the papers' notation, e.g. 12C5-MP2-64C5-MP2-1024FC10 "
         "(NcK conv, NcKpP padded conv, MPk/APk pooling, [m]FCn fully connected)", default_text="none",
         metavar="SPEC")
    _add(m, "beta", "membrane decay per step, in [0, 1]", default_text="0.9",
         type=_number(float, 0, 1))
    _add(m, "threshold", "firing threshold, > 0", default_text="1.0", type=_number(float, 0, low_open=True))
    _add(m, "alpha", "decay of the second state: the adaptive threshold (ALIF) and the synaptic "
         "current (Synaptic), in [0, 1]", default_text="0.9", type=_number(float, 0, 1))
    _add(m, "reset", "membrane reset after a spike", default_text="subtract", choices=RESETS)
    _add(m, "surrogate", "surrogate gradient of the spike", default_text="atan",
         choices=list_surrogates())
    _add(m, "slope", "steepness of the surrogate (atan: its alpha)",
         default_text="snnTorch's: 25, atan 2", type=_number(float, 0, low_open=True))
    _add(m, "learn_beta", "learn the membrane decay", default_text="off", action="store_true")
    _add(m, "learn_threshold", "learn the threshold", default_text="off", action="store_true")
    _add(m, "dropout", "dropout probability before fully connected layers (mask kept over time)",
         default_text="0; cnn: 0.2", type=_number(float, 0, 1, high_open=True))
    _add(m, "batch_norm", "batch norm after each convolution (resnet always has it)",
         default_text="off", action="store_true")

    t = p.add_argument_group("training")
    _add(t, "loss", "ce: cross-entropy on output spikes per step (snnTorch ce_rate_loss); count: on "
         "spike counts (ce_count_loss); mse: spike counts vs target rates 0.8/0.2 (mse_count_loss); "
         "ce-mem: on the time-averaged output membrane", default_text="ce; ANN baselines: ce-mem",
         choices=list_losses())
    _add(t, "optimizer", "optimizer", choices=list_optimizers())
    _add(t, "lr", "learning rate", default_text="adam/adamw 2e-3, sgd 0.1",
         type=_number(float, 0, low_open=True))
    _add(t, "weight_decay", "weight decay", default_text="0; adamw 0.01", type=_number(float, 0))
    _add(t, "momentum", "SGD momentum", default_text="0.9", type=_number(float, 0, 1, high_open=True))
    _add(t, "scheduler", "learning-rate schedule, stepped per epoch; the flag alone means cosine",
         default_text="constant", nargs="?", const="cosine", choices=list_schedulers())
    _add(t, "step_size", "epochs between decays of --scheduler step", default_text="a third of --epochs",
         type=_number(int, 1))
    _add(t, "milestones", "epochs at which --scheduler multistep decays", default_text="none",
         nargs="+", type=_number(int, 1), metavar="EPOCH")
    _add(t, "gamma", "decay factor of --scheduler step/multistep", default_text="0.1",
         type=_number(float, 0, 1, low_open=True))
    _add(t, "shift", "augment training images by random shifts of up to this many pixels", default_text="0",
         type=_number(int, 0))
    _add(t, "epochs", "epochs", type=_number(int, 1))
    _add(t, "batch_size", "batch size", type=_number(int, 1))
    _add(t, "seed", "random seed (weights, batch order, rate spikes)", type=_number(int, 0, 2 ** 31 - 1))
    _add(t, "device", "auto: CUDA, then MPS, then CPU", choices=["auto", "cpu", "cuda", "mps"])
    _add(t, "amp", "mixed precision (CUDA only)", default_text="off", action="store_true")
    _add(t, "compile", "run the model under torch.compile (needs a C++ compiler on the CPU): "
         "a one-time compile, logged, for faster inference; see the README for when it pays",
         default_text="off", action="store_true")
    _add(t, "grad_clip", "clip the gradient norm to this value", default_text="off",
         type=_number(float, 0, low_open=True))

    r = p.add_argument_group("run")
    _add(r, "run", "run name (--run_name under torchrun, whose own parser takes --run for its --run-path)",
         default_text="<dataset>-<model>[-<encoding>]-T<time_steps>", aliases=("run_name",))
    _add(r, "save_dir", "folder of the runs' checkpoints")
    _add(r, "log_dir", "folder of the runs' config, metrics and logs")
    _add(r, "resume", "continue the run from its last.pt", default_text="off", action="store_true")
    _add(r, "overwrite", "replace an existing run of the same name", default_text="off",
         action="store_true")
    p.set_defaults(func=_train)


def _run_flags(p, run_help, log_help="folder of the runs' logs"):
    """--run (default: the most recent run), --save_dir and --log_dir of the commands that read a run."""
    _add(p, "run", run_help, default_text="the most recently trained run", aliases=("run_name",))
    _add(p, "save_dir", "folder of the runs' checkpoints")
    _add(p, "log_dir", log_help)


def _eval_parser(sub):
    p = sub.add_parser("eval", help="evaluate a trained run on the test split",
                       description="Evaluate a run's best.pt (validation-selected) on the test split "
                       "and, without --test_only, on train and validation. The model is rebuilt from "
                       "the checkpoint alone. Writes <log_dir>/<run>/eval.json and confusion_matrix.csv.")
    _run_flags(p, "run to evaluate", "folder where eval.json and confusion_matrix.csv are written")
    _add(p, "checkpoint", "a checkpoint file to evaluate instead of a run's best.pt", default_text="none",
         metavar="PATH")
    _add(p, "test_only", "evaluate the test split only", default_text="off", action="store_true")
    _add(p, "time_steps", "override the run's number of time steps", default_text="the run's",
         type=_number(int, 1))
    _add(p, "batch_size", "override the run's batch size", default_text="the run's", type=_number(int, 1))
    _add(p, "device", "auto: CUDA, then MPS, then CPU", default_text="auto",
         choices=["auto", "cpu", "cuda", "mps"])
    _add(p, "data_dir", "override the run's data folder", default_text="the run's")
    _add(p, "compile", "run the model under torch.compile (see snnclf train --compile)",
         default_text="off", action="store_true")
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
    _add(p, "log_dir", "folder of the runs' logs")
    _add(p, "out", "output folder", default_text="<log_dir>/compare")
    p.set_defaults(func=_compare)


def _activations_parser(sub):
    p = sub.add_parser("visualize-activations", help="draw what a trained spiking network does",
                       description="Record every spiking layer of a run's best.pt on test samples "
                       "with forward hooks and draw spike rasters, membrane traces, firing rates, "
                       "the output neurons' race as a GIF, the first convolution's filters and, "
                       "with --tsne, a t-SNE map of the penultimate layer's spike counts.")
    _run_flags(p, "run to draw")
    _add(p, "num_samples", "test samples drawn (rasters use the first)", default_text="3",
         type=_number(int, 1))
    _add(p, "tsne", "add a t-SNE map of the penultimate layer (500 test samples)", default_text="off",
         action="store_true")
    _add(p, "out", "output folder", default_text="activations/<run>")
    p.set_defaults(func=_activations)


def _data_parser(sub):
    p = sub.add_parser("visualize-data", help="draw what a data set looks like",
                       description="A labelled grid of test samples; for static sets the input spike "
                       "trains of a sample under rate and latency encoding; for event sets a sample's "
                       "frames over time as a GIF, its ON/OFF event counts and the event rate.")
    _add(p, "dataset", "data set", choices=list_datasets())
    _add(p, "num_samples", "samples in the grid", default_text="16", type=_number(int, 1))
    _add(p, "out", "output folder", default_text="activations/data/<dataset>")
    _add(p, "data_dir", "folder of the data files")
    _add(p, "cache_dir", "event data: frame cache and simulated data", default_text="data/cache")
    _add(p, "time_steps", "time steps drawn", default_text="25; event data: 30", type=_number(int, 1))
    p.set_defaults(func=_data)


def _data(args):
    from .viz.data import visualize_data

    files = visualize_data(args.dataset or DEFAULTS["dataset"], num_samples=args.num_samples or 16,
                           out=args.out, data_dir=args.data_dir or DEFAULTS["data_dir"],
                           cache_dir=args.cache_dir, time_steps=args.time_steps)
    print(f"wrote {len(files)} files in {Path(files[0]).parent}: " + ", ".join(Path(f).name for f in files))
    return 0


def _compare(args):
    from .viz.reports import compare

    rows, files = compare(args.runs, log_dir=args.log_dir or DEFAULTS["log_dir"], out=args.out)
    print((Path(files[0])).read_text(), end="")
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def _activations(args):
    from .viz.activations import visualize

    files = visualize(run=args.run, num_samples=args.num_samples or 3, tsne=bool(args.tsne), out=args.out,
                      save_dir=args.save_dir or DEFAULTS["save_dir"], log_dir=args.log_dir or DEFAULTS["log_dir"])
    print(f"wrote {len(files)} files in {Path(files[0]).parent}: " + ", ".join(Path(f).name for f in files))
    return 0


def _train(args):
    from .train import train

    flags = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    train(flags)
    return 0


def _eval(args):
    from .evaluate import format_results, run_eval

    results = run_eval(run=args.run, checkpoint=args.checkpoint,
                       save_dir=args.save_dir or DEFAULTS["save_dir"],
                       log_dir=args.log_dir or DEFAULTS["log_dir"], test_only=bool(args.test_only),
                       time_steps=args.time_steps, batch_size=args.batch_size,
                       device=args.device or "auto", data_dir=args.data_dir,
                       compile=bool(args.compile))
    print(json.dumps(results) if args.json else format_results(results))
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
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
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
