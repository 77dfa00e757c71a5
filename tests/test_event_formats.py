"""The writers of event_formats.py round-trip through tonic's own readers, exactly."""
import numpy as np
import pytest
import tonic

import event_formats as ef
from snnclf.data import aedat
from snnclf.data.event_sets import DVS_GESTURE_IBM
from snnclf.data.events import file_reader, read_events


def tonic_set(cls, root, **options):
    """tonic's data set class, told its files are there (no download, no archive check)."""
    return type(cls.__name__, (cls,), {"_check_exists": lambda self: True})(str(root), **options)


def same(events, x, y, p, t, p_field="p"):
    for field, want in (("x", x), ("y", y), (p_field, p), ("t", t)):
        np.testing.assert_array_equal(np.ravel(events[field]), want, err_msg=field)


def test_cifar10dvs_round_trip(tmp_path):
    x, y, p, t = ef.random_events(2500, 128, 128, t0=1_600_000_000_000_000)  # 3 packets
    ef.write_cifar10dvs(tmp_path / "r.aedat4", x, y, p, t)
    events = tonic.io.read_aedat4(str(tmp_path / "r.aedat4"))
    assert events.dtype.names == ("t", "x", "y", "on")
    same(events, x, y, p, t, p_field="on")


def test_dvsgesture_round_trip(tmp_path):
    x, y, p, t = ef.random_events(3000, 128, 128, t0=8_000_000)  # ~9% of these lose 1 us un-nudged
    ef.write_dvsgesture(tmp_path / "DVSGesture/ibmGestureTrain/user03_lab/5.npy", x, y, p, t)
    assert np.load(tmp_path / "DVSGesture/ibmGestureTrain/user03_lab/5.npy").dtype == np.float64
    data = tonic_set(tonic.datasets.DVSGesture, tmp_path, train=True)
    events, label = data[0]
    assert (label, data.users, data.lighting) == (5, [3], ["lab"])
    same(events, x, y, p, t)  # tonic's ms -> us conversion gives back every microsecond


def test_ncaltech101_round_trip(tmp_path):
    x, y, p, t = ef.random_events(1000, 240, 180)
    x, y = x + 3, y + 2  # recordings do not start at the origin; tonic moves them there
    ef.write_ncaltech101(tmp_path / "NCALTECH101/Caltech101/accordion/image_0001.bin", x, y, p, t)
    path = tmp_path / "NCALTECH101/Caltech101/accordion/image_0001.bin"
    assert path.stat().st_size == 5 * 1000
    same(tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NCALTECH101.dtype), x, y, p, t)
    events, label = tonic_set(tonic.datasets.NCALTECH101, tmp_path)[0]
    assert label == "accordion"
    same(events, x - x.min(), y - y.min(), p, t)
    with pytest.raises(ValueError):
        ef.write_ncaltech101(tmp_path / "bad.bin", [0], [240], [0], [0])  # y 240: overflow marker


def test_pokerdvs_round_trip(tmp_path):
    x, y, p, t = ef.random_events(500, 35, 35, t0=12_345)
    ef.write_pokerdvs(tmp_path / "POKERDVS/pips_test/he/0.npy", x, y, p, t)
    assert np.load(tmp_path / "POKERDVS/pips_test/he/0.npy").dtype == np.uint64  # as tonic ships them
    events, label = tonic_set(tonic.datasets.POKERDVS, tmp_path, train=False)[0]
    assert label == tonic.datasets.POKERDVS.int_classes["he"]
    same(events, x, y, p, t - t.min())  # from the first event, as tonic's files are


def test_asldvs_round_trip(tmp_path):
    x, y, p, t = ef.random_events(800, 240, 180, t0=5_000_000)
    ef.write_asldvs(tmp_path / "ASLDVS/c/c_0001.mat", x, y, p, t)
    events, label = tonic_set(tonic.datasets.ASLDVS, tmp_path)[0]
    assert label == 2 and events.shape == (800, 1)  # tonic keeps MATLAB's column shape
    same(events, x, 179 - y, p, t)


SETS = {"cifar10dvs": tonic.datasets.CIFAR10DVS, "dvsgesture": tonic.datasets.DVSGesture,
        "ncaltech101": tonic.datasets.NCALTECH101, "pokerdvs": tonic.datasets.POKERDVS,
        "asldvs": tonic.datasets.ASLDVS}


def tonic_sets(name, root):
    """tonic's data set(s) of ``name`` under ``root``: train and test where there is a split."""
    if name in ("dvsgesture", "pokerdvs"):
        return [tonic_set(SETS[name], root, train=True), tonic_set(SETS[name], root, train=False)]
    return [tonic_set(SETS[name], root)]


