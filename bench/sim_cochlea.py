"""Compare :func:`spike.sim.cochlea.cochlea` with the lauscher package (the pipeline that made SHD).

    python bench/sim_cochlea.py [--quick] [--no-lauscher]

Inputs: the real spoken digit in ../shared/data/lauscher/spoken_digit.flac (48 kHz, 0.8 s) and
three synthesised 48 kHz signals (pure tones at 500 Hz and 2 kHz, a 200 Hz -> 8 kHz chirp).
lauscher is slow (minutes per input) and draws unseeded random numbers, so it runs ONCE per input
and its spikes and wall time are cached under ``$SPIKE_LAUSCHER_CACHE`` (default
``/tmp/lauscher_cache``); later runs reuse the cache. Both models are stochastic, so the numbers
are statistical: Pearson correlation of the 700 per-channel spike counts (and of 140 groups of 5
channels, for the synthetic inputs whose few hundred spikes leave most channels at 0 or 1),
total-rate ratio, and the two-sample Kolmogorov-Smirnov statistic of the pooled per-channel
inter-spike intervals; each with its noise floor (``*_self``: our model against itself, seeds 1-3,
mean). The ``*_long`` inputs (1 s tones, 2 s chirp) give a few thousand spikes, so per-channel
counts rise above that floor; ``count_corr_grouped20`` pools 20 adjacent channels (35 bands).
Tonotopy (:func:`tonotopy`): a tone's best channel against the channel whose characteristic
frequency is the tone's; a chirp's place, bin by bin, against its instantaneous frequency.
The speedup is lauscher's cached wall time over ours measured in this run on the same file.
The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

try:
    import spike  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared" / "data"
DIGIT = SHARED / "lauscher" / "spoken_digit.flac"
CACHE = Path(os.environ.get("SPIKE_LAUSCHER_CACHE", "/tmp/lauscher_cache"))
RATE = 48_000
N_CHANNELS = 700


def _chirp(dur: float, rate: int, f0: float = 200.0, f1: float = 8000.0) -> np.ndarray:
    t = np.arange(int(dur * rate)) / rate
    k = np.log(f1 / f0) / t[-1]
    return 0.5 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)


def stimulus_spec(name: str) -> tuple | None:
    """``("tone", f)`` or ``("chirp", f0, f1)`` for a synthesised input's name, else None."""
    import re

    m = re.fullmatch(r"tone_(\d+)hz(_long)?", name)
    if m:
        return ("tone", float(m.group(1)))
    m = re.fullmatch(r"chirp_(\d+)_(\d+)hz(_long)?", name)
    if m:
        return ("chirp", float(m.group(1)), float(m.group(2)))
    return None


def synth_signals(rate: int = RATE) -> dict[str, np.ndarray]:
    """The synthesised test inputs, 5 ms raised-cosine ramps.

    Short (the first comparison): 0.3 s tones at 500 Hz and 2 kHz, a 0.4 s 200 Hz -> 8 kHz log chirp.
    Long (``*_long``, enough spikes per channel for a per-channel comparison above the noise floor):
    1 s tones at 500 Hz and 2 kHz and a 2 s chirp over the same range.
    """
    out = {}
    for f in (500.0, 2000.0):
        t = np.arange(int(0.3 * rate)) / rate
        out[f"tone_{int(f)}hz"] = 0.5 * np.sin(2 * np.pi * f * t)
    out["chirp_200_8000hz"] = _chirp(0.4, rate)
    for f in (500.0, 2000.0):
        t = np.arange(int(1.0 * rate)) / rate
        out[f"tone_{int(f)}hz_long"] = 0.5 * np.sin(2 * np.pi * f * t)
    out["chirp_200_8000hz_long"] = _chirp(2.0, rate)
    ramp = int(0.005 * rate)
    win = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    for x in out.values():
        x[:ramp] *= win
        x[-ramp:] *= win[::-1]
    return out


def inputs(folder: Path = CACHE / "inputs", *, create: bool = True) -> dict[str, Path]:
    """The real digit (if present) and the synthesised signals as float WAV files (written if ``create``)."""
    import soundfile as sf

    paths = {"spoken_digit": DIGIT.resolve()} if DIGIT.is_file() else {}
    for name, x in synth_signals().items():
        p = folder / f"{name}.wav"
        if not p.exists():
            if not create:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(".tmp.wav")
            sf.write(tmp, x, RATE, subtype="FLOAT")
            os.replace(tmp, p)
        paths[name] = p
    return paths


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def cache_path(path: Path) -> Path:
    return CACHE / f"{path.stem}-{_sha(path)}-{N_CHANNELS}.npz"


