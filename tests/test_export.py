"""snnclf export: NIR for spiking networks, in the form (target) the tools reading it run exactly,
and ONNX for the baselines; each file read back and run by other frameworks before it is kept;
what NIR cannot express is refused before anything is written."""
import json
import re
import shutil
import sys
from pathlib import Path

import nir
import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from snnclf.builders import open_trained
from snnclf.cli import main
from snnclf.errors import UsageError
from snnclf.export import consumers, reference
from snnclf.export import nir as export
from snnclf.models import POOLINGS, get_model, list_models, model_options
from snnclf.models.arch import parse

from conftest import copy_runs

ROOT = Path(__file__).resolve().parents[1]
EXPORTABLE = ["train", "--model", "arch", "--arch", "12C3p1-AP2-32C3p1-SP2-FC64-FC10", "--reset", "zero",
              "--batch_norm", "--learn_beta", "--time_steps", "4", "--epochs", "4", "--run", "nir"]
# a network without leak (beta fixed at 1) in every layer, average pooling between
NO_LEAK = ["train", "--model", "arch", "--arch", "8C3p1-AP2-FC10", "--reset", "zero", "--beta", "1",
           "--time_steps", "4", "--epochs", "2", "--run", "noleak"]
MAIN_TOOLS = [t for t in ("numpy", "snntorch", "spikingjelly") if consumers.installed(t)]
needs_spikingjelly = pytest.mark.skipif(not consumers.installed("spikingjelly"),
                                        reason="SpikingJelly is not installed: pip install -e '.[test]'")


def _trained(tmp_path_factory, args):
    """Train ``args`` once for this module; a test copies the run into its own folder."""
    root = tmp_path_factory.mktemp(args[-1])
    assert main([*args, "--save_dir", str(root / "checkpoints"), "--log_dir", str(root / "logs")]) == 0
    return root


@pytest.fixture(scope="module")
def _exportable(tmp_path_factory):
    return _trained(tmp_path_factory, EXPORTABLE)


@pytest.fixture(scope="module")
def _no_leak(tmp_path_factory):
    return _trained(tmp_path_factory, NO_LEAK)


@pytest.fixture
def trained(workdir, _exportable):
    """The exportable run ``nir`` in this test's folder (checkpoints/ and logs/)."""
    return copy_runs(_exportable, workdir)


@pytest.fixture
def no_leak(workdir, _no_leak):
    return copy_runs(_no_leak, workdir)


def _order(graph):
    order = ["input"]
    while order[-1] != "output":
        order.append(next(b for a, b in graph.edges if a == order[-1]))
    return order


