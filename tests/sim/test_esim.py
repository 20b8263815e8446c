"""Physics of the ESIM/v2e frame-to-event simulator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spike.core.events import EVENT_DTYPE, validate_events
from spike.sim.esim import DVSConfig, SimulationError, lin_log, simulate

NO_MISMATCH = DVSConfig(sigma_thres=0.0)


def moving_bar(n_frames=21, width=40, height=6, start=5.0, travel=10.0, bar=14.0, bg=0.1,
               fg=0.9):
    """A bright, anti-aliased vertical bar moving right by ``travel`` pixels.

    Returns frames ``[N, H, W]`` in [0, 1] and timestamps (1 ms apart).
    """
    a = start + travel * np.linspace(0.0, 1.0, n_frames)  # [N] left edge
    cols = np.arange(width)[None, :]  # [1, W] pixel spans [c, c + 1]
    cover = np.clip(np.minimum(cols + 1, a[:, None] + bar) - np.maximum(cols, a[:, None]), 0, 1)
    frames = bg + (fg - bg) * cover  # [N, W]
    frames = np.repeat(frames[:, None, :], height, axis=1)  # [N, H, W]
    return frames, np.arange(n_frames, dtype=np.int64) * 1000


def test_lin_log_is_linear_then_log_and_continuous():
    thr = 20.0
    x = np.array([0.0, 5.0, 10.0, 20.0, 40.0, 255.0])
    y = lin_log(x, thr)
    np.testing.assert_allclose(y[:4], x[:4] * math.log(thr) / thr, atol=1e-8)
    np.testing.assert_allclose(y[3:], np.log(x[3:]), atol=1e-8)
    eps = 1e-6
    assert abs(lin_log(np.array(thr + eps), thr) - lin_log(np.array(thr - eps), thr)) < 1e-6
    dense = lin_log(np.linspace(0, 255, 10001), thr)
    assert np.all(np.diff(dense) >= 0)


@pytest.mark.parametrize("dtype", [np.uint8, np.float64, np.float32])
def test_constant_frames_without_noise_give_no_events(dtype):
    rng = np.random.default_rng(0)
    img = rng.random((12, 16))
    frame = (img * 255).astype(np.uint8) if dtype == np.uint8 else img.astype(dtype)
    frames = np.repeat(frame[None], 8, axis=0)
    ev = simulate(frames, np.arange(8) * 1000, DVSConfig(), seed=3)
    assert ev.dtype == EVENT_DTYPE and len(ev) == 0


def test_moving_bar_events_only_where_edges_cross_with_right_polarity():
    frames, ts = moving_bar()
    ev = simulate(frames, ts, DVSConfig(), seed=0)
    validate_events(ev, (40, 6, 2))
    on, off = ev[ev["p"] == 1], ev[ev["p"] == 0]
    assert len(on) > 50 and len(off) > 50
    # the leading edge (dark -> bright) sweeps columns 19..29, the trailing one 5..15
    assert on["x"].min() >= 19 and on["x"].max() <= 29
    assert off["x"].min() >= 5 and off["x"].max() <= 15
    assert set(range(20, 29)) <= set(on["x"].tolist())
    assert set(range(6, 15)) <= set(off["x"].tolist())
    assert set(ev["y"].tolist()) == set(range(6))
    # the edge moves right: column and time increase together
    assert np.corrcoef(on["x"], on["t"])[0, 1] > 0.9
    assert np.corrcoef(off["x"], off["t"])[0, 1] > 0.9


def test_halving_threshold_doubles_event_count():
    frames, ts = moving_bar(height=16)
    n1 = len(simulate(frames, ts, DVSConfig(pos_thres=0.2, neg_thres=0.2, sigma_thres=0.02), 1))
    n2 = len(simulate(frames, ts, DVSConfig(pos_thres=0.1, neg_thres=0.1, sigma_thres=0.01), 1))
    assert 1.8 < n2 / n1 < 2.2, (n1, n2)


def test_crossing_times_are_linearly_interpolated():
    # one pixel, log intensity rising by 0.9 then falling by 0.75 (C = 0.2, no mismatch)
    log0 = math.log(50.0)
    logs = np.array([log0, log0 + 0.9, log0 + 0.15])
    frames = (np.exp(logs) / 255.0)[:, None, None]  # [3, 1, 1]
    ev = simulate(frames, np.array([0, 1000, 2000]), NO_MISMATCH)
    got = list(zip(ev["t"].tolist(), ev["p"].tolist()))
    # ON at 0.2 k / 0.9 of the first interval; OFF at ref 0.6, 0.4, 0.2 while falling from 0.9
    assert got == [(222, 1), (444, 1), (667, 1), (889, 1), (1400, 0), (1667, 0), (1933, 0)]


def test_timestamps_sorted_inside_the_video_and_interpolated():
    frames, ts = moving_bar()
    ev = simulate(frames, ts, DVSConfig(), seed=0)
    assert np.all(np.diff(ev["t"]) >= 0)
    assert ev["t"].min() > ts[0] and ev["t"].max() <= ts[-1]
    # interpolation: events are spread inside the intervals, not stacked on frame times
    assert np.isin(ev["t"], ts).mean() < 0.1
    assert len(np.unique(ev["t"])) > 5 * len(ts)


def _reference_esim(frames, ts, config, seed):
    """Vectorised numpy oracle (no noise, no refractory): per interval and pixel, the ESIM
    crossings ``ref + j C`` of the linear signal, with v2e's threshold draws."""
    rng = np.random.default_rng(seed)
    h, w = frames.shape[1:]
    c_on = np.maximum(rng.normal(config.pos_thres, config.sigma_thres, (h, w)), config.min_thres)
    c_off = np.maximum(rng.normal(config.neg_thres, config.sigma_thres, (h, w)),
                       config.min_thres)
    logf = lin_log(frames * 255.0, config.lin_log_threshold)
    ref = logf[0].copy()
    rows = []
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(len(ts) - 1):
        l0, l1 = logf[k], logf[k + 1]
        for sign, c, pol in ((1, c_on, 1), (-1, c_off, 0)):
            n = np.where(sign * (l1 - ref) > 0, np.floor(sign * (l1 - ref) / c), 0).astype(int)
            for j in range(1, n.max(initial=0) + 1):
                m = n >= j
                lev = ref[m] + sign * j * c[m]
                t = ts[k] + (lev - l0[m]) / (l1[m] - l0[m]) * (ts[k + 1] - ts[k])
                t = np.clip(np.round(t), ts[k] + 1, ts[k + 1]).astype(np.int64)
                rows.append(np.stack([xx[m], yy[m], t, np.full(m.sum(), pol)], 1))
            ref = ref + sign * n * c
    out = np.concatenate(rows) if rows else np.zeros((0, 4), np.int64)
    return out[np.lexsort((out[:, 3], out[:, 0], out[:, 1], out[:, 2]))]


