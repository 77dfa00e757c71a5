"""``snnclf sweep``: a grid of training runs over any ``snnclf train`` options, one run per point,
each trained, tested and then compared.

An option given several values is an axis; the points are every combination, the axes taken in
the order of ``snnclf train --help``. Combinations that would train the same network are one point: a non-spiking
model on input that is the same at every step runs once whatever T is (it is trained at T=1), and
neuron options do not apply to it. Each point is an ordinary run named
``<sweep>-<option>=<value>-...`` by the values that vary, so that ``snnclf eval``, ``compare`` and
``--resume`` work on it as on any run, and the sweep's state is only in the run folders: a point
with ``eval.json`` is done, one with a finished ``last.pt`` needs testing, an unfinished one is
resumed, and a sweep started again (or on another machine, ``--shard K/N``) goes on from there.

The commands it composes (train, eval, compare) are passed in by the CLI, so that no command
imports another."""
import itertools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from .config import LOG_DIR, SAVE_DIR, RunConfig, check_option, check_options, is_list_option, load_file
from .flags import options as flagged
from .errors import Interrupted, UsageError
from .models import NEURON_OPTIONS, is_spiking
from .data import check_files
from .runs import RunInUse, RunLock, check_name, load_checkpoint, midway, open_run, read_json, write_json
from .viz.files import save, subplots

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Point:
    name: str  # the run's name
    options: dict  # the train options of this point (fixed and varied)
    varied: dict  # the values of the axes at this point, after collapsing


def split_values(values):
    """{option: [value, ...]} -> (fixed options, axes in --help order), an option with one value
    being fixed."""
    order = [f.name for f in RunConfig.ordered_fields()]
    fixed = {k: v[0] for k, v in values.items() if len(v) == 1}
    axes = {k: list(values[k]) for k in sorted(values, key=order.index) if len(values[k]) > 1}
    return fixed, axes


def from_file(path):
    """{option: [value, ...]} from a sweep file (YAML or JSON, the keys of ``snnclf train
    --config``): a list is an axis (for a list option, a list of lists), anything else one value;
    each value checked like its flag."""
    values = {}
    for name, value in load_file(path).items():
        many = isinstance(value, list) and (not is_list_option(name) or all(isinstance(v, list) for v in value))
        if many and not value:
            raise UsageError(f"--config {path}: {name}: an empty list; give one value or several")
        try:
            values[name] = [check_option(name, v) for v in (value if many else [value])]
        except UsageError as err:
            raise UsageError(f"--config {path}: {err}") from None
    return values


def _collapsed(options):
    """The options that change what this point trains: a non-spiking model has no neuron options,
    and on direct input (the same image at every step) it computes the same thing whatever T is.
    The point is then checked as training would check it (the model's options, the loss)."""
    probe = RunConfig.from_flags({**options, "run": "probe"})
    name, _ = probe.model_spec()
    if not is_spiking(name):
        options = {k: v for k, v in options.items() if k not in NEURON_OPTIONS}
        if probe.encoding == "direct":
            options["time_steps"] = 1
    check_options(options)
    return options


def _label(value):
    text = "+".join(map(str, value)) if isinstance(value, list) else str(value)
    return text.replace("/", "_").replace("\\", "_")


def plan(name, fixed, axes):
    """The points of the sweep ``name``: every combination of ``axes`` over ``fixed``, collapsed.
    Each is checked as a run would be (an impossible combination is refused before any runs)."""
    if not axes:
        raise UsageError("a sweep needs an option with several values, e.g. --time_steps 1 10")
    if "run" in fixed or "run" in axes:
        raise UsageError("a sweep names its runs itself: give --name instead of --run")
    for key in ("save_dir", "log_dir"):
        if key in axes:
            raise UsageError(f"--{key}: a sweep keeps its runs and their comparison in one folder; give one value")
    points, seen = [], {}
    for combo in itertools.product(*axes.values()):
        options = _collapsed({**fixed, **dict(zip(axes, combo))})
        varied = {k: options[k] for k in axes if k in options}
        key = repr(sorted(options.items()))
        if key in seen:
            log.info("sweep %s: %s is the same run as %s (collapsed)", name,
                     ", ".join(f"{k}={_label(v)}" for k, v in zip(axes, combo)), seen[key])
            continue
        run = "-".join([name, *(f"{k}={_label(v)}" for k, v in varied.items())])
        open_run(run, SAVE_DIR, LOG_DIR)  # a usable name, or a one-line error
        seen[key] = run
        points.append(Point(run, {**options, "run": run}, varied))
    for dataset, data_dir in dict.fromkeys((c.dataset, c.data_dir) for c in
                                           (RunConfig.from_flags(p.options) for p in points)):
        check_files(dataset, data_dir)  # files missing for a later point: refused before the first trains
    return points


