"""--preset recipes (flags given win, config.json records the result) and the --shift, --rotate and
--scale augmentations."""
import json

import pytest
import torch

from snnclf.data.augment import event_dropout, noise_events, random_affine, random_shift
from snnclf.presets import PRESETS, preset_flags
from snnclf.config import DEFAULTS

from conftest import make_nmnist_folder


def test_every_preset_names_only_real_train_flags():
    for name in PRESETS.names():
        flags = preset_flags(name)
        assert set(flags) <= set(DEFAULTS), name
        assert flags["scheduler"] == "cosine"
        if "chip" not in flags:  # a chip's preset has neither: its neurons' decay and its weights are the chip's
            assert flags["batch_norm"] and flags["learn_beta"]


def test_every_preset_says_how_it_was_chosen():
    """A preset measured here names the study that chose it on validation and what it reached;
    the others say they were not measured. snnclf train --help carries both."""
    from snnclf.presets import NOT_MEASURED, describe

    for name in ("digits", "mnist"):
        chosen = PRESETS.info(name)["chosen"]
        assert "benchmarks/presets.py" in chosen and "validation" in chosen and "test" in chosen, name
        assert f"[{chosen}]" in describe()
    assert PRESETS.info("fashion-mnist")["chosen"] == NOT_MEASURED


def test_preset_sets_the_recipe_and_given_flags_override_it(workdir, cli):
    code, _, err = cli("train", "--preset", "digits", "--epochs", "2", "--subset", "300",
                       "--time_steps", "2")
    assert code == 0, err
    config = json.loads((workdir / "logs/digits-csnn-T2-preset/config.json").read_text())
    assert config["preset"] == "digits"
    assert config["epochs"] == 2 and config["time_steps"] == 2  # given on the command line
    assert config["batch_norm"] is True and config["learn_beta"] is True  # from the preset
    assert config["optimizer"] == "adamw" and config["scheduler"] == "cosine" and config["shift"] == 1
    state = torch.load(workdir / "checkpoints/digits-csnn-T2-preset/last.pt", weights_only=True)["model"]
    assert any("running_mean" in key for key in state) and any(key.endswith("beta") for key in state)


def test_min_steps_sizes_a_run_to_its_training_split(workdir, cli):
    """A recipe's length in optimizer steps: the epochs rise on a small training split (and the
    schedule and config.json follow them), and a large one keeps its epochs."""
    from snnclf.config import RunConfig

    cfg = RunConfig(epochs=30, batch_size=16, min_steps=600)
    assert cfg.sized(36).epochs == 200 and cfg.sized(60_000).epochs == 30 and cfg.sized(36, 2).epochs == 300
    assert RunConfig(epochs=30).sized(36).epochs == 30  # no floor without --min_steps
    code, _, err = cli("train", "--epochs", "1", "--min_steps", "8", "--subset", "100", "--batch_size", "50",
                       "--time_steps", "2", "--run", "floor")
    assert code == 0, err
    config = json.loads((workdir / "logs/floor/config.json").read_text())
    assert config["min_steps"] == 8 and config["epochs"] == 4  # 100 images at 50 a batch: 2 steps an epoch
    assert len((workdir / "logs/floor/metrics.csv").read_text().splitlines()) == 1 + 4
    assert "4 epochs instead of 1: --min_steps 8" in err
    # the same command again with --resume goes on to the sized epochs (its own --epochs 1 is below them)
    code, _, err = cli("train", "--epochs", "1", "--min_steps", "8", "--subset", "100", "--batch_size", "50",
                       "--time_steps", "2", "--run", "floor", "--resume")
    assert code == 2 and "already finished its 4 epochs" in err  # finished at 4, not "its 1 epochs"
    code, _, err = cli("train", "--epochs", "6", "--min_steps", "8", "--subset", "100", "--batch_size", "50",
                       "--time_steps", "2", "--run", "floor", "--resume")
    assert code == 0, err  # a larger --epochs goes on (constant rate: no schedule laid over the epochs)
    assert len((workdir / "logs/floor/metrics.csv").read_text().splitlines()) == 1 + 6


def test_unknown_preset_is_one_line_exit_2(workdir, cli):
    code, _, err = cli("train", "--preset", "cifar")
    assert code == 2 and "--preset" in err and "digits" in err
    assert len(err.strip().splitlines()) == 1


def test_random_shift_moves_each_sample_whole_and_keeps_its_pixels():
    torch.manual_seed(0)
    x = torch.zeros(64, 3, 2, 9, 9)  # [B, T, C, H, W]: event frames
    x[:, :, :, 4, 4] = torch.arange(1, 65.0).view(64, 1, 1)  # one bright pixel per sample
    y = random_shift(x, 2)
    assert y.shape == x.shape
    positions = set()
    for b in range(64):
        where = (y[b] == b + 1).nonzero()
        assert len(where) == 3 * 2  # every frame and channel, still there once
        assert (where[:, 2:] == where[0, 2:]).all()  # all moved together
        r, c = where[0, 2:].tolist()
        assert abs(r - 4) <= 2 and abs(c - 4) <= 2
        positions.add((r, c))
    assert len(positions) > 10  # offsets differ between samples
    assert random_shift(x, 0) is x


