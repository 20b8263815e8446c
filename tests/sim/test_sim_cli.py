"""``spike simulate`` (spike.cli.simulate) through a small argparse parser."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytest

from spike.cli.simulate import add_parsers, cmd_simulate
from spike.io import read_events


def parse(*argv):
    parser = argparse.ArgumentParser(prog="spike")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["simulate", *map(str, argv)])


def moving_gif(path, n=12, w=80, h=60):
    iio = pytest.importorskip("imageio.v3")
    x = np.arange(w)[None, None, :]
    frames = [np.broadcast_to(np.where((x > 5 + 4 * i) & (x < 25 + 4 * i), 220, 40), (1, h, w))[0]
              for i in range(n)]
    rgb = np.repeat(np.stack(frames).astype(np.uint8)[..., None], 3, axis=-1)
    iio.imwrite(path, rgb, duration=40, loop=0)  # GIF times are in 10 ms units
    return path


@pytest.mark.parametrize("out_name", ["ev.npz", "ev.aedat4", "ev.h5"])
def test_simulate_writes_events_and_one_json_summary(tmp_path, out_name):
    src = moving_gif(tmp_path / "bar.gif")
    res = cmd_simulate(parse(src, tmp_path / out_name, "--preset", "dvs128", "--noise", "noisy",
                             "--chunk", "5"))
    json.dumps(res)  # serialisable: main() prints it as the last line
    ev, sensor = read_events(tmp_path / out_name)
    assert tuple(sensor)[:2] == (128, 128) and res["sensor"] == [128, 128, 2]
    assert len(ev) == res["events"] > 1000
    assert res["on"] + res["off"] == res["events"] and 0.2 < res["on_fraction"] < 0.8
    assert res["frames"] == 12 and res["reader"].startswith("pyav")
    assert res["duration_s"] == pytest.approx(11 * 0.040)
    assert res["rate_hz"] == pytest.approx(res["events"] / res["duration_s"])
    assert ev["x"].max() < 128 and ev["y"].max() < 128


def test_cli_result_equals_the_library_and_options_reach_the_model(tmp_path):
    from spike.sim import noise_config, simulate_video

    frames = (np.random.default_rng(0).random((6, 20, 30)) * 255).astype(np.uint8)
    np.save(tmp_path / "v.npy", frames)
    res = cmd_simulate(parse(tmp_path / "v.npy", tmp_path / "a.npz", "--fps", "100",
                             "--threshold", "0.3", "--seed", "2", "--chunk", "4"))
    ev, _ = read_events(tmp_path / "a.npz")
    want = simulate_video(frames, np.arange(6) * 10_000, noise_config("clean", pos_thres=0.3,
                                                                     neg_thres=0.3), seed=2)
    assert res["events"] == len(want) > 100
    np.testing.assert_array_equal(np.stack([ev[f] for f in "xytp"]),
                                  np.stack([want[f] for f in "xytp"]))


@pytest.mark.parametrize("setup, out, match", [
    (lambda p: p.joinpath("bad.mp4").write_bytes(b"garbage" * 100), "o.npz", "bad.mp4"),
    (lambda p: np.save(p / "zero.npy", np.zeros((0, 4, 4), np.uint8)), "o.npz", "zero.npy"),
    (lambda p: np.save(p / "one.npy", np.zeros((1, 4, 4), np.uint8)), "o.npz", "one.npy"),
    (lambda p: np.save(p / "ok.npy", np.zeros((3, 4, 4), np.uint8)), "o.txt", "o.txt"),
])
def test_bad_input_is_one_error_naming_the_file_and_nothing_is_written(tmp_path, setup, out,
                                                                        match):
    setup(tmp_path)
    name = {"bad.mp4": "bad.mp4", "zero.npy": "zero.npy", "one.npy": "one.npy",
            "o.txt": "ok.npy"}[match]
    before = set(tmp_path.iterdir())
    with pytest.raises(ValueError, match=match):
        cmd_simulate(parse(tmp_path / name, tmp_path / out))
    assert set(tmp_path.iterdir()) == before  # no output, no temporary file


def test_unknown_preset_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        parse("v.mp4", "o.npz", "--preset", "dvs9000")
    assert "dvs9000" in capsys.readouterr().err


def test_cochlea_without_its_module_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    monkeypatch.setitem(sys.modules, "spike.sim.cochlea", None)  # import fails
    with pytest.raises(ValueError, match="spike.sim.cochlea"):
        cmd_simulate(parse(tmp_path / "a.wav", tmp_path / "o.h5", "--cochlea"))


def test_cochlea_calls_audio_to_shd(tmp_path, monkeypatch):
    import types

    calls = {}
    fake = types.ModuleType("spike.sim.cochlea")

    def audio_to_shd(inputs, out, *, labels=None, seed=0):
        calls.update(inputs=inputs, out=out, seed=seed)
        return {"files": len(inputs)}

    fake.audio_to_shd = audio_to_shd
    monkeypatch.setitem(sys.modules, "spike.sim.cochlea", fake)
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    assert cmd_simulate(parse(tmp_path / "a.wav", tmp_path / "o.h5", "--cochlea",
                              "--seed", "3")) == {"files": 1}
    assert calls["inputs"] == [tmp_path / "a.wav"] and calls["seed"] == 3


def _tones(root, classes=(("low", 300.0), ("high", 2000.0)), n=2, fs=44100):
    import soundfile as sf

    for name, f in classes:
        (root / name).mkdir(parents=True)
        t = np.arange(int(0.15 * fs)) / fs
        for k in range(n):
            sf.write(str(root / name / f"{k}.wav"), 0.3 * np.sin(2 * np.pi * f * t), fs)


def test_cochlea_folder_becomes_one_shd_file_labelled_by_class_folders(tmp_path):
    import h5py

    _tones(tmp_path / "audio")
    out = tmp_path / "set.h5"
    r = cmd_simulate(parse(tmp_path / "audio", out, "--cochlea"))
    assert r["files"] == 4 and r["events"] > 0 and out.is_file()
    with h5py.File(out) as f:
        keys = [k.decode() if isinstance(k, bytes) else k for k in f["extra/keys"][:]]
        assert keys == ["high", "low"] and f["labels"][:].tolist() == [0, 0, 1, 1]
        assert len(f["spikes/times"]) == 4
    # labels from a CSV instead of the folder names
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label\n0.wav,5\n1.wav,6\n")
    r2 = cmd_simulate(parse(tmp_path / "audio", tmp_path / "csv.h5", "--cochlea", "--labels", str(csv)))
    with h5py.File(tmp_path / "csv.h5") as f:
        assert sorted(set(f["labels"][:].tolist())) == [5, 6] and r2["files"] == 4


@pytest.mark.parametrize("out,match", [("x.npz", "must end in .h5"), ("x.h5", "no audio files")])
def test_cochlea_bad_output_or_empty_folder_is_one_error(tmp_path, out, match):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=match):
        cmd_simulate(parse(tmp_path / "empty", tmp_path / out, "--cochlea"))
    assert not (tmp_path / out).exists()


def _long_video(path, n, w=64, h=48):
    """A drifting grating: every frame moves every edge, so events grow with the length."""
    x = np.arange(w)[None, None, :] + np.arange(h)[None, :, None] * 0.5
    t = np.arange(n)[:, None, None]
    frames = (127 + 100 * np.sin(2 * np.pi * (x - 1.5 * t) / 16)).astype(np.uint8)
    np.save(path, frames)
    return path


def test_simulate_streams_to_the_file_memory_flat_and_file_equals_one_shot(tmp_path):
    import tracemalloc

    from spike.io import write_events
    from spike.sim import noise_config, simulate_video

    def run(n, out):
        src = _long_video(tmp_path / f"v{n}.npy", n)
        tracemalloc.start()
        try:
            res = cmd_simulate(parse(src, out, "--fps", "100", "--noise", "noisy", "--chunk", "8",
                                     "--seed", "3"))
            return res, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    warm = _long_video(tmp_path / "w.npy", 4)  # compile the kernels before measuring
    cmd_simulate(parse(warm, tmp_path / "w.raw", "--fps", "100", "--noise", "noisy", "--chunk", "8"))
    short, p_short = run(40, tmp_path / "s.raw")
    long, p_long = run(320, tmp_path / "l.raw")
    assert long["events"] > 7 * short["events"] > 7 * 50_000  # the output grows with the video
    held = long["events"] * 32  # what holding the events as int64 fields would take
    assert p_long < 1.3 * p_short + 1_000_000, (p_short, p_long)
    assert p_long < held / 4, (p_long, held)
    # the streamed file is byte-identical to simulating everything and writing it at once
    frames = np.load(tmp_path / "v320.npy")
    want = simulate_video(frames, np.round(np.arange(320) * 1e6 / 100).astype(np.int64),
                          noise_config("noisy"), seed=3)
    one = write_events(tmp_path / "one.raw", want, (64, 48, 2))
    assert one.read_bytes() == (tmp_path / "l.raw").read_bytes()
    for ext in (".h5", ".aedat4"):  # and through the spooled / packet-buffered writers
        cmd_simulate(parse(tmp_path / "v320.npy", tmp_path / f"l{ext}", "--fps", "100", "--noise",
                           "noisy", "--chunk", "8", "--seed", "3"))
        ev, _ = read_events(tmp_path / f"l{ext}")
        np.testing.assert_array_equal(np.stack([ev[f] for f in "xytp"]),
                                      np.stack([want[f] for f in "xytp"]))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing half-written  # no temporaries left
