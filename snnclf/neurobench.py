"""NeuroBench's metrics of a trained network (``snnclf eval --neurobench``), computed by the
NeuroBench harness itself, beside snnclf's own counts on the same inputs.

NeuroBench's ``SNNTorchModel`` does not run snnclf's networks as they are: they take time first,
[T, B, ...], and return (spikes, membrane); and their LIF layers run a fused multi-step kernel
that never calls the snnTorch cell's ``forward``, where NeuroBench's hooks read spikes and
membranes. So a thin adapter (:class:`_Network`) moves time and runs a spiking network step by
step (:func:`snnclf.models.step_by_step`: every layer and every cell called once per time step, as
NeuroBench's own snnTorch loop runs a network), and every cell leaves its membrane on ``cell.mem``,
where NeuroBench looks for it (snnclf's adaptive neuron keeps its state outside the cell). What
NeuroBench counts, and why some of its numbers differ from snnclf's, is in docs/commands.md."""
import contextlib
import io

import snntorch as snn
import torch
from torch.utils.data import Subset
from tqdm import tqdm

from . import efficiency
from .data import make_loader
from .models import step_by_step
from .utils import need

# NeuroBench declares torchaudio (its audio preprocessors and speech data sets) and numba as
# dependencies; none of the modules used here import them, and resolving torchaudio can move the
# installed torch to another version. Its metrics' names and output are those of 2.3.
INSTALL = 'pip install --no-deps "neurobench==2.3.*"'
STATIC = ("Footprint", "ConnectionSparsity", "ParameterCount")
WORKLOAD = ("ActivationSparsity", "SynapticOperations", "MembraneUpdates")


def require():
    """The neurobench package, or a one-line error naming its install."""
    return need("neurobench", "snnclf eval --neurobench", INSTALL)


def _classes():
    """NeuroBench's benchmark, its snnTorch model wrapper and the metric classes measured."""
    require()
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics import static, workload
    from neurobench.models import SNNTorchModel
    return Benchmark, SNNTorchModel, [getattr(static, n) for n in STATIC], [getattr(workload, n) for n in WORKLOAD]


def _adapter(base):
    class _Network(base):
        """snnclf's network as NeuroBench calls a model: data [B, T, ...] -> output spikes [B, T, K]."""

        def __call__(self, data):
            spikes, _ = self.net(data.transpose(0, 1))
            return spikes.transpose(0, 1)
    return _Network


def _membrane_on_cell(cell, args, output):
    # NeuroBench reads ``cell.mem`` before and after each step; snnTorch's Leaky and Synaptic
    # keep it there, snnclf's AdaptiveLeaky returns it only. Every cell returns it last.
    cell.mem = output[-1]


def _states(cell):
    """A cell's state buffers (snnTorch's ``mem``, ``syn``): those left out of its state dict."""
    kept = cell.state_dict(keep_vars=True)
    return {name: b for name, b in cell.named_buffers(recurse=False) if name not in kept}


@contextlib.contextmanager
def _as_neurobench_runs(model):
    """While the block lasts: the cells' states empty, as in a network just built (NeuroBench's
    footprint counts every buffer, and cells that ran the step-by-step way keep their last
    batch's state in theirs), and a spiking ``model`` run step by step, each cell's membrane on
    ``cell.mem``. Then the cells get their states back as they were."""
    cells = [m for m in model.modules() if isinstance(m, snn.SpikingNeuron)]
    kept = [_states(c) for c in cells]
    for cell, states in zip(cells, kept):
        for name, state in states.items():
            setattr(cell, name, state.new_zeros(0))
    hooks = [c.register_forward_hook(_membrane_on_cell, prepend=True) for c in cells]
    try:
        # a non-spiking network runs as it is, once for an input the same at every step (as
        # NeuroBench's TorchModel runs one on a static input)
        with step_by_step(model) if model.spiking else contextlib.nullcontext():
            yield
    finally:
        for cell, hook, states in zip(cells, hooks, kept):
            hook.remove()
            for name, state in states.items():
                setattr(cell, name, state)


