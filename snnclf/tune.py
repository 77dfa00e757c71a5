"""``snnclf tune``: a search over ``snnclf train`` options, with Optuna, for the network that is
accurate, or accurate and cheap (a Pareto front of validation accuracy against energy, spikes or
synaptic operations per sample).

The search space is the train options given as ranges (``--lr 1e-4:1e-2:log``, ``--beta
0.5:0.99``) or choices (``--time_steps 2 4 8``), or a YAML file of them; options given one value
are fixed. Every point of the space is checked as a run would be before the first trial. Each
trial is an ordinary run, ``<name>-t<number>``, so eval, compare, export and predict work on it.
Trials are chosen on the validation split only (its accuracy, and the operation counts of the
best checkpoint on validation samples); the test split is read only to report the result.

The study lives in Optuna's storage: by default a journal file in ``<log_dir>/<name>/`` (nothing
to start; several processes on one machine share it), or any storage Optuna takes (``--storage
postgresql://...``, or a journal file on a shared disk) for several machines, each running the
same command. An interrupted trial is taken up again, from its ``last.pt``, by the next start;
a failed one is marked failed with its reason. Optuna is the library for the search, the
sampler and the pruner; nothing of that is written here."""
import itertools
import json
import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from . import distributed, efficiency
from .builders import check_fits_memory, load_data, make_encoder, open_trained
from .config import (LOG_DIR, SAVE_DIR, RunConfig, check_option, check_options, is_list_option, load_file,
                     option_field)
from .data import check_files, make_splits
from .errors import Interrupted, UsageError, write_error
from .flags import options
from .runs import RunInUse, check_name, open_run, read_json, write_csv, write_json, write_text
from .utils import need, resolve_device, seeded
from .viz.files import save, subplots

log = logging.getLogger(__name__)

EXTRA = "pip install 'snnclf[tune]'"
# What a study can optimise: (direction, the trial attribute that holds it, how it reads)
OBJECTIVES = {
    "accuracy": ("maximize", "val_accuracy", "validation accuracy"),
    "energy": ("minimize", "energy_uj", "energy per sample (uJ, estimate)"),
    "spikes": ("minimize", "spikes", "spikes per sample"),
    "sops": ("minimize", "sops", "synaptic operations per sample"),
}
SAMPLERS = ("tpe", "random", "nsga2")
PRUNERS = ("median", "none")
MAX_CHECKED = 4096  # combinations of choices (and range ends) checked before the first trial
MEASURED = 512  # validation samples the operation counts are taken on
AGAIN = "the same snnclf tune command (the study takes the trial up again from its last.pt)"


