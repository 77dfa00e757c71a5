"""The fast execution (fused multi-step LIF, folded time, the static first layer run once,
channels-last images) gives the spikes of snnTorch's per-step loop, for every spiking model."""
import importlib.util
from pathlib import Path

import pytest
import snntorch as snn
import torch
from snntorch import surrogate

from snnclf.data import get_encoder, list_encoders
from snnclf.data.encoders import ENCODERS
from snnclf.models import (
    compile_model,
    fused,
    get_model,
    is_spiking,
    list_models,
    make_neuron,
    step_by_step,
)
from snnclf.models.neurons import RESETS, SURROGATES, SpikingLayer

ROOT = Path(__file__).resolve().parents[1]
SPIKING = [name for name in list_models() if is_spiking(name)]
IMAGE_ENCODINGS = [name for name in list_encoders() if not ENCODERS.info(name)["for_events"]]


def _speed_benchmark():
    """benchmarks/speed.py, whose CASES are the models it times against the tutorial's loop."""
    spec = importlib.util.spec_from_file_location("speed", ROOT / "benchmarks" / "speed.py")
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    return speed


SPEED = _speed_benchmark()


def record_spiking_layers(model):
    """Every SpikingLayer's (spikes, membrane), in call order, while the hooks stay on."""
    records = []
    hooks = [m.register_forward_hook(lambda m, i, out: records.append(out))
             for m in model.modules() if type(m).__name__ == "SpikingLayer"]
    return records, hooks


def run_both(model, x):
    """Outputs, per-layer records and parameter gradients of the fast and step-by-step runs."""
    results = []
    for reference in (False, True):
        model.zero_grad(set_to_none=True)
        records, hooks = record_spiking_layers(model)
        if reference:
            with step_by_step(model):
                spk, mem = model(x)
        else:
            spk, mem = model(x)
        (spk.sum() + 0.01 * mem.square().sum()).backward()
        for h in hooks:
            h.remove()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((spk.detach(), mem.detach(), [(s.detach(), m.detach()) for s, m in records], grads))
    return results


@pytest.mark.parametrize("reset", [*RESETS, "none"])  # every --reset, and snnTorch's "none"
@pytest.mark.parametrize("learn", [False, True])
@pytest.mark.parametrize("in_place", [False, True])  # snnclf's atan declares its derivative
def test_fused_leaky_equals_snntorch_leaky_called_per_step(reset, learn, in_place):
    torch.manual_seed(0)
    spike_grad = surrogate.atan()
    declared = SURROGATES.info("atan")["derivative"]
    assert declared is not None
    derivative = (lambda z: declared(z, None)) if in_place else None
    layer = SpikingLayer(snn.Leaky(beta=0.8, threshold=0.7, reset_mechanism=reset, learn_beta=learn,
                                   learn_threshold=learn, spike_grad=spike_grad), 1, derivative)
    x = (torch.randn(12, 4, 3, 5, 5) * 0.8 + 0.3).requires_grad_()
    spk, mem = layer(x)
    cell = snn.Leaky(beta=0.8, threshold=0.7, spike_grad=layer.cell.spike_grad, reset_mechanism=reset)
    m = cell.init_leaky()
    for t in range(12):
        s, m = cell(x[t].detach(), m)
        assert torch.equal(s, spk[t]) and torch.equal(m, mem[t]), f"step {t} differs"
    assert 0.05 < spk.mean() < 0.95  # the comparison covers firing and resets
    # gradients of the input and of the learnable beta and threshold match the per-step loop
    (spk * torch.linspace(0, 1, 5)).sum().backward(retain_graph=True)
    (0.1 * mem.square().sum()).backward()
    fast = [x.grad.clone()] + [p.grad.clone() for p in layer.parameters()]
    x.grad = None
    layer.zero_grad(set_to_none=True)
    layer.step_by_step = True
    spk2, mem2 = layer(x)
    (spk2 * torch.linspace(0, 1, 5)).sum().backward(retain_graph=True)
    (0.1 * mem2.square().sum()).backward()
    slow = [x.grad.clone()] + [p.grad.clone() for p in layer.parameters()]
    assert len(fast) == len(slow) == (3 if learn else 1)
    for a, b in zip(fast, slow):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (a - b).abs().max()


