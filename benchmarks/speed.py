"""snnclf's models against the idiomatic snnTorch per-step loop of the same networks, side by side.

The reference is the snnTorch tutorial's way: an ``nn.Sequential`` of the same layers and
``snn.Leaky(init_hidden=True)`` neurons, ``utils.reset`` before each batch, and the whole network
called once per time step. Both get the same weights and the same input: ``csnn`` direct-encoded
MNIST-sized images (the same at every step), ``cnn`` N-MNIST-sized event frames (2 x 34 x 34, a
new random frame every step; built without dropout, whose masks the two could not share). In a
fresh process per case (as a training run starts), alternating the two, it times training steps (forward, ce_rate_loss, backward, Adam) and
inference for each model, batch size and T, takes the median after warm-up, checks that both
produce the same output spikes, measures each one's peak training memory in a fresh child process
(largest batch only), and relates the work done to this machine's measured float32 matmul rate.

It prints the CPU model, the instruction set torch and oneDNN use, and the limits in force.
``--isa avx2`` starts it again with ``ATEN_CPU_CAPABILITY=avx2`` (torch's own kernels),
``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN) and ``MKL_ENABLE_INSTRUCTIONS=AVX2`` (MKL), so that an AVX-512
machine shows what a CPU without AVX-512 (most laptops and many servers) would.

    python benchmarks/speed.py [--isa native|avx2] [--models csnn cnn] [--batch_sizes 32 128]
                               [--time_steps 1 5 25] [--steps 5] [--no_memory] [--compile]
"""
import argparse
import copy
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import snntorch as snn
import snntorch.functional as SF
import torch
from snntorch import utils
from torch import nn

from snnclf.data import get_encoder
from snnclf.models import compile_model, fused, get_model
from snnclf.models.layers import FlattenLinear, Folded
from snnclf.models.neurons import SpikingLayer
from snnclf.optim import get_optimizer
from snnclf.utils import keep_freed_memory

# model -> (input shape, input kind, build options)
CASES = {"csnn": ((1, 28, 28), "direct", {}), "cnn": ((2, 34, 34), "events", {"dropout": 0.0})}
# (model, batch size, mode, T) -> speed-up goal; every other configuration: never slower (1.0x)
GOALS = {("csnn", 128, "train", 5): 2.0, ("csnn", 128, "inference", 5): 3.0,
         ("csnn", 128, "train", 25): 1.6, ("csnn", 128, "inference", 25): 2.5}
MEMORY_GOALS = {("csnn", 25): 0.6}  # (model, T) -> peak training memory, ours / the loop's, at most
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def reference_from(model):
    """The snnTorch-tutorial network with ``model``'s layers, weights and neuron settings: its
    stateless layers in the default memory layout, ``FlattenLinear`` as ``nn.Flatten`` and
    ``nn.Linear``, and each neuron layer as ``snn.Leaky(init_hidden=True)``."""
    neurons = [stage for stage in model if isinstance(stage, SpikingLayer)]
    layers = []
    for stage in model:
        if isinstance(stage, SpikingLayer):
            cell = stage.cell
            if not fused.supports(cell) or cell.beta.requires_grad or cell.threshold.requires_grad:
                raise ValueError("the benchmark's snnTorch twin has plain snn.Leaky neurons only")
            layers.append(snn.Leaky(beta=float(cell.beta), threshold=float(cell.threshold),
                                    spike_grad=cell.spike_grad, reset_mechanism=cell.reset_mechanism,
                                    init_hidden=True, output=stage is neurons[-1]))
            continue
        if not isinstance(stage, Folded):
            raise ValueError(f"the benchmark has no snnTorch twin for {type(stage).__name__}")
        for layer in stage:
            if isinstance(layer, FlattenLinear):
                linear = nn.Linear(layer.in_features, layer.out_features)
                linear.load_state_dict(layer.state_dict())
                layers += [nn.Flatten(), linear]
            else:
                layers.append(copy.deepcopy(layer).to(memory_format=torch.contiguous_format))
    return nn.Sequential(*layers)