def test_random_rotation_and_zoom_turn_each_sample_whole_about_its_centre():
    torch.manual_seed(0)
    x = torch.zeros(64, 2, 3, 15, 15)  # [B, T, C, H, W]
    x[..., 3:12, 7] = 1.0  # a vertical bar through the centre
    y = random_affine(x, degrees=90)
    assert y.shape == x.shape
    rows, cols = torch.arange(15.0).view(15, 1), torch.arange(15.0).view(1, 15)
    mass = y.sum((-2, -1))
    assert torch.allclose(mass, mass[:, :1, :1].expand_as(mass))  # every frame and channel moved together
    assert ((y * rows).sum((-2, -1)) / mass - 7).abs().max() < 0.05  # turned about the centre
    assert ((y * cols).sum((-2, -1)) / mass - 7).abs().max() < 0.05
    spread_of_columns = ((y[:, 0, 0] * (cols - 7) ** 2).sum((-2, -1)) / mass[:, 0, 0]).sqrt()
    assert spread_of_columns.min() < 0.5 and spread_of_columns.max() > 2.0  # angles differ between samples
    assert (mass[:, 0, 0] - 9).abs().max() < 1.0  # turned, not lost (bilinear: within a pixel)
    zoomed = random_affine(x, scale=0.3)[:, 0, 0]
    lengths = (zoomed > 0.5).sum((-2, -1))
    assert lengths.min() <= 8 and lengths.max() >= 10  # zoomed in and out: the bar is 9 pixels long
    wide = torch.zeros(8, 1, 10, 30)
    wide[..., 5, 10:20] = 1.0  # rotation keeps lengths on a non-square input
    turned = random_affine(wide, degrees=90)
    assert turned.sum((-2, -1)).sub(10).abs().max() < 1.0
    assert random_affine(x) is x


def test_rotate_and_scale_train_and_are_recorded(workdir, cli):
    code, _, err = cli("train", "--epochs", "1", "--subset", "200", "--time_steps", "2", "--rotate", "15",
                       "--scale", "0.1", "--run", "turned")
    assert code == 0, err
    config = json.loads((workdir / "logs/turned/config.json").read_text())
    assert config["rotate"] == 15 and config["scale"] == 0.1


@pytest.mark.parametrize("flag, value", [("--rotate", "-1"), ("--rotate", "181"), ("--scale", "1"), ("--scale", "x")])
def test_bad_rotate_or_scale_is_refused(workdir, cli, flag, value):
    code, _, err = cli("train", flag, value)
    assert code == 2 and flag in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("shift", ["-1", "x"])
def test_bad_shift_is_refused(workdir, cli, shift):
    code, _, err = cli("train", "--shift", shift)
    assert code == 2 and "--shift" in err


def test_best_epoch_breaks_accuracy_ties_by_the_lower_validation_loss():
    from snnclf.runs import selection_key

    epochs = [(0.98, 0.30), (1.0, 0.20), (1.0, 0.10), (1.0, 0.15), (0.99, 0.01)]
    best = max(range(len(epochs)), key=lambda i: selection_key(*epochs[i]))
    assert best == 2
    assert selection_key(1.0, 0.2) > selection_key(0.99, 0.0)


def test_nmnist_preset_trains_on_event_frames_with_shifts(workdir, cli):
    make_nmnist_folder(workdir / "nm", per_class=(3, 1))
    code, _, err = cli("train", "--preset", "nmnist", "--data_dir", "nm", "--epochs", "1",
                       "--time_steps", "3", "--batch_size", "10")
    assert code == 0, err
    config = json.loads((workdir / "logs/nmnist-cnn-T3-preset/config.json").read_text())
    assert config["encoding"] == "events" and config["shift"] == 2 and config["batch_norm"] is True
    last = torch.load(workdir / "checkpoints/nmnist-cnn-T3-preset/last.pt", weights_only=True)
    assert last["epoch"] == 1 and last["config"]["shift"] == 2
    means = [v for k, v in last["model"].items() if k.endswith("running_mean")]
    assert means and all(m.abs().sum() > 0 for m in means)  # every batch norm saw the event frames


def test_event_dropout_and_background_events_change_the_counts_as_events_would():
    torch.manual_seed(0)
    frames = torch.randint(0, 6, (64, 5, 2, 34, 34)).float()
    kept = event_dropout(frames, 0.25)
    assert (kept <= frames).all() and kept.equal(kept.round())  # whole events, never more
    assert abs(kept.sum() / frames.sum() - 0.75) < 0.01
    added = noise_events(frames, 300.0) - frames
    assert (added >= 0).all() and abs(added.sum(dim=(1, 2, 3, 4)).mean() - 300) < 10
    assert (added.sum(dim=(0, 2, 3, 4)) > 0).all()  # at every time step


@pytest.mark.slow
def test_event_augmentations_train_event_runs_and_are_refused_for_images(workdir, cli):
    code, _, err = cli("train", "--dataset", "digits-events", "--model", "cnn", "--time_steps", "4",
                       "--epochs", "2", "--subset", "300", "--event_dropout", "0.2", "--noise_events", "100")
    assert code == 0, err
    config = json.loads((workdir / "logs/digits-events-cnn-T4/config.json").read_text())
    assert config["event_dropout"] == 0.2 and config["noise_events"] == 100.0
    code, _, err = cli("train", "--noise_events", "100")
    assert code == 2 and "--noise_events applies to event data sets only, not digits" in err
    code, _, err = cli("train", "--dataset", "digits-events", "--event_dropout", "1")
    assert code == 2 and "--event_dropout" in err


def test_the_runs_augmentation_applies_every_option_it_is_given():
    from snnclf.builders import build_augment
    from snnclf.config import RunConfig

    assert build_augment(RunConfig.from_flags({"dataset": "digits-events"}), (2, 34, 34)) is None
    augment = build_augment(RunConfig.from_flags({"dataset": "digits-events", "event_dropout": 0.5,
                                                  "noise_events": 50.0}), (2, 34, 34))
    frames = torch.full((32, 4, 2, 34, 34), 2.0)
    out = augment(frames)
    assert abs(out.sum() / frames.sum() - (0.5 + 50 / (2.0 * frames[0].numel()))) < 0.01
