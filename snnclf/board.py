"""``--tensorboard``: a run's progress as TensorBoard event files in its log folder, so that
``tensorboard --logdir logs`` shows every run (and every point of a sweep) side by side.

Per epoch: the losses, accuracies, learning rate and output spikes per sample of metrics.csv, and
the firing rate of each spiking layer (the mean of its spikes over the validation samples of
this process, the only figure here that metrics.csv does not hold). At the end: the run's options
as hyper-parameters with its final metrics (TensorBoard's HParams view), and its pictures. Written
through ``torch.utils.tensorboard``, which needs the ``tensorboard`` package."""
import contextlib
import importlib.util

import numpy as np
import torch
from PIL import Image

from .errors import UsageError
from .flags import given
from .models.neurons import spiking_layers

SCALARS = {"train_loss": "loss/train", "val_loss": "loss/validation", "train_accuracy": "accuracy/train",
           "val_accuracy": "accuracy/validation", "lr": "learning_rate",
           "spikes_per_sample": "spikes_per_sample/train"}


def check_installed():
    """A one-line error naming the install when ``tensorboard`` is missing (before any file is
    written)."""
    if importlib.util.find_spec("tensorboard") is None:
        raise UsageError("--tensorboard needs the tensorboard package: pip install tensorboard "
                         "(or pip install -e '.[tensorboard]')")


class Board:
    """The event files of one run, in ``folder``. A resumed run starts at ``first_epoch``: events
    a stopped process wrote for later epochs are dropped (TensorBoard's ``purge_step``)."""

    def __init__(self, folder, first_epoch=1):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder), purge_step=first_epoch)

    @contextlib.contextmanager
    def firing_rates(self, model):
        """Within the block, the spikes of every spiking layer of ``model`` are counted; the dict
        it yields holds {layer name: mean firing rate} when the block ends."""
        sums, rates = {}, {}

        def count(name):
            def hook(module, inputs, output):  # sums stay tensors: no device sync per batch
                spikes = output[0].detach()
                total, n = sums.get(name, (0.0, 0))
                sums[name] = (total + spikes.float().sum(), n + spikes.numel())
            return hook
        hooks = [m.register_forward_hook(count(name)) for name, m in spiking_layers(model)]
        try:
            yield rates
        finally:
            for h in hooks:
                h.remove()
            rates.update({name: float(total) / max(n, 1) for name, (total, n) in sums.items()})

    def epoch(self, row, rates):
        """One metrics.csv row and the layers' firing rates, at step ``row["epoch"]``."""
        for key, tag in SCALARS.items():
            self.writer.add_scalar(tag, row[key], row["epoch"])
        for name, rate in rates.items():
            self.writer.add_scalar(f"firing_rate/{name}", rate, row["epoch"])
        self.writer.flush()

    def finish(self, options, metrics, pictures):
        """The run's options (those set, as plain values) against its final ``metrics``, and its
        pictures (PNG files) as images."""
        hparams = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in given(options).items()}
        self.writer.add_hparams(hparams, {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".")
        for path in pictures:
            with Image.open(path) as image:
                pixels = np.array(image.convert("RGB"))
            self.writer.add_image(f"pictures/{path.stem}", torch.from_numpy(pixels), dataformats="HWC")
        self.writer.close()

    def close(self):
        self.writer.close()
