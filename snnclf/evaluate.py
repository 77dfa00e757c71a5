"""The eval command: rebuild a model from its checkpoint alone and measure it on the test split
(and, unless told otherwise, on train and validation)."""
from dataclasses import replace

from . import efficiency
from .builders import build_loss, check_fits, check_memory, load_data, make_encoder, open_trained
from .config import EVAL_SEED, LOG_DIR, SAVE_DIR, check_option
from .data import is_event_dataset, make_loader, make_splits
from .engine import evaluate
from .errors import UsageError
from .models import compile_model
from .models.quant import float_twin, is_quantized
from .neurobench import measure as measure_neurobench, require as require_neurobench
from .runs import RunLock, write_csv, write_json
from .utils import resolve_device, seeded
from .viz.reports import evaluation_pictures


def run_eval(run=None, checkpoint=None, save_dir=SAVE_DIR, log_dir=LOG_DIR, test_only=False,
             time_steps=None, batch_size=None, device="auto", data_dir=None, compile=False,
             seed=EVAL_SEED, dataset=None, neurobench=False, neurobench_samples=512):
    """Evaluate a run's ``best.pt`` (or the file ``checkpoint``; with neither, the most recently
    trained run). ``time_steps``, ``batch_size``, ``device`` and ``data_dir`` override the run's.
    ``compile`` runs the model under ``torch.compile``. Random input (rate spikes) is drawn from
    ``seed``, so the same call gives the same numbers; the process's random state is left as it
    was. Writes ``eval.json`` and ``confusion_matrix.csv`` in the run's log folder and returns the
    results as a dict. ``dataset`` evaluates on another data set with the run's input shape and
    classes (a run trained on simulated events tested on recordings); its results go to
    ``eval_<dataset>.json`` and ``confusion_matrix_<dataset>.csv``, beside the run's own.
    ``neurobench`` adds NeuroBench's metrics of the first ``neurobench_samples`` test samples
    (``neurobench`` in the results; see :mod:`snnclf.neurobench`)."""
    if neurobench:
        require_neurobench()  # a missing package is one line before the evaluation, not after it
    device = resolve_device(device)
    trained = open_trained(run, checkpoint, save_dir, log_dir, device)
    path, ckpt, cfg, run = trained.path, trained.checkpoint, trained.cfg, trained.run
    with RunLock(run):  # not while another process trains or evaluates this run
        T = check_option("time_steps", time_steps) if time_steps is not None else cfg.time_steps
        batch_size = check_option("batch_size", batch_size) if batch_size is not None else cfg.batch_size

        other = dataset is not None and dataset != cfg.dataset
        if other and is_event_dataset(dataset) != is_event_dataset(cfg.dataset):
            kinds = {True: "an event data set", False: "a data set of images"}
            raise UsageError(f"--dataset {dataset}: run {run.name} was trained on {cfg.dataset}, "
                             f"{kinds[is_event_dataset(cfg.dataset)]}, and {dataset} is "
                             f"{kinds[is_event_dataset(dataset)]}: choose a data set of its kind")
        data = load_data(replace(cfg, dataset=dataset) if other else cfg, time_steps=T, data_dir=data_dir,
                         test_only=test_only)
        check_fits(ckpt, data, path, dataset or cfg.dataset)
        splits = {"test": data.test} if test_only else make_splits(data, cfg.val_fraction, cfg.subset)
        model = trained.model
        check_memory(model, trained.in_shape, T, batch_size, device)
        encode = make_encoder(cfg, T)
        loss_fn = build_loss(cfg, model, T)

        results = {"run": run.name, "checkpoint": str(path), "epoch": ckpt["epoch"],
                   "dataset": dataset if other else cfg.dataset, "trained_on": cfg.dataset, "model": cfg.model,
                   "time_steps": T, "seed": seed}
        net = compile_model(model) if compile else model
        with seeded(seed, device):
            results.update(_measure(net, model, splits, ["test"] if test_only else ["test", "val", "train"],
                                    encode, loss_fn, device, batch_size, data.class_names))
        if is_quantized(model):  # a --chip run: the same network before its weights were rounded, beside it
            with seeded(seed, device), float_twin(model):
                m = evaluate(net, make_loader(splits["test"], batch_size), encode, loss_fn, device,
                             len(data.class_names), desc="test (float)")
            results.update(chip=cfg.chip, test_accuracy_float=m["accuracy"])
        if neurobench:  # drawn from the seed on its own: the same numbers with or without --test_only
            with seeded(seed, device):
                results["neurobench"] = measure_neurobench(model, splits["test"], encode, batch_size, device,
                                                           neurobench_samples)
        suffix = f"_{dataset}" if other else ""
        eval_json, confusion_csv = run.log_dir / f"eval{suffix}.json", run.log_dir / f"confusion_matrix{suffix}.csv"
        names = data.class_names
        write_json(eval_json, results)
        write_csv(confusion_csv, ["true \\ predicted"] + names,
                  [[n] + row for n, row in zip(names, results["confusion_matrix"])])
        pictures = evaluation_pictures(run, results, suffix)
        results["files"] = [str(eval_json), str(confusion_csv)] + [str(p) for p in pictures]
        return results