def test_matches_vectorised_reference():
    rng = np.random.default_rng(7)
    base = rng.random((1, 10, 12))
    phase = rng.random((1, 10, 12)) * 6.28
    t = np.linspace(0, 1, 15)[:, None, None]
    frames = np.clip(base * (0.55 + 0.45 * np.sin(6.0 * t + phase)), 0.0, 1.0)  # [15, 10, 12]
    ts = np.arange(15, dtype=np.int64) * 3000
    cfg = DVSConfig(pos_thres=0.15, neg_thres=0.25, sigma_thres=0.04)
    ev = simulate(frames, ts, cfg, seed=11)
    got = np.stack([ev["x"], ev["y"], ev["t"], ev["p"]], 1)
    got = got[np.lexsort((got[:, 3], got[:, 0], got[:, 1], got[:, 2]))]
    want = _reference_esim(frames, ts, cfg, seed=11)
    assert len(want) > 200
    np.testing.assert_array_equal(got, want)


def test_uint8_and_float_frames_agree():
    frames, ts = moving_bar()
    u8 = np.round(frames * 255).astype(np.uint8)
    a = simulate(u8, ts, DVSConfig(), seed=5)
    b = simulate(u8 / 255.0, ts, DVSConfig(), seed=5)
    np.testing.assert_array_equal(a, b)


def test_refractory_period_is_respected():
    frames, ts = moving_bar(bg=0.01, fg=1.0, travel=4.0)  # steep edge: many events per pixel
    free = simulate(frames, ts, DVSConfig(), seed=2)
    cfg = DVSConfig(refractory_us=2500)
    ev = simulate(frames, ts, cfg, seed=2)
    assert 0 < len(ev) < len(free)
    order = np.lexsort((ev["t"], ev["x"], ev["y"]))
    e = ev[order]
    same = (np.diff(e["x"]) == 0) & (np.diff(e["y"]) == 0)
    gaps = np.diff(e["t"])[same]
    assert gaps.size > 0 and gaps.min() >= 2500
    # without refractoriness the same pixels fire faster than that
    f = free[np.lexsort((free["t"], free["x"], free["y"]))]
    same_f = (np.diff(f["x"]) == 0) & (np.diff(f["y"]) == 0)
    assert np.diff(f["t"])[same_f].min() < 2500


