"""From a training run to a chip's software, exactly: the table of docs/chips.md.

Trains (or takes) the chip recipes and exports each to its targets, each checked in the tool's own
environment (built once under ``--envs``): Sinabs and Speck's cores in Sinabs' DynapcnnNetwork for
the ``speck-digits-events`` preset, XyloSim for the ``xylo-poker-dvs`` preset (on real POKER-DVS
recordings: the 48 training recordings of ``--poker_dir``, three of each class held out as its
test split, since the official test split is not at hand), Sinabs and Rockpool for an
integrate-and-fire MLP. Prints one row per run and tool (identical output spikes, equal
predictions, the accuracies, how it ran), then the machine.

    python benchmarks/chips.py --poker_dir ../shared/data/real-events     # trains the recipes, about 4 min on 2 cores
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
from speed import cpu_model  # benchmarks/speed.py: the CPU's name, one way for every benchmark

RECIPES = {  # name: (snnclf train flags beyond --run, the export targets)
    "speck": (["--preset", "speck-digits-events"], ("speck",)),
    "xylo": (["--preset", "xylo-poker-dvs"], ("xylo",)),
    "if-mlp": (["--model", "snn-mlp", "--dataset", "digits-events", "--beta", "1.0", "--reset", "subtract",
                "--epochs", "10"], ("sinabs", "rockpool")),
}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", default="/tmp/snnclf-nir-envs", help="folder of the tools' environments (kept)")
    p.add_argument("--speck_run", help="a run trained with --chip speck, instead of training one")
    p.add_argument("--mlp_run", help="an integrate-and-fire snn-mlp run, instead of training one")
    p.add_argument("--xylo_run", help="a run trained with --chip xylo, instead of training one")
    p.add_argument("--poker_dir", help="a folder holding POKERDVS/pips_train (the 48 real training recordings); "
                   "without it (or --xylo_run) the Xylo recipe is left out")
    p.add_argument("--samples", type=int, default=360, help="test samples each tool runs")
    p.add_argument("--save_dir", default="checkpoints")
    p.add_argument("--log_dir", default="logs")
    args = p.parse_args()
    runs = {"speck": args.speck_run or _train("speck", args), "if-mlp": args.mlp_run or _train("if-mlp", args)}
    data = {}
    if args.xylo_run or args.poker_dir:
        data["xylo"] = held_split(args.poker_dir, Path(args.save_dir) / "poker-dvs-held") if args.poker_dir else None
        runs["xylo"] = args.xylo_run or _train("xylo", args, ["--data_dir", str(data["xylo"])])
    rows = []
    for recipe, run in runs.items():
        for target in RECIPES[recipe][1]:
            out = Path(args.save_dir) / run / f"{run}-{target}.nir"
            out.unlink(missing_ok=True)
            done = subprocess.run([sys.executable, "-m", "snnclf", "export", "--run", run, "--target", target,
                                   "--samples", str(args.samples), "--envs", args.envs, "--out", str(out),
                                   "--save_dir", args.save_dir, "--log_dir", args.log_dir, "--json",
                                   *(["--data_dir", str(data[recipe])] if data.get(recipe) else [])],
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
    print(f"\nmachine: {cpu_model()}, {torch.get_num_threads()} threads; Python {platform.python_version()}, "
          f"torch {torch.__version__}, snnclf {__version__}; up to {args.samples} test samples per run")


def _train(recipe, args, more=()):
    run = f"chip-bench-{recipe}"
    subprocess.run([sys.executable, "-m", "snnclf", "train", *RECIPES[recipe][0], *more, "--run", run, "--overwrite",
                    "--save_dir", args.save_dir, "--log_dir", args.log_dir], check=True, stdout=subprocess.DEVNULL)
    return run


def held_split(source, folder, per_class=3):
    """A copy of the POKER-DVS training recordings under ``source`` laid out with a test split of
    its own: the first ``per_class`` recordings of each class (by name) as ``pips_test``, the rest
    as ``pips_train``. Returns the folder to give as --data_dir."""
    import shutil
    train = Path(source) / "POKERDVS" / "pips_train"
    if not train.is_dir():
        raise SystemExit(f"--poker_dir {source}: no POKERDVS/pips_train there")
    shutil.rmtree(folder, ignore_errors=True)
    for cls in sorted(p for p in train.iterdir() if p.is_dir()):
        for i, f in enumerate(sorted(cls.glob("*.npy"))):
            to = Path(folder) / "POKERDVS" / ("pips_test" if i < per_class else "pips_train") / cls.name
            to.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, to / f.name)
    return Path(folder)



if __name__ == "__main__":
    main()
