"""Video input and the streaming pixel array (spike.sim.video, spike.sim.pixel, presets)."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from spike.sim import (DVSConfig, SimulationError, VideoError, VideoSimulator, luminance,
                       noise_config, open_video, resize_frames, sensor_resolution, simulate,
                       simulate_video)
from spike.sim.video import LUMA_BT709


def bar_video(n=20, w=64, h=48, speed=2.0, bg=30, fg=200):
    """uint8 RGB frames [N, H, W, 3] of a bright, anti-aliased bar moving right."""
    a = 5.0 + speed * np.arange(n)
    cols = np.arange(w)[None, :]
    cover = np.clip(np.minimum(cols + 1, a[:, None] + 12) - np.maximum(cols, a[:, None]), 0, 1)
    grey = bg + (fg - bg) * cover  # [N, W]
    grey = np.repeat(grey[:, None, :], h, axis=1)
    rgb = np.stack([grey, 0.8 * grey, 0.6 * grey], -1)
    return np.round(rgb).astype(np.uint8)


def write_mp4(path, frames, fps=30):
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.bit_rate = 4_000_000
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)


def test_mp4_round_trips_through_the_reader(tmp_path):
    frames = bar_video()
    write_mp4(tmp_path / "bar.mp4", frames)
    src = open_video(tmp_path / "bar.mp4")
    assert (src.width, src.height, src.kind) == (64, 48, "video") and src.reader.startswith("pyav")
    chunks = list(src.chunks(chunk_frames=7))
    assert [len(c[0]) for c in chunks] == [7, 7, 6]
    got = np.concatenate([c[0] for c in chunks])
    t = np.concatenate([c[1] for c in chunks])
    np.testing.assert_array_equal(t, np.round(np.arange(20) * 1e6 / 30).astype(np.int64))
    want = luminance(frames)
    assert np.abs(got - want).mean() < 4.0  # lossy codec, 0-255 units
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.99


def test_gif_keeps_frames_and_container_times(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    grey = bar_video(n=6)[..., 0]
    rgb = np.repeat(grey[..., None], 3, axis=-1)  # grey GIF: its palette holds the values exactly
    iio.imwrite(tmp_path / "bar.gif", rgb, duration=[40, 40, 80, 40, 40, 40], loop=0)
    (frames, t), = open_video(tmp_path / "bar.gif").chunks(64)
    np.testing.assert_array_equal(t, [0, 40_000, 80_000, 160_000, 200_000, 240_000])
    np.testing.assert_allclose(frames, grey.astype(float), atol=1e-9)


def test_image_folder_and_npy_read_at_fps(tmp_path):
    from PIL import Image

    frames = bar_video(n=5)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:03d}.png")
    np.save(tmp_path / "v.npy", frames)
    for path in (folder, tmp_path / "v.npy"):
        (got, t), = open_video(path, fps=50).chunks(10)
        np.testing.assert_array_equal(t, np.arange(5) * 20_000)
        np.testing.assert_allclose(got, luminance(frames))


def test_luma_is_bt709_and_resize_keeps_flat_fields():
    rgb = np.zeros((1, 1, 3, 3), np.uint8)
    rgb[0, 0, 0], rgb[0, 0, 1], rgb[0, 0, 2] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    np.testing.assert_allclose(luminance(rgb)[0, 0], np.array(LUMA_BT709) * 255)
    flat = np.full((2, 90, 160), 77.0)
    out = resize_frames(flat, (346, 260))  # 16:9 -> 4:3: cropped, then enlarged
    assert out.shape == (2, 260, 346)
    np.testing.assert_allclose(out, 77.0)
    ramp = np.tile(np.arange(100.0), (1, 100, 1))  # [1, 100, 100], values = column
    small = resize_frames(ramp, (10, 10))
    # interior: the mean of each 10-pixel footprint (the filter is cut at the borders)
    np.testing.assert_allclose(small[0, 0, 1:-1], np.arange(1, 9) * 10 + 4.5, atol=1e-9)
    assert sensor_resolution("davis346") == (346, 260)


def test_rgb_and_grey_inputs_give_the_same_events():
    rgb = bar_video().astype(np.float64) / 255.0
    grey = LUMA_BT709[0] * rgb[..., 0] + LUMA_BT709[1] * rgb[..., 1] + LUMA_BT709[2] * rgb[..., 2]
    ts = np.arange(len(rgb)) / 30.0
    cfg = noise_config("noisy")
    a = simulate_video(rgb, ts, cfg, seed=4, unit="s")
    b = simulate_video(grey, ts, cfg, seed=4, unit="s")
    assert len(a) > 500
    np.testing.assert_array_equal(a, b)
    g8 = bar_video()[..., 0]  # uint8: R = G = B
    c = simulate_video(np.repeat(g8[..., None], 3, -1), ts, cfg, seed=4, unit="s")
    d = simulate_video(g8, ts, cfg, seed=4, unit="s")
    np.testing.assert_array_equal(c, d)
    np.testing.assert_array_equal(d, simulate_video(g8, (ts * 1e6).round(), cfg, seed=4))


@pytest.mark.parametrize("cfg", [DVSConfig(), DVSConfig(cutoff_hz=200.0, refractory_us=800),
                                 DVSConfig(leak_rate_hz=20.0, pos_thres=0.15, sigma_thres=0.05)])
def test_without_upsampling_and_shot_noise_equals_simulate(cfg):
    frames = bar_video()[..., 1]
    ts = np.arange(len(frames), dtype=np.int64) * 2000
    ref = simulate(frames, ts, cfg, seed=9)
    assert len(ref) > 300
    np.testing.assert_array_equal(simulate_video(frames, ts, cfg, seed=9, upsample=0), ref)
    np.testing.assert_array_equal(
        simulate_video(frames, ts, cfg, seed=9, upsample=0, chunk_frames=3), ref)
    if cfg.cutoff_hz == 0:  # no low-pass: sub-steps are not needed and not made
        np.testing.assert_array_equal(simulate_video(frames, ts, cfg, seed=9), ref)


@pytest.mark.parametrize("chunk", [1, 2, 7])
def test_chunked_equals_one_shot(chunk):
    rgb = bar_video(n=23, speed=3.0)
    ts = np.arange(23) / 30.0
    cfg = noise_config("noisy", refractory_us=500)
    whole = simulate_video(rgb, ts, cfg, seed=1, unit="s")
    assert len(whole) > 1000 and (whole["p"] == 0).sum() > 100
    parts = simulate_video(rgb, ts, cfg, seed=1, unit="s", chunk_frames=chunk)
    np.testing.assert_array_equal(parts, whole)
    assert np.all(np.diff(whole["t"]) >= 0)
    assert whole["t"].min() > 0 and whole["t"].max() <= round(ts[-1] * 1e6)


def test_static_scene_without_noise_gives_no_events():
    rgb = np.repeat(bar_video(n=1), 12, axis=0)
    for cfg in (noise_config("clean"), DVSConfig(cutoff_hz=30.0, sigma_thres=0.08)):
        sim = VideoSimulator(cfg, seed=0)
        out = [sim.feed(rgb[i:i + 5], np.arange(i, min(i + 5, 12)) / 30, unit="s")
               for i in range(0, 12, 5)]
        assert sum(len(e) for e in out) == 0
        assert sim.n_frames == 12


def test_noisy_preset_leak_and_shot_rates_match_on_a_static_scene():
    cfg = noise_config("noisy")
    h = w = 256
    seconds, fps = 10, 10
    frames = np.full((seconds * fps + 1, h, w), 0.5)
    ev = simulate_video(frames, np.arange(len(frames)) / fps, cfg, seed=3, unit="s",
                        chunk_frames=25)
    pixel_s = h * w * seconds
    on, off = int((ev["p"] == 1).sum()), int((ev["p"] == 0).sum())
    shot = 2 * off / pixel_s  # shot events are ON or OFF with equal odds, leak events ON
    leak = (on - off) / pixel_s
    assert abs(shot - cfg.shot_noise_rate_hz) < 0.1 * cfg.shot_noise_rate_hz, shot
    assert abs(leak - cfg.leak_rate_hz) < 0.1 * cfg.leak_rate_hz, leak
    hist, _ = np.histogram(ev["t"], bins=10, range=(0, seconds * 1e6))
    assert hist.min() > 0.9 * hist.mean()  # spread evenly in time


def test_upsampling_follows_the_photoreceptor_on_a_fast_edge():
    """A sharp edge crosses 4 px per frame at 30 fps; every pixel's log intensity steps from
    L0 to L1 when the edge passes it (at t_x), and the low-pass output then follows
    L1 + (L0 - L1) exp(-(t - t_x) / tau) with tau = 275 / (2 pi f_c (I1 + 20)): the j-th ON
    event is due at t_x + tau ln(dL / (dL - j C))."""
    fps, speed, n, w = 30.0, 4.0, 16, 48
    i0, i1, fc, c = 20.0, 60.0, 10.0, 0.2
    dt = 1e6 / fps
    edge = 2.0 + speed * np.arange(n)  # [N] edge position (px) at each frame
    cols = np.arange(w)[None, :]
    cover = np.clip(edge[:, None] - cols, 0, 1)  # pixels left of the edge are bright
    frames = np.repeat(((i0 + (i1 - i0) * cover) / 255.0)[:, None, :], 2, axis=1)  # [N, 2, W]
    ts = np.round(np.arange(n) * dt).astype(np.int64)
    cfg = DVSConfig(pos_thres=c, neg_thres=c, sigma_thres=0.0, cutoff_hz=fc)
    tau = 275.0 / (2 * math.pi * fc * (i1 + 20.0)) * 1e6  # us
    d_l = math.log(i1) - math.log(i0)
    errors = {}
    for up in (0.0, 0.25):
        ev = simulate_video(frames, ts, cfg, unit="us", upsample=up, seed=0)
        ev = ev[(ev["y"] == 0) & (ev["x"] >= 4) & (ev["x"] < 40)]  # full responses in the video
        assert np.all(ev["p"] == 1)
        err = []
        for x in np.unique(ev["x"]):
            t = np.sort(ev["t"][ev["x"] == x]).astype(float)
            t_x = (x + 0.5 - 2.0) / speed * dt  # the edge passes the pixel centre
            j = np.arange(1, len(t) + 1)
            ok = j * c < d_l
            err.append(t[ok] - (t_x + tau * np.log(d_l / (d_l - j[ok] * c))))
        errors[up] = np.abs(np.concatenate(err))
        # the edge moves: first events of the columns follow it in time
        first = np.array([ev["t"][ev["x"] == x].min() for x in np.unique(ev["x"])])
        assert np.corrcoef(np.unique(ev["x"]), first)[0, 1] > 0.95
    # without sub-steps the filter jumps by a frame at a time (eps = 0.61): events come early
    assert np.median(errors[0.25]) < 0.5 * np.median(errors[0.0]), errors
    assert np.median(errors[0.25]) < 0.5 * dt  # within the frame's own timing uncertainty


def test_memory_does_not_grow_with_video_length(tmp_path):
    def peak(n):
        np.save(tmp_path / f"v{n}.npy", np.repeat(bar_video(n=1, w=128, h=96), n, axis=0))
        src = open_video(tmp_path / f"v{n}.npy", fps=30)
        sim = VideoSimulator(noise_config("clean"))
        tracemalloc.start()
        for f, t in src.chunks(16):
            sim.feed(f / 255.0, t)
        p = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert sim.n_frames == n
        return p

    small, big = peak(40), peak(400)
    assert big < 1.3 * small, (small, big)


@pytest.mark.parametrize("make, match", [
    (lambda p: p.joinpath("bad.mp4").write_bytes(b"not a video at all" * 50), "bad.mp4"),
    (lambda p: np.save(p / "empty.npy", np.zeros((0, 4, 4), np.uint8)), "empty.npy"),
    (lambda p: np.save(p / "rank.npy", np.zeros((3, 4), np.uint8)), "rank.npy"),
    (lambda p: p.joinpath("folder").mkdir(), "folder"),
    (lambda p: None, "missing.mp4"),
])
def test_unreadable_inputs_raise_one_error_naming_the_file(tmp_path, make, match):
    make(tmp_path)
    name = {"bad.mp4": "bad.mp4", "empty.npy": "empty.npy", "rank.npy": "rank.npy",
            "folder": "folder", "missing.mp4": "missing.mp4"}[match]
    with pytest.raises(VideoError, match=match):
        src = open_video(tmp_path / name)
        list(src.chunks(8))


def test_bad_arguments_raise():
    with pytest.raises(SimulationError, match="sensor preset"):
        sensor_resolution("dvs999")
    with pytest.raises(SimulationError, match="noise preset"):
        noise_config("loud")
    with pytest.raises(SimulationError, match="time unit"):
        simulate_video(np.zeros((3, 2, 2)), [0, 1, 2], unit="hours")
    sim = VideoSimulator()
    sim.feed(np.zeros((2, 4, 4)), [0, 10])
    with pytest.raises(SimulationError, match="started with 4x4"):
        sim.feed(np.zeros((1, 5, 4)), [20])
    with pytest.raises(SimulationError, match="across chunks"):
        sim.feed(np.zeros((1, 4, 4)), [10])
    with pytest.raises(SimulationError, match=r"\[N, H, W\] or \[N, H, W, 3\]"):
        sim.feed(np.zeros((1, 4, 4, 2)), [30])
