"""A run's configuration, in one place: every ``snnclf train`` option with its default, its help,
its check and the facts about it (on its field), and how a configuration is resolved (preset,
``--config`` file, encoding, model, run name) from the flags a user gave, or read back from a
checkpoint. The CLI builds its parser from these fields.

Fields that are ``None`` were not given: the builder they go to keeps its own default (stated in
--help through ``default_text`` or the field's ``fallback``)."""
import itertools
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Optional

from . import configfile
from .chips import check as chip_limits, list_chips
from .data import (CACHE_DIR, CHECKS as DATA_CHECKS, DATA_DIR, event_set, is_event_dataset, known_shape, list_datasets,
                   list_encoders)
from .data.events import CHECKS as EVENT_CHECKS, saccade_frames
from .data.encoders import ENCODERS
from .data.event_sets import downsample_defaults
from .errors import UsageError
from .flags import check, flag, flag_of, given as given_values, number, options
from .losses import default_loss, get_loss, list_losses
from .models import MODELS, NEURON_OPTIONS, POOLINGS, NeuronFlags, is_spiking, list_models, model_options
from .models.arch import CHECKS as MODEL_CHECKS
from .optim import CHECKS as OPTIM_CHECKS, OPTIMIZERS, SCHEDULERS, list_optimizers, list_schedulers, spans_epochs
from .presets import PRESETS, describe as describe_presets, preset_flags
from .runs import open_run

# The --help sections of `snnclf train`, in order.
GROUPS = ("preset", "data", "event data (nmnist, nmnist-sim, digits-events)", "model", "training", "run")
EVENTS = GROUPS[2]
DEVICES = ("auto", "cpu", "cuda", "mps")

# Defaults of the commands that read runs or draw pictures.
SAVE_DIR, LOG_DIR = "checkpoints", "logs"
GRID_SAMPLES = 16  # visualize-data: samples in the grid
DRAWN_SAMPLES = 3  # visualize-activations: samples whose spikes are drawn
EVAL_SEED = 0  # eval and visualize-activations: the seed of random input (rate spikes)


