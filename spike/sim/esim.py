"""Frame-to-event DVS simulator after ESIM and v2e (numpy + numba, no torch).

Every pixel compares its (linear-log) intensity with a memorised reference and emits one event
per crossed contrast threshold, with the crossing time linearly interpolated between frames:

.. math::
    L(t) = \\mathrm{linlog}(I(t)), \\qquad
    |L(t) - L_\\mathrm{ref}| \\ge C_{\\pm}(x, y) \\Rightarrow
    \\text{event},\\ L_\\mathrm{ref} \\leftarrow L_\\mathrm{ref} \\pm C_{\\pm}(x, y)

References:
    Rebecq, Gehrig, Scaramuzza (2018), "ESIM: an Open Event Camera Simulator", CoRL,
    https://proceedings.mlr.press/v87/rebecq18a.html (per-pixel linear interpolation of crossings).
    Hu, Liu, Delbruck (2021), "v2e: From Video Frames to Realistic DVS Events", CVPRW,
    doi:10.1109/CVPRW53098.2021.00144 (lin-log, threshold mismatch, refractory, shot and leak
    noise, photoreceptor low-pass).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from spike.core.events import EVENT_DTYPE

__all__ = ["DVSConfig", "SimulationError", "lin_log", "simulate", "sensor_size_of"]


class SimulationError(ValueError):
    """Invalid simulator input or configuration (bad frames, timestamps or thresholds)."""


@dataclass(frozen=True)
class DVSConfig:
    """Parameters of the DVS pixel model (v2e names where they exist).

    Args:
        pos_thres: mean ON contrast threshold :math:`C_+` in log-intensity units.
        neg_thres: mean OFF contrast threshold :math:`C_-` (positive number).
        sigma_thres: std of the per-pixel thresholds,
            :math:`C \\sim \\mathcal{N}(\\bar C, \\sigma^2)`.
        min_thres: per-pixel thresholds are clipped to at least this value.
        lin_log_threshold: intensity (0-255 units) below which :func:`lin_log` is linear.
        cutoff_hz: photoreceptor 3 dB bandwidth at full intensity; 0 disables the low-pass.
        refractory_us: a pixel emits no event closer than this to its previous one.
        shot_noise_rate_hz: Poisson rate of shot-noise events per pixel (ON and OFF together,
            random polarity, uniform in time); each one resets the pixel's reference.
        leak_rate_hz: rate of leak ON events per pixel under constant light.
        leak_jitter: relative std of the per-pixel leak rate.
    """

    pos_thres: float = 0.2
    neg_thres: float = 0.2
    sigma_thres: float = 0.03
    min_thres: float = 0.01
    lin_log_threshold: float = 20.0
    cutoff_hz: float = 0.0
    refractory_us: int = 0
    shot_noise_rate_hz: float = 0.0
    leak_rate_hz: float = 0.0
    leak_jitter: float = 0.1

    def __post_init__(self) -> None:
        positive = ("pos_thres", "neg_thres", "min_thres", "lin_log_threshold")
        non_negative = ("sigma_thres", "cutoff_hz", "refractory_us", "shot_noise_rate_hz",
                        "leak_rate_hz", "leak_jitter")
        for name in positive + non_negative:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise SimulationError(f"DVSConfig.{name} must be a number, got {v!r}")
            if not math.isfinite(v):
                raise SimulationError(f"DVSConfig.{name} must be finite, got {v}")
            if name in positive and v <= 0:
                raise SimulationError(f"DVSConfig.{name} must be > 0, got {v}")
            if v < 0:
                raise SimulationError(f"DVSConfig.{name} must be >= 0, got {v}")
        if int(self.refractory_us) != self.refractory_us:
            raise SimulationError(f"DVSConfig.refractory_us must be an integer number of "
                                  f"microseconds, got {self.refractory_us}")


def lin_log(x: np.ndarray, threshold: float = 20.0) -> np.ndarray:
    """v2e's linear-log mapping of intensity in 0-255 units (continuous at ``threshold``).

    .. math::
        \\mathrm{linlog}(x) = \\begin{cases} x \\ln(\\theta)/\\theta & x \\le \\theta \\\\
        \\ln x & x > \\theta \\end{cases}

    The result is rounded to 8 decimals as in v2e, so that adding and subtracting a threshold
    lands back on the same value.

    Args:
        x: intensities in 0-255 units (any shape).
        threshold: :math:`\\theta`, end of the linear segment.

    Returns:
        float64 array of the same shape.
    """
    x = np.asarray(x, dtype=np.float64)
    f = math.log(threshold) / threshold
    y = np.where(x <= threshold, x * f, np.log(np.maximum(x, threshold)))
    return np.round(y * 1e8) / 1e8


@njit(cache=True)
def _log_frames(frames, gain, threshold, i255, logf):
    """Fill ``i255 = gain * frames`` and ``logf = lin_log(i255)`` (all ``[N, H, W]``).

    The numba twin of :func:`lin_log` used by every simulation path (plain loops: they compile
    faster than array expressions).
    """
    f = math.log(threshold) / threshold
    n, h, w = frames.shape
    for k in range(n):
        for y in range(h):
            for x in range(w):
                v = frames[k, y, x] * gain
                i255[k, y, x] = v
                lv = v * f if v <= threshold else math.log(v)
                logf[k, y, x] = np.rint(lv * 1e8) / 1e8


def sensor_size_of(frames: np.ndarray) -> tuple[int, int, int]:
    """``(W, H, 2)`` of a ``[N, H, W]`` frame stack."""
    return (int(frames.shape[2]), int(frames.shape[1]), 2)


# ---------------------------------------------------------------- validation and preprocessing


def _check_frames(frames: np.ndarray) -> tuple[np.ndarray, float]:
    """Validate ``[N, H, W]`` frames (uint8, or float in [0, 1]).

    Returns:
        float64 frames and the gain that maps them to 0-255 units.
    """
    if not isinstance(frames, np.ndarray):
        frames = np.asarray(frames)
    if frames.ndim != 3:
        raise SimulationError(f"frames must have shape [N, H, W], got shape {frames.shape}")
    n, h, w = frames.shape
    if n < 2 or h < 1 or w < 1:
        raise SimulationError(f"need at least 2 frames of at least 1x1 pixels, got shape "
                              f"{frames.shape}")
    if frames.dtype == np.uint8:
        return frames.astype(np.float64), 1.0
    if not np.issubdtype(frames.dtype, np.floating):
        raise SimulationError(f"frames must be uint8 (0-255) or float (0-1), got dtype "
                              f"{frames.dtype}")
    f = frames.astype(np.float64)
    if not np.isfinite(f).all():
        bad = np.argwhere(~np.isfinite(f))[0]
        raise SimulationError(f"frames contain NaN or inf (first at frame/row/col {tuple(bad)})")
    lo, hi = f.min(), f.max()
    if lo < 0.0 or hi > 1.0:
        raise SimulationError(f"float frames must lie in [0, 1], got range [{lo}, {hi}]")
    return f, 255.0


def _check_timestamps(timestamps_us: np.ndarray, n: int) -> np.ndarray:
    """Validate ``[N]`` integer-valued, strictly increasing timestamps and return int64."""
    ts = np.asarray(timestamps_us)
    if ts.ndim != 1 or ts.shape[0] != n:
        raise SimulationError(f"timestamps_us must have shape [{n}] (one per frame), got "
                              f"shape {ts.shape}")
    if not (np.issubdtype(ts.dtype, np.integer) or np.issubdtype(ts.dtype, np.floating)):
        raise SimulationError(f"timestamps_us must be numeric, got dtype {ts.dtype}")
    if np.issubdtype(ts.dtype, np.floating):
        if not np.isfinite(ts).all() or (ts != np.round(ts)).any():
            raise SimulationError("timestamps_us must be finite whole microseconds")
    ts = ts.astype(np.int64)
    bad = np.flatnonzero(np.diff(ts) <= 0)
    if bad.size:
        i = int(bad[0])
        raise SimulationError(f"timestamps_us must be strictly increasing, but t[{i}]={ts[i]} "
                              f">= t[{i + 1}]={ts[i + 1]}")
    return ts


@njit(cache=True)
def _lowpass(logf: np.ndarray, i255: np.ndarray, ts: np.ndarray, cutoff_hz: float,
             out: np.ndarray) -> None:
    """v2e's photoreceptor: first-order IIR on log intensity, bandwidth scaled by intensity.

    .. math:: \\epsilon = \\min(1, 2\\pi f_c\\, \\Delta t\\, (I + 20)/275), \\quad
        \\tilde L_k = \\tilde L_{k-1} + \\epsilon (L_k - \\tilde L_{k-1})

    Writes into ``out`` (``[N, H, W]``): a jit function called both from Python and from other
    cached jit functions must not return an array (numba's cache can then lose the boxing
    environment: "NRT_adapt_ndarray_to_python: descr is NULL").
    """
    n, h, w = logf.shape
    for y in range(h):
        for x in range(w):
            out[0, y, x] = logf[0, y, x]
    for k in range(1, n):
        dt_s = (ts[k] - ts[k - 1]) * 1e-6
        for y in range(h):
            for x in range(w):
                eps = 2.0 * np.pi * cutoff_hz * dt_s * (i255[k, y, x] + 20.0) / 275.0
                if eps > 1.0:
                    eps = 1.0
                out[k, y, x] = out[k - 1, y, x] + eps * (logf[k, y, x] - out[k - 1, y, x])


def _draw_pixel_params(config: DVSConfig, h: int, w: int, ts: np.ndarray,
                       rng: np.random.Generator):
    """Per-pixel thresholds, leak drift, initial reference offset and shot-noise events.

    Draw order (fixed, so a seed reproduces a stream): ON thresholds, OFF thresholds, leak
    rates, leak phases, shot-noise counts, times, polarities.

    Returns:
        ``c_on, c_off, ref_offset, drift`` (``[H, W]`` float64; drift in log units per us) and
        noise ``(t, p, pix, k)`` int64 arrays sorted by (interval ``k``, pixel, t).
    """
    c_on = np.maximum(rng.normal(config.pos_thres, config.sigma_thres, (h, w)), config.min_thres)
    c_off = np.maximum(rng.normal(config.neg_thres, config.sigma_thres, (h, w)),
                       config.min_thres)
    if config.leak_rate_hz > 0:
        rate = config.leak_rate_hz * (1.0 + config.leak_jitter * rng.standard_normal((h, w)))
        rate = np.maximum(rate, 0.0)
        drift = rate * c_on * 1e-6  # the reference sinks by one ON threshold per 1/rate s
        ref_offset = rng.random((h, w)) * c_on  # random leak phase, desynchronises pixels
    else:
        drift = np.zeros((h, w))
        ref_offset = np.zeros((h, w))
    empty = np.zeros(0, dtype=np.int64)
    noise = (empty, empty, empty, empty)
    if config.shot_noise_rate_hz > 0:
        span = int(ts[-1] - ts[0])
        counts = rng.poisson(config.shot_noise_rate_hz * span * 1e-6, size=h * w)
        total = int(counts.sum())
        pix = np.repeat(np.arange(h * w, dtype=np.int64), counts)
        t = rng.integers(ts[0] + 1, ts[-1] + 1, size=total, dtype=np.int64)  # in (t0, tN]
        p = rng.integers(0, 2, size=total, dtype=np.int64)
        k = np.searchsorted(ts, t, side="left").astype(np.int64) - 1  # t in (ts[k], ts[k+1]]
        order = np.lexsort((t, pix, k))
        noise = (t[order], p[order], pix[order], k[order])
    return c_on, c_off, ref_offset, drift, noise


# ---------------------------------------------------------------- numba kernel


@njit(cache=True, inline="always")
def next_crossing(s0, slope, t0, t1, cur, r, con, coff):  # pragma: no cover - numba
    """First threshold crossing at or after ``cur`` of the log signal ``s0 + slope (t - t0)`` on
    ``[t0, t1]`` against the reference ``r`` (ON at ``r + con``, OFF at ``r - coff``): ``(time, polarity)``,
    time ``inf`` if none. Shared by :func:`simulate` and :class:`spike.sim.pixel.VideoSimulator`."""
    d = s0 + slope * (cur - t0) - r
    if d >= con:
        return cur, 1
    if d <= -coff:
        return cur, 0
    if slope > 0.0:
        tt = t0 + (r + con - s0) / slope
        if tt <= t1:
            return tt, 1
    elif slope < 0.0:
        tt = t0 + (r - coff - s0) / slope
        if tt <= t1:
            return tt, 0
    return np.inf, 0


@njit(cache=True)
def _esim_kernel(logf, ts, c_on, c_off, ref_offset, drift, refractory_us,
                 nz_t, nz_p, nz_pix, nz_k, ox, oy, ot, op, write):
    """Generate events for one video; returns their count (writes them only if ``write``).

    Within a frame interval the signal :math:`S(t) = L(t) + \\text{drift}\\,(t - t_0)` is
    linear, hence monotone, so its crossings of :math:`L_\\mathrm{ref} \\pm C` are solved in
    closed form (ESIM). Shot-noise events interleave in time order and reset the reference to
    the current signal, as v2e does. An event closer than ``refractory_us`` to the pixel's
    previous one is dropped, but the reference still advances, as if the pixel had been held
    in reset.

    Shape:
        logf: ``[N, H, W]``; ts: ``[N]``; pixel maps ``[H, W]``; noise arrays ``[M]`` sorted
        by (interval, pixel, t); outputs ``[count]`` (ignored unless ``write``).
    """
    n, h, w = logf.shape
    t_start = ts[0]
    ref = np.empty((h, w))
    last = np.empty((h, w), dtype=np.int64)
    for y in range(h):
        for x in range(w):
            ref[y, x] = logf[0, y, x] - ref_offset[y, x]
            last[y, x] = t_start - refractory_us - 1
    count = 0
    q = 0  # next noise event
    m = nz_t.shape[0]
    for k in range(n - 1):
        t0 = ts[k]
        t1 = ts[k + 1]
        dt = float(t1 - t0)
        for y in range(h):
            for x in range(w):
                pix = y * w + x
                s0 = logf[k, y, x] + drift[y, x] * (t0 - t_start)
                s1 = logf[k + 1, y, x] + drift[y, x] * (t1 - t_start)
                slope = (s1 - s0) / dt
                con = c_on[y, x]
                coff = c_off[y, x]
                r = ref[y, x]
                cur = float(t0)
                while True:
                    tc, pol = next_crossing(s0, slope, t0, t1, cur, r, con, coff)
                    has_noise = q < m and nz_k[q] == k and nz_pix[q] == pix
                    is_noise = False
                    if tc < np.inf and (not has_noise or tc <= nz_t[q]):
                        te = np.int64(np.round(tc))
                        cur = tc
                    elif has_noise:
                        te = nz_t[q]
                        pol = nz_p[q]
                        cur = max(cur, float(te))
                        is_noise = True
                        q += 1
                    else:
                        break
                    if te <= t0:
                        te = t0 + 1  # crossings lie strictly after the previous frame
                    elif te > t1:
                        te = t1
                    if is_noise:
                        r = s0 + slope * (cur - t0)  # shot noise resets the pixel (v2e)
                    elif pol == 1:
                        r += con
                    else:
                        r -= coff
                    if te - last[y, x] >= refractory_us:
                        last[y, x] = te
                        if write:
                            ox[count] = x
                            oy[count] = y
                            ot[count] = te
                            op[count] = pol
                        count += 1
                ref[y, x] = r
    return count


def _run_kernel(logf, ts, params, refractory_us: int) -> np.ndarray:
    """Count, fill and time-sort the events of one video (stable sort keeps pixel order)."""
    c_on, c_off, ref_offset, drift, (nz_t, nz_p, nz_pix, nz_k) = params
    dummy = np.zeros(0, dtype=np.int64)
    args = (logf, ts, c_on, c_off, ref_offset, drift, np.int64(refractory_us),
            nz_t, nz_p, nz_pix, nz_k)
    count = _esim_kernel(*args, dummy, dummy, dummy, dummy, False)
    ox, oy, ot, op = (np.empty(count, dtype=np.int64) for _ in range(4))
    _esim_kernel(*args, ox, oy, ot, op, True)
    order = np.argsort(ot, kind="stable")
    ev = np.empty(count, dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = ox[order], oy[order], ot[order], op[order]
    return ev


def simulate(frames: np.ndarray, timestamps_us: np.ndarray, config: DVSConfig | None = None,
             seed: int | np.random.Generator = 0) -> np.ndarray:
    """Convert a video into DVS events with the ESIM/v2e pixel model.

    Args:
        frames: ``[N, H, W]`` intensities, uint8 (0-255) or float in [0, 1]; ``N >= 2``.
        timestamps_us: ``[N]`` strictly increasing frame times in whole microseconds.
        config: pixel model; ``DVSConfig()`` if None.
        seed: int seed or ``np.random.Generator`` (whose state is advanced) for thresholds
            and noise; the same seed gives the same events.

    Returns:
        Structured array with :data:`spike.core.events.EVENT_DTYPE`, sorted by ``t``, with
        ``p = 1`` (ON) / ``0`` (OFF), ``sensor_size = (W, H, 2)``, and every event time in
        ``(timestamps_us[0], timestamps_us[-1]]``.

    Raises:
        SimulationError: wrong rank, dtype, NaN or out-of-range frames, or bad timestamps.

    Example:
        >>> frames = np.linspace(0.2, 0.8, 5)[:, None, None] * np.ones((5, 4, 6))
        >>> ev = simulate(frames, np.arange(5) * 1000, DVSConfig(sigma_thres=0.0))
        >>> bool((ev["p"] == 1).all())
        True
    """
    config = DVSConfig() if config is None else config
    if not isinstance(config, DVSConfig):
        raise SimulationError(f"config must be a DVSConfig, got {type(config).__name__}")
    f64, gain = _check_frames(frames)
    ts = _check_timestamps(timestamps_us, f64.shape[0])
    i255 = np.empty_like(f64)  # [N, H, W]
    logf = np.empty_like(f64)  # [N, H, W]
    _log_frames(f64, gain, float(config.lin_log_threshold), i255, logf)
    if config.cutoff_hz > 0:
        filtered = np.empty_like(logf)  # [N, H, W]
        _lowpass(logf, i255, ts, float(config.cutoff_hz), filtered)
        logf = filtered
    rng = np.random.default_rng(seed)
    params = _draw_pixel_params(config, i255.shape[1], i255.shape[2], ts, rng)
    return _run_kernel(logf, ts, params, int(config.refractory_us))
