"""Train every registered model on the embedded digits set with snnclf's defaults and print a
Markdown table of the results (the README's model table comes from this script).

    python benchmarks/digits_models.py [--epochs 30] [--out runs-digits]
"""
import argparse
import logging
import sys
import tempfile
import time

from snnclf.evaluate import run_eval
from snnclf.models import list_models
from snnclf.runs import read_metrics
from snnclf.train import train
from snnclf.utils import keep_freed_memory

ARCH = "16C3p1-MP2-32C3p1-MP2-FC10"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--time_steps", type=int, default=8)
    p.add_argument("--out", default=None, help="folder for the runs (default: a temporary one)")
    args = p.parse_args()
    keep_freed_memory()  # as the snnclf command does
    out = args.out or tempfile.mkdtemp(prefix="snnclf-digits-")
    logging.basicConfig(level=logging.WARNING)
    rows = []
    for name in list_models():
        flags = {"model": name, "epochs": args.epochs, "time_steps": args.time_steps, "run": name,
                 "save_dir": f"{out}/checkpoints", "log_dir": f"{out}/logs", "overwrite": True}
        if name == "arch":
            flags["arch"] = ARCH
        began = time.perf_counter()
        summary = train(flags)
        wall = time.perf_counter() - began
        result = run_eval(run=name, save_dir=f"{out}/checkpoints", log_dir=f"{out}/logs", test_only=True)
        metrics = read_metrics(f"{out}/logs/{name}/metrics.csv")
        label = f"arch `{ARCH}`" if name == "arch" else f"`{name}`"
        rows.append(f"| {label} | {100 * summary['best_val_accuracy']:.2f} (epoch {summary['best_epoch']}) | "
                    f"**{100 * result['test_accuracy']:.2f}** | {result['test_spikes_per_sample']:.1f} | "
                    f"{sum(r['seconds'] for r in metrics):.0f} | {wall:.0f} |")
        print(rows[-1], file=sys.stderr, flush=True)
    print("| model | best val. acc. % | test acc. % | output spikes/sample | epoch time s (sum) | wall s |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
