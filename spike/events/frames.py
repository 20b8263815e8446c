"""Event binning to frames ``[T, P, H, W]`` (tonic's ``ToFrame`` layout) with numba kernels.

Three slicing modes, exactly one per call:

* ``n_time_bins``: ``n`` bins of equal real width ``D / n`` over ``[start, end]``
  (``D = end - start``), the last bin closed, so every event in ``[start, end]`` is counted once:
  ``bin = min(floor((t - start) * n / D), n - 1)``.
* ``time_window``: half-open windows ``[start + i*s, start + i*s + w)``, stride ``s = w - overlap``.
* ``event_count``: windows of ``event_count`` consecutive events, stride ``event_count - overlap``.

Wherever tonic 1.7's ``ToFrame`` is right the output is identical to it (window boundaries, number
of windows, ``include_incomplete``, ``start_time``/``end_time``). Deliberate differences, each
tested in ``tests/events/test_frames.py``:

* ``n_time_bins``: tonic uses bins of integer width ``D // n`` and a half-open last bin, so it
  always drops the last event (and every event in the tail ``[start + n*(D//n), end]``), and
  returns all-zero frames when ``D < n``. Here bins have width ``D / n`` and the last bin is closed.
* ``time_window`` with ``include_incomplete=True``: when ``D - w`` is a multiple of the stride,
  tonic makes one window too few and drops the events at ``t == end``. Here that window is kept.
* Output is ``int32`` by default (tonic: ``int16``, which wraps silently); a too-narrow ``dtype``
  raises ``OverflowError`` instead of wrapping.
* The input is never modified (tonic writes ``events["p"] = 0`` for single-polarity sensors).
* ``p = -1`` counts as OFF (channel 0) for ``P == 2``; tonic indexes channel ``-1``, i.e. ON.
* ``include_incomplete`` defaults to ``True`` (tonic: ``False``): no event is dropped by default.
* ``n_time_bins`` does not accept ``overlap``: tonic's ``stride = (D//n)(1+o)(1-o)`` leaves the end
  of the recording uncovered, and there is no tonic-compatible correct variant.
* Events without a ``y`` field give frames ``[T, P, 1, W]`` (tonic: ``[T, P, W]``).

Validation costs no extra pass: the binning kernel (:mod:`spike.events._frame_kernels`) checks
every event it counts (inside the sensor, ``t`` non-decreasing, no NaN) and only the events
outside the windows are checked separately; a float ``t`` must also have finite first and last
values, which with the order check makes it finite throughout. Any failure raises one
``EventError`` naming the array and the first problem (e.g. ``events: t contains +inf at index
4``). Windows are located by binary search without converting ``t``.

The output size is known before anything is allocated (:func:`frame_nbytes`); requests above
``max_bytes`` (default :data:`MAX_FRAME_BYTES`, 4 GiB) are refused with a ``ValueError`` giving the
size, so a mistaken ``time_window`` on a long span fails at once instead of exhausting memory.

No ``tonic_compat`` switch: bug-compatible index arithmetic would double the tested surface for no
user benefit; the tests compare against tonic directly.
"""

from __future__ import annotations

import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numba
import numpy as np
import numpy.typing as npt

from spike.core.events import EventError, validate_events
from spike.events._frame_kernels import _bin_windows, _count_bad

__all__ = ["MAX_FRAME_BYTES", "frame_nbytes", "slice_indices", "to_frame"]

MAX_FRAME_BYTES = 4 * 2**30
"""Default ``max_bytes`` of :func:`to_frame`: 4 GiB (an EVK4 1280x720x2 at 200 bins int32 is
1.47 GB). Raise it per call with ``max_bytes=`` or for the process by assigning this attribute."""


# --------------------------------------------------------------------------------------------------
# validation and field access (shared with surfaces.py / denoise.py)
# --------------------------------------------------------------------------------------------------


class _Fields(NamedTuple):
    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray
    width: int
    height: int
    n_pol: int


