"""Training on several processes (``torchrun``): the process group, which rank does what, and
the reductions that make every rank agree. A plain ``snnclf train`` runs as one process and none of
this is set up."""
import datetime
import gc
import inspect
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from .errors import UsageError


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    reduce_device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # NCCL: the GPU
    owns_group: bool = False  # this context started the process group (and ends it in teardown)

    @property
    def enabled(self):
        return self.world > 1

    @property
    def is_main(self):
        """Rank 0 alone writes checkpoints, logs and metrics and shows progress."""
        return self.rank == 0

    def sum(self, values):
        """Element-wise sum of a list of numbers over all ranks (float64)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.reduce_device)
        dist.all_reduce(t)
        return t.tolist()

    def any(self, flag):
        """True on every rank if ``flag`` is true on any: ranks must stop, or fail, together."""
        return bool(self.sum([float(bool(flag))])[0]) if self.enabled else bool(flag)

    def gather(self, obj):
        """``obj`` of every rank, as a list in rank order."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self):
        if self.enabled:
            dist.barrier()

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (a search's next trial, chosen by rank 0)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def from_environment():
    """The :class:`Context` torchrun describes in RANK, WORLD_SIZE and LOCAL_RANK (one process
    without them)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Context(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup(ctx, device):
    """Join the process group: NCCL with one GPU per process on CUDA, gloo on the CPU. Returns the
    device this rank trains on."""
    if not ctx.enabled:
        return device
    if device.type == "cuda":
        if ctx.local_rank >= torch.cuda.device_count():
            raise UsageError(f"local rank {ctx.local_rank} has no GPU ({torch.cuda.device_count()} here): "
                             "start at most one process per GPU (--nproc_per_node)")
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise UsageError(f"training on several processes needs CUDA or the CPU, not {device.type}")
    if not dist.is_initialized():  # a search running trials under torchrun keeps one group for all
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
        ctx.owns_group = True
    ctx.reduce_device = device if backend == "nccl" else torch.device("cpu")
    return device


def wrap(ctx, model, device):
    """``model`` in DistributedDataParallel, which averages gradients over the processes (the
    model itself when there is one process). Its batch norms must already compute their
    statistics over every process (:func:`sync_batch_norm`, before the optimizer is built).

    Neuron state lives only inside ``forward``, so there is no hidden state for DDP to trip on
    (the snnTorch ``DataParallel`` bugs); snnTorch's cells do keep their last state in buffers,
    which are per-batch scratch and must not be synchronised before each forward."""
    if not ctx.enabled:
        return model
    kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
    params = inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters
    kwargs["forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"] = False
    return torch.nn.parallel.DistributedDataParallel(model, **kwargs)


def teardown(ctx):
    """End the process group this context started, and free what still holds it.

    Objects caught in reference cycles are freed first (``gc.collect``): a training run's frames
    (and in them its DDP model, which holds the group) stay in one whenever a module imported
    during the run keeps its own frame (``torch.fx.wrap`` does). Left to the interpreter's exit,
    the group's gloo threads would find no Python to return to and abort the process (exit code
    -6, "terminate called without an active exception") after a run that went well."""
    if ctx.enabled and ctx.owns_group and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
        gc.collect()


class CrossProcessBatchNorm(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training-mode statistics are those of the batches of all processes
    together, so N processes of batch B normalise (and keep running statistics) exactly as one
    process of batch N x B. Inside :class:`~snnclf.models.layers.Folded` it sees [T*B, C, H, W],
    so the statistics stay folded over time, as in one process.

    torch's ``SyncBatchNorm`` does this on CUDA but refuses CPU tensors, and training under
    torchrun on CPUs (gloo) is supported here, so the CPU gets this module: two all-reduces
    (sum, then the sum of squared deviations, as the two-pass variance is more exact), through
    ``torch.distributed.nn``'s all-reduce, whose backward sums the gradients over processes too.
    Same parameters, buffers and state dict as ``BatchNorm2d``; in eval mode it is ``BatchNorm2d``."""

    def forward(self, x):
        if not self.training or not dist.is_initialized() or dist.get_world_size() == 1:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce  # autograd-aware; loads torch.distributed.nn

        dims = [d for d in range(x.dim()) if d != 1]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = x.new_full((1,), x.numel() / x.shape[1])
        sums = all_reduce(torch.cat([x.sum(dims), count]))
        n = sums[-1]
        mean = sums[:-1] / n
        centred = x - mean.view(shape)
        var = all_reduce(centred.square().sum(dims)) / n
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def sync_batch_norm(model):
    """Replace every ``BatchNorm2d`` of ``model`` in place by one whose statistics span all
    processes (torch's ``SyncBatchNorm`` on CUDA, :class:`CrossProcessBatchNorm` elsewhere),
    with the same values. The replacements have new parameters: call it before an optimizer
    takes the model's parameters."""
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            on_cuda = child.running_mean is not None and child.running_mean.device.type == "cuda"
            cls = nn.SyncBatchNorm if on_cuda else CrossProcessBatchNorm
            synced = cls(child.num_features, child.eps, child.momentum, child.affine,
                         child.track_running_stats).to(child.running_mean.device)
            synced.load_state_dict(child.state_dict())
            setattr(model, name, synced)
        else:
            sync_batch_norm(child)
    return model
