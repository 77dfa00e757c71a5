"""Real sensor recordings (``shared/data/real-events`` beside the repository, or
``$SNNCLF_REAL_EVENTS``): every reader on every real file, the fixtures of event_formats.py held to
the real files' facts, and training on POKER-DVS as tonic ships it and as its authors publish it."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

import event_formats as ef
from snnclf.data import aedat
from snnclf.data.event_sets import CIFAR10_DVS, NMNIST, POKER_DVS, POKER_DVS_ORIGINAL, SUITS
from snnclf.data.events import encode_bin, file_reader, inside, read_events

REAL = Path(os.environ.get("SNNCLF_REAL_EVENTS") or Path(__file__).resolve().parents[2] / "shared/data/real-events")
pytestmark = pytest.mark.skipif(not (REAL / "README.md").is_file(), reason=f"no real recordings in {REAL}")

TONIC_POKER = sorted((REAL / "POKERDVS/pips_train").glob("*/*.npy"))
ORIGINALS = sorted((REAL / "poker-dvs-original").glob("*.aedat"))


def events_of(entry, path):
    """A recording as snnclf reads it for its frames: the entry's reader, sorted, t from the start."""
    return inside(entry, read_events(entry, file_reader(entry), path), path)


def test_the_folder_holds_what_its_readme_says():
    assert len(TONIC_POKER) == 48 and len(ORIGINALS) == 110
    assert (REAL / "dvxplorer-sample.aedat4").is_file() and (REAL / "nmnist-sample.bin").is_file()


def test_the_poker_dvs_originals_are_tonics_recordings_event_for_event():
    """tonic's 48 training recordings are original recordings (t from 0, the polarity bit
    inverted): read by snnclf's AEDAT 2.0 reader, each one whose original is here gives exactly
    tonic's events, under the same class."""
    originals = {path: events_of(POKER_DVS_ORIGINAL, path) for path in ORIGINALS}
    matched = {}
    for npy in TONIC_POKER:
        ours = events_of(POKER_DVS, npy)
        same = [path for path, events in originals.items() if np.array_equal(events, ours)]
        assert len(same) <= 1
        if same:
            matched[npy] = same[0]
            assert POKER_DVS_ORIGINAL.label(same[0]) == npy.parent.name  # xclub07.aedat -> cl
    assert len(matched) == 47  # the original of the 48th is one of the 21 not in the folder
    assert all(path.name[-7] != "i" for path in matched.values())  # tonic took no "i" recording


def test_every_original_poker_dvs_recording_reads_with_the_readmes_facts():
    sizes, spans = [], []
    for path in ORIGINALS:
        events = events_of(POKER_DVS_ORIGINAL, path)  # on the 35x35 sensor, or refused
        assert events["t"][0] == 0 and (np.diff(events["t"]) >= 0).all()
        assert set(np.unique(events["p"])) == {0, 1}
        sizes.append(len(events))
        spans.append(events["t"][-1] / 1000)
    assert 360 <= min(sizes) and max(sizes) <= 5387 and 4.6 <= min(spans) and max(spans) <= 32
    assert {POKER_DVS_ORIGINAL.label(p) for p in ORIGINALS} == set(SUITS.values())


def test_the_aedat2_writer_writes_the_real_files_byte_for_byte():
    """event_formats.write_aedat2 given a real recording's header lines and events writes that file."""
    for path in ORIGINALS[:5]:
        data = path.read_bytes()
        version, start = aedat.header(data)
        lines = data[:start].decode("latin-1").split("\r\n")[:-1]
        raw = np.frombuffer(data, ">u4", offset=start).reshape(-1, 2)
        out = Path(os.environ.get("TMPDIR", "/tmp")) / f"snnclf-aedat2-{os.getpid()}.aedat"
        try:
            ef.write_aedat2(out, raw[:, 0], raw[:, 1], header=lines)
            assert out.read_bytes() == data
        finally:
            out.unlink(missing_ok=True)
        # and the default header is jAER's own, as these files have it (but for the date line)
        assert list(ef.AEDAT2_HEADER[:4]) == lines[:4]


def test_poker_dvs_fixtures_have_the_real_files_facts(tmp_path):
    real = [np.load(path) for path in TONIC_POKER]
    written = ef.make_dataset("poker-dvs", tmp_path, samples_per_class=6)
    made = [np.load(path) for files in written.values() for path in files]
    (low, high), (short, long) = ef.SIZES["pokerdvs"]
    for arrays in (real, made):
        assert {a.dtype for a in arrays} == {np.dtype(np.uint64)} and {a.shape[1] for a in arrays} == {4}
        assert all(a[0, 0] == 0 and (np.diff(a[:, 0].astype(np.int64)) >= 0).all() for a in arrays)
        assert all(low <= len(a) <= high and short * 1000 <= a[-1, 0] <= long * 1000 for a in arrays)
        assert max(int(a[:, 1:3].max()) for a in arrays) < 35 and {int(a[:, 3].max()) for a in arrays} == {1}