def lauscher_cached(path: Path, *, run: bool = True) -> dict | None:
    """lauscher's ``(times_s, units, seconds)`` for ``path``, from the cache or (``run``) computed once."""
    cp = cache_path(path)
    if cp.is_file():
        with np.load(cp) as z:
            return {"times": z["times"], "units": z["units"], "seconds": float(z["seconds"]),
                    "cpu_s": float(z["cpu_s"])}
    if not run:
        return None
    try:
        from lauscher.audiowaves import FileMonoAudioWave
        from lauscher.transformations.wave2spike import Wave2Spike
    except ImportError:  # lauscher not installed: only cached outputs can be compared
        return None

    import resource

    def cpu() -> float:  # this process plus its reaped children (lauscher's multiprocessing pools)
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + ch.ru_utime + ch.ru_stime

    t0, c0 = time.perf_counter(), cpu()
    train = FileMonoAudioWave(str(path)).transform(Wave2Spike(num_channels=N_CHANNELS))
    seconds, cpu_s = time.perf_counter() - t0, cpu() - c0
    times = np.asarray(train.spike_times, dtype=np.float64)
    units = np.asarray(train.spike_labels, dtype=np.int64)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = cp.with_suffix(".tmp.npz")
    np.savez(tmp, times=times, units=units, seconds=seconds, cpu_s=cpu_s)
    os.replace(tmp, cp)
    return {"times": times, "units": units, "seconds": seconds, "cpu_s": cpu_s}


def build_cache() -> None:
    """Run lauscher once on every input that has no cached output yet."""
    for name, p in inputs().items():
        r = lauscher_cached(p)
        if r is None:
            sys.exit("lauscher is not installed: pip install lauscher==1.0.1")
        print(f"{name}: {len(r['times'])} spikes, {r['seconds']:.1f} s wall, {r['cpu_s']:.1f} s cpu",
              file=sys.stderr, flush=True)


def _isis(times: np.ndarray, units: np.ndarray) -> np.ndarray:
    order = np.lexsort((times, units))
    t, u = times[order], units[order]
    same = u[1:] == u[:-1]
    return np.diff(t)[same]


def _best(counts: np.ndarray) -> int:
    return int(np.argmax(np.convolve(counts, np.ones(15) / 15, mode="same")))


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else None


def tonotopy(spikes: dict, spec: tuple, duration_s: float) -> dict:
    """Where a tone or chirp excites the model, against the channel whose CF is the stimulus frequency.

    A tone: the best channel (15-channel running mean of the counts) and the predicted one. A log
    chirp: in each 50 ms bin with >= 20 spikes, the median channel of its spikes against the
    channel of the bin's mid frequency; their Pearson correlation and median absolute offset.
    """
    from spike.sim.cochlea import characteristic_frequencies

    cf = characteristic_frequencies(N_CHANNELS)
    chan = lambda f: int(np.argmin(np.abs(cf - f)))  # noqa: E731
    if spec[0] == "tone":
        counts = np.bincount(spikes["units"].astype(np.int64), minlength=N_CHANNELS)[:N_CHANNELS]
        return {"best_channel": _best(counts), "predicted_channel": chan(spec[1])}
    f0, f1 = spec[1], spec[2]
    edges = np.arange(0.0, duration_s + 1e-9, 0.05)
    got, want = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        sel = (spikes["times"] >= a) & (spikes["times"] < b)
        if sel.sum() >= 20:
            got.append(float(np.median(spikes["units"][sel])))
            want.append(chan(f0 * (f1 / f0) ** ((a + b) / 2 / duration_s)))
    got, want = np.asarray(got), np.asarray(want)
    return {"chirp_bins": int(len(got)), "chirp_channel_corr": _corr(got, want) if len(got) > 2 else None,
            "chirp_median_offset_channels": float(np.median(np.abs(got - want))) if len(got) else None}