def reference_forward(ref, x):  # x: [T, B, ...] -> (spikes, membrane) [T, B, K]
    utils.reset(ref)
    spikes, membrane = [], []
    for t in range(x.shape[0]):
        spk, mem = ref(x[t])
        spikes.append(spk)
        membrane.append(mem)
    return torch.stack(spikes), torch.stack(membrane)


def ours_forward(model, x):
    return model(x)


def make_input(kind, shape, batch_size, time_steps):
    """The same inputs for both: direct-encoded images or random event frames."""
    if kind == "direct":
        return get_encoder("direct")(torch.rand(batch_size, *shape), time_steps)
    return (torch.rand(time_steps, batch_size, *shape) < 0.05).float()


def step_fns(nets, x, labels):
    """Training-step and inference functions for each named (network, forward) pair. Every
    network trains with snnTorch's ce_rate_loss and Adam at lr 1e-4: the tutorial's
    ``torch.optim.Adam`` for the loop, the Adam that ``snnclf train`` builds (torch's fused
    kernel) for snnclf."""
    loss_fn = SF.ce_rate_loss()
    opts = {k: torch.optim.Adam(net.parameters(), 1e-4) if k == "snntorch" else
            get_optimizer("adam", net.parameters(), lr=1e-4) for k, (net, _) in nets.items()}

    def train(which):
        net, forward = nets[which]
        spk, _ = forward(net, x)
        loss = loss_fn(spk, labels)
        opts[which].zero_grad(set_to_none=True)
        loss.backward()
        opts[which].step()

    @torch.no_grad()
    def infer(which):
        net, forward = nets[which]
        forward(net, x)
    return train, infer


