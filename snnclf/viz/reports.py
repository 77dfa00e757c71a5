"""A run's own pictures, drawn from its files: training curves after ``train``, the confusion
matrix and per-class accuracy after ``eval``."""
from ..runs import read_metrics
from . import plots
from .files import save, subplots


def training_curves(run):
    """``<log_dir>/<run>/curves.png``: loss and accuracy per epoch, train against validation."""
    metrics = read_metrics(run.metrics)
    fig, (a, b) = subplots(1, 2, figsize=(10, 3.8))
    plots.loss_curves(metrics, a)
    plots.accuracy_curves(metrics, b)
    fig.suptitle(run.name)
    return save(fig, run.log_dir / "curves.png")


def evaluation_pictures(run, results, suffix=""):
    """``confusion_matrix<suffix>.png`` and ``per_class_accuracy<suffix>.png`` of an eval's test
    results (``suffix``: ``_<dataset>`` for another data set than the run's)."""
    names = results["class_names"]
    fig, ax = subplots(figsize=(1.0 + 0.6 * len(names), 0.8 + 0.5 * len(names)))
    plots.confusion(results["confusion_matrix"], names, ax)
    on = f" on {results['dataset']}" if suffix else ""
    ax.set_title(f"{run.name}{on}: test confusion matrix (each row sums to 1)")
    a = save(fig, run.log_dir / f"confusion_matrix{suffix}.png")
    fig, ax = subplots(figsize=(1.5 + 0.5 * len(names), 3.5))
    plots.per_class(results["per_class_accuracy"], ax)
    ax.set_title(f"{run.name}{on}: per-class test accuracy (overall {100 * results['test_accuracy']:.2f}%)")
    b = save(fig, run.log_dir / f"per_class_accuracy{suffix}.png")
    return [a, b]


