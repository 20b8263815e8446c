"""spike.events.to_frame: tonic-exact where tonic 1.7 is right, correct where it is not."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tonic
import tonic.transforms as tt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spike.core.events import EVENT_DTYPE, EventError, make_events
from spike.events import ToFrame, slice_indices, to_frame

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------------------------
# helpers: random streams and an independent pure-numpy oracle
# ------------------------------------------------------------------------------------------------


@st.composite
def streams(draw, max_events=60, max_t=200):
    w = draw(st.integers(1, 6))
    h = draw(st.integers(1, 5))
    n_pol = draw(st.sampled_from([1, 2]))
    n = draw(st.integers(0, max_events))
    t0 = draw(st.integers(0, 1000))
    t = np.sort(np.array(draw(st.lists(st.integers(0, max_t), min_size=n, max_size=n)))) + t0
    x = np.array(draw(st.lists(st.integers(0, w - 1), min_size=n, max_size=n)), dtype=np.int64)
    y = np.array(draw(st.lists(st.integers(0, h - 1), min_size=n, max_size=n)), dtype=np.int64)
    p = np.array(draw(st.lists(st.integers(0, n_pol - 1), min_size=n, max_size=n)), dtype=np.int64)
    return make_events(x, y, t, p), (w, h, n_pol)


def count(ev, sensor):
    """Oracle: one frame [P, H, W] of event counts."""
    w, h, n_pol = sensor
    f = np.zeros((n_pol, h, w), np.int64)
    np.add.at(f, (ev["p"], ev["y"], ev["x"]), 1)
    return f


def oracle_time_bins(ev, sensor, n, start=None, end=None):
    frames = np.zeros((n, sensor[2], sensor[1], sensor[0]), np.int64)
    if len(ev) == 0:
        return frames
    t = ev["t"]
    start = t[0] if start is None else start
    end = t[-1] if end is None else end
    span = end - start
    sel = ev[(t >= start) & (t <= end)]
    if span == 0:
        b = np.zeros(len(sel), np.int64)
    else:
        b = np.minimum((sel["t"] - start) * n // span, n - 1)
    for i in range(n):
        frames[i] = count(sel[b == i], sensor)
    return frames


def oracle_time_window(ev, sensor, tw, overlap, incomplete, start=None, end=None):
    t = ev["t"]
    start = (t[0] if len(t) else 0) if start is None else start
    end = (t[-1] if len(t) else start) if end is None else end
    stride = tw - overlap
    starts = [start]  # smallest set of windows covering [start, end] (or the complete ones)
    if incomplete:
        while starts[-1] + tw <= end:
            starts.append(starts[-1] + stride)
    else:
        while starts[-1] + stride + tw <= end:
            starts.append(starts[-1] + stride)
    return np.stack([count(ev[(t >= a) & (t < a + tw)], sensor) for a in starts])


def oracle_event_count(ev, sensor, n_ev, overlap, incomplete):
    stride = n_ev - overlap
    starts = [0]
    if incomplete:
        while starts[-1] + n_ev < len(ev):
            starts.append(starts[-1] + stride)
    else:
        while starts[-1] + stride + n_ev <= len(ev):
            starts.append(starts[-1] + stride)
    return np.stack([count(ev[a:a + n_ev], sensor) for a in starts])


def tonic_frames(ev, sensor, **kw):
    return tt.ToFrame(sensor_size=sensor, **kw)(ev.copy())  # copy: tonic may write events["p"]


def random_stream(rng, n, sensor, t_max):
    w, h, n_pol = sensor
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n),
                       np.sort(rng.integers(0, t_max, n)), rng.integers(0, n_pol, n))


# ------------------------------------------------------------------------------------------------
# properties against the oracle
# ------------------------------------------------------------------------------------------------


@SETTINGS
@given(streams(), st.integers(1, 12))
def test_n_time_bins_matches_oracle_and_keeps_every_event(data, n):
    ev, sensor = data
    before = ev.copy()
    frames = to_frame(ev, sensor, n_time_bins=n)
    assert frames.shape == (n, sensor[2], sensor[1], sensor[0]) and frames.dtype == np.int32
    np.testing.assert_array_equal(frames, oracle_time_bins(ev, sensor, n))
    assert frames.sum() == len(ev)
    assert ev.tobytes() == before.tobytes()


@SETTINGS
@given(streams(), st.integers(1, 50), st.integers(0, 49), st.booleans())
def test_time_window_matches_oracle(data, tw, overlap, incomplete):
    ev, sensor = data
    overlap = overlap % tw
    frames = to_frame(ev, sensor, time_window=tw, overlap=overlap, include_incomplete=incomplete)
    np.testing.assert_array_equal(frames, oracle_time_window(ev, sensor, tw, overlap, incomplete))
    if overlap == 0 and incomplete:
        assert frames.sum() == len(ev)


@SETTINGS
@given(streams(), st.integers(1, 20), st.integers(0, 19), st.booleans())
def test_event_count_matches_oracle(data, n_ev, overlap, incomplete):
    ev, sensor = data
    overlap = overlap % n_ev
    frames = to_frame(ev, sensor, event_count=n_ev, overlap=overlap, include_incomplete=incomplete)
    np.testing.assert_array_equal(frames, oracle_event_count(ev, sensor, n_ev, overlap, incomplete))
    if overlap == 0 and incomplete:
        assert frames.sum() == len(ev)


@SETTINGS
@given(streams(max_events=30), st.integers(1, 6), st.integers(-20, 250), st.integers(0, 250))
def test_start_end_time_match_oracle(data, n, start, length):
    ev, sensor = data
    if len(ev) == 0:
        return
    start = int(ev["t"][0]) + start
    end = start + length
    np.testing.assert_array_equal(
        to_frame(ev, sensor, n_time_bins=n, start_time=start, end_time=end),
        oracle_time_bins(ev, sensor, n, start, end))
    np.testing.assert_array_equal(
        to_frame(ev, sensor, time_window=15, overlap=5, start_time=start, end_time=end),
        oracle_time_window(ev, sensor, 15, 5, True, start, end))


def test_single_event_and_empty_input():
    ev = make_events([2], [1], [7], [1])
    s = (3, 2, 2)
    for kw in ({"n_time_bins": 4}, {"time_window": 5}, {"event_count": 3}):
        f = to_frame(ev, s, **kw)
        assert f.sum() == 1 and f[0, 1, 1, 2] == 1
    empty = np.empty(0, EVENT_DTYPE)
    assert to_frame(empty, s, n_time_bins=4).shape == (4, 2, 2, 3)
    assert to_frame(empty, s, time_window=5).shape == (1, 2, 2, 3)
    assert to_frame(empty, s, event_count=3).shape == (1, 2, 2, 3)
    assert to_frame(empty, s, time_window=5, start_time=0, end_time=20).shape == (5, 2, 2, 3)
    assert not to_frame(empty, s, n_time_bins=4).any()


def test_events_exactly_on_bin_edges():
    # D = 30, 3 bins of 10 us: edges at 10, 20 belong to the later bin, t = 30 to the last bin
    ev = make_events([0] * 6, [0] * 6, [0, 9, 10, 19, 20, 30], [0] * 6)
    f = to_frame(ev, (1, 1, 1), n_time_bins=3)
    assert f[:, 0, 0, 0].tolist() == [2, 2, 2]
    f = to_frame(ev, (1, 1, 1), time_window=10)
    assert f[:, 0, 0, 0].tolist() == [2, 2, 1, 1]
    f = to_frame(ev, (1, 1, 1), time_window=10, include_incomplete=False)
    assert f[:, 0, 0, 0].tolist() == [2, 2, 1]  # t = 30 starts an incomplete window
    # D not divisible by n: bin(t) = floor(t * 3 / 10); the boundaries are 10/3 and 20/3
    ev = make_events([0] * 11, [0] * 11, np.arange(11), [0] * 11)
    assert to_frame(ev, (1, 1, 1), n_time_bins=3)[:, 0, 0, 0].tolist() == [4, 3, 4]


def test_n_time_bins_on_a_huge_span_is_exact():
    ev = make_events([0, 0, 0], [0, 0, 0], [0, 2**61, 2**62], [0, 0, 0])  # n * D overflows int64
    assert to_frame(ev, (1, 1, 1), n_time_bins=4)[:, 0, 0, 0].tolist() == [1, 0, 1, 1]
    assert to_frame(ev, (1, 1, 1), n_time_bins=3)[:, 0, 0, 0].tolist() == [1, 1, 1]


def test_all_events_at_one_time_go_to_first_bin():
    ev = make_events([0, 1, 1], [0, 0, 0], [5, 5, 5], [0, 1, 1])
    f = to_frame(ev, (2, 1, 2), n_time_bins=3)
    assert f[0].sum() == 3 and f[1:].sum() == 0


def test_field_dtypes_float_time_and_missing_y():
    rng = np.random.default_rng(3)
    ev = random_stream(rng, 300, (5, 4, 2), 1000)
    ref = to_frame(ev, (5, 4, 2), n_time_bins=7)
    other = np.empty(len(ev), [("t", ">f8"), ("x", "i2"), ("y", "u1"), ("p", "?")])
    for f in ("x", "y", "t", "p"):
        other[f] = ev[f]
    np.testing.assert_array_equal(to_frame(other, (5, 4, 2), n_time_bins=7), ref)
    one_d = np.empty(len(ev), [("x", "i8"), ("t", "i8"), ("p", "i8")])
    for f in ("x", "t", "p"):
        one_d[f] = ev[f]
    f1 = to_frame(one_d, (5, 1, 2), n_time_bins=7)
    assert f1.shape == (7, 2, 1, 5)
    np.testing.assert_array_equal(f1[:, :, 0], ref.sum(axis=2))


def test_output_dtype_and_overflow_is_an_error():
    ev = make_events([0] * 300, [0] * 300, np.arange(300), [0] * 300)
    assert to_frame(ev, (1, 1, 1), n_time_bins=2, dtype=np.uint8)[:, 0, 0, 0].tolist() == [150, 150]
    with pytest.raises(OverflowError, match="uint8"):
        to_frame(ev, (1, 1, 1), n_time_bins=1, dtype=np.uint8)
    f = to_frame(ev, (1, 1, 1), n_time_bins=1, dtype=np.float32)
    assert f.dtype == np.float32 and f.item() == 300.0


def test_slice_indices_partition_the_stream():
    rng = np.random.default_rng(4)
    ev = random_stream(rng, 1000, (4, 4, 2), 10_000)
    starts, ends = slice_indices(ev, n_time_bins=9)
    assert starts[0] == 0 and ends[-1] == len(ev) and np.array_equal(starts[1:], ends[:-1])


# ------------------------------------------------------------------------------------------------
# bad input: one clear error
# ------------------------------------------------------------------------------------------------


def test_bad_input_raises_event_error():
    s = (4, 3, 2)
    good = make_events([0, 1, 2, 3, 0, 1], [0, 1, 2, 0, 1, 2], [0, 10, 20, 30, 40, 50],
                       [0, 1, 0, 1, 0, 1])
    to_frame(good, s, n_time_bins=2)
    cases = {
        "x outside": ("x", 2, 4), "y outside": ("y", 5, 3), "negative x": ("x", 0, -1),
        "polarity": ("p", 3, 2), "unsorted": ("t", 3, 5),
    }
    for what, (field, i, value) in cases.items():
        for pos in (i, 0, len(good) - 1):  # inside the windows, at the start, at the end
            bad = good.copy()
            bad[field][pos] = value if field != "t" or pos else 45
            with pytest.raises(EventError, match=field if field != "t" else "sorted"):
                to_frame(bad, s, n_time_bins=2)
            with pytest.raises(EventError):
                # the bad event lies outside the binned span: still reported
                to_frame(bad, s, time_window=5, start_time=12, end_time=22,
                         include_incomplete=False)
            with pytest.raises(EventError):
                to_frame(bad, s, event_count=2, include_incomplete=False)
    with pytest.raises(EventError, match="structured"):
        to_frame(np.zeros((5, 4), np.int64), s, n_time_bins=2)
    with pytest.raises(EventError, match="missing"):
        to_frame(np.zeros(3, [("x", "i8"), ("t", "i8")]), s, n_time_bins=2)
    with pytest.raises(EventError, match="integer"):
        to_frame(np.zeros(3, [("x", "f8"), ("y", "i8"), ("t", "i8"), ("p", "i8")]), s,
                 n_time_bins=2)
    nan_t = np.zeros(3, [("x", "i8"), ("y", "i8"), ("t", "f8"), ("p", "i8")])
    nan_t["t"] = [0.0, np.nan, 2.0]
    with pytest.raises(EventError, match="NaN"):
        to_frame(nan_t, s, n_time_bins=2)
    with pytest.raises(EventError, match="sensor_size"):
        to_frame(good, (4, 3), n_time_bins=2)


def test_bad_slicing_arguments():
    ev = make_events([0], [0], [0], [0])
    for kw in ({}, {"n_time_bins": 2, "time_window": 3}, {"n_time_bins": 0}, {"time_window": 0},
               {"time_window": 10, "overlap": 10}, {"event_count": 5, "overlap": 5},
               {"n_time_bins": 3, "overlap": 0.1}, {"event_count": 3, "start_time": 0},
               {"n_time_bins": 3, "start_time": 5, "end_time": 2}):
        with pytest.raises(ValueError):
            to_frame(ev, (1, 1, 1), **kw)


# ------------------------------------------------------------------------------------------------
# equality with tonic 1.7 where tonic is right
# ------------------------------------------------------------------------------------------------


@SETTINGS
@given(streams(), st.integers(1, 20), st.integers(0, 19), st.booleans())
def test_event_count_equals_tonic(data, n_ev, overlap, incomplete):
    ev, sensor = data
    if len(ev) == 0:
        return
    overlap = overlap % n_ev
    kw = dict(event_count=n_ev, overlap=overlap, include_incomplete=incomplete)
    np.testing.assert_array_equal(to_frame(ev, sensor, **kw), tonic_frames(ev, sensor, **kw))


@SETTINGS
@given(streams(), st.integers(1, 50), st.integers(0, 49), st.booleans())
def test_time_window_equals_tonic_except_the_final_edge(data, tw, overlap, incomplete):
    ev, sensor = data
    if len(ev) == 0:
        return
    overlap = overlap % tw
    kw = dict(time_window=tw, overlap=overlap, include_incomplete=incomplete)
    ours, theirs = to_frame(ev, sensor, **kw), tonic_frames(ev, sensor, **kw)
    span, stride = int(ev["t"][-1] - ev["t"][0]), tw - overlap
    if incomplete and span >= tw and (span - tw) % stride == 0:
        # tonic's ceil() makes one window too few: the events at t == end are lost
        np.testing.assert_array_equal(ours[:-1], theirs)
        np.testing.assert_array_equal(ours[-1].sum(), np.sum(ev["t"] >= ev["t"][-1] - overlap))
    else:
        np.testing.assert_array_equal(ours, theirs)


@SETTINGS
@given(streams(max_events=30), st.integers(1, 30), st.integers(0, 9), st.integers(0, 100),
       st.integers(0, 100))
def test_time_window_with_start_end_time_equals_tonic(data, tw, overlap, start, length):
    ev, sensor = data
    if len(ev) == 0:
        return
    overlap = overlap % tw
    start = int(ev["t"][0]) + start
    kw = dict(time_window=tw, overlap=overlap, include_incomplete=False, start_time=start,
              end_time=start + length)
    np.testing.assert_array_equal(to_frame(ev, sensor, **kw), tonic_frames(ev, sensor, **kw))


@SETTINGS
@given(streams(max_events=40, max_t=30), st.integers(1, 8), st.integers(1, 20))
def test_n_time_bins_equals_tonic_when_duration_divisible(data, n, width):
    """Where D % n == 0 tonic's bins are ours; tonic only loses the events at t == t_last."""
    ev, sensor = data
    if len(ev) < 2:
        return
    ev = ev.copy()
    ev["t"][-1] = ev["t"][0] + n * width  # make D = n * width
    ev["t"] = np.minimum(ev["t"], ev["t"][-1])
    ours, theirs = to_frame(ev, sensor, n_time_bins=n), tonic_frames(ev, sensor, n_time_bins=n)
    np.testing.assert_array_equal(ours[:-1], theirs[:-1])
    np.testing.assert_array_equal(ours[-1] - theirs[-1], count(ev[ev["t"] == ev["t"][-1]], sensor))


