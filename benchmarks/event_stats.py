"""Statistics of N-MNIST-format event recordings, to compare simulated events with real ones:
events per sample, ON share, duration, active pixels, events per active pixel; per saccade the
centroid of the events (where the digit is), their spread, ON and OFF counts and active pixels;
where the ON events lie relative to the OFF events in each 20 ms (the direction the edges move);
and the share of events per 10 ms.

    python benchmarks/event_stats.py --folder data/NMNIST            # real recordings (Train/, Test/)
    python benchmarks/event_stats.py --simulate mnist --data_dir ../shared/data
    python benchmarks/event_stats.py --simulate digits

``--simulate`` runs snnclf's simulator on random images of the data set (the same as the
nmnist-sim and digits-events files, without writing them). The figures of real N-MNIST measured
on 300 random recordings (per saccade and per pixel: 1,000 recordings of the training split) are
printed beside, as the reference the simulator is matched to. :func:`stats` takes any iterable of
(x, y, p, t) streams (t in microseconds), so tests can call it on simulated events.
"""
import argparse
import random
from pathlib import Path

import numpy as np
import tonic

from snnclf.data import datasets
from snnclf.data.event_sets import NMNIST
from snnclf.data.simulate import SIM_VERSION, simulate, to_28

BIN_MS, RATE_MS, LENGTH_MS = 20, 10, 310
SACCADES = tuple(zip(NMNIST.saccades[:-1], NMNIST.saccades[1:]))  # ms: the three saccades of a recording
# Real N-MNIST, 300 random recordings (x to the right, y down, sensor pixels): the figures this
# script prints for a folder of the original files; kept here to compare with without them.
REAL = {
    "events": (2511, 4113, 5597), "on_fraction": 0.500, "duration_ms": 306, "pixels": 444,
    "on_minus_off": {0: (1.3, -3.6), 40: (-0.9, -4.0), 80: (-2.7, -0.7), 120: (-3.8, 2.6),
                     160: (-2.2, 4.9), 200: (-4.3, 1.0), 240: (3.9, 0.2), 280: (4.2, 0.2)},
    "rate": [.004, .016, .036, .058, .069, .073, .058, .027, .007, .006, .009, .014, .028, .047, .058, .059,
             .053, .029, .012, .010, .012, .007, .005, .037, .057, .062, .060, .042, .029, .013, .003],
    # Per saccade (SACCADES), 1,000 recordings of the training split: mean over recordings of the
    # centroid of all events (x, y) and their spread (std about it), ON and OFF events, distinct
    # active pixels. The centroids vary little between recordings (std 0.5-0.9 px).
    "saccade_centroid": [(14.81, 18.22), (18.03, 17.89), (17.39, 15.52)],
    "saccade_spread": [(4.47, 6.34), (4.69, 6.40), (4.93, 5.54)],
    "saccade_on_off": [(750, 753), (675, 684), (634, 636)],
    "saccade_pixels": [322, 303, 294],
    # Events per active pixel over a whole recording (over all active pixels): mean, median, p90.
    "events_per_pixel": (9.5, 10, 18),
}


def from_folder(folder, samples, rng):
    files = sorted(Path(folder).glob("*/*/*.bin"))
    if not files:
        raise SystemExit(f"no .bin files under {folder}/<split>/<digit>/")
    for f in rng.sample(files, min(samples, len(files))):
        ev = tonic.io.read_mnist_file(str(f), dtype=tonic.datasets.NMNIST.dtype)
        yield ev["x"].astype(float), ev["y"].astype(float), ev["p"].astype(int), ev["t"].astype(float)


def from_simulator(name, data_dir, samples, seed):
    data = datasets.digits() if name == "digits" else datasets.mnist(data_dir)
    images = data.train.tensors[0]
    pick = np.random.default_rng(seed).choice(len(images), min(samples, len(images)), replace=False)
    for x, y, p, t in simulate(to_28(images[pick]), np.random.default_rng(seed)):
        yield x.astype(float), y.astype(float), p.astype(int), t.astype(float)


