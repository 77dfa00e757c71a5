"""The tools that read NIR files, each running an exported file as that tool runs it: a registry
of consumers, each a function (path, inputs [T, N, C, H, W], dt) -> :class:`Outputs`.

Each consumer declares the Python module it needs (``module``: it counts as installed when that
imports), what pip puts in an environment of its own (``install``: Sinabs and Rockpool pin an
older ``nir``), whether with the tool's own dependencies (``deps``: Spyx's JAX) or without, beside
torch, whether ``snnclf export`` builds that environment and runs the tool there when it is not
installed here (``env``; see :mod:`.envs`), whether the tool takes a batch dimension (``batch``), and what keeps it from running
snnclf's networks exactly (``limit``; ``None`` for the tools that run them). A consumer runs the
file through the tool's own importer with the tool's own arithmetic; only the reading of the
output layer's membrane (for the readout's tie-break) is added from outside, through hooks,
where the tool keeps it.

:func:`main` runs one consumer on a file and ``torch.save``s its outputs: the benchmark
(``benchmarks/nir_consumers.py``) runs it inside each tool's own environment.
"""
import contextlib
import importlib
import io
import logging
import sys
import types
import warnings
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version as distribution_version
from typing import Optional

import numpy as np
import torch

from ..registry import Registry

CONSUMERS = Registry("consumer", declares=("module", "install", "deps", "env", "batch", "limit"))


@dataclass
class Outputs:
    """What a tool gives for ``inputs`` [T, N, ...]: output spikes [T, N, K], the output layer's
    membrane [T, N, K] before its reset (``None`` where the tool does not keep it), and the
    convention it was run with (dt, batch dimension, what was needed)."""
    spikes: torch.Tensor
    membrane: Optional[torch.Tensor]
    convention: dict = field(default_factory=dict)


def installed(name):
    """Whether consumer ``name``'s tool imports here."""
    try:
        importlib.import_module(CONSUMERS.info(name, "--check")["module"])
        return True
    except Exception:  # an ImportError, or a tool that breaks on import (a missing dependency of its own)
        return False


def version(name):
    """The installed version of consumer ``name``'s package, or "" if unknown."""
    try:
        return distribution_version(CONSUMERS.info(name)["module"])
    except PackageNotFoundError:
        return ""


def list_consumers():
    return CONSUMERS.names()


def run(name, path, inputs, dt):
    """Run the NIR file ``path`` in consumer ``name`` on ``inputs`` [T, N, ...] (float32)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet():
        warnings.simplefilter("ignore")  # deprecations and the tools' notes on every import
        out = CONSUMERS.lookup(name, "--check")(str(path), inputs.float(), dt)
    out.convention = {"dt": dt, "batch": CONSUMERS.info(name)["batch"], **out.convention}
    return out


@contextlib.contextmanager
def _quiet():
    """The tools log their progress (SpikingJelly through loguru, Norse through logging)."""
    level = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(level)


def _chain(graph):
    """The node names from ``input`` to ``output``, following the edges."""
    order = ["input"]
    while order[-1] != "output":
        order.append(next(b for a, b in graph.edges if a == order[-1]))
    return order


def _last_neuron(graph, nir):
    return next(n for n in reversed(_chain(graph)) if isinstance(graph.nodes[n], (nir.LIF, nir.IF)))


def _one_by_one(inputs, step):
    """Run ``step(x, state, first) -> (spikes, membrane, state)`` on each sample [C, H, W] alone,
    as tools without a batch dimension need: spikes and membranes [T, N, K]."""
    spikes, membranes = [], []
    for sample in inputs.unbind(1):  # [T, C, H, W]
        state, s_n, m_n = None, [], []
        for t, x in enumerate(sample.unbind(0)):
            spk, mem, state = step(x, state, t == 0)
            s_n.append(spk.reshape(-1).float())
            m_n.append(mem.reshape(-1).float())
        spikes.append(torch.stack(s_n))
        membranes.append(torch.stack(m_n))
    return torch.stack(spikes, 1), torch.stack(membranes, 1)


@CONSUMERS.register("numpy", module="numpy", install=(), deps=False, env=False, batch=True, limit=None)
def numpy_outputs(path, inputs, dt):
    """snnclf's reference: the NIR equations written out in NumPy (float64), one forward-Euler
    step of ``dt`` per time step, as NIR defines each node; no tool's importer involved."""
    import nir
    graph = nir.read(path)
    order = _chain(graph)[1:-1]
    x_all = inputs.double().numpy()
    v = {}
    spikes, mems = [], []
    for x in x_all:  # [N, C, H, W], one time step
        for name in order:
            x = _numpy_node(graph.nodes[name], name, x, v, dt, nir)
        spikes.append(x)
        mems.append(v["_pre"])
    return Outputs(torch.from_numpy(np.stack(spikes)).float(), torch.from_numpy(np.stack(mems)).float(),
                   {"precision": "float64"})