def test_large_random_streams_equal_tonic():
    rng = np.random.default_rng(0)
    s = (34, 34, 2)
    ev = random_stream(rng, 20_000, s, 300_001)  # D = 300_000 (or so): force divisibility below
    ev["t"][0], ev["t"][-1] = 0, 300_000
    ours, theirs = to_frame(ev, s, n_time_bins=100), tonic_frames(ev, s, n_time_bins=100)
    np.testing.assert_array_equal(ours[:-1], theirs[:-1])
    assert ours.sum() == len(ev) and theirs.sum() == len(ev) - 1
    for kw in (dict(time_window=7_000, overlap=1_000, include_incomplete=True),
               dict(event_count=1_500, overlap=100, include_incomplete=False)):
        np.testing.assert_array_equal(to_frame(ev, s, **kw), tonic_frames(ev, s, **kw))


# ------------------------------------------------------------------------------------------------
# tonic 1.7 bugs: each test shows our output is right and tonic's is not
# ------------------------------------------------------------------------------------------------


def test_tonic_n_time_bins_drops_last_event():
    ev = make_events([0, 1, 2, 3], [0] * 4, [0, 10, 20, 30], [1] * 4)
    theirs = tonic_frames(ev, (4, 1, 2), n_time_bins=3)
    ours = to_frame(ev, (4, 1, 2), n_time_bins=3)
    assert theirs.sum() == 3 and theirs[:, 1, 0, 3].sum() == 0  # t = 30 lost
    assert ours.sum() == 4 and ours[2, 1, 0].tolist() == [0, 0, 1, 1]