def dense_flops(ref, shape):
    """Forward FLOPs (2 per multiply-add) of each conv and linear layer of ``ref`` for one image
    and one step, in order."""
    flops = []

    def count(layer, inputs, out):
        if isinstance(layer, nn.Conv2d):
            per_output = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
            flops.append(2 * out[0].numel() * per_output)
        else:
            flops.append(2 * layer.in_features * layer.out_features)
    hooks = [m.register_forward_hook(count) for m in ref.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        reference_forward(ref, torch.zeros(1, 1, *shape))
    for h in hooks:
        h.remove()
    return flops


def flops_per_image(flops, time_steps, first_once):
    """snnclf runs the first layer once on a direct-encoded input; the loop, T times."""
    return (1 if first_once else time_steps) * flops[0] + time_steps * sum(flops[1:])


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


def cpu_model():
    """The CPU's name, and its family and model numbers where the name hides them (VMs)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    name = fields.get("model name") or fields.get("Model") or platform.machine()
    if "cpu family" in fields:
        name += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    return name


def onednn_isa():
    """The instruction set oneDNN runs with, from its own verbose output (in a child process:
    oneDNN prints from C, past Python's streams)."""
    code = ("import torch\nwith torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):\n"
            "    torch.nn.functional.conv2d(torch.rand(8, 16, 16, 16), torch.rand(16, 16, 3, 3))")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    for line in out.splitlines():
        if ",isa:" in line:
            return line.split(",isa:", 1)[1].strip()
    return "unknown (oneDNN printed no ISA)"


def _case(name, B, T, keep):
    """What a child process measures: snnclf's model, its snnTorch twin with the same weights,
    both as named (network, forward) pairs, and the same input and labels for both."""
    if keep:
        keep_freed_memory()
    shape, kind, options = CASES[name]
    torch.manual_seed(0)
    model = get_model(name, shape, 10, **options)
    ref = reference_from(model)
    nets = {"ours": (model, ours_forward), "snntorch": (ref, reference_forward)}
    return model, ref, nets, make_input(kind, shape, B, T), torch.randint(0, 10, (B,))


def _timed_case(name, B, T, names, steps, keep, queue):
    """In a fresh process, as a training run starts: both networks' training steps and inference
    timed side by side, whether they give the same spikes, and the dense FLOPs per layer. (Run
    one after another in one process, the cases disturbed each other: with freed memory kept,
    the heap that earlier shapes left behind slowed cnn at T=25 to about the loop's speed.)"""
    model, ref, nets, x, labels = _case(name, B, T, keep)
    with torch.no_grad():
        same = torch.equal(ours_forward(model, x)[0], reference_forward(ref, x)[0])
    if "compiled" in names:  # its own copy of the weights, so that the three train side by side
        nets["compiled"] = (compile_model(copy.deepcopy(model)), ours_forward)
    train, infer = step_fns(nets, x, labels)
    queue.put({"same": same, "flops": dense_flops(ref, CASES[name][0]),
               "train": measure(train, names, steps), "inference": measure(infer, names, steps)})


def in_child(target, *args):
    """``target(*args, queue)`` in a fresh spawned process; what it puts on the queue, or NaN
    when the child died (out of memory, an error) rather than waiting forever."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    try:
        value = queue.get(timeout=3600)
    except Exception:
        value = float("nan")
    proc.join()
    return value


def _peak_memory(name, time_steps, batch_size, which, keep, queue):
    """In a fresh process: the peak resident memory the first training step adds (activations
    kept for the backward pass, gradients, and Adam's state, the same for both)."""
    _, _, nets, x, labels = _case(name, batch_size, time_steps, keep)
    train, _ = step_fns(nets, x, labels)
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


def peak_memory(name, time_steps, batch_size, which, keep=False):
    return in_child(_peak_memory, name, time_steps, batch_size, which, keep)


def measure(fn, names, steps):
    """The median seconds per call of ``fn(name)`` for each name: two warm-up calls, then
    ``steps`` calls of each, alternating, so that all see the same machine state. Also each first
    call's time (where torch.compile compiles)."""
    first = {}
    for n in names:
        began = time.perf_counter()
        fn(n)
        first[n] = time.perf_counter() - began
        fn(n)
    times = {n: [] for n in names}
    for _ in range(steps):
        for n in names:
            began = time.perf_counter()
            fn(n)
            times[n].append(time.perf_counter() - began)
    return {n: statistics.median(v) for n, v in times.items()}, first


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--isa", choices=["native", "avx2"], default="native",
                   help="avx2: limit oneDNN and MKL to AVX2, as on a CPU without AVX-512")
    p.add_argument("--models", nargs="+", choices=sorted(CASES), default=["csnn", "cnn"])
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[32, 128])
    p.add_argument("--time_steps", type=int, nargs="+", default=[1, 5, 25])
    p.add_argument("--steps", type=int, default=5, help="timed steps per case, after 2 warm-up steps")
    p.add_argument("--no_memory", action="store_true", help="skip the peak-memory child processes")
    p.add_argument("--compile", action="store_true",
                   help="add snnclf's model under torch.compile (snnclf train --compile) as a third column")
    args = p.parse_args()
    if args.isa == "avx2" and any(os.environ.get(k) != v for k, v in AVX2.items()):
        # the libraries read these once, when first used: start again with them set
        os.execve(sys.executable, getattr(sys, "orig_argv", [sys.executable, *sys.argv]), {**os.environ, **AVX2})
    kept = keep_freed_memory()  # snnclf's commands turn this on (see snnclf.utils); here it serves both
    torch.manual_seed(0)
    rate = matmul_rate()
    limits = ", ".join(f"{k}={os.environ[k]}" for k in AVX2 if k in os.environ) or "none"
    print(f"CPU: {cpu_model()}, {torch.get_num_threads()} threads; torch {torch.__version__} "
          f"(CPU capability {torch.backends.cpu.get_cpu_capability()}); oneDNN ISA: {onednn_isa()}; "
          f"limits: {limits}")
    print(f"float32 matmul 2048^2: {rate / 1e9:.0f} GFLOP/s; freed memory kept by malloc: {'yes' if kept else 'no'}")
    names = ["snntorch", "ours"] + (["compiled"] if args.compile else [])
    titles = {"snntorch": "loop img/s", "ours": "snnclf img/s", "compiled": "compiled img/s"}
    header = (f"{'model':<5} {'B':>4} {'T':>3} {'mode':<9} " + " ".join(f"{titles[n]:>14}" for n in names)
              + f" {'ratio':>6} {'goal':>5} {'met':>4}" + (f" {'compiled':>8}" if args.compile else "")
              + f" {'loop % mm':>9} {'ours % mm':>9} {'MB loop':>8} {'MB ours':>8} {'mem':>5}  same spikes")
    print(header)
    print("-" * len(header))
    notes, missed, rows, memory_rows = [], [], 0, 0
    for name in args.models:
        shape, kind, options = CASES[name]
        for B in args.batch_sizes:
            for T in args.time_steps:
                case = in_child(_timed_case, name, B, T, names, args.steps, kept)
                if not isinstance(case, dict):
                    print(f"{name:<5} {B:>4} {T:>3} the measuring process failed (out of memory?)")
                    continue
                same, flops = case["same"], case["flops"]
                for mode, passes in (("train", 3), ("inference", 1)):
                    seconds, first = case[mode]
                    speed = {n: B / s for n, s in seconds.items()}
                    # dense conv and linear FLOPs done per second, as a fraction of the matmul rate
                    used = {n: speed[n] * passes * flops_per_image(flops, T, kind == "direct" and n != "snntorch") / rate
                            for n in names}
                    mem_cols = f"{'':>8} {'':>8} {'':>5}"
                    if mode == "train" and not args.no_memory and B == max(args.batch_sizes):
                        mem = {k: peak_memory(name, T, B, k, kept) / 2 ** 20 for k in ("snntorch", "ours")}
                        mem_ratio = mem["ours"] / max(mem["snntorch"], 1e-9)
                        mem_cols = f"{mem['snntorch']:>8.0f} {mem['ours']:>8.0f} {mem_ratio:>5.2f}"
                        if (name, T) in MEMORY_GOALS:
                            memory_rows += 1
                            if not mem_ratio <= MEMORY_GOALS[name, T]:
                                missed.append(f"{name} B={B} T={T} memory {mem_ratio:.2f} "
                                              f"(goal <= {MEMORY_GOALS[name, T]})")
                    ratio = speed["ours"] / speed["snntorch"]
                    goal = GOALS.get((name, B, mode, T), 1.0)
                    rows += 1
                    if ratio < goal:
                        missed.append(f"{name} B={B} T={T} {mode} {ratio:.2f}x (goal {goal:.1f}x)")
                    compiled = ""
                    if args.compile:
                        compiled = f" {speed['compiled'] / speed['snntorch']:>7.2f}x"
                        notes.append(f"{name} B={B} T={T} {mode}: torch.compile took "
                                     f"{first['compiled'] - seconds['compiled']:.1f} s once")
                    print(f"{name:<5} {B:>4} {T:>3} {mode:<9} " + " ".join(f"{speed[n]:>14.0f}" for n in names)
                          + f" {ratio:>5.2f}x {goal:>4.1f}x {'yes' if ratio >= goal else 'NO':>4}{compiled}"
                          + f" {used['snntorch']:>9.0%} {used['ours']:>9.0%} {mem_cols}  {same}", flush=True)
    print("ratio: snnclf / snnTorch loop, images per second (median of the timed steps); goal: the speed-up "
          "asked for (1.0x: never slower than the loop); % mm: the dense conv and linear FLOPs each does per "
          "second (training counted as 3x the forward), as a fraction of the 2048^2 matmul rate (oneDNN's "
          "convolutions can exceed it); MB: resident memory that the first training step adds, each in a "
          "fresh process, and their ratio (memory goal: csnn at T=25, at most 0.6)")
    for note in notes:
        print(note)
    speed_missed = [m for m in missed if " memory " not in m]
    print(f"speed goals met: {rows - len(speed_missed)} of {rows} rows; memory goals met: "
          f"{memory_rows - (len(missed) - len(speed_missed))} of {memory_rows}"
          + ("; missed: " + "; ".join(missed) if missed else ""))


if __name__ == "__main__":
    main()