@pytest.mark.parametrize("name", ef.TONIC)
def test_make_dataset_reads_and_separates_classes(tmp_path, name):
    """Every recording reads through tonic's class, and a nearest-centroid rule on each
    recording's mean position tells the classes apart."""
    written = ef.make_dataset(name, tmp_path)
    data = tonic_sets(name, tmp_path)
    if len(data) == 2:
        assert [len(d) for d in data] == [len(written["train"]), len(written["test"])]
    if name == "dvsgesture":
        assert set(data[0].users) == {1, 2} and set(data[1].users) == {24, 25}
        assert len(set(data[0].lighting)) >= 2 and len(set(data[1].lighting)) >= 2
    samples = [d[i] for d in data for i in range(len(d))]
    assert len(samples) == sum(map(len, written.values()))
    labels = np.array([str(label) for _, label in samples])
    means = np.array([[np.mean(ev["x"]), np.mean(ev["y"])] for ev, _ in samples])
    (low, high), (short, long) = ef.SIZES.get(name, ((200, 800), (100, 300)))
    for ev, _ in samples:
        assert low <= ev.size <= high and set(np.unique(ev["p"])) == {0, 1}
        assert 0.5 * short * 1000 <= np.ptp(ev["t"]) <= long * 1000
    classes = sorted(set(labels))
    assert len(classes) == len(ef.CLASSES[name]) and all((labels == c).sum() >= 2 for c in classes)
    centroids = np.array([means[labels == c].mean(0) for c in classes])
    nearest = np.argmin(((means[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (np.array(classes)[nearest] == labels).all()


@pytest.mark.parametrize("name", ef.TONIC)
def test_corrupt_file_breaks_tonic(tmp_path, name):
    ef.make_dataset(name, tmp_path, samples_per_class=2)
    data = tonic_sets(name, tmp_path)
    [d[i] for d in data for i in range(len(d))]  # all readable before
    path = ef.corrupt_file(name, tmp_path)
    assert path.is_file() and path.suffix == ef.SUFFIX[name]
    with pytest.raises(Exception):
        data = tonic_sets(name, tmp_path)  # POKERDVS loads its files here
        [d[i] for d in data for i in range(len(d))]


# --- the authors' own formats, read by snnclf.data.aedat ----------------------------------------

def test_aedat31_round_trip_keeps_valid_events_across_the_overflow(tmp_path):
    """IBM's AEDAT 3.1: the events written come back exactly, the ones with the validity bit clear
    are dropped, and timestamps past 2**31 µs take the packet's overflow."""
    x, y, p, t = ef.random_events(3000, 128, 128, t0=2 ** 31 - 150_000)
    assert (t < 2 ** 31).any() and (t >= 2 ** 31).any()
    ef.write_aedat31(tmp_path / "user01_led.aedat", x, y, p, t, invalid=40, events_per_packet=700)
    same(aedat.read_aedat31(tmp_path / "user01_led.aedat"), x, y, p, t)


@pytest.mark.parametrize("kind", ["pokerdvs", "cifar10dvs"])
def test_aedat2_round_trip(tmp_path, kind):
    """jAER's AEDAT 2.0 with DVS128 addresses: POKER-DVS's as recorded, CIFAR10-DVS's turned upright."""
    x, y, p, t = ef.random_events(2000, 35 if kind == "pokerdvs" else 128, 35 if kind == "pokerdvs" else 128,
                                  t0=3_000_000)
    ef.WRITERS[f"{kind}-original"](tmp_path / "r.aedat", x, y, p, t)
    same(aedat.read_dvs128(tmp_path / "r.aedat", transpose=kind == "cifar10dvs"), x, y, p, t)


def test_a_gesture_clip_is_its_window_from_start_to_before_end(tmp_path):
    """A clip holds the events with start <= t < end, timed from its start."""
    t = np.array([100, 199, 200, 250, 299, 300, 301])
    path = tmp_path / "user01_led.aedat"
    ef.write_aedat31(path, np.arange(7), np.arange(7), np.ones(7, int), t)
    ef.write_gesture_labels(path.with_name("user01_led_labels.csv"), [(3, 200, 300)])
    assert DVS_GESTURE_IBM.clips(path) == [(2, 200, 300)]  # classes 1-11 in the file, 0-10 here
    events = read_events(DVS_GESTURE_IBM, file_reader(DVS_GESTURE_IBM), path, (200, 300))
    assert events["t"].tolist() == [0, 50, 99] and events["x"].tolist() == [2, 3, 4]


@pytest.mark.parametrize("text, problem", [("1,0,10\n", "header"), ("class,startTime_usec,endTime_usec\n12,0,10\n", "1-11"),
                                           ("class,startTime_usec,endTime_usec\n3,10,10\n", "end after the start")])
def test_a_bad_labels_file_is_refused(tmp_path, text, problem):
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(ValueError, match=problem):
        aedat.read_labels(tmp_path / "labels.csv")
