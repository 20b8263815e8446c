"""``spike events info|convert|render|bin``: JSON numbers against numpy on the events, convert round
trips, bin's .npz against to_frame, pictures that decode back, and bad input (one line on stderr,
exit code 2, no output file). Small files written here, and the real recordings of ../shared/data
(skipped when absent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spike.cli.main import main
from spike.core.events import make_events
from spike.events import denoise, to_frame
from spike.io import read_events, write_events

iio = pytest.importorskip("imageio.v3")

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
REAL = ["faery_pypi/evt3.raw", "tonic/sample.aedat4", "expelliarmus/NCARS_obj_004397_td.dat",
        "tonic/sample_nmnist.bin", "slayerPytorch/NTIDIGITS_1.bs1"]


def run(capsys, *argv) -> tuple[int, dict | None, str]:
    rc = main(["events", *map(str, argv)])
    cap = capsys.readouterr()
    lines = cap.out.strip().splitlines()
    return rc, (json.loads(lines[-1]) if rc == 0 else None), cap.err


def _events(n=3000, size=(48, 32, 2), seed=0, t0=1_000):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(t0, t0 + 250_000, n))
    return make_events(rng.integers(0, size[0], n), rng.integers(0, size[1], n), t,
                       rng.integers(0, 2, n)), size


@pytest.fixture
def small(tmp_path):
    ev, size = _events()
    return write_events(tmp_path / "small.npz", ev, size), ev, size


def _check_info(r: dict, ev: np.ndarray, size) -> None:
    t = ev["t"].astype(np.int64)
    n_on = int(np.sum(ev["p"] == 1))
    assert r["events"] == len(ev) and r["sensor_size"] == list(size)
    assert r["duration_us"] == int(t.max() - t.min()) and r["duration_s"] == pytest.approx((t[-1] - t[0]) / 1e6)
    assert r["t_first_us"] == int(t.min()) and r["t_last_us"] == int(t.max())
    assert r["on"] == n_on and r["off"] == len(ev) - n_on
    assert r["on_fraction"] == pytest.approx(n_on / len(ev))
    assert r["rate_hz"] == pytest.approx(len(ev) / ((t[-1] - t[0]) / 1e6))


# -- small files ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".npz", ".raw", ".dat", ".aedat4", ".h5"])
def test_info_and_convert_round_trip(tmp_path, capsys, small, ext):
    src, ev, size = small
    rc, r, _ = run(capsys, "info", src)
    assert rc == 0 and r["format"] == "npz" and r["bytes"] == src.stat().st_size
    _check_info(r, ev, size)
    out = tmp_path / f"c{ext}"
    rc, c, _ = run(capsys, "convert", src, out)
    assert rc == 0 and c["events"] == len(ev) and c["out_format"] == {".raw": "evt3", ".h5": "hdf5"}.get(
        ext, ext[1:]) and c["bytes"] == out.stat().st_size
    back, bsize = read_events(out)
    assert tuple(bsize[:2]) == size[:2]
    for f in "xytp":
        np.testing.assert_array_equal(back[f], ev[f], err_msg=f)
    rc, r2, _ = run(capsys, "info", out)
    _check_info(r2, ev, size)


def test_convert_evt2_format_option(tmp_path, capsys, small):
    src, ev, _ = small
    rc, c, _ = run(capsys, "convert", src, tmp_path / "c.raw", "--format", "evt2")
    assert rc == 0 and c["out_format"] == "evt2"
    back, _ = read_events(tmp_path / "c.raw")
    np.testing.assert_array_equal(back["t"], ev["t"])


@pytest.mark.parametrize("opt", [("--n-time-bins", "7"), ("--time-window", "20000"), ("--event-count", "400")])
def test_bin_equals_to_frame(tmp_path, capsys, small, opt):
    src, ev, size = small
    out = tmp_path / "b.npz"
    rc, r, _ = run(capsys, "bin", src, out, *opt)
    assert rc == 0
    key = opt[0][2:].replace("-", "_")
    value = float(opt[1]) if key == "time_window" else int(opt[1])
    ref = to_frame(ev, size, **{key: value})
    with np.load(out) as z:
        np.testing.assert_array_equal(z["frames"], ref)
        assert z["frames"].dtype == ref.dtype
        assert tuple(z["sensor_size"]) == size and str(z["mode"]) == key and z[key] == value
        assert key in z.files and not {"n_time_bins", "time_window", "event_count"} - {key} & set(z.files)
    assert r["shape"] == list(ref.shape) and r["mode"] == key and r[key] == value
    assert r["events_binned"] == int(ref.sum()) and [p.name for p in tmp_path.iterdir()] == ["b.npz", "small.npz"]


def test_render_png_gif_mp4(tmp_path, capsys, small):
    src, ev, size = small
    rc, r, _ = run(capsys, "render", src, tmp_path / "g.png", "--n-frames", "4")
    assert rc == 0 and r["kind"] == "frames" and r["frames"] == 4 and r["events_drawn"] == len(ev)
    assert iio.imread(tmp_path / "g.png").ndim == 3
    rc, r, _ = run(capsys, "render", src, tmp_path / "r.png", "--plot", "rate", "--bin-ms", "5")
    assert rc == 0 and r["kind"] == "rate" and iio.imread(tmp_path / "r.png").ndim == 3
    rc, r, _ = run(capsys, "render", src, tmp_path / "a.gif", "--window-ms", "25", "--denoise", "5000")
    span = ev["t"][-1] - ev["t"][0]
    assert rc == 0 and r["kind"] == "animation" and r["frames"] == int(np.ceil(span / 25_000))
    assert r["events_drawn"] == len(denoise(ev, size, 5000)) < len(ev)
    frames = iio.imread(tmp_path / "a.gif", index=None)
    assert frames.shape == (r["frames"], r["height"], r["width"], 3) and (r["width"], r["height"]) == (48 * 6, 32 * 6)
    pytest.importorskip("imageio_ffmpeg")
    rc, r, _ = run(capsys, "render", src, tmp_path / "a.mp4", "--window-ms", "50", "--scale", "4")
    frames = iio.imread(tmp_path / "a.mp4", index=None)
    assert rc == 0 and frames.shape == (int(np.ceil(span / 50_000)), 128, 192, 3)
    # a pixel with many events in the first window is coloured, ON amber or OFF blue
    w0 = ev[ev["t"] < ev["t"][0] + 50_000]
    on = np.zeros((32, 48), int)
    off = np.zeros((32, 48), int)
    np.add.at(on, (w0["y"][w0["p"] == 1], w0["x"][w0["p"] == 1]), 1)
    np.add.at(off, (w0["y"][w0["p"] == 0], w0["x"][w0["p"] == 0]), 1)
    y, x = np.unravel_index(np.argmax(on - 10 * off), on.shape)
    r_, _, b_ = frames[0][y * 4 + 2, x * 4 + 2].astype(int)
    assert on[y, x] > 0 and off[y, x] == 0 and r_ > 100 and r_ > b_ + 50
    empty = np.repeat(np.repeat(on + off == 0, 4, 0), 4, 1)
    assert np.median(frames[0][empty].max(axis=-1)) < 20


def test_raster_for_a_1d_sensor(tmp_path, capsys):
    ev = make_events(np.arange(64) % 20, np.zeros(64, int), np.arange(64) * 1000, np.arange(64) % 2)
    src = write_events(tmp_path / "c.npz", ev, (20, 1, 2))
    rc, r, _ = run(capsys, "render", src, tmp_path / "s.png")
    assert rc == 0 and r["kind"] == "raster" and iio.imread(tmp_path / "s.png").ndim == 3


# -- bad input --------------------------------------------------------------------------------------
def _bad_cases(d: Path, src: Path):
    (d / "garbage.raw").write_bytes(b"not an event file\n" * 10)
    (d / "trunc.npz").write_bytes(src.read_bytes()[:200])
    return [
        ("info", d / "missing.raw"),
        ("info", d / "garbage.raw"),
        ("info", d / "trunc.npz"),
        ("convert", d / "missing.npz", d / "out.npz"),
        ("convert", src, d / "out.xyz"),
        ("convert", src, d / "nofolder" / "out.npz"),
        ("render", src, d / "out.bmp"),
        ("render", d / "missing.npz", d / "out.png"),
        ("render", src, d / "out.gif", "--window-ms", "0"),
        ("render", src, d / "out.gif", "--denoise", "-3"),
        ("render", src, d / "out.png", "--plot", "raster"),
        ("bin", src, d / "out.npz", "--n-time-bins", "3", "--event-count", "10"),
        ("bin", src, d / "out.npz"),
        ("bin", src, d / "out.npy", "--n-time-bins", "3"),
        ("bin", src, d / "out.npz", "--n-time-bins", "0"),
        ("bin", src, d / "out.npz", "--time-window", "1", "--max-gib", "0.01"),
        ("bin", d / "garbage.raw", d / "out.npz", "--n-time-bins", "3"),
    ]


def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, capsys, small):
    src = small[0]
    cases = _bad_cases(tmp_path, src)
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv in cases:
        rc = main(["events", *map(str, argv)])
        cap = capsys.readouterr()
        assert rc == 2, argv
        assert cap.out == "", argv
        lines = cap.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("spike events: error: "), (argv, cap.err)
        assert sorted(p.name for p in tmp_path.iterdir()) == before, argv  # nothing written, no temp file


def test_console_script_ends_with_one_json_line(tmp_path, small):
    src, ev, _ = small
    spike = Path(sys.executable).with_name("spike")
    cmd = [str(spike)] if spike.exists() else [sys.executable, "-m", "spike.cli.main"]
    p = subprocess.run([*cmd, "events", "info", str(src)], capture_output=True, text=True, check=True,
                       env={**os.environ, "MPLBACKEND": "Agg"})
    assert json.loads(p.stdout.strip().splitlines()[-1])["events"] == len(ev)
    p = subprocess.run([*cmd, "events", "bin", str(src), str(tmp_path / "x.npz"), "--n-time-bins", "2",
                        "--time-window", "5"], capture_output=True, text=True, check=False)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.npz").exists()


# -- real recordings --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("real recordings not available (../shared/data is absent)")
    return SHARED.resolve()


@pytest.mark.shared_data
@pytest.mark.parametrize("rel", REAL)
def test_real_info_and_convert(tmp_path, capsys, data, rel):
    path = data / rel
    if not path.is_file():
        pytest.skip(f"{path} missing")
    ev, size = read_events(path)
    rc, r, _ = run(capsys, "info", path)
    assert rc == 0
    _check_info(r, ev, size)
    out = tmp_path / "c.h5"
    rc, c, _ = run(capsys, "convert", path, out)
    assert rc == 0 and c["in_format"] == r["format"]
    back, bsize = read_events(out)
    assert bsize == size
    for f in "xytp":
        np.testing.assert_array_equal(back[f], ev[f], err_msg=f)


@pytest.mark.shared_data
def test_real_evk4(tmp_path, capsys, data):
    path = data / "faery_pypi" / "evt3.raw"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    ev, size = read_events(path)
    rc, r, _ = run(capsys, "info", path)
    assert (r["events"], r["sensor_size"], r["format"]) == (1_218_618, [1280, 720, 2], "evt3")  # MANIFEST.txt
    assert r["duration_s"] == pytest.approx(10.77, abs=0.01)
    rc, _, _ = run(capsys, "convert", path, tmp_path / "c.aedat4")
    assert rc == 0
    back, _ = read_events(tmp_path / "c.aedat4")
    for f in "xytp":
        np.testing.assert_array_equal(back[f], ev[f], err_msg=f)
    rc, b, _ = run(capsys, "bin", path, tmp_path / "b.npz", "--n-time-bins", "5")
    with np.load(tmp_path / "b.npz") as z:
        np.testing.assert_array_equal(z["frames"], to_frame(ev, size, n_time_bins=5))
    assert b["events_binned"] == len(ev)
    rc, g, _ = run(capsys, "render", path, tmp_path / "g.png")
    assert g["kind"] == "frames" and g["events_drawn"] == len(ev)
    assert rc == 0 and iio.imread(tmp_path / "g.png").shape[1] > 1000
    rc, a, _ = run(capsys, "render", path, tmp_path / "a.gif", "--window-ms", "400", "--denoise", "10000")
    assert rc == 0 and a["frames"] == 27 and (a["width"], a["height"]) == (640, 360)
    assert iio.imread(tmp_path / "a.gif", index=None).shape == (27, 360, 640, 3)
