"""``snnclf visualize-activations``: every spiking layer recorded through forward hooks on test
samples, then drawn: rasters, membrane traces, firing rates, the output race as a GIF, the first
convolution's filters and a t-SNE map of the penultimate layer."""
from collections import OrderedDict
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..builders import load_data, make_encoder, open_trained
from ..config import DRAWN_SAMPLES, EVAL_SEED, LOG_DIR, SAVE_DIR
from ..errors import UsageError
from ..flags import checked, number
from ..models.neurons import spiking_layers
from ..utils import seeded
from . import plots
from .files import gif_frame, save, save_gif, subplots



@torch.no_grad()
def record(model, inputs):
    """Run ``model`` on ``inputs`` [T, B, ...] and return, for every spiking layer (in order),
    its (spikes, membrane), each [T, B, ...], captured by forward hooks."""
    seen = OrderedDict()

    def hook(name, module, args, output):
        seen[name] = (output[0].detach().cpu(), output[1].detach().cpu())
    handles = [m.register_forward_hook(partial(hook, name)) for name, m in spiking_layers(model)]
    try:
        model(inputs)
    finally:
        for h in handles:
            h.remove()
    return seen


def output_race_gif(spikes, class_names, path, label=None):
    """An animated GIF of the output neurons' spike counts growing step by step, spikes [T, K];
    one frame per time step, drawn with matplotlib and written by Pillow (no ffmpeg)."""
    counts = spikes.cumsum(0).numpy()
    top = max(1.0, counts.max())
    frames = []
    for t in range(len(counts)):
        fig, ax = subplots(figsize=(4.2, 2.8))
        ax.bar(range(len(class_names)), counts[t], color=["tab:green" if k == label else "tab:blue"
                                                          for k in range(len(class_names))])
        ax.set_xticks(range(len(class_names)), class_names, fontsize=7,
                      rotation=45 if max(map(len, class_names)) > 3 else 0)
        ax.set(ylim=(0, top * 1.05), ylabel="output spikes so far", title=f"t = {t + 1}/{len(counts)}")
        frames.append(gif_frame(fig))
    return save_gif(frames, path, 250)


def visualize(run=None, checkpoint=None, num_samples=DRAWN_SAMPLES, tsne=False, tsne_samples=500, out=None,
              save_dir=SAVE_DIR, log_dir=LOG_DIR, device="cpu"):
    """Draw the activity of ``run``'s ``best.pt`` (or of the file ``checkpoint``; with neither,
    the most recently trained run's) into ``out`` (default ``activations/<run>/``). Returns the
    files written."""
    trained = open_trained(run, checkpoint, save_dir, log_dir, torch.device(device))
    cfg, model, run = trained.cfg, trained.model, trained.run.name
    if not model.spiking:
        raise UsageError(f"run {run} trains {cfg.model}, which has no spiking layers to draw; "
                         "pick a spiking run")
    checked("num_samples", number(int, 1), num_samples)
    data = load_data(cfg, test_only=True)
    test = data.test
    encode = make_encoder(cfg)
    out = Path(out or Path("activations") / run)
    names = data.class_names

    count = min(len(test), max(num_samples, tsne_samples if tsne else 0))
    shown = min(num_samples, count)
    x, y = test[list(range(count))]
    with seeded(EVAL_SEED):  # rate spikes drawn as snnclf eval draws them
        first = record(model, encode(x[:shown]))  # full spike trains and membranes of the drawn samples
        counts = {n: [] for n in first}  # spikes per neuron and sample over all ``count`` samples: [N, ...]
        for start in range(0, count, 256):
            for name, (spk, _) in record(model, encode(x[start:start + 256])).items():
                counts[name].append(spk.sum(0))
    spikes = {n: s for n, (s, _) in first.items()}  # [T, shown, ...]
    counts = {n: torch.cat(c) for n, c in counts.items()}

    thresholds = {n: float(m.cell.threshold) for n, m in spiking_layers(model)}
    files = []
    for name, (spk, mem) in first.items():
        files += _layer_pictures(f"{run}: {name}", spk[:, 0].flatten(1), mem[:, 0].flatten(1),
                                 thresholds[name], names[int(y[0])], out, name)
    files += _rate_pictures(run, {n: (c.float() / cfg.time_steps).flatten(1) for n, c in counts.items()},
                            count, out)
    output = list(spikes)[-1]
    for i in range(shown):
        files.append(output_race_gif(spikes[output][:, i].flatten(1), names,
                                     out / f"output_race_{i}.gif", label=int(y[i])))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if convs:
        files.append(_filters(run, convs[0], out))
    if tsne:
        penultimate = list(spikes)[-2] if len(spikes) > 1 else output
        files.append(_tsne(run, penultimate, counts[penultimate], y, names, out))
    return files


