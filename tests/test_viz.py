"""Pictures: hooks record every spiking layer, run reports, compare, visualize-activations."""
import json

import pytest
import torch
from PIL import Image

from snnclf.models import get_model, is_spiking, list_models
from snnclf.models.neurons import SpikingLayer
from snnclf.viz.activations import output_race_gif, record

from conftest import QUICK


def valid_image(path, kind="PNG", min_bytes=2000, min_side=150):
    with Image.open(path) as im:
        assert im.format == kind and im.size[0] >= min_side and im.size[1] >= min_side, im.size
        frames = getattr(im, "n_frames", 1)
    assert min_bytes < path.stat().st_size < 5_000_000
    return frames


@pytest.mark.parametrize("name", [n for n in list_models() if is_spiking(n)])
def test_hooks_record_every_spiking_layer(name):
    options = {"spec": "8C3p1-MP2-FC10"} if name == "arch" else {}
    model = get_model(name, (1, 8, 8), 10, **options).eval()
    layers = [n for n, m in model.named_modules() if isinstance(m, SpikingLayer)]
    seen = record(model, torch.rand(5, 3, 1, 8, 8))
    assert list(seen) == layers and len(layers) >= 2
    for spk, mem in seen.values():
        assert spk.shape == mem.shape and spk.shape[:2] == (5, 3)
    assert seen[layers[-1]][0].shape == (5, 3, 10)
    assert all(not m._forward_hooks for m in model.modules())  # hooks removed


def test_output_race_gif_has_one_frame_per_step(tmp_path):
    spikes = (torch.rand(6, 10) > 0.5).float()
    path = output_race_gif(spikes, [str(i) for i in range(10)], tmp_path / "race.gif", label=3)
    assert valid_image(path, "GIF") == 6


def test_visualize_activations_draws_every_spiking_layer_of_a_run(workdir, cli):
    """A tiny conv run, one sample drawn (the fast share of the test below)."""
    spec = "4C3-MP2-FC10"
    assert cli("train", "--arch", spec, "--subset", "100", "--epochs", "1", "--time_steps", "3", "--run", "c")[0] == 0
    code, out, err = cli("visualize-activations", "--run", "c", "--num_samples", "1")
    assert code == 0, err
    layers = [n for n, m in get_model("arch", (1, 8, 8), 10, spec=spec).named_modules() if isinstance(m, SpikingLayer)]
    assert len(layers) == 2
    folder = workdir / "activations/c"
    pictures = [f"{kind}_{layer}.png" for layer in layers for kind in ("raster", "membrane")]
    pictures += ["firing_rates.png", "mean_rates.png", "conv1_filters.png"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(pictures + ["output_race_0.gif"])
    assert f"wrote {len(pictures) + 1} files" in out
    for name in pictures:
        valid_image(folder / name, min_side=100)  # the 4 filters are one row
    assert valid_image(folder / "output_race_0.gif", "GIF") == 3  # one frame per time step


@pytest.mark.slow
def test_reports_compare_and_activations(workdir, cli):
    assert cli("train", *QUICK, "--time_steps", "4", "--run", "a")[0] == 0
    assert cli("train", *QUICK, "--model", "snn-mlp", "--run", "b")[0] == 0
    valid_image(workdir / "logs/a/curves.png")
    code, out, err = cli("eval", "--run", "a", "--test_only")
    assert code == 0, err
    valid_image(workdir / "logs/a/confusion_matrix.png")
    valid_image(workdir / "logs/a/per_class_accuracy.png")

    code, out, err = cli("compare", "a", "b")
    assert code == 0, err
    assert "| a | csnn | 4 | direct | 155,530 |" in out and "| b | snn-mlp | 2 |" in out
    assert "not evaluated" in out  # b has no eval.json yet
    rows = json.loads((workdir / "logs/compare/compare.json").read_text())
    assert [r["run"] for r in rows] == ["a", "b"]
    assert rows[0]["test_accuracy"] == json.loads((workdir / "logs/a/eval.json").read_text())["test_accuracy"]
    valid_image(workdir / "logs/compare/compare_accuracy.png")
    valid_image(workdir / "logs/compare/compare_curves.png")
    code, _, err = cli("compare", "a", "missing")
    assert code == 2 and "run missing has no config.json" in err

    code, out, err = cli("visualize-activations", "--tsne", "--num_samples", "2")  # the latest run: b
    assert code == 0, err
    folder = workdir / "activations/b"
    for layer in ("fc1_lif", "fc2_lif", "fc3_lif"):
        valid_image(folder / f"raster_{layer}.png")
        valid_image(folder / f"membrane_{layer}.png")
    for name in ("firing_rates.png", "mean_rates.png", "tsne.png"):
        valid_image(folder / name)
    assert valid_image(folder / "output_race_1.gif", "GIF") == 2  # one frame per time step
    assert not (folder / "output_race_2.gif").exists()
    code, _, err = cli("visualize-activations", "--run", "a", "--out", "pics")
    assert code == 0, err
    valid_image(workdir / "pics/conv1_filters.png")
    assert cli("train", *QUICK, "--model", "ann-mlp", "--run", "c")[0] == 0
    code, _, err = cli("visualize-activations", "--run", "c")
    assert code == 2 and "no spiking layers" in err


@pytest.mark.slow
def test_tsne_has_one_point_per_sample(workdir, cli, monkeypatch):
    import sklearn.manifold

    sizes = []
    real = sklearn.manifold.TSNE.fit_transform

    def spy(self, X, *a, **k):
        out = real(self, X, *a, **k)
        sizes.append((len(X), len(out)))
        return out
    monkeypatch.setattr(sklearn.manifold.TSNE, "fit_transform", spy)
    assert cli("train", *QUICK, "--model", "snn-mlp")[0] == 0
    assert cli("visualize-activations", "--tsne")[0] == 0
    assert sizes == [(360, 360)]  # every test sample once (digits' test split has 360)


def test_visualize_data_static_and_events(workdir, cli):
    from conftest import make_mnist_like, make_nmnist_folder

    make_mnist_like(workdir / "data", "FashionMNIST", n_train=40, n_test=20)
    code, out, err = cli("visualize-data", "--dataset", "fashion-mnist", "--num_samples", "9")
    assert code == 0, err
    folder = workdir / "activations/data/fashion-mnist"
    for name in ("samples.png", "encoding_rate.png", "encoding_latency.png"):
        valid_image(folder / name)
    make_nmnist_folder(workdir / "data", per_class=(1, 1))
    code, out, err = cli("visualize-data", "--dataset", "nmnist", "--time_steps", "7", "--out", "ev")
    assert code == 0, err
    assert valid_image(workdir / "ev/frames_0.gif", "GIF") == 7
    for name in ("samples.png", "on_off.png", "event_rate.png"):
        valid_image(workdir / "ev" / name)
    code, _, err = cli("visualize-data", "--dataset", "mnist", "--data_dir", "nowhere")
    assert code == 2 and "files are not in nowhere/MNIST/raw" in err