@torch.no_grad()
def measure(model, dataset, encode, batch_size, device, samples):
    """NeuroBench's metrics of ``model`` over the first ``samples`` of ``dataset``, encoded by
    ``encode`` [B, ...] -> [T, B, ...] batch by batch as :func:`snnclf.efficiency.measure` does
    (the same draws of random input under the same seed), and snnclf's counts on exactly those
    inputs. Returns a dict: NeuroBench's results under its metric names (``metrics``; per sample
    where NeuroBench averages), and snnclf's counterparts (``snnclf``)."""
    Benchmark, SNNTorchModel, static, workload = _classes()
    import neurobench

    part = Subset(dataset, range(min(samples, len(dataset))))
    loader = make_loader(part, batch_size)
    inputs = []  # what NeuroBench was given, counted again by snnclf below
    bar = tqdm(total=len(loader), desc="neurobench", leave=False, dynamic_ncols=True, disable=None)

    def encode_batch(data):  # ([B, ...], [B]) -> ([B, T, ...], [B]): NeuroBench puts the batch first
        x, y = data
        x = encode(x.to(device))
        inputs.append(x)
        bar.update()
        return x.transpose(0, 1), y

    wrapped = _adapter(SNNTorchModel)(model)
    benchmark = Benchmark(wrapped, loader, [encode_batch], [], [static, workload])
    said = io.StringIO()
    try:
        # NeuroBench prints a metric that failed and goes on with a stand-in value: keep what it
        # prints, and stop on such a line rather than report the stand-in (its own progress bar,
        # on stderr, is left out: the bar above counts the batches)
        with _as_neurobench_runs(model), contextlib.redirect_stdout(said), contextlib.redirect_stderr(io.StringIO()):
            results = benchmark.run(quiet=False)
    finally:
        wrapped.cleanup_hooks()
        bar.close()
    failed = [line for line in said.getvalue().splitlines() if line.startswith("Error running")]
    if failed:
        raise RuntimeError(f"NeuroBench {neurobench.__version__}: {failed[0]}")

    counts = efficiency.merge([(x.shape[1], efficiency.count(model, x)) for x in inputs])
    totals, steps = counts["totals"], counts["totals"]["time_steps"]
    neurons = sum(r["neurons"] for r in counts["rates"])
    spikes = sum(r["spikes"] for r in counts["rates"])
    return {
        "version": neurobench.__version__, "samples": len(part), "time_steps": steps,
        "execution": "step by step" if model.spiking else "as snnclf runs it",
        "metrics": {name: results[name] for name in STATIC + WORKLOAD},
        "snnclf": {"parameters": sum(p.numel() for p in model.parameters()),
                   "parameter_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
                   "activation_sparsity": 1 - spikes / (neurons * steps) if neurons else None,
                   "sops": totals["sops"], "macs": totals["macs"],
                   "dense": totals["macs_ann"] * steps if model.spiking else totals["macs"],
                   "neuron_updates": totals["neuron_updates"]},
    }


def table(nb):
    """NeuroBench's metrics beside snnclf's as printable lines."""
    m, s = nb["metrics"], nb["snnclf"]
    syn = m["SynapticOperations"]
    spiking = nb["execution"] == "step by step"
    T = nb["time_steps"]
    rows = [  # name, NeuroBench's, snnclf's, format, why they differ (shown when they do)
        ("parameters", m["ParameterCount"], s["parameters"], ",.0f", ""),
        ("footprint (bytes)", m["Footprint"], s["parameter_bytes"], ",.0f",
         "snnclf: parameters; NeuroBench adds buffers (the neurons' beta, threshold, ...)"),
        ("connection sparsity", m["ConnectionSparsity"], None, ".4f", "share of weights that are exactly 0"),
        ("activation sparsity", m["ActivationSparsity"], s["activation_sparsity"], ".4f",
         "snnclf: 1 - spikes / (neurons x T)" if spiking else "share of zero ReLU outputs"),
        ("effective ACs", syn["Effective_ACs"], s["sops"] if spiking else None, ",.0f",
         "snnclf: SOPs (NeuroBench skips zero weights; inputs above 1 are MACs to it)" if spiking else ""),
        ("effective MACs", syn["Effective_MACs"], s["macs"], ",.0f",
         f"NeuroBench: at each of the {T} steps, zero inputs skipped; snnclf: once when the input "
         "repeats, dense" if spiking else "NeuroBench skips zero inputs; snnclf: dense"),
        ("dense synaptic ops", syn["Dense"], s["dense"], ",.0f",
         f"snnclf: {T} x ANN MACs; NeuroBench leaves out taps on convolution padding" if spiking else
         "snnclf: MACs; NeuroBench leaves out taps on convolution padding"),
        ("membrane updates", m["MembraneUpdates"], s["neuron_updates"], ",.0f",
         "snnclf: every neuron at every step; NeuroBench: only membranes that changed"),
    ]
    lines = [f"NeuroBench {nb['version']} metrics per test sample (first {nb['samples']} test samples, "
             f"T={T}, the network run {nb['execution']}), beside snnclf's on the same inputs:",
             f"  {'metric':<21} {'NeuroBench':>14} {'snnclf':>14}  why they differ"]
    for name, theirs, ours, form, why in rows:
        shown = [format(v, form) if v is not None else "-" for v in (theirs, ours)]
        differ = ours is None or abs(theirs - ours) > 1e-9 * max(abs(theirs), abs(ours), 1)
        lines.append(f"  {name:<21} {shown[0]:>14} {shown[1]:>14}  {why if differ else ''}".rstrip())
    return lines