def _measure(net, model, splits, which, encode, loss_fn, device, batch_size, names):
    """Accuracy, loss and spikes per split; per-class accuracy, confusion and operation counts on test."""
    results = {}
    for split in which:
        m = evaluate(net, make_loader(splits[split], batch_size), encode, loss_fn, device,
                     len(names), desc=split)
        results.update({f"{split}_accuracy": m["accuracy"], f"{split}_loss": m["loss"],
                        f"num_{split}": m["samples"], f"{split}_spikes_per_sample": m["spikes_per_sample"]})
        if split == "test":
            confusion = m["confusion"]
            per_class = confusion.diag().double() / confusion.sum(1).clamp(min=1).double()
            # a class without test samples has no accuracy (None: null in the JSON, n/a printed)
            results["per_class_accuracy"] = {n: float(a) if total else None
                                             for n, a, total in zip(names, per_class, confusion.sum(1).tolist())}
            results["confusion_matrix"] = confusion.tolist()
    results["class_names"] = names
    results["efficiency"] = efficiency.measure(model, splits["test"], encode, batch_size, device)
    return results


def format_results(results):
    """The results as the lines ``snnclf eval`` prints."""
    on = (f"{results['dataset']} (trained on {results['trained_on']})"
          if results["dataset"] != results.get("trained_on", results["dataset"]) else results["dataset"])
    lines = [f"run {results['run']} ({results['checkpoint']}, epoch {results['epoch']}), "
             f"{on}, T={results['time_steps']}, seed {results['seed']}"]
    for split in ("test", "val", "train"):
        if f"{split}_accuracy" in results:
            lines.append(f"{split:>5} accuracy {100 * results[f'{split}_accuracy']:6.2f}%  "
                         f"loss {results[f'{split}_loss']:.4f}  {results[f'num_{split}']} images  "
                         f"{results[f'{split}_spikes_per_sample']:.1f} output spikes/sample")
    if "test_accuracy_float" in results:
        lines.append(f"chip {results['chip']}: test accuracy {100 * results['test_accuracy']:.2f}% with the chip's "
                     f"integers (the figures above), {100 * results['test_accuracy_float']:.2f}% with the same "
                     "weights and thresholds unrounded")
    lines.append("per-class test accuracy:")
    width = max(len(n) for n in results["class_names"])
    lines += [f"  {name:<{width}}  " + ("    n/a (no test samples)" if acc is None else f"{100 * acc:6.2f}%")
              for name, acc in results["per_class_accuracy"].items()]
    lines.append(f"operations per test sample (over {results['efficiency']['samples']} samples):")
    lines += ["  " + line for line in efficiency.table(results["efficiency"])]
    lines.append("wrote " + ", ".join(results["files"]))
    return "\n".join(lines)