def _layer_pictures(title, spk, mem, threshold, label, out, name):
    """The raster and five membrane traces of one layer for one sample, spikes and membrane [T, N]."""
    fig, ax = subplots(figsize=(7, 3.5))
    plots.raster(spk, ax)
    ax.set_title(f"{title} spikes, test sample 0 (label {label})")
    raster = save(fig, out / f"raster_{name}.png")
    active = torch.argsort(spk.sum(0), descending=True)[:3]
    quiet = torch.argsort(mem.max(0).values, descending=True)[3:5]
    fig, ax = subplots(figsize=(7, 3.2))
    plots.membrane(mem[:, torch.cat([active, quiet])], threshold, ax)
    ax.set_title(f"{title} membrane of 5 neurons, test sample 0")
    return [raster, save(fig, out / f"membrane_{name}.png")]


def _rate_pictures(run, rates, count, out):
    """Histograms of every layer's per-neuron firing rates [N, neurons], and their means."""
    fig, axes = subplots(1, len(rates), figsize=(3.2 * len(rates), 3), squeeze=False)
    for ax, (name, r) in zip(axes[0], rates.items()):
        plots.rate_histogram(r.flatten(), ax)
        ax.set_title(name, fontsize=9)
    fig.suptitle(f"{run}: firing rates per neuron over {count} test samples")
    histograms = save(fig, out / "firing_rates.png")
    fig, ax = subplots(figsize=(1.5 + 1.1 * len(rates), 3.5))
    plots.mean_rates(list(rates), [float(r.mean()) for r in rates.values()], ax)
    return [histograms, save(fig, out / "mean_rates.png")]


def _filters(run, conv, out):
    """The first convolution's filters (at most 32), each averaged over its input channels."""
    w = conv.weight.detach().cpu()  # [filters, in channels, k, k]
    n, cols = min(32, w.shape[0]), 8
    rows = (n + cols - 1) // cols
    fig, axes = subplots(rows, cols, figsize=(cols * 1.1, 1.2 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k < n:
            plots.image(w[k].mean(0), ax, cmap="RdBu_r")
        else:
            ax.axis("off")
    fig.suptitle(f"{run}: first convolution's filters (mean over input channels)")
    return save(fig, out / "conv1_filters.png")


def _tsne(run, layer, counts, y, names, out):
    """A t-SNE map of one layer's spike counts [N, ...], coloured by class, with its silhouette score."""
    from sklearn.manifold import TSNE
    from sklearn.metrics import silhouette_score

    count = len(counts)
    features = counts.float().flatten(1).numpy()
    labels = y.numpy()
    # Spike counts of a silent or untrained layer are often identical across samples, which
    # crashes Barnes-Hut t-SNE and leaves PCA initialisation without variance: a jitter far
    # below one spike breaks the ties. Up to a few thousand samples the exact method is used.
    exact = count <= 2000
    features = features + np.random.default_rng(0).normal(0, 1e-3, features.shape)
    points = TSNE(n_components=2, perplexity=min(30, max(2, count // 4)), init="pca",
                  method="exact" if exact else "barnes_hut", random_state=0).fit_transform(features)
    score = silhouette_score(points, labels) if len(set(labels.tolist())) > 1 else float("nan")
    fig, ax = subplots(figsize=(6, 5.5))
    plots.embedding(points, labels, names, ax,
                    f"{run}: t-SNE of {layer} spike counts, {count} test samples\n"
                    f"silhouette score {score:.3f}")
    return save(fig, out / "tsne.png")
