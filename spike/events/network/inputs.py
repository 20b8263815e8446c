"""Inputs of an event network: binned events ``(t_bin, channel[, count])`` and their CSR form per step."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from spike.core.events import validate_events
from spike.events.network.layers import EventNetworkError

__all__ = ["BinnedEvents", "bin_events", "to_dense"]


class BinnedEvents(NamedTuple):
    """One sample's input: ``t_bin``, ``channel`` (int64) and ``count`` (float) per entry."""

    t_bin: np.ndarray
    channel: np.ndarray
    count: np.ndarray | None = None


def bin_events(events: np.ndarray, sensor_size: tuple[int, int, int], dt: float, *, t_start: float = 0,
               n_steps: int | None = None) -> BinnedEvents:
    """Bin a tonic structured array into ``(t_bin, channel, count)`` for :func:`run`.

    ``t_bin = floor((t - t_start) / dt)``, ``channel = p*H*W + y*W + x`` (``p = -1`` is OFF for
    ``P == 2``), the layout of ``to_frame(events, sensor_size, time_window=dt, start_time=t_start)``
    flattened. Events before ``t_start`` or at/after ``t_start + n_steps * dt`` are dropped.

    Raises:
        EventError: malformed events (fields, sensor bounds, unsorted ``t``).
    """
    w, h, n_pol = (int(s) for s in sensor_size)
    validate_events(events, (w, h, n_pol))
    if not dt > 0:
        raise EventNetworkError(f"dt must be > 0 (microseconds per step), got {dt!r}")
    t = np.asarray(events["t"])
    if t.dtype.kind in "iu" and float(dt).is_integer() and float(t_start).is_integer():
        tb = (t.astype(np.int64) - int(t_start)) // int(dt)
    else:
        tb = np.floor((t.astype(np.float64) - float(t_start)) / float(dt)).astype(np.int64)
    p = np.asarray(events["p"]).astype(np.int64)
    if n_pol == 2:
        p = np.where(p < 0, 0, p)
    y = np.asarray(events["y"]).astype(np.int64) if "y" in events.dtype.names else np.zeros(len(t), np.int64)
    ch = (p * h + y) * w + np.asarray(events["x"]).astype(np.int64)
    keep = tb >= 0
    if n_steps is not None:
        keep &= tb < n_steps
    if not keep.all():
        tb, ch = tb[keep], ch[keep]
    return BinnedEvents(tb, ch, None)


def to_dense(sample, n_steps: int, n_in: int, dtype=np.float32) -> np.ndarray:
    """The dense input ``[T, n_in]`` of one sample (what the clock-driven path consumes)."""
    tb, ch, cnt = _unpack(sample)
    x = np.zeros((n_steps, n_in), dtype)
    np.add.at(x, (tb, ch), 1 if cnt is None else cnt)
    return x


def _unpack(sample):
    if isinstance(sample, np.ndarray) and sample.dtype.names is not None:
        raise EventNetworkError("a structured event array needs sensor_size and dt: pass them to run(), or "
                                "bin it with bin_events() first")
    if not isinstance(sample, (tuple, list)) or len(sample) not in (2, 3):
        raise EventNetworkError(f"a sample must be (t_bin, channel) or (t_bin, channel, count), got "
                                f"{type(sample).__name__}")
    tb = np.asarray(sample[0])
    ch = np.asarray(sample[1])
    cnt = None if len(sample) == 2 or sample[2] is None else np.asarray(sample[2])
    if tb.ndim != 1 or ch.shape != tb.shape or (cnt is not None and cnt.shape != tb.shape):
        raise EventNetworkError(f"t_bin, channel (and count) must be 1-D of equal length, got "
                                f"{tb.shape}, {ch.shape}{'' if cnt is None else ', ' + str(cnt.shape)}")
    if tb.size and (tb.dtype.kind not in "iu" or ch.dtype.kind not in "iu"):
        raise EventNetworkError(f"t_bin and channel must be integer arrays, got {tb.dtype}, {ch.dtype}")
    return tb.astype(np.int64, copy=False), ch.astype(np.int64, copy=False), cnt


