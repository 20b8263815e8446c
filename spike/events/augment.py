"""Seeded event augmentations on tonic structured arrays (numpy only; never imports torch).

Every random function takes an explicit ``np.random.Generator`` and draws from it in a documented
order, so the same generator state gives the same result, and the frame-level versions in
:mod:`spike.data.augment` (which draw in the same order) give exactly the binning of the augmented
events. The input array is never modified: every function returns a new array.

Deterministic cores: :func:`flip_x`, :func:`flip_y`, :func:`flip_polarity`, :func:`translate`,
:func:`crop`, :func:`drop_box`, :func:`drop_interval`, :func:`time_skew`.
Random versions: :func:`random_flip_x`, :func:`random_flip_y`, :func:`random_polarity_flip`,
:func:`random_translate`, :func:`random_crop`, :func:`time_jitter`, :func:`time_stretch`,
:func:`drop_random`, :func:`drop_by_time`, :func:`drop_by_area`.

Frozen-dataclass wrappers (``RandomFlipX``, ``RandomTranslate``, ``DropEventByArea``, ...) work in
``tonic.transforms.Compose``; each holds a generator made from its ``seed`` (keyword-only) and also
accepts ``rng=`` per call.

Differences from tonic 1.7, on purpose: ``drop_by_area``'s ``area`` is the fraction of the sensor
*area* dropped (tonic's ``area_ratio`` scales each side, so it drops ``ratio**2`` of the area);
``drop_by_time`` places the interval within ``[t_min, t_max]`` of the events (tonic: ``[0, t_max]``);
integer timestamps are rounded, not truncated, after jitter/stretch; nothing is modified in place
(tonic's ``TimeJitter`` writes into its input).

Example:
    >>> import tonic
    >>> aug = tonic.transforms.Compose([RandomFlipX((34, 34, 2), seed=0),
    ...                                 RandomTranslate((34, 34, 2), max_shift=3, seed=1)])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spike.core.events import EventError, validate_events

__all__ = ["flip_x", "flip_y", "flip_polarity", "translate", "crop", "drop_box", "drop_interval", "time_skew",
           "random_flip_x", "random_flip_y", "random_polarity_flip", "random_translate", "random_crop",
           "time_jitter", "time_stretch", "drop_random", "drop_by_time", "drop_by_area", "area_box",
           "RandomFlipX", "RandomFlipY", "RandomPolarityFlip", "RandomTranslate", "RandomCrop", "TimeJitter",
           "TimeStretch", "DropEvent", "DropEventByTime", "DropEventByArea"]


# --------------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------------


def _sensor(sensor_size) -> tuple[int, int, int]:
    try:
        w, h, p = (int(s) for s in sensor_size)
        ok = len(tuple(sensor_size)) == 3 and min(w, h, p) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise EventError(f"sensor_size must be three positive integers (W, H, P), got {sensor_size!r}")
    return w, h, p


def _events(events: np.ndarray, sensor_size=None, name: str = "events") -> tuple[int, int, int] | None:
    """Structure (and, with ``sensor_size``, bounds) of ``events``; returns ``(W, H, P)`` or None."""
    size = _sensor(sensor_size) if sensor_size is not None else None
    validate_events(events, size, check_sorted=False, name=name)
    return size


def _prob(p: float, what: str = "p") -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{what} must be a probability in [0, 1], got {p!r}")
    return float(p)


def _ratio(r: float, what: str) -> float:
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= r < 1.0:
        raise ValueError(f"{what} must be a fraction in [0, 1), got {r!r}")
    return float(r)


def _set_t(out: np.ndarray, t: np.ndarray) -> None:
    """Write float times ``t`` into ``out["t"]`` (rounded to the nearest integer for integer dtypes)."""
    out["t"] = np.rint(t) if out.dtype["t"].kind in "iu" else t


# --------------------------------------------------------------------------------------------------
# deterministic cores
# --------------------------------------------------------------------------------------------------


def flip_x(events: np.ndarray, sensor_size) -> np.ndarray:
    """Mirror left-right: ``x -> W - 1 - x``."""
    w, _, _ = _events(events, sensor_size)
    out = events.copy()
    out["x"] = w - 1 - events["x"]
    return out


def flip_y(events: np.ndarray, sensor_size) -> np.ndarray:
    """Mirror top-bottom: ``y -> H - 1 - y``."""
    _, h, _ = _events(events, sensor_size)
    if "y" not in events.dtype.names:
        raise EventError("events: no 'y' field to flip")
    out = events.copy()
    out["y"] = h - 1 - events["y"]
    return out


def flip_polarity(events: np.ndarray, sensor_size) -> np.ndarray:
    """Swap polarities: ``p -> P - 1 - p`` (``p -> -p`` for ``p`` in ``{-1, 1}``; a no-op for ``P == 1``)."""
    _, _, n_pol = _events(events, sensor_size)
    out = events.copy()
    p = events["p"]
    if len(p) and p.min() < 0:  # {-1, 1} encoding (P == 2): -1 is OFF
        out["p"] = -p
    else:
        out["p"] = n_pol - 1 - p
    return out


def translate(events: np.ndarray, sensor_size, dx: int, dy: int = 0) -> np.ndarray:
    """Shift by ``(dx, dy)`` pixels; events shifted off the sensor are dropped (order kept)."""
    w, h, _ = _events(events, sensor_size)
    x = events["x"] + int(dx)
    keep = (x >= 0) & (x < w)
    has_y = "y" in events.dtype.names
    if has_y:
        y = events["y"] + int(dy)
        keep &= (y >= 0) & (y < h)
    elif dy:
        keep[:] = False  # a 1-D sensor has one row: any vertical shift leaves it
    out = events[keep]  # boolean indexing copies
    out["x"] = x[keep]
    if has_y:
        out["y"] = y[keep]
    return out


def crop(events: np.ndarray, sensor_size, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """Events inside the box ``[x0, x0 + width) x [y0, y0 + height)``, moved to its origin.

    The result lives on a sensor ``(width, height, P)``.
    """
    w, h, _ = _events(events, sensor_size)
    if not (0 <= x0 and 0 <= y0 and width >= 1 and height >= 1 and x0 + width <= w and y0 + height <= h):
        raise ValueError(f"crop box x0={x0}, y0={y0}, {width}x{height} does not fit the sensor {w}x{h}")
    x, y = events["x"], events["y"]
    keep = (x >= x0) & (x < x0 + width) & (y >= y0) & (y < y0 + height)
    out = events[keep]
    out["x"] -= x0
    out["y"] -= y0
    return out


def drop_box(events: np.ndarray, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """Remove the events inside ``[x0, x0 + width) x [y0, y0 + height)`` (order kept)."""
    _events(events)
    x = events["x"]
    inside = (x >= x0) & (x < x0 + width)
    if "y" in events.dtype.names:
        inside &= (events["y"] >= y0) & (events["y"] < y0 + height)
    return events[~inside]


def drop_interval(events: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """Remove the events with ``t0 <= t <= t1`` (order kept)."""
    _events(events)
    t = events["t"]
    return events[~((t >= t0) & (t <= t1))]


def time_skew(events: np.ndarray, coefficient: float, offset: float = 0.0) -> np.ndarray:
    """``t -> coefficient * t + offset`` (tonic's ``TimeSkew``); integer times are rounded."""
    _events(events)
    if not coefficient > 0:
        raise ValueError(f"coefficient must be > 0 (time order is kept), got {coefficient!r}")
    out = events.copy()
    _set_t(out, events["t"].astype(np.float64) * coefficient + offset)
    return out


# --------------------------------------------------------------------------------------------------
# random versions: each draws from ``rng`` in the order its docstring gives
# --------------------------------------------------------------------------------------------------


def random_flip_x(events: np.ndarray, sensor_size, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """:func:`flip_x` with probability ``p``. Draws: ``rng.random()``."""
    p = _prob(p)
    _events(events, sensor_size)
    return flip_x(events, sensor_size) if rng.random() < p else events.copy()


def random_flip_y(events: np.ndarray, sensor_size, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """:func:`flip_y` with probability ``p``. Draws: ``rng.random()``."""
    p = _prob(p)
    _events(events, sensor_size)
    return flip_y(events, sensor_size) if rng.random() < p else events.copy()


def random_polarity_flip(events: np.ndarray, sensor_size, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """:func:`flip_polarity` with probability ``p``. Draws: ``rng.random()``."""
    p = _prob(p)
    _events(events, sensor_size)
    return flip_polarity(events, sensor_size) if rng.random() < p else events.copy()


def shift_limits(max_shift, height: int) -> tuple[int, int]:
    """``(max_dx, max_dy)`` of ``max_shift`` (an int, or a pair); ``max_dy = 0`` on a 1-row sensor."""
    if isinstance(max_shift, (tuple, list)):
        mx, my = (int(v) for v in max_shift)
    else:
        mx = my = int(max_shift)
    if height == 1 and not isinstance(max_shift, (tuple, list)):
        my = 0
    if mx < 0 or my < 0:
        raise ValueError(f"max_shift must be >= 0 pixels, got {max_shift!r}")
    return mx, my


def random_translate(events: np.ndarray, sensor_size, rng: np.random.Generator, max_shift=2) -> np.ndarray:
    """:func:`translate` by ``dx ~ U{-mx..mx}``, ``dy ~ U{-my..my}`` (``max_shift`` an int or ``(mx, my)``;
    an int gives ``my = 0`` on a one-row sensor). Draws: ``rng.integers(-mx, mx + 1)``, then the same for ``dy``."""
    w, h, _ = _events(events, sensor_size)
    mx, my = shift_limits(max_shift, h)
    dx = int(rng.integers(-mx, mx + 1))
    dy = int(rng.integers(-my, my + 1))
    return translate(events, sensor_size, dx, dy)


def random_crop(events: np.ndarray, sensor_size, target_size: tuple[int, int],
                rng: np.random.Generator) -> np.ndarray:
    """:func:`crop` to ``target_size = (width, height)`` at a uniform position.

    Draws: ``x0 = rng.integers(0, W - width + 1)``, then ``y0`` likewise.
    """
    w, h, _ = _events(events, sensor_size)
    tw, th = (int(v) for v in target_size)
    if not (1 <= tw <= w and 1 <= th <= h):
        raise ValueError(f"target_size {tuple(target_size)} must fit the sensor {w}x{h}")
    x0 = int(rng.integers(0, w - tw + 1))
    y0 = int(rng.integers(0, h - th + 1))
    return crop(events, sensor_size, x0, y0, tw, th)


def time_jitter(events: np.ndarray, rng: np.random.Generator, std: float, clip_negative: bool = True,
                sort: bool = True) -> np.ndarray:
    """Add Gaussian noise ``N(0, std)`` to every timestamp (integer times are rounded).

    Args:
        clip_negative: drop events whose time becomes negative.
        sort: re-sort by time (stable), so the result is a valid sorted stream.

    Draws: ``rng.normal(0, std, len(events))``.
    """
    _events(events)
    if not std >= 0:
        raise ValueError(f"std must be >= 0 microseconds, got {std!r}")
    out = events.copy()
    _set_t(out, events["t"].astype(np.float64) + rng.normal(0.0, std, len(events)))
    if clip_negative:
        out = out[out["t"] >= 0]
    if sort:
        out = out[np.argsort(out["t"], kind="stable")]
    return out


def time_stretch(events: np.ndarray, rng: np.random.Generator, factor_range: tuple[float, float] = (0.8, 1.25)
                 ) -> np.ndarray:
    """:func:`time_skew` by a factor drawn log-uniformly from ``factor_range`` (about ``t = 0``).

    Draws: ``rng.uniform(log lo, log hi)``.
    """
    lo, hi = (float(v) for v in factor_range)
    if not 0 < lo <= hi:
        raise ValueError(f"factor_range must satisfy 0 < lo <= hi, got {factor_range!r}")
    factor = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    return time_skew(events, factor)


def drop_random(events: np.ndarray, rng: np.random.Generator, ratio: float) -> np.ndarray:
    """Remove exactly ``round(ratio * n)`` events chosen uniformly (order kept; tonic's ``DropEvent``).

    Draws: ``rng.choice(n, k, replace=False)``.
    """
    ratio = _ratio(ratio, "ratio")
    _events(events)
    n = len(events)
    k = int(ratio * n + 0.5)
    keep = np.ones(n, dtype=bool)
    keep[rng.choice(n, k, replace=False)] = False
    return events[keep]


def drop_by_time(events: np.ndarray, rng: np.random.Generator, ratio: float) -> np.ndarray:
    """Remove the events of a random interval lasting ``ratio`` of ``[t_min, t_max]`` (tonic's ``DropEventByTime``).

    Draws: ``t0 = rng.uniform(t_min, t_max - ratio * (t_max - t_min))``.
    """
    ratio = _ratio(ratio, "ratio")
    _events(events)
    if len(events) == 0:
        return events.copy()
    t = events["t"]
    t_min, t_max = float(t.min()), float(t.max())
    dur = (t_max - t_min) * ratio
    t0 = float(rng.uniform(t_min, t_max - dur))
    return drop_interval(events, t0, t0 + dur)


def area_box(width: int, height: int, rng: np.random.Generator, area: float) -> tuple[int, int, int, int]:
    """``(x0, y0, w, h)`` of a random box covering ``area`` of a ``width x height`` sensor.

    Sides ``w = round(width * sqrt(area))``, ``h = round(height * sqrt(area))`` (``h = 1`` on a one-row
    sensor, so the box drops ``area`` of the channels). Draws: ``x0 = rng.integers(0, width - w + 1)``,
    then ``y0`` likewise. Shared with the frame version so both drop the same box.
    """
    area = _ratio(area, "area")
    if height == 1:
        bw, bh = int(round(width * area)), 1
    else:
        side = np.sqrt(area)
        bw, bh = int(round(width * side)), int(round(height * side))
    x0 = int(rng.integers(0, width - bw + 1))
    y0 = int(rng.integers(0, height - bh + 1))
    return x0, y0, bw, bh


def drop_by_area(events: np.ndarray, sensor_size, rng: np.random.Generator, area: float) -> np.ndarray:
    """Remove the events inside a random box covering the fraction ``area`` of the sensor (:func:`area_box`).

    Unlike tonic's ``DropEventByArea`` (whose ratio scales each side), ``area = 0.1`` drops 10 % of the area.
    """
    w, h, _ = _events(events, sensor_size)
    x0, y0, bw, bh = area_box(w, h, rng, area)
    if bw == 0 or bh == 0:
        return events.copy()
    return drop_box(events, x0, y0, bw, bh)


# --------------------------------------------------------------------------------------------------
# frozen-dataclass wrappers for tonic.transforms.Compose
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Seeded:
    """A generator from ``seed`` (keyword-only; ``None``: fresh OS entropy); ``rng=`` overrides it per call.

    Loader workers each get a copy of the generator (the same stream): with ``num_workers > 0`` pass a
    per-sample ``rng=`` instead.
    """

    seed: int | None = field(default=None, kw_only=True)
    _rng: np.random.Generator = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_rng", np.random.default_rng(self.seed))

    def _gen(self, rng: np.random.Generator | None) -> np.random.Generator:
        return self._rng if rng is None else rng


@dataclass(frozen=True)
class RandomFlipX(_Seeded):
    """:func:`random_flip_x`."""

    sensor_size: tuple[int, int, int]
    p: float = 0.5

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return random_flip_x(events, self.sensor_size, self._gen(rng), self.p)


@dataclass(frozen=True)
class RandomFlipY(_Seeded):
    """:func:`random_flip_y`."""

    sensor_size: tuple[int, int, int]
    p: float = 0.5

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return random_flip_y(events, self.sensor_size, self._gen(rng), self.p)


@dataclass(frozen=True)
class RandomPolarityFlip(_Seeded):
    """:func:`random_polarity_flip`."""

    sensor_size: tuple[int, int, int]
    p: float = 0.5

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return random_polarity_flip(events, self.sensor_size, self._gen(rng), self.p)


@dataclass(frozen=True)
class RandomTranslate(_Seeded):
    """:func:`random_translate`."""

    sensor_size: tuple[int, int, int]
    max_shift: int | tuple[int, int] = 2

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return random_translate(events, self.sensor_size, self._gen(rng), self.max_shift)


@dataclass(frozen=True)
class RandomCrop(_Seeded):
    """:func:`random_crop`; the output sensor is :attr:`out_sensor_size`."""

    sensor_size: tuple[int, int, int]
    target_size: tuple[int, int]

    @property
    def out_sensor_size(self) -> tuple[int, int, int]:
        return (int(self.target_size[0]), int(self.target_size[1]), int(self.sensor_size[2]))

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return random_crop(events, self.sensor_size, self.target_size, self._gen(rng))


@dataclass(frozen=True)
class TimeJitter(_Seeded):
    """:func:`time_jitter`."""

    std: float
    clip_negative: bool = True
    sort: bool = True

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return time_jitter(events, self._gen(rng), self.std, self.clip_negative, self.sort)


@dataclass(frozen=True)
class TimeStretch(_Seeded):
    """:func:`time_stretch`."""

    factor_range: tuple[float, float] = (0.8, 1.25)

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return time_stretch(events, self._gen(rng), self.factor_range)


@dataclass(frozen=True)
class DropEvent(_Seeded):
    """:func:`drop_random`."""

    ratio: float = 0.1

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return drop_random(events, self._gen(rng), self.ratio)


@dataclass(frozen=True)
class DropEventByTime(_Seeded):
    """:func:`drop_by_time`."""

    ratio: float = 0.1

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return drop_by_time(events, self._gen(rng), self.ratio)


@dataclass(frozen=True)
class DropEventByArea(_Seeded):
    """:func:`drop_by_area`."""

    sensor_size: tuple[int, int, int]
    area: float = 0.1

    def __call__(self, events: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return drop_by_area(events, self.sensor_size, self._gen(rng), self.area)
