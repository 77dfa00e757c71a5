"""snnclf eval --neurobench: NeuroBench's own metrics against snnclf's counts on the same inputs,
equal where both count the same thing and in the documented relation where they do not
(docs/commands.md, "NeuroBench's metrics")."""
import json
import sys
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snnclf import efficiency
from snnclf.data import get_encoder, load_dataset
from snnclf.models import get_model, is_spiking, list_models
from snnclf.models.neurons import SpikingLayer
from snnclf.neurobench import INSTALL, measure
from snnclf.utils import seeded

T, N = 3, 16  # time steps, test samples (two batches of 8)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    try:
        import neurobench  # noqa: F401
    except ImportError:
        pytest.fail(f"these tests need NeuroBench: {INSTALL}")
    return load_dataset("digits", None).test


def _model(name):
    """A small untrained network; a low threshold makes every layer spike."""
    torch.manual_seed(0)
    spec = {"spec": "8C3p1-AP2-16C3p1-MP2-FC10"} if name == "arch" else {}  # average pooling: real inputs
    neurons = {"threshold": 0.25} if is_spiking(name) else {}
    return get_model(name, (1, 8, 8), 10, **spec, **neurons).eval()


def _both(model, data, encoding="direct", seed=0, samples=N):
    """NeuroBench's results and snnclf's own counts, each drawn from ``seed``."""
    encode = partial(get_encoder(encoding), time_steps=T)
    with seeded(seed):
        nb = measure(model, data, encode, 8, CPU, samples)
    with seeded(seed):
        ours = efficiency.measure(model, data, encode, 8, CPU, samples)
    return nb, ours


def _recorded(model, data, encoding="direct", seed=0):
    """Every synaptic layer's inputs and every spiking layer's membranes [T, B, ...] as snnclf
    runs the network (fused), on the inputs of :func:`_both`."""
    inputs, membranes = [], []
    hooks = [m.register_forward_hook(lambda m, a, o: inputs.append((m, a[0])))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    hooks += [m.register_forward_hook(lambda m, a, o: membranes.append(o[1]))
              for m in model.modules() if isinstance(m, SpikingLayer)]
    x, _ = data[list(range(N))]
    with seeded(seed), torch.no_grad():
        model(get_encoder(encoding)(x, T))
    for h in hooks:
        h.remove()
    return inputs, membranes


def _reach(layer, x):
    """Synapses that the nonzero entries of ``x`` drive inside the image (taps on padding left out)."""
    if isinstance(layer, nn.Linear):
        return float((x != 0).sum()) * layer.out_features
    ones = x.new_ones(1, layer.in_channels, *layer.kernel_size)
    return float(F.conv2d((x != 0).float(), ones, None, layer.stride, layer.padding).sum()) * layer.out_channels


def _padding_taps(model):
    """Per sample, the multiply-accumulates of one dense pass that fall on convolution padding."""
    taps = []

    def hook(layer, args, output):
        x = args[0][:1]
        dense = output[:1].numel() * layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
        taps.append(dense - _reach(layer, torch.ones_like(x)))
    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 1, 1, 8, 8))
    for h in hooks:
        h.remove()
    return sum(taps)


SPIKING = [n for n in list_models() if is_spiking(n)]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("resnet", "cnn") else n
                                  for n in SPIKING])
def test_neurobench_counts_what_snnclf_counts(digits, name):
    model = _model(name)
    nb, ours = _both(model, digits)
    m, syn, t = nb["metrics"], nb["metrics"]["SynapticOperations"], ours["totals"]
    assert nb["samples"] == N and nb["time_steps"] == T and t["sops"] > 0

    # accumulates: each input spike times the synapses it drives, the same count
    assert syn["Effective_ACs"] == pytest.approx(t["sops"], rel=1e-9)
    # sparsity: the zeros among all spiking neurons' outputs, over all steps
    spikes, neurons = sum(r["spikes"] for r in ours["rates"]), sum(r["neurons"] for r in ours["rates"])
    assert m["ActivationSparsity"] == pytest.approx(1 - spikes / (neurons * T), abs=1e-12)
    # membranes: NeuroBench counts every neuron at the first step, then those whose membrane changed
    inputs, membranes = _recorded(model, digits)
    changed = sum(u[0].numel() + int((u[1:] != u[:-1]).sum()) for u in membranes) / N
    assert m["MembraneUpdates"] == changed <= t["neuron_updates"]
    # multiply-accumulates: every real-valued input NeuroBench sees, at each step, zeros skipped;
    # snnclf computes an input that repeats over time (direct encoding) once
    real = [(layer, x) for layer, x in inputs if not bool(((x == 0) | (x == 1)).all())]
    assert real and syn["Effective_MACs"] == pytest.approx(
        sum(_reach(layer, x) * (T if len(x) == N else 1) for layer, x in real) / N, rel=1e-9)
    # dense: the same layers as an ANN at each of the T steps, without the taps on padding
    assert syn["Dense"] == T * (t["macs_ann"] - _padding_taps(model))
    # the weights and the neurons' constants: what a checkpoint holds of the network, whatever
    # state the cells kept from an earlier run (resnet's Synaptic and ALIF cells keep theirs)
    assert m["ParameterCount"] == sum(p.numel() for p in model.parameters())
    assert m["Footprint"] == sum(v.numel() * v.element_size() for v in model.state_dict().values())
    again = measure(model, digits, partial(get_encoder("direct"), time_steps=T), 8, CPU, 4)
    assert again["metrics"]["Footprint"] == m["Footprint"]  # after the runs above left their states
    # the snnclf column: its own counts of the same inputs
    assert nb["snnclf"] == {"parameters": m["ParameterCount"], "parameter_bytes": 4 * m["ParameterCount"],
                            "activation_sparsity": pytest.approx(m["ActivationSparsity"], abs=1e-12),
                            "sops": t["sops"], "macs": t["macs"], "dense": T * t["macs_ann"],
                            "neuron_updates": t["neuron_updates"]}


