"""The epoch loops: plain functions that train or evaluate a model over a loader and return
their metrics as a dict."""
import contextlib
import time

import torch
from sklearn.metrics import confusion_matrix
from tqdm import tqdm

from .errors import NonFiniteLoss
from .losses import predict


def new_totals():
    """The running sums of an epoch; a checkpoint taken mid-epoch keeps them."""
    return {"loss": 0.0, "correct": 0, "spikes": 0.0, "seen": 0, "steps": 0, "data_seconds": 0.0}


def train_one_epoch(model, loader, encode, loss_fn, optimizer, device, *, scaler=None, augment=None,
                    amp=False, grad_clip=None, epoch=0, desc="train", totals=None, should_stop=None,
                    any_rank=bool, progress=True, regularizer=None):
    """One pass over ``loader``. ``encode`` turns images [B, ...] into model input [T, B, ...].

    Neuron state starts at zero inside every forward call (see ``SpikingLayer``), which is the
    one place state is reset: at the start of each batch. ``totals`` continues the running sums
    of an epoch resumed mid-way (the loader then starts at the batch after them). When
    ``should_stop(step)`` turns true after a step, the epoch ends there with ``stopped=True``.
    ``any_rank(flag)`` says whether a flag is set in any process (several processes must fail
    together). ``regularizer`` (a :class:`~snnclf.losses.RateRegularizer`) adds its penalty on
    the layers' firing rates to the loss; their mean rates over the epoch are returned as
    ``rates``. Returns loss, accuracy and output spikes per sample over the epoch's samples, and
    its totals."""
    model.train()
    totals = dict(totals) if totals else new_totals()
    watching = regularizer.watch(model) if regularizer is not None else contextlib.nullcontext()
    with watching:
        bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None if progress else True)
        fetched = time.perf_counter()
        step_seconds = []  # this call's steps (the first includes torch.compile's work, if any)
        for x, y in bar:
            began = time.perf_counter()
            totals["data_seconds"] += began - fetched  # time spent waiting for data
            step = totals["steps"] + 1
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if augment is not None:
                x = augment(x)
            with torch.autocast(device.type, enabled=amp):
                spk, mem = model(encode(x))  # [T, B, K] each
                loss = loss_fn(spk, mem, y)
                if regularizer is not None:
                    penalty, rates = regularizer.penalty()
                    loss = loss + penalty
                    sums = totals.setdefault("rate_sums", {})
                    for name, rate in rates.items():
                        sums[name] = sums.get(name, 0.0) + rate
            if any_rank(not torch.isfinite(loss)):
                blamed = regularizer is not None and not torch.isfinite(penalty)  # --rate_reg 1e300
                raise NonFiniteLoss(f"the {'rate penalty' if blamed else 'loss'} became "
                                    f"{'non-finite' if torch.isfinite(loss) else loss.item()} at epoch {epoch}, "
                                    f"step {step}: " + ("lower --rate_reg" if blamed else
                                                        "lower --lr or set --grad_clip"))
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            _accumulate(totals, loss, spk.detach(), mem.detach(), y)
            totals["steps"] = step
            step_seconds.append(time.perf_counter() - began)
            bar.set_postfix(loss=f"{totals['loss'] / totals['seen']:.4f}",
                            acc=f"{totals['correct'] / totals['seen']:.2%}")
            if should_stop is not None and should_stop(step):
                bar.close()
                return {**summarize(totals), **_step_times(step_seconds), "rates": mean_rates(totals),
                        "totals": totals, "stopped": True}
            fetched = time.perf_counter()
        return {**summarize(totals), **_step_times(step_seconds), "rates": mean_rates(totals), "totals": totals,
                "stopped": False}


def mean_rates(totals, processes=1):
    """The mean firing rate per spiking layer over the epoch's steps (with a rate regulariser);
    ``processes``: the number of processes whose sums ``totals`` holds."""
    steps = max(totals["steps"], 1) * processes
    return {name: s / steps for name, s in totals.get("rate_sums", {}).items()}


def _step_times(seconds):
    rest = seconds[1:] or seconds[:1] or [0.0]
    return {"first_step_seconds": seconds[0] if seconds else 0.0,
            "step_seconds": sum(rest) / len(rest)}


@torch.no_grad()
def evaluate(model, loader, encode, loss_fn, device, num_classes, *, amp=False, desc="eval",
             progress=True):
    """Loss, accuracy, output spikes per sample and the confusion matrix [K, K] (rows: true
    class, columns: predicted) of ``model`` over ``loader``."""
    model.eval()
    totals = new_totals()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for x, y in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None if progress else True):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=amp):
            spk, mem = model(encode(x))
            loss = loss_fn(spk, mem, y)
        pred = _accumulate(totals, loss, spk, mem, y)
        confusion += torch.from_numpy(confusion_matrix(y.cpu().numpy(), pred.cpu().numpy(),
                                                       labels=range(num_classes)))
    return {**summarize(totals), "totals": totals, "confusion": confusion}


def _accumulate(totals, loss, spk, mem, y):
    pred = predict(spk.float(), mem.float())
    n = len(y)
    totals["loss"] += loss.item() * n
    totals["correct"] += (pred == y).sum().item()
    totals["spikes"] += spk.float().sum().item()
    totals["seen"] += n
    return pred


def summarize(totals):
    seen = max(totals["seen"], 1)
    return {"loss": totals["loss"] / seen, "accuracy": totals["correct"] / seen,
            "spikes_per_sample": totals["spikes"] / seen, "samples": totals["seen"],
            "data_seconds": totals["data_seconds"]}
