"""Event data: N-MNIST .bin files through tonic, frames and their cache, the simulator."""
import json
import shutil

import numpy as np
import pytest
import tonic
import torch
from PIL import Image

from snnclf.data import load_dataset
from snnclf.data.event_sets import NMNIST
from snnclf.data.events import encode_bin, file_reader, frame_key, read_events, scan
from snnclf.data.simulate import DURATION_MS, saccade_offsets, simulate, to_28
from snnclf.errors import UsageError
from snnclf.runs import read_metrics

from conftest import make_nmnist_folder

DTYPE = tonic.datasets.NMNIST.dtype


def read(path):
    return tonic.io.read_mnist_file(str(path), dtype=DTYPE)


def test_tonic_reads_back_exactly_the_events_written(tmp_path):
    x, y, p, t = [3, 33, 0, 17], [5, 0, 33, 9], [1, 0, 1, 0], [0, 1000, 8_388_607, 42]
    path = tmp_path / "a.bin"
    path.write_bytes(encode_bin(x, y, p, t))
    events = read(path)
    assert events["x"].tolist() == x and events["y"].tolist() == y
    assert events["p"].tolist() == p and events["t"].tolist() == t


def test_timestamp_overflow_marker(tmp_path):
    """A record with y=240 is N-MNIST's overflow marker: not an event, and every later timestamp
    grows by 2**13 (tonic's reading of the format)."""
    before = encode_bin([1, 2], [3, 4], [0, 1], [100, 200])
    marker = encode_bin([0], [240], [0], [0])
    after = encode_bin([5], [6], [1], [300])
    (tmp_path / "o.bin").write_bytes(before + marker + after)
    events = read(tmp_path / "o.bin")
    assert events["x"].tolist() == [1, 2, 5] and events["y"].tolist() == [3, 4, 6]
    assert events["t"].tolist() == [100, 200, 300 + 2 ** 13]


def test_nmnist_folder_of_any_size_gives_frames(tmp_path):
    written = make_nmnist_folder(tmp_path / "data")
    data = load_dataset("nmnist", str(tmp_path / "data"), time_steps=5, cache_dir=str(tmp_path / "cache"))
    assert data.events and data.in_shape == (2, 34, 34) and data.num_classes == 10
    assert len(data.train) == 40 and len(data.test) == 20
    frames, labels = data.train[[0, 5, 39]]
    assert frames.shape == (3, 5, 2, 34, 34) and frames.dtype == torch.float32
    # tonic's order: Train/0/00000.bin first; every event lands in exactly one frame, at (p, y, x)
    path = tmp_path / "data/NMNIST/Train/0/00000.bin"
    x, y, p, t = written[path]
    assert labels[0] == 0 and frames[0].sum() == len(t)
    expected = np.zeros((2, 34, 34))
    np.add.at(expected, (p, y, x), 1)
    assert torch.equal(frames[0].sum(0), torch.from_numpy(expected).float())
    assert torch.bincount(data.train_y).tolist() == [4] * 10


def test_frame_cache_is_keyed_by_every_parameter(tmp_path):
    make_nmnist_folder(tmp_path / "data", per_class=(1, 1))
    from dataclasses import replace

    from snnclf.data.events import Framing
    from snnclf.data.simulate import NMNIST_SIM

    found, classes = scan(NMNIST, tmp_path / "data")
    files = found["train"]
    base = Framing(time_steps=5)
    keys = {frame_key(NMNIST, "train", files, classes, base)[1]}
    for change in ({"time_steps": 6}, {"denoise_us": 5000.0}, {"downsample": 0.5},
                   {"first_saccade_only": True}, {"frame_ms": 10.0}):
        keys.add(frame_key(NMNIST, "train", files, classes, replace(base, **change))[1])
    keys.add(frame_key(NMNIST, "test", files, classes, base)[1])
    keys.add(frame_key(NMNIST_SIM, "train", files, classes, base)[1])
    keys.add(frame_key(NMNIST, "train", files, classes[1:], base)[1])  # labels numbered by another class list
    assert len(keys) == 9
    # an entry's default factor keys the cache as that factor given: the same frames, one cache
    assert frame_key(replace(NMNIST, downsample=0.5), "train", files, classes, base)[1] == \
        frame_key(NMNIST, "train", files, classes, replace(base, downsample=0.5))[1]
    assert frame_key(replace(NMNIST, sensor=(40, 40, 2)), "train", files, classes, base)[1] not in keys
    before = frame_key(NMNIST, "train", files, classes, base)[1]
    files[0].path.write_bytes(files[0].path.read_bytes()[:-5])  # a file replaced
    assert frame_key(NMNIST, "train", files, classes, base)[1] != before
    # the layout read is part of the key: the same files read as another release are other frames
    assert frame_key(replace(NMNIST, layout_name="original"), "train", files, classes, base)[1] != \
        frame_key(NMNIST, "train", files, classes, base)[1]


