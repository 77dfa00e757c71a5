"""The train command: build data, model, loss and optimizer from a config, run the epochs, keep
the run's checkpoints and metric files, resume a run from its ``last.pt``."""
import logging
import shutil
import signal
import threading
import time
from functools import partial

import torch

from . import __version__, distributed
from .data import EVENT_OPTIONS, get_encoder, is_event_dataset, load_dataset, make_loader, make_splits
from .data.augment import random_shift
from .engine import evaluate, new_totals, summarize, train_one_epoch
from .errors import Interrupted, UsageError
from .losses import get_loss
from .models import compile_model, get_model
from .models.neurons import NEURON_OPTIONS
from .optim import get_optimizer, get_scheduler
from .presets import preset_flags
from .runs import (FORMAT, VERSION, load_checkpoint, open_run, read_metrics, save_checkpoint,
                   selection_key, write_json, write_metrics)
from .utils import resolve_device, rng_state, seed_everything, set_rng_state

log = logging.getLogger(__name__)

# The defaults of `snnclf train`; ``None`` leaves the choice to the model, loss or optimizer.
DEFAULTS = {
    "preset": None, "dataset": "digits", "data_dir": "data", "val_fraction": 0.1, "subset": None,
    "encoding": None, "time_steps": 8,
    "denoise_us": None, "downsample": None, "first_saccade_only": None, "cache_dir": None,
    "model": "csnn", "arch": None, "batch_norm": None, "dropout": None,
    **{name: None for name in NEURON_OPTIONS},
    "loss": None, "optimizer": "adam", "lr": None, "weight_decay": None, "momentum": None,
    "scheduler": None, "step_size": None, "milestones": None, "gamma": None,
    "shift": 0, "epochs": 30, "batch_size": 64, "seed": 0, "device": "auto", "amp": False, "compile": False,
    "grad_clip": None,
    "run": None, "save_dir": "checkpoints", "log_dir": "logs",
}
MODEL_KEYS = ("batch_norm", "dropout") + NEURON_OPTIONS
# What may change when a run is resumed: how long it goes on and where it runs.
RESUMABLE = {"epochs", "device", "amp", "compile", "save_dir", "log_dir", "run", "data_dir", "cache_dir"}


def default_run_name(cfg):
    encoding = "" if cfg["encoding"] in ("direct", "events") else f"-{cfg['encoding']}"
    preset = "-preset" if cfg.get("preset") else ""
    return f"{cfg['dataset']}-{cfg['model']}{encoding}-T{cfg['time_steps']}{preset}"


def resolve_encoding(dataset, encoding):
    """Event data sets take their frames as they are (``events``); static ones default to direct."""
    if is_event_dataset(dataset):
        if encoding not in (None, "events"):
            raise UsageError(f"--encoding {encoding} does not apply to event data set {dataset}: its "
                             "frames are the input spikes; leave --encoding out")
        return "events"
    if encoding == "events":
        raise UsageError(f"--encoding events needs an event data set, not {dataset}")
    return encoding or "direct"


def load_data(cfg, time_steps=None, data_dir=None):
    """The run's data set, with its event options; ``time_steps``/``data_dir`` override the run's."""
    return load_dataset(cfg["dataset"], data_dir or cfg["data_dir"],
                        time_steps=time_steps or cfg["time_steps"],
                        **{k: cfg.get(k) for k in EVENT_OPTIONS})


def model_spec(cfg):
    """(registered name, keyword options) of the model a config asks for."""
    options = {k: cfg.get(k) for k in MODEL_KEYS}
    if cfg["model"] == "arch":
        if not cfg.get("arch"):
            raise UsageError("--model arch needs --arch SPEC, e.g. --arch 12C5-MP2-64C5-MP2-FC10")
        return "arch", {"spec": cfg["arch"], **options}
    return cfg["model"], options


