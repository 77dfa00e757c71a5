"""Statistics of N-MNIST-format event recordings, to compare simulated events with real ones:
events per sample, ON share, duration, active pixels; where the ON events lie relative to the
OFF events in each 20 ms (the direction the edges move); and the share of events per 10 ms.

    python benchmarks/event_stats.py --folder data/NMNIST            # real recordings (Train/, Test/)
    python benchmarks/event_stats.py --simulate mnist --data_dir ../shared/data
    python benchmarks/event_stats.py --simulate digits

``--simulate`` runs snnclf's simulator on random images of the data set (the same as the
nmnist-sim and digits-events files, without writing them). The figures of real N-MNIST measured
on 300 random recordings are printed beside, as the reference the simulator is matched to.
"""
import argparse
import random
from pathlib import Path

import numpy as np
import tonic

from snnclf.data import datasets
from snnclf.data.events import NMNIST
from snnclf.data.simulate import SIM_VERSION, simulate, to_28

BIN_MS, RATE_MS, LENGTH_MS = 20, 10, 310
# Real N-MNIST, 300 random recordings (x to the right, y down, sensor pixels): the figures this
# script prints for a folder of the original files; kept here to compare with without them.
REAL = {
    "events": (2511, 4113, 5597), "on_fraction": 0.500, "duration_ms": 306, "pixels": 444,
    "on_minus_off": {0: (1.3, -3.6), 40: (-0.9, -4.0), 80: (-2.7, -0.7), 120: (-3.8, 2.6),
                     160: (-2.2, 4.9), 200: (-4.3, 1.0), 240: (3.9, 0.2), 280: (4.2, 0.2)},
    "rate": [.004, .016, .036, .058, .069, .073, .058, .027, .007, .006, .009, .014, .028, .047, .058, .059,
             .053, .029, .012, .010, .012, .007, .005, .037, .057, .062, .060, .042, .029, .013, .003],
}


def from_folder(folder, samples, rng):
    files = sorted(Path(folder).glob("*/*/*.bin"))
    if not files:
        raise SystemExit(f"no .bin files under {folder}/<split>/<digit>/")
    for f in rng.sample(files, min(samples, len(files))):
        ev = tonic.io.read_mnist_file(str(f), dtype=NMNIST.dtype)
        yield ev["x"].astype(float), ev["y"].astype(float), ev["p"].astype(int), ev["t"].astype(float)


def from_simulator(name, data_dir, samples, seed):
    data = datasets.digits() if name == "digits" else datasets.mnist(data_dir)
    images = data.train.tensors[0]
    pick = np.random.default_rng(seed).choice(len(images), min(samples, len(images)), replace=False)
    for x, y, p, t in simulate(to_28(images[pick]), np.random.default_rng(seed)):
        yield x.astype(float), y.astype(float), p.astype(int), t.astype(float)


def stats(streams):
    counts, on, duration, pixels = [], [], [], []
    diff = {b: [] for b in range(0, 300, BIN_MS)}
    rate = np.zeros(LENGTH_MS // RATE_MS)
    for x, y, p, t in streams:
        if not len(t):
            continue
        counts.append(len(t))
        on.append(p.mean())
        duration.append((t.max() - t.min()) / 1000)
        pixels.append(len(set(zip(x.astype(int), y.astype(int)))))
        x, y = x - x.mean(), y - y.mean()  # each sample centred on its own mean event position
        ms = t / 1000
        for b in diff:
            sel = (ms >= b) & (ms < b + BIN_MS)
            if (sel & (p == 1)).any() and (sel & (p == 0)).any():
                diff[b].append((x[sel & (p == 1)].mean() - x[sel & (p == 0)].mean(),
                                y[sel & (p == 1)].mean() - y[sel & (p == 0)].mean()))
        rate += np.histogram(ms, bins=len(rate), range=(0, LENGTH_MS))[0] / len(t)
    return {"samples": len(counts),
            "events": (np.percentile(counts, 10), np.mean(counts), np.percentile(counts, 90)),
            "on_fraction": np.mean(on), "duration_ms": np.mean(duration), "pixels": np.mean(pixels),
            "on_minus_off": {b: tuple(np.mean(v, 0)) if v else (np.nan, np.nan) for b, v in diff.items()},
            "rate": list(rate / max(len(counts), 1))}


def report(label, s):
    ref = REAL
    print(f"{label}: {s['samples']} samples; real N-MNIST (300 recordings) beside")
    print(f"  events per sample (p10, mean, p90): {' / '.join(f'{v:,.0f}' for v in s['events'])}"
          f"   real {' / '.join(f'{v:,}' for v in ref['events'])}")
    print(f"  ON fraction {s['on_fraction']:.3f} (real {ref['on_fraction']:.3f}); duration {s['duration_ms']:.0f} ms "
          f"(real {ref['duration_ms']}); distinct active pixels {s['pixels']:.0f} (real {ref['pixels']})")
    print("  centroid of ON minus centroid of OFF events (x right, y down, pixels):")
    print("    ms        dx     dy  | real dx  dy")
    for b, (dx, dy) in s["on_minus_off"].items():
        real = ref["on_minus_off"].get(b)
        print(f"    {b:3d}-{b + BIN_MS:<3d} {dx:+6.1f} {dy:+6.1f}" + (f"  | {real[0]:+5.1f} {real[1]:+5.1f}" if real else ""))
    print(f"  share of events per {RATE_MS} ms:")
    print("    here: " + " ".join(f"{v:.3f}"[1:] for v in s["rate"]))
    print("    real: " + " ".join(f"{v:.3f}"[1:] for v in ref["rate"]))
    pairs = [(here, real) for b, r in ref["on_minus_off"].items()
             for here, real in zip(s["on_minus_off"][b], r) if abs(real) >= 1]
    agree = sum(np.sign(here) == np.sign(real) for here, real in pairs)
    rate_gap = np.abs(np.array(s["rate"]) - np.array(ref["rate"])).sum() / 2
    print(f"  direction: {agree} of {len(pairs)} clear real components (|d| >= 1 px) have the same sign; "
          f"event-rate profile differs from the real one by {rate_gap:.3f} (total variation, 0 = same)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--folder", help="an N-MNIST-format folder (Train/<digit>/*.bin, Test/...)")
    src.add_argument("--simulate", choices=["mnist", "digits"], help="simulate events from this data set's images")
    p.add_argument("--data_dir", default="data", help="folder holding MNIST/raw (for --simulate mnist)")
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.folder:
        label = args.folder
        s = stats(from_folder(args.folder, args.samples, random.Random(args.seed)))
    else:
        label = f"snnclf's simulator (version {SIM_VERSION}) on {args.simulate}"
        s = stats(from_simulator(args.simulate, args.data_dir, args.samples, args.seed))
    report(label, s)


if __name__ == "__main__":
    main()