def test_a_class_without_test_recordings_keeps_every_label_in_place(tmp_path):
    """Classes found as folders are those of every split, read or not: the test split framed
    alone numbers its labels as the whole data set does (a class with training recordings only
    does not shift the ones after it), and frames cached under one class list never serve another."""
    make_nmnist_folder(tmp_path, folder="ev", per_class=(2, 2), classes=range(3))
    shutil.rmtree(tmp_path / "ev/Test/1")
    options = {"time_steps": 3, "cache_dir": str(tmp_path / "cache")}
    alone = load_dataset("event-folder", str(tmp_path / "ev"), test_only=True, **options)
    whole = load_dataset("event-folder", str(tmp_path / "ev"), **options)
    assert alone.class_names == whole.class_names == ["0", "1", "2"]
    assert alone.test_y.tolist() == whole.test_y.tolist() == [0, 0, 2, 2]
    shutil.rmtree(tmp_path / "ev/Train/1")  # the class gone: the test labels are numbered anew
    assert load_dataset("event-folder", str(tmp_path / "ev"), **options).test_y.tolist() == [0, 0, 1, 1]


def test_eval_says_n_a_for_a_class_without_test_recordings(workdir, cli):
    """A class the test split lacks has no accuracy: eval prints n/a and writes null, not 0.00%."""
    make_nmnist_folder(workdir, folder="ev", per_class=(3, 2), classes=range(3))
    shutil.rmtree(workdir / "ev/Test/1")
    code, _, err = cli("train", "--dataset", "event-folder", "--data_dir", "ev", "--model", "cnn", "--epochs", "1",
                       "--time_steps", "3", "--batch_size", "4", "--run", "na")
    assert code == 0, err
    code, out, err = cli("eval", "--run", "na", "--test_only")
    assert code == 0, err
    assert "n/a (no test samples)" in [line.split(maxsplit=1)[1] for line in out.splitlines()
                                       if line.startswith("  1 ")][0]
    result = json.loads((workdir / "logs/na/eval.json").read_text())
    assert result["per_class_accuracy"]["1"] is None and result["per_class_accuracy"]["0"] is not None
    with Image.open(workdir / "logs/na/per_class_accuracy.png") as picture:
        assert picture.size[0] > 100


def test_a_subset_frames_only_the_recordings_it_uses(tmp_path):
    """--subset on an event set: only the training and validation recordings the run uses are
    framed, and they are the very ones (the same frames, labels and order) the subset of the whole
    split would give."""
    from snnclf.data import make_splits

    make_nmnist_folder(tmp_path / "data", per_class=(8, 2))  # 80 training recordings
    options = {"time_steps": 3, "cache_dir": str(tmp_path / "cache")}
    whole = load_dataset("nmnist", str(tmp_path / "data"), **options)
    part = load_dataset("nmnist", str(tmp_path / "data"), subset=20, val_fraction=0.2, **options)
    expected, got = make_splits(whole, 0.2, 20), make_splits(part, 0.2, 20)
    assert len(part.train) == len(got["train"]) + len(got["val"]) == 20 + 5 < len(whole.train) == 80
    for name in ("train", "val"):
        x0, y0 = expected[name][list(range(len(expected[name])))]
        x1, y1 = got[name][list(range(len(got[name])))]
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
    framed = sorted(json.loads(f.read_text())["samples"] for f in (tmp_path / "cache/frames").glob("*train*/key.json"))
    assert framed == [25, 80]  # the subset's cache holds its 25 recordings alone


