"""SHD/SSC transforms for tonic pipelines: cochlea-channel downsampling and fixed-width time binning.

Both work on the events tonic's ``SHD``/``SSC`` return (fields ``t, x, p``, no ``y``; ``t`` in
microseconds, ``x`` the channel 0..699) and on any structured array with ``t`` and ``x``. They are
thin frozen-dataclass wrappers: the binning itself is :func:`spike.data.shd.bin_spikes`, the code
the ``shd`` and ``ssc`` config datasets use, so a tonic pipeline and a config give the same counts.

Example:
    >>> import tonic
    >>> ds = tonic.datasets.SHD("data", transform=TimeBin(n_time_bins=100, dt_ms=10.0, channel_group=5))
    >>> frames, label = ds[0]  # doctest: +SKIP  (frames: [100, 140] float32 spike counts)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spike.core.events import EventError

__all__ = ["downsample_channels", "ChannelDownsample", "TimeBin"]

N_CHANNELS = 700  # lauscher cochlea channels of SHD and SSC


def _check_channels(events: np.ndarray, n_channels: int) -> np.ndarray:
    if not isinstance(events, np.ndarray) or events.dtype.names is None or "x" not in events.dtype.names \
            or "t" not in events.dtype.names:
        raise EventError(f"expected a structured event array with fields 't' and 'x', got "
                         f"{type(events).__name__} with dtype {getattr(events, 'dtype', None)}")
    x = events["x"]
    if len(x) and (x.min() < 0 or x.max() >= n_channels):
        raise EventError(f"events: channel x outside [0, {n_channels}): range [{x.min()}, {x.max()}]")
    return x


def downsample_channels(events: np.ndarray, group: int, n_channels: int = N_CHANNELS) -> np.ndarray:
    """Merge ``group`` adjacent channels: ``x -> floor(x / group)``; summed once binned.

    Args:
        events: structured array with fields ``t`` and ``x`` (any others are copied unchanged).
        group: channels per group; must divide ``n_channels`` (700 -> 140 for ``group = 5``).
        n_channels: channels of the input.

    Returns:
        A new event array (same dtype, same order) on ``n_channels // group`` channels.
    """
    if not isinstance(group, (int, np.integer)) or group < 1 or n_channels % group:
        raise ValueError(f"group must be a positive integer dividing {n_channels}, got {group!r}")
    x = _check_channels(events, n_channels)
    out = events.copy()
    out["x"] = x // group
    return out


@dataclass(frozen=True)
class ChannelDownsample:
    """Tonic-style transform: :func:`downsample_channels`.

    Compose with ``tonic.transforms.ToFrame(sensor_size=t.sensor_size, ...)`` for tonic framing, or
    use :class:`TimeBin` (which groups channels itself) for the binning of the ``shd``/``ssc`` configs.
    """

    group: int = 5
    n_channels: int = N_CHANNELS

    def __post_init__(self):
        if not isinstance(self.group, (int, np.integer)) or self.group < 1 or self.n_channels % self.group:
            raise ValueError(f"group must be a positive integer dividing {self.n_channels}, got {self.group!r}")

    @property
    def sensor_size(self) -> tuple[int, int, int]:
        """``(W, H, P)`` of the output, for tonic's ``ToFrame``."""
        return (self.n_channels // self.group, 1, 1)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return downsample_channels(events, self.group, self.n_channels)


@dataclass(frozen=True)
class TimeBin:
    """Spike counts ``[n_time_bins, 700 // channel_group]`` (float32) in bins of ``dt_ms`` from ``t = 0``.

    .. math::
        F[k, c] = \\#\\{i : \\lfloor t_i / \\Delta t \\rfloor = k,\\ \\lfloor x_i / g \\rfloor = c\\}

    Spikes at or after ``n_time_bins * dt_ms`` are dropped (Hammouamri et al. 2024, arXiv:2306.17670).
    Wraps :func:`spike.data.shd.bin_spikes` on ``t / 1e6`` seconds.

    Shape:
        events with ``x`` in ``[0, 700)`` -> ``[n_time_bins, 700 // channel_group]``.
    """

    n_time_bins: int
    dt_ms: float = 10.0
    channel_group: int = 1

    def __post_init__(self):
        if not isinstance(self.n_time_bins, (int, np.integer)) or self.n_time_bins < 1 or not self.dt_ms > 0:
            raise ValueError(f"need n_time_bins >= 1 and dt_ms > 0, got {self.n_time_bins!r}, {self.dt_ms!r}")
        if self.channel_group < 1 or N_CHANNELS % self.channel_group:
            raise ValueError(f"channel_group must divide {N_CHANNELS}, got {self.channel_group!r}")

    def __call__(self, events: np.ndarray) -> np.ndarray:
        from spike.data.shd import bin_spikes

        x = _check_channels(events, N_CHANNELS)
        t = events["t"]
        if len(t) and not (np.isfinite(t).all() and t.min() >= 0):
            raise EventError("events: negative or non-finite spike times")
        t_s = np.asarray(t, dtype=np.float64) / 1e6
        return bin_spikes([t_s], [x], self.n_time_bins, self.dt_ms, self.channel_group)[0]  # [T, C]
