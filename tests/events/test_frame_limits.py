"""spike.events.to_frame: non-finite timestamps, the output-size limit, and every fast path (serial,
threaded, field dtypes, float/int window arithmetic) against a plain np.add.at reference."""

from __future__ import annotations

from bisect import bisect_left, bisect_right

import numpy as np
import pytest

from spike.core.events import EVENT_DTYPE, EventError, make_events
from spike.events import frames as frames_mod
from spike.events.frames import MAX_FRAME_BYTES, frame_nbytes, to_frame

# ------------------------------------------------------------------------------------------------
# reference: window membership from the definitions, counts with np.add.at
# ------------------------------------------------------------------------------------------------


def ref_counts(ev, sensor, masks):
    w, h, n_pol = sensor
    out = np.zeros((len(masks), n_pol, h, w), np.int64)
    p = ev["p"].astype(np.int64)
    if n_pol == 2:
        p = np.where(p == -1, 0, p)
    y = ev["y"].astype(np.int64) if "y" in ev.dtype.names else np.zeros(len(ev), np.int64)
    for i, m in enumerate(masks):
        np.add.at(out[i], (p[m], y[m], ev["x"][m].astype(np.int64)), 1)
    return out


def ref_time_bins(ev, sensor, n, start=None, end=None):
    t = ev["t"].astype(np.float64)  # exact for the small values used here
    start = t[0] if start is None else start
    end = t[-1] if end is None else end
    inside = (t >= start) & (t <= end)
    if end == start:
        b = np.zeros(len(t), np.int64)
    else:  # bin = min(floor((t - start) * n / D), n - 1), in exact integer arithmetic
        num = (ev["t"].astype(object) - start) * n
        b = np.array([min(int(v // (end - start)), n - 1) for v in num], np.int64)
    return ref_counts(ev, sensor, [inside & (b == i) for i in range(n)])


def ref_time_window(ev, sensor, tw, overlap, incomplete, start=None, end=None):
    t = ev["t"]
    start = t[0] if start is None else start
    end = t[-1] if end is None else end
    stride = tw - overlap
    starts = [start]
    if incomplete:
        while starts[-1] + tw <= end:
            starts.append(starts[-1] + stride)
    else:
        while starts[-1] + stride + tw <= end:
            starts.append(starts[-1] + stride)
    return ref_counts(ev, sensor, [(t >= a) & (t < a + tw) for a in starts])


def ref_event_count(ev, sensor, count, overlap, incomplete):
    n = len(ev)
    stride = count - overlap
    starts = [0]
    while starts[-1] + count < n and (incomplete or starts[-1] + stride + count <= n):
        starts.append(starts[-1] + stride)
    idx = np.arange(n)
    return ref_counts(ev, sensor, [(idx >= a) & (idx < a + count) for a in starts])


def random_events(rng, n, sensor, t_max, dtype=EVENT_DTYPE):
    w, h, n_pol = sensor
    ev = np.empty(n, dtype)
    ev["x"] = rng.integers(0, w, n)
    if "y" in ev.dtype.names:
        ev["y"] = rng.integers(0, h, n)
    ev["p"] = rng.integers(-1 if n_pol == 2 and ev.dtype["p"].kind == "i" else 0, n_pol, n)
    ev["t"] = np.sort(rng.integers(0, t_max + 1, n))
    return ev


# ------------------------------------------------------------------------------------------------
# every path against the reference
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1_000, 300_000])  # serial path, threaded path (>= 200 000 events)
def test_all_modes_equal_the_reference(n):
    rng = np.random.default_rng(n)
    s = (7, 5, 2)
    ev = random_events(rng, n, s, 10_000)
    ev["t"][: n // 50] = ev["t"][n // 50]  # a run of equal times at the start
    for nb in (1, 3, 64, 257):
        np.testing.assert_array_equal(to_frame(ev, s, n_time_bins=nb), ref_time_bins(ev, s, nb))
    for tw, ov, inc in ((100, 0, True), (100, 0, False), (333, 111, True), (250, 249, False)):
        np.testing.assert_array_equal(to_frame(ev, s, time_window=tw, overlap=ov,
                                               include_incomplete=inc),
                                      ref_time_window(ev, s, tw, ov, inc))
    for cnt, ov, inc in ((n // 7, 0, True), (n // 7, 13, False), (n // 3 + 1, n // 4, True)):
        np.testing.assert_array_equal(to_frame(ev, s, event_count=cnt, overlap=ov,
                                               include_incomplete=inc),
                                      ref_event_count(ev, s, cnt, ov, inc))


def test_window_edges_empty_windows_and_cut_spans():
    rng = np.random.default_rng(1)
    s = (4, 3, 2)
    # events exactly on every edge of 10-us windows, and a gap (20..60) of empty windows
    t = np.sort(np.concatenate([np.arange(0, 21, 10), np.arange(60, 101, 10), [59, 61, 99]]))
    ev = make_events(rng.integers(0, 4, len(t)), rng.integers(0, 3, len(t)), t,
                     rng.integers(0, 2, len(t)))
    for kw in ({"time_window": 10, "overlap": 0, "incomplete": True},
               {"time_window": 10, "overlap": 5, "incomplete": False},
               {"time_window": 7, "overlap": 3, "incomplete": True}):
        got = to_frame(ev, s, time_window=kw["time_window"], overlap=kw["overlap"],
                       include_incomplete=kw["incomplete"])
        want = ref_time_window(ev, s, kw["time_window"], kw["overlap"], kw["incomplete"])
        np.testing.assert_array_equal(got, want)
        assert (got.reshape(len(got), -1).sum(1) == 0).sum() >= 2  # windows inside the gap
    for nb in (5, 10, 11, 100):  # D = 100: edges on events, and more bins than microseconds/bin
        np.testing.assert_array_equal(to_frame(ev, s, n_time_bins=nb), ref_time_bins(ev, s, nb))
    # start/end inside the stream, on and off event times
    for a, b in ((10, 60), (11, 59), (0, 200), (59, 59)):
        np.testing.assert_array_equal(to_frame(ev, s, n_time_bins=4, start_time=a, end_time=b),
                                      ref_time_bins(ev, s, 4, a, b))
        np.testing.assert_array_equal(
            to_frame(ev, s, time_window=10, start_time=a, end_time=b, include_incomplete=False),
            ref_time_window(ev, s, 10, 0, False, a, b))


def test_field_dtypes_and_float_windows_on_integer_time():
    rng = np.random.default_rng(2)
    s = (9, 6, 2)
    ev = random_events(rng, 250_000, s, 50_000)
    ref = ref_time_window(ev, s, 1000, 0, True)
    for dt in ([("x", "u2"), ("y", "i2"), ("t", "i8"), ("p", "i1")],
               [("t", "<f8"), ("x", "i4"), ("y", "u1"), ("p", "i8")],
               [("x", "i8"), ("y", "i8"), ("t", "i4"), ("p", "i8")],
               [("x", ">i8"), ("y", ">i8"), ("t", ">i8"), ("p", ">i8")]):
        other = np.empty(len(ev), dt)
        for f in ("x", "y", "t", "p"):
            other[f] = ev[f]
        np.testing.assert_array_equal(to_frame(other, s, time_window=1000), ref, err_msg=str(dt))
    # fractional windows and start/end on integer t: integer thresholds, no conversion of t
    got = to_frame(ev, s, time_window=999.5, overlap=0.25, start_time=10.5, end_time=40_000.5)
    want = ref_time_window(ev, s, 999.5, 0.25, True, 10.5, 40_000.5)
    np.testing.assert_array_equal(got, want)


def test_search_matches_numpy_including_extremes():
    t = np.array([-(2**63), -5, 0, 0, 3, 2**53 + 1, 2**63 - 1], np.int64)
    v = np.array([-np.inf, -1e30, -(2.0**63), -5.5, -5.0, -0.5, 0.0, 2.5, 3.0, 2.0**53, 2.0**62,
                  2.0**63, 1e30, np.inf])
    for side in ("left", "right"):
        # Python compares int with float exactly (numpy would round the int to float64)
        bisect = bisect_left if side == "left" else bisect_right
        want = [bisect(t.tolist(), float(x)) for x in v]
        assert frames_mod._search(t, v, side).tolist() == want, side


@pytest.mark.parametrize("mode", ["n_time_bins", "time_window", "event_count"])
def test_bad_events_are_found_on_the_threaded_path(mode):
    rng = np.random.default_rng(3)
    s = (8, 8, 2)
    good = random_events(rng, 400_000, s, 1_000_000)
    kw = {"n_time_bins": 37, "time_window": 20_000, "event_count": 9_999}[mode]
    to_frame(good, s, **{mode: kw})
    for pos in (0, 123_457, len(good) - 1):
        for field, value, match in (("x", 8, "x"), ("y", -1, "y"), ("p", 2, "polarity"),
                                    ("t", -1, "sorted")):
            bad = good.copy()
            bad[field][pos] = value if not (field == "t" and pos == 0) else 2_000_000
            with pytest.raises(EventError, match=match):
                to_frame(bad, s, **{mode: kw})


# ------------------------------------------------------------------------------------------------
# non-finite timestamps
# ------------------------------------------------------------------------------------------------


def float_events(t):
    ev = np.zeros(len(t), [("x", "i8"), ("y", "i8"), ("t", "f8"), ("p", "i8")])
    ev["t"] = t
    return ev


@pytest.mark.parametrize("value, text", [(np.inf, r"\+inf"), (-np.inf, "-inf"), (np.nan, "NaN")])
@pytest.mark.parametrize("pos", [0, 2, 4])
def test_non_finite_time_is_an_event_error_naming_the_index(value, text, pos):
    t = [0.0, 1.0, 2.0, 3.0, 4.0]
    t[pos] = value
    ev = float_events(t)
    for kw in ({"n_time_bins": 2}, {"time_window": 1.5}, {"event_count": 2}):
        with pytest.raises(EventError, match=rf"events: t contains {text} at index {pos}"):
            to_frame(ev, (1, 1, 1), **kw)


def test_non_finite_slicing_arguments_are_value_errors():
    ev = float_events([0.0, 1.0])
    for kw in ({"time_window": np.inf}, {"n_time_bins": 2, "end_time": np.inf},
               {"time_window": 1.0, "start_time": np.nan}):
        with pytest.raises(ValueError, match="finite"):
            to_frame(ev, (1, 1, 1), **kw)


# ------------------------------------------------------------------------------------------------
# output size limit
# ------------------------------------------------------------------------------------------------


def test_huge_span_is_refused_before_allocating():
    ev = make_events([0, 0], [0, 0], [0, 2**62], [0, 0])
    with pytest.raises(ValueError, match=r"need 512.0 ZiB.*max_bytes") as info:
        to_frame(ev, (128, 128, 2), time_window=1)
    assert "4.0 GiB" in str(info.value)
    assert frame_nbytes(ev, (128, 128, 2), time_window=1) == (2**62 + 1) * 2 * 128 * 128 * 4


def test_unsorted_events_give_the_event_error_not_the_size_error():
    ev = make_events([0, 0, 0], [0, 0, 0], [-(2**60), 5, 3], [0, 0, 0])
    with pytest.raises(EventError, match="sorted"):
        to_frame(ev, (128, 128, 2), time_window=1)


def test_evk4_request_passes_by_default_and_the_limit_is_adjustable(monkeypatch):
    s = (1280, 720, 2)
    ev = make_events([0, 1279, 640], [0, 719, 360], [0, 500_000, 1_000_000], [0, 1, -1])
    need = frame_nbytes(ev, s, n_time_bins=200)
    assert need == 200 * 2 * 720 * 1280 * 4 == 1_474_560_000 < MAX_FRAME_BYTES
    f = to_frame(ev, s, n_time_bins=200)  # 1.47 GB, lazily zeroed: only three pages touched
    assert f.shape == (200, 2, 720, 1280) and f.nbytes == need
    assert f[0, 0, 0, 0] == 1 and f[100, 1, 719, 1279] == 1 and f[199, 0, 360, 640] == 1
    del f
    with pytest.raises(ValueError, match=r"1\.4 GiB.*max_bytes=1\.0 GiB"):
        to_frame(ev, s, n_time_bins=200, max_bytes=2**30)
    assert to_frame(ev, s, n_time_bins=2, max_bytes=frame_nbytes(ev, s, n_time_bins=2)).sum() == 3
    with pytest.raises(ValueError, match="max_bytes"):
        to_frame(ev, s, n_time_bins=2, max_bytes=frame_nbytes(ev, s, n_time_bins=2) - 1)
    monkeypatch.setattr(frames_mod, "MAX_FRAME_BYTES", 10**6)
    with pytest.raises(ValueError, match="max_bytes"):
        to_frame(ev, s, n_time_bins=2)


def test_int64_accumulator_counts_against_the_limit():
    ev = make_events([0] * 300, [0] * 300, np.arange(300), [0] * 300)
    s = (100, 100, 1)
    small = frame_nbytes(ev, s, n_time_bins=1, dtype=np.uint8)  # 10 kB of uint8 output
    assert small == 10_000
    # 300 events may land on one pixel: uint8 counts need an int64 accumulator (8x more)
    with pytest.raises(ValueError, match="accumulator"):
        to_frame(ev, s, n_time_bins=1, dtype=np.uint8, max_bytes=small * 4)
    with pytest.raises(OverflowError):
        to_frame(ev, s, n_time_bins=1, dtype=np.uint8, max_bytes=small * 9)


def test_frame_nbytes_matches_to_frame_for_every_input_form():
    rng = np.random.default_rng(4)
    s = (6, 4, 2)
    ev = random_events(rng, 500, s, 9_999)
    ts = (int(ev["t"][0]), int(ev["t"][-1]))
    for kw in ({"n_time_bins": 13}, {"time_window": 700, "overlap": 100},
               {"time_window": 700, "include_incomplete": False, "start_time": 50, "end_time": 5_000},
               {"event_count": 77, "overlap": 7}, {"n_time_bins": 3, "dtype": np.float64}):
        want = to_frame(ev, s, **kw).nbytes
        assert frame_nbytes(ev, s, **kw) == want
        assert frame_nbytes(ev["t"], s, **kw) == want
        assert frame_nbytes((*ts, len(ev)), s, **kw) == want
        if "event_count" not in kw:
            assert frame_nbytes(ts, s, **kw) == want
    with pytest.raises(ValueError, match="n_events"):
        frame_nbytes(ts, s, event_count=5)
    with pytest.raises(ValueError, match="finite"):
        frame_nbytes((0.0, np.inf), s, n_time_bins=2)


def test_toframe_wrapper_forwards_the_size_limit():
    from spike.events import ToFrame

    ev = np.zeros(2, EVENT_DTYPE)
    ev["t"] = [0, 10**9]
    with pytest.raises(ValueError, match="max_bytes|limit"):
        ToFrame((1280, 720, 2), time_window=1.0, max_bytes=1 << 20)(ev)
    assert ToFrame((4, 4, 2), n_time_bins=2, max_bytes=1 << 20)(ev).shape == (2, 2, 4, 4)
