"""Training for a chip (--chip): each of a chip's limits refuses a network in one line, naming the
limit and the layer, before any data is read; the network trains in the chip's integers, and its
integer forward is the chip's neuron, step for step."""
import pytest
import torch

from snnclf.chips import CHIPS, Core, speck_memory
from snnclf.models import get_model
from snnclf.models.quant import ChipIF, QuantConv2d, discretization_scale, float_twin

SPECK_OK = "8C3p1-LIF-SP2-16C3p1-LIF-SP2-FC64-FC10"

# (flags beyond --chip, the words the one-line error must hold): one row per limit
SPECK_REFUSALS = [
    (["--chip", "speck", "--dataset", "digits"], "takes events"),
    (["--chip", "speck", "--dataset", "digits", "--encoding", "latency"], "takes events"),
    (["--chip", "speck", "--dataset", "asl-dvs", "--downsample", "1", "--arch", "FC24"], "polarity channels of at most 128x128"),
    (["--chip", "speck", "--dataset", "digits-events", "--model", "csnn"], "conv1 pools its currents before its neurons"),
    (["--chip", "speck", "--dataset", "digits-events", "--arch", "8C3p1-LIF-AP2-FC10"], "conv1's spikes are pooled by average"),
    (["--chip", "speck", "--dataset", "digits-events", "--arch", "8C3p1-LIF-SP3-FC10"], "sum pooling 3x3"),
    (["--chip", "speck", "--dataset", "digits-events", "--arch", "8C3p1-LIF-SP2-SP2-FC10"], "pooled 2 times"),
    (["--chip", "speck", "--dataset", "digits-events", "--arch", "AP2-8C3p1-LIF-FC10"], "input is pooled by average"),
    (["--chip", "speck", "--dataset", "digits-events", "--arch", "-".join(["4C3p1"] * 9 + ["FC10"])],
     "10 layers"),
    (["--chip", "speck", "--dataset", "digits-events", "--arch", "8C3p1-LIF-SP2-16C3p1-LIF-SP2-FC512-FC10"],
     "fc1 needs 524,288 words of kernel memory"),
    (["--chip", "speck", "--dataset", "digits-events", "--arch", "64C3p1-FC10"], "conv1 needs 262,144 words of neuron memory"),
    (["--chip", "speck", "--dataset", "digits-events", "--arch", "SP2-64C3p1-LIF-32C5p2-FC10"],
     "conv2 needs 65,536 words of kernel and 32,768 of neuron memory, which no single Speck core has"),
    (["--chip", "speck", "--dataset", "digits-events", "--arch", "16C3p1-16C3p1-16C3p1-16C3p1-LIF-SP4-FC10"],
     "not all together"),
    (["--chip", "speck", "--dataset", "digits-events", "--arch", SPECK_OK, "--beta", "0.9"], "without leak"),
    (["--chip", "speck", "--dataset", "digits-events", "--arch", SPECK_OK, "--reset", "zero"], "subtracting the threshold"),
    (["--chip", "speck", "--dataset", "digits-events", "--arch", SPECK_OK, "--batch_norm"], "no batch norm"),
    (["--chip", "speck", "--dataset", "digits-events", "--model", "resnet"], "--chip does not apply to model resnet"),
    (["--chip", "speck", "--dataset", "asl-dvs", "--downsample", "0.5", "--arch", "2C3p1-LIF-SP4-FC24"],
     "fc1 is a convolution over its whole 22x30 input on Speck, whose kernels are square"),
    (["--chip", "speck", "--dataset", "digits-events", "--arch", "PSUM-8C3p1-FC10"], "PSUM sums the polarities"),
    (["--chip", "speck", "--dataset", "digits-events", "--arch", SPECK_OK, "--compile"], "--compile"),
    (["--chip", "speck", "--dataset", "digits-events", "--arch", SPECK_OK, "--amp"], "half precision"),
]
XYLO_REFUSALS = [
    (["--chip", "xylo", "--dataset", "digits-events", "--arch", "8C3-FC10"], "conv1 is a convolution"),
    (["--chip", "xylo", "--dataset", "digits", "--encoding", "rate", "--arch", "FC8-FC10"], "64 channels"),
    (["--chip", "xylo", "--dataset", "poker-dvs", "--downsample", "0.125", "--arch", "FC8-FC4"], "50 channels (2x5x5)"),
    (["--chip", "xylo", "--dataset", "poker-dvs", "--downsample", "0.12", "--arch", "SP2-FC600-FC600-FC4"],
     "1200 neurons"),
    (["--chip", "xylo", "--dataset", "digits", "--encoding", "rate", "--arch", "AP4-FC8-FC10"],
     "input is pooled by average pooling"),
    (["--chip", "xylo", "--dataset", "poker-dvs", "--downsample", "0.12", "--arch", "SP2-FC4"], "one layer (fc1)"),
    (["--chip", "xylo", "--dataset", "poker-dvs", "--downsample", "0.11", "--arch", "PSUM-FC8-FC8-FC4",
      "--time_steps", "2"], "answers from step 3 on, and --time_steps 2 ends before"),
    (["--chip", "xylo", "--dataset", "poker-dvs", "--downsample", "0.11", "--arch", "PSUM-FC8-FC4", "--beta", "0.9"],
     "1 - 2^-d"),
]


