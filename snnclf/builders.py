"""What every command builds from a run's configuration: its data, its model (new, or rebuilt
from a checkpoint alone), its encoder, loss, optimizer and schedule, and a trained run opened
(:func:`open_trained`). Commands import these; nothing here imports a command."""
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path

import torch

from .config import LOG_DIR, SAVE_DIR, RunConfig
from .data import get_encoder, known_shape, load_dataset
from .data import event_set
from .data.augment import event_dropout, noise_events, random_affine, random_shift, saccade_shift
from .data.events import saccade_frames
from .errors import UsageError
from .flags import given
from .losses import RateRegularizer, get_loss
from .models import get_model
from .optim import get_optimizer, get_scheduler
from .runs import Run, check_keys, load_checkpoint, open_run, trained_checkpoint
from .utils import resolve_device


def load_data(cfg, time_steps=None, data_dir=None, test_only=False, train_only=False):
    """The run's data set with its event options; ``time_steps``/``data_dir`` override the run's;
    ``test_only``/``train_only`` for a command that reads that split alone (see ``load_dataset``)."""
    return load_dataset(cfg.dataset, data_dir or cfg.data_dir, time_steps=time_steps or cfg.time_steps,
                        test_only=test_only, train_only=train_only, subset=cfg.subset,
                        val_fraction=cfg.val_fraction, **cfg.event_options())


def build_model(cfg, data):
    """A new model for ``data`` as ``cfg`` asks, with the (name, keyword arguments) that rebuild it
    (what a checkpoint keeps: ``model_name`` and ``model_kwargs``)."""
    name, options = cfg.model_spec()
    model = get_model(name, data.in_shape, data.num_classes, **options)
    kwargs = {"in_shape": list(data.in_shape), "num_classes": data.num_classes,
              **given(options)}
    return model, name, kwargs


@dataclass
class Trained:
    """A trained run as a command opens it."""

    path: Path  # the checkpoint file
    checkpoint: dict
    cfg: RunConfig
    run: Run  # its folders, found under the command's --save_dir/--log_dir by the run's name
    device: torch.device

    @cached_property
    def model(self):
        """The network, rebuilt from the checkpoint alone, in eval mode on ``device`` (built when
        first asked for, so that a command checks its data against the run first)."""
        return load_model(self.checkpoint, self.device)

    class_names = property(lambda self: list(self.checkpoint["class_names"]))
    in_shape = property(lambda self: tuple(self.checkpoint["model_kwargs"]["in_shape"]))


def open_trained(run=None, checkpoint=None, save_dir=SAVE_DIR, log_dir=LOG_DIR, device=torch.device("cpu")):
    """The trained run a command reads: the file ``checkpoint`` if given, else run ``run``'s
    ``best.pt`` (with no run named, the most recently trained run's), its configuration and its
    model on ``device``. The one place eval, predict, export and visualize-activations open a run."""
    path = trained_checkpoint(run, checkpoint, save_dir)
    ckpt = check_keys(load_checkpoint(path), path, ("config", "model_name", "model_kwargs", "model", "class_names",
                                                    "epoch"))
    cfg = RunConfig.from_dict(ckpt["config"])
    return Trained(path, ckpt, cfg, open_run(cfg.run, save_dir, log_dir), device)


def load_model(checkpoint, device):
    """The model a checkpoint describes, with its weights, on ``device``, in eval mode. Building
    it draws initial weights that the checkpoint's replace: that draw is kept off the process's
    random state (built on the CPU, whose generator is restored)."""
    kwargs = dict(checkpoint["model_kwargs"])
    in_shape, num_classes = kwargs.pop("in_shape"), kwargs.pop("num_classes")
    with torch.random.fork_rng(devices=[]):
        model = get_model(checkpoint["model_name"], in_shape, num_classes, **kwargs)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as err:
        raise UsageError(f"the checkpoint's weights do not fit model {checkpoint['model_name']} "
                         f"({str(err).splitlines()[0]}): it was saved by another version") from None
    return model.to(device).eval()


def check_memory(model, in_shape, time_steps, batch_size, device, training=False):
    """Refuse, before anything is written, a run whose activations cannot fit in the memory
    that is free: ``--time_steps 100000`` would otherwise fail part-way with an allocator's
    traceback. The estimate: what every layer outputs for one sample and one step (measured by
    running the model once on zeros), times T and the batch, times 3 when training (activations
    kept for the backward pass, their gradients, temporaries); plus the weights and, when
    training, their gradients and optimizer state. Where the free memory cannot be read, nothing
    is refused."""
    free = free_memory(device)
    if free is None:
        return
    sizes = []

    def count(module, args, out):
        for t in out if isinstance(out, tuple) else (out,):
            if isinstance(t, torch.Tensor):
                sizes.append(t.numel() * t.element_size())
    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    mode = model.training
    model.eval()  # a training-mode pass would move batch norm's running statistics
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            model(torch.zeros(1, 1, *in_shape, device=device))
    finally:
        model.train(mode)
        for h in hooks:
            h.remove()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    need = sum(sizes) * time_steps * batch_size * (3 if training else 1) + weights * (4 if training else 1)
    if need > free:
        raise UsageError(f"--time_steps {time_steps} with --batch_size {batch_size} needs about {_gib(need)} of "
                         f"memory on {device.type} for this model, and {_gib(free)} is free: lower --time_steps "
                         "or --batch_size")


