"""Checkpoint -> event network -> stream: ``Cutoff.save/load``, ``spike export``, ``spike stream``.

A tiny NMNISTsmall-format folder (40-bit ``.bs2`` files written here) trains a small MLP for one
epoch; the event-driven stream must reproduce the dense anytime path sample by sample.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from datasets.fixtures import encode_40bit  # noqa: E402
from spike.cli.main import main  # noqa: E402
from spike.core.events import EVENT_DTYPE  # noqa: E402
from spike.inference.anytime import AnytimeError, Cutoff, anytime_forward  # noqa: E402

T = 8
DURATION = 80_000


def _sample(rng: np.random.Generator, label: int, n: int = 2500) -> np.ndarray:
    """Events clustered in a class-dependent band, spread over the duration (some after it: clipped)."""
    ev = np.zeros(n, EVENT_DTYPE)
    ev["x"] = np.clip(rng.normal(3 + 3 * label, 1.5, n), 0, 33).astype(int)
    ev["y"] = np.clip(rng.normal(17 + rng.normal(0, 4), 3, n), 0, 33).astype(int)
    ev["p"] = rng.integers(0, 2, n)
    ev["t"] = np.sort(rng.integers(0, DURATION + 5_000, n))
    return ev


def _write_folder(root: Path, n_train: int = 40, n_test: int = 8) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for split, ids in (("train1K.txt", range(1, n_train + 1)), ("test100.txt", range(60001, 60001 + n_test))):
        rows = []
        for k, i in enumerate(ids):
            label = k % 10
            (root / f"{i}.bs2").write_bytes(encode_40bit(_sample(rng, label)))
            rows.append(f"{i} {label}")
        (root / split).write_text("\n".join(rows) + "\n")


def _config(tmp: Path, name: str, model_extra: str = "") -> Path:
    cfg = tmp / f"{name}.toml"
    cfg.write_text(f"""
