"""The N-MNIST-like saccade digits: geometry, oracle agreement, split and learnability."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from spike.core.events import validate_events
from spike.sim.digits import (
    DIGITS_CONFIG,
    DURATION_US,
    bin_fixed,
    digits_events,
    load_digits_events,
    render_saccades,
    saccade_path,
)
from spike.sim.esim import DVSConfig, SimulationError, simulate


@pytest.fixture(scope="module")
def split():
    return load_digits_events()


def test_saccade_path_is_a_closed_centred_triangle():
    offsets, ts = saccade_path(10, 4.0)
    assert offsets.shape == (31, 2) and ts.shape == (31,)
    assert ts[0] == 0 and ts[-1] == DURATION_US and np.all(np.diff(ts) > 0)
    np.testing.assert_allclose(offsets[0], offsets[-1])
    np.testing.assert_allclose(offsets.min(0), [-2.0, -2.0])
    np.testing.assert_allclose(offsets.max(0), [2.0, 2.0])
    legs = offsets[[10, 20, 30]] - offsets[[0, 10, 20]]
    np.testing.assert_allclose(legs, [[0, -4], [-4, 4], [4, 0]])  # up, down-left, right
    # eased: slow at the saccade ends, fastest mid-saccade
    step = np.linalg.norm(np.diff(offsets[:11], axis=0), axis=1)
    assert step[4] > 3 * step[0]


def test_digit_streams_are_valid_and_sized_like_nmnist():
    events, labels, sensor_size = digits_events(indices=np.arange(60))
    from sklearn.datasets import load_digits

    np.testing.assert_array_equal(labels, load_digits().target[:60])
    assert sensor_size == (34, 34, 2) and len(events) == 60
    for ev in events:
        validate_events(ev, sensor_size)
        assert ev["t"].min() > 0 and ev["t"].max() <= DURATION_US
        assert 500 < len(ev) < 6000
        assert 0.35 < ev["p"].mean() < 0.65


def test_batch_kernel_equals_simulate_per_sample():
    idx = np.array([3, 100, 1500])
    noisy = DVSConfig(pos_thres=0.3, neg_thres=0.25, refractory_us=1500,
                      shot_noise_rate_hz=2.0, leak_rate_hz=1.0, cutoff_hz=200.0)
    from sklearn.datasets import load_digits

    images = load_digits().images[idx] / 16.0
    frames, ts = render_saccades(images)
    for cfg in (DIGITS_CONFIG, noisy):
        events, _, _ = digits_events(indices=idx, config=cfg, seed=5)
        children = np.random.SeedSequence(5).spawn(len(idx))
        for i in range(len(idx)):
            ref = simulate(frames[i], ts, cfg, seed=np.random.default_rng(children[i]))
            np.testing.assert_array_equal(events[i], ref)


def test_deterministic_and_independent_of_thread_count():
    idx = np.arange(40)
    a, _, _ = digits_events(indices=idx, seed=1)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        b, _, _ = digits_events(indices=idx, seed=1)
    finally:
        numba.set_num_threads(old)
    c, _, _ = digits_events(indices=idx, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_saccade_directions_show_in_the_polarities():
    events, _, _ = digits_events(indices=np.arange(30))
    ev = np.concatenate(events)
    s1 = ev[ev["t"] <= 100_000]
    s3 = ev[ev["t"] > 200_000]
    # bright digit moving up: ON (brightening) on top edges, i.e. smaller y
    assert s1["y"][s1["p"] == 1].mean() + 2 < s1["y"][s1["p"] == 0].mean()
    # moving right in the third saccade: ON on the right edges
    assert s3["x"][s3["p"] == 1].mean() > s3["x"][s3["p"] == 0].mean() + 2
    # event rate peaks mid-saccade, as in N-MNIST
    hist, _ = np.histogram(ev["t"], bins=30, range=(0, DURATION_US))
    assert hist[4] > 3 * hist[0] and hist[14] > 3 * hist[10] and hist[24] > 3 * hist[20]


def test_bin_fixed_counts_every_event_in_its_bin():
    events, _, ss = digits_events(indices=np.arange(2))
    ev = events[0]
    dense = bin_fixed(ev, ss, 6)
    assert dense.shape == (6, 2, 34, 34) and dense.dtype == np.float32
    assert dense.sum() == len(ev)
    e = ev[0]
    b = min(e["t"] * 6 // DURATION_US, 5)
    assert dense[b, e["p"], e["y"], e["x"]] >= 1
    edge = ev[:1].copy()
    edge["t"] = DURATION_US
    assert bin_fixed(edge, ss, 6)[5].sum() == 1


def test_bad_digit_arguments_raise():
    with pytest.raises(SimulationError):
        saccade_path(0, 4.0)
    with pytest.raises(SimulationError):
        render_saccades(np.full((1, 8, 8), 2.0))
    with pytest.raises(SimulationError):
        digits_events(indices=np.arange(2), background=-0.1)


def test_split_is_fixed_stratified_and_disjoint(split):
    assert len(split.train_events) == 1437 and len(split.test_events) == 360
    assert not set(split.train_indices.tolist()) & set(split.test_indices.tolist())
    train_frac = np.bincount(split.train_labels, minlength=10) / 1437
    test_frac = np.bincount(split.test_labels, minlength=10) / 360
    np.testing.assert_allclose(train_frac, test_frac, atol=0.01)
    counts = np.array([len(e) for e in split.train_events])
    assert 1000 < counts.mean() < 5000


def test_events_are_learnable_by_logistic_regression(split):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    def features(events):
        x = np.stack([bin_fixed(e, split.sensor_size, 1)[0] for e in events])  # [S, 2, 34, 34]
        x = x.reshape(len(events), 2, 17, 2, 17, 2).sum(axis=(3, 5))  # [S, 2, 17, 17] 2x2 pool
        return x.reshape(len(events), -1)  # [S, 578]

    scaler = StandardScaler().fit(features(split.train_events))
    x_train = scaler.transform(features(split.train_events))
    x_test = scaler.transform(features(split.test_events))
    clf = LogisticRegression(max_iter=40, C=0.05).fit(x_train, split.train_labels)
    acc = clf.score(x_test, split.test_labels)
    assert acc > 0.9, acc
