"""Benchmark spike.events kernels against tonic 1.7 in the same run.

    python bench/events.py [--quick]

Binning 1 M and 10 M events (sensor 128x128x2, 100 time bins) with ``spike.events.to_frame`` vs
``tonic.transforms.ToFrame``; plus voxel grid and denoise rows, and a real cached-dataset
measurement (first epoch bins + writes .npy files, second epoch loads them). Times are medians of a
few repetitions after a numba warm-up. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import spike  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba
import tonic
import tonic.transforms as tt

from spike.core.events import EVENT_DTYPE
from spike.events import denoise, to_frame, to_voxel_grid

SENSOR = (128, 128, 2)
N_BINS = 100


def make_stream(n: int, rng: np.random.Generator, duration_us: int = 10_000_000) -> np.ndarray:
    """Uniform random events; t spans exactly [0, duration_us] so that tonic's bins are exact."""
    ev = np.empty(n, EVENT_DTYPE)
    ev["x"] = rng.integers(0, SENSOR[0], n)
    ev["y"] = rng.integers(0, SENSOR[1], n)
    ev["p"] = rng.integers(0, SENSOR[2], n)
    ev["t"] = np.sort(rng.integers(0, duration_us + 1, n))
    ev["t"][0], ev["t"][-1] = 0, duration_us
    return ev


def timed(fn, reps: int) -> tuple[float, float, object]:
    """(median, best) wall time of ``reps`` calls, and the last output."""
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times)), out


def bench_binning(n: int, rng: np.random.Generator, reps_ours: int, reps_tonic: int) -> dict:
    ev = make_stream(n, rng)
    ours_s, ours_best, ours = timed(lambda: to_frame(ev, SENSOR, n_time_bins=N_BINS), reps_ours)
    tonic_s, tonic_best, theirs = timed(lambda: tt.ToFrame(SENSOR, n_time_bins=N_BINS)(ev),
                                        reps_tonic)
    # sanity: identical except the events at t == t_last, which tonic drops
    lost = int(np.sum(ev["t"] == ev["t"][-1]))
    assert np.array_equal(ours[:-1], theirs[:-1]) and ours.sum() == n and theirs.sum() == n - lost
    return {"n": n, "ours_s": ours_s, "tonic_s": tonic_s, "speedup": tonic_s / ours_s,
            "speedup_best": tonic_best / ours_best, "ours_best_s": ours_best,
            "tonic_best_s": tonic_best}


def bench_voxel(n: int, rng: np.random.Generator, reps: int) -> dict:
    ev = make_stream(n, rng)
    ours_s, _, ours = timed(lambda: to_voxel_grid(ev, SENSOR, 11, dtype=np.float64), reps)
    tonic_s, _, theirs = timed(lambda: tt.ToVoxelGrid(SENSOR, 10)(ev), reps)
    assert np.allclose(ours[:10], theirs[:, 0])  # documented relation: ours(B + 1)[:B] == tonic(B)
    return {"n": n, "ours_s": ours_s, "tonic_s": tonic_s, "speedup": tonic_s / ours_s}


def bench_denoise(n: int, rng: np.random.Generator, reps: int) -> dict:
    ev = make_stream(n, rng, duration_us=2_000_000)
    ev["t"] += 10_000  # beyond filter_time: tonic's t = 0 initialisation then plays no role
    ours_s, _, ours = timed(lambda: denoise(ev, SENSOR, 10_000, connectivity=4), reps)
    tonic_s, _, theirs = timed(lambda: tt.Denoise(filter_time=10_000)(ev), 1)
    assert np.array_equal(ours, theirs)
    return {"n": n, "ours_s": ours_s, "tonic_s": tonic_s, "speedup": tonic_s / ours_s}


