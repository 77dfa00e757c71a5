"""snnclf export: NIR for spiking networks and ONNX for the baselines, each read back and run by
another framework; what NIR cannot express is refused before anything is written."""
import json
import sys

import nir
import numpy as np
import onnx
import pytest
import torch

from snnclf import export
from snnclf.errors import UsageError
from snnclf.models import get_model
from snnclf.models.arch import parse

EXPORTABLE = ["train", "--model", "arch", "--arch", "12C3p1-AP2-32C3p1-SP2-FC64-FC10", "--reset", "zero",
              "--batch_norm", "--learn_beta", "--time_steps", "4", "--epochs", "4", "--run", "nir"]


def test_an_exportable_csnn_reads_back_into_snntorch_with_the_same_spikes(workdir, cli):
    code, _, err = cli(*EXPORTABLE)
    assert code == 0, err
    code, out, err = cli("export", "--run", "nir", "--samples", "200")
    assert code == 0, err
    assert "output spikes identical: 100.00% of 8,000" in out, out
    record = json.loads((workdir / "logs" / "nir" / "export_nir.json").read_text())
    check = record["check"]
    assert check["passed"] and check["samples"] == 200
    assert check["equal_outputs"] >= 0.999 and check["equal_predictions"] >= 0.999
    assert check["accuracy_snnclf"] > 0.5  # a trained network (chance is 0.1), not a silent one
    graph = nir.read(str(workdir / "checkpoints" / "nir" / "nir.nir"))
    order = ["input"]
    while order[-1] != "output":
        order.append(next(b for a, b in graph.edges if a == order[-1]))
    assert [type(graph.nodes[n]).__name__ for n in order] == [
        "Input", "Conv2d", "AvgPool2d", "LIF", "Conv2d", "SumPool2d", "LIF", "Flatten", "Affine", "LIF",
        "Affine", "LIF", "Output"]
    lif = graph.nodes["conv1_lif"]
    beta = 1 - export.DT / lif.tau  # snnTorch's importer reads beta back this way
    assert lif.tau.shape == (12, 4, 4) and np.allclose(beta, beta.flat[0]) and 0 < beta.flat[0] < 1
    assert np.allclose(lif.r * export.DT / lif.tau, 1) and np.all(lif.v_reset == 0)


def test_the_check_catches_an_export_that_differs(workdir, cli, monkeypatch):
    """Batch norm left out of the convolutions: the file would compute something else."""
    assert cli(*EXPORTABLE)[0] == 0
    monkeypatch.setattr(export, "_conv", lambda nir_, conv, norm, shape, where: _unfolded(nir_, conv, shape))
    code, _, err = cli("export", "--run", "nir", "--samples", "100")
    assert code == 2 and "disagrees with snnclf's network" in err and "nothing was written" in err
    assert not list((workdir / "checkpoints" / "nir").glob("*.nir*"))


def _unfolded(nir_, conv, shape):
    return nir_.Conv2d(input_shape=tuple(shape[1:]), weight=conv.weight.detach().numpy(), stride=conv.stride,
                       padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                       bias=np.zeros(conv.out_channels, dtype=np.float32))


def test_what_nir_cannot_express_is_refused_by_name_before_anything_is_written(workdir, cli):
    assert cli("train", "--epochs", "1", "--time_steps", "2", "--run", "maxpool")[0] == 0
    code, out, err = cli("export", "--run", "maxpool")
    assert code == 2 and not out and "Traceback" not in err
    line, = err.strip().splitlines()
    assert "max pooling, which NIR has no node for, in conv1.1, conv2.1 (train with --pool avg or sum" in line
    assert "reset by subtraction" in line and "conv1_lif, conv2_lif, fc1_lif, fc2_lif (train with --reset zero)" in line
    assert not list((workdir / "checkpoints" / "maxpool").glob("*.nir"))
    with pytest.raises(UsageError, match="adaptive threshold .* in stem_alif.*ResidualBlock .* in block1, block2"):
        export.nir_graph(get_model("resnet", (1, 8, 8), 10).eval(), (1, 8, 8))


def test_baselines_export_to_onnx_and_run_in_onnxruntime(workdir, cli):
    assert cli("train", "--model", "ann-cnn", "--batch_norm", "--pool", "avg", "--epochs", "2",
               "--run", "ann")[0] == 0
    code, out, err = cli("export", "--run", "ann", "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["format"] == "onnx" and record["check"]["max_logit_difference"] < 1e-4
    assert record["check"]["equal_predictions"] == 1.0 and record["check"]["accuracy_other"] > 0.5
    model = onnx.load(record["file"])
    onnx.checker.check_model(model)
    code, _, err = cli("export", "--run", "ann", "--format", "nir")
    assert code == 2 and "non-spiking baseline" in err and "--format onnx" in err


def test_an_existing_out_file_is_never_replaced(workdir, cli):
    assert cli(*EXPORTABLE)[0] == 0
    (workdir / "mine.nir").write_text("the user's file")
    code, _, err = cli("export", "--run", "nir", "--out", "mine.nir")
    assert code == 2 and "mine.nir exists" in err
    assert (workdir / "mine.nir").read_text() == "the user's file"
    code, _, err = cli("export", "--run", "nir", "--format", "onnx")
    assert code == 2 and "ONNX has no spiking neurons" in err


def test_sum_pooling_sums_and_pool_chooses_the_conv_models_pooling(cli):
    assert [t.pool for t in parse("8C3-SP2-AP2-MP2-FC10") if t.kind == "pool"] == ["SP", "AP", "MP"]
    net = get_model("arch", (1, 8, 8), 10, spec="SP2-FC10")
    x = torch.rand(1, 3, 1, 8, 8)
    assert torch.allclose(net.pool1(x), 4 * torch.nn.functional.avg_pool2d(x[0], 2)[None])
    pools = {p: [type(m).__name__ for m in get_model("csnn", (1, 8, 8), 10, pool=p).modules()
                 if "Pool" in type(m).__name__] for p in ("max", "avg")}
    assert pools == {"max": ["MaxPool2d"] * 2, "avg": ["AvgPool2d"] * 2}
    for model in ("snn-mlp", "ann-mlp", "resnet"):
        code, _, err = cli("train", "--model", model, "--pool", "avg")
        assert code == 2 and f"--pool does not apply to model {model}" in err


def test_a_missing_package_is_one_line_naming_the_install(workdir, cli, monkeypatch):
    assert cli(*EXPORTABLE[:-2], "--epochs", "1", "--run", "nir")[0] == 0
    monkeypatch.setitem(sys.modules, "nir", None)  # as if not installed: importing it fails
    code, out, err = cli("export", "--run", "nir")
    assert code == 2 and not out and "Traceback" not in err
    assert err.strip() == ("snnclf export: error: snnclf export --format nir needs the nir package: "
                           "pip install 'snnclf[export]'")
