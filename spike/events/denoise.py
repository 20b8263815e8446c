"""Background-activity filter (numba kernel, numpy in and out)."""

from __future__ import annotations

import numpy as np
from numba import njit

from spike.events.frames import _prepare

__all__ = ["denoise", "denoise_mask"]


@njit(cache=True)
def _baf_kernel(x, y, t, width, height, filter_time, eight, keep):  # pragma: no cover - numba
    """keep[k] = an earlier event at a neighbour of (x_k, y_k) has t_n + filter_time > t_k."""
    last = np.full((height + 2, width + 2), -np.inf)  # padded: the border never fires
    for k in range(len(t)):
        xi = x[k] + 1
        yi = y[k] + 1
        tk = t[k]
        # tonic's comparison, t_n + filter_time > t_k, kept in the same float form
        ok = (last[yi, xi - 1] + filter_time > tk or last[yi, xi + 1] + filter_time > tk
              or last[yi - 1, xi] + filter_time > tk or last[yi + 1, xi] + filter_time > tk)
        if eight and not ok:
            ok = (last[yi - 1, xi - 1] + filter_time > tk
                  or last[yi - 1, xi + 1] + filter_time > tk
                  or last[yi + 1, xi - 1] + filter_time > tk
                  or last[yi + 1, xi + 1] + filter_time > tk)
        keep[k] = ok
        last[yi, xi] = tk


def denoise_mask(events: np.ndarray, sensor_size: tuple[int, int, int], filter_time: float, *,
                 connectivity: int = 8) -> np.ndarray:
    """Boolean mask of the events the background-activity filter keeps.

    Event :math:`k` is kept iff an earlier event (earlier in the array) at a *neighbouring* pixel
    :math:`n \\in N(x_k, y_k)` has :math:`t_k - t_n < \\Delta` (``filter_time``); polarity is
    ignored.
    The pixel itself is not in :math:`N` (as in tonic 1.7's ``denoise_numpy`` and jAER's
    ``BackgroundActivityFilter``, Delbruck 2008), so a burst at one isolated pixel is removed.

    Args:
        events: structured array with fields ``x, y, t, p`` (``t`` sorted, microseconds).
        sensor_size: ``(W, H, P)``.
        filter_time: :math:`\\Delta` in microseconds.
        connectivity: ``8`` (3x3 neighbourhood, the default) or ``4`` (tonic's choice: left, right,
            up, down).

    Returns:
        ``bool`` array of shape ``[N]``.

    Difference from tonic: tonic initialises every pixel's memory as if it had fired at ``t = 0``,
    so every event with ``t < filter_time`` that has an in-sensor 4-neighbour is kept; here a pixel
    that never fired supports nothing. With ``connectivity=4`` and all ``t >= filter_time`` the
    result equals tonic's exactly.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    if not filter_time >= 0:
        raise ValueError(f"filter_time must be >= 0 microseconds, got {filter_time!r}")
    f = _prepare(events, sensor_size)
    keep = np.zeros(len(f.t), np.bool_)
    if len(keep):
        t = f.t.astype(np.float64)
        _baf_kernel(f.x, f.y, t, f.width, f.height, float(filter_time), connectivity == 8, keep)
    return keep


def denoise(events: np.ndarray, sensor_size: tuple[int, int, int], filter_time: float, *,
            connectivity: int = 8) -> np.ndarray:
    """Background-activity filter: the events kept by :func:`denoise_mask` (new array, same dtype).

    Example:
        >>> clean = denoise(events, (128, 128, 2), filter_time=10_000)
    """
    return events[denoise_mask(events, sensor_size, filter_time, connectivity=connectivity)]
