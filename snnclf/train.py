"""The train command: build data, model, loss and optimizer from a config, run the epochs, keep
the run's checkpoints and metric files, resume a run from its ``last.pt``."""
import logging
import shutil
import time
from functools import partial

import torch

from . import __version__
from .data import get_encoder, load_dataset, make_loader, make_splits
from .engine import evaluate, train_one_epoch
from .errors import UsageError
from .losses import get_loss
from .models import get_model
from .models.neurons import NEURON_OPTIONS
from .optim import get_optimizer, get_scheduler
from .runs import (FORMAT, VERSION, load_checkpoint, open_run, read_metrics, save_checkpoint,
                   write_json, write_metrics)
from .utils import resolve_device, rng_state, seed_everything, set_rng_state

log = logging.getLogger(__name__)

# The defaults of `snnclf train`; ``None`` leaves the choice to the model, loss or optimizer.
DEFAULTS = {
    "dataset": "digits", "data_dir": "data", "val_fraction": 0.1, "subset": None,
    "encoding": "direct", "time_steps": 8,
    "model": "csnn", "arch": None, "batch_norm": None, "dropout": None,
    **{name: None for name in NEURON_OPTIONS},
    "loss": None, "optimizer": "adam", "lr": None, "weight_decay": None, "momentum": None,
    "scheduler": None, "step_size": None, "milestones": None, "gamma": None,
    "epochs": 30, "batch_size": 64, "seed": 0, "device": "auto", "amp": False, "grad_clip": None,
    "run": None, "save_dir": "checkpoints", "log_dir": "logs",
}
MODEL_KEYS = ("batch_norm", "dropout") + NEURON_OPTIONS
# What may change when a run is resumed: how long it goes on and where it runs.
RESUMABLE = {"epochs", "device", "amp", "save_dir", "log_dir", "run", "data_dir"}


def default_run_name(cfg):
    encoding = "" if cfg["encoding"] == "direct" else f"-{cfg['encoding']}"
    return f"{cfg['dataset']}-{cfg['model']}{encoding}-T{cfg['time_steps']}"


def model_spec(cfg):
    """(registered name, keyword options) of the model a config asks for."""
    options = {k: cfg.get(k) for k in MODEL_KEYS}
    if cfg["model"] == "arch":
        if not cfg.get("arch"):
            raise UsageError("--model arch needs --arch SPEC, e.g. --arch 12C5-MP2-64C5-MP2-FC10")
        return "arch", {"spec": cfg["arch"], **options}
    return cfg["model"], options


def _check_numbers(cfg):
    for key, low in (("time_steps", 1), ("epochs", 1), ("batch_size", 1)):
        if cfg[key] < low:
            raise UsageError(f"--{key} must be at least {low}, got {cfg[key]}")
    if cfg["grad_clip"] is not None and cfg["grad_clip"] <= 0:
        raise UsageError(f"--grad_clip must be positive, got {cfg['grad_clip']}")