def _export(cli, *args):
    code, out, err = cli("export", *args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.slow
def test_the_default_export_runs_the_same_in_every_installed_tool(trained, cli):
    code, out, err = cli("export", "--run", "nir", "--samples", "200")
    assert code == 0, err
    for tool in MAIN_TOOLS:  # one block per tool, with the convention it was run with
        how = r"\(dt 0.0001 s, (with a batch dimension|one sample at a time)"
        assert re.search(rf"^  {tool} [\d.]+ {how}", out, re.M), out
    assert "same predicted class: 100.00% of 200 samples" in out
    record = json.loads((trained / "logs" / "nir" / "export_nir.json").read_text())
    assert record["target"] == "portable" and [c["tool"] for c in record["checks"]] == MAIN_TOOLS
    for check in record["checks"]:  # one row per tool
        assert check["passed"] and check["samples"] == 200 and check["outputs"] == 200 * 4 * 10
        assert check["equal_outputs"] >= 0.999 and check["equal_predictions"] >= 0.999
        assert check["accuracy_snnclf"] > 0.5  # a trained network (chance is 0.1), not a silent one
    graph = nir.read(str(trained / "checkpoints" / "nir" / "nir.nir"))
    assert [type(graph.nodes[n]).__name__ for n in _order(graph)] == [
        "Input", "Conv2d", "SumPool2d", "LIF", "Conv2d", "SumPool2d", "LIF", "Flatten", "Affine", "LIF",
        "Affine", "LIF", "Output"]
    model = open_trained("nir").model
    for name in ("conv1_lif", "conv2_lif", "fc1_lif", "fc2_lif"):
        lif, beta = graph.nodes[name], float(model.get_submodule(name).cell.beta.detach().clamp(0, 1))
        assert lif.tau.shape == lif.r.shape == lif.v_threshold.shape  # NIR's type check wants full arrays
        assert np.all(lif.r == 1) and np.all(lif.v_reset == 0) and np.all(lif.v_leak == 0)
        assert np.allclose(1 - export.DT / lif.tau, beta, atol=1e-12) or beta == 1.0


@needs_spikingjelly
def test_spikingjelly_runs_the_export(trained, cli):
    record = _export(cli, "--run", "nir", "--check", "spikingjelly", "--samples", "100")
    check, = record["checks"]
    assert check["tool"] == "spikingjelly" and check["passed"], check
    assert check["equal_outputs"] >= 0.999 and check["equal_predictions"] >= 0.999
    assert check["convention"] == {"dt": 1e-4, "batch": True}


def _norse_like(graph, inputs):
    """Norse 1.1's NIR import, written out in float32 (Norse itself runs in its own environment,
    benchmarks/nir_consumers.py): it ignores r (LIF: v += dt / tau (v_leak - v + I)), resets to
    0, has no AvgPool2d (a KeyError), sums with LPPool2d of norm 1, and its IF adds its input."""
    v, spikes = {}, []
    for x in inputs.float():  # [N, C, H, W]
        for name in _order(graph)[1:-1]:
            n = graph.nodes[name]
            if isinstance(n, nir.Conv2d):
                x = F.conv2d(x, torch.from_numpy(n.weight), torch.from_numpy(n.bias), tuple(n.stride),
                             tuple(n.padding), tuple(n.dilation), int(n.groups))
            elif isinstance(n, nir.SumPool2d):
                x = torch.nn.LPPool2d(1, tuple(n.kernel_size), tuple(n.stride))(x)
            elif isinstance(n, nir.Flatten):
                x = x.flatten(1)
            elif isinstance(n, nir.Affine):
                x = F.linear(x, torch.from_numpy(n.weight), torch.from_numpy(n.bias))
            elif isinstance(n, nir.LIF):
                prev, tau_inv = v.get(name, torch.zeros_like(x)), 1 / torch.from_numpy(n.tau).float()
                after = prev + 1e-4 * tau_inv * (x + torch.from_numpy(n.v_leak).float() - prev)
                x = (after > torch.from_numpy(n.v_threshold).float()).float()
                v[name] = torch.where(x > 0, 0.0, after)
            elif isinstance(n, nir.IF):
                after = v.get(name, torch.zeros_like(x)) + x
                x = (after > torch.from_numpy(n.v_threshold).float()).float()
                v[name] = torch.where(x > 0, 0.0, after)
            else:
                raise KeyError(name)  # Norse maps no AvgPool2d
        spikes.append(x)
    return torch.stack(spikes)


def _graph_and_reference(run, target, samples=60):
    """The graph of ``run`` in the form of ``target``, and snnclf's own outputs on ``samples``."""
    trained = open_trained(run)
    ref = reference(trained, samples)
    return export.nir_graph(trained.model.eval(), trained.in_shape, {}, target), ref


def test_r_folded_into_the_weights_is_what_a_tool_that_ignores_r_runs(trained):
    """Norse reads r as 1: the default form folds r into the weights before each LIF, and runs
    there exactly; with r = tau / dt (snnTorch's own form) nothing of the input gets through."""
    graph, ref = _graph_and_reference("nir", "portable")
    assert all(np.all(graph.nodes[n].r == 1) for n in graph.nodes if isinstance(graph.nodes[n], nir.LIF))
    assert torch.equal(_norse_like(graph, ref.inputs), ref.spikes)
    unfolded = export.Form(fold_r=False, sum_pool=True, no_leak_if=False)  # r = tau / dt, the rest alike
    graph, _ = _graph_and_reference("nir", unfolded)
    assert torch.equal(consumers.run("numpy", _write(graph), ref.inputs, export.DT).spikes, ref.spikes)
    assert float((_norse_like(graph, ref.inputs) == ref.spikes).float().mean()) < 0.99


def test_average_pooling_is_sum_pooling_with_its_divisor_in_the_weights(trained):
    """Norse (and Sinabs, Spyx) have no AvgPool2d: the default form writes SumPool2d and divides
    the convolution before it by the window's area, which runs exactly; snnTorch's form keeps
    AvgPool2d, which Norse cannot load."""
    graph, ref = _graph_and_reference("nir", "portable")
    kinds = {type(n).__name__ for n in graph.nodes.values()}
    assert "AvgPool2d" not in kinds and "SumPool2d" in kinds
    outputs = consumers.run("numpy", _write(graph), ref.inputs, export.DT)
    assert torch.equal(outputs.spikes, ref.spikes)
    avg, _ = _graph_and_reference("nir", "snntorch")
    assert isinstance(avg.nodes["conv1_pool"], nir.AvgPool2d)
    with pytest.raises(KeyError):
        _norse_like(avg, ref.inputs)


def _write(graph, name="g.nir"):
    path = Path(name).resolve()
    nir.write(str(path), graph)
    return path


@pytest.mark.parametrize("target", [t for t in export.list_targets() if export.TARGETS[t].schema == "current"])
def test_each_target_writes_its_declared_form_and_its_tools_run_it(no_leak, cli, target):
    """Over the target registry's targets of nir >= 1.0.6 (those of nir 1.0.4, for integrate-and-fire
    networks, and Xylo's are tests/test_chips.py's), on a network without leak: each file is checked
    by the target's installed tools (nothing else), and its nodes are the form the target declares."""
    record = _export(cli, "--run", "noleak", "--target", target, "--samples", "60")
    form, tools = export.TARGETS[target], export.TARGETS.info(target)["consumers"]
    assert [c["tool"] for c in record["checks"]] == [t for t in tools if consumers.installed(t)]
    assert all(c["passed"] and c["equal_outputs"] == 1.0 for c in record["checks"]), record["checks"]
    graph = nir.read(record["file"])
    neurons = [graph.nodes[n] for n in ("conv1_lif", "fc1_lif")]
    if form.no_leak_if:  # dv/dt = r I: r = 1 / dt adds the input once per step
        assert all(isinstance(n, nir.IF) and np.allclose(n.r * export.DT, 1) for n in neurons)
    else:  # tau = 2^40 dt: beta = 1 - 2^-40, which is 1 in float32
        assert all(isinstance(n, nir.LIF) and np.all(n.tau / export.DT == 2.0 ** 40) for n in neurons)
        assert np.float32(1 - export.DT / neurons[0].tau.flat[0]) == 1.0
        assert all(np.all(n.r == (1 if form.fold_r else 2.0 ** 40)) for n in neurons)
    assert isinstance(graph.nodes["conv1_pool"], nir.SumPool2d if form.sum_pool else nir.AvgPool2d)


@pytest.mark.slow
def test_a_layer_without_leak_runs_exactly_in_float32_in_every_agreeing_tool(no_leak, cli):
    """beta = 1: written as LIF of tau = 2^40 dt (default) or IF (portable-if), it gives snnclf's
    spikes exactly in every tool that runs that form, Norse's float32 arithmetic included; the
    power of two keeps the folded weights exact (1e12 did not)."""
    for target, norse_runs in (("portable", True), ("portable-if", True), ("snntorch", False)):
        graph, ref = _graph_and_reference("noleak", target)
        for tool in export.TARGETS.info(target)["consumers"]:
            if tool != "numpy" and consumers.installed(tool):  # numpy: the float64 reference
                outputs = consumers.run(tool, _write(graph), ref.inputs, export.DT)
                assert torch.equal(outputs.spikes, ref.spikes), (target, tool)
        if norse_runs:
            assert torch.equal(_norse_like(graph, ref.inputs), ref.spikes), target
    graph, _ = _graph_and_reference("noleak", "portable", 1)  # the folding itself is exact:
    model = open_trained("noleak").model  # the file's weights are the trained ones times 2^40 (and 1/4)
    conv, fc = model.conv1[0].weight.detach().double().numpy(), model.fc1[0].weight.detach().double().numpy()
    assert np.array_equal(graph.nodes["conv1"].weight.astype(np.float64) / 2.0 ** 40 * 4, conv)
    assert np.array_equal(graph.nodes["fc1"].weight.astype(np.float64) / 2.0 ** 40, fc)
    code, out, err = cli("export", "--run", "noleak", "--target", "portable-if", "--check", "snntorch")
    assert code == 2 and not out and re.search(r"snntorch [\d.]+ cannot run it \(AssertionError", err), err
    assert "nothing was written" in err and not list((no_leak / "checkpoints" / "noleak").glob("*.nir*"))


def test_the_metadata_tells_a_stranger_how_to_feed_the_file_and_read_it(trained, cli):
    record = _export(cli, "--run", "nir", "--samples", "20", "--check", "numpy")
    graph = nir.read(record["file"])
    meta = json.loads(graph.metadata["json"])  # plain Python, however h5py gives the text back
    assert meta == export.read_metadata(graph)
    assert meta["dt"] == 1e-4 and meta["time_steps"] == 4 and meta["snnclf_run"] == "nir"
    assert meta["class_names"] == [str(d) for d in range(10)] and meta["dataset"] == "digits"
    assert meta["input_encoding"].startswith("direct: The image itself") and "[0, 1]" in meta["input_range"]
    assert "most spikes" in meta["readout"] and "before its reset" in meta["readout"]
    assert meta["snnclf_version"] and meta["target"] == "portable" and meta["input_shape"] == [1, 8, 8]
    assert "class k" in _text(graph.nodes["fc2_lif"].metadata["role"])  # the output layer says so itself
    for key, value in meta.items():  # each key is there on its own too, as plain a type as h5py keeps
        raw = graph.metadata[key]
        assert ([_text(r) for r in raw] if isinstance(value, list) else _text(raw)) == value, key


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _docs_example():
    """The example of docs/nir.md that runs a file without snnclf, as a function of the file."""
    text = (ROOT / "docs" / "nir.md").read_text()
    code = re.search(r"<!-- example -->\n```python\n(.*?)```", text, re.S).group(1)
    return code


def test_the_docs_example_runs_the_file_without_snnclf(trained, cli):
    record = _export(cli, "--run", "nir", "--samples", "20", "--check", "numpy")
    shutil.copy(record["file"], "digits-nir.nir")  # the name the example opens
    scope = {}
    exec(compile(_docs_example(), "docs/nir.md", "exec"), scope)
    ref = reference(open_trained("nir"), 60)
    found = torch.tensor([scope["classify"](ref.inputs[:, n].numpy()) for n in range(60)])
    assert torch.equal(found, ref.predicted)
    assert not re.search(r"^(import|from) snnclf", _docs_example(), re.M)  # runs without snnclf


def test_the_check_catches_an_export_that_differs(trained, cli, monkeypatch):
    """Batch norm left out of the convolutions: the file would compute something else."""
    folded = export._conv
    monkeypatch.setattr(export, "_conv", lambda conv, norm, shape, where: folded(conv, None, shape, where))
    code, _, err = cli("export", "--run", "nir", "--samples", "100")
    assert code == 2 and "disagrees with snnclf's network: numpy" in err and "nothing was written" in err
    assert re.search(r"numpy [\d.]+ gives \d+\.\d\d% identical outputs", err), err
    assert not list((trained / "checkpoints" / "nir").glob("*.nir*"))


def test_what_nir_cannot_express_is_refused_by_name_before_anything_is_written(workdir, cli):
    assert cli("train", "--epochs", "1", "--time_steps", "2", "--run", "maxpool")[0] == 0
    code, out, err = cli("export", "--run", "maxpool")
    assert code == 2 and not out and "Traceback" not in err
    line, = err.strip().splitlines()
    assert "max pooling, which NIR has no node for, in conv1.1, conv2.1 (train with --pool avg or sum" in line
    assert "reset by subtraction" in line and "conv1_lif, conv2_lif, fc1_lif, fc2_lif (train with --reset zero, or choose --target sinabs)" in line
    assert not list((workdir / "checkpoints" / "maxpool").glob("*.nir"))
    with pytest.raises(UsageError, match="adaptive threshold .* in stem_alif.*ResidualBlock .* in block1, block2"):
        export.nir_graph(get_model("resnet", (1, 8, 8), 10).eval(), (1, 8, 8))


def test_tools_and_targets_are_refused_in_one_line_before_anything_is_written(trained, cli):
    absent = next(t for t in consumers.list_consumers() if not consumers.installed(t))
    code, out, err = cli("export", "--run", "nir", "--check", absent)
    assert code == 2 and not out and "not installed here" in err and "pip install --no-deps" in err
    code, _, err = cli("export", "--run", "nir", "--check", "lava")
    assert code == 2 and "--check: invalid choice: 'lava'" in err
    code, _, err = cli("export", "--run", "nir", "--target", "loihi")
    assert code == 2 and "--target: invalid choice" in err
    code, _, err = cli("export", "--run", "nir", "--format", "onnx", "--target", "snntorch")
    assert code == 2 and "ONNX has no spiking neurons" in err
    assert not list((trained / "checkpoints" / "nir").glob("*.nir*"))


def test_baselines_export_to_onnx_and_run_in_onnxruntime(workdir, cli):
    assert cli("train", "--model", "ann-cnn", "--batch_norm", "--pool", "avg", "--epochs", "2",
               "--run", "ann")[0] == 0
    record = _export(cli, "--run", "ann")
    check, = record["checks"]
    assert record["format"] == "onnx" and check["max_logit_difference"] < 1e-4
    assert check["equal_predictions"] == 1.0 and check["accuracy_other"] > 0.5
    model = onnx.load(record["file"])
    onnx.checker.check_model(model)
    code, _, err = cli("export", "--run", "ann", "--format", "nir")
    assert code == 2 and "non-spiking baseline" in err and "--format onnx" in err
    code, _, err = cli("export", "--run", "ann", "--target", "snntorch", "--out", "other.onnx")
    assert code == 2 and "--target and --check apply to --format nir" in err


def test_an_existing_out_file_is_never_replaced(trained, cli):
    (trained / "mine.nir").write_text("the user's file")
    code, _, err = cli("export", "--run", "nir", "--out", "mine.nir")
    assert code == 2 and "mine.nir exists" in err
    assert (trained / "mine.nir").read_text() == "the user's file"


def test_sum_pooling_sums_and_pool_chooses_the_conv_models_pooling(cli):
    assert [t.pool for t in parse("8C3-SP2-AP2-MP2-FC10") if t.kind == "pool"] == ["SP", "AP", "MP"]
    net = get_model("arch", (1, 8, 8), 10, spec="SP2-FC10")
    x = torch.rand(1, 3, 1, 8, 8)
    assert torch.allclose(net.pool1(x), 4 * torch.nn.functional.avg_pool2d(x[0], 2)[None])
    pools = {p: [m for m in get_model("csnn", (1, 8, 8), 10, pool=p).modules() if "Pool" in type(m).__name__]
             for p in POOLINGS}
    assert [type(m).__name__ for m in pools["max"]] == ["MaxPool2d"] * 2
    assert [type(m).__name__ for m in pools["avg"]] == ["AvgPool2d"] * 2
    for pool, token in POOLINGS.items():  # every --pool is its --arch token's pooling
        reference_ = get_model("arch", (1, 8, 8), 10, spec=f"{token}2-FC10").pool1(x)[0]
        assert len(pools[pool]) == 2 and all(torch.equal(m(x[0]), reference_) for m in pools[pool]), pool
    for model in [m for m in list_models() if "pool" not in model_options(m)]:
        chosen = ["--arch", "8C3-FC10"] if "spec" in model_options(model) else ["--model", model]
        code, _, err = cli("train", *chosen, "--pool", "avg")
        assert code == 2 and f"--pool does not apply to model {model}" in err


def test_a_missing_package_is_one_line_naming_the_install(trained, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "nir", None)  # as if not installed: importing it fails
    code, out, err = cli("export", "--run", "nir")
    assert code == 2 and not out and "Traceback" not in err
    assert err.strip() == ("snnclf export: error: snnclf export --format nir needs the nir package: "
                           "pip install 'snnclf[export]'")


def test_every_consumer_declares_how_to_install_and_run_it():
    """Over the consumer registry: the tools that need their own environment say what it holds,
    the tools that cannot run snnclf's networks say why, and the targets name only consumers."""
    for name in consumers.list_consumers():
        info = consumers.CONSUMERS.info(name)
        assert isinstance(info["install"], tuple) and isinstance(info["batch"], bool)
        assert info["limit"] is None or info["limit"].startswith("it")
        assert consumers.installed(name) or info["install"], name
    assert consumers.CONSUMERS.info("snntorch")["limit"] is None
    for target in export.list_targets():
        assert set(export.TARGETS.info(target)["consumers"]) <= set(consumers.list_consumers())
        assert all(consumers.CONSUMERS.info(t)["limit"] is None for t in export.TARGETS.info(target)["consumers"])
