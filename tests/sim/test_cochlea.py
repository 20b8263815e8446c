"""The SHD cochlea model: fast paths vs their references, physiology, files, and lauscher (slow)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import special

from spike.sim.cochlea import (
    AudioFileError,
    AudioFileNotFoundError,
    CochleaConfig,
    CochleaError,
    audio_to_shd,
    characteristic_frequencies,
    cochlea,
    cochlea_spikes,
    file_seed,
    min_sample_rate,
)
from spike.sim.cochlea import basilar, neural

REPO = Path(__file__).resolve().parents[2]
FS = 48_000


def tone(f: float, dur: float = 0.2, fs: int = FS) -> np.ndarray:
    return np.sin(2 * np.pi * f * np.arange(int(dur * fs)) / fs)


def _bench():
    spec = importlib.util.spec_from_file_location("bench_sim_cochlea", REPO / "bench" / "sim_cochlea.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------------------- fast paths vs references
def test_hankel_matches_scipy():
    rng = np.random.default_rng(0)
    z = rng.uniform(0.01, 80, 3000) * np.exp(1j * rng.uniform(-0.2, np.pi / 2, 3000))
    ref = special.hankel1(0, z)
    ours = np.array([basilar.hankel1_0(complex(v)) for v in z])
    big = np.abs(ref) > 1e-5
    assert big.sum() > 1000
    assert np.max(np.abs(ours - ref)[big] / np.abs(ref)[big]) < 1e-6
    assert np.all(np.abs(ours - ref) <= 1e-6 * np.abs(ref) + 1e-11)  # tiny values: absolute


def test_transfer_matches_reference():
    omega, _ = basilar.frequency_grid(2401, FS)
    c = basilar.places(700)[::35]
    fast = basilar.transfer(omega, c)
    ref = basilar.transfer_reference(omega, c)
    assert np.isfinite(ref).all()
    err = np.abs(fast - ref).max(axis=1) / np.abs(ref).max(axis=1)
    assert err.max() < 1e-8


def _velocity(n_channels=6, dur=0.05):
    from spike.sim.cochlea.model import preprocess

    x = preprocess(tone(1000, dur) + 0.5 * tone(3000, dur), FS)
    return basilar.membrane(x, FS, basilar.places(700)[np.linspace(250, 450, n_channels).astype(int)])


def test_meddis_matches_reference():
    vel, rate = _velocity()
    fast = neural.meddis(vel, rate)
    ref = neural.meddis_reference(vel, rate)
    np.testing.assert_allclose(fast, ref, rtol=1e-12, atol=1e-15)
    assert fast.max() > 3 * fast[:, :5].mean()  # the sound drives release above rest


def test_bushy_matches_reference():
    rng = np.random.default_rng(1)
    counts = rng.poisson(rng.uniform(0.05, 1.5, (12, 1)), (12, 3000))
    fast = neural.bushy(counts, 24_000.0, 40)
    ref = neural.bushy_reference(counts, 24_000.0, 40)
    assert 50 < fast.sum()
    np.testing.assert_array_equal(fast, ref)


def test_fibres_match_reference_in_distribution():
    rate, n_f, n_t = 24_000.0, 400, 2400
    t = np.arange(n_t)
    p = (0.003 + 0.04 * (np.sin(2 * np.pi * t / 240) > 0.3))[None, :]  # [1, T] bursts
    fast = neural.fibre_counts(p, rate, n_f, seed=3)[0]
    ref = neural.fibres_reference(p, rate, n_f, np.random.default_rng(3))[0]
    fb, rb = fast.reshape(-1, 60).sum(1), ref.reshape(-1, 60).sum(1)  # 40 bins of 2.5 ms
    sd = np.sqrt(fb + rb + 1.0)
    assert np.max(np.abs(fb - rb) / sd) < 5
    assert abs(fast.sum() - ref.sum()) < 4 * np.sqrt(ref.sum())
    assert np.corrcoef(fb, rb)[0, 1] > 0.95


def test_fibre_counts_are_the_sum_of_fibre_spikes():
    vel, rate = _velocity()
    prob = neural.meddis(vel, rate)
    counts = neural.fibre_counts(prob, rate, 40, seed=5, channel_offset=7)
    ch, fib, samp = neural.fibre_spikes(prob, rate, 40, seed=5, channel_offset=7)
    dense = np.zeros_like(counts)
    np.add.at(dense, (ch, samp), 1)
    np.testing.assert_array_equal(dense, counts)
    assert set(np.unique(fib)) == set(range(40))


def test_refractoriness():
    rate = 24_000.0
    prob = np.full((3, 4000), 0.5)  # would fire every other sample without refractoriness
    ch, fib, samp = neural.fibre_spikes(prob, rate, 10, seed=0, refractory=1e-3)
    isi = np.concatenate([np.diff(samp[(ch == c) & (fib == f)]) for c in range(3) for f in range(10)])
    assert isi.min() == 24  # 1 ms at 24 kHz, and reached
    # bushy cells: spike at t - 1 seen at t, no integration for 24 samples -> ISI >= 25 samples
    driven = neural.bushy(np.full((2, 3000), 8), rate, 40)
    assert np.diff(np.nonzero(driven[0])[0]).min() == 25
    t, chan, r = cochlea_spikes(tone(1500, 0.1), FS, seed=2)
    assert r == rate and len(t) > 100
    isis = np.concatenate([np.diff(t[chan == c]) for c in np.unique(chan)])
    assert isis.min() >= 25


# ----------------------------------------------------------------------------- physiology
def test_tonotopy_matches_characteristic_frequency_map():
    cf = characteristic_frequencies(700)
    assert np.all(np.diff(cf) < 0) and 20e3 < cf[0] < 25e3 and 100 < cf[-1] < 200
    best = []
    for f in (400, 1000, 2500, 6000):
        ev = cochlea(tone(f, 0.2), FS, seed=1)
        counts = np.bincount(ev["x"], minlength=700)
        smooth = np.convolve(counts, np.ones(15) / 15, mode="same")
        best.append(int(np.argmax(smooth)))
        predicted = int(np.argmin(np.abs(np.log(cf / f))))
        assert abs(best[-1] - predicted) <= 15, (f, best[-1], predicted)
    assert np.all(np.diff(best) < 0)  # place moves basally (to lower channel ids) as frequency rises


def test_resampled_low_rate_audio_keeps_its_place():
    assert min_sample_rate() == 18_162
    cf = characteristic_frequencies(700)
    x16 = tone(1500, 0.15, 16_000)
    a = cochlea(x16, 16_000, resample_to=FS, seed=3)
    b = cochlea(tone(1500, 0.15), FS, seed=3)
    best = [int(np.argmax(np.convolve(np.bincount(e["x"], minlength=700), np.ones(15), mode="same"))) for e in (a, b)]
    predicted = int(np.argmin(np.abs(np.log(cf / 1500))))
    assert abs(best[0] - predicted) <= 15 and abs(best[0] - best[1]) <= 15
    assert 0.8 < len(a) / len(b) < 1.25


def test_seeded_determinism_and_chunking():
    x = tone(800, 0.1) + 0.3 * tone(2900, 0.1)
    a = cochlea(x, FS, seed=11)
    b = cochlea(x, FS, seed=11, config=CochleaConfig(chunk_bytes=16 * 2401 * 37))  # 37-channel chunks
    c = cochlea(x, FS, seed=12)
    import numba

    n = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        d = cochlea(x, FS, seed=11)
    finally:
        numba.set_num_threads(n)
    assert len(a) > 100
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, d)  # independent of the thread count
    assert len(a) != len(c) or not np.array_equal(a, c)
    assert np.all(np.diff(a["t"]) >= 0) and a["x"].max() < 700 and not a["y"].any() and not a["p"].any()


def test_silence_gives_almost_no_spikes():
    silent = cochlea(np.zeros(FS // 5), FS)  # all-zero audio is not normalised: spontaneous activity only
    assert len(silent) / 0.2 / 700 < 1.5  # spikes / s / channel (speech drives ~10)
    x = np.concatenate([np.zeros(FS // 10), tone(1000, 0.1), np.zeros(FS // 10)])
    ev = cochlea(x, FS)
    loud = ((ev["t"] >= 100_000) & (ev["t"] < 200_000)).sum()
    quiet = (ev["t"] < 100_000).sum() + (ev["t"] >= 230_000).sum()  # 30 ms for the transient to decay
    assert loud > 300
    assert quiet / 0.17 < 0.2 * loud / 0.1


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("audio, rate, match", [
    (np.zeros(0), FS, "at least 4 samples"),
    (np.zeros((100, 2)), FS, r"mono audio of shape \[N\]"),
    (np.array([0.0, np.nan, 1.0, 2.0, 3.0]), FS, "NaN or infinite"),
    (tone(100, 0.01), 0, "sample_rate"),
    (tone(100, 0.01), -48000, "sample_rate"),
    (tone(100, 0.01), float("nan"), "sample_rate"),
    (tone(100, 0.01), 1000, "sample_rate"),
    (tone(100, 0.01, 16_000), 16_000, "too low for the model's discretisation"),
    (tone(100, 0.01), "48k", "sample_rate"),
])
def test_bad_audio_raises_one_clear_error(audio, rate, match):
    with pytest.raises(CochleaError, match=match):
        cochlea(audio, rate)


def test_bad_files_name_the_file(tmp_path):
    import soundfile as sf

    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00not really a wave file")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), FS)
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.zeros((100, 2)), FS)
    good = tmp_path / "a" / "good.wav"
    good.parent.mkdir()
    sf.write(good, tone(500, 0.02), FS)
    out = tmp_path / "out.h5"
    cases = ((junk, AudioFileError, "cannot read as audio"), (empty, AudioFileError, "no samples"),
             (stereo, AudioFileError, "mono"), (tmp_path / "missing.flac", AudioFileNotFoundError, "no such"))
    for bad, exc, msg in cases:
        with pytest.raises(exc, match=msg) as info:
            audio_to_shd([good, bad], out)
        assert str(bad) in str(info.value)
        assert not out.exists() and list(tmp_path.glob(".out.h5*")) == []  # nothing half-written
    with pytest.raises(AudioFileError, match="no label"):
        audio_to_shd([good], out, labels={"other.wav": 1})


def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    import h5py
    import soundfile as sf

    good = tmp_path / "a" / "good.wav"
    good.parent.mkdir()
    sf.write(good, tone(500, 0.02), FS)
    out = tmp_path / "out.h5"
    out.write_bytes(b"old")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(h5py, "vlen_dtype", broken)  # fails after the temporary file was created
    with pytest.raises(OSError, match="disk full"):
        audio_to_shd([good], out)
    assert out.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["a", "out.h5"]
    monkeypatch.undo()
    assert audio_to_shd([good], out)["files"] == 1 and h5py.is_hdf5(out)


# ----------------------------------------------------------------------------- SHD files
def test_shd_file_round_trips_through_readers(tmp_path):
    import h5py
    import soundfile as sf

    from spike.data import shd
    from spike.data.datasets import _read_hsd

    files = []
    for folder, f in (("one", 600.0), ("zero", 1500.0), ("one", 3000.0)):
        p = tmp_path / "audio" / folder / f"tone_{int(f)}.flac"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, 0.5 * tone(f, 0.08, 32_000), 32_000, subtype="PCM_24")
        files.append(p)
    out = tmp_path / "SHD" / "shd_test.h5"
    summary = audio_to_shd(files, out, seed=4)
    times, units, labels = shd.read_split(tmp_path, "test")
    assert labels.tolist() == [0, 1, 0]  # sorted folder names: one -> 0, zero -> 1
    assert summary["files"] == 3 and summary["events"] == sum(len(t) for t in times) > 0
    assert summary["duration_s"] == pytest.approx(0.24)
    assert summary["rate_hz"] == pytest.approx(summary["events"] / 0.24)
    for i, p in enumerate(files):
        x, fs = sf.read(p)
        t, ch, rate = cochlea_spikes(x, fs, seed=file_seed(4, i))
        np.testing.assert_array_equal(units[i], ch)
        np.testing.assert_allclose(times[i], t / rate, rtol=1e-6)
    t2, u2, l2 = _read_hsd(out, 20)
    assert all(np.array_equal(a, b) for a, b in zip(u2, units)) and l2.tolist() == labels.tolist()
    with h5py.File(out, "r") as f:
        assert [k.decode() for k in f["extra/keys"][()]] == ["one", "zero"]
        assert f["extra/speaker"].shape == (3,)
    tonic = pytest.importorskip("tonic")
    (out.parent / "shd_test.h5.zip").write_bytes(b"")  # tonic only checks that the archive exists
    ds = tonic.datasets.SHD(str(tmp_path), train=False)
    ev, target = ds[2]
    assert target == 0 and len(ev) == len(times[2])
    np.testing.assert_array_equal(ev["x"], units[2])
    np.testing.assert_allclose(ev["t"], times[2] * 1e6, atol=1.0)
    with pytest.raises(CochleaError, match="ints"):
        audio_to_shd(files[:1], tmp_path / "x.h5", labels={"tone_600": -1})
    s = audio_to_shd(files[:1], tmp_path / "y.h5", labels={"tone_600": 7})
    with h5py.File(s["out"], "r") as f:
        assert f["labels"][()].tolist() == [7] and len(f["extra/keys"]) == 8


# ----------------------------------------------------------------------------- against lauscher
@pytest.mark.slow
def test_matches_lauscher_on_cached_outputs():
    # lauscher itself is not needed: its outputs are cached once by `python bench/sim_cochlea.py`
    bench = _bench()
    cases = {name: p for name, p in bench.inputs(create=False).items() if bench.lauscher_cached(p, run=False)}
    if "spoken_digit" not in cases:
        pytest.skip(f"no cached lauscher output in {bench.CACHE} (run `python bench/sim_cochlea.py` once)")
    for name, path in cases.items():
        m = bench.compare_file(path)  # ours (seed 0 and, for the noise floor, seed 1) against lauscher's cache
        assert 0.9 <= m["rate_ratio"] <= 1.1, (name, m)
        if name == "spoken_digit":  # 7000 spikes, 13 per active channel
            assert m["count_corr"] >= 0.9 and m["count_corr_grouped5"] >= 0.95, m
            assert m["isi_ks"] < 0.05, m
        if name.endswith("_long"):  # 1-3 k spikes: per channel at the floor, in 20-channel bands close to 1
            assert m["count_corr"] >= m["count_corr_self"] - 0.05, (name, m)
            assert m["count_corr_grouped20"] >= 0.95, (name, m)
        # per channel, a tone leaves a few spikes in each channel: compare with our seed-to-seed floor
        assert m["count_corr"] >= m["count_corr_self"] - 0.1, (name, m)
        assert m["count_corr_grouped5"] >= 0.8, (name, m)
        assert m["count_corr_grouped20"] >= m["count_corr_grouped20_self"] - 0.05, (name, m)
        assert m["isi_ks"] < m["isi_ks_self"] + 0.1, (name, m)
        spec = bench.stimulus_spec(name)
        if spec and spec[0] == "tone":  # both peak near the channel whose CF is the tone
            assert abs(m["best_channel"] - m["best_channel_lauscher"]) <= 15, (name, m)
            for t in (m["tonotopy"], m["tonotopy_lauscher"]):  # the wave peaks ~13 channels basal of CF
                assert abs(t["best_channel"] - t["predicted_channel"]) <= 20, (name, t)
        if spec and spec[0] == "chirp" and m["tonotopy"]["chirp_bins"] >= 5:  # the place follows the sweep
            # as well as lauscher's does (measured: 0.4 s chirp 0.92 vs 0.90 over 7 bins; 2 s chirp 0.69 vs
            # 0.56 over 38 bins, where adapted low-CF channels keep firing after the sweep has passed)
            assert m["tonotopy"]["chirp_channel_corr"] >= 0.5, (name, m["tonotopy"])
            assert m["tonotopy"]["chirp_channel_corr"] >= m["tonotopy_lauscher"]["chirp_channel_corr"] - 0.1, (name, m)
            offset = m["tonotopy"]["chirp_median_offset_channels"]
            assert abs(offset - m["tonotopy_lauscher"]["chirp_median_offset_channels"]) <= 15, (name, m)
