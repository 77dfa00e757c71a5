"""SOP and MAC counts against hand-computed values on tiny networks with known spikes."""
import pytest
import torch
from torch import nn

from snnclf import efficiency
from snnclf.data import get_encoder
from snnclf.models import get_model, is_spiking, list_models
from snnclf.models.layers import Folded, Network
from snnclf.models.neurons import make_neuron


def test_linear_layer_counts():
    net = Network(Folded(nn.Linear(4, 3)), make_neuron("leaky"))
    x = torch.tensor([[[1.0, 0, 1, 0]], [[0, 0, 1, 0]]])  # T=2, B=1: 3 input spikes
    counts = efficiency.count(net, x)
    row = counts["layers"][0]
    assert row["spiking_input"] and row["input_spikes"] == 3 and row["fan_out"] == 3
    assert row["sops"] == 3 * 3 and row["macs"] == 0 and row["macs_ann"] == 4 * 3  # an ANN runs once
    t = counts["totals"]
    assert t["macs"] == 0 and t["neuron_updates"] == 3 * 2 and t["time_steps"] == 2
    assert abs(t["energy_uj"] - (9 * 0.9 + 6 * 4.6) * 1e-6) < 1e-12  # SOPs + neuron updates
    assert abs(t["energy_ann_uj"] - 12 * 4.6e-6) < 1e-12


def test_conv_counts_borders_and_real_input():
    net = Network(Folded(nn.Conv2d(1, 2, 3, padding=1)), make_neuron("leaky"),
                  Folded(nn.Flatten(), nn.Linear(2 * 4 * 4, 5)), make_neuron("leaky"))
    x = torch.zeros(1, 2, 1, 4, 4)  # T=1, B=2
    x[0, 0, 0, 0, 0] = 1  # a corner spike reaches a 2x2 window of outputs in each of 2 channels
    x[0, 0, 0, 1, 1] = 1  # an inner spike reaches 3x3
    x[0, 1, 0, 2, 2] = 1  # sample 2: one inner spike
    counts = efficiency.count(net, x)
    conv = counts["layers"][0]
    assert conv["input_spikes"] == 3 / 2  # per sample
    assert conv["sops"] == (4 + 9 + 9) * 2 / 2 and conv["macs_ann"] == 2 * 4 * 4 * 9
    real = efficiency.count(net, torch.rand(1, 2, 1, 4, 4) * 0.5 + 0.1)["layers"][0]
    assert not real["spiking_input"] and real["sops"] == 0
    rates = counts["rates"]
    assert [r["neurons"] for r in rates] == [32, 5] and 0 <= rates[0]["rate"] <= 1


def test_static_input_computed_once_counts_once():
    net = Network(Folded(nn.Linear(6, 4)), make_neuron("leaky"))
    x = torch.rand(1, 6)
    shared = efficiency.count(net, x.expand(5, *x.shape))  # stride-0: the layer runs once
    full = efficiency.count(net, x.expand(5, *x.shape).contiguous())  # the layer runs 5 times
    assert shared["layers"][0]["macs"] == 6 * 4 and full["layers"][0]["macs"] == 6 * 4 * 5
    assert shared["totals"]["neuron_updates"] == full["totals"]["neuron_updates"] == 4 * 5


@pytest.mark.parametrize("name", [n for n in list_models() if not is_spiking(n)])
def test_an_ann_under_direct_encoding_is_counted_once_whatever_t(name):
    model = get_model(name, (1, 8, 8), 10).eval()
    x = torch.rand(3, 1, 8, 8)
    one, four = (efficiency.count(model, get_encoder("direct")(x, T))["totals"] for T in (1, 4))
    assert one["macs"] == four["macs"] == one["macs_ann"] > 0
    assert one["energy_uj"] == four["energy_uj"] and four["sops"] == 0 and four["neuron_updates"] == 0
    rate = efficiency.count(model, get_encoder("rate")(x, 4))["totals"]
    assert rate["macs"] == 4 * one["macs"]  # rate input changes every step: the ANN runs 4 times
