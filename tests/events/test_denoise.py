"""spike.events.denoise (background-activity filter) against a hand-made case and tonic 1.7."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tonic.functional as tf
import tonic.transforms as tt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spike.core.events import EVENT_DTYPE, EventError, make_events
from spike.events import Denoise, denoise, denoise_mask

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def streams(draw, max_events=80):
    w, h = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    n = draw(st.integers(1, max_events))
    t = np.sort(np.array(draw(st.lists(st.integers(0, 400), min_size=n, max_size=n)))) + 10_000
    x = draw(st.lists(st.integers(0, w - 1), min_size=n, max_size=n))
    y = draw(st.lists(st.integers(0, h - 1), min_size=n, max_size=n))
    p = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    return make_events(x, y, t, p), (w, h, 2)


def baf_oracle(ev, filter_time, connectivity):
    """Keep k iff an earlier event at a neighbouring pixel (not k's own) is < filter_time older."""
    keep = np.zeros(len(ev), bool)
    for k in range(len(ev)):
        dx = np.abs(ev["x"][:k] - ev["x"][k])
        dy = np.abs(ev["y"][:k] - ev["y"][k])
        near = (dx + dy == 1) if connectivity == 4 else ((np.maximum(dx, dy) == 1))
        keep[k] = np.any(near & (ev["t"][k] - ev["t"][:k] < filter_time))
    return keep


def test_hand_made_case():
    ev = make_events(
        x=[5, 5, 6, 9, 9, 0, 1, 3],
        y=[5, 5, 6, 9, 9, 0, 0, 3],
        t=[100, 150, 160, 200, 201, 300, 500, 600],
        p=[1, 0, 1, 1, 1, 0, 1, 0])
    s = (10, 10, 2)
    # 0: first event, nothing before it                                  -> drop
    # 1: same pixel as 0, 50 us later: the pixel itself does not count     -> drop
    # 2: diagonal neighbour of (5, 5), 10 us after event 1                  -> keep (8-conn only)
    # 3, 4: a burst at one isolated pixel                                   -> drop
    # 5: isolated                                                           -> drop
    # 6: 4-neighbour of (0, 0) but 200 us later, filter_time 100            -> drop
    # 7: isolated                                                           -> drop
    assert denoise_mask(ev, s, 100).tolist() == [False, False, True] + [False] * 5
    assert denoise_mask(ev, s, 100, connectivity=4).tolist() == [False] * 8
    assert denoise_mask(ev, s, 201).tolist()[6] is True  # 200 < 201
    assert denoise_mask(ev, s, 200).tolist()[6] is False  # strict: filter_time old is too old
    out = denoise(ev, s, 100)
    assert out.dtype == ev.dtype and out.tolist() == ev[[2]].tolist()


@SETTINGS
@given(streams(), st.integers(0, 200), st.sampled_from([4, 8]))
def test_matches_oracle_and_is_an_ordered_subset(data, filter_time, connectivity):
    ev, s = data
    before = ev.copy()
    m = denoise_mask(ev, s, filter_time, connectivity=connectivity)
    np.testing.assert_array_equal(m, baf_oracle(ev, filter_time, connectivity))
    out = denoise(ev, s, filter_time, connectivity=connectivity)
    np.testing.assert_array_equal(out, ev[m])
    assert ev.tobytes() == before.tobytes()
    if connectivity == 8:  # 8-neighbours include the 4-neighbours
        assert np.all(m >= denoise_mask(ev, s, filter_time, connectivity=4))


@SETTINGS
@given(streams(), st.integers(1, 5000))
def test_connectivity_4_equals_tonic_after_the_first_filter_time(data, filter_time):
    """tonic checks the 4-neighbours, not the pixel itself, with a strict '<'. Valid here since
    every t >= 10_000 >= filter_time, so tonic's memory initialisation (see below) never matters."""
    ev, s = data
    theirs = tt.Denoise(filter_time=filter_time)(ev)
    np.testing.assert_array_equal(denoise(ev, s, filter_time, connectivity=4), theirs)


def test_tonic_keeps_isolated_events_in_the_first_filter_time():
    # tonic initialises every pixel as if it had fired at t = 0
    ev = make_events([0, 5], [0, 5], [10, 20], [1, 1])  # two isolated events, far apart
    assert len(tf.denoise_numpy(ev, filter_time=100)) == 2  # tonic keeps both
    assert len(denoise(ev, (6, 6, 2), 100, connectivity=4)) == 0
    assert len(denoise(ev, (6, 6, 2), 100)) == 0


def test_edges_empty_and_errors():
    s = (3, 3, 2)
    assert len(denoise(np.empty(0, EVENT_DTYPE), s, 10)) == 0
    # events at the sensor corners: the padding never fires, and nothing wraps around
    corner = make_events([0, 1, 2, 3], [0, 1, 2, 0], [0, 1, 2, 3], [0, 0, 0, 0])
    assert denoise_mask(corner, (4, 3, 2), 10).tolist() == [False, True, True, False]
    with pytest.raises(EventError):
        denoise(make_events([3], [0], [0], [0]), s, 10)
    with pytest.raises(EventError, match="sorted"):
        denoise(make_events([0, 1], [0, 0], [5, 4], [0, 0]), s, 10)
    with pytest.raises(ValueError):
        denoise(corner, (4, 3, 2), 10, connectivity=6)
    with pytest.raises(ValueError):
        denoise(corner, (4, 3, 2), -1)


def test_denoise_transform():
    rng = np.random.default_rng(0)
    n = 2000
    ev = make_events(rng.integers(0, 20, n), rng.integers(0, 20, n),
                     np.sort(rng.integers(0, 50_000, n)), rng.integers(0, 2, n))
    d = Denoise((20, 20, 2), filter_time=1000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.filter_time = 5  # type: ignore[misc]
    out = tt.Compose([d])(ev)
    assert 0 < len(out) < n
    np.testing.assert_array_equal(out, denoise(ev, (20, 20, 2), 1000))
