"""N-MNIST-like event streams from scikit-learn's 8x8 digits (the quickstart data set).

N-MNIST (Orchard, Jayawant, Cohen, Thakor 2015, "Converting static image datasets to spiking
neuromorphic datasets using saccades", Front. Neurosci., doi:10.3389/fnins.2015.00437) was
recorded by moving an ATIS camera in front of a monitor along three ~100 ms saccades that
close a triangle. We do the same in simulation:

1. each 8x8 digit (values 0..16) is upscaled bilinearly to ``digit_size`` pixels and drawn
   bright on a dark background inside a ``sensor x sensor`` sensor (34x34 by default, like
   N-MNIST). sklearn's digits fill their 8x8 box, so the default 24x24 matches the ~20 px ink
   of an MNIST digit and keeps the moving digit inside the sensor;
2. the image moves along the triangle ``up -> down-left -> right`` (this is the order of the
   image motion measured from the ON/OFF edges of a real N-MNIST recording), ``amplitude``
   pixels per leg, each leg lasting 100 ms with a raised-cosine (ease-in/out) velocity, so the
   event rate peaks mid-saccade as in N-MNIST; frames are rendered at sub-pixel offsets by
   sampling the bilinear upscaled digit, 300 ms in total;
3. :func:`spike.sim.esim.simulate`'s pixel model turns the frames into events.

Everything after the parameter draws runs in one parallel numba kernel over samples, and
every sample has its own child seed (``np.random.SeedSequence(seed).spawn``), so the result
does not depend on the thread count and equals ``simulate`` called sample by sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit, prange

from spike.core.events import EVENT_DTYPE
from spike.sim.esim import (
    DVSConfig,
    SimulationError,
    _draw_pixel_params,
    _esim_kernel,
    _log_frames,
    _lowpass,
)

__all__ = [
    "DIGITS_CONFIG",
    "DURATION_US",
    "DigitsEvents",
    "bin_fixed",
    "digits_events",
    "load_digits_events",
    "render_saccades",
    "saccade_path",
]

SACCADE_US = 100_000
DURATION_US = 3 * SACCADE_US
"""Every digit stream spans ``(0, 300 ms]``."""

DIGITS_CONFIG = DVSConfig(pos_thres=0.3, neg_thres=0.3, sigma_thres=0.03)
"""Default pixel model of the digits: v2e-like thresholds, no noise."""

# Image displacement per saccade (dx, dy) in units of ``amplitude``; y points down.
_LEGS = np.array([[0.0, -1.0], [-1.0, 1.0], [1.0, 0.0]])


def saccade_path(n_frames_per_saccade: int, amplitude: float) -> tuple[np.ndarray, np.ndarray]:
    """Image offsets and frame times along the three N-MNIST saccades.

    The offset of leg ``j`` at phase :math:`u \\in [0, 1]` is
    :math:`v_j + a\\,d_j\\,(1 - \\cos \\pi u)/2`, with the triangle centred on the sensor.

    Args:
        n_frames_per_saccade: frames per 100 ms saccade (``N = 3 n + 1`` frames in all).
        amplitude: leg length along each axis, in sensor pixels.

    Returns:
        ``offsets`` ``[N, 2]`` float64 (dx, dy) and ``timestamps_us`` ``[N]`` int64 from 0 to
        300 000.
    """
    n = int(n_frames_per_saccade)
    if n < 1:
        raise SimulationError(f"n_frames_per_saccade must be >= 1, got {n_frames_per_saccade}")
    u = np.arange(n) / n  # [n] phase within a leg
    ease = (1.0 - np.cos(np.pi * u)) / 2.0
    start = np.array([0.5, 0.5]) * amplitude  # centres the triangle's bounding box
    pts = []
    for leg in _LEGS:
        pts.append(start + amplitude * ease[:, None] * leg)  # [n, 2]
        start = start + amplitude * leg
    pts.append(start[None])
    offsets = np.concatenate(pts)  # [3n + 1, 2]
    ts = np.round(np.linspace(0, DURATION_US, 3 * n + 1)).astype(np.int64)  # [3n + 1]
    return offsets, ts


@njit(cache=True)
def _render_one(img, offsets, sensor, scale, background, foreground, out):
    """Write frames ``[N, H, W]`` in [0, 1] of one image (values in [0, 1]) moving by offsets.

    Fills ``out`` instead of returning it (see :func:`spike.sim.esim._lowpass`).
    """
    n = offsets.shape[0]
    ih, iw = img.shape
    for k in range(n):
        cx = (sensor - 1) / 2.0 + offsets[k, 0]
        cy = (sensor - 1) / 2.0 + offsets[k, 1]
        for y in range(sensor):
            v = (y - cy) / scale + (ih - 1) / 2.0  # row in image pixel-centre coordinates
            r0 = int(np.floor(v))
            fv = v - r0
            for x in range(sensor):
                u = (x - cx) / scale + (iw - 1) / 2.0
                c0 = int(np.floor(u))
                fu = u - c0
                val = 0.0
                for dr in range(2):
                    rr = r0 + dr
                    if rr < 0 or rr >= ih:
                        continue
                    wr = fv if dr == 1 else 1.0 - fv
                    for dc in range(2):
                        cc = c0 + dc
                        if cc < 0 or cc >= iw:
                            continue
                        wc = fu if dc == 1 else 1.0 - fu
                        val += wr * wc * img[rr, cc]
                out[k, y, x] = background + (foreground - background) * val


def render_saccades(images: np.ndarray, *, n_frames_per_saccade: int = 10, sensor: int = 34,
                    digit_size: int = 24, amplitude: float = 4.0, background: float = 0.1,
                    foreground: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Render digits moving along the saccade triangle (for inspection and as the oracle input).

    Args:
        images: ``[S, h, w]`` images with values in [0, 1].
        n_frames_per_saccade: rendered frames per saccade (see :func:`saccade_path`).
        amplitude: saccade leg length in pixels (see :func:`saccade_path`).
        sensor: sensor width = height in pixels.
        digit_size: size of the upscaled digit (``scale = digit_size / w``).
        background: intensity (0-1) of image value 0.
        foreground: intensity (0-1) of image value 1.

    Returns:
        ``frames`` ``[S, N, sensor, sensor]`` float64 in [0, 1] and ``timestamps_us`` ``[N]``.
    """
    images = _check_images(images)
    offsets, ts = saccade_path(n_frames_per_saccade, amplitude)
    scale = digit_size / images.shape[2]
    frames = np.empty((images.shape[0], len(ts), int(sensor), int(sensor)))  # [S, N, H, W]
    for s in range(images.shape[0]):
        _render_one(images[s], offsets, int(sensor), scale, background, foreground, frames[s])
    return frames, ts


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3 or not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise SimulationError(f"images must be [S, h, w] with finite values in [0, 1], got "
                              f"shape {images.shape}")
    return images