[run]
name = "{name}"
seed = 0
out_dir = "{tmp / 'runs'}"
[data]
name = "nmnist_small"
root = "{tmp / 'nm'}"
n_time_bins = {T}
batch_size = 8
cache = false
options = {{ duration_us = {DURATION} }}
[model]
kind = "mlp"
hidden = [24]
tau = 20.0
dt = 10.0
readout = "li"
readout_tau = 40.0
{model_extra}
[train]
epochs = 2
lr = 5e-3
loss = "mean_membrane"
""")
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy")
    _write_folder(tmp / "nm")
    assert main(["train", str(_config(tmp, "tiny")), "--device", "cpu"]) == 0
    ckpt = tmp / "runs" / "tiny" / "last.pt"
    assert ckpt.is_file()
    rec = tmp / "rec"  # the test recordings, in test order
    rec.mkdir()
    for k, i in enumerate(range(60001, 60009)):
        shutil.copy(tmp / "nm" / f"{i}.bs2", rec / f"{k:03d}.bs2")
    return tmp, ckpt, rec


def _last_json(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def _error_line(capsys, command: str) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith(f"spike {command}: error: ")
    return err[0]


# -- Cutoff files ---------------------------------------------------------------------------------------
def test_cutoff_round_trip_keeps_inf_and_exact_floats(tmp_path):
    beta = (math.inf, 0.1 + 0.2, 1 / 3, 0.0, math.inf, 7.25e-9)
    c = Cutoff(beta, epsilon=0.05, target="correct", correction="none")
    path = c.save(tmp_path / "c.json", fingerprint="sha256:abc")
    back = Cutoff.load(path, fingerprint="sha256:abc")
    assert back.beta == beta  # exact, inf included
    assert (back.epsilon, back.target, back.correction) == (0.05, "correct", "none")
    assert Cutoff.load(path).beta == beta  # no fingerprint given: not checked


def test_cutoff_of_another_model_is_refused_naming_the_file(tmp_path):
    path = Cutoff.constant(0.5, 4).save(tmp_path / "other.json", fingerprint="sha256:" + "1" * 64)
    with pytest.raises(AnytimeError, match=r"other\.json.*another model"):
        Cutoff.load(path, fingerprint="sha256:" + "2" * 64)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(AnytimeError, match=r"bad\.json"):
        Cutoff.load(tmp_path / "bad.json")


# -- export ---------------------------------------------------------------------------------------------
def test_export_npz_loads_to_the_same_network_outputs(trained, tmp_path, capsys):
    from spike.inference.deploy import export_checkpoint
    from spike.events.network import run
    from spike.inference.export import load_event_network

    _, ckpt, _ = trained
    out = tmp_path / "net.npz"
    assert main(["export", str(ckpt), str(out)]) == 0
    res = _last_json(capsys)
    assert res["binning"]["n_time_bins"] == T and res["binning"]["sensor_size"] == [34, 34, 2]
    assert res["binning"]["duration_us"] == DURATION
    net_file, meta = load_event_network(out)
    net_mem, meta_mem = export_checkpoint(ckpt)
    assert meta["fingerprint"] == meta_mem["fingerprint"]
    assert [type(layer).__name__ for layer in net_file.layers] == [type(layer).__name__ for layer in net_mem.layers]
    rng = np.random.default_rng(1)
    samples = []
    for _ in range(3):
        n = 400
        samples.append((np.sort(rng.integers(0, T, n)), rng.integers(0, net_mem.n_in, n)))
    a, b = run(net_file, samples, T, record=True), run(net_mem, samples, T, record=True)
    np.testing.assert_array_equal(a.out, b.out)
    np.testing.assert_array_equal(a.synops, b.synops)
    assert a.output is a.out  # the alias
    for k in a.spikes:
        np.testing.assert_array_equal(a.spikes[k], b.spikes[k])


def test_non_exportable_checkpoint_names_the_layer(trained, capsys):
    tmp, _, _ = trained
    cfg = _config(tmp, "recurrent", "recurrent = true")
    assert main(["train", str(cfg), "--device", "cpu"]) == 0
    capsys.readouterr()
    out = tmp / "rec.npz"
    assert main(["export", str(tmp / "runs" / "recurrent" / "last.pt"), str(out)]) == 2
    line = _error_line(capsys, "export")
    assert "layer" in line and "recurrent" in line
    assert not out.exists() and not list(tmp.glob("rec.npz*"))


# -- stream ---------------------------------------------------------------------------------------------
def _dense_reference(ckpt: Path, cutoff: Cutoff):
    """``spike eval``'s model and test split: anytime_forward per sample (pred, steps)."""
    from spike.train.recipe import load_for_eval

    run = load_for_eval(ckpt, device="cpu")
    preds, steps = [], []
    for i in range(len(run.data.test)):
        x, _ = run.data.test[i]
        r = anytime_forward(run.model, x[:, None], cutoff, run.config.train.loss)
        preds.append(int(r.pred[0]))
        steps.append(int(r.stop_step[0]) + 1)
    return preds, steps


def _spread_cutoff(ckpt: Path) -> Cutoff:
    """Per-step median of the test gaps: samples stop at different steps (not a calibration)."""
    from spike.inference.anytime import collect_outputs, prefix_scores, topk_gap
    from spike.train.recipe import load_for_eval

    run = load_for_eval(ckpt, device="cpu")
    out, _, _ = collect_outputs(run.model, [(x[:, None], y[None]) for x, y in run.data.test], "cpu")
    g = topk_gap(prefix_scores(out, run.config.train.loss)).numpy()  # [T, N]
    return Cutoff(tuple(np.median(g, axis=1)))


