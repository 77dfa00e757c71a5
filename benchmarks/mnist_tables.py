"""The comparisons of the projects snnclf replaces, rerun with snnclf on MNIST, and the
accuracy-versus-time-steps sweep of the MNIST preset. Prints Markdown tables (the README's come
from this script) and draws the ``snnclf compare`` pictures and the sweep plot into ``--pictures``.

    python benchmarks/mnist_tables.py --data_dir ../shared/data [--groups mlp csnn-t100 cnn sweep]
        [--preset_run mnist-csnn-T4-preset mnist-csnn-T4-nir --preset_logs logs]

Each run trains with ``snnclf train`` (validation-selected best epoch) and is tested once with
``snnclf eval --test_only``. A run already evaluated in ``--out`` is reused, so the script can be
stopped and started again.
"""
import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path


from snnclf.evaluate import run_eval
from snnclf.runs import read_metrics
from snnclf.train import train
from snnclf.utils import keep_freed_memory
from snnclf.viz.compare import compare
from snnclf.viz.files import save, subplots

# The replaced projects' settings: Adam 1e-4 and the membrane-mean readout for the MLPs,
# ce_rate_loss (snnclf's "ce") for the CSNNs.
MLP = dict(optimizer="adam", lr=1e-4, loss="ce-mem", epochs=3)
GROUPS = {
    "mlp": [
        ("ann-mlp", dict(model="ann-mlp", time_steps=1, **MLP)),
        ("lif-mlp-single-step", dict(model="snn-mlp", time_steps=1, **MLP)),
        ("lif-mlp-rate-T100", dict(model="snn-mlp", encoding="rate", time_steps=100, **MLP)),
    ],
    "csnn-t100": [
        ("csnn-T100-1-epoch", dict(model="csnn", time_steps=100, loss="ce", epochs=1)),
    ],
    "cnn": [
        ("cnn", dict(model="ann-cnn", time_steps=1, epochs=3)),
        ("csnn-single-step", dict(model="csnn", time_steps=1, epochs=3)),
        ("csnn-poisson-T10", dict(model="csnn", encoding="rate", time_steps=10, epochs=3)),
    ],
}
SWEEP = (1, 2, 4, 8, 16)


def run_one(name, flags, args):
    """Train (unless done) and test one run; its row of results."""
    common = {"dataset": "mnist", "data_dir": args.data_dir, "run": name,
              "save_dir": f"{args.out}/checkpoints", "log_dir": f"{args.out}/logs"}
    result_file = Path(args.out) / "logs" / name / "eval.json"
    if not result_file.exists():
        shutil.rmtree(Path(args.out) / "checkpoints" / name, ignore_errors=True)
        shutil.rmtree(Path(args.out) / "logs" / name, ignore_errors=True)
        train({**common, **flags})
        run_eval(run=name, save_dir=common["save_dir"], log_dir=common["log_dir"], test_only=True)
    return row(name, Path(args.out) / "logs")


def row(name, log_dir):
    result = json.loads((log_dir / name / "eval.json").read_text())
    config = json.loads((log_dir / name / "config.json").read_text())
    metrics = read_metrics(log_dir / name / "metrics.csv")
    best = next(r for r in metrics if r["epoch"] == result["epoch"])  # the epoch of the best.pt tested
    return {"run": name, "model": config["model"], "encoding": config["encoding"],
            "T": config["time_steps"], "epochs": config["epochs"], "best_epoch": best["epoch"],
            "val": best["val_accuracy"], "test": result["test_accuracy"],
            "spikes": result["test_spikes_per_sample"],
            "all_spikes": sum(r["spikes"] for r in result["efficiency"]["rates"]),
            "sops": result["efficiency"]["totals"]["sops"],
            "seconds": sum(r["seconds"] for r in metrics), "config": config}


def table(rows):
    lines = ["| run | model | encoding | T | epochs (best) | best val. % | test % | spikes/sample (output) "
             "| SOPs/sample | training time |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | `{r['model']}` | {r['encoding']} | {r['T']} | {r['epochs']} ({r['best_epoch']}) | "
                     f"{100 * r['val']:.2f} | **{100 * r['test']:.2f}** | {r['all_spikes']:,.0f} ({r['spikes']:.1f}) | "
                     f"{r['sops']:,.0f} | {r['seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", default="data")
    p.add_argument("--out", default=None, help="folder for the runs (default: a temporary one)")
    p.add_argument("--groups", nargs="+", default=[*GROUPS, "sweep"], choices=[*GROUPS, "sweep"])
    p.add_argument("--sweep_epochs", type=int, default=3)
    p.add_argument("--preset_run", nargs="+", default=[], help="finished --preset mnist runs to put beside the cnn group")
    p.add_argument("--preset_logs", default="logs", help="log folder of --preset_run")
    p.add_argument("--pictures", default="docs/results", help="where the pictures go")
    args = p.parse_args()
    keep_freed_memory()  # as the snnclf command does
    args.out = args.out or tempfile.mkdtemp(prefix="snnclf-mnist-")
    logging.basicConfig(level=logging.WARNING)
    pictures = Path(args.pictures)
    for group in args.groups:
        if group == "sweep":
            flags = [(f"preset-T{T}", {"preset": "mnist", "loss": "ce", "time_steps": T, "epochs": args.sweep_epochs})
                     for T in SWEEP]
        else:
            flags = GROUPS[group]
        rows = [run_one(name, f, args) for name, f in flags]
        names = [r["run"] for r in rows]
        for run in args.preset_run if group == "cnn" else []:
            rows.append(row(run, Path(args.preset_logs)))
            shutil.copytree(Path(args.preset_logs) / run, Path(args.out) / "logs" / run, dirs_exist_ok=True)
            names.append(run)
        print(f"\n{group}:\n{table(rows)}", flush=True)
        compare(names, log_dir=f"{args.out}/logs", out=pictures / group)
        if group == "sweep":
            fig, (a, b) = subplots(1, 2, figsize=(9, 3.6))
            a.plot(SWEEP, [100 * r["test"] for r in rows], "o-")
            a.set(xscale="log", xticks=SWEEP, xticklabels=SWEEP, xlabel="time steps T", ylabel="test accuracy (%)",
                  title=f"MNIST preset, {args.sweep_epochs} epochs")
            b.plot(SWEEP, [r["all_spikes"] for r in rows], "o-", color="C1")
            b.set(xscale="log", xticks=SWEEP, xticklabels=SWEEP, xlabel="time steps T",
                  ylabel="spikes per test sample (all layers)", title="spikes")
            save(fig, pictures / "sweep.png")
    print(f"\nruns in {args.out}; pictures in {pictures}", file=sys.stderr)


if __name__ == "__main__":
    main()
