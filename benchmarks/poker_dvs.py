"""The poker-dvs preset on real POKER-DVS recordings: its validation accuracy and wall time over
seeds, on tonic's copy and, where given, on the authors' original .aedat files (whose seeded test
split it then evaluates once). Each run is one ``snnclf train`` (one at a time: two at once on a
small CPU slow each other down), in a scratch folder; prints one row per run, then the machine.

    python benchmarks/poker_dvs.py --data_dir ../shared/data/real-events --seeds 0 1 2 \\
        --originals ../shared/data/real-events/poker-dvs-original
    python benchmarks/poker_dvs.py --data_dir ../shared/data/real-events --extra="--warmup 0"       # the variants
    python benchmarks/poker_dvs.py --data_dir ../shared/data/real-events --extra="--min_steps 300"  # docs/results.md weighs

The target: at least 95% validation accuracy, in under 5 minutes of wall time on 2 CPU cores.
"""
import argparse
import csv
import json
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from snnclf import __version__
from speed import cpu_model  # benchmarks/speed.py: the CPU's name, one way for every benchmark


def train(folder, data_dir, seed, run, extra):
    """One run of the preset: (wall seconds, its config.json, its metrics rows)."""
    command = [sys.executable, "-m", "snnclf", "train", "--preset", "poker-dvs", "--data_dir", str(data_dir),
               "--seed", str(seed), "--run", run, "--cache_dir", "cache", *extra]
    start = time.perf_counter()
    out = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode:
        sys.exit(f"{shlex.join(command)} failed:\n{out.stderr[-2000:]}")
    config = json.loads((folder / "logs" / run / "config.json").read_text())
    with open(folder / "logs" / run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return seconds, config, rows


def test_accuracy(folder, run):
    out = subprocess.run([sys.executable, "-m", "snnclf", "eval", "--run", run, "--test_only", "--json"], cwd=folder,
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"eval of {run} failed:\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout)
    return result["test_accuracy"], result["num_test"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", required=True, help="the folder holding POKERDVS/pips_train (tonic's copy)")
    p.add_argument("--originals", help="a folder of the original x<suit>NN.aedat recordings, run the same way")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--extra", default="", help="more snnclf train flags, quoted, e.g. --extra='--warmup 0.05'")
    args = p.parse_args()
    extra = shlex.split(args.extra)
    sets = [("tonic's copy", Path(args.data_dir).resolve())]
    if args.originals:
        sets.append(("originals", Path(args.originals).resolve()))
    print(f"| layout | seed | epochs (steps) | best epoch | validation | test | wall |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for name, data_dir in sets:
            for seed in args.seeds:
                run = f"{'orig' if name == 'originals' else 'tonic'}-s{seed}"
                seconds, config, rows = train(folder, data_dir, seed, run, extra)
                best = max(rows, key=lambda r: (float(r["val_accuracy"]), -float(r["val_loss"])))
                steps = config["epochs"] * -(-config["num_train"] // config["batch_size"])
                test = "n/a (no test split here)"
                if config.get("num_test"):
                    accuracy, count = test_accuracy(folder, run)
                    test = f"{100 * accuracy:.2f}% of {count}"
                print(f"| {name} | {seed} | {config['epochs']} ({steps}) | {best['epoch']} | "
                      f"{100 * float(best['val_accuracy']):.2f}% of {config['num_val']} | {test} | {seconds:.0f} s |",
                      flush=True)
    print(f"\nsnnclf {__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{cpu_model()}, {platform.machine()}; flags beyond the preset: {args.extra or 'none'}")


if __name__ == "__main__":
    main()