@dataclass(frozen=True)
class Param:
    """One searched option: a range ``(low, high)`` of ``kind`` int or float, on a log scale or
    not, or ``choices``."""

    name: str
    kind: str  # "int", "float" or "choice"
    low: float = None
    high: float = None
    log: bool = False
    choices: tuple = ()
    step: float = None  # a range of the multiples of step above low (a space file's {step: S})

    def ends(self):
        """The values whose checks stand for every point of the parameter."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]

    def suggest(self, trial):
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        suggest = trial.suggest_int if self.kind == "int" else trial.suggest_float
        return suggest(self.name, self.low, self.high, log=self.log, **({"step": self.step} if self.step else {}))

    def describe(self):
        if self.kind == "choice":
            return f"{self.name} in {{{', '.join(map(str, self.choices))}}}"
        return (f"{self.name} in [{self.low:g}, {self.high:g}]" + (" (log)" if self.log else "")
                + (f" (step {self.step:g})" if self.step else ""))


def _kind(name):
    """"int" or "float" for a numeric option (its flag parses numbers), else ``None``."""
    parse = option_field(name)[1].parse
    return getattr(parse, "kind", None)


def parse_range(name, text):
    """A :class:`Param` from ``LOW:HIGH`` or ``LOW:HIGH:log`` for numeric option ``name``."""
    parts = str(text).split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise UsageError(f"--{name} {text}: write a range as LOW:HIGH or LOW:HIGH:log")
    return make_range(name, *parts[:2], log=len(parts) == 3, shown=text)


def make_range(name, low, high, log=False, step=None, shown=None):
    """A :class:`Param` of numeric option ``name`` from ``low`` to ``high``, on a log scale or in
    steps of ``step`` (Optuna's ``suggest_float``/``suggest_int`` take one or the other), checked."""
    kind = _kind(name)
    shown = shown or f"{{low: {low}, high: {high}" + (", log: true" if log else "") + (f", step: {step}" if step
                                                                                       else "") + "}"
    if kind is None:
        raise UsageError(f"--{name} {shown}: a range needs a numeric option; give choices instead (--{name} A B)")
    if not isinstance(log, bool):
        raise UsageError(f"--{name} {shown}: log is {log!r}, not true or false (write it unquoted)")
    low, high = (check_option(name, v) for v in (low, high))
    if not low < high:
        raise UsageError(f"--{name} {shown}: the range's low end must be below its high end")
    if log and low <= 0:
        raise UsageError(f"--{name} {shown}: a log range must start above 0")
    if step is not None:
        number = (isinstance(step, (int, float)) and not isinstance(step, bool) and math.isfinite(step)
                  and (kind == "float" or float(step).is_integer()))
        if log or not number or not 0 < step <= high - low:
            raise UsageError(f"--{name} {shown}: a step is a{'n integer' if kind == 'int' else ' number'} above 0 "
                             "and at most high - low, and a range takes a step or log, not both")
        step = int(step) if kind == "int" else float(step)
    return Param(name, kind, low, high, log, step=step)


def _param(name, values):
    """What the values given for option ``name`` make: a fixed value, a range or choices."""
    if is_list_option(name):  # --milestones: its list is one fixed value
        return check_option(name, values)
    values = values if isinstance(values, list) else [values]
    if not values:  # a file's empty list
        raise UsageError(f"--{name}: an empty list; give one value or several")
    if isinstance(values[0], dict):  # a file's {low: ..., high: ..., log: ..., step: ...}
        spec = values[0]
        unknown = set(spec) - {"low", "high", "log", "step"}
        if len(values) > 1 or unknown or not {"low", "high"} <= set(spec):
            raise UsageError(f"--{name}: a range is written {{low: A, high: B}}, with log: true or step: S "
                             "if need be")
        return make_range(name, spec["low"], spec["high"], spec.get("log", False), spec.get("step"))
    if len(values) == 1 and isinstance(values[0], str) and ":" in values[0] and _kind(name):
        return parse_range(name, values[0])
    if len(values) == 1:
        return check_option(name, values[0])
    choices = tuple(dict.fromkeys(check_option(name, v) for v in values))
    return Param(name, "choice", choices=choices) if len(choices) > 1 else choices[0]


@dataclass
class Space:
    fixed: dict
    params: dict  # name -> Param

    def as_dict(self):
        return {"fixed": self.fixed, "params": {n: p.__dict__ for n, p in self.params.items()}}


def make_space(given, config=None):
    """The search space from the options given on the command line (each a list of texts, as
    typed) and the YAML file ``config`` (flags win). Checked before anything runs: every choice
    and range end is a value its flag takes, and every combination of choices and range ends is a
    run that would start (the model's options, the loss)."""
    values = dict(load_file(config)) if config else {}
    values.update(given)
    fixed, params = {}, {}
    for name, value in values.items():
        if name in ("run", "save_dir", "log_dir") and isinstance(value, list) and len(value) > 1:
            raise UsageError(f"--{name}: a study keeps its trials in one folder; give one value")
        found = _param(name, value)
        (params if isinstance(found, Param) else fixed)[name] = found
    if "run" in fixed:
        raise UsageError("a study names its trials itself: give --name instead of --run")
    for p in params.values():  # each value of an event option is a frame cache of the data set, kept
        if p.kind == "float" and not p.step and p.name in options(RunConfig, "event"):
            raise UsageError(f"--{p.name}: each value frames the data set anew into a cache of its own, and a "
                             f"range draws a new value every trial: give a few values (--{p.name} "
                             f"{p.low:g} {p.high:g}) or a range with a step ({{low: {p.low:g}, high: {p.high:g}, "
                             "step: S}} in a --config file)")
    if not params:
        raise UsageError("tune needs a search space: give an option a range or several values, e.g. "
                         "--lr 1e-4:1e-2:log --time_steps 2 4 8")
    space = Space(fixed, params)
    combinations = math.prod(len(p.ends()) for p in params.values())
    if combinations > MAX_CHECKED:
        raise UsageError(f"the space has {combinations:,} combinations of choices and range ends, more "
                         f"than the {MAX_CHECKED:,} checked before a study starts: search fewer choices")
    data = {}
    for combo in itertools.product(*(p.ends() for p in params.values())):
        point = dict(zip(params, combo))
        try:
            cfg = check_options({**fixed, **point})
            check_fits_memory(cfg)
        except UsageError as err:
            where = ", ".join(f"{k}={v}" for k, v in point.items())
            raise UsageError(f"the point {where} of the space is not a valid run ({err}): narrow the space") from None
        data[(cfg.dataset, cfg.data_dir)] = True
    for dataset, data_dir in data:
        check_files(dataset, data_dir, train_only=True)  # files missing: refused before the first trial
    return space


def _is_journal(path):
    """Whether ``path`` starts with an Optuna journal record (a JSON object with an op_code)."""
    try:
        with open(path, "rb") as f:
            first = json.loads(f.readline(1 << 20))
    except (OSError, ValueError):
        return False
    return isinstance(first, dict) and "op_code" in first


def _storage(optuna, storage, folder):
    """Optuna's storage: a URL it takes, or a journal file (the default: in the study's folder).
    An existing file given as --storage must be a journal: Optuna appends to whatever it is given,
    and a space file typed where --config was meant would be changed (an empty default journal is
    one a start interrupted after creating it left)."""
    if storage and "://" in storage:
        return storage
    path = Path(storage) if storage else folder / "study.journal"
    if path.is_dir() or (path.exists() and (storage or path.stat().st_size) and not _is_journal(path)):
        raise UsageError(f"--storage {path} exists and is not an Optuna journal (nothing was written to it): "
                         "name a new file, or a study's journal" + ("; a space file goes to --config" if storage
                                                                    else ""))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(path, err, "choose another --storage or --log_dir, or fix its permissions",
                          "another --storage or --log_dir") from None
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


def _seed_per_trial(optuna, sampler, seed):
    """Make ``sampler`` draw each trial's point from ``seed`` and the trial's number: a sampler
    seeded once repeats its draws in every worker that shares the study (t000 and t001 the same
    point), and again in a study started anew. One worker still repeats its study's choices."""
    def reseed(found, key):
        for value in vars(found).values():
            if isinstance(getattr(value, "rng", None), np.random.RandomState):  # Optuna's random states
                value.rng.seed(key)
            elif isinstance(value, optuna.samplers.BaseSampler):  # a sampler inside (TPE's random one)
                reseed(value, key)
    before = sampler.before_trial

    def before_trial(study, trial):
        reseed(sampler, int(np.random.SeedSequence([seed, trial.number]).generate_state(1)[0]))
        before(study, trial)
    sampler.before_trial = before_trial


def _study(optuna, name, space, objectives, storage, folder, sampler, sampler_seed, pruner):
    directions = [OBJECTIVES[o][0] for o in objectives]
    if sampler == "random":
        chosen = optuna.samplers.RandomSampler(seed=sampler_seed)
    elif sampler == "nsga2":
        chosen = optuna.samplers.NSGAIISampler(seed=sampler_seed)
    else:
        chosen = optuna.samplers.TPESampler(seed=sampler_seed)
    if sampler_seed is not None:
        _seed_per_trial(optuna, chosen, sampler_seed)
    if pruner == "median" and len(objectives) == 1:
        chosen_pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    else:  # Optuna's pruners read one intermediate value: a multi-objective study is not pruned
        chosen_pruner = optuna.pruners.NopPruner()
    where = _storage(optuna, storage, folder)
    try:
        study = optuna.create_study(storage=where, study_name=name,
                                    directions=directions, sampler=chosen, pruner=chosen_pruner,
                                    load_if_exists=True)
    except ValueError as err:  # another study of that name with other directions
        raise UsageError(f"study {name} exists with other objectives ({err}): give this one another --name") from None
    except Exception as err:  # noqa: BLE001 -- a storage URL that cannot be reached or read
        raise UsageError(f"cannot open the study's storage {storage or folder / 'study.journal'} "
                         f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    plan = json.loads(json.dumps({"space": space.as_dict(), "objectives": list(objectives)}))
    saved = study.user_attrs.get("plan")
    if saved is None:
        study.set_user_attr("plan", plan)
    elif saved != plan:
        raise UsageError(f"study {name} was started with another space or objective: give this one another "
                         "--name, or repeat that study's options")
    return study


def _measure(trained, device):
    """Validation accuracy's companions for a run's best checkpoint (``open_trained``): energy,
    spikes and SOPs per sample on the first validation samples (the test split is not read)."""
    cfg = trained.cfg
    data = load_data(cfg, train_only=True)
    val = make_splits(data, cfg.val_fraction, cfg.subset)["val"]
    with seeded(0, device):
        counts = efficiency.measure(trained.model, val, make_encoder(cfg), cfg.batch_size, device, MEASURED)
    totals = counts["totals"]
    return {"energy_uj": totals["energy_uj"], "sops": totals["sops"],
            "spikes": sum(r["spikes"] for r in counts["rates"])}


def _objective(optuna, study, name, space, objectives, train, save_dir, log_dir, device, ctx):
    def objective(trial):
        resume_run = trial.user_attrs.get("resume_run")  # an interrupted trial, taken up again
        params = {n: p.suggest(trial) for n, p in space.params.items()}
        run = resume_run or f"{name}-t{trial.number:03d}"
        trial.set_user_attr("run", run)
        resume = bool(resume_run) and open_run(run, save_dir, log_dir).last.is_file()

        def report(epoch, row):
            if len(objectives) > 1:
                return False
            trial.report(row["val_accuracy"], epoch)
            return trial.should_prune()
        flags = ctx.broadcast({**space.fixed, **params, "run": run, "resume": resume or None,
                               "overwrite": bool(resume_run) and not resume or None})
        try:
            summary = train(flags, epoch_callback=report, again=AGAIN)
        except Interrupted:
            trial.set_user_attr("error", "interrupted: taken up again by the next start")
            study.enqueue_trial(params, user_attrs={"resume_run": run}, skip_if_exists=False)
            raise
        except UsageError as err:  # one line here; Optuna's own report of it is a traceback
            trial.set_user_attr("error", str(err))
            log.warning("trial %d (%s) failed: %s", trial.number, run, err)
            raise
        trial.set_user_attr("val_accuracy", summary["best_val_accuracy"])
        trial.set_user_attr("best_epoch", summary["best_epoch"])
        if summary["stopped_at"] is not None:
            raise optuna.TrialPruned(f"pruned after epoch {summary['stopped_at']}")
        found = {"val_accuracy": summary["best_val_accuracy"],
                 **_measure(open_trained(run, None, save_dir, log_dir, device), device)}
        for key, value in found.items():
            trial.set_user_attr(key, value)
        return tuple(found[OBJECTIVES[o][1]] for o in objectives)
    return objective


def tune(given, name="tune", config=None, objective=("accuracy",), trials=20, timeout=None, storage=None,
         sampler="tpe", sampler_seed=None, pruner="median", reference=(), *, train, evaluate):
    """Run (or go on with) the study ``name`` until it has ``trials`` finished trials (or
    ``timeout`` seconds pass in this process), then report: the best trials or the Pareto front
    (each tested by ``evaluate(run, save_dir, log_dir, device)``, which returns its eval results), the front drawn against
    the ``reference`` runs, Optuna's parameter importances, and the command that retrains the
    chosen trial. ``train(flags, epoch_callback)`` and ``evaluate`` are the commands it runs (a
    command never imports another). Returns the text the command prints."""
    optuna = need("optuna", "snnclf tune", EXTRA)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial's traceback: snnclf says it in one line
    name = check_name(name, "--name")
    objectives = tuple(dict.fromkeys(objective))
    if objectives[0] != "accuracy" or any(o not in OBJECTIVES for o in objectives) or len(objectives) > 2:
        raise UsageError("--objective: give accuracy, or accuracy and one of energy, spikes, sops")
    if sampler not in SAMPLERS or pruner not in PRUNERS:
        raise UsageError(f"--sampler takes {', '.join(SAMPLERS)}; --pruner takes {', '.join(PRUNERS)}")
    space = make_space(given, config)
    ctx = distributed.from_environment()  # a worker may be several processes (torchrun): one trial at a time
    if ctx.enabled:
        distributed.setup(ctx, resolve_device(space.fixed.get("device", "auto")))
    try:
        if not ctx.is_main:
            return _follow(ctx, train)
        try:
            return _lead(optuna, ctx, space, name, objectives, trials, timeout, storage, sampler, sampler_seed,
                         pruner, reference, train, evaluate)
        finally:
            ctx.broadcast(None)  # the other processes of this worker stop with it
            ctx.barrier()  # and leave the group together (one leaving early can abort the other's gloo)
    finally:
        distributed.teardown(ctx)


def _follow(ctx, train):
    """A process of a torchrun worker other than rank 0: train each trial rank 0 broadcasts."""
    while (flags := ctx.broadcast(None)) is not None:
        try:
            train(flags, epoch_callback=lambda epoch, row: False, again=AGAIN)  # rank 0 decides on pruning
        except UsageError:
            pass  # rank 0 fails the same way and marks the trial
    ctx.barrier()  # leave the group with rank 0
    return ""


def _lead(optuna, ctx, space, name, objectives, trials, timeout, storage, sampler, sampler_seed, pruner,
          reference, train, evaluate):
    """Rank 0 (the only process without torchrun): the study, its trials, the report."""
    save_dir, log_dir = space.fixed.get("save_dir", SAVE_DIR), space.fixed.get("log_dir", LOG_DIR)
    folder = Path(log_dir) / name
    for ref in reference:
        best = open_run(ref, save_dir, log_dir).best
        if not best.is_file():
            raise UsageError(f"--reference {ref}: no {best}; train it first")
    study = _study(optuna, name, space, objectives, storage, folder, sampler, sampler_seed, pruner)
    device = resolve_device(space.fixed.get("device", "auto"))
    log.info("study %s: %d trials to reach over %s; maximise %s%s", name, trials,
             "; ".join(p.describe() for p in space.params.values()), OBJECTIVES["accuracy"][2],
             f", minimise {OBJECTIVES[objectives[1]][2]}" if len(objectives) > 1 else "")
    # a trial counts once it finished or was pruned; a failed one is tried no more, but does not
    # count, and no process runs more than twice the study's trials (a space where every trial fails)
    counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    if len(study.get_trials(deepcopy=False, states=counted)) < trials:
        study.optimize(_objective(optuna, study, name, space, objectives, train, save_dir, log_dir, device, ctx),
                       n_trials=2 * trials, timeout=timeout, catch=(UsageError,),
                       callbacks=[optuna.study.MaxTrialsCallback(trials, states=counted)])
    return report(optuna, study, name, objectives, folder, save_dir, log_dir, device, reference, evaluate)


def _chosen(study, objectives):
    """The best trials: the Pareto front (sorted by the cost), or the five most accurate."""
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    if len(objectives) > 1:
        return sorted(study.best_trials, key=lambda t: t.values[1]) if done else []
    return sorted(done, key=lambda t: -t.values[0])[:5]


def report(optuna, study, name, objectives, folder, save_dir, log_dir, device, reference, evaluate):
    """The study's result as files in ``folder`` and as the text the command prints."""
    trials = study.trials
    states = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    chosen = _chosen(study, objectives)
    _write_trials(folder / "trials.csv", trials)  # every trial, whatever comes of the study
    if not chosen:
        if set(states) == {"fail"}:
            raise UsageError(f"study {name}: every trial failed ({len(trials)}), the last with: "
                             f"{trials[-1].user_attrs.get('error', '')}; each "
                             f"trial's error is in {folder / 'trials.csv'}: fix the space and start the study "
                             "under another --name")
        return f"study {name}: no trial finished yet ({states}); run the command again to go on\n"
    cost = objectives[1] if len(objectives) > 1 else "energy"
    tested = {t.number: _tested(partial(evaluate, save_dir=save_dir, log_dir=log_dir, device=device.type),
                                t.user_attrs["run"]) for t in chosen}  # reported, never selected on
    params = list(dict.fromkeys(k for t in chosen for k in t.params))
    head = ["trial", "run", "val. acc. %", "test acc. %", "energy uJ", "spikes", "SOPs", *params]
    rows = [[t.number, t.user_attrs["run"], f"{100 * t.user_attrs['val_accuracy']:.2f}",
             f"{100 * tested[t.number]['test_accuracy']:.2f}", f"{t.user_attrs['energy_uj']:.3f}",
             f"{t.user_attrs['spikes']:.0f}", f"{t.user_attrs['sops']:,.0f}",
             *[_value(t.params.get(k)) for k in params]] for t in chosen]
    refs = {r: _reference(r, save_dir, log_dir, device) for r in reference}
    lines = [f"study {name}: {len(trials)} trials ({', '.join(f'{n} {s}' for s, n in sorted(states.items()))})",
             "the Pareto front (validation accuracy against " + OBJECTIVES[cost][2] + "):" if len(objectives) > 1
             else "the most accurate trials (validation accuracy):",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    for r, m in refs.items():
        lines.append(f"reference {r}: val. acc. {100 * m['val_accuracy']:.2f}%, test acc. "
                     f"{100 * m['test_accuracy']:.2f}%, {m['energy_uj']:.3f} uJ, {m['spikes']:.0f} spikes per sample")
    importances = _importances(optuna, study, objectives)
    for target, found in importances.items():
        lines.append(f"parameter importances for {target} (Optuna, fANOVA): "
                     + ", ".join(f"{k} {v:.2f}" for k, v in found.items()))
    best = chosen[0] if len(objectives) == 1 else max(chosen, key=lambda t: (t.values[0], -t.values[1]))
    lines.append(f"retrain trial {best.number} ({best.user_attrs['run']}) under a new name with: snnclf train "
                 f"--config {open_run(best.user_attrs['run'], save_dir, log_dir).config} --run {name}-best")
    write_text(folder / "tune.md", "\n".join(lines) + "\n")
    write_json(folder / "importances.json", importances)
    files = [folder / "tune.md", folder / "trials.csv", folder / "importances.json",
             _draw_front(study, objectives, chosen, refs, folder / "front.png", cost)]
    lines.append("wrote " + ", ".join(map(str, files)))
    return "\n".join(lines) + "\n"


def _write_trials(path, trials):
    """Every trial of the study, one row each: its state, run, measures, error and parameters."""
    params = sorted({k for t in trials for k in t.params})
    write_csv(path, ["trial", "state", "run", "val_accuracy", "energy_uj", "spikes", "sops", "error", *params],
              [[t.number, t.state.name, *[t.user_attrs.get(k, "") for k in ("run", "val_accuracy", "energy_uj",
                                                                             "spikes", "sops", "error")],
                *[t.params.get(k, "") for k in params]] for t in trials])


def _tested(evaluate, run, patience=300):
    """``evaluate(run)``; another worker of the study may be evaluating the same run for its own
    report (its lock held for seconds): wait for it rather than fail."""
    for _ in range(patience):
        try:
            return evaluate(run)
        except RunInUse:
            time.sleep(1)
    return evaluate(run)


def _value(v):
    return "" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def _reference(run, save_dir, log_dir, device):
    """A reference run measured as the trials are (validation accuracy of its best epoch; the
    operation counts on validation samples), with its test accuracy from its eval.json."""
    trained = open_trained(run, None, save_dir, log_dir, device)  # opened once, measured and read
    metrics = read_json(trained.run.eval_json) if trained.run.eval_json.is_file() else {}
    return {**_measure(trained, device), "val_accuracy": trained.checkpoint["best_val_accuracy"],
            "test_accuracy": metrics.get("test_accuracy", float("nan"))}


def _importances(optuna, study, objectives):
    """Optuna's parameter importances for each objective, where there are enough trials."""
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    found = {}
    if len(done) < 2 or not any(len({repr(t.params.get(k)) for t in done}) > 1 for k in done[0].params):
        return found
    for i, o in enumerate(objectives):
        try:
            values = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                target=lambda t, i=i: t.values[i])
        except (RuntimeError, ValueError):  # every trial alike in the parameters that vary
            continue
        found[o] = {k: float(v) for k, v in values.items()}
    return found


def _draw_front(study, objectives, chosen, refs, path, cost):
    """Every finished trial as validation accuracy against its cost, the chosen ones (the
    front) joined, the reference runs marked."""
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    key = OBJECTIVES[cost][1]
    fig, ax = subplots(figsize=(6.4, 4.2))
    ax.scatter([t.user_attrs[key] for t in done], [100 * t.user_attrs["val_accuracy"] for t in done],
               s=18, color="0.6", label="trials")
    front = sorted(chosen, key=lambda t: t.user_attrs[key])
    ax.plot([t.user_attrs[key] for t in front], [100 * t.user_attrs["val_accuracy"] for t in front], "o-",
            color="tab:blue", label="Pareto front" if len(objectives) > 1 else "best trials")
    for (run, m), marker in zip(refs.items(), "s^Dv*"):
        ax.scatter([m[key]], [100 * m["val_accuracy"]], marker=marker, s=60, color="tab:red", zorder=3, label=run)
    ax.set(xlabel=OBJECTIVES[cost][2], ylabel="validation accuracy (%)", title=f"study {study.study_name}")
    ax.legend(fontsize=8)
    return save(fig, path)