def test_tonic_n_time_bins_drops_tail_when_duration_not_divisible():
    ev = make_events([0] * 11, [0] * 11, np.arange(11), [0] * 11)  # D = 10, n = 3
    theirs = tonic_frames(ev, (1, 1, 1), n_time_bins=3)  # bins of width 10 // 3 = 3: t = 9, 10 lost
    assert theirs[:, 0, 0, 0].tolist() == [3, 3, 3]
    assert to_frame(ev, (1, 1, 1), n_time_bins=3)[:, 0, 0, 0].tolist() == [4, 3, 4]


def test_tonic_returns_empty_frames_for_streams_shorter_than_n_time_bins():
    ev = make_events([0, 1], [0, 0], [100, 105], [1, 0])  # D = 5 us < 10 bins
    assert tonic_frames(ev, (2, 1, 2), n_time_bins=10).sum() == 0
    ours = to_frame(ev, (2, 1, 2), n_time_bins=10)
    assert ours[0, 1, 0, 0] == 1 and ours[9, 0, 0, 1] == 1 and ours.sum() == 2


def test_tonic_time_window_include_incomplete_drops_last_event():
    ev = make_events([0, 1, 2, 3], [0] * 4, [0, 10, 20, 30], [1] * 4)
    theirs = tonic_frames(ev, (4, 1, 2), time_window=10, include_incomplete=True)
    ours = to_frame(ev, (4, 1, 2), time_window=10, include_incomplete=True)
    assert theirs.shape[0] == 3 and theirs.sum() == 3
    assert ours.shape[0] == 4 and ours.sum() == 4 and ours[3, 1, 0, 3] == 1


