"""Voxel grids and time surfaces from events (numba kernels, numpy in and out)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from spike.events.frames import _prepare, _windows

__all__ = ["to_voxel_grid", "to_time_surface"]


@njit(cache=True)
def _voxel_kernel(x, y, t, p, t0, n_bins, span, signed, grid):  # pragma: no cover - numba
    """grid[b, y, x] += pol * max(0, 1 - |b - t*|), t* = (n_bins - 1) (t - t0) / span."""
    scale = n_bins - 1
    for k in range(len(t)):
        tn = (t[k] - t0) * scale / span if span > 0 else 0.0
        b = int(np.floor(tn))
        d = tn - b
        pol = 1.0 if (p[k] > 0 or not signed) else -1.0
        if 0 <= b < n_bins:
            grid[b, y[k], x[k]] += pol * (1.0 - d)
        if 0 <= b + 1 < n_bins:
            grid[b + 1, y[k], x[k]] += pol * d


def to_voxel_grid(events: np.ndarray, sensor_size: tuple[int, int, int], n_time_bins: int, *,
                  dtype: npt.DTypeLike = np.float32) -> np.ndarray:
    """Event volume with bilinear interpolation in time (Zhu et al. 2019,
    doi:10.1109/CVPR.2019.00108; the EV-FlowNet / E-RAFT convention).

    .. math::
        t^*_k = (B - 1) \\frac{t_k - t_0}{t_N - t_0}, \\qquad
        V(b, y, x) = \\sum_{k: (x_k, y_k) = (x, y)} p_k \\max(0, 1 - |b - t^*_k|)

    with :math:`p_k \\in \\{-1, +1\\}` (``p <= 0`` counts as ``-1``; for a single-polarity sensor,
    ``P == 1``, every event counts ``+1``). If all events share one timestamp, :math:`t^* = 0`.

    Differences from tonic 1.7's ``ToVoxelGrid``: tonic scales by ``B`` instead of ``B - 1`` (so
    its grid spans ``[0, B]`` and the weight that falls beyond bin ``B - 1`` is dropped, including
    all of the last event), returns ``[B, 1, H, W]`` float64, and gives NaN for a single timestamp
    (division by zero); its functional form also writes ``p = -1`` into the input.
    Exactly: ``to_voxel_grid(ev, s, B + 1)[:B] == tonic ToVoxelGrid(s, B)(ev)[:, 0]``.

    Args:
        events: structured array with fields ``x, y, t, p``.
        sensor_size: ``(W, H, P)``.
        n_time_bins: number of temporal bins ``B``.
        dtype: float output dtype (accumulation is float64).

    Returns:
        Voxel grid of shape ``[B, H, W]``.
    """
    if not isinstance(n_time_bins, (int, np.integer)) or n_time_bins < 1:
        raise ValueError(f"n_time_bins must be a positive integer, got {n_time_bins!r}")
    if np.dtype(dtype).kind != "f":
        raise ValueError(f"dtype must be a float dtype, got {np.dtype(dtype)}")
    f = _prepare(events, sensor_size)
    grid = np.zeros((n_time_bins, f.height, f.width), np.float64)  # [B, H, W]
    if len(f.t):
        t0 = f.t[0]
        span = f.t[-1] - t0
        _voxel_kernel(f.x, f.y, f.t, f.p, t0, n_time_bins, span, f.n_pol > 1, grid)
    return grid.astype(dtype, copy=False)


@njit(cache=True)
def _surface_kernel(x, y, t, p, first, stops, sample_t, tau, out):  # pragma: no cover - numba
    """Walk events first..stops[-1] once; snapshot the per-pixel last time at every stop."""
    n_pol = out.shape[1]
    last = np.full(out.shape[1:], -np.inf)  # [P, H, W]
    k = first
    for s in range(len(stops)):
        while k < stops[s]:
            c = p[k]
            if c < 0 or n_pol == 1:
                c = 0
            last[c, y[k], x[k]] = t[k]
            k += 1
        # out = exp(-(sample_t - last) / tau); pixels that never fired (last = -inf) give 0
        flat_out = out[s].reshape(-1)  # [P*H*W]
        flat_last = last.reshape(-1)  # [P*H*W]
        for j in range(flat_last.size):
            flat_out[j] = np.exp((flat_last[j] - sample_t[s]) / tau)


def to_time_surface(events: np.ndarray, sensor_size: tuple[int, int, int], tau: float, *,
                    dt: float | None = None, sample_times: npt.ArrayLike | None = None,
                    include_incomplete: bool = True,
                    dtype: npt.DTypeLike = np.float32) -> np.ndarray:
    """Global time surfaces: exponentially decayed time of the last event per polarity and pixel
    (Lagorce et al. 2017, HOTS, doi:10.1109/TPAMI.2016.2574707, computed over the whole sensor).

    .. math::
        S_i(p, y, x) = \\exp\\left(-\\frac{\\tau_i - t_{\\mathrm{last}}(p, y, x)}{\\tau}\\right),
        \\qquad S_i = 0 \\text{ where no event occurred before } \\tau_i

    Two ways to choose the sample times :math:`\\tau_i`:

    * ``dt``: per frame, as tonic's ``ToTimesurface``: windows ``[t_0 + i dt, t_0 + (i+1) dt)``
      (the windows of :func:`~spike.events.to_frame` with ``time_window=dt``), each sampled at its
      end from the events before it. With ``include_incomplete=False`` this equals tonic 1.7's
      ``ToTimesurface(sensor_size, dt, tau)``; the default ``True`` also emits the last, partial
      window, so no event is dropped.
    * ``sample_times``: non-decreasing times; surface ``i`` uses the events with
      ``t <= sample_times[i]``.

    Args:
        events: structured array with fields ``x, y, t, p``.
        sensor_size: ``(W, H, P)``.
        tau: decay time constant in microseconds.
        dt: frame length in microseconds.
        sample_times: explicit sample times (microseconds), instead of ``dt``.
        include_incomplete: with ``dt``, keep the last partial window.
        dtype: float output dtype.

    Returns:
        Surfaces of shape ``[T, P, H, W]``.
    """
    if not tau > 0:
        raise ValueError(f"tau must be > 0 microseconds, got {tau!r}")
    if (dt is None) == (sample_times is None):
        raise ValueError("give exactly one of dt or sample_times")
    out_dtype = np.dtype(dtype)
    if out_dtype.kind != "f":
        raise ValueError(f"dtype must be a float dtype, got {out_dtype}")
    f = _prepare(events, sensor_size)
    if dt is not None:
        win = _windows(f.t, time_window=dt, include_incomplete=include_incomplete)
        first = int(win.starts[0])
        stops = win.ends
        times = win.t_end
    else:
        times = np.asarray(sample_times, dtype=np.float64).reshape(-1)  # [T]
        if np.any(np.diff(times) < 0) or not np.all(np.isfinite(times)):
            raise ValueError("sample_times must be finite and non-decreasing")
        first = 0
        stops = np.searchsorted(f.t, times, "right").astype(np.int64)
    out = np.empty((len(times), f.n_pol, f.height, f.width), out_dtype)  # [T, P, H, W]
    _surface_kernel(f.x, f.y, f.t, f.p, first, stops, times, float(tau), out)
    return out