@pytest.mark.parametrize("surrogate", SURROGATES.names())
def test_fused_leaky_uses_each_surrogate_gradient(surrogate):
    torch.manual_seed(1)
    layer = make_neuron("leaky", surrogate=surrogate)
    x = (torch.randn(6, 8, 10) + 0.5).requires_grad_()
    grads = []
    for reference in (False, True):
        layer.step_by_step = reference
        x.grad = None
        spk, _ = layer(x)
        spk.sum().backward()
        grads.append(x.grad.clone())
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", SPIKING)
@pytest.mark.parametrize("encoding", IMAGE_ENCODINGS)
def test_every_spiking_model_fast_path_equals_step_by_step(name, encoding):
    """Folded stateless layers, the first layer run once on direct input, channels-last images
    and fused neurons give the spikes and membranes of calling every layer once per step."""
    torch.manual_seed(0)
    options = {"spec": "8C3p1-MP2-16C3p1-MP2-FC10"} if name == "arch" else {}
    model = get_model(name, (1, 16, 16), 10, threshold=0.5, **options).eval()  # eval: batch norm
    x = get_encoder(encoding)(torch.rand(6, 1, 16, 16) * (3 if encoding == "direct" else 1), 7)
    fast, slow = run_both(model, x)
    assert torch.equal(fast[0], slow[0])
    assert torch.allclose(fast[1], slow[1], atol=1e-5)
    assert len(fast[2]) == len(slow[2]) >= 2
    for (s1, m1), (s2, m2) in zip(fast[2], slow[2]):
        assert torch.equal(s1, s2)
        assert torch.allclose(m1, m2, atol=1e-5)
    assert all(s.sum() > 0 for s, _ in fast[2][:-1])  # hidden layers fire: a real comparison
    assert fast[3].keys() == slow[3].keys()
    for key in fast[3]:
        assert torch.allclose(fast[3][key], slow[3][key], rtol=1e-3, atol=1e-5), key


@pytest.mark.parametrize("name", sorted(SPEED.CASES))
def test_models_equal_the_snntorch_tutorial_network(name):
    """Every model the speed benchmark times (csnn, cnn) gives the output spikes of the tutorial's
    nn.Sequential of the same layers and snn.Leaky(init_hidden=True), called once per step with
    the same weights (the benchmark's reference), on its direct-encoded images and its event frames."""
    speed = SPEED
    shape, kind, options = speed.CASES[name]
    torch.manual_seed(0)
    model = get_model(name, shape, 10, threshold=0.5, **options)
    reference = speed.reference_from(model)
    # direct input keeps its stride-0 time dimension (the first layer then runs once)
    x = get_encoder("direct")(torch.rand(8, *shape) * 2, 6) if kind == "direct" else speed.make_input(kind, shape, 8, 6)
    assert (x.stride(0) == 0) == (kind == "direct")
    with torch.no_grad():
        ours, theirs = model(x), speed.reference_forward(reference, x)
    assert ours[0].sum() > 0
    assert torch.equal(ours[0], theirs[0])
    assert torch.allclose(ours[1], theirs[1], atol=1e-5)


def test_only_plain_leaky_cells_take_the_fused_kernel():
    assert fused.supports(snn.Leaky(beta=0.9))
    assert not fused.supports(snn.Leaky(beta=0.9, reset_delay=False))
    assert not fused.supports(snn.Leaky(beta=0.9, graded_spikes_factor=2.0))
    assert not fused.supports(snn.Synaptic(alpha=0.9, beta=0.9))
    assert make_neuron("leaky").multistep and not make_neuron("alif").multistep


def test_channels_last_layout_is_kept_through_the_network():
    model = get_model("csnn", (1, 28, 28), 10)
    seen = []
    model.conv2.register_forward_hook(lambda m, i, out: seen.append(out))
    model(get_encoder("rate")(torch.rand(2, 1, 28, 28), 3))
    folded = seen[0].flatten(0, 1)
    assert folded.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_compiled_model_gives_the_same_spikes():
    """Under torch.compile the neurons run as plain per-step operations the compiler can fuse."""
    torch.manual_seed(0)
    model = get_model("csnn", (1, 12, 12), 10, threshold=0.5).eval()
    x = get_encoder("direct")(torch.rand(4, 1, 12, 12) * 3, 4)
    with torch.no_grad():
        eager = model(x)
        compiled = compile_model(model)(x)
    assert eager[0].sum() > 0
    assert torch.equal(eager[0], compiled[0])
    assert torch.allclose(eager[1], compiled[1], atol=1e-5)


def test_unrolled_leaky_equals_the_fused_kernel():
    torch.manual_seed(2)
    layer = make_neuron("leaky", learn_beta=True, learn_threshold=True, reset="zero")
    x = (torch.randn(9, 5, 6) + 0.4).requires_grad_()
    outs, grads = [], []
    for run in (fused.leaky, fused.leaky_unrolled):
        x.grad = None
        layer.zero_grad()
        spk, mem = run(x, layer.cell, layer.reset_mode)
        (spk.sum() + mem.square().sum()).backward()
        outs.append((spk, mem))
        grads.append([x.grad.clone()] + [p.grad.clone() for p in layer.parameters()])
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_sigmoid_surrogate_gradient_stays_finite_far_below_threshold():
    """snnTorch 1.0's sigmoid surrogate gives NaN there (exp overflows); snnclf's does not."""
    spike = SURROGATES.lookup("sigmoid", "--surrogate")()
    z = torch.tensor([-50.0, -4.0, 0.0, 0.1, 50.0], requires_grad=True)
    spike(z).sum().backward()
    assert torch.isfinite(z.grad).all()
    assert z.grad[2] == pytest.approx(25 / 4)  # slope * s * (1 - s) at 0