@pytest.mark.parametrize("flags,words", SPECK_REFUSALS + XYLO_REFUSALS,
                         ids=[w for _, w in SPECK_REFUSALS + XYLO_REFUSALS])
def test_a_network_over_a_chips_limit_is_refused_before_any_data_is_read(workdir, cli, flags, words):
    code, out, err = cli("train", "--data_dir", workdir / "nothing-here", *flags)
    assert code == 2, err
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not (workdir / "checkpoints").exists() or not any((workdir / "checkpoints").iterdir())
    assert not (workdir / "data").exists()  # nothing was simulated, framed or cached


def test_xylo_refuses_more_classes_than_its_output_neurons(workdir, cli):
    # 10 digits on 16 inputs: the limit named is the outputs'
    code, _, err = cli("train", "--chip", "xylo", "--dataset", "digits-events", "--downsample", "0.12",
                       "--arch", "SP2-FC32-FC10")
    assert code == 2 and "Xylo has 8" in err and "fc2 has 10 output neurons" in err, err


def test_every_chip_declares_its_target_and_summary():
    from snnclf.export.nir import TARGETS
    for name in CHIPS.names():
        info = CHIPS.info(name)
        assert info["summary"] and info["target"] in TARGETS.names()


@pytest.fixture(scope="module")
def envs(tmp_path_factory):
    """Where the tools that pin nir 1.0.4 get their environments (built once per test session
    unless SNNCLF_ENVS names a folder that has them)."""
    import os
    return os.environ.get("SNNCLF_ENVS") or str(tmp_path_factory.mktemp("envs"))


