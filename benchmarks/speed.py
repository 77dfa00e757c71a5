"""snnclf's csnn against the idiomatic snnTorch per-step loop of the same network, side by side.

The reference is the snnTorch tutorial's way: an ``nn.Sequential`` of layers and
``snn.Leaky(init_hidden=True)`` neurons, ``utils.reset`` before each batch, and the whole network
called once per time step. Both get the same weights and the same direct-encoded MNIST-sized input.
In one process, alternating the two, it times training steps (forward, ce_rate_loss, backward,
Adam) and inference at batch 128 for each T, takes the median after warm-up, checks that both
produce the same output spikes, measures each one's peak training memory in a fresh child process,
and relates the work done to this machine's measured float32 matmul rate.

    python benchmarks/speed.py [--steps 7] [--time_steps 5 25] [--batch_size 128] [--compile]
"""
import argparse
import multiprocessing as mp
import resource
import statistics
import time

import snntorch as snn
import snntorch.functional as SF
import torch
from snntorch import utils
from torch import nn

from snnclf.data import get_encoder
from snnclf.models import compile_model, get_model
from snnclf.optim import get_optimizer
from snnclf.utils import keep_freed_memory

SHAPE = (1, 28, 28)


def reference_from(model):
    """The snnTorch-tutorial network with ``model``'s weights and neuron settings."""
    cell = model.conv1_lif.cell
    grad, beta, threshold = cell.spike_grad, float(cell.beta), float(cell.threshold)

    def leaky(**kw):
        return snn.Leaky(beta=beta, threshold=threshold, spike_grad=grad, init_hidden=True, **kw)
    ref = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.MaxPool2d(2), leaky(),
        nn.Conv2d(32, 64, 3, padding=1), nn.MaxPool2d(2), leaky(),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 512), leaky(),
        nn.Linear(512, 10), leaky(output=True),
    )
    ours = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    theirs = [m for m in ref.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for a, b in zip(ours, theirs):
            b.weight.copy_(a.weight)
            b.bias.copy_(a.bias)
    return ref


def reference_forward(ref, x):  # x: [T, B, 1, 28, 28] -> (spikes, membrane) [T, B, 10]
    utils.reset(ref)
    spikes, membrane = [], []
    for t in range(x.shape[0]):
        spk, mem = ref(x[t])
        spikes.append(spk)
        membrane.append(mem)
    return torch.stack(spikes), torch.stack(membrane)


def ours_forward(model, x):
    return model(x)


def step_fns(nets, images, labels, time_steps):
    """Training-step and inference functions for each named (network, forward) pair. Every
    network trains with snnTorch's ce_rate_loss and Adam at lr 1e-4: the tutorial's
    ``torch.optim.Adam`` for the loop, the Adam that ``snnclf train`` builds (torch's fused
    kernel) for snnclf."""
    loss_fn = SF.ce_rate_loss()
    encode = get_encoder("direct")
    opts = {k: torch.optim.Adam(net.parameters(), 1e-4) if k == "snntorch" else
            get_optimizer("adam", net.parameters(), lr=1e-4) for k, (net, _) in nets.items()}

    def train(which):
        net, forward = nets[which]
        spk, _ = forward(net, encode(images, time_steps))
        loss = loss_fn(spk, labels)
        opts[which].zero_grad(set_to_none=True)
        loss.backward()
        opts[which].step()

    @torch.no_grad()
    def infer(which):
        net, forward = nets[which]
        forward(net, encode(images, time_steps))
    return train, infer


def timed(fn, which, steps, warmup=2):
    for _ in range(warmup):
        fn(which)
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        fn(which)
        times.append(time.perf_counter() - began)
    return times


def dense_flops_per_image(time_steps, conv1_once):
    """Forward multiply-adds of the conv and linear layers for one image over T steps, as FLOPs
    (2 per MAC). snnclf runs the first convolution once on a direct-encoded input; the loop, T times."""
    conv1 = 28 * 28 * 32 * 9
    later = 14 * 14 * 64 * 32 * 9 + 64 * 7 * 7 * 512 + 512 * 10
    return 2 * ((1 if conv1_once else time_steps) * conv1 + time_steps * later)


def matmul_rate():
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(5):
        began = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - began)
    return 2 * 2048 ** 3 / min(times)