def run_ours(path: Path, seed: int = 0, repeats: int = 2) -> dict:
    """Our spikes for ``path`` and the best wall and CPU time of ``repeats`` runs."""
    from spike.sim.cochlea import cochlea_spikes, read_audio

    x, fs = read_audio(path)
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        t, ch, rate = cochlea_spikes(x, fs, seed=seed)
        best_wall, best_cpu = min(best_wall, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    return {"times": t / rate, "units": ch, "seconds": best_wall, "cpu_s": best_cpu, "duration_s": len(x) / fs}


def compare(ours: dict, ref: dict, duration_s: float) -> dict:
    """Statistics of two spike sets ``{"times" (s), "units"}`` of the same audio.

    ``count_corr``: Pearson correlation of the 700 per-channel spike counts;
    ``count_corr_grouped5`` / ``count_corr_grouped20``: the same on counts pooled over bands of 5
    / 20 adjacent channels (140 / 35 bands), for inputs whose spikes are too few per channel.
    """
    from scipy import stats

    from spike.sim.cochlea import characteristic_frequencies

    co = np.bincount(ours["units"], minlength=N_CHANNELS)[:N_CHANNELS]
    cr = np.bincount(ref["units"].astype(np.int64), minlength=N_CHANNELS)[:N_CHANNELS]
    edges = np.arange(0.0, duration_s + 0.01, 0.01)
    groups = np.arange(0, N_CHANNELS + 1, 10)
    ho = np.histogram2d(ours["units"], ours["times"], (groups, edges))[0]  # [70, T/10ms]
    hr = np.histogram2d(ref["units"], ref["times"], (groups, edges))[0]
    io, ir = _isis(ours["times"], ours["units"]), _isis(ref["times"], ref["units"])
    ks = stats.ks_2samp(io, ir)
    return {
        "spikes": int(len(ours["times"])), "spikes_lauscher": int(len(ref["times"])),
        "active_channels": int((co > 0).sum()), "spikes_per_active_channel": float(co.sum() / max(1, (co > 0).sum())),
        "count_corr": float(np.corrcoef(co, cr)[0, 1]),
        "count_corr_grouped5": float(np.corrcoef(co.reshape(-1, 5).sum(1), cr.reshape(-1, 5).sum(1))[0, 1]),
        "count_corr_grouped20": float(np.corrcoef(co.reshape(-1, 20).sum(1), cr.reshape(-1, 20).sum(1))[0, 1]),
        "rate_ratio": float(len(ours["times"]) / max(1, len(ref["times"]))),
        "map_corr": float(np.corrcoef(ho.ravel(), hr.ravel())[0, 1]),
        "psth_corr": float(np.corrcoef(ho.sum(0), hr.sum(0))[0, 1]),
        "isi_ks": float(ks.statistic), "isi_median_ms": float(np.median(io) * 1e3) if len(io) else None,
        "isi_median_ms_lauscher": float(np.median(ir) * 1e3) if len(ir) else None,
        "best_channel": _best(co), "best_channel_lauscher": _best(cr),
        "cf_of_best_channel_hz": float(characteristic_frequencies(N_CHANNELS)[_best(co)]),
    }


def compare_file(path: Path, seed: int = 0, repeats: int = 1, run_lauscher: bool = False,
                 floor_seeds: int = 3) -> dict | None:
    """:func:`compare` of ours and lauscher's (cached) spikes for ``path`` plus the speedups.

    ``*_self`` is the noise floor: the same statistic of our seed-0 spikes against our own with
    seeds 1..``floor_seeds`` (mean; ``*_self_range`` the min and max).
    """
    ref = lauscher_cached(path, run=run_lauscher)
    if ref is None:
        return None
    ours = run_ours(path, seed, repeats)
    out = compare(ours, ref, ours["duration_s"])
    # the noise floor: our model (seed 0) against itself with seeds 1..floor_seeds, averaged
    selfs = [compare(ours, run_ours(path, seed + k, 1), ours["duration_s"]) for k in range(1, floor_seeds + 1)]
    for key in ("count_corr", "count_corr_grouped5", "count_corr_grouped20", "rate_ratio", "isi_ks"):
        vals = [c[key] for c in selfs]
        out[f"{key}_self"] = float(np.mean(vals))
        out[f"{key}_self_range"] = [float(min(vals)), float(max(vals))]
    spec = stimulus_spec(path.stem)
    if spec is not None:  # tonotopy of both models against the channel of the stimulus frequency
        ours_t, ref_t = tonotopy(ours, spec, ours["duration_s"]), tonotopy(ref, spec, ours["duration_s"])
        out.update({"tonotopy": ours_t, "tonotopy_lauscher": ref_t})
    out.update({"seconds": ours["seconds"], "cpu_s": ours["cpu_s"], "seconds_lauscher": ref["seconds"],
                "cpu_s_lauscher": ref["cpu_s"], "speedup_cpu": ref["cpu_s"] / ours["cpu_s"],
                "speedup_wall": ref["seconds"] / ours["seconds"]})
    return out


def bench_cochlea(quick: bool = False, run_lauscher: bool = True) -> dict:
    """Per-input comparisons with lauscher and the headline numbers (on the spoken digit)."""
    from spike.sim.cochlea import cochlea

    cochlea(np.sin(np.arange(960.0)), RATE)  # compile / load the numba kernels
    per = {}
    for name, p in inputs().items():
        m = compare_file(p, repeats=1 if quick else 2, run_lauscher=run_lauscher and not quick)
        if m is not None:
            per[name] = m
    head = per.get("spoken_digit", {})
    tones = [m for k, m in per.items() if k.startswith("tone")]
    return {
        "cochlea_speedup_vs_lauscher": head.get("speedup_cpu"),
        "cochlea_speedup_wall_vs_lauscher": head.get("speedup_wall"),
        "cochlea_seconds": head.get("seconds"), "cochlea_cpu_s": head.get("cpu_s"),
        "lauscher_seconds": head.get("seconds_lauscher"), "lauscher_cpu_s": head.get("cpu_s_lauscher"),
        "cochlea_channel_count_corr_vs_lauscher": head.get("count_corr"),
        "cochlea_rate_ratio_vs_lauscher": head.get("rate_ratio"),
        "cochlea_isi_ks_vs_lauscher": head.get("isi_ks"),
        "cochlea_map_corr_vs_lauscher": head.get("map_corr"),
        "cochlea_channel_count_corr_self": head.get("count_corr_self"),
        "cochlea_min_count_corr_all_inputs": min((m["count_corr"] for m in per.values()), default=None),
        "cochlea_min_count_corr_grouped5_all_inputs": min((m["count_corr_grouped5"] for m in per.values()),
                                                          default=None),
        "cochlea_max_rate_error_all_inputs": max((abs(m["rate_ratio"] - 1) for m in per.values()), default=None),
        "cochlea_max_isi_ks_all_inputs": max((m["isi_ks"] for m in per.values()), default=None),
        "cochlea_tone_best_channel_offset_max": max((abs(m["best_channel"] - m["best_channel_lauscher"])
                                                     for m in tones), default=None),
        "cochlea_tone_predicted_channel_offset_max": max((abs(m["tonotopy"]["best_channel"] -
                                                              m["tonotopy"]["predicted_channel"])
                                                          for m in tones), default=None),
        **_long_summary({k: m for k, m in per.items() if k.endswith("_long")}),
        "inputs": per,
        "lauscher_cache": str(CACHE),
    }


def _long_summary(long: dict) -> dict:
    """Worst cases over the long synthetic inputs, each next to its noise floor."""
    if not long:
        return {}
    worst = min(long, key=lambda k: long[k]["count_corr"] - long[k]["count_corr_self"])
    return {
        "cochlea_long_inputs": sorted(long),
        "cochlea_long_min_count_corr": min(m["count_corr"] for m in long.values()),
        "cochlea_long_min_count_corr_self": min(m["count_corr_self"] for m in long.values()),
        "cochlea_long_worst_count_corr_minus_self": long[worst]["count_corr"] - long[worst]["count_corr_self"],
        "cochlea_long_min_count_corr_grouped5": min(m["count_corr_grouped5"] for m in long.values()),
        "cochlea_long_min_count_corr_grouped20": min(m["count_corr_grouped20"] for m in long.values()),
        "cochlea_long_max_rate_error": max(abs(m["rate_ratio"] - 1) for m in long.values()),
        "cochlea_long_max_isi_ks": max(m["isi_ks"] for m in long.values()),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one timing run, only inputs lauscher has cached")
    ap.add_argument("--no-lauscher", action="store_true", help="never run lauscher, use only its cache")
    ap.add_argument("--build-cache", action="store_true", help="only run lauscher on uncached inputs")
    args = ap.parse_args(argv)
    if args.build_cache:
        build_cache()
        print(json.dumps({"lauscher_cache": str(CACHE), "cached": sorted(
            n for n, p in inputs().items() if lauscher_cached(p, run=False))}))
        return
    print(json.dumps(bench_cochlea(quick=args.quick, run_lauscher=not args.no_lauscher)))


if __name__ == "__main__":
    main()