def check_fits_memory(cfg):
    """:func:`check_memory` of a run about to train, before any data is read, where the data set's
    shape is known without reading it (see :func:`snnclf.data.known_shape`): a search checks each
    point of its space so."""
    shape = known_shape(cfg.dataset, cfg.downsample)
    if shape is None:
        return
    name, options = cfg.model_spec()
    device = resolve_device(cfg.device)
    with torch.random.fork_rng(devices=[]):  # weights drawn and dropped: the caller's random state is kept
        model = get_model(name, shape[0], shape[1], **options).to(device)
    check_memory(model, shape[0], cfg.time_steps, cfg.batch_size, device, training=True)


def _gib(n):
    return f"{n / 2 ** 30:,.1f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:,.0f} MiB"


def free_memory(device):
    """Bytes of memory free for tensors on ``device``, or ``None`` where that cannot be read
    (Linux's MemAvailable for the CPU; the CUDA driver's free memory)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def check_fits(checkpoint, data, where, dataset):
    """Refuse data whose input shape or classes differ from those the model was made for."""
    kwargs = checkpoint["model_kwargs"]
    if list(data.in_shape) != list(kwargs["in_shape"]) or data.num_classes != kwargs["num_classes"]:
        raise UsageError(f"{where} was made for inputs {tuple(kwargs['in_shape'])} and "
                         f"{kwargs['num_classes']} classes, but {dataset} has {data.in_shape} and "
                         f"{data.num_classes}")
    names = [str(n) for n in checkpoint.get("class_names") or data.class_names]
    if names != [str(n) for n in data.class_names]:  # as many classes, other ones (folders renamed, ...)
        raise UsageError(f"{dataset}: its classes ({', '.join(map(str, data.class_names[:4]))}, ...) are not those "
                         f"{where} learned ({', '.join(names[:4])}, ...): its labels would be read as other classes")


def build_augment(cfg, in_shape):
    """``augment(x)`` of the run's training batches (``None`` without augmentation): events
    dropped, background events added, each saccade moved on its own, then the random rotation and
    zoom and the random shift (which move them all together). A shift as large as the input
    ``in_shape`` (C, H, W) is refused: it would move samples off it, padding each batch by that
    many pixels."""
    height, width = in_shape[-2:]
    for option in ("shift", "saccade_shift"):
        pixels = getattr(cfg, option)
        if pixels and pixels >= max(height, width):
            raise UsageError(f"--{option} {pixels} would move samples off their {height}x{width} input: "
                             f"give at most {max(height, width) - 1} pixels")
    steps = [partial(f, **{arg: v}) for f, arg, v in ((event_dropout, "p", cfg.event_dropout),
                                                        (noise_events, "n", cfg.noise_events)) if v]
    if cfg.saccade_shift:
        saccades = saccade_frames(event_set(cfg.dataset), cfg.time_steps, cfg.first_saccade_only, cfg.frame_ms)
        steps.append(partial(saccade_shift, pixels=cfg.saccade_shift, saccades=saccades))
    if cfg.rotate or cfg.scale:
        steps.append(partial(random_affine, degrees=cfg.rotate, scale=cfg.scale))
    if cfg.shift:
        steps.append(partial(random_shift, pixels=cfg.shift))
    if not steps:
        return None

    def augment(x):
        for step in steps:
            x = step(x)
        return x
    return augment


def make_encoder(cfg, time_steps=None):
    """``encode(x)``: images [B, ...] -> model input [T, B, ...] under the run's encoding."""
    return partial(get_encoder(cfg.encoding), time_steps=time_steps or cfg.time_steps)


def build_loss(cfg, model, time_steps=None):
    return get_loss(cfg.loss, time_steps or cfg.time_steps, model.spiking)


def build_regularizer(cfg):
    """The run's spike-rate regulariser (``--rate_reg``), or ``None``."""
    return RateRegularizer(cfg.rate_reg, cfg.rate_target or 0.0) if cfg.rate_reg else None


def build_optimizer(cfg, model):
    """The optimizer over ``model``'s parameters and its learning-rate schedule (or ``None``)."""
    optimizer = get_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay, cfg.momentum)
    scheduler = get_scheduler(cfg.scheduler, optimizer, cfg.epochs, cfg.step_size, cfg.milestones,
                              cfg.gamma, cfg.warmup)
    return optimizer, scheduler
