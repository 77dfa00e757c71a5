"""The event simulator against real N-MNIST: where the digit is in each saccade. The reference
figures are benchmarks/event_stats.py's (measured on real recordings); the digits are made the
way MNIST made its own, from scikit-learn's bundled 8x8 digits, so no download is needed."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from snnclf.data.simulate import DURATION_MS, SENSOR, simulate, to_28

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def event_stats():
    spec = importlib.util.spec_from_file_location("event_stats", ROOT / "benchmarks" / "event_stats.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mnist_like(n):
    """The first ``n`` of scikit-learn's 8x8 digits as the simulator places images of another size:
    as MNIST placed its digits (a 20x20 box, centred by centre of mass in 28x28). Their events'
    per-saccade centroids come within 0.5 px of those of real MNIST digits."""
    from sklearn.datasets import load_digits

    return to_28(torch.tensor(load_digits().images[:n] / 16.0, dtype=torch.float32)[:, None])


@pytest.fixture(scope="module")
def streams():
    return simulate(mnist_like(60), np.random.default_rng(0))


def test_mnist_like_digits_are_centred_like_mnist():
    images = mnist_like(60)
    ys, xs = np.indices((28, 28))
    mass = images.sum((1, 2))
    com = np.stack([(images * ys).sum((1, 2)) / mass, (images * xs).sum((1, 2)) / mass], 1)
    assert np.abs(com - 14).max() < 0.75  # whole-pixel placement, as MNIST did
    border = np.ones((28, 28), bool)
    border[2:-2, 2:-2] = False
    assert images[:, border].max() == 0  # the 20x20 box, shifted by at most a few pixels
    assert 0.1 < images.mean() < 0.2  # MNIST: 0.13 of the field is ink


def test_each_saccade_puts_the_digit_where_real_recordings_do(event_stats, streams):
    """Real N-MNIST: the centroid of each saccade's events, (14.8, 18.2), (18.0, 17.9), (17.4,
    15.5): the digit moves down, then up and to the right, then left. Version 2's path put them
    4.8, 2.4 and 6.0 px away."""
    s = event_stats.stats(streams)
    assert s["samples"] == 60
    for here, real in zip(s["saccade_centroid"], event_stats.REAL["saccade_centroid"]):
        assert np.hypot(here[0] - real[0], here[1] - real[1]) < 1.0, (s["saccade_centroid"], real)
    # and the edges still move the way the recordings' ON-minus-OFF offsets say
    pairs = [(here, real) for b, r in event_stats.REAL["on_minus_off"].items()
             for here, real in zip(s["on_minus_off"][b], r) if abs(real) >= 1]
    assert all(np.sign(here) == np.sign(real) for here, real in pairs), s["on_minus_off"]


def test_events_are_sorted_inside_the_recording_and_the_sensor(streams):
    for x, y, p, t in streams:
        assert len(t) > 500
        assert np.all(np.diff(t) >= 0)
        assert t.min() >= 0 and t.max() < DURATION_MS * 1000
        assert 0 <= x.min() and x.max() < SENSOR[0] and 0 <= y.min() and y.max() < SENSOR[1]
        assert set(np.unique(p)) == {0, 1}
