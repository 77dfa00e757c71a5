"""Choose a preset's recipe on the validation split only, then test the choice once.

Each candidate is a set of ``snnclf train`` flags on top of ``--preset NAME``; every candidate is
trained over the same seeds, one run at a time (two at once on a small CPU slow each other down),
and scored on its best epoch's validation accuracy, as ``snnclf train`` picks ``best.pt``. The
candidate with the highest mean validation accuracy is chosen (a tie goes to the lower mean
validation loss where all train with the same ``--loss``, else to the candidate listed first);
only then, and only for the chosen one, is the test split read, once per seed, by
``snnclf eval --test_only``. Candidates that were not chosen are never tested.

    python benchmarks/presets.py --preset digits --seeds 0 1 2 \\
        --candidate preset "" --candidate T2 "--time_steps 2 --threshold 1.43 --rate_reg 0.0071"
    python benchmarks/presets.py --preset mnist --data_dir ../shared/data --seeds 0 \\
        --candidate base "--epochs 10" --candidate count "--epochs 10 --loss count" --no_test

Prints one row per candidate (validation per seed, mean and spread, wall time of each training run
alone), the choice, then the chosen recipe's test accuracy, energy per test sample and spikes, and
the machine. ``--out`` keeps the runs (their config.json and metrics.csv) for the docs; a run that
finished there before with the same command is read again rather than trained again, so
candidates can be added to a study later.
"""
import argparse
import csv
import json
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from snnclf import __version__
from snnclf.runs import selection_key
from speed import cpu_model  # benchmarks/speed.py: the CPU's name, one way for every benchmark


def snnclf(folder, *args):
    command = [sys.executable, "-m", "snnclf", *args]
    out = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{shlex.join(command)} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def train(folder, preset, data_dir, seed, run, flags):
    """One training run: its wall seconds and its best epoch's row of metrics.csv (chosen as
    ``snnclf train`` chooses best.pt: highest validation accuracy, then lowest validation loss)."""
    logs = folder / "logs" / run
    command = ["train", "--preset", preset, *(["--data_dir", data_dir] if data_dir else []), "--seed", str(seed),
               "--run", run, *flags]
    done = json.loads((logs / "wall.json").read_text()) if (logs / "wall.json").exists() else {}
    if done.get("command") == command:
        seconds = done["seconds"]  # a finished run of --out: read, not trained again
    else:
        start = time.perf_counter()
        snnclf(folder, *command, "--overwrite")
        seconds = time.perf_counter() - start
        (logs / "wall.json").write_text(json.dumps({"command": command, "seconds": seconds}))
    with open(logs / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    best = max(rows, key=lambda r: selection_key(float(r["val_accuracy"]), float(r["val_loss"])))
    config = json.loads((logs / "config.json").read_text())
    return {"wall": seconds, "loss": config["loss"], "epoch": int(best["epoch"]), "epochs": len(rows),
            "val": 100 * float(best["val_accuracy"]), "val_loss": float(best["val_loss"])}


def spread(values, digits=2):
    return (f"{statistics.mean(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"
            if len(values) > 1 else f"{values[0]:.{digits}f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", required=True)
    p.add_argument("--data_dir", help="passed on to snnclf train (MNIST: the folder holding MNIST/raw)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--candidate", nargs=2, action="append", metavar=("NAME", "FLAGS"), required=True,
                   help="a name and the snnclf train flags beyond the preset, quoted ('' for the preset itself)")
    p.add_argument("--no_test", action="store_true", help="choose only: read no test split at all")
    p.add_argument("--out", help="keep the runs in this folder (default: a temporary one)")
    args = p.parse_args()
    names = [name for name, _ in args.candidate]
    if len(set(names)) != len(names):
        p.error("--candidate: every candidate needs its own name")
    folder = Path(args.out or tempfile.mkdtemp(prefix="snnclf-presets-")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None
    machine = (f"snnclf {__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_model()}, "
               f"{platform.machine()}")
    print(f"{machine}; runs in {folder}", file=sys.stderr, flush=True)

    print("| candidate | flags beyond the preset | validation % per seed | validation %, mean (min–max) | "
          "best epoch per seed | wall per run |")
    print("|---|---|---|---|---|---|")
    results = {}
    for name, flags in args.candidate:
        runs = [train(folder, args.preset, data_dir, seed, f"{name}-s{seed}", shlex.split(flags)) for seed in args.seeds]
        results[name] = runs
        vals = ", ".join(f"{r['val']:.2f}" for r in runs)
        epochs = ", ".join(f"{r['epoch']} of {r['epochs']}" for r in runs)
        walls = ", ".join(f"{r['wall'] / 60:.1f} min" for r in runs)
        print(f"| {name} | `{flags or '(none)'}` | {vals} | {spread([r['val'] for r in runs])} | {epochs} | {walls} |",
              flush=True)

    # A tie on accuracy goes to the lower mean validation loss where every candidate trains with
    # the same --loss (as snnclf train breaks ties between epochs); losses of different kinds are
    # on different scales, so then max() keeps the first of equals: the candidate listed first.
    same_loss = len({r["loss"] for runs in results.values() for r in runs}) == 1
    chosen = max(names, key=lambda n: (statistics.mean(r["val"] for r in results[n]),
                                       -statistics.mean(r["val_loss"] for r in results[n]) if same_loss else 0))
    losses = ", ".join(f"{n} {statistics.mean(r['val_loss'] for r in results[n]):.4f}" for n in names)
    print(f"\nchosen on validation: {chosen} (the highest mean validation accuracy; "
          + (f"a tie goes to the lower mean validation loss: {losses})" if same_loss else
             "the candidates train with different losses, so a tie goes to the one listed first)"))
    if not args.no_test:
        tests = []
        for seed in args.seeds:
            result = json.loads(snnclf(folder, "eval", "--run", f"{chosen}-s{seed}", "--test_only", "--json"))
            tests.append(result)
        accuracy = [100 * t["test_accuracy"] for t in tests]
        energy = [t["efficiency"]["totals"]["energy_uj"] for t in tests]
        spikes = [t["test_spikes_per_sample"] for t in tests]
        per_seed = ", ".join(f"{a:.2f}" for a in accuracy)
        print(f"its test accuracy, read once: {per_seed} % per seed; "
              f"mean {spread(accuracy)} % of {tests[0]['num_test']} test samples")
        print(f"energy per test sample: {spread(energy, 3)} uJ (snnclf's estimate); spikes per test sample: "
              f"{spread(spikes, 0)}")
    print(f"\n{machine}")


if __name__ == "__main__":
    main()