def _numpy_node(node, name, x, v, dt, nir):
    """One time step of one NIR node on a batch ``x`` [N, ...]; neuron state in ``v``."""
    if isinstance(node, nir.Conv2d):
        return _conv2d(x, node.weight, node.bias, node.stride, node.padding, node.dilation, int(node.groups))
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        (kh, kw), (sh, sw) = node.kernel_size, node.stride
        win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
        total = win.sum(axis=(-2, -1))
        return total if isinstance(node, nir.SumPool2d) else total / (kh * kw)
    if isinstance(node, nir.Flatten):
        return x.reshape(len(x), -1)
    if isinstance(node, nir.Affine):
        return x @ node.weight.T.astype(np.float64) + node.bias
    if isinstance(node, nir.Linear):
        return x @ node.weight.T.astype(np.float64)
    if isinstance(node, (nir.LIF, nir.IF)):
        prev = v.get(name, np.zeros_like(x))
        if isinstance(node, nir.LIF):  # tau dv/dt = (v_leak - v) + r I
            pre = prev + dt / node.tau * (node.v_leak - prev + node.r * x)
        else:  # dv/dt = r I
            pre = prev + dt * node.r * x
        z = (pre > node.v_threshold).astype(np.float64)
        v[name] = np.where(z > 0, node.v_reset, pre)
        v["_pre"] = pre
        return z
    raise NotImplementedError(f"node {name}: {type(node).__name__}")