def _peak_memory(which, time_steps, batch_size, keep, queue):
    """In a fresh process: the peak resident memory the first training step adds (activations
    kept for the backward pass, gradients, and Adam's state, the same for both)."""
    if keep:
        keep_freed_memory()
    torch.manual_seed(0)
    model = get_model("csnn", SHAPE, 10)
    nets = {"ours": (model, ours_forward), "snntorch": (reference_from(model), reference_forward)}
    images, labels = torch.rand(batch_size, *SHAPE), torch.randint(0, 10, (batch_size,))
    train, _ = step_fns(nets, images, labels, time_steps)
    try:  # Linux: reset the peak (VmHWM) to the current size, then read the new peak
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status("VmRSS")
        train(which)
        queue.put(_status("VmHWM") - before)
    except OSError:  # elsewhere: the rise of the lifetime peak, a lower bound
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        train(which)
        queue.put((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def peak_memory(which, time_steps, batch_size, keep=False):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_memory, args=(which, time_steps, batch_size, keep, queue))
    proc.start()
    value = queue.get()
    proc.join()
    return value


GOALS = {("train", 5): 2.0, ("inference", 5): 3.0, ("train", 25): 1.6, ("inference", 25): 2.5}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--time_steps", type=int, nargs="+", default=[5, 25])
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--steps", type=int, default=7, help="timed steps per case, after 2 warm-up steps")
    p.add_argument("--no_memory", action="store_true", help="skip the peak-memory child processes")
    p.add_argument("--compile", action="store_true",
                   help="add snnclf's csnn under torch.compile (snnclf train --compile) as a third column")
    args = p.parse_args()
    # snnclf's commands turn this on (see snnclf.utils); here it serves both sides alike
    kept = keep_freed_memory()
    torch.manual_seed(0)
    rate = matmul_rate()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; float32 matmul 2048^2: "
          f"{rate / 1e9:.0f} GFLOP/s; freed memory kept by malloc: {'yes' if kept else 'no'}")
    names = ["snntorch", "ours"] + (["compiled"] if args.compile else [])
    titles = {"snntorch": "snnTorch loop", "ours": "snnclf", "compiled": "snnclf --compile"}
    header = (f"{'T':>3} {'mode':<9} " + " ".join(f"{titles[n] + ' img/s':>22}" for n in names)
              + f" {'ratio':>6} {'goal':>5}" + (f" {'compiled':>8}" if args.compile else "")
              + f" {'loop % mm':>9} {'ours % mm':>9} {'peak MB loop':>12} {'peak MB ours':>12} {'mem ratio':>9}  same spikes")
    print(header)
    print("-" * len(header))
    notes = []
    for T in args.time_steps:
        torch.manual_seed(0)
        model = get_model("csnn", SHAPE, 10)
        nets = {"ours": (model, ours_forward), "snntorch": (reference_from(model), reference_forward)}
        images, labels = torch.rand(args.batch_size, *SHAPE), torch.randint(0, 10, (args.batch_size,))
        x = get_encoder("direct")(images, T)
        with torch.no_grad():
            same = torch.equal(ours_forward(model, x)[0], reference_forward(nets["snntorch"][0], x)[0])
        if args.compile:  # its own copy of the weights, so that the three train side by side
            twin = get_model("csnn", SHAPE, 10)
            twin.load_state_dict(model.state_dict())
            nets["compiled"] = (compile_model(twin), ours_forward)
        train, infer = step_fns(nets, images, labels, T)
        for mode, fn, passes in (("train", train, 3), ("inference", infer, 1)):
            times, first = {n: [] for n in names}, {}
            for n in names:  # warm-up; the compiled model compiles here (once per mode)
                began = time.perf_counter()
                fn(n)
                first[n] = time.perf_counter() - began
                fn(n)
            for _ in range(args.steps):  # alternate, so all see the same machine state
                for n in names:
                    times[n] += timed(fn, n, 1, warmup=0)
            speed = {n: args.batch_size / statistics.median(v) for n, v in times.items()}
            # dense conv and linear FLOPs done per second, as a fraction of the matmul rate
            used = {n: speed[n] * passes * dense_flops_per_image(T, conv1_once=n != "snntorch") / rate
                    for n in names}
            if mode == "train" and not args.no_memory:
                mem = {k: peak_memory(k, T, args.batch_size, kept) / 2 ** 20 for k in ("snntorch", "ours")}
                mem_cols = (f"{mem['snntorch']:>12.0f} {mem['ours']:>12.0f} "
                            f"{mem['ours'] / max(mem['snntorch'], 1e-9):>9.2f}")
            else:
                mem_cols = f"{'':>12} {'':>12} {'':>9}"
            compiled = ""
            if args.compile:
                compiled = f" {speed['compiled'] / speed['snntorch']:>7.2f}x"
                notes.append(f"T={T} {mode}: torch.compile took {first['compiled'] - args.batch_size / speed['compiled']:.1f} s "
                             f"once (first step {first['compiled']:.1f} s)")
            print(f"{T:>3} {mode:<9} " + " ".join(f"{speed[n]:>22.0f}" for n in names)
                  + f" {speed['ours'] / speed['snntorch']:>5.2f}x {GOALS.get((mode, T), 0):>4.1f}x{compiled}"
                  + f" {used['snntorch']:>9.0%} {used['ours']:>9.0%} {mem_cols}  {same}")
    print("ratio: snnclf / snnTorch loop, images per second (median of the timed steps); % mm: the dense "
          "conv and linear FLOPs each does per second (training counted as 3x the forward), as a fraction of "
          "the 2048^2 matmul rate (oneDNN's convolutions can exceed it); peak MB: resident memory that the "
          "first training step adds, each in a fresh process")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