def train(flags):
    """Train a run. ``flags`` holds the options the user gave (``None`` or absent: default).
    Returns a summary dict (run name, best validation accuracy and its epoch)."""
    given = {k: v for k, v in flags.items() if v is not None}
    resume, overwrite = given.pop("resume", False), given.pop("overwrite", False)
    if resume and overwrite:
        raise UsageError("--resume continues a run and --overwrite replaces it: give one of them")
    if "arch" in given:
        if given.setdefault("model", "arch") != "arch":
            raise UsageError(f"--arch and --model {given['model']} both name a model: give one of them")
    cfg = {**DEFAULTS, **given}
    cfg["run"] = cfg["run"] or default_run_name(cfg)
    run = open_run(cfg["run"], cfg["save_dir"], cfg["log_dir"])

    checkpoint = None
    if resume:
        checkpoint = load_checkpoint(run.last)
        saved = checkpoint["config"]
        for key, value in given.items():
            if key not in RESUMABLE and saved.get(key) != value:
                raise UsageError(f"--resume continues run {run.name} as it was configured, but --{key} "
                                 f"{value} differs from its {saved.get(key)}: leave --{key} out, or "
                                 "start a new run with --run NAME")
        cfg = {**saved, **{k: v for k, v in given.items() if k in RESUMABLE}}
        if checkpoint["epoch"] >= cfg["epochs"]:
            raise UsageError(f"run {run.name} already finished its {cfg['epochs']} epochs: "
                             "pass a larger --epochs to go on")
    elif run.exists() and not overwrite:
        raise UsageError(f"run {run.name} exists ({run.ckpt_dir}, {run.log_dir}): add --resume to "
                         "continue it, --overwrite to replace it, or choose another --run")
    _check_numbers(cfg)

    # Build everything before touching any file, so a bad option changes nothing on disk.
    device = resolve_device(cfg["device"])
    amp = bool(cfg["amp"]) and device.type == "cuda"
    if cfg["amp"] and not amp:
        log.warning("--amp needs a CUDA device; training in float32 on %s", device)
    seed_everything(cfg["seed"])
    data = load_dataset(cfg["dataset"], cfg["data_dir"])
    splits = make_splits(data, cfg["val_fraction"], cfg["subset"])
    name, options = model_spec(cfg)
    model = get_model(name, data.in_shape, data.num_classes, **options).to(device)
    encode = partial(get_encoder(cfg["encoding"]), time_steps=cfg["time_steps"])
    loss_fn = get_loss(cfg["loss"], cfg["time_steps"], model.spiking)
    optimizer = get_optimizer(cfg["optimizer"], model.parameters(), cfg["lr"],
                              cfg["weight_decay"], cfg["momentum"])
    scheduler = get_scheduler(cfg["scheduler"], optimizer, cfg["epochs"], cfg["step_size"],
                              cfg["milestones"], cfg["gamma"])
    scaler = torch.amp.GradScaler("cuda") if amp else None
    num_params = sum(p.numel() for p in model.parameters())
    model_kwargs = {"in_shape": list(data.in_shape), "num_classes": data.num_classes,
                    **{k: v for k, v in options.items() if v is not None}}

    if overwrite:
        shutil.rmtree(run.ckpt_dir, ignore_errors=True)
        shutil.rmtree(run.log_dir, ignore_errors=True)
    run.ckpt_dir.mkdir(parents=True, exist_ok=True)
    run.log_dir.mkdir(parents=True, exist_ok=True)
    file_log = logging.FileHandler(run.train_log)
    file_log.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger("snnclf").addHandler(file_log)
    try:
        if checkpoint is not None:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(checkpoint["scheduler"])
            if scaler is not None and checkpoint.get("scaler"):
                scaler.load_state_dict(checkpoint["scaler"])
            start, best = checkpoint["epoch"] + 1, (checkpoint["best_val_accuracy"], checkpoint["best_epoch"])
            rows = [r for r in read_metrics(run.metrics) if r["epoch"] < start] if run.metrics.exists() else []
            set_rng_state(checkpoint["rng"])
            log.info("resuming run %s at epoch %d of %d", run.name, start, cfg["epochs"])
        else:
            write_json(run.config, {**cfg, "model_name": name, "in_shape": list(data.in_shape),
                                    "num_classes": data.num_classes, "class_names": data.class_names,
                                    "num_params": num_params, "num_train": len(splits["train"]),
                                    "num_val": len(splits["val"]), "num_test": len(splits["test"]),
                                    "snnclf_version": __version__, "torch_version": torch.__version__})
            start, best, rows = 1, (-1.0, 0), []
            log.info("run %s: %s (%s parameters) on %s (%d train, %d val images), T=%d, %s encoding, "
                     "device %s", run.name, name if name != "arch" else cfg["arch"], f"{num_params:,}",
                     cfg["dataset"], len(splits["train"]), len(splits["val"]), cfg["time_steps"],
                     cfg["encoding"], device)

        for epoch in range(start, cfg["epochs"] + 1):
            began = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            loader = make_loader(splits["train"], cfg["batch_size"], shuffle=True,
                                 seed=cfg["seed"] * 10_000 + epoch)
            tr = train_one_epoch(model, loader, encode, loss_fn, optimizer, device, scaler=scaler,
                                 amp=amp, grad_clip=cfg["grad_clip"], epoch=epoch,
                                 desc=f"epoch {epoch}/{cfg['epochs']}")
            va = evaluate(model, make_loader(splits["val"], cfg["batch_size"]), encode, loss_fn,
                          device, data.num_classes, amp=amp, desc="validate")
            if scheduler is not None:
                scheduler.step()
            seconds = time.perf_counter() - began
            rows.append({"epoch": epoch, "train_loss": tr["loss"], "train_accuracy": tr["accuracy"],
                         "val_loss": va["loss"], "val_accuracy": va["accuracy"], "lr": lr,
                         "seconds": round(seconds, 3), "spikes_per_sample": tr["spikes_per_sample"]})
            improved = va["accuracy"] > best[0]
            if improved:
                best = (va["accuracy"], epoch)
            checkpoint = {
                "format": FORMAT, "version": VERSION, "model_name": name, "model_kwargs": model_kwargs,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "epoch": epoch, "best_val_accuracy": best[0], "best_epoch": best[1],
                "metrics": rows[-1], "config": cfg, "class_names": data.class_names,
                "rng": rng_state(), "snnclf_version": __version__,
            }
            write_metrics(run.metrics, rows)
            if improved:
                save_checkpoint(checkpoint, run.best)
            save_checkpoint(checkpoint, run.last)
            log.info("epoch %d/%d  train loss %.4f acc %.2f%%  val loss %.4f acc %.2f%%  %.1fs%s",
                     epoch, cfg["epochs"], tr["loss"], 100 * tr["accuracy"], va["loss"],
                     100 * va["accuracy"], seconds, "  (best)" if improved else "")
        log.info("run %s: best validation accuracy %.2f%% at epoch %d; test it with: snnclf eval "
                 "--run %s", run.name, 100 * best[0], best[1], run.name)
        return {"run": run.name, "best_val_accuracy": best[0], "best_epoch": best[1]}
    except KeyboardInterrupt:
        if checkpoint is None:
            log.warning("interrupted before the first epoch ended: nothing to resume")
        else:
            log.warning("interrupted: last.pt holds epoch %d of %d; go on with: snnclf train --run %s "
                        "--save_dir %s --log_dir %s --resume", checkpoint["epoch"], cfg["epochs"],
                        run.name, cfg["save_dir"], cfg["log_dir"])
        raise
    finally:
        logging.getLogger("snnclf").removeHandler(file_log)
        file_log.close()