def _record(name, fixed, axes, folder):
    """Write the sweep's plan to ``<log_dir>/<name>/sweep.json``, or refuse a sweep of that name
    that fixes an option to another value (its points would be runs of another sweep under the
    same names). Axes may change (a sweep grows by giving an axis more values), and so may what a
    resumed run may change (--epochs, --device, the folders of data)."""
    plan = json.loads(json.dumps({"fixed": fixed, "axes": axes}))  # as JSON reads it back
    path = folder / "sweep.json"
    if path.is_file():
        saved = read_json(path)
        before = saved.get("fixed", {}) if isinstance(saved, dict) else {}
        varied = {*axes, *(saved.get("axes", {}) if isinstance(saved, dict) else {})}
        differ = [k for k in sorted({*before, *plan["fixed"]}) if k not in varied
                  and before.get(k) != plan["fixed"].get(k) and k not in flagged(RunConfig, "resumable")]
        if differ:
            k = differ[0]
            was = _given(k, before.get(k))
            raise UsageError(f"sweep {name} was started with {was} ({path}): give this one another --name, "
                             "or repeat that sweep's options")
    write_json(path, plan)


def _given(option, value):
    """How a value of ``option`` was given, as a message says it (``None``: not given)."""
    if value is None:
        return f"--{option} left to its default"
    return f"--{option} {' '.join(map(str, value)) if isinstance(value, list) else value}"


def _shard(points, spec):
    """Every N-th point, from the K-th (``spec`` "K/N", K counted from 1)."""
    try:
        k, n = (int(x) for x in spec.split("/"))
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise UsageError(f"--shard {spec}: expected K/N with 1 <= K <= N, e.g. --shard 1/2")
    return points[k - 1::n]


def state(point):
    """'done' (trained and tested), 'trained', 'partial' (resumable, or to be trained for more
    epochs), 'broken' (started, no checkpoint), 'busy' (unfinished, and another process holds it)
    or 'new'. A run of that name trained with other
    options (the sweep's fixed options changed since) is refused in one line, not reused."""
    cfg = RunConfig.from_flags(point.options)
    run = open_run(point.name, cfg.save_dir, cfg.log_dir)
    if not run.last.is_file():
        return ("busy" if _in_use(run) else "broken") if run.exists() else "new"
    checkpoint = load_checkpoint(run.last)
    saved = RunConfig.from_dict(checkpoint["config"])
    resumable = flagged(RunConfig, "resumable")
    changed = [k for k in cfg.to_dict() if k not in resumable and getattr(saved, k) != getattr(cfg, k)]
    if changed:
        k = changed[0]
        raise UsageError(f"sweep point {point.name} exists with {_given(k, getattr(saved, k))}, not "
                         f"{_given(k, getattr(cfg, k))}: give the sweep another --name, or remove that run")
    if checkpoint["epoch"] < cfg.epochs or midway(checkpoint):
        return "busy" if _in_use(run) else "partial"
    return "done" if run.eval_json.is_file() else "trained"


def _in_use(run):
    """Whether another process holds the run (a second sweep training the same point)."""
    try:
        with RunLock(run, wait=False):
            return False
    except RunInUse:
        return True