def test_tonic_n_time_bins_overlap_leaves_the_end_uncovered():
    ev = make_events(np.zeros(1001, int), np.zeros(1001, int), np.arange(1001), np.zeros(1001, int))
    theirs = tonic_frames(ev, (1, 1, 1), n_time_bins=10, overlap=0.5)
    # window 150 us, stride 75 us: the last window ends at 825 us, events 825..1000 never counted
    assert theirs[:, 0, 0, 0].tolist() == [150] * 10
    with pytest.raises(ValueError, match="overlap"):
        to_frame(ev, (1, 1, 1), n_time_bins=10, overlap=0.5)
    # the alternative covers everything: windows [0, 150), [75, 225), ..., [900, 1050) hold each
    # event twice, except t < 75 and t >= 975 (first / last window only)
    assert to_frame(ev, (1, 1, 1), time_window=150, overlap=75).sum() == 2 * 1001 - 75 - 26


def test_tonic_int16_overflows_silently():
    n = 40_000
    ev = make_events([0] * n, [0] * n, np.arange(n), [1] * n)
    theirs = tonic_frames(ev, (1, 1, 2), n_time_bins=1)
    assert theirs.dtype == np.int16 and theirs.sum() != n - 1  # wrapped around
    ours = to_frame(ev, (1, 1, 2), n_time_bins=1)
    assert ours.dtype == np.int32 and ours[0, 1, 0, 0] == n
    with pytest.raises(OverflowError):
        to_frame(ev, (1, 1, 2), n_time_bins=1, dtype=np.int16)


