"""Draw a few frames of event samples read back from N-MNIST-format .bin files, one row per
data set, so a person can see that the digits are recognisable. ON events are drawn green, OFF
events magenta.

    python scripts/event_frames.py --datasets digits-events nmnist-sim nmnist \\
        --data_dir data --time_steps 6 --out activations/event_frames.png
"""
import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from snnclf.data import load_dataset  # noqa: E402
from snnclf.errors import UsageError  # noqa: E402
from snnclf.viz.data import on_off  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["digits-events"])
    p.add_argument("--data_dir", default="data")
    p.add_argument("--cache_dir", default="data/cache")
    p.add_argument("--time_steps", type=int, default=6)
    p.add_argument("--sample", type=int, default=0, help="index in the test split")
    p.add_argument("--out", default="activations/event_frames.png")
    args = p.parse_args()
    rows = []
    for name in args.datasets:
        try:
            data = load_dataset(name, args.data_dir, time_steps=args.time_steps, cache_dir=args.cache_dir)
        except UsageError as err:
            print(f"skipping {name}: {err}")
            continue
        frames, label = data.test[args.sample]
        rows.append((name, frames, int(label)))
    fig, axes = plt.subplots(len(rows), args.time_steps, figsize=(1.6 * args.time_steps, 1.9 * len(rows)),
                             squeeze=False)
    for r, (name, frames, label) in enumerate(rows):
        for t in range(args.time_steps):
            ax = axes[r, t]
            ax.imshow(on_off(frames[t]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"t{t}: {int(frames[t].sum())} ev", fontsize=8)
        axes[r, 0].set_ylabel(f"{name}\nlabel {label}", fontsize=8)
    fig.tight_layout()
    from pathlib import Path

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
