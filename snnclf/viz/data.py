"""``snnclf visualize-data``: what a data set looks like to a model. Static sets: a labelled grid
of samples and one sample's input spike trains under each spike encoding. Event sets: a grid of
samples, one sample's frames over time as a GIF, its ON/OFF event counts, and the event rate."""
import math
from pathlib import Path

import numpy as np

from ..data import get_encoder, is_event_dataset, load_dataset
from ..config import DEFAULTS, GRID_SAMPLES
from ..errors import UsageError
from . import plots
from .files import gif_frame, save, save_gif, subplots


def on_off(frame):
    """Counts [2, H, W] (OFF, ON) as an RGB image: ON green, OFF magenta."""
    off, on = (np.asarray(frame, dtype=float) / max(float(frame.max()), 1.0))
    return np.stack([off, on, off], axis=-1).clip(0, 1)


def frames_gif(frames, path, title):
    """One GIF frame per time step of frames [T, 2, H, W], drawn with Pillow (no ffmpeg)."""
    pictures = []
    for t, frame in enumerate(frames):
        fig, ax = subplots(figsize=(2.6, 2.8))
        plots.image(on_off(frame), ax, title=f"{title}  t={t + 1}/{len(frames)}")
        pictures.append(gif_frame(fig))
    return save_gif(pictures, path, 150)


def visualize_data(dataset=DEFAULTS["dataset"], num_samples=GRID_SAMPLES, out=None, data_dir=DEFAULTS["data_dir"], cache_dir=None,
                   time_steps=None):
    """Draw ``dataset`` into ``out`` (default ``activations/data/<dataset>/``); returns the files."""
    if num_samples < 1:
        raise UsageError(f"--num_samples must be at least 1, got {num_samples}")
    events = is_event_dataset(dataset)
    steps = time_steps or (30 if events else 25)
    data = load_dataset(dataset, data_dir, time_steps=steps, test_only=True,
                        **({"cache_dir": cache_dir} if events and cache_dir else {}))
    count = min(num_samples, len(data.test))
    x, y = data.test[list(range(count))]
    names = data.class_names
    out = Path(out or Path("activations") / "data" / dataset)
    files = []

    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    fig, axes = subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < count:
            picture = on_off(x[i].sum(0)) if events else x[i, 0]
            plots.image(picture, ax, title=names[int(y[i])])
        else:
            ax.axis("off")
    fig.suptitle(f"{dataset}: test samples" + (" (events summed over time; ON green, OFF magenta)" if events else ""))
    files.append(save(fig, out / "samples.png"))

    if not events:
        for encoding in ("rate", "latency"):
            spikes = get_encoder(encoding)(x[:1], steps)[:, 0].flatten(1)  # [T, pixels]
            fig, ax = subplots(figsize=(7, 3.6))
            plots.raster(spikes, ax, max_neurons=spikes.shape[1])
            ax.set_title(f"{dataset}: {encoding} encoding of test sample 0 ({names[int(y[0])]}), "
                         f"T={steps}, one row per pixel")
            files.append(save(fig, out / f"encoding_{encoding}.png"))
        return files

    files.append(frames_gif(x[0], out / "frames_0.gif", f"{names[int(y[0])]}"))
    fig, (a, b) = subplots(1, 2, figsize=(6, 3))
    counts = x[0].sum(0)
    plots.image(counts[1], a, title=f"ON events ({int(counts[1].sum())})", cmap="Greens")
    plots.image(counts[0], b, title=f"OFF events ({int(counts[0].sum())})", cmap="RdPu")
    fig.suptitle(f"{dataset}: test sample 0 ({names[int(y[0])]})")
    files.append(save(fig, out / "on_off.png"))
    fig, ax = subplots(figsize=(7, 3.2))
    for i in range(min(count, 5)):
        ax.plot(np.arange(1, steps + 1), x[i].sum((1, 2, 3)).numpy(), "o-", ms=3, label=f"sample {i} ({names[int(y[i])]})")
    ax.set(xlabel=f"time bin (of {steps}, spanning each recording)", ylabel="events per bin",
           title=f"{dataset}: event rate over time")
    ax.legend(fontsize=7)
    files.append(save(fig, out / "event_rate.png"))
    return files