@njit(cache=True)
def _digits_one(s, images, offsets, ts, sensor, scale, background, foreground, lin_thr, cutoff,
                c_on, c_off, ref_off, drift, refractory, nz_t, nz_p, nz_pix, nz_k, nz_start,
                ev_start, ox, oy, ot, op, write):
    """Render + simulate sample ``s``; counts, or fills its output slice (in kernel order)."""
    frames = np.empty((offsets.shape[0], sensor, sensor))  # [N, H, W]
    _render_one(images[s], offsets, sensor, scale, background, foreground, frames)
    i255 = np.empty_like(frames)  # [N, H, W]
    logf = np.empty_like(frames)  # [N, H, W]
    _log_frames(frames, 255.0, lin_thr, i255, logf)
    if cutoff > 0:
        filtered = np.empty_like(logf)  # [N, H, W]
        _lowpass(logf, i255, ts, cutoff, filtered)
        logf = filtered
    q0, q1 = nz_start[s], nz_start[s + 1]
    e0, e1 = ev_start[s], ev_start[s + 1]
    n = _esim_kernel(logf, ts, c_on[s], c_off[s], ref_off[s], drift[s], refractory,
                     nz_t[q0:q1], nz_p[q0:q1], nz_pix[q0:q1], nz_k[q0:q1],
                     ox[e0:e1], oy[e0:e1], ot[e0:e1], op[e0:e1], write)
    return n