def _exported(cli, *args):
    import json
    code, out, err = cli("export", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_a_speck_run_runs_spike_for_spike_in_sinabs_and_on_specks_cores(workdir, cli, envs):
    from conftest import make_nmnist_folder
    make_nmnist_folder(workdir / "data", per_class=(6, 3))
    code, _, err = cli("train", "--chip", "speck", "--dataset", "nmnist", "--data_dir", workdir / "data",
                       "--arch", "4C3p1-LIF-SP4-FC16-FC10", "--time_steps", "6", "--epochs", "3", "--run", "speck",
                       "--lr", "0.01")
    assert code == 0, err
    record = _exported(cli, "--run", "speck", "--target", "speck", "--envs", envs, "--data_dir", workdir / "data")
    checks = {c["tool"]: c for c in record["checks"]}
    assert set(checks) == {"sinabs", "speck"}
    for c in checks.values():
        assert c["equal_outputs"] == 1.0 and c["equal_predictions"] == 1.0 and c["passed"], c
    assert "cores 0->" in checks["speck"]["convention"]["note"]  # placed on Speck's cores by Sinabs' mapper
    import h5py
    with h5py.File(record["file"]) as f:  # nir 1.0.4's schema: no v_reset; the chip's integers
        nodes = f["node/nodes"]
        assert not any("v_reset" in nodes[n] for n in nodes)
        w = nodes["conv1/weight"][()]
        assert (w == w.round()).all() and w.max() <= 127 and w.min() >= -128
        assert w.max() == 127 or w.min() == -128  # the largest weight took the whole 8 bits


def test_integrate_and_fire_networks_run_exactly_in_sinabs_and_rockpool(workdir, cli, envs):
    from conftest import make_nmnist_folder
    make_nmnist_folder(workdir / "data", per_class=(6, 3))
    code, _, err = cli("train", "--model", "snn-mlp", "--dataset", "nmnist", "--data_dir", workdir / "data",
                       "--beta", "1.0", "--reset", "subtract", "--time_steps", "6", "--epochs", "2", "--run", "mlp")
    assert code == 0, err
    for target in ("sinabs", "rockpool"):
        record = _exported(cli, "--run", "mlp", "--target", target, "--envs", envs, "--data_dir", workdir / "data",
                           "--out", workdir / f"{target}.nir")
        (check,) = record["checks"]
        assert check["tool"] == target and check["equal_outputs"] == 1.0 and check["equal_predictions"] == 1.0
    # a leaky network, or one that resets to zero, is refused before anything runs
    code, _, err = cli("train", "--model", "snn-mlp", "--dataset", "nmnist", "--data_dir", workdir / "data",
                       "--time_steps", "2", "--epochs", "1", "--run", "leaky")
    code, _, err = cli("export", "--run", "leaky", "--target", "sinabs", "--envs", envs, "--data_dir", workdir / "data")
    assert code == 2 and "leaky neurons (beta 0.9)" in err and "--beta 1.0 --reset subtract" in err, err


def test_a_xylo_run_runs_spike_for_spike_in_xylosim(workdir, cli, envs):
    import event_formats
    event_formats.make_dataset("poker-dvs", workdir / "data", samples_per_class=8)
    # 4x4 frames summed over 2x2 windows on the host: 8 input channels; three layers (two with Xylo's delay)
    code, _, err = cli("train", "--chip", "xylo", "--dataset", "poker-dvs", "--data_dir", workdir / "data",
                       "--downsample", "0.11", "--arch", "SP2-FC16-FC16-FC4", "--threshold", "0.5", "--epochs", "4",
                       "--lr", "0.01", "--run", "xylo")
    assert code == 0, err
    record = _exported(cli, "--run", "xylo", "--target", "xylo", "--envs", envs, "--data_dir", workdir / "data")
    (check,) = record["checks"]
    assert check["tool"] == "xylo" and check["equal_outputs"] == 1.0 and check["equal_predictions"] == 1.0, check
    assert record["format"] == "xylo" and record["file"].endswith(".xylo.npz")
    from snnclf.export.xylo import read
    spec, metadata = read(record["file"])
    assert spec["weights_in"].shape == (8, 32) and spec["weights_rec"].shape == (32, 32)
    assert spec["weights_out"].shape == (32, 4) and not spec["weights_out"][:16].any()  # from the second block only
    assert abs(spec["weights_in"]).max() <= 128 and spec["weights_rec"][:16, 16:].any()
    assert metadata["input_steps"] == [2]
    # a Xylo run goes to Xylo only, and a Speck run's target refuses it
    code, _, err = cli("export", "--run", "xylo", "--target", "speck", "--data_dir", workdir / "data")
    assert code == 2 and "export it with --target xylo" in err


def test_xylos_neuron_decays_by_bit_shifts_saturates_and_fires_several_spikes():
    from snnclf.models.quant import QuantLinear, XyloLIF
    layer = QuantLinear(1, 1)
    with torch.no_grad():
        layer.weight.fill_(1.0)  # scale 127
    cell = XyloLIF(threshold=100 / 127, spike_grad=lambda z: (z > 0).float(), dash_syn=1, dash_mem=4,
                   max_spikes=31).attach(layer)
    isyn, v = torch.zeros(1), torch.zeros(1)
    got = []
    for current in (64.0, 0.0, 0.0, -3.0, 0.0):
        spk, _, isyn, v = cell(torch.tensor([current]), isyn, v)
        got.append((float(spk), float(isyn), float(v)))
    # isyn = isyn + I - (isyn + I) >> 1; v = v - max(v >> 4, 1 toward 0) + isyn; fire at v >= 100
    assert got == [(0.0, 32.0, 32.0), (0.0, 16.0, 46.0), (0.0, 8.0, 52.0), (0.0, 3.0, 52.0), (0.0, 2.0, 51.0)]
    spk, _, isyn, v = cell(torch.tensor([40000.0]), torch.zeros(1), torch.zeros(1))
    # isyn saturates at 32767 before its decay (16384 left), then 31 spikes at most take 31 thresholds
    assert (float(spk), float(isyn), float(v)) == (31.0, 16384.0, 16384.0 - 31 * 100)


def test_the_chips_integer_threshold_stays_within_16_bits_and_above_zero():
    conv = QuantConv2d(1, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(0.01)  # scale 12,700: a threshold of 10 would be 127,000
    for threshold, expected in ((10.0, 32767.0), (1e-6, 1.0)):
        cell = ChipIF(threshold=threshold, spike_grad=lambda z: (z > 0).float()).attach(conv)
        assert float(cell.chip_threshold()[0]) == expected


def test_an_environment_folder_snnclf_did_not_make_is_left_alone(tmp_path, monkeypatch):
    from snnclf.errors import UsageError
    from snnclf.export import envs
    mine = tmp_path / "sinabs"  # e.g. a clone of Sinabs where --envs points
    (mine / ".git").mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    monkeypatch.setattr(envs, "installed", lambda tool: False)
    with pytest.raises(UsageError, match="is not an environment snnclf built"):
        envs.python_for("sinabs", tmp_path)
    assert (mine / "notes.txt").read_text() == "mine" and (mine / ".git").is_dir()


def test_a_target_is_checked_only_by_the_tools_that_read_its_file(workdir, cli):
    from conftest import make_nmnist_folder
    make_nmnist_folder(workdir / "data", per_class=(3, 2))
    code, _, err = cli("train", "--chip", "speck", "--dataset", "nmnist", "--data_dir", workdir / "data",
                       "--arch", "4C3p1-LIF-SP4-FC10", "--time_steps", "2", "--epochs", "1", "--run", "s")
    assert code == 0, err
    code, _, err = cli("export", "--run", "s", "--target", "speck", "--check", "numpy", "--data_dir", workdir / "data")
    assert code == 2 and "--target speck's file is read by sinabs, speck" in err, err


def test_the_shape_a_data_set_declares_is_the_shape_it_loads(workdir):
    """The chip check reads an image set's shape before any data is read: it must be what loads."""
    from conftest import idx_data_sets, make_mnist_like
    from snnclf.data import known_shape, load_dataset
    for name, folder in idx_data_sets():
        make_mnist_like(workdir / "data", folder=folder)
    for name in ["digits"] + [n for n, _ in idx_data_sets()]:
        data = load_dataset(name, workdir / "data")
        assert known_shape(name) == (tuple(data.in_shape), data.num_classes), name