@pytest.mark.parametrize("source", ["checkpoint", "npz"])
@pytest.mark.parametrize("window_ms", [None, 25.0])
def test_stream_matches_dense_anytime_path(trained, tmp_path, capsys, source, window_ms):
    from spike.inference.deploy import export_checkpoint

    tmp, ckpt, rec = trained
    model_arg = str(ckpt)
    if source == "npz":
        model_arg = str(tmp_path / "m.npz")
        assert main(["export", str(ckpt), model_arg]) == 0
    _, meta = export_checkpoint(ckpt)
    cut = _spread_cutoff(ckpt)
    cpath = cut.save(tmp_path / "cutoff.json", meta["fingerprint"])
    capsys.readouterr()
    argv = ["stream", model_arg, str(rec), "--anytime", str(cpath)]
    if window_ms is not None:
        argv += ["--window-ms", str(window_ms)]
    assert main(argv) == 0
    res = _last_json(capsys)
    preds, steps = _dense_reference(ckpt, cut)
    assert [r["prediction"] for r in res["recordings"]] == preds
    assert [r["steps"] for r in res["recordings"]] == steps
    assert min(steps) < T and len(set(steps)) > 1  # the cutoff stops samples early, at different steps
    assert len(set(preds)) > 1  # the model does look at its input
    assert all(r["synops"] > 0 and r["energy_uj"] > 0 for r in res["recordings"])
    # without a cutoff: full length, the plain prediction
    assert main(["stream", model_arg, str(rec)]) == 0
    full = _last_json(capsys)
    ref_pred, ref_steps = _dense_reference(ckpt, Cutoff.never(T))
    assert [r["prediction"] for r in full["recordings"]] == ref_pred
    assert all(r["steps"] == T for r in full["recordings"]) and ref_steps == [T] * len(ref_steps)
    assert full["mean_synops"] > res["mean_synops"]  # stopping early saves operations