# --------------------------------------------------------------------------------------------------
# HOOK: cached dataset, second-epoch load time vs first epoch (real measurement, not hard-coded)
# --------------------------------------------------------------------------------------------------
def bench_cached_epochs(rng: np.random.Generator, n_samples: int = 32, n_events: int = 200_000,
                        n_bins: int = 20) -> dict:
    """Epoch 1 bins every sample and writes it to an .npy cache; epoch 2 only loads the cache.

    Each epoch's time covers all samples. The cache is a temp dir (OS page cache included, as it
    would be for a dataset re-read on the same machine).
    """
    samples = [make_stream(n_events, rng, duration_us=1_000_000) for _ in range(n_samples)]
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        t0 = time.perf_counter()
        for i, ev in enumerate(samples):
            np.save(cache / f"{i}.npy", to_frame(ev, SENSOR, n_time_bins=n_bins))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        loaded = [np.load(cache / f"{i}.npy") for i in range(n_samples)]
        second = time.perf_counter() - t0
        assert all(f.sum() == n_events for f in loaded)
        t0 = time.perf_counter()
        for ev in samples[:8]:
            tt.ToFrame(SENSOR, n_time_bins=n_bins)(ev)
        tonic_epoch = (time.perf_counter() - t0) * n_samples / 8
    return {"n_samples": n_samples, "events_per_sample": n_events,
            "epoch1_bin_and_cache_s": first, "epoch2_load_s": second, "speedup": first / second,
            "tonic_epoch_no_cache_s": tonic_epoch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    reps_ours, reps_tonic = (3, 1) if args.quick else (7, 3)

    warm = make_stream(10_000, rng)  # numba warm-up: compile or load the cached kernels
    to_frame(warm, SENSOR, n_time_bins=N_BINS)
    to_voxel_grid(warm, SENSOR, 11, dtype=np.float64)
    denoise(warm, SENSOR, 10_000, connectivity=4)

    rows = {
        "binning_1M": bench_binning(1_000_000, rng, reps_ours, reps_tonic),
        "binning_10M": bench_binning(10_000_000, rng, reps_ours, reps_tonic),
        "voxel_grid_1M": bench_voxel(1_000_000, rng, reps_tonic),
        "denoise_100k": bench_denoise(100_000, rng, reps_tonic),
    }
    cached = bench_cached_epochs(rng)

    print(f"spike.events vs tonic {tonic.__version__}  (numba {numba.__version__}, "
          f"{numba.get_num_threads()} threads; sensor {SENSOR}, "
          f"median of {reps_ours} / {reps_tonic} reps)")
    print(f"{'task':<16}{'events':>12}{'spike [ms]':>14}{'tonic [ms]':>14}{'speedup':>10}")
    for name, r in rows.items():
        print(f"{name:<16}{r['n']:>12,}{r['ours_s'] * 1e3:>14.1f}{r['tonic_s'] * 1e3:>14.1f}"
              f"{r['speedup']:>9.1f}x")
    print(f"cached dataset ({cached['n_samples']} x {cached['events_per_sample']:,} events, "
          f"to_frame n_time_bins=20): epoch 1 (bin + save .npy) "
          f"{cached['epoch1_bin_and_cache_s']:.3f} s, epoch 2 (load) "
          f"{cached['epoch2_load_s']:.3f} s -> {cached['speedup']:.1f}x; tonic epoch without cache "
          f"~{cached['tonic_epoch_no_cache_s']:.3f} s")
    result = {
        "bench": "events",
        "binning_speedup_vs_tonic_10M": round(rows["binning_10M"]["speedup"], 2),
        "binning_speedup_vs_tonic_1M": round(rows["binning_1M"]["speedup"], 2),
        "binning_speedup_best_of_reps_10M": round(rows["binning_10M"]["speedup_best"], 2),
        "binning_speedup_best_of_reps_1M": round(rows["binning_1M"]["speedup_best"], 2),
        "binning_10M_ms": round(rows["binning_10M"]["ours_s"] * 1e3, 2),
        "tonic_binning_10M_ms": round(rows["binning_10M"]["tonic_s"] * 1e3, 2),
        "binning_10M_best_ms": round(rows["binning_10M"]["ours_best_s"] * 1e3, 2),
        "tonic_binning_10M_best_ms": round(rows["binning_10M"]["tonic_best_s"] * 1e3, 2),
        "binning_1M_ms": round(rows["binning_1M"]["ours_s"] * 1e3, 2),
        "tonic_binning_1M_ms": round(rows["binning_1M"]["tonic_s"] * 1e3, 2),
        "voxel_grid_speedup_vs_tonic_1M": round(rows["voxel_grid_1M"]["speedup"], 2),
        "denoise_speedup_vs_tonic_100k": round(rows["denoise_100k"]["speedup"], 2),
        "cached_epoch1_s": round(cached["epoch1_bin_and_cache_s"], 4),
        "cached_epoch2_s": round(cached["epoch2_load_s"], 4),
        "cached_epoch2_speedup": round(cached["speedup"], 2),
        "numba_threads": numba.get_num_threads(),
        "load_avg_1min": round(os.getloadavg()[0], 2),  # > cpu count: other jobs share the cores
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