def _conv2d(x, weight, bias, stride, padding, dilation, groups):
    """NIR's Conv2d (PyTorch's cross-correlation) on x [N, C, H, W], in NumPy."""
    (ph, pw), (sh, sw), (dh, dw) = padding, stride, dilation
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out_c, in_c, kh, kw = weight.shape
    win = np.lib.stride_tricks.sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # [N, C, H', W', kh, kw]
    out = []
    for g in range(groups):
        w = weight[g * out_c // groups:(g + 1) * out_c // groups].astype(np.float64)
        out.append(np.einsum("nchwij,ocij->nohw", win[:, g * in_c:(g + 1) * in_c], w))
    return np.concatenate(out, 1) + np.asarray(bias, dtype=np.float64)[:, None, None]


@CONSUMERS.register("snntorch", module="snntorch", install=(), deps=False, env=False, batch=False, limit=None)
def snntorch_outputs(path, inputs, dt):
    """snnTorch's ``import_from_nir``, one sample at a time (its Flatten keeps NIR's start_dim 0,
    so a batch would be flattened too). Its LIF hard-codes dt = 1e-4 and, where r dt / tau is not
    1, divides the threshold by it instead (``hack_w_scale``): its membrane is then in other
    units, and is given back in the file's. The membrane is read by a hook before its reset."""
    import nir
    from snntorch.import_nir import import_from_nir
    from snntorch.utils import reset

    graph = nir.read(path)
    net = import_from_nir(graph)
    last = _last_neuron(graph, nir)
    node, neuron = graph.nodes[last], net.get_submodule(last)
    scale = float(np.unique(node.r * 1e-4 / node.tau)[0]) if isinstance(node, nir.LIF) else 1.0
    seen = {}

    def membrane(module, args):  # the membrane this step reaches before it fires and resets
        prev = module.mem if module.mem.shape == args[0].shape else torch.zeros_like(args[0])
        seen["mem"] = module.beta.clamp(0, 1) * prev + args[0]

    hook = neuron.register_forward_pre_hook(membrane)

    def step(x, state, first):
        if first:
            reset(net)
        out, state = net(x, state) if state is not None else net(x)
        return out, seen["mem"] * scale, state

    try:
        with torch.no_grad():
            spikes, mems = _one_by_one(inputs, step)
    finally:
        hook.remove()
    return Outputs(spikes, mems, {"dt": 1e-4, "note": "dt fixed at 1e-4 by the importer"}
                   if scale == 1.0 else {"dt": 1e-4, "note": "r dt / tau moved into the threshold"})


@CONSUMERS.register("spikingjelly", module="spikingjelly", install=(), deps=False, env=False, batch=True, limit=None)
def spikingjelly_outputs(path, inputs, dt):
    """SpikingJelly's ``import_from_nir(graph, dt)`` in single-step mode, with a batch dimension
    (its Flatten shifts NIR's dims by one), state passed from step to step. The membrane is the
    tool's own charge function (``lif_charge``) on the output neuron's state and input, before its
    reset."""
    import nir
    from spikingjelly.activation_based.functional.neuron import lif_charge
    from spikingjelly.activation_based.neuron import LIFNode
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    graph = nir.read(path)
    net = import_from_nir(graph, dt=dt)
    wrapper = net.get_submodule(_last_neuron(graph, nir))
    neuron, seen = wrapper.module, {}

    def membrane(module, args, kwargs):
        x = args[0]
        state = kwargs.get("state", args[1] if len(args) > 1 else None)
        prev = state[0] if state is not None and torch.is_tensor(state[0]) else torch.zeros_like(x)
        if isinstance(neuron, LIFNode):  # the tool's own charge: v after the input, before the reset
            seen["mem"] = lif_charge(x, prev, neuron.tau, neuron.decay_input, neuron.v_reset)
        else:  # IFNode: v + x
            seen["mem"] = prev + x

    hook = wrapper.register_forward_pre_hook(membrane, with_kwargs=True)
    spikes, mems = [], []
    try:
        with torch.no_grad():
            state = None
            for x in inputs.unbind(0):  # [N, C, H, W]
                out, state = net(x, state)
                spikes.append(out.float())
                mems.append(seen["mem"].float())
    finally:
        hook.remove()
    return Outputs(torch.stack(spikes).flatten(2), torch.stack(mems).flatten(2))


@CONSUMERS.register("norse", module="norse", install=("norse==1.1.0",), deps=False, env=False, batch=False,
                    limit=None)
def norse_outputs(path, inputs, dt):
    """Norse's ``from_nir(graph, dt)``, one sample at a time (its Flatten keeps start_dim 0).
    Norse has no AvgPool2d and ignores r (its LIF is dv = dt / tau (v_leak - v + I)): it runs
    the portable form. The membrane is Norse's own step of the output neuron with its threshold
    out of reach (so without the reset)."""
    import nir
    import norse.torch as norse
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState, lif_box_feed_forward_step
    from norse.torch.module.iaf import IAFCell

    graph = nir.read(path)
    net = norse.from_nir(graph, dt=dt)
    last = _last_neuron(graph, nir)
    module = dict(net.named_modules())[last]
    seen = {}

    def membrane(mod, args):  # Norse's own step with an unreachable threshold: v before the reset
        x, state = args[0], args[1] if len(args) > 1 else None
        if isinstance(mod, IAFCell):
            seen["mem"] = (state.v if state is not None else torch.zeros_like(x)) + x
        else:
            state = state if state is not None else LIFBoxFeedForwardState(v=torch.zeros_like(x))
            unreachable = mod.p._replace(v_th=torch.tensor(torch.inf))
            _, after = lif_box_feed_forward_step(x, state, unreachable, mod.dt)
            seen["mem"] = after.v

    module.register_forward_pre_hook(membrane)

    def step(x, state, first):
        out, state = net(x, None if first else state)
        return out, seen["mem"], state

    with torch.no_grad():
        spikes, mems = _one_by_one(inputs, step)
    return Outputs(spikes, mems)


# Sinabs and Rockpool pin nir 1.0.4 (and so nirtorch 1.0, the last that reads it): they run in an
# environment of their own, which snnclf export builds once.
SINABS = ("sinabs==3.1.3", "nir==1.0.4", "nirtorch==1.0", "pbr")
ROCKPOOL = ("rockpool==3.1.0", "nir==1.0.4", "nirtorch==1.0", "xylosim", "bitstruct", "packaging")  # with XyloSim


def _sinabs_model(path, steps):
    """Sinabs' ``from_nir`` of ``path`` for ``steps`` time steps, each spiking layer emitting at
    most one spike per step (``SingleSpike``; Sinabs' default, ``MultiSpike``, emits floor(v /
    threshold), which no NIR file can change), its state cleared. Time and batch are folded
    into one dimension, sample-major ([N * T, ...]); ``num_timesteps`` unfolds any batch size."""
    import nir
    import sinabs
    from sinabs.activation import SingleSpike

    net = sinabs.from_nir(nir.read(path), num_timesteps=steps)
    for layer in net.modules():
        if isinstance(layer, sinabs.layers.StatefulLayer) and hasattr(layer, "spike_fn"):
            layer.spike_fn = SingleSpike
    sinabs.reset_states(net)
    return net


def _run_folded(net, inputs, reset, last):
    """Run a Sinabs network on ``inputs`` [T, N, ...] folded to [N * T, ...]: spikes and the
    membrane of its output layer ``last`` before the reset, each [T, N, K]. The membrane is the
    layer's own: its recorded state after the step before (``record_states``) plus the step's
    input, taken by a hook (with alpha 1: the layers here integrate without leak)."""
    T, N = inputs.shape[:2]
    seen = {}
    hook = last.register_forward_pre_hook(lambda module, args: seen.update(current=args[0]))
    last.record_states = True
    try:
        with torch.no_grad():
            reset(net)
            out = net(inputs.transpose(0, 1).reshape(N * T, *inputs.shape[2:]))
    finally:
        hook.remove()
    out = out[0] if isinstance(out, tuple) else out
    after = last.recordings["v_mem"].reshape(N, T, -1)  # the state after each step's reset
    before = torch.cat([torch.zeros_like(after[:, :1]), after[:, :-1]], 1) + seen["current"].reshape(N, T, -1)
    return out.reshape(N, T, -1).transpose(0, 1).float(), before.transpose(0, 1).float()


def _last_spiking(net):
    """The output layer of a Sinabs network loaded from NIR (nirtorch's graph executor, in the
    graph's order) or mapped onto Speck's cores (its last core's neurons)."""
    import sinabs
    if hasattr(net, "dynapcnn_layers"):
        return list(net.dynapcnn_layers.values())[-1].spk
    return [n.elem for n in net.execution_order if isinstance(n.elem, sinabs.layers.StatefulLayer)][-1]


@CONSUMERS.register("sinabs", module="sinabs", install=SINABS, deps=False, env=True, batch=True,
                    limit=None)
def sinabs_outputs(path, inputs, dt):
    """Sinabs' ``from_nir``, one spike per step at most (``SingleSpike``), time and batch folded
    ([N * T, ...], sample-major). Sinabs reads tau in steps, ignores r, v_leak and v_reset, and
    resets by subtracting the threshold; an IF node's membrane is kept at or above -v_threshold
    (``min_v_mem``). The output membrane is read from the layer's recorded state."""
    import sinabs

    net = _sinabs_model(path, inputs.shape[0])
    spikes, membrane = _run_folded(net, inputs, sinabs.reset_states, _last_spiking(net))
    return Outputs(spikes, membrane, {"note": "SingleSpike: one spike per step at most"})


@contextlib.contextmanager
def _without_samna():
    """``sinabs.backend.dynapcnn`` imports ``samna`` (SynSense's driver) at import time, but its
    software model of the chip (``DynapcnnNetwork``'s forward, the core mapping) does not use
    it. The ``samna`` on the package index is a stub that downloads the real driver when
    imported, so it must never be imported: while the block lasts, placeholder modules stand in
    for it (where no ``samna`` was imported before), and anything that would really call the
    driver gets a placeholder back."""
    from unittest import mock

    names = ("samna", "samna.speck2e", "samna.speck2e.configuration", "samna.speck2f",
             "samna.speck2f.configuration", "samna.specksim", "samna.specksim.nodes", "samna.graph", "samnagui")
    added = [n for n in names if n not in sys.modules]
    for n in added:
        module = types.ModuleType(n)
        module.__getattr__ = lambda attr, _n=n: mock.MagicMock(name=f"{_n}.{attr}")
        sys.modules[n] = module
    for n in added:
        if "." in n:
            parent, child = n.rsplit(".", 1)
            setattr(sys.modules[parent], child, sys.modules[n])
    try:
        yield
    finally:
        for n in added:
            sys.modules.pop(n, None)


@CONSUMERS.register("speck", module="sinabs", install=SINABS, deps=False, env=True, batch=True,
                    limit=None)
def speck_outputs(path, inputs, dt):
    """Speck's cores as Sinabs models them: the Sinabs network of the file (as the ``sinabs``
    consumer loads it) mapped by ``DynapcnnNetwork(discretize=True)`` (weights to 8 bits,
    thresholds to 16, by one scale per core) and run by its forward, in software. The placement
    on the chip's cores (``map_layers_to_cores``) is part of the check: a network that does not
    map fails here. The output membrane is read from the last core's recorded state."""
    import sinabs

    with _without_samna():
        from sinabs.backend.dynapcnn import DynapcnnNetwork
        from sinabs.backend.dynapcnn.chips.speck2f import Speck2FConfigBuilder

        chip = DynapcnnNetwork(_sinabs_model(path, inputs.shape[0]), input_shape=tuple(inputs.shape[2:]),
                               discretize=True)
        cores = Speck2FConfigBuilder.map_layers_to_cores(chip.dynapcnn_layers)
        spikes, membrane = _run_folded(chip, inputs, sinabs.reset_states, _last_spiking(chip))
    return Outputs(spikes, membrane, {"note": "discretized; cores " + ", ".join(
        f"{layer}->{core}" for layer, core in sorted(cores.items()))})


@CONSUMERS.register("rockpool", module="rockpool", install=ROCKPOOL,
                    deps=False, env=True, batch=True,
                    limit=None)
def rockpool_outputs(path, inputs, dt):
    """Rockpool's ``from_nir``, time second ([N, T, C]: the sample's values flattened, as
    Rockpool's layers are fully connected), one spike per step at most (``max_spikes_per_dt``;
    Rockpool's default is 2^16). Rockpool's importer reads a LIF's ``tau_mem``, which NIR's LIF
    calls ``tau``: the alias is set on the graph before the import. The output membrane is the
    layer's own equation on its input (taken by a hook) and its spikes."""
    import nir
    from rockpool.nn.modules import LIFNeuronTorch, from_nir

    graph = nir.read(path)
    for node in graph.nodes.values():
        if isinstance(node, nir.LIF):
            node.tau_mem = node.tau  # Rockpool 3.1.0 reads node.tau_mem (an AttributeError otherwise)
    net = from_nir(graph)
    lifs = [m for m in net.modules() if isinstance(m, LIFNeuronTorch)]
    for m in lifs:
        m.max_spikes_per_dt = torch.tensor(1.0)
        m.reset_state()
    last, seen = net.get_submodule(_last_neuron(graph, nir)), {}
    hook = last.register_forward_pre_hook(lambda module, args: seen.update(current=args[0]))
    try:
        with torch.no_grad():
            out = net(inputs.transpose(0, 1).flatten(2))
    finally:
        hook.remove()
    out = out[0] if isinstance(out, tuple) else out
    # the output layer's membrane before each reset, by its own equation (alpha 1, no bias): the
    # inputs so far less a threshold per spike before this step
    current, fired = seen["current"], out.float()
    before = (current.cumsum(1) - (fired.cumsum(1) - fired) * last.threshold).detach()
    return Outputs(out.transpose(0, 1).float().flatten(2), before.transpose(0, 1).float(),
                   {"note": "max_spikes_per_dt = 1; tau_mem set to NIR's tau"})


def _xylo_audio_2():
    """Rockpool's Xylo Audio 2 package (``rockpool.devices.xylo.syns61201``) without the Xylo
    package's own ``__init__``, which imports the Xylo Audio 3 package, which imports ``samna``
    (SynSense's driver; never imported here, see :func:`_without_samna`). Xylo Audio 2's package
    guards its own driver imports, and its simulator (XyloSim, xylosim's C++ model) needs none."""
    import importlib
    import os

    import rockpool.devices

    name = "rockpool.devices.xylo"
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [os.path.join(os.path.dirname(rockpool.devices.__file__), "xylo")]
        package.__package__ = name
        sys.modules[name] = package
    return importlib.import_module(f"{name}.syns61201")


@CONSUMERS.register("xylo", module="rockpool", install=ROCKPOOL,
                    deps=False, env=True, batch=False,
                    limit=None)
def xylo_outputs(path, inputs, dt):
    """Rockpool's simulator of Xylo Audio 2 (``XyloSim.from_specification``, xylosim's model of
    the chip's integer arithmetic) on the file's specification, one sample at a time: the input
    counts per channel and step, after the host's steps the file names (channels summed, counts
    summed over windows), flattened ([T, C * H * W] integers). The output membrane is the
    simulator's recorded output state plus the threshold it subtracted where a neuron fired."""
    from .xylo import host_input, read

    spec, metadata = read(path)
    sim = _xylo_audio_2().XyloSim.from_specification(**spec)
    raster = host_input(inputs, metadata["input_steps"]).round().to(torch.int64)  # [T, N, inputs]
    spikes, membranes = [], []
    for n in range(raster.shape[1]):
        sim.reset_state()
        out, _, record = sim(raster[:, n].numpy(), record=True)
        out = np.asarray(out, dtype=np.float64)
        spikes.append(torch.from_numpy(out))
        membranes.append(torch.from_numpy(np.asarray(record["Vmem_out"], dtype=np.float64)
                                          + out * spec["threshold_out"]))
    return Outputs(torch.stack(spikes, 1).float(), torch.stack(membranes, 1).float(),
                   {"note": "XyloSim.from_specification, one sample at a time"})


@CONSUMERS.register("spyx", module="spyx", install=("spyx==1.0.0",), deps=True, env=False, batch=True,
                    limit="its LIF resets by subtracting the threshold, one step after the spike, and it "
                    "runs channels last")
def spyx_outputs(path, inputs, dt):
    """Spyx's ``from_nir(graph, input, dt)`` (JAX), channels last ([T, N, H, W, C]). Its LIF reads
    beta = 1 - dt / tau, ignores r, and resets by subtracting the threshold. No membrane."""
    import jax.numpy as jnp
    import nir
    from spyx.nir import from_nir

    x = inputs.permute(0, 1, 3, 4, 2) if inputs.dim() == 5 else inputs
    _, out = from_nir(nir.read(path), jnp.asarray(x.numpy()), dt=dt)
    return Outputs(torch.from_numpy(np.asarray(out)).float().flatten(2), None,
                   {"note": "channels last"})


def main(argv=None):
    """``python -c "from snnclf.export.consumers import main; main()" TOOL FILE INPUTS OUT``: run
    TOOL on the NIR FILE with the inputs ``torch.load``ed from INPUTS ({"inputs": [T, N, ...],
    "dt": float}), and ``torch.save`` to OUT either the outputs or the error: what the benchmark
    runs in each tool's own environment."""
    tool, path, inputs, out = argv or sys.argv[1:]
    given = torch.load(inputs, weights_only=True)
    try:
        got = run(tool, path, given["inputs"], given["dt"])
        result = {"ok": True, **asdict(got), "version": version(tool)}
    except Exception as err:  # the tool's own error: its type and first line are the result
        result = {"ok": False, "error": error_line(err), "version": version(tool)}
    torch.save(result, out)


def error_line(err):
    """A tool's error as one line: its type and the first line of its message."""
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first}"[:300]

