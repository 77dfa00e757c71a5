"""How the xylo-poker-dvs preset was chosen: a grid of its options, each trained on three seeds and
scored on the validation split alone (the best epoch's validation accuracy, from the run's
metrics; the test split is never read here).

    python benchmarks/xylo_recipe.py --data_dir checkpoints/poker-dvs-held    # 36 runs, about 8 min on 2 cores

``--data_dir`` holds POKERDVS/pips_train (and pips_test, which is not read): the folder
``benchmarks/chips.py --poker_dir`` lays out from the 48 real training recordings.
"""
import argparse
import itertools
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from speed import cpu_model  # benchmarks/speed.py: the CPU's name, one way for every benchmark

GRID = {"arch": ["PSUM-FC64-FC4", "SP2-FC64-FC4"], "time_steps": [16, 32, 48], "lr": [0.005, 0.01]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for values in itertools.product(*GRID.values()):
            point = dict(zip(GRID, values))
            scores = [_validation(point, seed, args.data_dir, Path(tmp)) for seed in args.seeds]
            rows.append((sum(scores) / len(scores), point, scores))
            print(f"{point}: {' '.join(f'{100 * s:.2f}' for s in scores)}", file=sys.stderr)
    print("| --arch | --time_steps | --lr | validation, mean | seeds " + " ".join(map(str, args.seeds)) + " |")
    print("|---|---|---|---|---|")
    for mean, point, scores in sorted(rows, key=lambda r: -r[0]):
        print(f"| {point['arch']} | {point['time_steps']} | {point['lr']:g} | {100 * mean:.1f}% | "
              + ", ".join(f"{100 * s:.2f}" for s in scores) + " |")
    print(f"\nthe other options: the xylo-poker-dvs preset's; machine: {cpu_model()}, Python {platform.python_version()}")


def _validation(point, seed, data_dir, tmp):
    run = f"{point['arch']}-T{point['time_steps']}-lr{point['lr']}-s{seed}"
    subprocess.run([sys.executable, "-m", "snnclf", "train", "--preset", "xylo-poker-dvs", "--data_dir", data_dir,
                    "--arch", point["arch"], "--time_steps", str(point["time_steps"]), "--lr", str(point["lr"]),
                    "--seed", str(seed), "--run", run, "--save_dir", str(tmp / "ck"), "--log_dir", str(tmp / "logs")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    config = json.loads((tmp / "logs" / run / "config.json").read_text())
    assert config["seed"] == seed
    lines = (tmp / "logs" / run / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    column = header.index("val_accuracy")
    return max(float(line.split(",")[column]) for line in lines[1:])


if __name__ == "__main__":
    main()
