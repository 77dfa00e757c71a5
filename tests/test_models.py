"""Every registered model: shapes, learning, the folded-time fast path, and the --arch notation."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnclf.data import load_dataset
from snnclf.errors import UsageError
from snnclf.losses import get_loss
from snnclf.models import get_model, list_models, make_neuron
from snnclf.models.neurons import NEURONS

ARCH = "12C5-MP2-64C5-MP2-1024FC10"


def build(name, in_shape=(1, 8, 8), num_classes=10, **options):
    if name == "arch":
        options.setdefault("spec", ARCH if in_shape[1:] == (28, 28) else "8C3p1-MP2-FC10")
    return get_model(name, in_shape, num_classes, **options)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("in_shape", [(1, 8, 8), (1, 28, 28), (2, 34, 34)])
def test_output_shapes(name, in_shape):
    model = build(name, in_shape)
    spk, mem = model(torch.rand(3, 5, *in_shape))
    assert spk.shape == mem.shape == (3, 5, 10)
    if model.spiking:
        assert set(spk.unique().tolist()) <= {0.0, 1.0}
    else:
        assert spk.sum() == 0  # baselines emit no spikes; their logits are the membrane


@pytest.fixture(scope="module")
def digits_batch():
    return load_dataset("digits").train[list(range(64))]


@pytest.mark.parametrize("name", list_models())
def test_every_model_learns(name, digits_batch):
    torch.manual_seed(0)
    x, y = digits_batch
    model = build(name)
    loss_fn = get_loss(None, 4, model.spiking)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    inputs = x.expand(4, *x.shape)
    losses = []
    for _ in range(30):
        spk, mem = model(inputs)
        loss = loss_fn(spk, mem, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # ce_rate_loss on spikes lies in [1.46, 2.30] for 10 classes, so ask for a clear absolute fall
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses


@pytest.mark.parametrize("name", list_models())
def test_stride0_input_equals_materialised_input(name):
    """The direct encoder's stride-0 time dimension lets stateless layers run once; the result
    must equal running them on every (identical) step."""
    model = build(name).eval()
    x = torch.rand(6, 1, 8, 8)
    shared = x.expand(5, *x.shape)
    assert shared.stride(0) == 0
    with torch.no_grad():
        a = model(shared)
        b = model(shared.contiguous())
    assert torch.equal(a[0], b[0])
    assert torch.allclose(a[1], b[1], atol=1e-5)


def test_state_does_not_leak_between_calls():
    layer = make_neuron("synaptic")
    x = torch.rand(6, 3, 5) * 2
    first = layer(x)
    second = layer(x)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_adaptive_threshold_reduces_firing():
    """Under a constant strong input an ALIF neuron fires less than the same LIF neuron."""
    x = torch.full((50, 1, 1), 0.6)
    lif_spikes = make_neuron("leaky", beta=0.9)(x)[0].sum()
    alif_spikes = make_neuron("alif", beta=0.9, alpha=0.95)(x)[0].sum()
    assert 0 < alif_spikes < lif_spikes


@pytest.mark.parametrize("kind", NEURONS.names())
def test_neurons_pass_gradients(kind):
    x = torch.rand(5, 2, 7, requires_grad=True)
    spk, _ = make_neuron(kind)(x * 3)
    spk.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_model_options_reach_the_neurons():
    model = build("csnn", beta=0.5, threshold=2.0, learn_beta=True, reset="zero")
    cell = model.conv1_lif.cell
    assert cell.beta.item() == 0.5 and cell.threshold.item() == 2.0
    assert isinstance(cell.beta, torch.nn.Parameter) and cell.reset_mechanism == "zero"


def test_batch_norm_and_dropout_options():
    model = build("csnn", batch_norm=True, dropout=0.3)
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"BatchNorm2d", "TimeDropout"} <= kinds


def test_dropout_mask_is_shared_over_time():
    from snnclf.models.layers import TimeDropout

    drop = TimeDropout(0.5).train()
    out = drop(torch.ones(4, 3, 100))
    assert torch.equal(out[0], out[3]) and (out[0] == 0).any()


# --- the --arch notation ------------------------------------------------------------------

def test_paper_arch_builds_on_28x28():
    model = get_model("arch", (1, 28, 28), 10, spec=ARCH)
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linear[0].in_features == 1024 and linear[0].out_features == 10
    spk, _ = model(torch.rand(2, 3, 1, 28, 28))
    assert spk.shape == (2, 3, 10)


@pytest.mark.parametrize("spec, message", [
    ("12C5-MP2-64C5-MP2-1000FC10", "states 1000 inputs but gets 1024 (64x4x4) there: write 1024FC10"),
    ("12C5-XX-FC10", "cannot read token 2 'XX'"),
    ("12C5-MP2-64C5-MP2-64C5-FC10", "token 5 '64C5' needs at least 5x5 input but gets 4x4"),
    ("12C5-MP2-FC5", "has 5 outputs but the data set has 10 classes"),
    ("12C5-MP2", "must end with a fully connected layer FC10"),
    ("FC100-12C5-FC10", "is a convolution after a fully connected layer"),
    ("0C5-FC10", "has a size of 0"),
    ("", "the spec is empty"),
    ("12C5-MP64-FC10", "pools 64x64 but the input there is only 24x24"),
])
def test_bad_arch_is_refused_with_the_layer_named(spec, message):
    with pytest.raises(UsageError) as err:
        get_model("arch", (1, 28, 28), 10, spec=spec)
    assert message in str(err.value)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="0123456789CFMPAp-x", max_size=24))
def test_any_arch_string_builds_or_is_refused(spec):
    try:
        model = get_model("arch", (1, 12, 12), 10, spec=spec)
    except UsageError as err:
        assert str(err).startswith("--arch") and "\n" not in str(err)
    else:
        assert model(torch.rand(1, 2, 1, 12, 12))[0].shape == (1, 2, 10)