def _native(a: np.ndarray) -> np.ndarray:
    """A field view numba can read: native byte order and aligned (copied only if needed)."""
    if not a.dtype.isnative or not a.flags.aligned:
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))
    return a


def _sensor(sensor_size) -> tuple[int, int, int]:
    try:
        w, h, p = (int(s) for s in sensor_size)
        ok = len(tuple(sensor_size)) == 3 and min(w, h, p) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise EventError(
            f"sensor_size must be three positive integers (W, H, P), got {sensor_size!r}")
    return w, h, p


def _prepare(events: np.ndarray, sensor_size, check: bool = True) -> _Fields:
    """Validate ``events`` against ``sensor_size`` and return numba-ready field views (no copy of
    the event array; ``events`` is never modified). ``check=False`` leaves the per-event checks to
    the caller (:func:`to_frame` fuses them into its binning kernel).

    The structural checks and all error messages come from
    :func:`spike.core.events.validate_events`; the per-event checks (bounds, order) run first as
    one numba pass, and only on failure is ``validate_events`` called to name the problem.
    """
    w, h, n_pol = _sensor(sensor_size)
    # structure only, on an empty slice: validate_events' finiteness pass over a float t would
    # cost a pass over the data; finite ends + the order check below imply a finite t
    one_d = isinstance(events, np.ndarray) and events.ndim == 1
    validate_events(events[:0] if one_d else events, None, check_sorted=False)
    names = events.dtype.names
    for f in ("x", "y", "p"):
        if f in names and events.dtype[f].kind not in "iub":
            raise EventError(f"events: field {f!r} must be integer, got dtype {events.dtype[f]}")
    if events.dtype["t"].kind not in "iuf":
        raise EventError(
            f"events: field 't' must be numeric (microseconds), got {events.dtype['t']}")
    if "y" not in names and h != 1:
        raise EventError(
            f"events: no 'y' field, so sensor_size must have H == 1, got {sensor_size!r}")
    x = _native(events["x"])
    # a missing y is a zero-stride view of one 0: no memory, and the same numba layout ('A') as
    # the field views, so no extra kernel compilation
    y = (_native(events["y"]) if "y" in names else
         np.lib.stride_tricks.as_strided(np.zeros(1, np.int64), shape=(len(events),), strides=(0,)))
    t = _native(events["t"])
    if t.dtype not in (np.dtype(np.int64), np.dtype(np.float64)):
        t = t.astype(np.float64 if t.dtype.kind == "f" else np.int64)
    p = _native(events["p"])
    f = _Fields(x, y, t, p, w, h, n_pol)
    if t.dtype.kind == "f" and len(t) and not (math.isfinite(t[0]) and math.isfinite(t[-1])):
        # sorted with finite ends means finite throughout, so the O(1) test suffices once the
        # order check has passed; a NaN or inf at an end would poison the window arithmetic
        _raise_bad(events, f)
    if check:
        _check_range(events, f, 0, len(events))
    return f


def _check_range(events: np.ndarray, f: _Fields, lo: int, hi: int) -> None:
    """Raise EventError if an event in ``[lo, hi)`` is off the sensor or ``t[lo-1:hi]`` unsorted."""
    lo = max(lo - 1, 0)  # include the pair (lo - 1, lo) in the order check
    if hi > lo and _count_bad(f.x[lo:hi], f.y[lo:hi], f.t[lo:hi], f.p[lo:hi],
                              f.width, f.height, f.n_pol):
        _raise_bad(events, f)


def _raise_bad(events: np.ndarray, f: _Fields) -> None:
    """Name the first problem of ``events`` (a slow full pass: called only once one is known)."""
    if f.t.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(f.t))
        if bad.size:
            i = int(bad[0])
            v = float(f.t[i])
            what = "NaN" if math.isnan(v) else ("+inf" if v > 0 else "-inf")
            raise EventError(f"events: t contains {what} at index {i}")
    validate_events(events, (f.width, f.height, f.n_pol))  # raises EventError naming the problem
    raise EventError("events: timestamps contain NaN")