def test_eval_anytime_writes_a_cutoff_the_stream_accepts(trained, tmp_path, capsys):
    tmp, ckpt, rec = trained
    out = tmp_path / "eval"
    assert main(["eval", str(ckpt), "--anytime", "--epsilon", "0.2", "--no-wall", "--out", str(out)]) == 0
    res = _last_json(capsys)
    cpath = Path(res["cutoff"])
    assert cpath == out / "cutoff.json" and cpath.is_file()
    saved = json.loads((out / "anytime.json").read_text())
    assert saved["cutoff"] == str(cpath)
    cut = Cutoff.load(cpath)
    assert main(["stream", str(ckpt), str(rec / "000.bs2"), "--anytime", str(cpath)]) == 0
    r = _last_json(capsys)["recordings"][0]
    preds, steps = _dense_reference(ckpt, cut)
    assert (r["prediction"], r["steps"]) == (preds[0], steps[0])
    # the same cutoff on another model is refused in one line naming the file
    other = tmp / "runs" / "other_model"
    assert main(["train", str(_config(tmp, "other")), "--device", "cpu", "--set", "model.hidden=[12]",
                 "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["stream", str(other / "last.pt"), str(rec / "000.bs2"), "--anytime", str(cpath)]) == 2
    line = _error_line(capsys, "stream")
    assert str(cpath) in line and "another model" in line


def test_mismatched_sensor_is_one_line(trained, tmp_path, capsys):
    _, ckpt, _ = trained
    ev = np.zeros(50, EVENT_DTYPE)
    ev["x"] = np.arange(50) % 60
    ev["y"] = 3
    ev["t"] = np.arange(50) * 100
    f = tmp_path / "big.npy"
    np.save(f, ev)
    assert main(["stream", str(ckpt), str(f)]) == 2
    line = _error_line(capsys, "stream")
    assert "big.npy" in line and "sensor" in line and "(34, 34, 2)" in line


@pytest.mark.skipif(not Path("/work/shared/data/slayerPytorch/NMNISTsmall/60001.bs2").is_file(),
                    reason="real NMNISTsmall not present")
def test_real_recording_binning_matches_dataset(trained):
    from spike.inference.deploy import Binning, bin_recording
    from spike.data import nmnist_small as nm
    from spike.io import read_events

    root = Path("/work/shared/data/slayerPytorch/NMNISTsmall")
    first = int(np.loadtxt(root / "test100.txt", dtype=np.int64, comments="#", ndmin=2)[0, 0])
    ev, sensor = read_events(root / f"{first}.bs2")  # the spike.io reader, not the data set's
    b = Binning("nmnist_small", 20, nm.SENSOR_SIZE, (2, 34, 34), nm.DURATION_US, None, nm.DURATION_US / 20)
    events, _ = nm.read_split(root, "test")
    assert len(ev) == len(events[0])
    np.testing.assert_array_equal(bin_recording(ev, sensor, b, "real"), nm.bin_events(events[:1], 20)[0])


# -- realtime pacing and the batch path ---------------------------------------------------------------------
class _FakeClock:
    """A wall clock that only moves when slept on, plus a fixed processing cost per reading."""

    def __init__(self, cost_s: float = 0.0):
        self.now, self.cost, self.sleeps = 100.0, cost_s, []

    def __call__(self) -> float:
        self.now += self.cost
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def test_realtime_paces_windows_by_their_timestamps(trained):
    from spike.inference.deploy import Binning, bin_recording, export_checkpoint, stream_recording
    from spike.io import read_events

    _, ckpt, rec = trained
    net, meta = export_checkpoint(ckpt)
    ev, sensor = read_events(rec / "000.bs2")
    frames = bin_recording(ev, sensor, Binning.from_dict(meta["binning"]))
    plain = stream_recording(net, meta, frames, window_bins=2)
    clock = _FakeClock()
    seen = []
    r = stream_recording(net, meta, frames, window_bins=2, realtime=True, clock=clock, sleep=clock.sleep,
                         on_window=seen.append)
    # same answer as without pacing; 4 windows of 2 bins (20 ms each): each waited for its end time
    assert {k: r[k] for k in plain} == plain
    dt_s = meta["binning"]["dt_us"] * 1e-6
    assert len(clock.sleeps) == 4 and r["window_ms"] == pytest.approx(2 * dt_s * 1e3)
    assert sum(clock.sleeps) == pytest.approx(T * dt_s, abs=1e-9)  # the whole recording's duration
    assert r["kept_up"] and r["latency_ms"]["max"] < 1e-6  # a free computer has no latency
    assert [w["bins"] for w in seen] == [[0, 2], [2, 4], [4, 6], [6, 8]]
    # a slow computer: each clock reading costs 15 ms > 2 bins' 20 ms only with several readings per window
    slow = _FakeClock(cost_s=0.015)
    r2 = stream_recording(net, meta, frames, window_bins=2, realtime=True, clock=slow, sleep=slow.sleep)
    assert r2["latency_ms"]["max"] >= 15 - 1e-6 and r2["latency_ms"]["mean"] > 0
    assert r2["prediction"] == plain["prediction"]


def test_realtime_cli_reports_latency(trained, capsys):
    _, ckpt, rec = trained
    assert main(["stream", str(ckpt), str(rec / "001.bs2"), "--realtime"]) == 0
    res = _last_json(capsys)
    r = res["recordings"][0]
    assert res["realtime"] is True and r["windows"] == T  # one bin per window by default
    assert set(r["latency_ms"]) == {"mean", "p50", "max"} and r["latency_ms"]["max"] >= 0


def test_batch_path_equals_streaming_per_file(trained):
    from spike.inference.deploy import (Binning, bin_recording, export_checkpoint, run_recordings,
                                        stream_recording)
    from spike.io import read_events

    _, ckpt, rec = trained
    net, meta = export_checkpoint(ckpt)
    cut = _spread_cutoff(ckpt)
    binning = Binning.from_dict(meta["binning"])
    frames = [bin_recording(*read_events(f), binning) for f in sorted(rec.iterdir())]
    batch = run_recordings(net, meta, frames, cutoff=cut)
    for fr, b in zip(frames, batch):
        for w in (None, 1, 3):
            s = stream_recording(net, meta, fr, cutoff=cut, window_bins=w)
            assert {k: s[k] for k in b if k != "windows"} == {k: b[k] for k in b if k != "windows"}


def test_window_without_fixed_bins_is_refused():
    from spike.inference.deploy import Binning, window_bins_for

    b = Binning("dvs_gesture", 20, (128, 128, 2), (2, 32, 32), None, (32, 32), None)
    with pytest.raises(ValueError, match="dvs_gesture.*duration_us"):
        window_bins_for(b, None, realtime=True)
    fixed = Binning("nmnist_small", 20, (34, 34, 2), (2, 34, 34), 300_000, None, 15_000.0)
    assert window_bins_for(fixed, None) is None and window_bins_for(fixed, None, True) == 1
    assert window_bins_for(fixed, 31.0) == 2
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="--window-ms"):
            window_bins_for(fixed, bad)


DAVIS = Path("/work/shared/data/aestream/davis.aedat4")


@pytest.mark.skipif(not DAVIS.is_file(), reason="real DAVIS346 recording not present")
def test_real_aedat4_recording_streams_end_to_end(tmp_path, capsys):
    """A DAVIS346 .aedat4 through a camera-binned model .npz: runs, reports per window, and the
    streamed counts equal the batch run of the same binned recording."""
    import torch

    from spike.events.network import run
    from spike.inference.deploy import Binning, bin_recording
    from spike.inference.export import export_event_network, save_event_network
    from spike.io import read_events
    from spike.neurons import LI, LIF
    from spike.synapses import Flatten, Linear, Sequential

    ev, sensor = read_events(DAVIS)
    b = Binning.for_sensor(sensor, 13, 130_000, size_hw=(65, 87))  # 10 ms bins, pixels / 4
    torch.manual_seed(0)
    model = Sequential(Flatten(), Linear(2 * 65 * 87, 32), LIF(tau=5.0), Linear(32, 4), LI(tau=5.0)).eval()
    with torch.no_grad():
        model[1].weight.mul_(5.0)
    net = export_event_network(model, b.input_shape)
    npz = save_event_network(tmp_path / "davis.npz", net, {"binning": b.to_dict(), "loss": "mean_membrane",
                                                          "n_classes": 4})
    assert main(["stream", str(npz), str(DAVIS), "--window-ms", "20"]) == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out.strip().splitlines()[-1])
    r = res["recordings"][0]
    assert r["windows"] == 7 and r["steps"] == 13 and r["synops"] > 0
    assert cap.err.count("davis.aedat4 window") == 7  # one progress line per window
    frames = bin_recording(ev, sensor, b)
    assert frames.shape == (13, 2, 65, 87) and frames.sum() > 0.9 * len(ev)
    tb, ch = np.nonzero(frames.reshape(13, -1))
    ref = run(net, [(tb, ch, frames.reshape(13, -1)[tb, ch])], 13)
    assert r["synops"] == int(ref.synops.sum())
    assert r["prediction"] == int(np.argmax(ref.out[:, 0].sum(0)))