def test_cache_is_reused_and_rebuilt_only_when_frames_change(tmp_path):
    make_nmnist_folder(tmp_path / "data", per_class=(1, 1))
    opts = dict(cache_dir=str(tmp_path / "cache"))
    load_dataset("nmnist", str(tmp_path / "data"), time_steps=4, **opts)
    folders = sorted((tmp_path / "cache/frames").iterdir())
    stamp = {f: (f / "frames.npy").stat().st_mtime_ns for f in folders}
    again = load_dataset("nmnist", str(tmp_path / "data"), time_steps=4, **opts)
    assert sorted((tmp_path / "cache/frames").iterdir()) == folders
    assert all((f / "frames.npy").stat().st_mtime_ns == m for f, m in stamp.items())
    small = load_dataset("nmnist", str(tmp_path / "data"), time_steps=4, downsample=0.5,
                         denoise_us=10_000.0, first_saccade_only=True, **opts)
    assert small.in_shape == (2, 17, 17) and small.train[[0]][0].shape == (1, 4, 2, 17, 17)
    assert small.train[[0]][0].sum() < again.train[[0]][0].sum()  # a third of the time, denoised
    assert len(list((tmp_path / "cache/frames").iterdir())) == 4
    key = json.loads((folders[0] / "key.json").read_text())
    assert key["time_steps"] == 4 and key["samples"] in (10,)


@pytest.mark.parametrize("factor, side", [(0.25, 9), (0.7, 24), (0.1, 4)])
def test_any_downsample_factor_fits_the_frames(tmp_path, factor, side):
    written = make_nmnist_folder(tmp_path / "data", per_class=(1, 1))
    data = load_dataset("nmnist", str(tmp_path / "data"), time_steps=3, downsample=factor,
                        cache_dir=str(tmp_path / "cache"))
    frames, _ = data.train[list(range(10))]
    assert data.in_shape == (2, side, side) and frames.shape == (10, 3, 2, side, side)
    train_events = sum(len(t) for path, (_, _, _, t) in written.items() if path.parts[-3] == "Train")
    assert frames.sum() == train_events  # every event of the 10 training files lands in one frame


def test_too_small_downsample_is_refused(tmp_path):
    make_nmnist_folder(tmp_path / "data", per_class=(1, 1))
    with pytest.raises(UsageError, match="at least 4x4"):
        load_dataset("nmnist", str(tmp_path / "data"), time_steps=3, downsample=0.02,
                     cache_dir=str(tmp_path / "cache"))


def _bad(tmp_path, match):
    with pytest.raises(UsageError, match=match) as err:
        load_dataset("nmnist", str(tmp_path / "data"), time_steps=4, cache_dir=str(tmp_path / "cache"))
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "cache").glob("frames/.*"))  # no half-built cache is left


def test_truncated_bin_file_is_named(tmp_path):
    make_nmnist_folder(tmp_path / "data", per_class=(1, 1))
    bad = tmp_path / "data/NMNIST/Train/3/00000.bin"
    bad.write_bytes(bad.read_bytes()[:-2])
    _bad(tmp_path, r"Train/3/00000.bin is truncated")


def test_corrupt_bin_file_is_named(tmp_path):
    make_nmnist_folder(tmp_path / "data", per_class=(1, 1))
    bad = tmp_path / "data/NMNIST/Test/7/00000.bin"
    bad.write_bytes(encode_bin([200, 1], [100, 1], [0, 1], [0, 10]))  # outside the 34x34 sensor
    _bad(tmp_path, r"Test/7/00000.bin has events outside the 34x34 sensor")


