"""The train command: build a run from its configuration, run the epochs, keep the run's
checkpoints and metric files, and resume a run from its ``last.pt``.

Read from the top down: :func:`train` resolves the configuration and the run's folders,
:func:`_run` builds the parts (:func:`_build`), restores or starts the run's
:class:`~snnclf.runs.RunState`, and goes through the epochs; each epoch is :func:`_epoch`. What a
checkpoint and ``config.json`` hold is :mod:`snnclf.runs`'s."""
import contextlib
import logging
import shutil
import signal
import threading
import time
from dataclasses import dataclass

import torch

from . import board, distributed
from .builders import (build_augment, build_loss, build_model, build_optimizer, build_regularizer, check_memory,
                       load_data, make_encoder)
from .config import RunConfig, check_chip, resolve
from .data import make_loader, make_splits
from .engine import evaluate, mean_rates, new_totals, summarize, train_one_epoch
from .errors import Interrupted, NonFiniteLoss, UsageError, write_error
from .flags import given as given_values
from .models import compile_model
from .runs import (RunLock, RunState, WriteError, check_keys, config_record, load_checkpoint, make_checkpoint,
                   midway, open_run, read_metrics, restore, save_checkpoint, write_json, write_metrics)
from .utils import resolve_device, rng_state, seed_everything, set_rng_state
from .viz.reports import training_curves

log = logging.getLogger(__name__)

PROCESS_SEED_STRIDE = 7919  # a prime: process k draws rate spikes and dropout from seed + k * 7919


def process_seed(seed, rank):
    """The seed of process ``rank`` under torchrun (rate spikes and dropout must differ between
    processes)."""
    return seed + PROCESS_SEED_STRIDE * rank


@dataclass
class Parts:
    """What a run is built of, in each process."""

    cfg: RunConfig
    data: object
    splits: dict
    model: torch.nn.Module  # the plain model: its state dict is what checkpoints keep
    model_name: str
    model_kwargs: dict
    net: torch.nn.Module  # what trains: the model, in DDP and/or compiled
    eval_net: torch.nn.Module
    encode: object
    augment: object
    loss_fn: object
    regularizer: object  # --rate_reg, or None
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: object
    device: torch.device
    amp: bool


def train(flags, epoch_callback=None, again=None):
    """Train a run. ``flags`` holds the options the user gave (see :func:`resolve`), and
    ``resume``/``overwrite``. Returns a summary dict (run name, best validation accuracy, its
    epoch, and ``stopped_at``: the epoch after which ``epoch_callback(epoch, row)`` asked the run
    to stop early, a search's pruning; ``None`` when it ran all its epochs). ``again``: how an
    interrupted run goes on where it is not ``snnclf train --resume`` (a study's trial: its command).

    Nothing the user had is lost: the parts are built (and the memory the run needs checked)
    before any file is touched; the run is locked against other snnclf processes; ``--overwrite``
    moves the old run aside and deletes it only once the new one has saved a checkpoint."""
    cfg, rest = resolve(flags)
    resume, overwrite = rest.get("resume", False), rest.get("overwrite", False)
    if resume and overwrite:
        raise UsageError("--resume continues a run and --overwrite replaces it: give one of them")
    given = {k: v for k, v in given_values(flags).items() if k not in (*rest, "config")}
    run = open_run(cfg.run, cfg.save_dir, cfg.log_dir)
    ctx = distributed.from_environment()
    checkpoint = None
    if resume:
        checkpoint, cfg = _to_resume(run, given, ctx)
    else:
        _check_new(run, overwrite)
    try:
        parts = _build(cfg, ctx)
        with _locked(run, ctx):
            if resume:  # read again under the lock: another process may have gone on meanwhile
                checkpoint, cfg = _to_resume(run, given, ctx)
            else:
                _check_new(run, overwrite)
            summary = _run(parts, run, checkpoint, overwrite, ctx, epoch_callback, again)
        ctx.barrier()  # rank 0 may still be writing: leave the group together
        return summary
    finally:
        parts = None  # its DDP model holds the process group, which teardown lets go
        distributed.teardown(ctx)


