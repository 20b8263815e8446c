"""Frozen-dataclass wrappers around the event kernels, usable in ``tonic.transforms.Compose``.

Example:
    >>> import tonic
    >>> t = tonic.transforms.Compose([Denoise((34, 34, 2), filter_time=10_000),
    ...                               ToFrame((34, 34, 2), n_time_bins=10)])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from spike.events.denoise import denoise
from spike.events.frames import to_frame
from spike.events.surfaces import to_time_surface, to_voxel_grid

__all__ = ["ToFrame", "ToVoxelGrid", "ToTimeSurface", "Denoise"]


@dataclass(frozen=True)
class ToFrame:
    """Bin events to frames ``[T, P, H, W]``; see :func:`spike.events.to_frame`."""

    sensor_size: tuple[int, int, int]
    n_time_bins: int | None = None
    time_window: float | None = None
    event_count: int | None = None
    overlap: float = 0
    include_incomplete: bool = True
    start_time: float | None = None
    end_time: float | None = None
    dtype: npt.DTypeLike = np.int32
    max_bytes: int | None = None  # None: spike.events.frames.MAX_FRAME_BYTES at call time

    def __call__(self, events: np.ndarray) -> np.ndarray:
        kw = {} if self.max_bytes is None else {"max_bytes": self.max_bytes}
        return to_frame(events, self.sensor_size, n_time_bins=self.n_time_bins,
                        time_window=self.time_window, event_count=self.event_count,
                        overlap=self.overlap, include_incomplete=self.include_incomplete,
                        start_time=self.start_time, end_time=self.end_time, dtype=self.dtype, **kw)


@dataclass(frozen=True)
class ToVoxelGrid:
    """Voxel grid ``[B, H, W]``, bilinear in time; see :func:`spike.events.to_voxel_grid`."""

    sensor_size: tuple[int, int, int]
    n_time_bins: int
    dtype: npt.DTypeLike = np.float32

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return to_voxel_grid(events, self.sensor_size, self.n_time_bins, dtype=self.dtype)


@dataclass(frozen=True)
class ToTimeSurface:
    """Time surfaces ``[T, P, H, W]`` every ``dt``; see :func:`spike.events.to_time_surface`."""

    sensor_size: tuple[int, int, int]
    dt: float
    tau: float
    include_incomplete: bool = True
    dtype: npt.DTypeLike = np.float32

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return to_time_surface(events, self.sensor_size, self.tau, dt=self.dt,
                               include_incomplete=self.include_incomplete, dtype=self.dtype)


@dataclass(frozen=True)
class Denoise:
    """Background-activity filter; see :func:`spike.events.denoise`."""

    sensor_size: tuple[int, int, int]
    filter_time: float
    connectivity: int = 8

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return denoise(events, self.sensor_size, self.filter_time, connectivity=self.connectivity)