# --------------------------------------------------------------------------------------------------
# slicing: window -> [start index, end index)
# --------------------------------------------------------------------------------------------------


class _Windows(NamedTuple):
    starts: np.ndarray  # [T] int64 index of the first event of each window
    ends: np.ndarray  # [T] int64 one past the last event
    t_start: np.ndarray | None  # [T] float64 window start time (None for event_count)
    t_end: np.ndarray | None  # [T] float64 window end time


def _is_int(v) -> bool:
    if isinstance(v, (int, np.integer)):
        return True
    return isinstance(v, (float, np.floating)) and float(v).is_integer()


def _check_mode(n_time_bins, time_window, event_count, overlap, start_time, end_time) -> str:
    given = [k for k, v in (("n_time_bins", n_time_bins), ("time_window", time_window),
                            ("event_count", event_count)) if v is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of n_time_bins, time_window, event_count "
                         f"(got {given or 'none'})")
    mode = given[0]
    if mode == "n_time_bins":
        if not isinstance(n_time_bins, (int, np.integer)) or n_time_bins < 1:
            raise ValueError(f"n_time_bins must be a positive integer, got {n_time_bins!r}")
        if overlap:
            raise ValueError("overlap is not supported with n_time_bins (tonic's definition leaves "
                             "the end of the recording uncovered); use time_window with overlap")
    elif mode == "time_window":
        if not time_window > 0:
            raise ValueError(f"time_window must be > 0 microseconds, got {time_window!r}")
        if not 0 <= overlap < time_window:
            raise ValueError(f"overlap must satisfy 0 <= overlap < time_window, got {overlap!r}")
    else:
        if not isinstance(event_count, (int, np.integer)) or event_count < 1:
            raise ValueError(f"event_count must be a positive integer, got {event_count!r}")
        if not _is_int(overlap) or not 0 <= overlap < event_count:
            raise ValueError(
                f"overlap must be an integer with 0 <= overlap < event_count, got {overlap!r}")
        if start_time is not None or end_time is not None:
            raise ValueError("start_time/end_time apply only to n_time_bins and time_window")
    for name, v in (("time_window", time_window), ("overlap", overlap),
                    ("start_time", start_time), ("end_time", end_time)):
        if v is not None and not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v!r}")
    if start_time is not None and end_time is not None and end_time < start_time:
        raise ValueError(f"end_time ({end_time}) < start_time ({start_time})")
    return mode


class _Plan(NamedTuple):
    mode: str
    n: int  # number of windows
    start: float | int  # covered span [start, end] (unused for event_count)
    end: float | int
    exact: bool  # integer t and integer span: integer window arithmetic
    width: float | int  # window length: time_window, or event_count events
    stride: float | int  # distance between window starts (time_window / event_count)


