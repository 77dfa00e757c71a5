"""What every command builds from a run's configuration: its data, its model (new, or rebuilt
from a checkpoint alone), its encoder, loss, optimizer and schedule, and a trained run opened
(:func:`open_trained`). Commands import these; nothing here imports a command."""
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from .config import LOG_DIR, SAVE_DIR, RunConfig
from .data import get_encoder, load_dataset
from .data.augment import event_dropout, noise_events, random_shift
from .errors import UsageError
from .flags import given
from .losses import get_loss
from .models import get_model
from .optim import get_optimizer, get_scheduler
from .runs import Run, load_checkpoint, open_run, trained_checkpoint


def load_data(cfg, time_steps=None, data_dir=None):
    """The run's data set with its event options; ``time_steps``/``data_dir`` override the run's."""
    return load_dataset(cfg.dataset, data_dir or cfg.data_dir, time_steps=time_steps or cfg.time_steps,
                        **cfg.event_options())


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
    model: torch.nn.Module  # rebuilt from the checkpoint alone, in eval mode

    class_names = property(lambda self: list(self.checkpoint["class_names"]))
    in_shape = property(lambda self: tuple(self.checkpoint["model_kwargs"]["in_shape"]))


def open_trained(run=None, checkpoint=None, save_dir=SAVE_DIR, log_dir=LOG_DIR, device=torch.device("cpu")):
    """The trained run a command reads: the file ``checkpoint`` if given, else run ``run``'s
    ``best.pt`` (with no run named, the most recently trained run's), its configuration and its
    model on ``device``. The one place eval, predict, export and visualize-activations open a run."""
    path = trained_checkpoint(run, checkpoint, save_dir)
    ckpt = load_checkpoint(path)
    for key, kind in (("config", dict), ("model_name", str), ("model_kwargs", dict), ("model", dict),
                      ("class_names", (list, tuple))):
        if not isinstance(ckpt.get(key), kind):
            raise UsageError(f"{path} lacks the {key!r} an snnclf checkpoint holds: it is damaged or was "
                             "not written by snnclf train")
    cfg = RunConfig.from_dict(ckpt["config"])
    return Trained(path, ckpt, cfg, open_run(cfg.run, save_dir, log_dir), load_model(ckpt, device))


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


def check_fits(checkpoint, data, where, dataset):
    """Refuse data whose input shape or classes differ from those the model was made for."""
    kwargs = checkpoint["model_kwargs"]
    if list(data.in_shape) != list(kwargs["in_shape"]) or data.num_classes != kwargs["num_classes"]:
        raise UsageError(f"{where} was made for inputs {tuple(kwargs['in_shape'])} and "
                         f"{kwargs['num_classes']} classes, but {dataset} has {data.in_shape} and "
                         f"{data.num_classes}")


def build_augment(cfg):
    """``augment(x)`` of the run's training batches (``None`` without augmentation): events
    dropped, background events added, then the random shift (which moves them all together)."""
    steps = [partial(f, **{arg: v}) for f, arg, v in ((event_dropout, "p", cfg.event_dropout),
                                                        (noise_events, "n", cfg.noise_events),
                                                        (random_shift, "pixels", cfg.shift)) if v]
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


def build_optimizer(cfg, model):
    """The optimizer over ``model``'s parameters and its learning-rate schedule (or ``None``)."""
    optimizer = get_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay, cfg.momentum)
    scheduler = get_scheduler(cfg.scheduler, optimizer, cfg.epochs, cfg.step_size, cfg.milestones,
                              cfg.gamma)
    return optimizer, scheduler
