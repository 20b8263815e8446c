"""Streaming DVS pixel array: the ESIM/v2e model of :mod:`spike.sim.esim`, fed chunk by chunk.

:class:`VideoSimulator` keeps every pixel's state (reference level, photoreceptor low-pass
output, last event time, last input frame) between calls to :meth:`VideoSimulator.feed`, so a
long video is simulated in chunks with memory that does not grow with its length, and the
events equal those of one call on the whole video exactly.

Beyond :func:`spike.sim.esim.simulate` it adds:

* RGB frames (``[N, H, W, 3]``, ITU-R BT.709 luma of the stored, gamma-encoded values, see
  :func:`spike.sim.video.luminance`) and timestamps in ``"s"``, ``"ms"`` or ``"us"``;
* temporal upsampling of the photoreceptor low-pass: an interval where a pixel's input differs
  from its filter state by more than ``upsample`` thresholds is cut into sub-steps, the input
  interpolated linearly in the log domain, so the filter follows its continuous-time response
  instead of jumping to the new frame (at 30 fps v2e's :math:`\\epsilon` clips to 1 and the
  filter would do nothing). Without the low-pass the crossings are already solved exactly on
  the linear log segment, so sub-steps would change nothing and are not made;
* shot noise drawn per frame interval from a seed derived from ``(seed, interval index)`` (so
  it does not depend on the chunking); a shot event does not move the pixel's reference and
  ignores the refractory period, so signal, shot and leak rates add (a reset at every shot
  event would suppress leak events whenever shot noise is faster than the leak, as in v2e's
  ``noisy`` preset: 5 Hz shot against 0.1 Hz leak).

With ``shot_noise_rate_hz = 0`` and ``upsample = 0`` the events equal
:func:`spike.sim.esim.simulate`'s bit for bit (same threshold and leak draws); the tests check
it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from spike.core.events import EVENT_DTYPE
from spike.sim.esim import DVSConfig, SimulationError, _log_frames, next_crossing

__all__ = ["TIME_UNITS", "VideoSimulator", "simulate_video", "to_microseconds"]

TIME_UNITS = {"us": 1, "ms": 1_000, "s": 1_000_000}
"""Timestamp units accepted by :class:`VideoSimulator` (microseconds per unit)."""


def to_microseconds(timestamps, unit: str = "us") -> np.ndarray:
    """Whole-microsecond int64 times from ``timestamps`` in ``unit`` (rounded to 1 us).

    Raises:
        SimulationError: unknown unit, non-numeric or non-finite times, or (for ``"us"``)
            fractional microseconds.
    """
    if unit not in TIME_UNITS:
        raise SimulationError(f"unknown time unit {unit!r}; expected one of {tuple(TIME_UNITS)}")
    ts = np.asarray(timestamps)
    if ts.ndim != 1:
        raise SimulationError(f"timestamps must be 1-D (one per frame), got shape {ts.shape}")
    if not (np.issubdtype(ts.dtype, np.integer) or np.issubdtype(ts.dtype, np.floating)):
        raise SimulationError(f"timestamps must be numeric, got dtype {ts.dtype}")
    if np.issubdtype(ts.dtype, np.floating) and not np.isfinite(ts).all():
        raise SimulationError("timestamps contain NaN or inf")
    if unit == "us":
        if np.issubdtype(ts.dtype, np.floating) and (ts != np.round(ts)).any():
            raise SimulationError("timestamps in 'us' must be whole microseconds")
        return ts.astype(np.int64)
    if np.issubdtype(ts.dtype, np.integer):
        return ts.astype(np.int64) * TIME_UNITS[unit]
    return np.round(ts.astype(np.float64) * TIME_UNITS[unit]).astype(np.int64)


@njit(cache=True)
def _inv_lin_log(y, threshold):
    """Intensity (0-255 units) whose :func:`spike.sim.esim.lin_log` is ``y``."""
    ly = math.log(threshold)
    return y * threshold / ly if y <= ly else math.exp(y)


@njit(cache=True)
def _stream_kernel(logf, i255, ts, t_prev, t_start, a_prev, lp, ref, last, c_on, c_off, drift,
                   refractory_us, cutoff_hz, upsample, max_substeps, lin_thr,
                   ox, oy, ot, op, cap):
    """Advance the pixel state over frames ``logf`` (``[M, H, W]``, times ``ts`` after ``t_prev``).

    Per interval and pixel the signal is piecewise linear through ``n`` sub-steps (``n = 1``
    without low-pass): :math:`S = \\tilde L + \\text{drift}\\,(t - t_\\mathrm{start})`, and
    its crossings of :math:`L_\\mathrm{ref} \\pm C` are solved in closed form on each segment
    (ESIM). ``a_prev, lp, ref, last`` (``[H, W]``) are updated in place. Writes at most ``cap``
    events (in interval-major, pixel, time order) and returns the total count.
    """
    m, h, w = logf.shape
    count = 0
    for k in range(m):
        T0 = t_prev if k == 0 else ts[k - 1]
        T1 = ts[k]
        dT = float(T1 - T0)
        for y in range(h):
            for x in range(w):
                a0 = a_prev[y, x]
                a1 = logf[k, y, x]
                con = c_on[y, x]
                coff = c_off[y, x]
                n = 1
                if cutoff_hz > 0.0 and upsample > 0.0:
                    gap = max(abs(a1 - lp[y, x]), abs(a1 - a0))
                    n = int(math.ceil(gap / (upsample * min(con, coff))))
                    n = min(max(n, 1), max_substeps)
                r = ref[y, x]
                f_prev = lp[y, x]
                tau0 = float(T0)
                s0 = f_prev + drift[y, x] * (T0 - t_start)
                for j in range(1, n + 1):
                    if j == n:
                        tau1 = float(T1)
                        a_j = a1
                        inten = i255[k, y, x]
                        dt_s = (T1 - T0) * 1e-6 if n == 1 else (tau1 - tau0) * 1e-6
                    else:
                        tau1 = T0 + dT * j / n
                        a_j = a0 + (a1 - a0) * j / n
                        inten = _inv_lin_log(a_j, lin_thr)
                        dt_s = (tau1 - tau0) * 1e-6
                    if cutoff_hz > 0.0:
                        eps = 2.0 * np.pi * cutoff_hz * dt_s * (inten + 20.0) / 275.0
                        if eps > 1.0:
                            eps = 1.0
                        f_new = f_prev + eps * (a_j - f_prev)
                    else:
                        f_new = a_j
                    if n == 1:
                        s1 = f_new + drift[y, x] * (T1 - t_start)
                    else:
                        s1 = f_new + drift[y, x] * (tau1 - t_start)
                    seg = tau1 - tau0
                    slope = (s1 - s0) / seg
                    cur = tau0
                    while True:
                        tc, pol = next_crossing(s0, slope, tau0, tau1, cur, r, con, coff)
                        if tc == np.inf:
                            break
                        te = np.int64(np.round(tc))
                        cur = tc
                        if te <= T0:
                            te = T0 + 1  # crossings lie strictly after the previous frame
                        elif te > T1:
                            te = T1
                        if pol == 1:
                            r += con
                        else:
                            r -= coff
                        if te - last[y, x] >= refractory_us:
                            last[y, x] = te
                            if count < cap:
                                ox[count] = x
                                oy[count] = y
                                ot[count] = te
                                op[count] = pol
                            count += 1
                    f_prev = f_new
                    s0 = s1
                    tau0 = tau1
                ref[y, x] = r
                lp[y, x] = f_prev
                a_prev[y, x] = a1
    return count


class VideoSimulator:
    """A DVS pixel array that converts a video into events chunk by chunk.

    Args:
        config: pixel model (:class:`~spike.sim.esim.DVSConfig`); ``DVSConfig()`` if None.
        seed: int seed or ``np.random.Generator`` for thresholds, leak and shot noise.
        upsample: with the low-pass on, cut an interval into sub-steps so that a pixel's input
            moves by at most ``upsample`` of its smaller threshold per sub-step; 0 disables.
        max_substeps: upper bound on the sub-steps of one interval.

    Example:
        >>> sim = VideoSimulator(DVSConfig(sigma_thres=0.0))
        >>> frames = np.linspace(0.2, 0.8, 5)[:, None, None] * np.ones((5, 4, 6))
        >>> a = sim.feed(frames[:3], [0.0, 0.001, 0.002], unit="s")
        >>> b = sim.feed(frames[3:], [0.003, 0.004], unit="s")
        >>> bool((np.concatenate([a, b])["p"] == 1).all()), sim.sensor_size
        (True, (6, 4, 2))
    """

    def __init__(self, config: DVSConfig | None = None, *, seed: int | np.random.Generator = 0,
                 upsample: float = 0.25, max_substeps: int = 64) -> None:
        config = DVSConfig() if config is None else config
        if not isinstance(config, DVSConfig):
            raise SimulationError(f"config must be a DVSConfig, got {type(config).__name__}")
        if not (isinstance(upsample, (int, float)) and math.isfinite(upsample) and upsample >= 0):
            raise SimulationError(f"upsample must be a finite number >= 0, got {upsample!r}")
        if int(max_substeps) != max_substeps or max_substeps < 1:
            raise SimulationError(f"max_substeps must be an integer >= 1, got {max_substeps!r}")
        self.config = config
        self.upsample = float(upsample)
        self.max_substeps = int(max_substeps)
        self._rng = np.random.default_rng(seed)
        self._state = None
        self.n_frames = 0
        self.n_events = 0

    @property
    def sensor_size(self) -> tuple[int, int, int] | None:
        """``(W, H, 2)`` once the first frame has been fed, else None."""
        if self._state is None:
            return None
        h, w = self._state["ref"].shape
        return (w, h, 2)

    @property
    def t_first(self) -> int | None:
        """Time (us) of the first frame fed."""
        return None if self._state is None else int(self._state["t_start"])

    @property
    def t_last(self) -> int | None:
        """Time (us) of the last frame fed."""
        return None if self._state is None else int(self._state["t_prev"])

    def _init(self, logf0: np.ndarray, t0: int) -> None:
        cfg, rng = self.config, self._rng
        h, w = logf0.shape
        # the draw order of spike.sim.esim._draw_pixel_params: ON, OFF thresholds, leak
        c_on = np.maximum(rng.normal(cfg.pos_thres, cfg.sigma_thres, (h, w)), cfg.min_thres)
        c_off = np.maximum(rng.normal(cfg.neg_thres, cfg.sigma_thres, (h, w)), cfg.min_thres)
        if cfg.leak_rate_hz > 0:
            rate = cfg.leak_rate_hz * (1.0 + cfg.leak_jitter * rng.standard_normal((h, w)))
            drift = np.maximum(rate, 0.0) * c_on * 1e-6  # reference sinks one C_on per 1/rate
            ref_offset = rng.random((h, w)) * c_on  # random leak phase
        else:
            drift = np.zeros((h, w))
            ref_offset = np.zeros((h, w))
        noise_key = int(rng.integers(0, 2**63 - 1))
        self._state = {
            "c_on": c_on, "c_off": c_off, "drift": drift, "noise_key": noise_key,
            "ref": logf0 - ref_offset, "lp": logf0.copy(), "a_prev": logf0.copy(),
            "last": np.full((h, w), t0 - int(cfg.refractory_us) - 1, dtype=np.int64),
            "t_start": np.int64(t0), "t_prev": np.int64(t0), "interval": 0,
        }

    def _shot_noise(self, ts: np.ndarray, t_prev: int, k0: int, h: int, w: int) -> np.ndarray:
        """Shot-noise events of the intervals ending at ``ts`` (global indices from ``k0``)."""
        rate = self.config.shot_noise_rate_hz
        parts = []
        key = self._state["noise_key"]
        for i, t1 in enumerate(ts):
            t0 = t_prev if i == 0 else ts[i - 1]
            rng = np.random.default_rng((key, k0 + i))
            total = int(rng.poisson(rate * h * w * (t1 - t0) * 1e-6))
            if total == 0:
                continue
            ev = np.empty(total, dtype=EVENT_DTYPE)
            pix = rng.integers(0, h * w, size=total)
            ev["x"], ev["y"] = pix % w, pix // w
            ev["t"] = rng.integers(t0 + 1, t1 + 1, size=total)
            ev["p"] = rng.integers(0, 2, size=total)
            parts.append(ev)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=EVENT_DTYPE)

    def feed(self, frames: np.ndarray, timestamps: np.ndarray, *, unit: str = "us") -> np.ndarray:
        """Simulate the next frames; returns the events since the previous frame, time-sorted.

        Args:
            frames: ``[M, H, W]`` grey or ``[M, H, W, 3]`` RGB, uint8 (0-255) or float in
                [0, 1]; ``M >= 1``. The first frame ever fed only sets the initial state.
            timestamps: ``[M]`` frame times in ``unit``, strictly increasing, also across
                calls.
            unit: ``"us"``, ``"ms"`` or ``"s"``.

        Returns:
            ``EVENT_DTYPE`` events with times in ``(previous frame, timestamps[-1]]``.

        Raises:
            SimulationError: bad frames or timestamps, or a frame size that differs from the
                first chunk's.
        """
        from spike.sim.video import luminance

        f255 = luminance(frames, name="frames")  # [M, H, W] float64, 0-255 units
        if f255.shape[0] < 1 or f255.shape[1] < 1 or f255.shape[2] < 1:
            raise SimulationError(f"frames must hold at least one frame of at least 1x1 pixels, "
                                  f"got shape {f255.shape}")
        ts = to_microseconds(timestamps, unit)
        if ts.shape[0] != f255.shape[0]:
            raise SimulationError(f"timestamps must have shape [{f255.shape[0]}] (one per "
                                  f"frame), got shape {ts.shape}")
        bad = np.flatnonzero(np.diff(ts) <= 0)
        if bad.size:
            i = int(bad[0])
            raise SimulationError(f"timestamps must be strictly increasing, but t[{i}]={ts[i]} "
                                  f">= t[{i + 1}]={ts[i + 1]} (us)")
        cfg = self.config
        i255 = np.empty_like(f255)
        logf = np.empty_like(f255)
        _log_frames(f255, 1.0, float(cfg.lin_log_threshold), i255, logf)
        if self._state is None:
            self._init(logf[0], int(ts[0]))
            logf, i255, ts = logf[1:], i255[1:], ts[1:]
            self.n_frames += 1
        st = self._state
        h, w = st["ref"].shape
        if logf.shape[1:] != (h, w):
            raise SimulationError(f"frames are {logf.shape[2]}x{logf.shape[1]} pixels but the "
                                  f"simulator was started with {w}x{h}")
        if ts.shape[0] == 0:
            return np.zeros(0, dtype=EVENT_DTYPE)
        if ts[0] <= st["t_prev"]:
            raise SimulationError(f"timestamps must be strictly increasing across chunks, but "
                                  f"{int(ts[0])} us follows {int(st['t_prev'])} us")
        ev = self._signal(logf, i255, ts)
        if cfg.shot_noise_rate_hz > 0:
            noise = self._shot_noise(ts, int(st["t_prev"]), st["interval"], h, w)
            ev = np.concatenate([ev, noise])
            ev = ev[np.argsort(ev["t"], kind="stable")]
        st["t_prev"] = np.int64(ts[-1])
        st["interval"] += int(ts.shape[0])
        self.n_frames += int(ts.shape[0])
        self.n_events += len(ev)
        return ev

    def _signal(self, logf, i255, ts) -> np.ndarray:
        st, cfg = self._state, self.config
        fixed = (ts, st["t_prev"], st["t_start"])
        params = (st["c_on"], st["c_off"], st["drift"], np.int64(cfg.refractory_us),
                  float(cfg.cutoff_hz), self.upsample, np.int64(self.max_substeps),
                  float(cfg.lin_log_threshold))
        m, h, w = logf.shape
        # room for the events of a chunk like the previous ones (else one exact rerun)
        per_frame = self.n_events / max(self.n_frames - 1, 1)
        cap = max(1024, 2 * h * w, int(1.5 * per_frame * m))
        while True:
            trial = {k: st[k].copy() for k in ("a_prev", "lp", "ref", "last")}
            out = [np.empty(cap, dtype=np.int64) for _ in range(4)]
            count = _stream_kernel(logf, i255, *fixed, trial["a_prev"], trial["lp"],
                                   trial["ref"], trial["last"], *params, *out, np.int64(cap))
            if count <= cap:
                break
            cap = int(count)  # rerun from the same state with room for every event
        st.update(trial)
        ox, oy, ot, op = (a[:count] for a in out)
        order = np.argsort(ot, kind="stable")
        ev = np.empty(count, dtype=EVENT_DTYPE)
        ev["x"], ev["y"], ev["t"], ev["p"] = ox[order], oy[order], ot[order], op[order]
        return ev


def simulate_video(frames: np.ndarray, timestamps: np.ndarray, config: DVSConfig | None = None, *,
                   seed: int | np.random.Generator = 0, unit: str = "us",
                   upsample: float = 0.25, chunk_frames: int | None = None) -> np.ndarray:
    """Events of a whole video with :class:`VideoSimulator` (optionally fed in chunks).

    Args:
        frames: ``[N, H, W]`` or ``[N, H, W, 3]``, uint8 or float in [0, 1]; ``N >= 2``.
        timestamps: ``[N]`` strictly increasing times in ``unit``.
        config, seed, upsample: as for :class:`VideoSimulator`.
        unit: ``"us"``, ``"ms"`` or ``"s"``.
        chunk_frames: feed this many frames at a time (the result does not depend on it).

    Returns:
        Time-sorted ``EVENT_DTYPE`` events, sensor ``(W, H, 2)``.
    """
    n = len(frames)
    if n < 2:
        raise SimulationError(f"need at least 2 frames, got {n}")
    ts = np.asarray(timestamps)
    if ts.ndim != 1 or ts.shape[0] != n:
        raise SimulationError(f"timestamps must have shape [{n}] (one per frame), got shape "
                              f"{ts.shape}")
    sim = VideoSimulator(config, seed=seed, upsample=upsample)
    step = n if chunk_frames is None else int(chunk_frames)
    if step < 1:
        raise SimulationError(f"chunk_frames must be >= 1, got {chunk_frames}")
    parts = [sim.feed(frames[i:i + step], ts[i:i + step], unit=unit) for i in range(0, n, step)]
    return np.concatenate(parts)