def test_empty_folder_only_one_split_and_bad_labels(tmp_path):
    (tmp_path / "data/NMNIST/Train").mkdir(parents=True)
    (tmp_path / "data/NMNIST/Test").mkdir(parents=True)
    _bad(tmp_path, "no N-MNIST recordings in")
    make_nmnist_folder(tmp_path / "data", per_class=(1, 0))
    _bad(tmp_path, r"no N-MNIST recordings of the test split in .*NMNIST \(none match Test/\*/\*.bin; the train split is there\): download "
                   r"them from https://\S+ and put them there as NMNIST/Train/\*/\*.bin, NMNIST/Test/\*/\*.bin")
    make_nmnist_folder(tmp_path / "data", per_class=(1, 1))
    (tmp_path / "data/NMNIST/Train/12").mkdir()
    (tmp_path / "data/NMNIST/Train/12/x.bin").write_bytes(encode_bin([1], [1], [0], [5]))
    _bad(tmp_path, r"Train/12/x.bin is of class '12', which N-MNIST does not have \(0, 1, .*, 9\): move or remove it")


def test_missing_nmnist_says_where_the_files_go(tmp_path):
    with pytest.raises(UsageError, match=r"no N-MNIST recordings in .*NMNIST and downloading them failed .* download them from https://"):
        load_dataset("nmnist", str(tmp_path / "nothing"), time_steps=4, cache_dir=str(tmp_path / "c"))
    assert not (tmp_path / "nothing").exists()


def test_event_options_are_refused_for_static_data():
    with pytest.raises(UsageError, match="--denoise_us applies to event data sets only"):
        load_dataset("digits", time_steps=4, denoise_us=1000.0)


def _images(n=6):
    from snnclf.data.datasets import digits

    return to_28(digits().train.tensors[0][:n])


def test_simulator_is_deterministic_inside_the_sensor_with_both_polarities():
    images = _images()
    a = simulate(images, np.random.default_rng(3))
    b = simulate(images, np.random.default_rng(3))
    for (xa, ya, pa, ta), (xb, yb, pb, tb) in zip(a, b):
        assert all(np.array_equal(u, v) for u, v in ((xa, xb), (ya, yb), (pa, pb), (ta, tb)))
        assert 0 <= xa.min() and xa.max() < 34 and 0 <= ya.min() and ya.max() < 34
        assert 0.3 < pa.mean() < 0.7  # ON and OFF events both present
        assert np.all(np.diff(ta) >= 0) and 250_000 < ta.max() < 330_000  # about 300 ms, sorted
        assert 1000 < len(ta) < 10_000


def test_three_saccades_show_in_the_event_rate():
    x, y, p, t = simulate(_images(1), np.random.default_rng(0))[0]
    rate, _ = np.histogram(t, bins=31, range=(0, 310_000))  # 10 ms bins
    for busy, quiet in ((slice(4, 6), slice(9, 11)), (slice(14, 16), slice(20, 22))):
        assert rate[busy].min() > 4 * rate[quiet].max(), rate  # each saccade ends in a pause
    assert rate[25:27].min() > 4 * rate[20:22].max(), rate
    offsets = saccade_offsets(np.array([0.0, 88.0, 218.0, DURATION_MS]))
    assert np.allclose(offsets, [[0, 0], [2.2, 5.5], [5.9, 0], [0, 0]], atol=0.01)  # a closed triangle


def test_simulated_edges_move_the_way_the_recordings_show():
    """The recordings' ON events lie above their OFF events in the first saccade, then below and
    to the left, then to the right (x right, y down). With the digit moving down, up and right,
    then left (where each saccade's events are centred), these are the events behind each moving
    bright edge: N-MNIST's ON events are those of pixels getting darker (simulate.ON_WHEN_DARKER)."""
    def on_minus_off(start_ms, end_ms):
        found = []
        for x, y, p, t in simulate(_images(20), np.random.default_rng(0)):
            sel = (t >= start_ms * 1000) & (t < end_ms * 1000)
            on, off = sel & (p == 1), sel & (p == 0)
            found.append((x[on].mean() - x[off].mean(), y[on].mean() - y[off].mean()))
        return np.mean(found, 0)

    dx, dy = on_minus_off(30, 70)
    assert dy < -2 and abs(dx) < abs(dy)
    dx, dy = on_minus_off(130, 170)
    assert dy > 2 and dx < -1
    dx, dy = on_minus_off(240, 290)
    assert dx > 2 and abs(dy) < 1