@contextlib.contextmanager
def _locked(run, ctx):
    """The run's lock, held by the process that writes (rank 0); every process fails together."""
    lock = RunLock(run, create=True) if ctx.is_main else contextlib.nullcontext()
    failure = None
    try:
        lock.__enter__()
    except UsageError as err:
        failure = err
    if ctx.any(failure is not None):
        raise failure or UsageError(f"run {run.name} could not be locked by rank 0; see its message")
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def _check_new(run, overwrite):
    """A new run must not exist unless it is to be replaced."""
    if run.exists() and not overwrite:
        if not run.last.is_file():
            raise UsageError(f"run {run.name} exists ({run.ckpt_dir}, {run.log_dir}) but has no checkpoint "
                             "(it stopped before its first save): start it again with --overwrite, or "
                             "choose another --run")
        raise UsageError(f"run {run.name} exists ({run.ckpt_dir}, {run.log_dir}): add --resume to "
                         "continue it, --overwrite to replace it, or choose another --run")


def _to_resume(run, given, ctx):
    """The checkpoint ``--resume`` continues and the run's configuration, checked."""
    if not run.last.is_file() and run.exists():
        raise UsageError(f"run {run.name} has no checkpoint to resume ({run.last} is missing: it stopped "
                         "before its first save): start it again with --overwrite")
    checkpoint = load_checkpoint(run.last)
    check_keys(checkpoint, run.last, ("config", "epoch", "model", "optimizer", "best_val_accuracy",
                                      "best_epoch", "rng"))
    saved = checkpoint["config"].get("run")
    if saved != run.name:
        raise UsageError(f"{run.last} is a checkpoint of run {saved} ({checkpoint['config'].get('model')}), "
                         f"not of run {run.name}: put run {run.name}'s own last.pt back, or start it again "
                         "with --overwrite")
    cfg = RunConfig.from_dict(checkpoint["config"]).resumed(given)
    _check_resumable(checkpoint, cfg, run, ctx)
    return checkpoint, cfg


def _check_resumable(checkpoint, cfg, run, ctx):
    """Refuse a resume that cannot continue the run exactly: a finished run, or another number of
    processes (the global batch, the data each process sees and its random states would change)."""
    if checkpoint["epoch"] >= cfg.epochs and not midway(checkpoint):
        raise UsageError(f"run {run.name} already finished its {cfg.epochs} epochs: "
                         "pass a larger --epochs to go on")
    processes = len(checkpoint.get("rng_per_process") or [None])
    if processes != ctx.world:
        how = (f"torchrun --nproc_per_node {processes} ... -m snnclf train --run_name {run.name} --resume"
               if processes > 1 else f"snnclf train --run {run.name} --resume, without torchrun")
        raise UsageError(f"run {run.name} was trained by {processes} process{'es' if processes > 1 else ''} "
                         f"(global batch {processes * cfg.batch_size}) and cannot go on exactly with "
                         f"{ctx.world}: resume it with {how}, or start a new run")


