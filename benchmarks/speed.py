"""snnclf's csnn against the idiomatic snnTorch per-step loop of the same network, side by side.

The reference is the snnTorch tutorial's way: an ``nn.Sequential`` of layers and
``snn.Leaky(init_hidden=True)`` neurons, ``utils.reset`` before each batch, and the whole network
called once per time step. Both get the same weights and the same direct-encoded MNIST-sized input.
In one process, alternating the two, it times training steps (forward, ce_rate_loss, backward,
Adam) and inference at batch 128 for each T, takes the median after warm-up, checks that both
produce the same output spikes, measures each one's peak training memory in a fresh child process,
and relates the work done to this machine's measured float32 matmul rate.

    python benchmarks/speed.py [--steps 7] [--time_steps 5 25] [--batch_size 128]
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
from snnclf.models import get_model

SHAPE = (1, 28, 28)


def reference_from(model):
    """The snnTorch-tutorial network with ``model``'s weights and neuron settings."""
    cell = model.conv1_lif.cell
    grad, beta = cell.spike_grad, float(cell.beta)

    def leaky(**kw):
        return snn.Leaky(beta=beta, spike_grad=grad, init_hidden=True, **kw)
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


def step_fns(model, ref, encode, images, labels):
    loss_fn = SF.ce_rate_loss()
    opts = {"ours": torch.optim.Adam(model.parameters(), 1e-4),
            "snntorch": torch.optim.Adam(ref.parameters(), 1e-4)}
    nets = {"ours": (model, ours_forward), "snntorch": (ref, reference_forward)}

    def train(which):
        net, forward = nets[which]
        spk, _ = forward(net, encode(images))
        loss = loss_fn(spk, labels)
        opts[which].zero_grad(set_to_none=True)
        loss.backward()
        opts[which].step()

    @torch.no_grad()
    def infer(which):
        net, forward = nets[which]
        forward(net, encode(images))
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


def dense_flops_per_image(time_steps):
    """Forward multiply-adds of the dense layers for one image over T steps, as FLOPs (2 per MAC)."""
    conv1 = 28 * 28 * 32 * 9
    conv2 = 14 * 14 * 64 * 32 * 9
    fc = 64 * 7 * 7 * 512 + 512 * 10
    return 2 * time_steps * (conv1 + conv2 + fc)


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


def _peak_memory(which, time_steps, batch_size, queue):
    """In a fresh process: the peak resident memory the first training step adds (activations
    kept for the backward pass, gradients, and Adam's state, the same for both)."""
    torch.manual_seed(0)
    model = get_model("csnn", SHAPE, 10)
    ref = reference_from(model)
    encode = get_encoder("direct")
    images, labels = torch.rand(batch_size, *SHAPE), torch.randint(0, 10, (batch_size,))
    train, _ = step_fns(model, ref, lambda x: encode(x, time_steps), images, labels)
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


def peak_memory(which, time_steps, batch_size):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_memory, args=(which, time_steps, batch_size, queue))
    proc.start()
    value = queue.get()
    proc.join()
    return value


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--time_steps", type=int, nargs="+", default=[5, 25])
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--steps", type=int, default=7, help="timed steps per case, after 2 warm-up steps")
    p.add_argument("--no_memory", action="store_true", help="skip the peak-memory child processes")
    args = p.parse_args()
    torch.manual_seed(0)
    rate = matmul_rate()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; float32 matmul 2048^2: "
          f"{rate / 1e9:.0f} GFLOP/s")
    header = (f"{'T':>3} {'mode':<9} {'snnTorch img/s':>14} {'snnclf img/s':>12} {'ratio':>6} "
              f"{'of matmul rate':>14} {'peak MB loop':>12} {'peak MB ours':>12} {'mem ratio':>9}  same spikes")
    print(header)
    print("-" * len(header))
    for T in args.time_steps:
        model = get_model("csnn", SHAPE, 10)
        ref = reference_from(model)
        images, labels = torch.rand(args.batch_size, *SHAPE), torch.randint(0, 10, (args.batch_size,))
        encode_direct = get_encoder("direct")

        def encode(x):
            return encode_direct(x, T)
        with torch.no_grad():
            a, b = ours_forward(model, encode(images)), reference_forward(ref, encode(images))
        same = torch.equal(a[0], b[0])
        train, infer = step_fns(model, ref, encode, images, labels)
        for mode, fn, passes in (("train", train, 3), ("inference", infer, 1)):
            times = {"snntorch": [], "ours": []}
            for _ in range(args.steps):  # alternate, so both see the same machine state
                for which in ("snntorch", "ours"):
                    times[which] += timed(fn, which, 1, warmup=0 if times[which] else 2)
            speed = {k: args.batch_size / statistics.median(v) for k, v in times.items()}
            flops = dense_flops_per_image(T) * passes * speed["ours"]
            if mode == "train" and not args.no_memory:
                mem = {k: peak_memory(k, T, args.batch_size) / 2 ** 20 for k in ("snntorch", "ours")}
                mem_cols = (f"{mem['snntorch']:>12.0f} {mem['ours']:>12.0f} "
                            f"{mem['ours'] / max(mem['snntorch'], 1e-9):>9.2f}")
            else:
                mem_cols = f"{'':>12} {'':>12} {'':>9}"
            print(f"{T:>3} {mode:<9} {speed['snntorch']:>14.0f} {speed['ours']:>12.0f} "
                  f"{speed['ours'] / speed['snntorch']:>5.2f}x {flops / rate:>13.0%} {mem_cols}  {same}")


if __name__ == "__main__":
    main()