def test_stream_energy_equals_energy_meter_on_the_dense_path(trained):
    """Per recording, with an anytime cutoff: the stream's AC and MAC counts (executed steps only) are
    EnergyMeter's on the dense model for the same sample and stop step, and so is the synaptic energy."""
    from spike.energy import EnergyMeter, get_profile
    from spike.inference.deploy import export_checkpoint, run_recordings, stream_recording
    from spike.train.recipe import load_for_eval

    _, ckpt, _ = trained
    net, meta = export_checkpoint(ckpt)
    cut = _spread_cutoff(ckpt)
    run_ = load_for_eval(ckpt, device="cpu")
    frames, meters = [], []
    for i in range(len(run_.data.test)):
        x, _ = run_.data.test[i]
        frames.append(x.numpy())
        with EnergyMeter(run_.model) as m:
            anytime_forward(run_.model, x[:, None], cut, run_.config.train.loss,
                            meter=m)
        meters.append(m.report())
    prof = get_profile("cmos45_fp32")
    batch = run_recordings(net, meta, frames, cutoff=cut)
    saw_mac = False
    for fr, rep, b in zip(frames, meters, batch):
        s = stream_recording(net, meta, fr, cutoff=cut, window_bins=1)
        syn = [lc for lc in rep.layers if lc.kind == "synapse"]
        ac, mac = sum(float(lc.ac.sum()) for lc in syn), sum(float(lc.mac.sum()) for lc in syn)
        for r in (s, b):
            assert (r["ac"], r["mac"]) == (ac, mac)
            assert r["energy_uj"] == pytest.approx((ac * prof.ac_pj + mac * prof.mac_pj) * 1e-6, rel=1e-12)
        assert s["steps"] == int(rep.steps[0])
        saw_mac |= mac > 0
    assert saw_mac  # bins with several events: real multiply-accumulates on the first layer