def _build(cfg, ctx):
    """Every part of the run, built before any file is touched (a bad option changes nothing on disk)."""
    if cfg.tensorboard:
        board.check_installed()
    device = distributed.setup(ctx, resolve_device(cfg.device))
    amp = cfg.amp and device.type == "cuda"
    if cfg.amp and not amp:
        log.warning("--amp needs a CUDA device; training in float32 on %s", device)
    checked_chip = check_chip(cfg)  # before any data is read, where the data set's shape is known
    seed_everything(cfg.seed)  # the same initial weights in every process
    if not ctx.is_main:
        ctx.barrier()  # rank 0 builds simulated data and frame caches first; the others read them
    data = load_data(cfg, train_only=True)  # the test split is for eval alone
    if ctx.is_main:
        ctx.barrier()
    if not checked_chip:
        check_chip(cfg, data)
    splits = make_splits(data, cfg.val_fraction, cfg.subset)
    sized = cfg.sized(len(splits["train"]), ctx.world)
    if sized.epochs != cfg.epochs:
        log.info("%d epochs instead of %d: --min_steps %d on %d training samples at batch size %d",
                 sized.epochs, cfg.epochs, cfg.min_steps, len(splits["train"]), cfg.batch_size)
        cfg = sized
    model, name, kwargs = build_model(cfg, data)
    model = model.to(device)
    check_memory(model, data.in_shape, cfg.time_steps, cfg.batch_size, device, training=True)
    if ctx.enabled:  # batch statistics over every process's batch, as in one process
        distributed.sync_batch_norm(model)
    loss_fn = build_loss(cfg, model)
    optimizer, scheduler = build_optimizer(cfg, model)
    net, eval_net = distributed.wrap(ctx, model, device), model
    if cfg.compile:  # the state dicts saved stay those of ``model``, without compiler prefixes
        net, eval_net = compile_model(net), compile_model(model)
    return Parts(cfg, data, splits, model, name, kwargs, net, eval_net, make_encoder(cfg),
                 build_augment(cfg, data.in_shape), loss_fn, build_regularizer(cfg), optimizer,
                 scheduler, torch.amp.GradScaler("cuda") if amp else None, device, amp)


def _open_log(run, overwrite):
    """Create the run's folders and send the log to its train.log. With ``overwrite`` the old
    run's folders are moved aside first (returned: dropped once the new run has a checkpoint)."""
    aside = run.replace_aside() if overwrite else None
    try:
        run.prepare()
        handler = logging.FileHandler(run.train_log)
    except (UsageError, OSError) as err:
        if aside is not None:
            aside.restore()
        raise err if isinstance(err, UsageError) else write_error(
            run.train_log, err, "choose another --log_dir", "another --log_dir") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger("snnclf").addHandler(handler)
    return handler, aside


def _run(parts, run, checkpoint, overwrite, ctx, epoch_callback=None, again=None):
    """The run itself, in each of ``ctx.world`` processes (one without torchrun)."""
    cfg = parts.cfg
    if ctx.enabled:
        seed_everything(process_seed(cfg.seed, ctx.rank))
    ctx.barrier()  # every process has checked the run's folders before the first one writes
    file_log, aside = _open_log(run, overwrite) if ctx.is_main else (None, None)
    new = checkpoint is None
    tensorboard, stopped_at = None, None
    try:
        state = _restore(checkpoint, parts, run, ctx) if checkpoint else _start(parts, run, ctx)
        if cfg.tensorboard and ctx.is_main:
            tensorboard = board.Board(run.log_dir, first_epoch=state.epoch + 1)
        with StopOnSignal(run.name) as stop:
            start = state.epoch + 1
            for epoch in range(start, cfg.epochs + 1):
                _epoch(epoch, state, parts, run, ctx, stop, _resume_hint(cfg, run, ctx, again), first=epoch == start,
                       tensorboard=tensorboard)
                if aside is not None:  # the new run has a checkpoint: the old one can go
                    aside.drop()
                # every rank asks; a run that has trained all its epochs is finished, not stopped early
                row = state.rows[-1]
                asked = epoch_callback is not None and ctx.any(ctx.is_main and bool(epoch_callback(epoch, row)))
                if asked and epoch < cfg.epochs:
                    stopped_at = epoch
                    log.info("run %s: stopped after epoch %d of %d (pruned by the search)", run.name, epoch,
                             cfg.epochs)
                    break
                if ctx.any(stop(epoch)) and epoch < cfg.epochs:
                    log.warning("interrupted after epoch %d: saved %s; %s", epoch, run.last,
                                _resume_hint(cfg, run, ctx, again))
                    raise Interrupted(stop.signum or signal.SIGINT)
        if ctx.is_main:
            curves = training_curves(run)
            if tensorboard is not None:
                last = state.rows[-1]
                tensorboard.finish(cfg.hparams(),
                                   {"best_val_accuracy": state.best_accuracy, "best_epoch": state.best_epoch,
                                    "final_train_loss": last["train_loss"],
                                    "spikes_per_sample": last["spikes_per_sample"]}, [curves])
        log.info("run %s: best validation accuracy %.2f%% at epoch %d; test it with: snnclf eval "
                 "--run %s", run.name, 100 * state.best_accuracy, state.best_epoch, run.name)
        if stop.signum is not None:  # asked during the last epoch's validation: the run is whole
            log.warning("run %s finished its %d epochs; stopping on %s", run.name, cfg.epochs,
                        signal.Signals(stop.signum).name)
            raise Interrupted(stop.signum)
        return {"run": run.name, "best_val_accuracy": state.best_accuracy, "best_epoch": state.best_epoch,
                "stopped_at": stopped_at}
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once; last.pt is the last one saved
        log.warning("stopped at once: %s holds the last saved state; %s", run.last, _resume_hint(cfg, run, ctx, again))
        raise
    except (UsageError, MemoryError, RuntimeError) as err:
        raise _failure(err, cfg, run, ctx, again) from None
    finally:
        if tensorboard is not None:
            tensorboard.close()
        if file_log is not None:
            logging.getLogger("snnclf").removeHandler(file_log)
            file_log.close()
        if ctx.is_main and not run.last.is_file():  # failed before its first checkpoint
            if aside is not None:
                aside.restore()  # --overwrite: the old run is back as it was
            elif new:
                _remove_unsaved(run)


