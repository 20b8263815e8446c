"""Datasets by name for configs: ``[data] name = "digits"`` -> binned ``[T, B, ...]`` batches.

Every builder returns a :class:`DataBundle` of two map-style datasets yielding ``(frames [T, ...], label)``;
:func:`make_loaders` wraps them in loaders whose batches are time-first ``[T, B, ...]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from spike.core.config import ConfigError, DataConfig

__all__ = ["DataBundle", "FramesDataset", "DATASETS", "build_data", "make_loaders", "time_first_collate"]


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


def time_first_collate(batch):
    """``[(x [T, ...], y)] -> (x [T, B, ...], y [B])``."""
    xs, ys = zip(*batch)
    x = torch.stack(xs, 1)  # [T, B, ...]
    return x, torch.as_tensor(ys, dtype=torch.long)


def _digits(cfg: DataConfig, seed: int) -> DataBundle:
    from spike.sim.digits import DURATION_US, _bin_fixed, load_digits_events
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
        return np.stack([_bin_fixed(e, d.sensor_size, t, DURATION_US) for e in evs])  # [N, T, 2, H, W]

    w, h, p = d.sensor_size
    return DataBundle(FramesDataset(binned(d.train_events), d.train_labels),
                      FramesDataset(binned(d.test_events), d.test_labels),
                      input_shape=(p, h, w), n_classes=10, n_time_bins=t, name="digits",
                      sensor_size=d.sensor_size, dt_us=DURATION_US / t)


DATASETS: dict[str, Callable[[DataConfig, int], DataBundle]] = {"digits": _digits}


def build_data(cfg: DataConfig, seed: int = 0) -> DataBundle:
    """Build the named dataset of ``cfg``; unknown names are a :class:`ConfigError`."""
    try:
        builder = DATASETS[cfg.name]
    except KeyError:
        raise ConfigError(f"[data] unknown dataset {cfg.name!r}; known: {sorted(DATASETS)}") from None
    if cfg.n_time_bins < 1:
        raise ConfigError(f"[data] n_time_bins must be >= 1, got {cfg.n_time_bins}")
    return builder(cfg, seed)


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