def _check_numbers(cfg):
    for key, low in (("time_steps", 1), ("epochs", 1), ("batch_size", 1), ("shift", 0)):
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
    preset = preset_flags(given["preset"]) if given.get("preset") else {}
    cfg = {**DEFAULTS, **preset, **given}  # flags given on the command line win over the preset's
    cfg["encoding"] = resolve_encoding(cfg["dataset"], cfg["encoding"])
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
        # DEFAULTS first: a run saved by an older snnclf lacks the newer keys
        cfg = {**DEFAULTS, **saved, **{k: v for k, v in given.items() if k in RESUMABLE}}
        if cfg["epochs"] != saved["epochs"] and (saved.get("scheduler") == "cosine" or (
                saved.get("scheduler") == "step" and not saved.get("step_size"))):
            raise UsageError(f"run {run.name}'s --scheduler {saved['scheduler']} was laid out over its "
                             f"{saved['epochs']} epochs; resume it with those, or start a new run")
        if checkpoint["epoch"] >= cfg["epochs"] and not checkpoint.get("partial"):
            raise UsageError(f"run {run.name} already finished its {cfg['epochs']} epochs: "
                             "pass a larger --epochs to go on")
    elif run.exists() and not overwrite:
        raise UsageError(f"run {run.name} exists ({run.ckpt_dir}, {run.log_dir}): add --resume to "
                         "continue it, --overwrite to replace it, or choose another --run")
    _check_numbers(cfg)
    ctx = distributed.from_environment()
    try:
        summary = _train(cfg, run, checkpoint, overwrite, ctx)
        ctx.barrier()  # rank 0 may still be writing: leave the group together
        return summary
    finally:
        distributed.teardown(ctx)