def test_train_and_eval_on_an_nmnist_folder(workdir, cli):
    make_nmnist_folder(workdir / "nm", per_class=(8, 3))
    code, _, err = cli("train", "--dataset", "nmnist", "--data_dir", "nm", "--model", "cnn",
                       "--time_steps", "4", "--epochs", "2", "--batch_size", "16")
    assert code == 0, err
    code, out, err = cli("eval", "--test_only", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["dataset"] == "nmnist" and result["num_test"] == 30 and result["time_steps"] == 4
    assert result["test_accuracy"] > 0.5  # each class is a square of its own: learnt (chance is 0.1)

    # --test_only reads the test recordings alone: without the training ones (and their frames),
    # the same numbers; the whole evaluation says which files are missing
    shutil.rmtree(workdir / "nm/NMNIST/Train")
    for frames in (workdir / "data/cache/frames").glob("nmnist-train-*"):
        shutil.rmtree(frames)
    code, out, err = cli("eval", "--test_only", "--json", "--data_dir", "nm")
    assert code == 0, err
    assert json.loads(out)["test_accuracy"] == result["test_accuracy"]
    assert not list((workdir / "data/cache/frames").glob("nmnist-train-*"))
    code, _, err = cli("eval", "--data_dir", "nm")
    assert code == 2 and "Train" in err and len(err.strip().splitlines()) == 1, err

    code, _, err = cli("train", "--dataset", "nmnist", "--data_dir", "nm", "--encoding", "rate")
    assert code == 2 and "--encoding rate does not apply to event data set nmnist" in err


@pytest.mark.slow
def test_digits_events_trains_through_the_real_loader(workdir, cli):
    code, _, err = cli("train", "--dataset", "digits-events", "--model", "snn-mlp", "--time_steps", "4",
                       "--epochs", "2", "--subset", "300")
    assert code == 0, err
    rows = read_metrics(workdir / "logs/digits-events-snn-mlp-T4/metrics.csv")
    assert rows[-1]["train_accuracy"] > 0.3 and rows[-1]["data_seconds"] < rows[-1]["seconds"]
    bins = list((workdir / "data/cache/DigitsEvents/Train").glob("*/*.bin"))
    assert len(bins) == 1437
    events = read(bins[0])  # the simulated recordings are real N-MNIST files that tonic reads
    assert len(events) > 100 and set(events["p"].tolist()) == {0, 1}
    assert events["x"].max() < 34 and events["y"].max() < 34 and (events["t"][1:] >= events["t"][:-1]).all()


def test_each_saccade_moves_on_its_own():
    """--saccade_shift: the frames of each saccade (at T=10: 0-2, 3-6, 7-9; a frame goes with the
    saccade its middle falls in) move together, by an offset of their own."""
    from snnclf.data.augment import saccade_shift
    from snnclf.data.events import saccade_frames

    parts = saccade_frames(NMNIST, 10)
    assert parts == [slice(0, 3), slice(3, 7), slice(7, 10)]
    assert saccade_frames(NMNIST, 10, first_saccade_only=True) == [slice(0, 10)]
    torch.manual_seed(0)
    x = torch.zeros(64, 10, 2, 34, 34)
    x[:, :, :, 17, 17] = 1
    y = saccade_shift(x, 2, parts)
    assert torch.equal(y.sum((2, 3, 4)), x.sum((2, 3, 4)))  # nothing lost: every event moved inside
    where = torch.stack([torch.nonzero(y[:, t, 0])[:, 1:] for t in range(10)], 1)  # [64, 10, (row, col)]
    for part in parts:
        assert (where[:, part] == where[:, part.start, None]).all()  # a saccade moves as one
    moved = [(where[:, part.start] - 17).abs().max() for part in parts]
    assert max(moved) == 2 and not torch.equal(where[:, 0], where[:, 3])  # by up to 2 px, each its own


def test_saccade_shift_is_refused_without_saccades(workdir, cli):
    code, _, err = cli("train", "--dataset", "dvs-gesture", "--saccade_shift", "1")
    assert code == 2 and "dvs-gesture does not record saccades: --saccade_shift applies to N-MNIST" in err


# --- recordings a hostile or unlucky user may have ----------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e300])
def test_timestamps_that_are_not_whole_numbers_are_refused_in_one_line(workdir, cli, bad):
    """A recording whose times are NaN, infinite or beyond any integer is corrupt: training names
    the file (no NumPy warning, no frames made of it), and predict says so for that file alone."""
    import event_formats

    written = event_formats.make_dataset("poker-dvs", workdir / "data")
    path = written["train"][0]
    events = np.load(path).astype(float)
    events[len(events) // 2, 0] = bad
    np.save(path, events)
    code, _, err = cli("train", "--dataset", "poker-dvs", "--epochs", "1", "--time_steps", "3", "--run", "r")
    assert code == 2 and "RuntimeWarning" not in err and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert str(path.relative_to(workdir)) in line and "NaN, infinite or too large" in line and "replace the file" in line
    assert not list((workdir / "data/cache/frames").glob(".*"))  # no half-built cache


def test_predict_refuses_an_empty_recording_and_classifies_the_rest(workdir, cli):
    import event_formats

    written = event_formats.make_dataset("poker-dvs", workdir / "data")
    code, _, err = cli("train", "--dataset", "poker-dvs", "--epochs", "1", "--time_steps", "3", "--run", "r")
    assert code == 0, err
    np.save(workdir / "empty.npy", np.zeros((0, 4), np.uint64))  # a file of no events (not of no bytes)
    code, out, err = cli("predict", "--run", "r", "empty.npy", str(written["test"][0]))
    assert "snnclf predict: error: empty.npy: it holds no events: an empty recording" in err.splitlines()
    assert out.strip().splitlines()[-1].startswith(f"{written['test'][0]}: ") and "RuntimeWarning" not in err


@pytest.mark.parametrize("link", ["dangling", "loop"])
def test_a_broken_link_among_the_recordings_is_named_in_one_line(workdir, cli, link):
    make_nmnist_folder(workdir / "data")
    if link == "dangling":
        bad = workdir / "data/NMNIST/Train/3/gone.bin"
        bad.symlink_to(workdir / "nowhere.bin")
    else:
        bad = workdir / "data/NMNIST/Train/3/self.bin"
        bad.symlink_to(bad)
    code, _, err = cli("train", "--dataset", "nmnist", "--epochs", "1", "--time_steps", "3", "--run", "r")
    line = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err and str(bad.relative_to(workdir)) in line and "broken link" in line


@pytest.mark.slow
def test_a_full_disk_while_framing_is_one_line_and_leaves_no_partial_cache(tmp_path):
    """The frame cache is written as a stream: a disk that fills (here a file-size limit) fails a
    write, said in one line with exit 2, where a memory map used to die of SIGBUS; nothing half-made
    is left, and the same command works once there is room."""
    import subprocess
    import sys

    from test_nothing_lost import FULL_DISK  # a command run under a file-size limit

    make_nmnist_folder(tmp_path / "data", per_class=(6, 2))
    command = ["train", "--dataset", "nmnist", "--epochs", "1", "--time_steps", "10", "--run", "r"]
    out = subprocess.run([sys.executable, "-c", FULL_DISK, "200000", *command], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert "cannot write" in line and "File too large" in line and "--cache_dir" in line
    assert not list((tmp_path / "data/cache/frames").glob(".*")) and not (tmp_path / "logs/r").exists()
    again = subprocess.run([sys.executable, "-m", "snnclf", *command], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr


def test_a_frame_window_that_leaves_every_frame_blank_is_refused(tmp_path):
    """--frame_ms so short that no recording has an event in its T windows: an error naming the
    option, not a warning and a run on blank frames; no cache is left."""
    make_nmnist_folder(tmp_path / "data", per_class=(1, 1))
    first = min(int(read_events(NMNIST, file_reader(NMNIST), r.path)["t"].min())
                for r in scan(NMNIST, tmp_path / "data")[0]["train"])
    assert first >= 2  # the recordings' first events come after 2 µs
    with pytest.raises(UsageError, match=r"--frame_ms 0.001: every frame of the nmnist train split is blank .*"
                                         r"give a longer --frame_ms"):
        load_dataset("nmnist", str(tmp_path / "data"), time_steps=2, frame_ms=0.001,
                     cache_dir=str(tmp_path / "cache"))
    assert not list((tmp_path / "cache/frames").iterdir())
