"""Training on several processes (``torchrun``): the process group, which rank does what, and
the reductions that make every rank agree. A plain ``snnclf train`` runs as one process and none of
this is set up."""
import datetime
import inspect
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from .errors import UsageError


@dataclass
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    reduce_device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # NCCL: the GPU

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
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    ctx.reduce_device = device if backend == "nccl" else torch.device("cpu")
    return device


def wrap(ctx, model, device):
    """``model`` in DistributedDataParallel, which averages gradients over the processes (the
    model itself when there is one process).

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
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
