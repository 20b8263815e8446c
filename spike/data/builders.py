"""Datasets by name for configs: ``[data] name = "digits"`` -> binned ``[T, B, ...]`` batches.

Every builder returns a :class:`DataBundle` of two map-style datasets yielding ``(frames [T, ...], label)``;
:func:`make_loaders` wraps them in loaders whose batches are time-first ``[T, B, ...]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from spike.core.config import ConfigError, DataConfig

__all__ = ["DataBundle", "FramesDataset", "DATASETS", "build_data", "make_loaders", "time_first_collate",
           "split_validation"]


class FramesDataset(Dataset):
    """In-memory binned samples ``frames [N, T, ...]`` with integer ``labels [N]``."""

    def __init__(self, frames: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor):
        self.frames = torch.as_tensor(frames, dtype=torch.float32)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        if len(self.frames) != len(self.labels):
            raise ValueError(f"{len(self.frames)} samples but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.frames[i], self.labels[i]


@dataclass(frozen=True)
class DataBundle:
    train: Dataset
    test: Dataset
    input_shape: tuple[int, ...]  # per time step, e.g. (2, 34, 34)
    n_classes: int
    n_time_bins: int
    name: str
    sensor_size: tuple[int, int, int] | None = None
    dt_us: float | None = None  # length of one time bin
    val: Dataset | None = None  # a validation split fixed by the builder (official, or seeded and recorded)


def time_first_collate(batch):
    """``[(x [T, ...], y)] -> (x [T, B, ...], y [B])``."""
    xs, ys = zip(*batch)
    x = torch.stack(xs, 1)  # [T, B, ...]
    return x, torch.as_tensor(ys, dtype=torch.long)


def _digits(cfg: DataConfig, seed: int) -> DataBundle:
    from spike.sim.digits import DURATION_US, bin_fixed, load_digits_events
    from spike.sim.esim import DVSConfig
    from spike.sim.digits import DIGITS_CONFIG

    unknown = set(cfg.options) - {"n_frames_per_saccade"}
    if unknown:
        raise ConfigError(f"[data.options] unknown key(s) {sorted(unknown)} for dataset 'digits'")
    from dataclasses import replace

    dvs: DVSConfig = replace(DIGITS_CONFIG, pos_thres=cfg.contrast_threshold, neg_thres=cfg.contrast_threshold)
    d = load_digits_events(config=dvs, seed=0, **cfg.options)
    t = cfg.n_time_bins

    def binned(evs):
        return np.stack([bin_fixed(e, d.sensor_size, t, DURATION_US) for e in evs])  # [N, T, 2, H, W]

    w, h, p = d.sensor_size
    return DataBundle(FramesDataset(binned(d.train_events), d.train_labels),
                      FramesDataset(binned(d.test_events), d.test_labels),
                      input_shape=(p, h, w), n_classes=10, n_time_bins=t, name="digits",
                      sensor_size=d.sensor_size, dt_us=DURATION_US / t)


def _nmnist_small(cfg: DataConfig, seed: int) -> DataBundle:
    from spike.data import nmnist_small as nm
    from spike.data.cache import load_or_build

    unknown = set(cfg.options) - {"duration_us"}
    if unknown:
        raise ConfigError(f"[data.options] unknown key(s) {sorted(unknown)} for dataset 'nmnist_small'; "
                          f"known: ['duration_us']")
    duration = cfg.options.get("duration_us", nm.DURATION_US)
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 < duration < math.inf:
        raise ConfigError(f"[data.options] duration_us = {duration!r}: must be a positive number of microseconds")
    duration = int(duration)
    cache_dir = (Path(cfg.root) / ".spike_cache") if cfg.cache else None
    splits = {}
    for split in ("train", "test"):
        def build(split=split):
            try:
                ev, y = nm.read_split(cfg.root, split)
            except nm.DatasetNotFound as e:
                raise nm.DatasetNotFound(f"[data] root = {cfg.root!r}: dataset 'nmnist_small' not found: {e}") \
                    from None
            return {"frames": nm.bin_events(ev, cfg.n_time_bins, duration), "labels": y}

        params = {"dataset": "nmnist_small", "split": split, "n_time_bins": cfg.n_time_bins,
                  "duration_us": duration, "binning": "count-clip-v1"}
        arr = load_or_build(cache_dir, params, build)
        splits[split] = FramesDataset(arr["frames"], arr["labels"])
    w, h, p = nm.SENSOR_SIZE
    return DataBundle(splits["train"], splits["test"], input_shape=(p, h, w), n_classes=10,
                      n_time_bins=cfg.n_time_bins, name="nmnist_small", sensor_size=nm.SENSOR_SIZE,
                      dt_us=duration / cfg.n_time_bins)


DATASETS: dict[str, Callable[[DataConfig, int], DataBundle]] = {"digits": _digits, "nmnist_small": _nmnist_small}


def _shd(cfg: DataConfig, seed: int) -> DataBundle:
    """SHD HDF5 files (``root/SHD/shd_{train,test}.h5``) binned by :mod:`spike.data.shd`;
    ``[data.options]``: ``dt_ms`` (10), ``channel_group`` (5: 700 -> 140 channels)."""
    from spike.data import shd
    from spike.data.cache import load_or_build

    unknown = set(cfg.options) - {"dt_ms", "channel_group"}
    if unknown:
        raise ConfigError(f"[data.options] unknown key(s) {sorted(unknown)} for dataset 'shd'; "
                          f"known: ['channel_group', 'dt_ms']")
    dt_ms, group = cfg.options.get("dt_ms", 10.0), cfg.options.get("channel_group", 5)
    if isinstance(dt_ms, bool) or not isinstance(dt_ms, (int, float)) or not 0 < dt_ms < math.inf:
        raise ConfigError(f"[data.options] dt_ms = {dt_ms!r}: must be a positive number of milliseconds")
    if isinstance(group, bool) or not isinstance(group, int) or group < 1 or shd.N_CHANNELS % group:
        raise ConfigError(f"[data.options] channel_group = {group!r}: must be an integer dividing "
                          f"{shd.N_CHANNELS} (channels summed into one)")
    dt_ms = float(dt_ms)
    cache_dir = (Path(cfg.root) / ".spike_cache") if cfg.cache else None
    splits = {}
    for split in ("train", "test"):
        def build(split=split):
            times, units, labels = shd.read_split(cfg.root, split)
            return {"frames": shd.bin_spikes(times, units, cfg.n_time_bins, dt_ms, group), "labels": labels}

        src = shd.find_file(cfg.root, split)
        params = {"dataset": "shd", "split": split, "n_time_bins": cfg.n_time_bins, "dt_ms": dt_ms,
                  "channel_group": group, "source": str(src.resolve()), "size": src.stat().st_size,
                  "mtime": src.stat().st_mtime_ns, "binning": "count-drop-v1"}
        arr = load_or_build(cache_dir, params, build)
        splits[split] = FramesDataset(arr["frames"], arr["labels"])
    return DataBundle(splits["train"], splits["test"], input_shape=(shd.N_CHANNELS // group,),
                      n_classes=shd.N_CLASSES, n_time_bins=cfg.n_time_bins, name="shd",
                      sensor_size=(shd.N_CHANNELS, 1, 1), dt_us=dt_ms * 1000.0)


DATASETS["shd"] = _shd


def build_data(cfg: DataConfig, seed: int = 0) -> DataBundle:
    """Build the named dataset of ``cfg``; unknown names are a :class:`ConfigError`."""
    try:
        builder = DATASETS[cfg.name]
    except KeyError:
        raise ConfigError(f"[data] unknown dataset {cfg.name!r}; known: {sorted(DATASETS)}") from None
    if cfg.n_time_bins < 1:
        raise ConfigError(f"[data] n_time_bins must be >= 1, got {cfg.n_time_bins}")
    return builder(cfg, seed)


def split_validation(bundle: DataBundle, fraction: float, seed: int = 0) -> tuple[DataBundle, Dataset | None]:
    """Hold out a seeded ``fraction`` of the training set: ``(bundle with the rest as train, held-out set)``.

    The split is per class when the training set has ``labels`` (:func:`spike.data.datasets.stratified_split`,
    each class's indices permuted by ``np.random.default_rng(seed)``), else one seeded permutation, so
    training (``[data] val_fraction``) and later evaluation (anytime calibration) get the same samples.

    Raises:
        ConfigError: a fraction outside ``[0, 1)``, or one that leaves a class (or a part) empty. ``fraction == 0`` returns
    ``(bundle, None)`` unchanged.
    """
    from dataclasses import replace

    from torch.utils.data import Subset

    if bundle.val is not None:  # the builder fixed the split (spike.data.datasets): never carve twice
        return bundle, bundle.val
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"[data] val_fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return bundle, None
    n = len(bundle.train)
    labels = getattr(bundle.train, "labels", None)
    if labels is not None:  # per class: every class keeps its share in both parts
        from spike.data.datasets import stratified_split

        labels = np.asarray(labels)
        parts = stratified_split(labels, {"train": 1.0 - fraction, "val": fraction}, seed)
        train_idx, val_idx = parts["train"], parts["val"]
        for c in np.unique(labels):
            n_c, v_c = int((labels == c).sum()), int((labels[val_idx] == c).sum())
            if not 0 < v_c < n_c:
                raise ConfigError(f"[data] val_fraction={fraction} leaves class {int(c)} ({n_c} training samples) "
                                  f"with {v_c} validation and {n_c - v_c} training samples; every class needs both")
    else:
        n_val = int(round(fraction * n))
        if not 0 < n_val < n:
            raise ConfigError(f"[data] val_fraction={fraction} of {n} training samples leaves an empty split")
        perm = np.random.default_rng(seed).permutation(n)
        val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    val = Subset(bundle.train, val_idx.tolist())
    return replace(bundle, train=Subset(bundle.train, train_idx.tolist()), val=val), val


def make_loaders(bundle: DataBundle, cfg: DataConfig, seed: int = 0, *, distributed: bool = False):
    """Train loader (shuffled by a seeded generator, or a DistributedSampler) and test loader."""
    gen = torch.Generator().manual_seed(seed)
    sampler = None
    if distributed:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(bundle.train, shuffle=True, seed=seed, drop_last=False)
    train = DataLoader(bundle.train, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                       generator=gen if sampler is None else None, collate_fn=time_first_collate,
                       num_workers=cfg.num_workers, drop_last=False)
    test = DataLoader(bundle.test, batch_size=cfg.eval_batch_size, shuffle=False,
                      collate_fn=time_first_collate, num_workers=cfg.num_workers)
    return train, test


def _tonic_dataset(name: str) -> Callable[[DataConfig, int], DataBundle]:
    def build(cfg: DataConfig, seed: int) -> DataBundle:
        from spike.data.datasets import BUILDERS  # lazy: tonic, h5py and numba only when used

        return BUILDERS[name](cfg, seed)

    build.__name__ = f"_{name}"
    return build


# tonic-backed datasets (spike.data.datasets): SSC, DVS Gesture, N-MNIST, CIFAR10-DVS, N-Caltech101
DATASETS.update({n: _tonic_dataset(n) for n in ("ssc", "dvs_gesture", "nmnist", "cifar10_dvs", "ncaltech101")})
