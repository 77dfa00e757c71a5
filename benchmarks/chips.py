"""From a training run to a chip's software, exactly: the table of docs/chips.md.

Trains (or takes) the chip recipes and exports each to its targets, each checked in the tool's own
environment (built once under ``--envs``): Sinabs and Speck's cores in Sinabs' DynapcnnNetwork for
the ``speck-digits-events`` preset, Sinabs and Rockpool for an integrate-and-fire MLP. Prints one
row per run and tool (identical output spikes, equal predictions, the accuracies, where the layers
went), then the machine and the versions.

    python benchmarks/chips.py                       # trains both recipes, about 2 min on 2 cores
    python benchmarks/chips.py --speck_run speck-digits-events --samples 360
"""
import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

from snnclf import __version__

RECIPES = {  # name: (snnclf train flags beyond --run, the export targets)
    "speck": (["--preset", "speck-digits-events"], ("speck",)),
    "if-mlp": (["--model", "snn-mlp", "--dataset", "digits-events", "--beta", "1.0", "--reset", "subtract",
                "--epochs", "10"], ("sinabs", "rockpool")),
}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", default="/tmp/snnclf-nir-envs", help="folder of the tools' environments (kept)")
    p.add_argument("--speck_run", help="a run trained with --chip speck, instead of training one")
    p.add_argument("--mlp_run", help="an integrate-and-fire snn-mlp run, instead of training one")
    p.add_argument("--samples", type=int, default=360, help="test samples each tool runs")
    p.add_argument("--save_dir", default="checkpoints")
    p.add_argument("--log_dir", default="logs")
    args = p.parse_args()
    runs = {"speck": args.speck_run or _train("speck", args), "if-mlp": args.mlp_run or _train("if-mlp", args)}
    rows = []
    for recipe, run in runs.items():
        for target in RECIPES[recipe][1]:
            out = Path(args.save_dir) / run / f"{run}-{target}.nir"
            out.unlink(missing_ok=True)
            done = subprocess.run([sys.executable, "-m", "snnclf", "export", "--run", run, "--target", target,
                                   "--samples", str(args.samples), "--envs", args.envs, "--out", str(out),
                                   "--save_dir", args.save_dir, "--log_dir", args.log_dir, "--json"],
                                  capture_output=True, text=True)
            if done.returncode:
                rows.append(f"| {run} | {target} | error: {done.stderr.strip()} | | | |")
                continue
            for c in json.loads(done.stdout)["checks"]:
                note = (c.get("convention") or {}).get("note", "")
                rows.append(f"| {run} | {target} | {c['framework']} | {100 * c['equal_outputs']:.2f}% | "
                            f"{100 * c['equal_predictions']:.2f}% | {100 * c['accuracy_snnclf']:.2f}% / "
                            f"{100 * c['accuracy_other']:.2f}% | {note} |")
    print("| run | --target | tool | output spikes identical | same prediction | accuracy snnclf / tool | how it ran |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nmachine: {_cpu()}, {torch.get_num_threads()} threads; Python {platform.python_version()}, "
          f"torch {torch.__version__}, snnclf {__version__}; {args.samples} test samples per run")


def _train(recipe, args):
    run = f"chip-bench-{recipe}"
    subprocess.run([sys.executable, "-m", "snnclf", "train", *RECIPES[recipe][0], "--run", run, "--overwrite",
                    "--save_dir", args.save_dir, "--log_dir", args.log_dir], check=True, stdout=subprocess.DEVNULL)
    return run


def _cpu():
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