def _train(cfg, run, checkpoint, overwrite, ctx):
    """The run itself, in each of ``ctx.world`` processes (one without torchrun)."""
    # Build everything before touching any file, so a bad option changes nothing on disk.
    device = distributed.setup(ctx, resolve_device(cfg["device"]))
    amp = bool(cfg["amp"]) and device.type == "cuda"
    if cfg["amp"] and not amp:
        log.warning("--amp needs a CUDA device; training in float32 on %s", device)
    seed_everything(cfg["seed"])  # the same initial weights in every process
    if not ctx.is_main:
        ctx.barrier()  # rank 0 builds simulated data and frame caches first; the others read them
    data = load_data(cfg)
    if ctx.is_main:
        ctx.barrier()
    splits = make_splits(data, cfg["val_fraction"], cfg["subset"])
    name, options = model_spec(cfg)
    model = get_model(name, data.in_shape, data.num_classes, **options).to(device)
    encode = partial(get_encoder(cfg["encoding"]), time_steps=cfg["time_steps"])
    augment = partial(random_shift, pixels=cfg["shift"]) if cfg["shift"] else None
    loss_fn = get_loss(cfg["loss"], cfg["time_steps"], model.spiking)
    optimizer = get_optimizer(cfg["optimizer"], model.parameters(), cfg["lr"],
                              cfg["weight_decay"], cfg["momentum"])
    scheduler = get_scheduler(cfg["scheduler"], optimizer, cfg["epochs"], cfg["step_size"],
                              cfg["milestones"], cfg["gamma"])
    scaler = torch.amp.GradScaler("cuda") if amp else None
    num_params = sum(p.numel() for p in model.parameters())
    model_kwargs = {"in_shape": list(data.in_shape), "num_classes": data.num_classes,
                    **{k: v for k, v in options.items() if v is not None}}
    if ctx.enabled:  # rate spikes and dropout must differ between processes
        seed_everything(cfg["seed"] + 7919 * ctx.rank)

    ctx.barrier()  # every process has checked the run's folders before the first one writes
    file_log = None
    if ctx.is_main:
        if overwrite:
            shutil.rmtree(run.ckpt_dir, ignore_errors=True)
            shutil.rmtree(run.log_dir, ignore_errors=True)
        run.prepare()
        file_log = logging.FileHandler(run.train_log)
        file_log.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logging.getLogger("snnclf").addHandler(file_log)

    def snapshot(epoch, rows, best, midway=None):
        """The checkpoint after ``epoch`` whole epochs (and ``midway``: steps into the next).
        Every process calls it: the random-number states of all of them are gathered."""
        rngs = ctx.gather(rng_state())
        return {
            "format": FORMAT, "version": VERSION, "model_name": name, "model_kwargs": model_kwargs,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "epoch": epoch, "partial": midway, "best_val_accuracy": best[0], "best_epoch": best[1],
            "best_val_loss": best[2],
            "metrics": rows[-1] if rows else None, "config": cfg, "class_names": data.class_names,
            "rng": rngs[0], "rng_per_process": rngs if ctx.enabled else None,
            "snnclf_version": __version__,
        }

    def combined(result):
        """Loss, accuracy and spikes over the samples of every process."""
        keys = ("loss", "correct", "spikes", "seen")
        totals = {**result["totals"], **dict(zip(keys, ctx.sum([result["totals"][k] for k in keys])))}
        return {**result, **summarize(totals), "totals": totals}

    def save(obj, path):
        if ctx.is_main:
            save_checkpoint(obj, path)

    net, eval_net = distributed.wrap(ctx, model, device), model
    if cfg["compile"]:  # the state dicts saved stay those of ``model``, without compiler prefixes
        net, eval_net = compile_model(net), compile_model(model)
    resume_hint = (f"go on with: snnclf train --run {run.name} --save_dir {cfg['save_dir']} "
                   f"--log_dir {cfg['log_dir']} --resume" if not ctx.enabled else
                   f"go on with the same torchrun command and: -m snnclf train --run_name {run.name} "
                   f"--save_dir {cfg['save_dir']} --log_dir {cfg['log_dir']} --resume")
    try:
        midway = None  # an epoch interrupted mid-way: its number, running totals and seconds
        if checkpoint is not None:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(checkpoint["scheduler"])
            if scaler is not None and checkpoint.get("scaler"):
                scaler.load_state_dict(checkpoint["scaler"])
            midway = checkpoint.get("partial")
            if midway and not ctx.is_main:  # the saved totals are all processes' sums: rank 0 carries them
                midway = {**midway, "totals": {**new_totals(), "steps": midway["totals"]["steps"]}}
            start = checkpoint["epoch"] + 1
            best = (checkpoint["best_val_accuracy"], checkpoint["best_epoch"],
                    checkpoint.get("best_val_loss", float("inf")))
            rows = [r for r in read_metrics(run.metrics) if r["epoch"] < start] if run.metrics.exists() else []
            per_process = checkpoint.get("rng_per_process")
            if per_process and len(per_process) == ctx.world:
                set_rng_state(per_process[ctx.rank])
            else:
                set_rng_state(checkpoint["rng"])
                if ctx.enabled:
                    seed_everything(cfg["seed"] + 7919 * ctx.rank + start)
            log.info("resuming run %s at epoch %d of %d%s", run.name, start, cfg["epochs"],
                     f", step {midway['totals']['steps'] + 1}" if midway else "")
        else:
            if ctx.is_main:
                write_json(run.config, {**cfg, "model_name": name, "in_shape": list(data.in_shape),
                                        "num_classes": data.num_classes, "class_names": data.class_names,
                                        "num_params": num_params, "num_train": len(splits["train"]),
                                        "num_val": len(splits["val"]), "num_test": len(splits["test"]),
                                        "processes": ctx.world,
                                        "global_batch_size": cfg["batch_size"] * ctx.world,
                                        "snnclf_version": __version__, "torch_version": torch.__version__})
            start, best, rows = 1, (-1.0, 0, float("inf")), []  # (accuracy, epoch, loss)
            log.info("run %s: %s (%s parameters) on %s (%d train, %d val images), T=%d, %s encoding, "
                     "device %s%s", run.name, name if name != "arch" else cfg["arch"], f"{num_params:,}",
                     cfg["dataset"], len(splits["train"]), len(splits["val"]), cfg["time_steps"],
                     cfg["encoding"], device,
                     f", {ctx.world} processes x batch {cfg['batch_size']} = global batch "
                     f"{ctx.world * cfg['batch_size']}" if ctx.enabled else "")

        with StopOnSignal() as stop:
            for epoch in range(start, cfg["epochs"] + 1):
                began = time.perf_counter() - (midway["seconds"] if midway else 0.0)
                totals = midway["totals"] if midway else None
                lr = optimizer.param_groups[0]["lr"]
                loader = make_loader(splits["train"], cfg["batch_size"], shuffle=True,
                                     seed=cfg["seed"] * 10_000, epoch=epoch,
                                     skip=totals["steps"] if totals else 0, rank=ctx.rank, world=ctx.world)
                midway = None
                tr = train_one_epoch(net, loader, encode, loss_fn, optimizer, device, scaler=scaler,
                                     augment=augment,
                                     amp=amp, grad_clip=cfg["grad_clip"], epoch=epoch, totals=totals,
                                     should_stop=lambda: ctx.any(stop()), any_rank=ctx.any,
                                     progress=ctx.is_main, desc=f"epoch {epoch}/{cfg['epochs']}")
                if tr["stopped"]:
                    seconds = time.perf_counter() - began
                    tr = combined(tr)
                    save(snapshot(epoch - 1, rows, best, {"epoch": epoch, "totals": tr["totals"],
                                                          "seconds": seconds}), run.last)
                    log.warning("interrupted in epoch %d after step %d: saved %s; %s", epoch,
                                tr["totals"]["steps"], run.last, resume_hint)
                    raise Interrupted(stop.signum or signal.SIGINT)
                tr = combined(tr)
                if cfg["compile"] and epoch == start:
                    log.info("torch.compile: the first training step took %.1f s, the others %.3f s on "
                             "average (compiling is the difference)", tr["first_step_seconds"],
                             tr["step_seconds"])
                va = combined(evaluate(eval_net, make_loader(splits["val"], cfg["batch_size"], rank=ctx.rank,
                                                          world=ctx.world),
                                       encode, loss_fn, device, data.num_classes, amp=amp, desc="validate",
                                       progress=ctx.is_main))
                if scheduler is not None:
                    scheduler.step()
                seconds = time.perf_counter() - began
                rows.append({"epoch": epoch, "train_loss": tr["loss"], "train_accuracy": tr["accuracy"],
                             "val_loss": va["loss"], "val_accuracy": va["accuracy"], "lr": lr,
                             "seconds": round(seconds, 3), "data_seconds": round(tr["data_seconds"], 3),
                             "spikes_per_sample": tr["spikes_per_sample"]})
                improved = selection_key(va["accuracy"], va["loss"]) > selection_key(best[0], best[2])
                if improved:
                    best = (va["accuracy"], epoch, va["loss"])
                checkpoint = snapshot(epoch, rows, best)
                if ctx.is_main:
                    write_metrics(run.metrics, rows)
                if improved:
                    save(checkpoint, run.best)
                save(checkpoint, run.last)
                log.info("epoch %d/%d  train loss %.4f acc %.2f%%  val loss %.4f acc %.2f%%  %.1fs%s",
                         epoch, cfg["epochs"], tr["loss"], 100 * tr["accuracy"], va["loss"],
                         100 * va["accuracy"], seconds, "  (best)" if improved else "")
                if ctx.any(stop()) and epoch < cfg["epochs"]:
                    log.warning("interrupted after epoch %d: saved %s; %s", epoch, run.last, resume_hint)
                    raise Interrupted(stop.signum or signal.SIGINT)
        if ctx.is_main:
            from .viz.reports import training_curves

            training_curves(run)
        log.info("run %s: best validation accuracy %.2f%% at epoch %d; test it with: snnclf eval "
                 "--run %s", run.name, 100 * best[0], best[1], run.name)
        return {"run": run.name, "best_val_accuracy": best[0], "best_epoch": best[1]}
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once; last.pt is the last one saved
        log.warning("stopped at once: %s holds the last saved state; %s", run.last, resume_hint)
        raise
    finally:
        if file_log is not None:
            logging.getLogger("snnclf").removeHandler(file_log)
            file_log.close()


class StopOnSignal:
    """While active, SIGINT (Ctrl-C) and SIGTERM ask training to stop after the current step, so
    that ``last.pt`` can be saved; the same signal a second time stops at once. Calling it says whether a stop
    was asked. Outside the main thread (where Python cannot take signals) it never asks."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __call__(self):
        return self.signum is not None

    def _handle(self, signum, frame):
        if self.signum == signum:  # the same signal twice: stop now (torchrun follows Ctrl-C
            raise KeyboardInterrupt  # with a SIGTERM of its own, which must not count as a second)
        if self.signum is not None:
            return
        self.signum = signum
        log.warning("%s: stopping after this step to save last.pt (again to stop at once)",
                    signal.Signals(signum).name)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