def _remove_unsaved(run):
    """Remove the folders of a new run that never saved a checkpoint (nothing in them can be
    resumed; the error was printed)."""
    for folder in (run.ckpt_dir, run.log_dir):
        shutil.rmtree(folder, ignore_errors=True)


def _failure(err, cfg, run, ctx, again=None):
    """The one-line error of a run that failed: a memory error as such, and what to do next (go
    on with --resume where a checkpoint was saved, start again where none was)."""
    if isinstance(err, RuntimeError) and not _out_of_memory(err):
        return err  # a bug: seen whole
    if isinstance(err, (MemoryError, RuntimeError)):
        message = (f"out of memory at --time_steps {cfg.time_steps}, --batch_size {cfg.batch_size} "
                   f"({type(err).__name__}): lower either")
    else:
        message = str(err)
    if isinstance(err, (WriteError, NonFiniteLoss)) or not isinstance(err, UsageError):  # what to do next
        message += "; then " + (_resume_hint(cfg, run, ctx, again) if run.last.is_file() else
                                "start the run again (no checkpoint was saved)")
    return (type(err) if isinstance(err, UsageError) else UsageError)(message)


def _out_of_memory(err):
    text = str(err).lower()
    return isinstance(err, torch.OutOfMemoryError) or "can't allocate memory" in text or "out of memory" in text


def _resume_hint(cfg, run, ctx, again=None):
    if again:
        return f"go on with: {again}"
    if not ctx.enabled:
        return (f"go on with: snnclf train --run {run.name} --save_dir {cfg.save_dir} "
                f"--log_dir {cfg.log_dir} --resume")
    return (f"go on with the same torchrun command and: -m snnclf train --run_name {run.name} "
            f"--save_dir {cfg.save_dir} --log_dir {cfg.log_dir} --resume")


def _start(parts, run, ctx):
    """A new run: its config.json written once, its first line logged."""
    cfg, data, splits = parts.cfg, parts.data, parts.splits
    num_params = sum(p.numel() for p in parts.model.parameters())
    if ctx.is_main:
        write_json(run.config, config_record(cfg.to_dict(), parts.model_name, data, splits, num_params,
                                             ctx.world, cfg.batch_size))
    log.info("run %s: %s (%s parameters) on %s (%d train, %d val images), T=%d, %s encoding, "
             "device %s%s", run.name, cfg.arch if parts.model_name == "arch" else parts.model_name,
             f"{num_params:,}", cfg.dataset, len(splits["train"]), len(splits["val"]), cfg.time_steps,
             cfg.encoding, parts.device,
             f", {ctx.world} processes x batch {cfg.batch_size} = global batch "
             f"{ctx.world * cfg.batch_size}" if ctx.enabled else "")
    return RunState()


