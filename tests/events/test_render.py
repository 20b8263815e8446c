"""spike.events.render: window colours against to_frame, windows that cover every event once, pictures
and animations that decode back (imageio) with the expected frames, bounded memory on the 1280x720
EVK4 recording, atomic writes and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from spike.core.events import EventError, make_events
from spike.events import denoise, to_frame
from spike.events import render as R

iio = pytest.importorskip("imageio.v3")

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
EVK4 = SHARED / "faery_pypi" / "evt3.raw"


def _ffmpeg():
    pytest.importorskip("imageio_ffmpeg", reason="decoding MP4 needs imageio-ffmpeg")


def _is_on(px) -> bool:
    r, _, b = (int(v) for v in px[:3])
    return r > 100 and r > b + 60


def _is_off(px) -> bool:
    r, _, b = (int(v) for v in px[:3])
    return b > 100 and b > r + 60


def _is_black(px) -> bool:
    return int(np.max(px[:3])) < 30


def _random_events(n=5000, size=(40, 30, 2), span=100_000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, span, n))
    return make_events(rng.integers(0, size[0], n), rng.integers(0, size[1], n), t,
                       rng.integers(0, size[2], n)), size


# -- one window ------------------------------------------------------------------------------------
@pytest.mark.parametrize("pool, n", [(1, 800), (3, 150), (7, 40)])
def test_render_window_matches_to_frame(pool, n):
    ev, size = _random_events(n, (41, 29, 2))
    img = R.render_window(ev, size, pool=pool)
    f = to_frame(ev, size, n_time_bins=1)[0]  # [P, H, W] reference counts
    h, w = f.shape[1:]
    pad = np.zeros((2, -(-h // pool) * pool, -(-w // pool) * pool), np.int64)
    pad[:, :h, :w] = f
    pooled = pad.reshape(2, pad.shape[1] // pool, pool, pad.shape[2] // pool, pool).sum((2, 4))
    assert img.shape == (pooled.shape[1], pooled.shape[2], 3) and img.dtype == np.uint8
    lit = img.max(axis=2) > 0
    np.testing.assert_array_equal(lit, pooled.sum(0) > 0)
    only_on = (pooled[1] > 0) & (pooled[0] == 0)
    only_off = (pooled[0] > 0) & (pooled[1] == 0)
    assert only_on.any() and only_off.any()
    assert all(_is_on(img[y, x]) for y, x in zip(*np.nonzero(only_on)))
    assert all(_is_off(img[y, x]) for y, x in zip(*np.nonzero(only_off)))


def test_render_window_levels_grow_with_count_and_saturate():
    size = (4, 1, 2)
    ev = make_events([0] * 1 + [1] * 4 + [2] * 8 + [3] * 50, [0] * 63, np.arange(63), [1] * 63)
    img = R.render_window(ev, size, saturation=8)
    r = img[0, :, 0].astype(int)
    assert 0 < r[0] < r[1] < r[2] == r[3]  # one event visible, brighter with count, capped at saturation
    assert tuple(R.render_window(ev[:0], size)[0, 0]) == R.BACKGROUND
    ev0 = ev.copy()
    ev0["p"] = 0
    mono = R.render_window(ev0, (4, 1, 1))
    assert mono[0, 3, 0] == mono[0, 3, 1] == mono[0, 3, 2] > 200  # one polarity: grey-white
    with pytest.raises(ValueError, match="saturation"):
        R.render_window(ev, size, saturation=0)


def test_render_window_rejects_events_outside_the_sensor():
    ev = make_events([5], [0], [0], [1])
    with pytest.raises(EventError, match="x outside the sensor"):
        R.render_window(ev, (4, 4, 2))


# -- windows ----------------------------------------------------------------------------------------
def test_consecutive_windows_hold_every_event_once():
    ev, _ = _random_events(3000, span=77_777, seed=3)
    t = ev["t"]
    for n in (1, 3, 10, 64):
        edges = t[0] + np.arange(n + 1) * (t[-1] - t[0]) / n
        lo, hi = R._window_bounds(t, edges[:-1], edges[1:])
        assert lo[0] == 0 and hi[-1] == len(t)
        np.testing.assert_array_equal(lo[1:], hi[:-1])
        ref = np.minimum(((t - t[0]) * n // (t[-1] - t[0])), n - 1)  # to_frame's n_time_bins bin
        np.testing.assert_array_equal(hi - lo, np.bincount(ref, minlength=n))


def test_event_rate_against_numpy():
    ev, _ = _random_events(4000, span=95_000, seed=5)
    edges, on, off = R.event_rate(ev, bin_ms=10)
    t = ev["t"] - ev["t"][0]
    n = int(np.ceil(t[-1] / 10_000))
    assert len(edges) == n + 1 and len(on) == len(off) == n
    b = np.minimum(t // 10_000, n - 1)
    np.testing.assert_allclose(on, np.bincount(b[ev["p"] > 0], minlength=n) / 0.01)
    np.testing.assert_allclose(off, np.bincount(b[ev["p"] <= 0], minlength=n) / 0.01)
    np.testing.assert_allclose(edges, np.arange(n + 1) * 0.01)
    assert (on.sum() + off.sum()) * 0.01 == pytest.approx(len(ev))


# -- pictures ---------------------------------------------------------------------------------------
def test_frame_grid_png(tmp_path):
    ev, size = _random_events()
    out = R.plot_frame_grid(ev, size, tmp_path / "g.png", n_frames=6)
    img = iio.imread(out)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400
    px = img.reshape(-1, img.shape[-1])[:, :3].astype(int)
    assert np.any((px[:, 0] > 200) & (px[:, 2] < 80)) and np.any((px[:, 2] > 200) & (px[:, 0] < 80))
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]  # no temporary file left
    R.plot_frame_grid(ev, size, tmp_path / "w.svg", n_frames=3, window_ms=5)
    assert (tmp_path / "w.svg").read_text().lstrip().startswith("<?xml")


def test_pictures_leave_the_matplotlib_backend_alone(tmp_path):
    code = (f"import matplotlib, sys; b = matplotlib.get_backend(); "
            f"from spike.events import render as R; from spike.core.events import make_events; "
            f"ev = make_events([0, 1], [0, 0], [0, 10], [0, 1]); "
            f"R.plot_frame_grid(ev, (2, 2, 2), r'{tmp_path}/a.png'); R.plot_event_rate(ev, r'{tmp_path}/b.png'); "
            f"R.plot_raster(ev, r'{tmp_path}/c.png'); "
            f"assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'; "
            f"assert matplotlib.get_backend() == b; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "MPLBACKEND": "svg"})


def test_event_rate_and_raster_png(tmp_path):
    ev, _ = _random_events(2000, (64, 1, 2), seed=2)
    a = iio.imread(R.plot_event_rate(ev, tmp_path / "r.png", bin_ms=5))
    b = iio.imread(R.plot_raster(ev, tmp_path / "s.png", sensor_size=(64, 1, 2)))
    for img in (a, b):
        px = img.reshape(-1, img.shape[-1])[:, :3].astype(int)
        assert np.any((px[:, 0] > 200) & (px[:, 2] < 80))  # an ON (amber) curve / spike
        assert np.any((px[:, 2] > 200) & (px[:, 0] < 80))  # an OFF (blue) one
    with pytest.raises(ValueError, match="1-D sensors"):
        R.plot_raster(_random_events()[0], tmp_path / "x.png")
    with pytest.raises(ValueError, match="1-D sensors"):
        R.plot_raster(ev, tmp_path / "x.png", sensor_size=(64, 2, 2))
    assert not (tmp_path / "x.png").exists()


# -- animations -------------------------------------------------------------------------------------
def _marked_events():
    """Events at t = 0, 1, ..., 10 ms; event k at pixel (k, k % 3); even k ON, odd k OFF."""
    k = np.arange(11)
    return make_events(k, k % 3, k * 1000, (k + 1) % 2), (12, 3, 2)


@pytest.mark.parametrize("ext", [".gif", ".mp4"])
def test_animation_decodes_to_the_expected_frames(tmp_path, ext):
    if ext == ".mp4":
        _ffmpeg()
    ev, size = _marked_events()
    s = 8  # 8x8 blocks survive MP4's 4:2:0 chroma
    a = R.animate(ev, size, tmp_path / f"a{ext}", window_ms=2, fps=10, scale=s)
    # windows [0,2) [2,4) [4,6) [6,8) [8,10]: the last closed
    assert a.n_frames == 5 and (a.width, a.height) == (12 * s, 3 * s) and a.window_us == 2000
    frames = iio.imread(a.path, index=None)
    assert frames.shape[:3] == (5, 3 * s, 12 * s)
    for i, f in enumerate(frames):
        for k in range(11):
            px = f[(k % 3) * s + s // 2, k * s + s // 2]
            inside = 2 * i <= k < 2 * i + 2 or (i == 4 and k == 10)
            if not inside:
                assert _is_black(px), (i, k, px)
            elif k % 2 == 0:
                assert _is_on(px), (i, k, px)
            else:
                assert _is_off(px), (i, k, px)
    if ext == ".gif":  # exact palette: every decoded colour is one of the levels' colours
        assert set(map(tuple, frames.reshape(-1, 3))) <= set(map(tuple, R._lut(2)))
    assert [p.name for p in tmp_path.iterdir()] == [f"a{ext}"]


def test_gif_keeps_identical_consecutive_frames(tmp_path):
    ev = make_events([1, 2], [1, 1], [0, 10_000], [1, 0])  # 8 empty windows between the two events
    a = R.animate(ev, (4, 4, 2), tmp_path / "e.gif", window_ms=1, fps=20, scale=1)
    frames = iio.imread(a.path, index=None)
    assert a.n_frames == 10 and frames.shape == (10, 4, 4, 3)
    lit = [int(np.count_nonzero(f.max(axis=-1))) for f in frames]
    assert lit == [1] + [0] * 8 + [1]
    assert _is_on(frames[0][1, 1]) and _is_off(frames[-1][1, 2])
    from PIL import Image

    with Image.open(a.path) as im:  # 20 fps: 50 ms per frame
        assert [im.seek(k) or im.info["duration"] for k in range(im.n_frames)] == [50] * 10


def test_mp4_pads_odd_sizes_and_gif_keeps_them(tmp_path):
    _ffmpeg()
    ev, size = _random_events(500, (35, 33, 2))
    a = R.animate(ev, size, tmp_path / "o.mp4", window_ms=20, scale=1)
    assert (a.width, a.height) == (36, 34)
    assert iio.imread(a.path, index=None).shape[1:3] == (34, 36)
    g = R.animate(ev, size, tmp_path / "o.gif", window_ms=20)  # auto scale: 35 * 8 = 280 px
    assert (g.width, g.height) == (280, 264)
    assert iio.imread(g.path, index=None).shape == (g.n_frames, 264, 280, 3)
    assert g.n_frames == int(np.ceil((ev["t"][-1] - ev["t"][0]) / 20_000))


def test_denoise_removes_an_isolated_event(tmp_path):
    cluster = [(10, 10, 0), (11, 10, 100), (10, 11, 200), (11, 11, 300)]
    lone = [(30, 20, 150)]
    evs = sorted(cluster + lone, key=lambda e: e[2])
    ev = make_events([e[0] for e in evs], [e[1] for e in evs], [e[2] for e in evs], [1] * 5)
    size = (40, 30, 2)
    assert len(denoise(ev, size, 1000)) == 3
    for dn, lone_lit in ((None, True), (1000, False)):
        a = R.animate(ev, size, tmp_path / f"d{dn}.gif", window_ms=1, scale=1, denoise_us=dn)
        f = iio.imread(a.path, index=None)[0]
        assert _is_on(f[11, 11])
        assert _is_on(f[20, 30]) == lone_lit


def test_animation_failure_leaves_nothing(tmp_path, monkeypatch):
    ev, size = _random_events()
    calls = []

    def boom(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    real = R._levels
    monkeypatch.setattr(R, "_levels", boom)
    for ext in (".gif", ".mp4"):
        calls.clear()
        with pytest.raises(KeyboardInterrupt):
            R.animate(ev, size, tmp_path / f"x{ext}", window_ms=5)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("call, match", [
    (lambda ev, s, d: R.animate(ev, s, d / "a.avi"), r"\.gif or \.mp4"),
    (lambda ev, s, d: R.animate(ev, s, d / "no" / "a.gif"), "does not exist"),
    (lambda ev, s, d: R.animate(ev, s, d / "a.gif", window_ms=0), "window_ms must be a positive"),
    (lambda ev, s, d: R.animate(ev, s, d / "a.gif", window_ms=1e-6), "at most"),
    (lambda ev, s, d: R.animate(ev[:0], s, d / "a.gif"), "no events"),
    (lambda ev, s, d: R.animate(ev, s, d / "a.gif", denoise_us=0), "no events to draw after denoising"),
    (lambda ev, s, d: R.plot_frame_grid(ev, s, d / "a.bmp"), "must end in"),
    (lambda ev, s, d: R.plot_frame_grid(ev, s, d / "a.png", n_frames=0), "n_frames"),
    (lambda ev, s, d: R.plot_frame_grid(ev, (40, 30, 3), d / "a.png"), "P in"),
    (lambda ev, s, d: R.plot_event_rate(ev, d / "a.png", bin_ms=-1), "bin_ms"),
    (lambda ev, s, d: R.plot_raster(ev, d / "a.png", time_unit="h"), "time_unit"),
])
def test_bad_input_raises_and_writes_nothing(tmp_path, call, match):
    ev, size = _random_events(300)
    with pytest.raises(ValueError, match=match):
        call(ev, size, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unsorted_events_are_an_error(tmp_path):
    ev = make_events([0, 1], [0, 0], [10, 5], [0, 1])
    with pytest.raises(EventError, match="not sorted"):
        R.animate(ev, (2, 1, 2), tmp_path / "a.gif")
    assert list(tmp_path.iterdir()) == []


# -- the 1280x720 EVK4 recording ------------------------------------------------------------------
@pytest.fixture(scope="module")
def evk4():
    if not EVK4.is_file():
        pytest.skip("real recordings not available (../shared/data is absent)")
    from spike.io import read_events

    return read_events(EVK4)


@pytest.mark.shared_data
def test_evk4_mp4_streams_in_bounded_memory(tmp_path, evk4):
    _ffmpeg()
    ev, size = evk4
    assert size == (1280, 720, 2) and len(ev) == 1_218_618
    tracemalloc.start()
    try:
        a = R.animate(ev, size, tmp_path / "e.mp4", window_ms=200)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    n = int(np.ceil((ev["t"][-1] - ev["t"][0]) / 200_000))
    assert a.n_frames == n == 54 and (a.width, a.height) == (1280, 720)
    # all frames at once would be n * 2 * 720 * 1280 * 4 B = 0.4 GB; one window's arrays are ~30 MB
    assert peak < 150 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    decoded = 0
    for k, frame in enumerate(iio.imiter(a.path)):  # one frame at a time
        assert frame.shape == (720, 1280, 3)
        if k == 0:
            first = frame
        decoded += 1
    assert decoded == n
    f0 = ev[ev["t"] < ev["t"][0] + 200_000]
    counts = np.zeros((720, 1280), int)
    np.add.at(counts, (f0["y"], f0["x"]), 1)
    ys, xs = np.nonzero(counts >= 3)
    lit = first[ys, xs].max(axis=1) > 60
    assert lit.mean() > 0.9  # pixels with events are coloured in the decoded first frame
    empty = first[counts == 0].max(axis=1)
    assert np.median(empty) < 20


@pytest.mark.shared_data
def test_evk4_grid_gif_and_rate(tmp_path, evk4):
    ev, size = evk4
    img = iio.imread(R.plot_frame_grid(ev, size, tmp_path / "g.png", n_frames=4, window_ms=30, denoise_us=10_000))
    assert img.shape[1] > 800
    g = R.animate(ev, size, tmp_path / "g.gif", window_ms=500)
    assert (g.width, g.height) == (640, 360) and g.n_frames == 22
    assert iio.imread(g.path, index=None).shape == (22, 360, 640, 3)
    edges, on, off = R.event_rate(ev, bin_ms=100)
    assert edges[-1] == pytest.approx(10.8)
    assert (on.sum() + off.sum()) * 0.1 == pytest.approx(len(ev))
    assert on.sum() * 0.1 == pytest.approx(np.count_nonzero(ev["p"] == 1))
    iio.imread(R.plot_event_rate(ev, tmp_path / "r.png", bin_ms=100, sensor_size=size))