def _noisy(seed, shot=20.0, leak=5.0):
    frames = np.full((11, 32, 32), 0.5)
    ts = np.arange(11, dtype=np.int64) * 100_000  # 1 s of constant light
    return simulate(frames, ts, DVSConfig(shot_noise_rate_hz=shot, leak_rate_hz=leak), seed)


def test_same_seed_same_events_different_seed_different():
    a, b, c = _noisy(1), _noisy(1), _noisy(2)
    assert len(a) > 1000
    np.testing.assert_array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)
    g1, g2 = np.random.default_rng(9), np.random.default_rng(9)
    frames, ts = moving_bar()
    np.testing.assert_array_equal(simulate(frames, ts, DVSConfig(), g1),
                                  simulate(frames, ts, DVSConfig(), g2))


def test_shot_noise_rate_and_polarity_balance():
    ev = _noisy(4, shot=20.0, leak=0.0)
    expected = 20.0 * 32 * 32 * 1.0
    assert abs(len(ev) - expected) < 0.05 * expected
    assert abs(ev["p"].mean() - 0.5) < 0.03
    assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].min() > 0 and ev["t"].max() <= 1_000_000


def test_leak_noise_gives_on_events_at_the_leak_rate():
    ev = _noisy(4, shot=0.0, leak=5.0)
    assert np.all(ev["p"] == 1)
    expected = 5.0 * 32 * 32 * 1.0
    assert abs(len(ev) - expected) < 0.1 * expected
    # desynchronised phases: events spread over the whole second
    hist, _ = np.histogram(ev["t"], bins=10, range=(0, 1_000_000))
    assert hist.min() > 0.5 * hist.mean()


def test_photoreceptor_lowpass_delays_the_response():
    frames = np.full((30, 4, 4), 0.1)
    frames[1:] = 0.9  # a step after the first frame
    ts = np.arange(30, dtype=np.int64) * 1000
    fast = simulate(frames, ts, DVSConfig(), seed=0)
    slow = simulate(frames, ts, DVSConfig(cutoff_hz=30.0), seed=0)
    assert fast["t"].max() <= 1000  # unfiltered: all in the step's interval
    assert slow["t"].mean() > 3000 and np.all(slow["p"] == 1)
    assert len(slow) >= 0.7 * len(fast)


def test_input_is_not_mutated():
    frames, ts = moving_bar()
    f0, t0 = frames.copy(), ts.copy()
    simulate(frames, ts, DVSConfig(shot_noise_rate_hz=5.0), seed=0)
    np.testing.assert_array_equal(frames, f0)
    np.testing.assert_array_equal(ts, t0)


GOOD = np.full((3, 4, 5), 0.5)
GOOD_T = np.array([0, 10, 20])


@pytest.mark.parametrize("frames, ts, match", [
    (np.full((4, 5), 0.5), GOOD_T, "shape"),
    (np.full((3, 4, 5, 1), 0.5), GOOD_T, "shape"),
    (np.full((1, 4, 5), 0.5), np.array([0]), "at least 2"),
    (np.where(np.arange(60).reshape(3, 4, 5) == 7, np.nan, 0.5), GOOD_T, "NaN"),
    (np.full((3, 4, 5), 1.5), GOOD_T, r"\[0, 1\]"),
    (np.full((3, 4, 5), 100, dtype=np.int16), GOOD_T, "dtype"),
    (GOOD, np.array([0, 10, 10]), "strictly increasing"),
    (GOOD, np.array([0, 20, 10]), "strictly increasing"),
    (GOOD, np.array([0, 10]), "one per frame"),
    (GOOD, np.array([0.0, 10.5, 20.0]), "whole microseconds"),
])
def test_bad_input_raises_one_clear_error(frames, ts, match):
    with pytest.raises(SimulationError, match=match):
        simulate(frames, ts, DVSConfig())


@pytest.mark.parametrize("kwargs", [
    {"pos_thres": -0.1}, {"neg_thres": 0.0}, {"sigma_thres": -1.0}, {"pos_thres": float("nan")},
    {"refractory_us": -5}, {"shot_noise_rate_hz": -1.0}, {"leak_rate_hz": float("inf")},
    {"refractory_us": 2.5}, {"lin_log_threshold": 0.0},
])
def test_bad_config_raises(kwargs):
    with pytest.raises(SimulationError):
        DVSConfig(**kwargs)
    assert issubclass(SimulationError, ValueError)