def _plan(t_first, t_last, n_ev: int, t_is_int: bool, *, n_time_bins=None, time_window=None,
          event_count=None, overlap=0, include_incomplete=True, start_time=None,
          end_time=None) -> _Plan:
    """The windows' count and geometry from the first/last timestamp and the event count (O(1))."""
    mode = _check_mode(n_time_bins, time_window, event_count, overlap, start_time, end_time)
    if mode == "event_count":  # identical to tonic's SliceByEventCount
        count = min(int(event_count), n_ev)
        stride = int(event_count - overlap)
        rest = n_ev - count
        n = (-(-rest // stride) if include_incomplete else rest // stride) + 1
        return _Plan(mode, int(n), 0, 0, True, count, stride)
    start = start_time if start_time is not None else (t_first if n_ev else 0)
    end = end_time if end_time is not None else (t_last if n_ev else start)
    if end_time is None and end < start:  # every event before start_time: nothing to cover
        end = start
    exact = t_is_int and _is_int(start) and _is_int(end)
    if mode == "n_time_bins":
        return _Plan(mode, int(n_time_bins), start, end, exact, 0, 0)
    # time_window: tonic's SliceByTime, with one more window where tonic's ceil() drops t == end
    stride = time_window - overlap
    span = end - start
    if exact and _is_int(time_window) and _is_int(overlap):
        q_floor = (int(span) - int(time_window)) // int(stride)
    else:
        q_floor = math.floor((span - time_window) / stride)
    if include_incomplete:
        n = 1 if span < time_window else q_floor + 2
    else:
        n = max(q_floor + 1, 1)
    return _Plan(mode, int(n), start, end, exact, time_window, stride)


def _search(t: np.ndarray, values: np.ndarray, side: str) -> np.ndarray:
    """``np.searchsorted(t, values, side)`` as int64 without converting ``t``: numpy casts ``t``
    to the common dtype (a full copy of the 10 M timestamps for float values on integer ``t``), so
    float values on integer ``t`` become the equivalent integer thresholds instead."""
    values = np.asarray(values)
    if t.dtype.kind in "iu" and values.dtype.kind == "f":
        # t >= v <=> t >= ceil(v) and t <= v <=> t <= floor(v) for integer t
        v = np.ceil(values) if side == "left" else np.floor(values)
        top = 2.0**63 - 1024  # largest float64 below 2**63
        out = np.searchsorted(t, np.clip(v, -(2.0**63), top).astype(t.dtype), side)
        out[v > top] = len(t)
        out[v < -(2.0**63)] = 0
        return out.astype(np.int64, copy=False)
    return np.searchsorted(t, values.astype(t.dtype, copy=False), side).astype(np.int64, copy=False)


def _plan_for(t: np.ndarray, **slicing) -> _Plan:
    n_ev = len(t)
    return _plan(t[0].item() if n_ev else 0, t[-1].item() if n_ev else 0, n_ev,
                 t.dtype.kind in "iu", **slicing)


def _windows(t: np.ndarray, plan: _Plan | None = None, **slicing) -> _Windows:
    """Window index ranges over the sorted ``t`` (``plan`` from :func:`_plan`, else ``slicing``)."""
    if plan is None:
        plan = _plan_for(t, **slicing)
    mode, n, start, end, exact, width, stride = plan
    n_ev = len(t)
    if mode == "event_count":
        starts = np.arange(n, dtype=np.int64) * stride  # [T]
        ends = np.minimum(starts + width, n_ev)
        return _Windows(starts, ends, None, None)
    if mode == "n_time_bins":
        lo = int(_search(t, np.array([start]), "left")[0])
        hi = int(_search(t, np.array([end]), "right")[0])
        if exact:
            start, end = int(start), int(end)
            span = end - start
            # first time of bin i: ceil(i * D / n), so that bin(t) = floor((t - start) * n / D)
            if n * span < 2**62:  # no int64 overflow in i * D
                edges = start - (-np.arange(n + 1, dtype=np.int64) * span // n)  # [T+1]
            else:
                edges = np.array([start - (-i * span // n) for i in range(n + 1)], np.int64)
        else:
            span = float(end) - float(start)
            edges = float(start) + np.arange(n + 1) * span / n  # [T+1] (i * D) / n: exact edges
        starts = _search(t, edges[:-1], "left")
        ends = np.empty(n, np.int64)
        ends[:-1] = starts[1:]
        ends[-1] = hi
        if span == 0:  # every event sits at t == start: bin 0
            starts[:] = hi
            ends[:] = hi
            starts[0] = lo
        t_edges = edges.astype(np.float64)
        return _Windows(starts, ends, t_edges[:-1], t_edges[1:])
    w_start = np.arange(n) * stride + start  # [T] same arithmetic as tonic
    w_end = w_start + width
    starts = _search(t, w_start, "left")
    ends = _search(t, w_end, "left")
    return _Windows(starts, ends, w_start.astype(np.float64), w_end.astype(np.float64))


def slice_indices(events: np.ndarray, *, n_time_bins: int | None = None,
                  time_window: float | None = None, event_count: int | None = None,
                  overlap: float = 0, include_incomplete: bool = True,
                  start_time: float | None = None, end_time: float | None = None,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Index ranges ``events[starts[i]:ends[i]]`` of the windows that :func:`to_frame` bins.

    Args: as :func:`to_frame` (``events`` only needs a sorted ``t`` field).

    Returns:
        ``(starts, ends)``, two ``int64`` arrays of shape ``[T]``.
    """
    validate_events(events, None)
    t = events["t"]
    w = _windows(t, n_time_bins=n_time_bins, time_window=time_window, event_count=event_count,
                 overlap=overlap, include_incomplete=include_incomplete, start_time=start_time,
                 end_time=end_time)
    return w.starts, w.ends


# --------------------------------------------------------------------------------------------------
# binning
# --------------------------------------------------------------------------------------------------


_PARALLEL_MIN_EVENTS = 200_000  # below this, thread hand-off costs more than the binning
_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, size, pool)


def _pool(n: int) -> ThreadPoolExecutor:
    """A process-local pool of ``n`` threads (a forked child, e.g. a DataLoader worker, inherits
    the parent's pool object but not its threads, so the pool is keyed by pid)."""
    global _POOL
    if _POOL is None or _POOL[:2] != (os.getpid(), n):
        if _POOL is not None and _POOL[0] == os.getpid():
            _POOL[2].shutdown(wait=False)
        _POOL = (os.getpid(), n, ThreadPoolExecutor(n, thread_name_prefix="spike-frames"))
    return _POOL[2]


def _n_threads(n_events: int, n_frames: int) -> int:
    if n_events < _PARALLEL_MIN_EVENTS or n_frames < 2:
        return 1
    return max(1, min(numba.get_num_threads(), os.cpu_count() or 1, n_frames))


def _bin(f: _Fields, starts: np.ndarray, ends: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Run the binning kernel over all windows; returns the per-window ``bad`` flags.

    Parallel over windows (their frames are disjoint) on plain threads that pull chunks of
    consecutive windows, balanced by event count, from a shared counter: on a busy machine a
    descheduled thread then delays only its own chunk, not a static half of the work.
    """
    n_frames = len(starts)
    bad = np.zeros(n_frames, np.bool_)
    sizes = np.maximum(ends - starts, 0)  # [T] events per window (overlaps counted twice)
    n_thr = _n_threads(int(sizes.sum()), n_frames)
    if n_thr == 1:
        _bin_windows(f.x, f.y, f.t, f.p, starts, ends, frames, bad, 0, n_frames)
        return bad
    load = np.cumsum(sizes + 64)  # + 64: an empty window still costs a little
    n_chunks = min(n_frames, 4 * n_thr)
    cuts = np.searchsorted(load, np.arange(1, n_chunks) * (load[-1] / n_chunks), "right")
    bounds = np.unique(np.concatenate(([0], cuts, [n_frames])))
    chunks = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    counter = itertools.count()  # next() is atomic under the GIL

    def worker() -> None:
        while (j := next(counter)) < len(chunks):
            _bin_windows(f.x, f.y, f.t, f.p, starts, ends, frames, bad, *chunks[j])

    futures = [_pool(n_thr - 1).submit(worker) for _ in range(n_thr - 1)]
    worker()  # the calling thread works too
    for fut in futures:
        fut.result()
    return bad


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"):
        if n < 1024 or unit == "YiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError  # pragma: no cover


def frame_nbytes(events: np.ndarray | tuple, sensor_size: tuple[int, int, int], *, n_time_bins: int | None = None,
                 time_window: float | None = None, event_count: int | None = None,
                 overlap: float = 0, include_incomplete: bool = True,
                 start_time: float | None = None, end_time: float | None = None,
                 dtype: npt.DTypeLike = np.int32) -> int:
    """Bytes of the array :func:`to_frame` would return, without reading the events (O(1)).

    Args:
        events: a structured event array, a sorted 1-D array of timestamps, or a tuple
            ``(t_first, t_last)`` / ``(t_first, t_last, n_events)`` (``event_count`` needs
            ``n_events``).
        sensor_size: ``(W, H, P)``.
        n_time_bins: as :func:`to_frame` (likewise ``time_window``, ``event_count``, ``overlap``,
            ``include_incomplete``, ``start_time``, ``end_time`` and ``dtype``).

    Returns:
        ``T * P * H * W * dtype.itemsize``.

    Example:
        >>> if frame_nbytes(events, (1280, 720, 2), time_window=1_000) > budget: ...
    """
    w, h, n_pol = _sensor(sensor_size)
    if isinstance(events, tuple):
        if len(events) not in (2, 3):
            raise ValueError(f"expected (t_first, t_last[, n_events]), got {events!r}")
        t_first, t_last = events[0], events[1]
        n_ev = int(events[2]) if len(events) == 3 else None
        if n_ev is None and event_count is not None:
            raise ValueError("event_count needs the number of events: pass "
                             "(t_first, t_last, n_events) or the events")
        t_is_int = _is_int(t_first) and _is_int(t_last)
        n_ev = 2 if n_ev is None else n_ev
    else:
        arr = np.asarray(events)
        t = arr["t"] if arr.dtype.names else arr.reshape(-1)
        n_ev = len(t)
        t_first, t_last = (t[0].item(), t[-1].item()) if n_ev else (0, 0)
        t_is_int = t.dtype.kind in "iu"
    for v in (t_first, t_last):
        if not math.isfinite(v):
            raise ValueError(f"timestamps must be finite, got {v!r}")
    plan = _plan(t_first, t_last, n_ev, t_is_int, n_time_bins=n_time_bins,
                 time_window=time_window, event_count=event_count, overlap=overlap,
                 include_incomplete=include_incomplete, start_time=start_time, end_time=end_time)
    return plan.n * n_pol * h * w * np.dtype(dtype).itemsize


def _exact_max(dtype: np.dtype) -> int:
    """Largest count representable exactly in ``dtype``."""
    if dtype.kind in "iu":
        return int(np.iinfo(dtype).max)
    return 2 ** (np.finfo(dtype).nmant + 1)


def to_frame(events: np.ndarray, sensor_size: tuple[int, int, int], *,
             n_time_bins: int | None = None, time_window: float | None = None,
             event_count: int | None = None, overlap: float = 0, include_incomplete: bool = True,
             start_time: float | None = None, end_time: float | None = None,
             dtype: npt.DTypeLike = np.int32, max_bytes: int | None = None) -> np.ndarray:
    """Count events per window, polarity and pixel.

    .. math::
        F[i, p, y, x] = \\#\\{k \\in \\mathrm{window}_i : (p_k, y_k, x_k) = (p, y, x)\\}

    Args:
        events: structured array with fields ``x, y, t, p`` (``t`` sorted, microseconds).
        sensor_size: ``(W, H, P)``.
        n_time_bins: number of equal-duration bins over ``[start, end]`` (last bin closed).
        time_window: window length in microseconds (half-open windows).
        event_count: events per window.
        overlap: microseconds (``time_window``) or events (``event_count``) shared by consecutive
            windows; must be 0 with ``n_time_bins``.
        include_incomplete: keep the last, partial window (``time_window`` / ``event_count``).
        start_time: start of the first window (default: first event time).
        end_time: end of the covered span (default: last event time).
        dtype: output dtype; if a window could hold more events than ``dtype`` can count exactly,
            counting happens in ``int64`` and ``OverflowError`` is raised should a count not fit.
        max_bytes: refuse (``ValueError``, before allocating) when the output plus any ``int64``
            accumulator would exceed this many bytes; default :data:`MAX_FRAME_BYTES` (4 GiB,
            module attribute, assignable). :func:`frame_nbytes` gives the size beforehand.

    Returns:
        Frames of shape ``[T, P, H, W]``.

    Raises:
        EventError: malformed events (wrong dtype, outside the sensor, unsorted ``t``, NaN or inf
            in a float ``t``), naming the array and the problem.
        ValueError: inconsistent slicing arguments, or frames larger than ``max_bytes``.

    Example:
        >>> frames = to_frame(events, (128, 128, 2), n_time_bins=10)  # [10, 2, 128, 128] int32
    """
    out_dtype = np.dtype(dtype)
    if out_dtype.kind not in "iuf":
        raise ValueError(f"dtype must be an integer or float dtype, got {out_dtype}")
    limit = MAX_FRAME_BYTES if max_bytes is None else max_bytes
    f = _prepare(events, sensor_size, check=False)  # O(1) unless fields need a copy
    n_ev = len(f.t)
    plan = _plan_for(f.t, n_time_bins=n_time_bins, time_window=time_window,
                     event_count=event_count, overlap=overlap,
                     include_incomplete=include_incomplete, start_time=start_time,
                     end_time=end_time)
    frame_elems = f.n_pol * f.height * f.width
    out_bytes = plan.n * frame_elems * out_dtype.itemsize
    if out_bytes > limit:
        _check_range(events, f, 0, n_ev)  # a huge span may come from bad events: name them first
        _refuse(out_bytes, limit, plan.n, f, out_dtype)
    if plan.n > 2 * n_ev + 1024:  # a span far beyond the events (unsorted t?): validate first
        _check_range(events, f, 0, n_ev)
    win = _windows(f.t, plan)
    n_frames = len(win.starts)
    largest = int((win.ends - win.starts).max()) if n_frames else 0  # bound on any pixel's count
    acc_dtype = out_dtype if largest <= _exact_max(out_dtype) else np.dtype(np.int64)
    if acc_dtype != out_dtype and out_bytes + n_frames * frame_elems * 8 > limit:
        _check_range(events, f, 0, n_ev)
        _refuse(out_bytes + n_frames * frame_elems * 8, limit, n_frames, f, out_dtype,
                " (with the int64 accumulator that a too-narrow dtype needs)")
    frames = np.zeros((n_frames, f.n_pol, f.height, f.width), acc_dtype)  # [T, P, H, W]
    s, e = win.starts, win.ends
    if largest:
        bad = _bin(f, s, e, frames)
        if bad.any():
            _raise_bad(events, f)
        # the kernel validated the events inside the windows; if the windows chain into one index
        # range [starts[0], max(ends)), only the events outside it remain to be checked
        chained = bool(np.all(e >= s) and np.all(s[1:] >= s[:-1]) and np.all(s[1:] <= e[:-1]))
        if chained:
            _check_range(events, f, 0, int(s[0]))
            _check_range(events, f, int(e.max()), n_ev)
        else:
            _check_range(events, f, 0, n_ev)
    else:
        _check_range(events, f, 0, n_ev)
    if acc_dtype != out_dtype:
        top = int(frames.max())
        if top > _exact_max(out_dtype):
            raise OverflowError(f"a pixel received {top} events, more than dtype {out_dtype} can "
                                "hold exactly; use a wider dtype (e.g. int32 or int64)")
        frames = frames.astype(out_dtype)
    return frames


def _refuse(nbytes: int, limit: int, n_frames: int, f: _Fields, dtype: np.dtype,
            extra: str = "") -> None:
    raise ValueError(
        f"to_frame: {n_frames} frames of {f.n_pol}x{f.height}x{f.width} {dtype} need "
        f"{_human(nbytes)}{extra}, more than max_bytes={_human(limit)}; check the slicing "
        "arguments, or raise the limit with max_bytes=... (or spike.events.frames.MAX_FRAME_BYTES)")