def test_tonic_writes_into_the_input_for_single_polarity_sensors():
    ev = make_events([0, 1], [0, 0], [0, 5], [1, 1])
    tonic.functional.to_frame_numpy(ev, (2, 1, 1), n_time_bins=1)
    assert ev["p"].tolist() == [0, 0]  # tonic changed our array
    ev = make_events([0, 1], [0, 0], [0, 5], [1, 1])
    with pytest.raises(EventError, match="polarity"):  # p = 1 does not exist on a 1-polarity sensor
        to_frame(ev, (2, 1, 1), n_time_bins=1)
    assert ev["p"].tolist() == [1, 1]


def test_tonic_counts_minus_one_polarity_as_on():
    ev = make_events([0, 0], [0, 0], [0, 5], [-1, 1])
    assert tonic_frames(ev, (1, 1, 2), event_count=2)[0, :, 0, 0].tolist() == [0, 2]
    assert to_frame(ev, (1, 1, 2), event_count=2)[0, :, 0, 0].tolist() == [1, 1]


def test_tonic_empty_input_has_width_and_height_swapped():
    theirs = tt.ToFrame((5, 3, 2), n_time_bins=4)(np.empty(0, EVENT_DTYPE))
    assert theirs.shape == (4, 2, 5, 3)  # [T, P, W, H] instead of [T, P, H, W]
    assert to_frame(np.empty(0, EVENT_DTYPE), (5, 3, 2), n_time_bins=4).shape == (4, 2, 3, 5)