def test_a_direct_run_repeats_its_first_layer_at_every_step_for_neurobench(digits):
    model = _model("csnn")
    nb, ours = _both(model, digits)
    x, _ = digits[list(range(N))]
    nonzero = F.conv2d((x != 0).float(), torch.ones(1, 1, 3, 3), padding=1).sum() * 32 / N
    assert nb["metrics"]["SynapticOperations"]["Effective_MACs"] == pytest.approx(T * float(nonzero))
    assert ours["totals"]["macs"] == 8 * 8 * 32 * 9  # once per sample, zero pixels and padding included
    assert nb["metrics"]["MembraneUpdates"] == ours["totals"]["neuron_updates"]  # every membrane moved


@pytest.mark.parametrize("encoding", ["rate", "latency"])
def test_spike_input_is_all_accumulates_on_the_same_draws(digits, encoding):
    model = _model("csnn")
    nb, ours = _both(model, digits, encoding, seed=3)
    syn = nb["metrics"]["SynapticOperations"]
    assert syn["Effective_MACs"] == 0 == ours["totals"]["macs"]
    assert syn["Effective_ACs"] == pytest.approx(ours["totals"]["sops"], rel=1e-9)
    if encoding == "rate":  # other draws, other spikes: the two used the same ones
        other, _ = _both(model, digits, encoding, seed=4)
        assert other["metrics"]["SynapticOperations"]["Effective_ACs"] != syn["Effective_ACs"]


def test_neurobench_skips_zero_weights_where_snnclf_counts_every_synapse(digits):
    model = _model("snn-mlp")
    last = model[-2][0]  # FC10: silence output neuron 0
    with torch.no_grad():
        last.weight[0] = 0
    nb, ours = _both(model, digits)
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    assert nb["metrics"]["ConnectionSparsity"] == round(last.in_features / weights, 4)
    into_last = ours["layers"][-1]["input_spikes"]
    assert into_last > 0 and nb["metrics"]["SynapticOperations"]["Effective_ACs"] == pytest.approx(
        ours["totals"]["sops"] - into_last, rel=1e-9)  # one synapse fewer per spike into FC10


@pytest.mark.parametrize("name", [n for n in list_models() if not is_spiking(n)])
def test_a_non_spiking_model_is_counted_once_per_sample(digits, name):
    model = _model(name)
    nb, ours = _both(model, digits)
    m, syn, t = nb["metrics"], nb["metrics"]["SynapticOperations"], ours["totals"]
    assert nb["execution"] == "as snnclf runs it" and m["MembraneUpdates"] == 0 and syn["Effective_ACs"] == 0
    assert syn["Dense"] == t["macs"] - _padding_taps(model) and t["macs"] == t["macs_ann"]
    assert 0 < syn["Effective_MACs"] < t["macs"] and 0 < m["ActivationSparsity"] < 1  # zero pixels, ReLU zeros


def test_a_metric_neurobench_fails_on_stops_the_measurement(digits, monkeypatch):
    from neurobench.metrics.workload import MembraneUpdates

    def fail(self, model, preds, data):
        raise ValueError("no membranes")
    monkeypatch.setattr(MembraneUpdates, "__call__", fail)  # NeuroBench would print it and report 0.0
    with pytest.raises(RuntimeError, match="Error running workload metric 'MembraneUpdates': no membranes"):
        _both(_model("snn-mlp"), digits)


def test_without_the_package_it_is_one_line_naming_the_install(workdir, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "neurobench", None)
    code, out, err = cli("eval", "--neurobench")
    assert code == 2 and err.strip() == f"snnclf eval: error: snnclf eval --neurobench needs the neurobench " \
                                        f"package: {INSTALL}"
    code, _, err = cli("eval", "--neurobench_samples", "10")
    assert code == 2 and err.count("\n") == 1 and "--neurobench_samples applies with --neurobench" in err


@pytest.mark.slow
def test_eval_reports_neurobench_in_print_json_and_eval_json(digits, workdir, cli):
    code, _, _ = cli("train", "--model", "csnn", "--epochs", "1", "--time_steps", "2", "--subset", "200",
                     "--batch_size", "50")
    assert code == 0
    code, out, _ = cli("eval", "--test_only", "--neurobench", "--neurobench_samples", "40", "--json")
    results = json.loads(out)
    nb = results["neurobench"]
    assert code == 0 and nb["samples"] == 40 and nb["time_steps"] == 2
    assert nb == json.loads((workdir / "logs" / results["run"] / "eval.json").read_text())["neurobench"]
    assert nb["metrics"]["SynapticOperations"]["Effective_ACs"] == pytest.approx(nb["snnclf"]["sops"], rel=1e-9)
    code, out, _ = cli("eval", "--test_only", "--neurobench", "--neurobench_samples", "40")
    lines = out.splitlines()
    head = lines.index(f"NeuroBench {nb['version']} metrics per test sample (first 40 test samples, T=2, the "
                       "network run step by step), beside snnclf's on the same inputs:")
    table = {line[2:23].strip(): line[23:].split() for line in lines[head + 2:]}
    assert code == 0 and list(table) == ["parameters", "footprint (bytes)", "connection sparsity",
                                         "activation sparsity", "effective ACs", "effective MACs",
                                         "dense synaptic ops", "membrane updates"]
    assert table["effective ACs"][0] == table["effective ACs"][1] == f"{nb['snnclf']['sops']:,.0f}"
    assert table["dense synaptic ops"][2:4] == ["snnclf:", "2"]
