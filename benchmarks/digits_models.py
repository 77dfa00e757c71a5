"""Train every registered model (or one preset) on the embedded digits set over several seeds and
print a Markdown table of the test accuracy's mean and spread (the README's digits tables come
from this script).

    python benchmarks/digits_models.py [--seeds 0 1 2] [--epochs 30] [--out runs-digits]
    python benchmarks/digits_models.py --preset digits --seeds 0 1 2
"""
import argparse
import logging
import platform
import statistics
import sys
import tempfile
import time

import torch

from snnclf.evaluate import run_eval
from snnclf.models import list_models
from snnclf.runs import read_metrics
from snnclf.train import train
from snnclf.utils import keep_freed_memory

ARCH = "16C3p1-MP2-32C3p1-MP2-FC10"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def one_run(flags, out):
    """Train then test one run; its numbers."""
    began = time.perf_counter()
    summary = train({**flags, "save_dir": f"{out}/checkpoints", "log_dir": f"{out}/logs", "overwrite": True})
    wall = time.perf_counter() - began
    result = run_eval(run=flags["run"], save_dir=f"{out}/checkpoints", log_dir=f"{out}/logs", test_only=True)
    metrics = read_metrics(f"{out}/logs/{flags['run']}/metrics.csv")
    return {"test": 100 * result["test_accuracy"], "correct": round(result["test_accuracy"] * result["num_test"]),
            "val": 100 * summary["best_val_accuracy"], "epoch": summary["best_epoch"],
            "spikes": result["test_spikes_per_sample"], "seconds": sum(r["seconds"] for r in metrics), "wall": wall}


def row(label, runs):
    tests = [r["test"] for r in runs]
    spread = f" ({min(tests):.2f}–{max(tests):.2f})" if len(runs) > 1 else ""
    return (f"| {label} | **{statistics.mean(tests):.2f}**{spread} | {', '.join(f'{t:.2f}' for t in tests)} | "
            f"{statistics.mean(r['val'] for r in runs):.2f} | {', '.join(str(r['epoch']) for r in runs)} | "
            f"{statistics.mean(r['spikes'] for r in runs):.1f} | {statistics.mean(r['seconds'] for r in runs):.0f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None, help="default: snnclf's (30), or the preset's")
    p.add_argument("--time_steps", type=int, default=None, help="default: snnclf's (8), or the preset's")
    p.add_argument("--preset", default=None, help="train this preset instead of every model")
    p.add_argument("--out", default=None, help="folder for the runs (default: a temporary one)")
    args = p.parse_args()
    keep_freed_memory()  # as the snnclf command does
    out = args.out or tempfile.mkdtemp(prefix="snnclf-digits-")
    logging.basicConfig(level=logging.WARNING)
    print(f"{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}; seeds "
          f"{' '.join(map(str, args.seeds))}", file=sys.stderr)
    common = {k: v for k, v in (("epochs", args.epochs), ("time_steps", args.time_steps)) if v is not None}
    plans = ([(f"`--preset {args.preset}`", {"preset": args.preset})] if args.preset else
             [(f"arch `{ARCH}`" if n == "arch" else f"`{n}`", {"model": n, **({"arch": ARCH} if n == "arch" else {})})
              for n in list_models()])
    rows = []
    for label, flags in plans:
        runs = [one_run({**flags, **common, "seed": s, "run": f"{flags.get('model', args.preset)}-s{s}"}, out)
                for s in args.seeds]
        rows.append(row(label, runs))
        print(rows[-1], file=sys.stderr, flush=True)
    print("| model | test acc. %, mean (min–max) | test acc. % per seed | best val. acc. %, mean | "
          "best epoch per seed | output spikes/sample | epoch time s (sum, mean) |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
