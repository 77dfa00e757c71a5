"""``snnclf compare``: several runs side by side, from their files only: a table (Markdown, CSV
and JSON), test-accuracy bars and overlaid training curves."""
import logging
from pathlib import Path

from ..config import LOG_DIR, SAVE_DIR
from ..errors import UsageError
from ..runs import open_run, read_json, read_metrics, write_csv, write_json, write_text
from . import plots
from .files import save, subplots

log = logging.getLogger(__name__)


def _summary(run):
    if not run.config.is_file() or not run.metrics.is_file():
        raise UsageError(f"run {run.name} has no config.json and metrics.csv in {run.log_dir}: "
                         "train it first, or check --log_dir")
    cfg, metrics = read_json(run.config), read_metrics(run.metrics)
    if not isinstance(cfg, dict) or not {"model", "dataset", "time_steps", "encoding"} <= set(cfg):
        raise UsageError(f"{run.config} is not a run's config.json: restore it, or leave run {run.name} out")
    if not metrics:
        raise UsageError(f"{run.metrics} has no finished epoch yet: leave run {run.name} out until it has one")
    result = read_json(run.eval_json) if run.eval_json.is_file() else {}
    if not isinstance(result, dict):
        raise UsageError(f"{run.eval_json} is not an eval.json: run snnclf eval --run {run.name} again")
    return {
        "run": run.name, "model": cfg["arch"] if cfg.get("model") == "arch" else cfg["model"],
        "dataset": cfg["dataset"], "time_steps": cfg["time_steps"], "encoding": cfg["encoding"],
        "parameters": cfg.get("num_params"), "epochs": len(metrics),
        "best_val_accuracy": max(r["val_accuracy"] for r in metrics),
        "test_accuracy": result.get("test_accuracy"),
        "spikes_per_sample": result.get("test_spikes_per_sample", metrics[-1]["spikes_per_sample"]),
        "training_seconds": round(sum(r["seconds"] for r in metrics), 1),
        "metrics": metrics, "config": cfg,
    }


def _option(value):
    """An option's value as a user writes it: 0.5, not 0.5000."""
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def compare(names, log_dir=LOG_DIR, out=None, columns=()):
    """Compare runs from their files: ``compare.md``, ``compare.csv``, ``compare_accuracy.png``
    and ``compare_curves.png`` in ``out`` (default ``<log_dir>/compare``). ``columns`` adds the
    runs' values of these options to the tables (a sweep's axes). Returns the rows."""
    if len(names) < 1:
        raise UsageError("compare needs at least one run name")
    rows = [_summary(open_run(n, SAVE_DIR, log_dir)) for n in names]  # reads the log files only
    out = Path(out or Path(log_dir) / "compare")
    base = ["model", "dataset", "time_steps", "encoding"]
    extra = [c for c in columns if c not in base]
    for r in rows:
        r.update({c: r["config"].get(c) for c in extra})
    fields = ["run", *extra, *base, "parameters", "epochs", "best_val_accuracy", "test_accuracy",
              "spikes_per_sample", "training_seconds"]

    def cell(v):
        return "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
    write_csv(out / "compare.csv", fields, [[cell(r[k]) for k in fields] for r in rows])
    head = ["run", *extra, "model", "T", "encoding", "parameters", "test acc. %", "best val. acc. %",
            "spikes/sample", "training s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        test = "not evaluated" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.2f}"
        lines.append(f"| {r['run']} | " + "".join(f"{_option(r[c])} | " for c in extra)
                     + f"{r['model']} | {r['time_steps']} | {r['encoding']} | "
                     f"{r['parameters']:,} | {test} | {100 * r['best_val_accuracy']:.2f} | "
                     f"{r['spikes_per_sample']:.1f} | {r['training_seconds']} |")
    write_text(out / "compare.md", "\n".join(lines) + "\n")

    tested = [r for r in rows if r["test_accuracy"] is not None]
    files = [out / "compare.md", out / "compare.csv"]
    if tested:
        fig, ax = subplots(figsize=(1.5 + 1.2 * len(tested), 3.8))
        plots.accuracy_bars([r["run"] for r in tested], [r["test_accuracy"] for r in tested], ax)
        files.append(save(fig, out / "compare_accuracy.png"))
    else:
        log.warning("no run has an eval.json yet: run 'snnclf eval --run NAME' for test accuracy")
    fig, (a, b) = subplots(1, 2, figsize=(11, 3.8))
    for r in rows:
        epochs = [m["epoch"] for m in r["metrics"]]
        a.plot(epochs, [m["train_loss"] for m in r["metrics"]], "o-", ms=3, label=r["run"])
        b.plot(epochs, [100 * m["val_accuracy"] for m in r["metrics"]], "o-", ms=3, label=r["run"])
    a.set(xlabel="epoch", ylabel="training loss", title="training loss")
    b.set(xlabel="epoch", ylabel="validation accuracy (%)", title="validation accuracy")
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    files.append(save(fig, out / "compare_curves.png"))
    write_json(out / "compare.json", [{k: r[k] for k in fields} for r in rows])
    return rows, files
