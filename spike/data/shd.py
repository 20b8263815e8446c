"""Spiking Heidelberg Digits (SHD) from its published HDF5 files, binned for the delays recipe.

Cramer, Stradmann, Schemmel & Zenke 2020, doi:10.1109/TNNLS.2020.3044364. Each partition
``shd_{train,test}.h5`` holds ``spikes/times`` (one float array of spike times in seconds per sample),
``spikes/units`` (channel ids 0..699) and ``labels`` (0..19). The files are looked up in ``root/SHD/``
(tonic's layout) or directly in ``root``.

Binning (Hammouamri et al. 2024, arXiv:2306.17670): ``dt_ms`` bins (10 ms) over a fixed
``n_time_bins * dt_ms`` window (spikes after it are dropped), and ``channel_group`` adjacent channels
summed into one (700 → 140 for groups of 5). Values are spike counts per bin.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["N_CHANNELS", "N_CLASSES", "SHDFormatError", "find_file", "read_split", "bin_spikes"]

N_CHANNELS = 700
N_CLASSES = 20


class SHDFormatError(ValueError):
    """An SHD file that is missing or not in the published layout."""


def find_file(root: str | Path, split: str) -> Path:
    """``root/SHD/shd_<split>.h5`` or ``root/shd_<split>.h5``."""
    if split not in ("train", "test"):
        raise ValueError(f"SHD split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    for cand in (root / "SHD" / f"shd_{split}.h5", root / f"shd_{split}.h5"):
        if cand.is_file():
            return cand
    raise SHDFormatError(f"SHD {split} file not found: expected {root / 'SHD' / f'shd_{split}.h5'} (or "
                         f"{root / f'shd_{split}.h5'}); download shd_{split}.h5.zip from "
                         f"https://zenkelab.org/datasets/ and unzip it there")


def read_split(root: str | Path, split: str) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """``(times_s per sample, units per sample, labels [N])`` of one partition, validated."""
    import h5py

    path = find_file(root, split)
    try:
        with h5py.File(path, "r") as f:
            for key in ("spikes/times", "spikes/units", "labels"):
                if key not in f:
                    raise SHDFormatError(f"{path}: missing dataset {key!r} (not an SHD file?)")
            times = [np.asarray(t, dtype=np.float64) for t in f["spikes/times"][:]]
            units = [np.asarray(u, dtype=np.int64) for u in f["spikes/units"][:]]
            labels = np.asarray(f["labels"][:], dtype=np.int64)
    except OSError as e:
        raise SHDFormatError(f"{path}: cannot read as HDF5 ({e}); truncated download?") from None
    if not len(times) == len(units) == len(labels):
        raise SHDFormatError(f"{path}: {len(times)} time arrays, {len(units)} unit arrays, {len(labels)} labels")
    for i, (t, u) in enumerate(zip(times, units)):
        if len(t) != len(u):
            raise SHDFormatError(f"{path}: sample {i} has {len(t)} times but {len(u)} units")
        if len(u) and (u.min() < 0 or u.max() >= N_CHANNELS):
            raise SHDFormatError(f"{path}: sample {i} has channel ids outside [0, {N_CHANNELS})")
        if len(t) and not (np.isfinite(t).all() and t.min() >= 0):
            raise SHDFormatError(f"{path}: sample {i} has negative or non-finite spike times")
    if len(labels) and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise SHDFormatError(f"{path}: labels outside [0, {N_CLASSES})")
    return times, units, labels


def bin_spikes(times: list[np.ndarray], units: list[np.ndarray], n_time_bins: int, dt_ms: float = 10.0,
               channel_group: int = 5) -> np.ndarray:
    """Spike counts ``[N, n_time_bins, 700 // channel_group]`` (float32); bin ``floor(t / dt)``.

    Spikes at or after ``n_time_bins * dt_ms`` are dropped. Does not modify its inputs.
    """
    if n_time_bins < 1 or not dt_ms > 0:
        raise ValueError(f"need n_time_bins >= 1 and dt_ms > 0, got {n_time_bins}, {dt_ms}")
    if channel_group < 1 or N_CHANNELS % channel_group:
        raise ValueError(f"channel_group must divide {N_CHANNELS}, got {channel_group}")
    n_ch = N_CHANNELS // channel_group
    out = np.zeros((len(times), n_time_bins, n_ch), dtype=np.float32)  # [N, T, C]
    for i, (t, u) in enumerate(zip(times, units)):
        b = np.floor(np.asarray(t, dtype=np.float64) * 1000.0 / dt_ms).astype(np.int64)
        keep = b < n_time_bins
        np.add.at(out[i], (b[keep], np.asarray(u)[keep] // channel_group), 1.0)
    return out