@dataclass(frozen=True)
class RunConfig(NeuronFlags):
    """Everything that defines a training run (the neuron options come from :class:`NeuronFlags`)."""

    preset: Optional[str] = flag(
        None, "a recommended recipe: sets the data set, model, neurons, T, optimizer, schedule, "
        "augmentation and epochs; flags you give override it. " + describe_presets(), "preset",
        default_text="none", choices=PRESETS.names)
    # data
    dataset: str = flag("digits", "data set", "data", choices=list_datasets)
    data_dir: str = flag(DATA_DIR, "folder holding MNIST/raw, FashionMNIST/raw (torchvision's layout) and "
                         "the event data sets' folders (tonic's: NMNIST/, CIFAR10DVS/, DVSGesture/, ...)", "data",
                         resumable=True, hparam=False)
    val_fraction: float = flag(0.1, "fraction of the training images held out to select the best epoch",
                               "data", parse=DATA_CHECKS["val_fraction"])
    subset: Optional[int] = flag(None, "train on this many training images (the validation split "
                                 "shrinks in proportion)", "data", default_text="all", parse=DATA_CHECKS["subset"])
    encoding: Optional[str] = flag(
        None, "how images become input over time: direct (the image as current every step), rate "
        "(Bernoulli spikes), latency (one spike per pixel, brighter first); event data sets are their "
        "own input (events)", "data", default_text="direct; event data sets: events", choices=list_encoders)
    time_steps: int = flag(8, "number of time steps T (1: a single-step SNN); event data sets: frames "
                           "per sample", "data", parse=number(int, 1))
    # event data
    first_saccade_only: Optional[bool] = flag(None, "N-MNIST and the simulated sets: keep only the first of the "
                                              "three saccades (t < 100 ms)", EVENTS, event=True, default_text="off",
                                              action="store_true")
    frame_ms: Optional[float] = flag(None, "make each of the T frames this many milliseconds from the start of "
                                     "a recording (later events are left out)", EVENTS, event=True,
                                     default_text="T frames over the whole recording",
                                     parse=EVENT_CHECKS["frame_ms"])
    denoise_us: Optional[float] = flag(None, "drop events with no neighbour within this many "
                                       "microseconds (tonic Denoise)", EVENTS, event=True, default_text="off",
                                       parse=EVENT_CHECKS["denoise_us"])
    downsample: Optional[float] = flag(None, "spatial factor, e.g. 0.5 for 17x17 N-MNIST frames (tonic "
                                       "Downsample)", EVENTS, event=True,
                                       default_text=f"the data set's: {downsample_defaults()}",
                                       parse=EVENT_CHECKS["downsample"])
    cache_dir: Optional[str] = flag(None, "folder of the frame cache and the simulated event data sets",
                                    EVENTS, event=True, default_text=CACHE_DIR, resumable=True,
                                    hparam=False)
    event_dropout: Optional[float] = flag(None, "augment training samples by dropping each event with this "
                                          "probability", EVENTS, augment=True, default_text="off",
                                          parse=number(float, 0, 1, high_open=True))
    saccade_shift: Optional[int] = flag(None, "N-MNIST and the simulated sets: augment training samples by "
                                        "moving each saccade's frames by its own random offset of up to this many "
                                        "pixels", EVENTS, augment=True, default_text="off", parse=number(int, 0))
    noise_events: Optional[float] = flag(None, "augment training samples with this many background events "
                                         "each on average, anywhere and any time", EVENTS, augment=True, default_text="off",
                                         parse=number(float, 0))
    # model (and the neuron options)
    model: str = flag("csnn", "network", "model", choices=list_models)
    arch: Optional[str] = flag(None, "a conv SNN in the papers' notation, e.g. 12C5-MP2-64C5-MP2-1024FC10 "
                               "(NcK conv, NcKpP padded conv, MPk/APk/SPk max/average/sum pooling, [m]FCn fully connected)",
                               "model", default_text="none", metavar="SPEC")
    dropout: Optional[float] = flag(None, "dropout probability before fully connected layers (mask kept "
                                    "over time)", "model", model=True,
                                    default_text=lambda: describe_defaults(MODELS, "dropout", common_first=True),
                                    parse=MODEL_CHECKS["dropout"])
    batch_norm: Optional[bool] = flag(None, "batch norm after each convolution (resnet always has it)",
                                      "model", model=True, default_text="off", action="store_true")
    chip: Optional[str] = flag(None, "train for a neuromorphic chip: the network is checked against the chip's "
                               "limits before any data is read, and trains in the chip's integers and neurons "
                               "(integrate-and-fire, reset by subtraction); snnclf export --target CHIP runs it in "
                               "the chip's software", "model", model=True, default_text="none",
                               choices=list_chips)
    pool: Optional[str] = flag(None, "pooling of csnn, cnn and ann-cnn: max, avg (average) or sum; "
                               "avg and sum export to NIR (snnclf export), max does not", "model", model=True,
                               default_text="max", choices=lambda: POOLINGS)
    # training
    loss: Optional[str] = flag(
        None, "ce: cross-entropy on output spikes per step (snnTorch ce_rate_loss); count: on spike "
        "counts (ce_count_loss); mse: spike counts vs target rates 0.8/0.2 (mse_count_loss); ce-mem: "
        "on the time-averaged output membrane", "training", default_text=lambda: f"{default_loss(True)}; ANN baselines: {default_loss(False)}",
        choices=list_losses)
    optimizer: str = flag("adam", "optimizer", "training", choices=list_optimizers)
    lr: Optional[float] = flag(None, "learning rate", "training", default_text=lambda: describe_defaults(OPTIMIZERS, "lr"),
                               parse=OPTIM_CHECKS["lr"])
    weight_decay: Optional[float] = flag(None, "weight decay", "training",
                                         default_text=lambda: describe_defaults(OPTIMIZERS, "weight_decay"),
                                         parse=OPTIM_CHECKS["weight_decay"])
    momentum: Optional[float] = flag(None, "momentum", "training",
                                     default_text=lambda: describe_defaults(OPTIMIZERS, "momentum"),
                                     parse=OPTIM_CHECKS["momentum"])
    scheduler: Optional[str] = flag(None, "learning-rate schedule, stepped per epoch; the flag alone means "
                                    "cosine", "training", default_text="constant", nargs="?", const="cosine",
                                    choices=list_schedulers)
    step_size: Optional[int] = flag(None, "epochs between decays of --scheduler step", "training",
                                    default_text="a third of --epochs", parse=OPTIM_CHECKS["step_size"])
    milestones: Optional[list] = flag(None, "epochs at which --scheduler multistep decays", "training",
                                      default_text="none", nargs="+", parse=OPTIM_CHECKS["milestones"], metavar="EPOCH")
    gamma: Optional[float] = flag(None, "decay factor of --scheduler step/multistep", "training",
                                  default_text=lambda: describe_defaults(SCHEDULERS, "gamma"),
                                  parse=OPTIM_CHECKS["gamma"])
    warmup: Optional[float] = flag(None, "fraction of the run's epochs over which --scheduler cosine first "
                                   "rises linearly from a tenth of --lr", "training", metavar="F",
                                   default_text=lambda: describe_defaults(SCHEDULERS, "warmup"),
                                   parse=OPTIM_CHECKS["warmup"])
    rate_reg: Optional[float] = flag(None, "spike-rate regulariser: add W x the sum over spiking layers of "
                                     "their mean firing rate above --rate_target to the loss (trades "
                                     "accuracy for fewer spikes; per-layer rates go to metrics.csv)", "training",
                                     default_text="off", metavar="W", parse=number(float, 0))
    rate_target: Optional[float] = flag(None, "firing rate (spikes per neuron per step) below which "
                                        "--rate_reg does not penalise", "training", default_text="0",
                                        metavar="R", parse=number(float, 0, 1, high_open=True))
    shift: int = flag(0, "augment training images by random shifts of up to this many pixels", "training",
                      parse=number(int, 0))
    rotate: float = flag(0.0, "augment training images by random rotations of up to this many degrees either way",
                         "training", metavar="DEG", default_text="0", parse=number(float, 0, 180))
    scale: float = flag(0.0, "augment training images by random zooms by a factor between 1 - F and 1 + F",
                        "training", metavar="F", default_text="0", parse=number(float, 0, 1, high_open=True))
    epochs: int = flag(30, "epochs", "training", resumable=True, parse=number(int, 1))
    min_steps: Optional[int] = flag(None, "train at least this many optimizer steps: where the training split "
                                    "is small, --epochs rises to reach them (and the schedule spans those epochs)",
                                    "training", metavar="N", parse=number(int, 1))
    batch_size: int = flag(64, "batch size", "training", parse=DATA_CHECKS["batch_size"])
    seed: int = flag(0, "random seed (weights, batch order, rate spikes)", "training",
                     parse=number(int, 0, 2 ** 31 - 1))
    device: str = flag("auto", "auto: CUDA, then MPS, then CPU", "training", resumable=True,
                       choices=lambda: DEVICES)
    amp: bool = flag(False, "mixed precision (CUDA only)", "training", resumable=True, default_text="off",
                     action="store_true")
    compile: bool = flag(False, "run the model under torch.compile (needs a C++ compiler on the CPU): a "
                         "one-time compile, logged, for faster inference; see the README for when it pays",
                         "training", resumable=True, default_text="off", action="store_true")
    grad_clip: Optional[float] = flag(None, "clip the gradient norm to this value", "training",
                                      default_text="off", parse=number(float, 0, low_open=True))
    # run
    run: Optional[str] = flag(None, "run name (--run_name under torchrun, whose own parser takes --run for "
                              "its --run-path)", "run", default_text="<dataset>-<model>[-<encoding>]-T<time_steps>",
                              aliases=("run_name",), resumable=True, hparam=False)
    save_dir: str = flag(SAVE_DIR, "folder of the runs' checkpoints", "run", resumable=True, hparam=False)
    log_dir: str = flag(LOG_DIR, "folder of the runs' config, metrics and logs", "run", resumable=True,
                        hparam=False)
    tensorboard: bool = flag(False, "also write TensorBoard event files in the run's log folder "
                             "(pip install tensorboard)", "run", default_text="off", action="store_true",
                             resumable=True, hparam=False)

    def __post_init__(self):
        """Every given value passes its flag's check, whoever set it (flags, a preset, a file,
        code), with the flag's one-line error; numbers are stored as the flag would parse them."""
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                object.__setattr__(self, f.name, check(f.name, flag_of(f), value))

    @classmethod
    def ordered_fields(cls):
        """The fields in the order of --help and config.json: each section's own, the neuron
        options after --arch."""
        own = [f for f in fields(cls) if f.name not in NEURON_OPTIONS]
        at = [f.name for f in own].index("arch") + 1
        return own[:at] + [f for f in fields(cls) if f.name in NEURON_OPTIONS] + own[at:]

    # --- resolution ----------------------------------------------------------------------

    @classmethod
    def from_flags(cls, given):
        """The configuration of a new run from the options a user gave (``None``: not given):
        defaults, then the preset's flags, then the given ones; encoding and run name resolved."""
        given = given_values(given)
        if "arch" in given and given.setdefault("model", "arch") != "arch":
            raise UsageError(f"--arch and --model {given['model']} both name a model: give one of them")
        preset = preset_flags(given["preset"]) if given.get("preset") else {}
        cfg = cls(**{**preset, **given})  # flags given on the command line win over the preset's
        if not is_event_dataset(cfg.dataset):
            for key in options(cls, "augment"):
                if getattr(cfg, key):
                    raise UsageError(f"--{key} applies to event data sets only, not {cfg.dataset}")
        if cfg.saccade_shift:
            saccade_frames(event_set(cfg.dataset), cfg.time_steps, cfg.first_saccade_only, cfg.frame_ms)  # a check
        if cfg.chip and (cfg.compile or cfg.amp):
            raise UsageError(f"--{'compile' if cfg.compile else 'amp'}: a --chip network computes in the chip's "
                             "integers, which " + ("torch.compile recompiles as the weights' scale moves" if cfg.compile
                                                   else "half precision would round") + ": leave it out with --chip")
        if cfg.rate_target is not None and not cfg.rate_reg:
            raise UsageError("--rate_target sets where --rate_reg starts to penalise: give --rate_reg W too")
        cfg = replace(cfg, encoding=resolve_encoding(cfg.dataset, cfg.encoding))
        return cfg if cfg.run else replace(cfg, run=cfg.default_run_name())

    @classmethod
    def from_dict(cls, saved):
        """The configuration a checkpoint or ``config.json`` recorded. Keys it lacks (a run saved
        by an older snnclf) take today's defaults; keys that are not options are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})

    def resumed(self, given):
        """This (saved) configuration continued with the options given to ``--resume``: only
        the resumable ones (where and how long it runs) may change. A run that --min_steps
        lengthened keeps the epochs it was sized to when the command is repeated with its own
        (smaller) --epochs."""
        given = given_values(given)
        if self.min_steps and given.get("epochs") is not None and given["epochs"] < self.epochs:
            given.pop("epochs")  # the --epochs this run was started with, raised to self.epochs by --min_steps
        resumable = options(type(self), "resumable")
        for key, value in given.items():
            if key not in resumable and getattr(self, key) != value:
                saved = getattr(self, key)
                was = f"without --{key}" if saved is None else f"with --{key} {saved}"
                raise UsageError(f"--resume continues run {self.run} as it was configured ({was}), not with "
                                 f"--{key} {value}: leave --{key} out, or start a new run with --run NAME")
        cfg = replace(self, **{k: v for k, v in given.items() if k in resumable})
        if cfg.epochs != self.epochs and spans_epochs(self.scheduler, self.step_size):
            raise UsageError(f"run {self.run}'s --scheduler {self.scheduler} was laid out over its "
                             f"{self.epochs} epochs; resume it with those, or start a new run")
        return cfg

    def sized(self, train_samples, processes=1):
        """This configuration with --epochs raised, if need be, to give ``min_steps`` optimizer
        steps on ``train_samples`` training samples in batches of ``batch_size`` a process: a
        recipe that holds for a 48-recording set and a 60,000-image one."""
        if not self.min_steps:
            return self
        per_epoch = math.ceil(train_samples / (self.batch_size * processes))
        return replace(self, epochs=max(self.epochs, math.ceil(self.min_steps / per_epoch)))

    def default_run_name(self):
        encoding = "" if self.encoding in ("direct", "events") else f"-{self.encoding}"
        preset = "-preset" if self.preset else ""
        return f"{self.dataset}-{self.model}{encoding}-T{self.time_steps}{preset}"

    def model_spec(self):
        """(registered name, keyword options) of the model this configuration asks for."""
        values = {k: getattr(self, k) for k in options(type(self), "model")}
        if self.model == "arch":
            if not self.arch:
                raise UsageError("--model arch needs --arch SPEC, e.g. --arch 12C5-MP2-64C5-MP2-FC10")
            return "arch", {"spec": self.arch, **values}
        return self.model, values

    def event_options(self):
        return {k: getattr(self, k) for k in options(type(self), "event")}

    def hparams(self):
        """The options that are hyper-parameters (not where the run's files go)."""
        return {k: v for k, v in self.to_dict().items() if k in options(type(self), "hparam")}

    def to_dict(self):
        """Plain values, for checkpoints and ``config.json``."""
        values = asdict(self)
        return {f.name: values[f.name] for f in self.ordered_fields()}


DEFAULTS = {f.name: f.default for f in fields(RunConfig)}


def check_options(options):
    """The configuration ``options`` give, checked as a run checks it before it touches a file
    (each value, the model's options, the loss the model can take), for the commands that plan
    many runs (sweep, tune) and must refuse a bad one before the first trains."""
    cfg = RunConfig.from_flags({**options, "run": options.get("run") or "check"})
    name, values = cfg.model_spec()
    refused = [k for k, v in values.items() if v is not None and k not in model_options(name)]
    if refused:
        raise UsageError(f"--{refused[0]} does not apply to model {name}: leave it out, or choose models that "
                         "take it")
    get_loss(cfg.loss, cfg.time_steps, is_spiking(name))  # a loss the model cannot take: one line
    check_chip(cfg)
    return cfg


def check_chip(cfg, data=None):
    """Refuse a run whose network the chip of ``--chip`` cannot hold, in one line naming the
    limit and the layer: before any data is read where the data set's shape is known without
    reading it (see :func:`snnclf.data.known_shape`), else on the loaded ``data``. Returns whether
    it checked."""
    if not cfg.chip:
        return True
    shape = known_shape(cfg.dataset, cfg.downsample) if data is None else (data.in_shape, data.num_classes)
    if shape is None:
        return False
    chip_limits(cfg.chip, cfg, *shape)
    return True


def option_field(name):
    """(field, flag) of option ``name`` of :class:`RunConfig`."""
    f = next(f for f in fields(RunConfig) if f.name == name)
    return f, flag_of(f)


def is_list_option(name):
    """Options whose one value is itself a list (``--milestones 10 15``)."""
    return option_field(name)[1].nargs == "+"


def check_option(name, value):
    """``value`` of option ``name`` (a field of :class:`RunConfig`) as its flag would take it, or
    a one-line error."""
    return check(name, option_field(name)[1], value)


def load_file(path):
    """The options the ``--config`` file ``path`` gives, as written (see :func:`configfile.load`)."""
    spellings = {spelling: f.name for f in fields(RunConfig) for spelling in (f.name, *flag_of(f).aliases)}
    return configfile.load(path, spellings)


def read_file(path):
    """The options the ``--config`` file ``path`` gives, each checked like its flag."""
    found = {}
    for name, value in load_file(path).items():
        try:
            found[name] = check_option(name, value)
        except UsageError as err:
            raise UsageError(f"--config {path}: {err}") from None
    return found


def resolve(flags):
    """The configuration of the run ``flags`` asks for (the options the user gave, ``None`` or
    absent: default; ``config``: a file of options, under the given ones), and the other options
    in ``flags`` (``resume``, ``overwrite``, ...). A file that names a run which exists (a run's own
    config.json) replays it under a new name, ``<run>-replay`` (``-2``, ``-3``, ...)."""
    given = given_values(flags)
    rest = {k: given.pop(k) for k in ("resume", "overwrite", "print_config") if k in given}
    path = given.pop("config", None)
    if path is None:
        return RunConfig.from_flags(given), rest
    if rest.get("resume"):
        raise UsageError("--resume continues a run as it was configured: leave --config out")
    from_file = read_file(path)
    cfg = RunConfig.from_flags({**from_file, **given})  # flags given on the command line win
    if "run" in from_file and "run" not in given and not rest.get("overwrite"):
        name = cfg.run
        for n in itertools.count(1):
            if not open_run(name, cfg.save_dir, cfg.log_dir).exists():
                break
            name = f"{cfg.run}-replay" + (f"-{n}" if n > 1 else "")
        cfg = replace(cfg, run=name)
    return cfg, rest


def dump(cfg):
    """``cfg`` as YAML that ``--config`` reads back (see :func:`configfile.dump`), the values derived
    from others (the encoding an event data set implies, the default run name) marked."""
    derived = {"encoding": resolve_encoding(cfg.dataset, None), "run": cfg.default_run_name()}
    return configfile.dump(cfg.to_dict(), derived)


def describe_defaults(registry, option, common_first=False):
    """``option``'s default in each builder that takes it, for --help: "adam, adamw 0.002; sgd 0.1",
    or with ``common_first`` the most common default alone first: "0; cnn 0.2"."""
    found = registry.defaults(option)
    common = max(found, key=lambda v: len(found[v])) if common_first else None
    parts = [f"{common:g}"] if common_first else []
    return "; ".join(parts + [f"{', '.join(n)} {v:g}" for v, n in found.items() if v != common or not common_first])


def resolve_encoding(dataset, encoding):
    """Event data sets take their frames as they are (the encoding declared ``for_events``);
    static ones default to direct."""
    for_events = encoding is not None and ENCODERS.info(encoding, "--encoding")["for_events"]
    if is_event_dataset(dataset):
        if encoding is not None and not for_events:
            raise UsageError(f"--encoding {encoding} does not apply to event data set {dataset}: its "
                             "frames are the input spikes; leave --encoding out")
        return "events"
    if for_events:
        raise UsageError(f"--encoding {encoding} needs an event data set, not {dataset}")
    return encoding or "direct"