def _restore(checkpoint, parts, run, ctx):
    """The state ``last.pt`` holds, its weights, optimizer, schedule and random states loaded."""
    rows = read_metrics(run.metrics) if run.metrics.exists() else []
    state = restore(checkpoint, parts.model, parts.optimizer, parts.scheduler, parts.scaler, rows)
    if ctx.is_main and [r["epoch"] for r in state.rows] != list(range(1, state.epoch + 1)):
        raise UsageError(f"{run.metrics} does not hold epochs 1 to {state.epoch}, which {run.last} has done: "
                         "it is damaged; restore it, or start the run again with --overwrite")
    if state.midway and not ctx.is_main:  # the saved totals are all processes' sums: rank 0 carries them
        state.midway = {**state.midway, "totals": {**new_totals(), "steps": state.midway["totals"]["steps"]}}
    per_process = checkpoint.get("rng_per_process")  # as many as processes now (_check_resumable)
    set_rng_state(per_process[ctx.rank] if per_process else checkpoint["rng"])
    log.info("resuming run %s at epoch %d of %d%s", run.name, state.epoch + 1, parts.cfg.epochs,
             f", step {state.midway['totals']['steps'] + 1}" if state.midway else "")
    return state


def _snapshot(state, parts, ctx):
    """The checkpoint of ``state``. Every process calls it: the random-number states of all of
    them are gathered."""
    return make_checkpoint(state, parts.cfg.to_dict(), parts.model_name, parts.model_kwargs,
                           parts.data.class_names, parts.model, parts.optimizer, parts.scheduler, parts.scaler,
                           ctx.gather(rng_state()), per_process=ctx.enabled)


def _combined(result, ctx):
    """Loss, accuracy, spikes and the layers' firing rates over the samples of every process."""
    keys = ("loss", "correct", "spikes", "seen")
    mine = result["totals"]
    layers = list(mine.get("rate_sums", {}))  # in the model's order, the same on every process
    summed = ctx.sum([mine[k] for k in keys] + [mine["rate_sums"][n] for n in layers])
    totals = {**mine, **dict(zip(keys, summed))}
    if layers:
        totals["rate_sums"] = dict(zip(layers, summed[len(keys):]))
    combined = {**result, **summarize(totals), "totals": totals}
    if "rates" in result:  # a training epoch's
        combined["rates"] = mean_rates(totals, ctx.world)
    return combined