# ------------------------------------------------------------------------------------------------
# the dataclass wrapper
# ------------------------------------------------------------------------------------------------


def test_to_frame_transform_is_frozen_and_composes_with_tonic():
    rng = np.random.default_rng(5)
    s = (8, 8, 2)
    ev = random_stream(rng, 500, s, 5_000)
    t = ToFrame(s, time_window=1_000, overlap=200)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.time_window = 5  # type: ignore[misc]
    composed = tt.Compose([tt.Downsample(spatial_factor=0.5), ToFrame((4, 4, 2), n_time_bins=5)])
    f = composed(ev)
    assert f.shape == (5, 2, 4, 4) and f.sum() == len(ev)
    np.testing.assert_array_equal(t(ev), to_frame(ev, s, time_window=1_000, overlap=200))


@pytest.fixture
def shared_data() -> Path:
    root = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    if not root.is_dir():
        pytest.skip("shared/data not available")
    return root


@pytest.mark.shared_data
def test_real_nmnist_recording(shared_data):
    path = shared_data / "tonic" / "sample_nmnist.bin"
    if not path.exists():
        pytest.skip(f"{path} missing")
    ev = tonic.io.read_mnist_file(str(path), dtype=EVENT_DTYPE)
    s = (34, 34, 2)
    f = to_frame(ev, s, n_time_bins=10)
    assert f.sum() == len(ev) > 4000
    kw = dict(time_window=10_000, include_incomplete=False)
    np.testing.assert_array_equal(to_frame(ev, s, **kw), tonic_frames(ev, s, **kw))
