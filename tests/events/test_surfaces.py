"""spike.events.to_voxel_grid and to_time_surface against hand computations and tonic 1.7."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tonic.functional as tf
import tonic.transforms as tt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spike.core.events import EVENT_DTYPE, EventError, make_events
from spike.events import ToTimeSurface, ToVoxelGrid, to_frame, to_time_surface, to_voxel_grid

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def streams(draw, max_events=50, max_t=300):
    w, h = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    n = draw(st.integers(1, max_events))
    t = np.sort(np.array(draw(st.lists(st.integers(0, max_t), min_size=n, max_size=n)))) + 1000
    x = draw(st.lists(st.integers(0, w - 1), min_size=n, max_size=n))
    y = draw(st.lists(st.integers(0, h - 1), min_size=n, max_size=n))
    p = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    return make_events(x, y, t, p), (w, h, 2)


def voxel_oracle(ev, sensor, n_bins):
    """Zhu et al. 2019 written out per event and bin."""
    w, h, _ = sensor
    grid = np.zeros((n_bins, h, w))
    t = ev["t"].astype(float)
    span = t[-1] - t[0]
    for e, tk in zip(ev, t):
        ts = (n_bins - 1) * (tk - t[0]) / span if span > 0 else 0.0
        pol = 1.0 if e["p"] > 0 else -1.0
        for b in range(n_bins):
            grid[b, e["y"], e["x"]] += pol * max(0.0, 1.0 - abs(b - ts))
    return grid


# ------------------------------------------------------------------------------------------------
# voxel grid
# ------------------------------------------------------------------------------------------------


def test_voxel_grid_hand_computed():
    # t* = 2 (t - 0) / 40 -> 0, 0.5, 1, 2 for t = 0, 10, 20, 40
    ev = make_events([0, 1, 1, 2], [0, 0, 0, 1], [0, 10, 20, 40], [1, 0, 1, 1])
    g = to_voxel_grid(ev, (3, 2, 2), 3, dtype=np.float64)
    expected = np.zeros((3, 2, 3))
    expected[0, 0, 0] = 1.0  # t* = 0, ON
    expected[0, 0, 1] = -0.5  # t* = 0.5, OFF, split over bins 0 and 1
    expected[1, 0, 1] = -0.5 + 1.0  # ... plus t* = 1, ON, at pixel (1, 0)
    expected[2, 1, 2] = 1.0  # last event lands fully in the last bin
    np.testing.assert_array_equal(g, expected)


@SETTINGS
@given(streams(), st.integers(1, 8))
def test_voxel_grid_matches_formula_and_conserves_polarity(data, n_bins):
    ev, sensor = data
    before = ev.copy()
    g = to_voxel_grid(ev, sensor, n_bins, dtype=np.float64)
    assert g.shape == (n_bins, sensor[1], sensor[0])
    np.testing.assert_allclose(g, voxel_oracle(ev, sensor, n_bins), atol=1e-12)
    # every event's weights sum to 1 (t* always lies in [0, B - 1]): total = sum of +-1 polarities
    np.testing.assert_allclose(g.sum(), np.sum(np.where(ev["p"] > 0, 1.0, -1.0)), atol=1e-9)
    assert ev.tobytes() == before.tobytes()


@SETTINGS
@given(streams(), st.integers(1, 8))
def test_voxel_grid_relation_to_tonic(data, n_bins):
    """tonic scales t by B (not B - 1), dropping what falls past bin B - 1: ours(B + 1), cut."""
    ev, sensor = data
    if ev["t"][-1] == ev["t"][0]:
        return  # tonic divides by zero
    theirs = tt.ToVoxelGrid(sensor, n_bins)(ev)  # [B, 1, H, W]
    ours = to_voxel_grid(ev, sensor, n_bins + 1, dtype=np.float64)
    np.testing.assert_allclose(ours[:n_bins], theirs[:, 0], atol=1e-12)


def test_tonic_voxel_grid_loses_the_last_event_and_nans_on_one_timestamp():
    ev = make_events([0, 1], [0, 0], [0, 10], [1, 1])
    theirs = tt.ToVoxelGrid((2, 1, 2), 2)(ev)
    assert theirs[:, 0, 0, 1].sum() == 0  # t* = 2 (= B) is outside tonic's grid: event lost
    assert to_voxel_grid(ev, (2, 1, 2), 2)[:, 0, 1].tolist() == [0.0, 1.0]
    same_t = make_events([0, 1], [0, 0], [5, 5], [1, 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        assert np.isnan(tt.ToVoxelGrid((2, 1, 2), 2)(same_t)).all()
    assert to_voxel_grid(same_t, (2, 1, 2), 2)[0, 0].tolist() == [1.0, -1.0]
    # and tonic's functional form writes p = -1 into its input
    ev2 = ev.copy()
    ev2["p"] = 0
    tf.to_voxel_grid_numpy(ev2, (2, 1, 2), 2)
    assert ev2["p"].tolist() == [-1, -1]


def test_voxel_grid_edge_cases_and_errors():
    assert not to_voxel_grid(np.empty(0, EVENT_DTYPE), (3, 2, 2), 4).any()
    one = make_events([1], [1], [7], [0])
    g = to_voxel_grid(one, (3, 2, 2), 4)
    assert g.dtype == np.float32 and g[0, 1, 1] == -1.0 and np.count_nonzero(g) == 1
    assert to_voxel_grid(make_events([0], [0], [3], [0]), (1, 1, 1), 2)[0, 0, 0] == 1.0  # P = 1: +1
    with pytest.raises(EventError):
        to_voxel_grid(make_events([3], [0], [0], [0]), (3, 2, 2), 4)
    with pytest.raises(EventError, match="sorted"):
        to_voxel_grid(make_events([0, 0], [0, 0], [5, 4], [0, 0]), (3, 2, 2), 4)
    with pytest.raises(ValueError):
        to_voxel_grid(one, (3, 2, 2), 0)


# ------------------------------------------------------------------------------------------------
# time surface
# ------------------------------------------------------------------------------------------------


def test_time_surface_hand_computed():
    tau = 50.0
    ev = make_events([0, 0, 1], [0, 0, 0], [100, 130, 150], [1, 1, 0])
    s = to_time_surface(ev, (2, 1, 2), tau, sample_times=[99, 130, 200], dtype=np.float64)
    assert s.shape == (3, 2, 1, 2)
    assert not s[0].any()  # nothing has happened yet
    assert s[1, 1, 0, 0] == 1.0 and s[1, 0, 0, 1] == 0.0  # event exactly at the sample time
    assert s[2, 1, 0, 0] == pytest.approx(np.exp(-(200 - 130) / tau), rel=1e-15)
    assert s[2, 0, 0, 1] == pytest.approx(np.exp(-(200 - 150) / tau), rel=1e-15)
    assert s[2, 0, 0, 0] == 0.0 and s[2, 1, 0, 1] == 0.0
    # dt mode: windows [100, 125), [125, 150), [150, 175) sampled at 125, 150, 175
    d = to_time_surface(ev, (2, 1, 2), tau, dt=25, dtype=np.float64)
    np.testing.assert_allclose(d[:, 1, 0, 0], np.exp(-np.array([25, 20, 45]) / tau), rtol=1e-15)
    np.testing.assert_allclose(d[:, 0, 0, 1], [0, 0, np.exp(-25 / tau)], rtol=1e-15)


@SETTINGS
@given(streams(), st.integers(1, 120), st.floats(1.0, 500.0))
def test_time_surface_equals_tonic(data, dt, tau):
    ev, sensor = data
    theirs = tt.ToTimesurface(sensor, dt, tau)(ev)
    ours = to_time_surface(ev, sensor, tau, dt=dt, include_incomplete=False, dtype=np.float64)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-300)


@SETTINGS
@given(streams(), st.integers(1, 120), st.floats(1.0, 500.0))
def test_time_surface_properties(data, dt, tau):
    ev, sensor = data
    before = ev.copy()
    s = to_time_surface(ev, sensor, tau, dt=dt, dtype=np.float64)
    assert np.all((s >= 0) & (s <= 1))
    # the default keeps the partial last window, so the surface has seen every event; it is nonzero
    # exactly where the frames of the same windows have counts
    frames = to_frame(ev, sensor, time_window=dt)
    assert s.shape == frames.shape
    seen = np.cumsum(frames, axis=0) > 0
    np.testing.assert_array_equal(s > 0, seen)
    # sample_times mode agrees with dt mode when sampled just before the window ends
    t0 = int(ev["t"][0])
    ends = t0 + dt * np.arange(1, len(s) + 1)
    np.testing.assert_allclose(
        to_time_surface(ev, sensor, tau, sample_times=ends - 1, dtype=np.float64)
        * np.exp(-1 / tau), s, rtol=1e-12)
    assert ev.tobytes() == before.tobytes()


def test_time_surface_errors_and_wrapper():
    ev = make_events([0, 1], [0, 0], [0, 10], [1, 0])
    with pytest.raises(ValueError):
        to_time_surface(ev, (2, 1, 2), 10.0)  # neither dt nor sample_times
    with pytest.raises(ValueError):
        to_time_surface(ev, (2, 1, 2), 0.0, dt=5)
    with pytest.raises(ValueError, match="non-decreasing"):
        to_time_surface(ev, (2, 1, 2), 10.0, sample_times=[5, 3])
    with pytest.raises(EventError):
        to_time_surface(ev, (1, 1, 2), 10.0, dt=5)
    w = ToTimeSurface((2, 1, 2), dt=5, tau=10.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.tau = 3.0  # type: ignore[misc]
    np.testing.assert_array_equal(w(ev), to_time_surface(ev, (2, 1, 2), 10.0, dt=5))
    v = ToVoxelGrid((2, 1, 2), 3)
    np.testing.assert_array_equal(tt.Compose([v])(ev), to_voxel_grid(ev, (2, 1, 2), 3))