def stats(streams):
    """Figures of event streams: an iterable of (x, y, p, t) arrays, x and y sensor pixels, p 1 for
    ON and 0 for OFF, t in microseconds. Returns a dict with the keys of :data:`REAL`, and
    "samples" and "saccade_centroid_std" (the spread of the centroids between recordings)."""
    counts, on, duration, pixels, per_pixel = [], [], [], [], []
    diff = {b: [] for b in range(0, 300, BIN_MS)}
    rate = np.zeros(LENGTH_MS // RATE_MS)
    centroid, spread, on_off, sacc_pixels = ([[] for _ in SACCADES] for _ in range(4))
    for x, y, p, t in streams:
        if not len(t):
            continue
        x, y, p, t = (np.asarray(a, dtype=float) for a in (x, y, p, t))
        counts.append(len(t))
        on.append(p.mean())
        duration.append((t.max() - t.min()) / 1000)
        _, per = np.unique(x.astype(int) * 1000 + y.astype(int), return_counts=True)
        pixels.append(len(per))
        per_pixel.append(per)
        ms = t / 1000
        for i, (start, end) in enumerate(SACCADES):
            sel = (ms >= start) & (ms < end)
            on_off[i].append(((p[sel] == 1).sum(), (p[sel] == 0).sum()))
            if sel.any():
                centroid[i].append((x[sel].mean(), y[sel].mean()))
                spread[i].append((x[sel].std(), y[sel].std()))
                sacc_pixels[i].append(len(np.unique(x[sel].astype(int) * 1000 + y[sel].astype(int))))
        x, y = x - x.mean(), y - y.mean()  # each sample centred on its own mean event position
        for b in diff:
            sel = (ms >= b) & (ms < b + BIN_MS)
            if (sel & (p == 1)).any() and (sel & (p == 0)).any():
                diff[b].append((x[sel & (p == 1)].mean() - x[sel & (p == 0)].mean(),
                                y[sel & (p == 1)].mean() - y[sel & (p == 0)].mean()))
        rate += np.histogram(ms, bins=len(rate), range=(0, LENGTH_MS))[0] / len(t)
    per_pixel = np.concatenate(per_pixel) if per_pixel else np.zeros(1)

    def means(v, width=2):
        return [tuple(np.mean(a, 0)) if a else (np.nan,) * width for a in v]

    return {"samples": len(counts),
            "events": (np.percentile(counts, 10), np.mean(counts), np.percentile(counts, 90)),
            "on_fraction": np.mean(on), "duration_ms": np.mean(duration), "pixels": np.mean(pixels),
            "on_minus_off": {b: tuple(np.mean(v, 0)) if v else (np.nan, np.nan) for b, v in diff.items()},
            "rate": list(rate / max(len(counts), 1)),
            "saccade_centroid": means(centroid),
            "saccade_centroid_std": [tuple(np.std(a, 0)) if a else (np.nan,) * 2 for a in centroid],
            "saccade_spread": means(spread), "saccade_on_off": means(on_off),
            "saccade_pixels": [np.mean(a) if a else np.nan for a in sacc_pixels],
            "events_per_pixel": (per_pixel.mean(), np.median(per_pixel), np.percentile(per_pixel, 90))}


def report(label, s):
    ref = REAL
    print(f"{label}: {s['samples']} samples; real N-MNIST (300 recordings) beside")
    print(f"  events per sample (p10, mean, p90): {' / '.join(f'{v:,.0f}' for v in s['events'])}"
          f"   real {' / '.join(f'{v:,}' for v in ref['events'])}")
    print(f"  ON fraction {s['on_fraction']:.3f} (real {ref['on_fraction']:.3f}); duration {s['duration_ms']:.0f} ms "
          f"(real {ref['duration_ms']}); distinct active pixels {s['pixels']:.0f} (real {ref['pixels']})")
    e = s["events_per_pixel"]
    print(f"  events per active pixel (mean, median, p90): {e[0]:.1f} / {e[1]:.0f} / {e[2]:.0f}"
          f"   real {' / '.join(f'{v:g}' for v in ref['events_per_pixel'])}")
    print("  per saccade (x right, y down, sensor pixels; real beside):")
    print("    ms        centroid x, y (std between samples) | real       spread x, y | real"
          "        ON / OFF | real        active px | real")
    for i, (start, end) in enumerate(SACCADES):
        (cx, cy), (sx, sy) = s["saccade_centroid"][i], s["saccade_centroid_std"][i]
        (vx, vy), (on_, off_) = s["saccade_spread"][i], s["saccade_on_off"][i]
        rc, rv, ro = ref["saccade_centroid"][i], ref["saccade_spread"][i], ref["saccade_on_off"][i]
        print(f"    {start:3d}-{end:<3d}  {cx:5.2f}, {cy:5.2f} ({sx:.1f}, {sy:.1f})    | {rc[0]:5.2f}, {rc[1]:5.2f}"
              f"   {vx:4.2f}, {vy:4.2f} | {rv[0]:4.2f}, {rv[1]:4.2f}"
              f"   {on_:4.0f} / {off_:4.0f} | {ro[0]} / {ro[1]}"
              f"   {s['saccade_pixels'][i]:4.0f} | {ref['saccade_pixels'][i]}")
    gaps = [np.hypot(c[0] - r[0], c[1] - r[1]) for c, r in zip(s["saccade_centroid"], ref["saccade_centroid"])]
    print(f"    centroid distance from the real one: {' / '.join(f'{g:.2f}' for g in gaps)} px")
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