@njit(cache=True)
def _csr(tb, ch, val, t0, n_steps, n_in, out_idx, out_val, ptr):  # pragma: no cover - numba
    """Sort entries by ``(bin, channel)`` (two stable counting sorts), summing duplicates, for
    ``t0 <= t_bin < t0 + n_steps``. Within a bin channels ascend: every path adds the synaptic terms
    of a step in the same order. Returns the number of entries, or ``-(k + 1)`` for a bad entry ``k``."""
    n = len(tb)
    ordered = True  # already sorted by (bin, channel) without duplicates (e.g. from np.nonzero)?
    for k in range(n):
        if tb[k] < t0 or tb[k] >= t0 + n_steps or ch[k] < 0 or ch[k] >= n_in:
            return -(k + 1)
        if k > 0 and (tb[k] < tb[k - 1] or (tb[k] == tb[k - 1] and ch[k] <= ch[k - 1])):
            ordered = False
    if ordered:
        b = 0
        ptr[0] = 0
        for k in range(n):
            while tb[k] - t0 > b:
                b += 1
                ptr[b] = k
            out_idx[k] = ch[k]
            out_val[k] = val[k]
        for b2 in range(b + 1, n_steps + 1):
            ptr[b2] = n
        return n
    by_ch = np.empty(n, np.int64)
    cnt = np.zeros(n_in + 1, np.int64)
    for k in range(n):
        cnt[ch[k] + 1] += 1
    for c in range(n_in):
        cnt[c + 1] += cnt[c]
    for k in range(n):
        by_ch[cnt[ch[k]]] = k
        cnt[ch[k]] += 1
    order = np.empty(n, np.int64)
    cnt_t = np.zeros(n_steps + 1, np.int64)
    for k in range(n):
        cnt_t[tb[k] - t0 + 1] += 1
    for b in range(n_steps):
        cnt_t[b + 1] += cnt_t[b]
    for q in range(n):
        k = by_ch[q]
        b = tb[k] - t0
        order[cnt_t[b]] = k
        cnt_t[b] += 1
    m = 0
    ptr[0] = 0
    q = 0
    for b in range(n_steps):
        first = m
        while q < n and tb[order[q]] - t0 == b:
            k = order[q]
            if m > first and out_idx[m - 1] == ch[k]:
                out_val[m - 1] += val[k]
            else:
                out_idx[m] = ch[k]
                out_val[m] = val[k]
                m += 1
            q += 1
        ptr[b + 1] = m
    return m


@njit(cache=True)
def _csr_open(och, oval, n_open, open_bin, tb, ch, val, n_new, t0, t1, t_in_end, n_in, ptr, idx, v):  # pragma: no cover
    """The stream's CSR over ``[t0, t1)`` into ``ptr [>= t1 - t0 + 1], idx, v [>= n_open + n_new]``: the
    open bin's events ``(och, oval)[:n_open]`` (bin ``open_bin``) then ``(tb, ch, val)[:n_new]``, all
    valid; no input at or after ``t_in_end``. Returns the number of entries (buffers, not new arrays:
    returning arrays to Python costs more than the work)."""
    n = n_open + n_new
    tbc = np.empty(n, np.int64)
    chc = np.empty(n, np.int64)
    valc = np.empty(n, oval.dtype)
    for k in range(n_open):
        tbc[k] = open_bin
        chc[k] = och[k]
        valc[k] = oval[k]
    for k in range(n_new):
        tbc[n_open + k] = tb[k]
        chc[n_open + k] = ch[k]
        valc[n_open + k] = val[k]
    n_steps = t1 - t0
    n_in_steps = max(0, min(t_in_end, t1) - t0)
    ptr[0] = 0
    m = 0
    if n_in_steps > 0 and n > 0:
        m = max(0, _csr(tbc, chc, valc, t0, n_in_steps, n_in, idx, v, ptr))
    for b in range(n_in_steps + 1, n_steps + 1):
        ptr[b] = m
    return m


def _prepare(sample, t0: int, n_steps: int, n_in: int, dtype, which: str):
    """A sample as CSR over ``[t0, t0 + n_steps)``: ``(ptr [n_steps+1], idx, val)``."""
    tb, ch, cnt = _unpack(sample)
    val = np.ones(len(tb), dtype) if cnt is None else np.asarray(cnt, dtype)
    if cnt is not None and not np.isfinite(val).all():
        raise EventNetworkError(f"{which}: counts must be finite")
    idx = np.empty(len(tb), np.int64)
    out_val = np.empty(len(tb), dtype)
    ptr = np.empty(n_steps + 1, np.int64)
    m = _csr(tb, ch, val, t0, n_steps, n_in, idx, out_val, ptr)
    if m < 0:
        k = -m - 1
        raise EventNetworkError(f"{which}: entry {k} (t_bin={tb[k]}, channel={ch[k]}) is outside "
                                f"t_bin in [{t0}, {t0 + n_steps}) x channel in [0, {n_in})")
    return ptr, idx[:m], out_val[:m]