def _epoch(epoch, state, parts, run, ctx, stop, hint, first=False, tensorboard=None):
    """Train epoch ``epoch`` (from where ``state.midway`` stopped, if it did), validate, save
    ``last.pt`` (and ``best.pt`` when it improved) and append its row to metrics.csv. A stop asked
    mid-way saves the epoch's progress and raises :class:`Interrupted`. ``first``: the first
    epoch of this process, whose first step includes torch.compile's work. ``tensorboard``: the
    run's TensorBoard files (``--tensorboard``), which also get the layers' firing rates."""
    cfg = parts.cfg
    midway, state.midway = state.midway, None
    began = time.perf_counter() - (midway["seconds"] if midway else 0.0)
    totals = midway["totals"] if midway else None
    lr = parts.optimizer.param_groups[0]["lr"]
    loader = make_loader(parts.splits["train"], cfg.batch_size, shuffle=True, seed=cfg.seed * 10_000,
                         epoch=epoch, skip=totals["steps"] if totals else 0, rank=ctx.rank, world=ctx.world)
    tr = train_one_epoch(parts.net, loader, parts.encode, parts.loss_fn, parts.optimizer, parts.device,
                         scaler=parts.scaler, augment=parts.augment, amp=parts.amp, grad_clip=cfg.grad_clip,
                         epoch=epoch, totals=totals, should_stop=lambda step: ctx.any(stop(epoch, step)),
                         any_rank=ctx.any, progress=ctx.is_main, desc=f"epoch {epoch}/{cfg.epochs}",
                         regularizer=parts.regularizer)
    tr = _combined(tr, ctx)
    if ctx.any(not all(torch.isfinite(p).all() for p in parts.model.parameters())):
        # the loss can stay finite while the weights are not (a layer that no longer spikes)
        raise NonFiniteLoss(f"the weights became non-finite in epoch {epoch}: lower --lr or set --grad_clip")
    if tr["stopped"]:
        state.midway = {"epoch": epoch, "totals": tr["totals"], "seconds": time.perf_counter() - began}
        _save(_snapshot(state, parts, ctx), run.last, ctx)
        log.warning("interrupted in epoch %d after step %d: saved %s; %s", epoch, tr["totals"]["steps"],
                    run.last, hint)
        raise Interrupted(stop.signum or signal.SIGINT)
    if cfg.compile and first:
        log.info("torch.compile: the first training step took %.1f s, the others %.3f s on average "
                 "(compiling is the difference)", tr["first_step_seconds"], tr["step_seconds"])
    val_loader = make_loader(parts.splits["val"], cfg.batch_size, rank=ctx.rank, world=ctx.world)
    with tensorboard.firing_rates(parts.eval_net) if tensorboard else contextlib.nullcontext({}) as rates:
        va = _combined(evaluate(parts.eval_net, val_loader, parts.encode, parts.loss_fn, parts.device,
                                parts.data.num_classes, amp=parts.amp, desc="validate", progress=ctx.is_main), ctx)
    if parts.scheduler is not None:
        parts.scheduler.step()
    seconds = time.perf_counter() - began
    state.rows.append({"epoch": epoch, "train_loss": tr["loss"], "train_accuracy": tr["accuracy"],
                       "val_loss": va["loss"], "val_accuracy": va["accuracy"], "lr": lr,
                       "seconds": round(seconds, 3), "data_seconds": round(tr["data_seconds"], 3),
                       "spikes_per_sample": tr["spikes_per_sample"],
                       **{f"rate_{name}": round(rate, 6) for name, rate in tr["rates"].items()}})
    improved = state.improved_by(va["accuracy"], va["loss"])
    if improved:
        state.best_accuracy, state.best_epoch, state.best_loss = va["accuracy"], epoch, va["loss"]
    state.epoch = epoch
    checkpoint = _snapshot(state, parts, ctx)
    if ctx.is_main:
        write_metrics(run.metrics, state.rows)
    if improved:
        _save(checkpoint, run.best, ctx)
    _save(checkpoint, run.last, ctx)
    if tensorboard is not None:
        tensorboard.epoch(state.rows[-1], rates)
    log.info("epoch %d/%d  train loss %.4f acc %.2f%%  val loss %.4f acc %.2f%%  %.1fs%s", epoch,
             cfg.epochs, tr["loss"], 100 * tr["accuracy"], va["loss"], 100 * va["accuracy"], seconds,
             "  (best)" if improved else "")


def _save(checkpoint, path, ctx):
    if ctx.is_main:
        save_checkpoint(checkpoint, path)


class StopOnSignal:
    """While active, SIGINT (Ctrl-C) and SIGTERM ask training to stop after the current step, so
    that ``last.pt`` can be saved; the same signal a second time stops at once. Calling it with
    the epoch (and the step, after a step) says whether a stop was asked. Outside the main thread
    (where Python cannot take signals) it never asks.

    ``stop_at = (run, epoch, step)`` acts as a Ctrl-C arriving in run ``run`` (``None``: any run)
    right after that step of that epoch (``step`` ``None``: after the epoch's validation): the
    hook that lets a test stop a run at a chosen place, the way a user would."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    stop_at = None

    def __init__(self, run=None):
        self.run = run
        self.signum = None
        self._previous = {}

    def __call__(self, epoch=None, step=None):
        if self.signum is None and self.stop_at is not None:
            run, at_epoch, at_step = self.stop_at
            if run in (None, self.run) and (epoch, step) == (at_epoch, at_step):
                self.signum = signal.SIGINT
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