def test_the_real_nmnist_recording_reads_and_the_bin_writer_writes_it_back():
    path = REAL / "nmnist-sample.bin"
    events = read_events(NMNIST, file_reader(NMNIST), path)  # tonic's reader, as for the data set
    assert len(events) == path.stat().st_size // 5 and len(events) > 1000
    assert events["x"].max() < 34 and events["y"].max() < 34 and 250_000 < events["t"].max() < 2 ** 23
    raw = np.fromfile(path, np.uint8).reshape(-1, 5).astype(np.int64)  # in the file's own order
    x, y, p = raw[:, 0], raw[:, 1], raw[:, 2] >> 7
    t = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    assert encode_bin(x, y, p, t) == path.read_bytes()  # the simulator's writer: the real format


def test_the_real_aedat4_recording_reads_and_the_fixture_writes_its_format(tmp_path):
    """A DVXplorer recording: LZ4-compressed packets of three streams (events, IMU, triggers), read
    by the reader CIFAR10-DVS's files go through; the fixture writer writes the same compression
    and more than one stream, and the reader takes the events alone from it."""
    path = REAL / "dvxplorer-sample.aedat4"
    events = read_events(CIFAR10_DVS, file_reader(CIFAR10_DVS), path)
    assert len(events) > 100_000 and events["x"].max() < 320 and events["y"].max() < 240
    assert set(np.unique(events["p"])) == {0, 1} and events["t"][0] == 0
    real = ef.aedat4_facts(path)
    assert real["compression"] == "LZ4" and {"EVTS", "IMUS", "TRIG"} <= set(real["streams"])
    x, y, p, t = ef.random_events(3000, 128, 128, t0=1_600_000_000_000_000)
    ef.write_cifar10dvs(tmp_path / "r.aedat4", x, y, p, t)
    made = ef.aedat4_facts(tmp_path / "r.aedat4")
    assert made["compression"] == real["compression"] and {"EVTS", "IMUS"} <= set(made["streams"])
    events = read_events(CIFAR10_DVS, file_reader(CIFAR10_DVS), tmp_path / "r.aedat4")
    assert len(events) == 3000 and np.array_equal(np.sort(events["t"]), np.sort(t - t.min()))


@pytest.mark.slow
def test_training_on_the_originals_works_as_on_tonics_copy(workdir, cli):
    """The same command on a folder of the original .aedat files (a seeded split of them) and on
    tonic's copy (its training split alone here: validation is held out of it, and eval names the
    missing test split)."""
    quick = ["--dataset", "poker-dvs", "--epochs", "1", "--time_steps", "4", "--batch_size", "16",
             "--cache_dir", str(workdir / "cache")]
    code, _, err = cli("train", *quick, "--data_dir", str(REAL / "poker-dvs-original"), "--run", "orig")
    assert code == 0, err
    config = json.loads((workdir / "logs/orig/config.json").read_text())
    assert config["data_split"].startswith("seeded") and config["num_train"] + config["num_val"] + \
        config["num_test"] == 110
    code, out, err = cli("eval", "--run", "orig", "--test_only", "--json")
    assert code == 0, err
    assert json.loads(out)["num_test"] == config["num_test"]
    code, out, err = cli("predict", "--run", "orig", str(ORIGINALS[0]), str(TONIC_POKER[0]))
    assert code == 0, err
    lines = out.splitlines()[-2:]
    assert lines[0].startswith(f"{ORIGINALS[0]}: ") and lines[1].startswith(f"{TONIC_POKER[0]}: ")
    assert all(line.split(": ")[1].split(" (")[0] in config["class_names"] for line in lines)

    code, _, err = cli("train", *quick, "--data_dir", str(REAL), "--run", "tonic")
    assert code == 0, err
    config = json.loads((workdir / "logs/tonic/config.json").read_text())
    assert config["data_split"] == "official" and config["num_train"] + config["num_val"] == 48
    assert config["num_test"] is None and "no test split" in err
    for command in (("eval", "--run", "tonic", "--test_only"),
                    ("visualize-data", "--dataset", "poker-dvs", "--data_dir", str(REAL))):
        code, _, err = cli(*command)  # both read the test split, and say which split is missing
        assert code == 2 and "no POKER-DVS recordings of the test split" in err and "train split is there" in err
        assert "Traceback" not in err