@njit(cache=True, parallel=True)
def _digits_kernel(images, offsets, ts, sensor, scale, background, foreground, lin_thr, cutoff,
                   c_on, c_off, ref_off, drift, refractory, nz_t, nz_p, nz_pix, nz_k, nz_start,
                   ev_start, counts, ox, oy, ot, op, write):
    """:func:`_digits_one` for every sample, in parallel (samples write disjoint slices)."""
    for s in prange(images.shape[0]):
        counts[s] = _digits_one(s, images, offsets, ts, sensor, scale, background, foreground,
                                lin_thr, cutoff, c_on, c_off, ref_off, drift, refractory, nz_t,
                                nz_p, nz_pix, nz_k, nz_start, ev_start, ox, oy, ot, op, write)


def _simulate_images(images: np.ndarray, *, n_frames_per_saccade: int, config: DVSConfig,
                     seed: int, sensor: int, digit_size: int, amplitude: float,
                     background: float, foreground: float) -> list[np.ndarray]:
    images = _check_images(images)
    if not isinstance(config, DVSConfig):
        raise SimulationError(f"config must be a DVSConfig, got {type(config).__name__}")
    if int(sensor) < 1 or digit_size <= 0:
        raise SimulationError(f"sensor and digit_size must be positive, got {sensor}, "
                              f"{digit_size}")
    if not (0 <= background <= 1 and 0 <= foreground <= 1):
        raise SimulationError(f"background and foreground must lie in [0, 1], got "
                              f"{background}, {foreground}")
    offsets, ts = saccade_path(n_frames_per_saccade, amplitude)
    s_count = images.shape[0]
    h = w = int(sensor)
    c_on = np.empty((s_count, h, w))
    c_off = np.empty_like(c_on)
    ref_off = np.empty_like(c_on)
    drift = np.empty_like(c_on)
    noise_parts: list[tuple[np.ndarray, ...]] = []
    for s, child in enumerate(np.random.SeedSequence(seed).spawn(s_count)):
        # the same draws simulate(frames, ts, config, seed=np.random.default_rng(child)) makes
        c_on[s], c_off[s], ref_off[s], drift[s], noise = _draw_pixel_params(
            config, h, w, ts, np.random.default_rng(child))
        noise_parts.append(noise)
    nz_start = np.zeros(s_count + 1, dtype=np.int64)
    nz_start[1:] = np.cumsum([len(n[0]) for n in noise_parts])
    nz = [np.concatenate([n[i] for n in noise_parts]).astype(np.int64) if s_count else
          np.zeros(0, dtype=np.int64) for i in range(4)]
    counts = np.zeros(s_count, dtype=np.int64)
    dummy = np.zeros(0, dtype=np.int64)
    ev_start = np.zeros(s_count + 1, dtype=np.int64)
    args = (images, offsets, ts, h, digit_size / images.shape[2], float(background),
            float(foreground), float(config.lin_log_threshold), float(config.cutoff_hz),
            c_on, c_off, ref_off, drift, np.int64(config.refractory_us), *nz, nz_start)
    _digits_kernel(*args, ev_start, counts, dummy, dummy, dummy, dummy, False)
    ev_start[1:] = np.cumsum(counts)
    total = int(ev_start[-1])
    ox, oy, ot, op = (np.empty(total, dtype=np.int64) for _ in range(4))
    _digits_kernel(*args, ev_start, counts, ox, oy, ot, op, True)
    # stable time sort within each sample, as simulate() does
    order = np.concatenate([e0 + np.argsort(ot[e0:e1], kind="stable")
                            for e0, e1 in zip(ev_start[:-1], ev_start[1:])] or [dummy])
    events = np.empty(total, dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = ox[order], oy[order], ot[order], op[order]
    return [events[ev_start[s]:ev_start[s + 1]] for s in range(s_count)]  # disjoint views


def digits_events(*, n_frames_per_saccade: int = 10, config: DVSConfig = DIGITS_CONFIG,
                  seed: int = 0, sensor: int = 34, digit_size: int = 24, amplitude: float = 4.0,
                  background: float = 0.1, foreground: float = 0.6,
                  indices: np.ndarray | None = None
                  ) -> tuple[list[np.ndarray], np.ndarray, tuple[int, int, int]]:
    """Event streams of scikit-learn's 1797 digits moved along the N-MNIST saccades.

    Args:
        n_frames_per_saccade: rendered frames per 100 ms saccade (sub-pixel steps).
        config: DVS pixel model (default :data:`DIGITS_CONFIG`).
        seed: root seed; sample ``i`` uses ``SeedSequence(seed).spawn(n)[i]``.
        sensor: sensor width = height (34 like N-MNIST).
        digit_size: upscaled digit size in pixels (24: about MNIST's ink size).
        amplitude: saccade leg length in pixels.
        background: display intensity (0-1) of ink value 0.
        foreground: display intensity (0-1) of ink value 16.
        indices: optional subset of the 1797 digits (seeds still follow the subset order).

    Returns:
        ``(events, labels, sensor_size)``: a list of time-sorted event arrays with
        :data:`EVENT_DTYPE` and times in ``(0, 300000]`` us, ``labels`` ``[S]`` int64, and
        ``sensor_size = (sensor, sensor, 2)``.
    """
    from sklearn.datasets import load_digits  # lazy: sklearn is heavy

    data = load_digits()
    images = data.images / 16.0  # [1797, 8, 8], ink in [0, 1]
    labels = data.target.astype(np.int64)
    if indices is not None:
        indices = np.asarray(indices, dtype=np.int64)
        images, labels = images[indices], labels[indices]
    events = _simulate_images(images, n_frames_per_saccade=n_frames_per_saccade, config=config,
                              seed=seed, sensor=sensor, digit_size=digit_size,
                              amplitude=amplitude, background=background, foreground=foreground)
    return events, labels, (int(sensor), int(sensor), 2)


@dataclass(frozen=True)
class DigitsEvents:
    """A fixed train/test split of the event digits (see :func:`load_digits_events`)."""

    train_events: list[np.ndarray]
    train_labels: np.ndarray
    test_events: list[np.ndarray]
    test_labels: np.ndarray
    train_indices: np.ndarray
    test_indices: np.ndarray
    sensor_size: tuple[int, int, int]
    duration_us: int = DURATION_US


def load_digits_events(*, test_fraction: float = 0.2, split_seed: int = 0,
                       **kwargs: Any) -> DigitsEvents:
    """The quickstart data: all digits as events, split train/test.

    The split is sklearn's ``train_test_split(arange(1797), test_size=test_fraction,
    stratify=labels, random_state=split_seed)``: 1437 train / 360 test by default.

    Args:
        test_fraction: fraction of samples in the test split.
        split_seed: seed of the split (independent of the simulation ``seed``).
        **kwargs: forwarded to :func:`digits_events` (``seed``, ``config``, ...), except
            ``indices``.

    Returns:
        :class:`DigitsEvents`.

    Example:
        >>> d = load_digits_events()  # doctest: +SKIP
        >>> len(d.train_events), len(d.test_events)  # doctest: +SKIP
        (1437, 360)
    """
    from sklearn.model_selection import train_test_split

    if "indices" in kwargs:
        raise SimulationError("load_digits_events uses all digits; pass no `indices`")
    events, labels, sensor_size = digits_events(**kwargs)
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(idx, test_size=test_fraction, stratify=labels,
                                           random_state=split_seed)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return DigitsEvents(
        train_events=[events[i] for i in train_idx], train_labels=labels[train_idx],
        test_events=[events[i] for i in test_idx], test_labels=labels[test_idx],
        train_indices=train_idx, test_indices=test_idx, sensor_size=sensor_size)


def bin_fixed(events: np.ndarray, sensor_size: tuple[int, int, int], n_bins: int,
               duration_us: int = DURATION_US) -> np.ndarray:
    """Count events in ``n_bins`` equal time bins over ``(0, duration_us]``.

    Event ``i`` goes to bin ``min(t_i * n_bins // duration_us, n_bins - 1)``.

    Returns:
        ``[T, 2, H, W]`` float32 counts (``T = n_bins``).
    """
    w, h, n_pol = sensor_size
    b = np.minimum(events["t"] * n_bins // duration_us, n_bins - 1)
    b = np.maximum(b, 0)
    flat = ((b * n_pol + events["p"]) * h + events["y"]) * w + events["x"]  # index into [T,P,H,W]
    counts = np.bincount(flat, minlength=n_bins * n_pol * h * w)
    return counts.astype(np.float32).reshape(n_bins, n_pol, h, w)  # [T, P, H, W]
