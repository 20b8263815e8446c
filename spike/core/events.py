"""Event array conventions shared by every part of `spike` (numpy only, no torch).

Events are tonic's structured arrays with fields ``x, y, t, p`` (``t`` in microseconds) and a
``sensor_size = (W, H, P)``. One-dimensional sensors (cochlea, SHD) use ``y = 0`` and ``H = 1``.
"""

from __future__ import annotations

import numpy as np

EVENT_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
"""tonic's event dtype: ``np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])``."""

REQUIRED_FIELDS = ("x", "y", "t", "p")


class EventError(ValueError):
    """Malformed event data (wrong dtype, coordinates outside the sensor, unsorted time)."""


def make_events(x, y, t, p) -> np.ndarray:
    """Build a structured event array with :data:`EVENT_DTYPE` from four 1-D sequences."""
    x, y, t, p = (np.asarray(a) for a in (x, y, t, p))
    n = len(t)
    if not (len(x) == len(y) == len(p) == n):
        raise EventError(f"x, y, t, p must have the same length, got {len(x)}, {len(y)}, {n}, {len(p)}")
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = x, y, t, p
    return ev


def validate_events(events: np.ndarray, sensor_size: tuple[int, int, int] | None = None,
                    *, check_sorted: bool = True, name: str = "events") -> np.ndarray:
    """Check that ``events`` is a structured array with x, y, t, p inside ``sensor_size``.

    Args:
        events: structured array with fields ``x, y, t, p``.
        sensor_size: ``(W, H, P)``; coordinates must satisfy ``0 <= x < W``, ``0 <= y < H``,
            ``0 <= p < P`` (``p`` in ``{-1, 1}`` is accepted for ``P == 2`` and treated as OFF/ON).
        check_sorted: require non-decreasing ``t``.
        name: what to call the array in error messages (e.g. a file name).

    Returns:
        ``events`` unchanged (never copied or modified).

    Raises:
        EventError: naming the first problem found (float fields must also be finite).
    """
    if not isinstance(events, np.ndarray) or events.dtype.names is None:
        raise EventError(f"{name}: expected a structured numpy array with fields x, y, t, p, "
                         f"got {type(events).__name__} with dtype {getattr(events, 'dtype', None)}")
    missing = [f for f in REQUIRED_FIELDS if f not in events.dtype.names]
    if missing and not (missing == ["y"]):
        raise EventError(f"{name}: missing event field(s) {missing}; dtype is {events.dtype}")
    if events.ndim != 1:
        raise EventError(f"{name}: expected a 1-D event array, got shape {events.shape}")
    if len(events) == 0:
        return events
    for field in REQUIRED_FIELDS:
        if field in events.dtype.names and events.dtype[field].kind in "fc":
            v = events[field]
            if not np.all(np.isfinite(v)):
                raise EventError(f"{name}: {field} holds non-finite values (inf or NaN) at "
                                 f"index {int(np.flatnonzero(~np.isfinite(v))[0])}")
    if check_sorted:
        t = events["t"]
        bad = np.flatnonzero(t[1:] < t[:-1])  # not np.diff: it overflows on int64 extremes
        if bad.size:
            i = int(bad[0])
            raise EventError(f"{name}: timestamps are not sorted (t[{i}]={t[i]} > t[{i + 1}]={t[i + 1]})")
    if sensor_size is not None:
        w, h, pol = sensor_size
        for field, limit in (("x", w), ("y", h)):
            if field not in events.dtype.names:
                continue
            v = events[field]
            lo, hi = v.min(), v.max()
            if lo < 0 or hi >= limit:
                raise EventError(f"{name}: {field} outside the sensor: range [{lo}, {hi}] "
                                 f"but sensor_size={tuple(sensor_size)} allows [0, {limit - 1}]")
        p = events["p"]
        lo, hi = p.min(), p.max()
        ok = (lo >= 0 and hi < pol) or (pol == 2 and lo >= -1 and hi <= 1)
        if not ok:
            raise EventError(f"{name}: polarity outside the sensor: range [{lo}, {hi}] "
                             f"for {pol} polarities")
    return events