def sweep(given, name="sweep", config=None, shard=None, *, train, evaluate, compare):
    """The sweep ``name`` over the options ``given`` (an option given several values is an axis)
    and those of the file ``config`` (flags win): plan it, run this ``shard``'s points, compare
    the finished ones. ``train(flags)``, ``evaluate(cfg)`` and ``compare(names, log_dir, out,
    columns)`` are the commands it runs (a command never imports another). Returns what the
    command prints."""
    name = check_name(name, "--name")
    values = {k: v if isinstance(v, list) and not is_list_option(k) else [v] for k, v in given.items()}
    if config:
        values = {**from_file(config), **values}  # flags given on the command line win
    fixed, axes = split_values(values)
    points = plan(name, fixed, axes)
    mine = _shard(points, shard) if shard else points
    for point in points:  # a point trained before with other options: refused before anything trains
        state(point)
    _record(name, fixed, axes, Path(fixed.get("log_dir", LOG_DIR)) / name)
    run(name, mine, train, evaluate)
    done = finished(points)
    if not done:
        return f"sweep {name}: no point is finished yet\n"
    log_dir = fixed.get("log_dir", LOG_DIR)
    out = Path(log_dir) / name
    compare([p.name for p in done], log_dir=log_dir, out=out, columns=list(axes))
    files = plot_axes(name, axes, done, log_dir, out)
    missing = len(points) - len(done)
    return ((out / "compare.md").read_text()
            + f"sweep {name}: {len(done)} of {len(points)} points done"
            + (f" ({missing} left to other shards or unfinished: run the command again)" if missing else "")
            + f"; the comparison is in {out}/ (compare.md, compare.csv, compare_accuracy.png, "
            f"compare_curves.png{''.join(', ' + Path(f).name for f in files)})\n")


def run(name, points, train, evaluate):
    """Train and test each point in turn, going on from what its files show. ``train(flags)`` and
    ``evaluate(cfg)`` (the point's :class:`RunConfig`) are the commands. A stop (Ctrl-C) ends the
    sweep after the current run has saved its step."""
    for i, point in enumerate(points, 1):
        now = state(point)
        log.info("sweep %s: point %d of %d, %s (%s)", name, i, len(points), point.name,
                 {"done": "done, skipped", "trained": "trained, testing", "partial": "resuming",
                  "broken": "started before without a checkpoint, starting again", "new": "training",
                  "busy": "in use by another process: left to it"}[now])
        if now in ("done", "busy"):
            continue
        cfg = RunConfig.from_flags(point.options)
        try:
            if now != "trained":
                train({**point.options, "resume": now == "partial", "overwrite": now == "broken"})
            evaluate(cfg)
        except RunInUse:
            log.warning("sweep %s: point %d of %d, %s, is in use by another process: left to it", name, i,
                        len(points), point.name)
        except Interrupted:
            log.warning("sweep %s stopped at point %d of %d (%s, saved); run the same snnclf sweep "
                        "command again to go on", name, i, len(points), point.name)
            raise


def finished(points):
    """The points whose runs have been tested (by this process or another shard)."""
    return [p for p in points if state(p) == "done"]


def plot_axes(name, axes, points, log_dir, out):
    """For each numeric axis, test accuracy and spikes per sample against it, one line per
    combination of the other axes' values; drawn from the runs' eval.json. Returns the files."""
    files = []
    for axis, values in axes.items():
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            continue
        lines = {}
        for p in points:
            if axis not in p.varied:
                continue
            result = read_json(open_run(p.name, SAVE_DIR, log_dir).eval_json)
            others = ", ".join(f"{k}={_label(v)}" for k, v in p.varied.items() if k != axis) or name
            lines.setdefault(others, []).append((p.varied[axis], 100 * result["test_accuracy"],
                                                 result.get("test_spikes_per_sample", math.nan)))
        if not lines:
            continue
        fig, (a, b) = subplots(1, 2, figsize=(11, 3.8))
        for label, found in lines.items():
            found.sort()
            a.plot([x for x, _, _ in found], [y for _, y, _ in found], "o-", label=label)
            b.plot([x for x, _, _ in found], [s for _, _, s in found], "o-", label=label)
        a.set(xlabel=axis, ylabel="test accuracy (%)", title=f"test accuracy against {axis}")
        b.set(xlabel=axis, ylabel="output spikes per test sample", title=f"output spikes against {axis}")
        a.legend(fontsize=8)
        files.append(save(fig, Path(out) / f"sweep_{axis}.png"))
    return files
