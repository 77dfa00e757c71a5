"""Plot functions: each takes data and a matplotlib ``ax`` and returns what it drew. Only the
commands that own the output files create figures and save them."""
import numpy as np
import seaborn as sns
from snntorch import spikeplot

from ..runs import selection_key


def loss_curves(metrics, ax):
    """Train and validation loss per epoch from ``metrics.csv`` rows."""
    epochs = [r["epoch"] for r in metrics]
    lines = ax.plot(epochs, [r["train_loss"] for r in metrics], "o-", label="train")
    lines += ax.plot(epochs, [r["val_loss"] for r in metrics], "s-", label="validation")
    ax.set(xlabel="epoch", ylabel="loss", title="loss")
    ax.legend()
    return lines


def accuracy_curves(metrics, ax):
    """Train and validation accuracy (%) per epoch, the best validation epoch marked."""
    epochs = [r["epoch"] for r in metrics]
    val = [100 * r["val_accuracy"] for r in metrics]
    lines = ax.plot(epochs, [100 * r["train_accuracy"] for r in metrics], "o-", label="train")
    lines += ax.plot(epochs, val, "s-", label="validation")
    best = max(range(len(metrics)), key=lambda i: selection_key(metrics[i]["val_accuracy"],
                                                                 metrics[i]["val_loss"]))
    lines.append(ax.scatter([epochs[best]], [val[best]], s=120, facecolors="none", edgecolors="red",
                            label=f"best: {val[best]:.2f}% (epoch {epochs[best]})", zorder=3))
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax.legend()
    return lines


def confusion(matrix, class_names, ax):
    """Row-normalised confusion matrix (rows: true class) as a seaborn heatmap."""
    matrix = np.asarray(matrix, dtype=float)
    norm = matrix / np.clip(matrix.sum(1, keepdims=True), 1, None)
    out = sns.heatmap(norm, annot=len(class_names) <= 12, fmt=".2f", cmap="Blues", vmin=0, vmax=1,
                      xticklabels=class_names, yticklabels=class_names, ax=ax, cbar=True)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (each row sums to 1)")
    return out


def per_class(accuracy, ax):
    """Bars of per-class accuracy (%) from ``{class name: fraction}``; a class without test
    samples (None) gets no bar and an "n/a" where it would stand."""
    names = list(accuracy)
    values = [np.nan if v is None else 100 * v for v in accuracy.values()]
    bars = ax.bar(range(len(names)), values, color="tab:blue")
    low = min([v for v in values if not np.isnan(v)] + [100]) - 5
    for i, v in enumerate(values):
        if np.isnan(v):
            ax.text(i, low + 1, "n/a", ha="center", va="bottom", color="grey")
    ax.set_xticks(range(len(names)), names, rotation=45 if max(map(len, names)) > 3 else 0, ha="right")
    ax.set(ylabel="test accuracy (%)", ylim=(low, 100.5), title="per-class accuracy")
    return bars


def raster(spikes, ax, max_neurons=256):
    """Spike raster of one sample, spikes [T, N]: snnTorch's ``spikeplot.raster`` (at most
    ``max_neurons`` neurons, evenly chosen)."""
    if spikes.shape[1] > max_neurons:
        spikes = spikes[:, np.linspace(0, spikes.shape[1] - 1, max_neurons).astype(int)]
    drawn = spikeplot.raster(spikes, ax, s=4, c="black", marker="|")
    ax.set(xlabel="time step", ylabel="neuron", xlim=(-0.5, spikes.shape[0] - 0.5), ylim=(-1, spikes.shape[1]))
    return drawn


def membrane(traces, threshold, ax):
    """Membrane potential traces [T, n] of a few neurons, the firing threshold dashed."""
    lines = ax.plot(np.asarray(traces), lw=1.2)
    lines.append(ax.axhline(float(threshold), color="red", ls="--", lw=1, label=f"threshold {float(threshold):g}"))
    ax.set(xlabel="time step", ylabel="membrane potential")
    ax.legend(loc="upper right", fontsize=8)
    return lines


def rate_histogram(rates, ax):
    """Histogram of per-neuron firing rates (spikes per neuron per step)."""
    out = ax.hist(np.asarray(rates), bins=30, range=(0, 1), color="tab:blue")
    ax.set(xlabel="firing rate (spikes / step)", ylabel="neurons")
    return out


def mean_rates(names, rates, ax):
    """Bars of the mean firing rate of each spiking layer."""
    bars = ax.bar(range(len(names)), rates, color="tab:orange")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set(ylabel="mean firing rate (spikes / neuron / step)", title="activity per layer")
    return bars


def image(picture, ax, title=None, cmap="gray"):
    """One image [H, W] (or [H, W, 3]) without axes."""
    out = ax.imshow(np.asarray(picture), cmap=cmap, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return out


def embedding(points, labels, class_names, ax, title):
    """A 2-D embedding (t-SNE), one colour per class."""
    points, labels = np.asarray(points), np.asarray(labels)
    out = []
    for k, name in enumerate(class_names):
        sel = labels == k
        if sel.any():
            out.append(ax.scatter(points[sel, 0], points[sel, 1], s=8, label=name))
    ax.legend(markerscale=2, fontsize=7, ncol=2)
    ax.set(title=title, xticks=[], yticks=[])
    return out


def accuracy_bars(names, accuracies, ax):
    """Test accuracy (%) of several runs."""
    bars = ax.bar(range(len(names)), [100 * a for a in accuracies], color="tab:green")
    for bar, a in zip(bars, accuracies):
        ax.text(bar.get_x() + bar.get_width() / 2, 100 * a, f"{100 * a:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set(ylabel="test accuracy (%)", title="test accuracy")
    return bars
