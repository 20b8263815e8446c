"""Numba kernels for the Prophesee EVT 2.0 / EVT 3.0 / DAT streams and AEDAT4 packets (imported
lazily: numba is heavy).

Decoders write straight into the fields of an EVENT_DTYPE array (strided views) and, in the same
pass, record ``bounds = [x_min, x_max, y_min, y_max, p_min, p_max, first i with t[i+1] < t[i]
(-1 if none)]`` of what they wrote, so that the reader checks the invariants without seven more
strided passes (``spike.io._common._finish``; on any doubt it runs ``validate_events``).
Every write is checked against the array's length: EVT2/DAT get one slot per word, EVT3 stops
when full and resumes from its saved state in a larger array.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_HI = 2**63 - 1
_LO = -(2**63)


@njit(inline="always")
def _mm(v, lo, hi):  # pragma: no cover - compiled
    if v < lo:
        lo = v
    if v > hi:
        hi = v
    return lo, hi


@njit(inline="always")
def _store(b, n, xl, xh, yl, yh, pl, ph, bad):  # pragma: no cover - compiled
    if n:
        b[0], b[1], b[2], b[3], b[4], b[5] = xl, xh, yl, yh, pl, ph
    else:
        b[0], b[1], b[2], b[3], b[4], b[5] = 0, -1, 0, -1, 0, -1
    b[6] = bad


@njit(cache=True)
def evt3_kernel(words, state, x, y, t, p, n, b):  # pragma: no cover - compiled
    """Decode EVT 3.0 words (see :func:`spike.io.prophesee.decode_evt3`) from ``state[0]`` on,
    writing events from index ``n`` while they fit; returns the new count.

    ``state`` (int64[9]) carries the decoder between calls: word position, started, high, low,
    loops, y, cd, base x, base polarity. ``b`` carries the bounds (8 slots; slot 7: previous t).
    The caller grows the arrays and calls again while ``state[0] < len(words)``.
    """
    cap = x.shape[0]
    i0, started, high, low, loops, cur_y, cd, base_x, base_p = (
        state[0], state[1], state[2], state[3], state[4], state[5], state[6], state[7], state[8])
    xl, xh, yl, yh, pl, ph, bad, prev = b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]
    i = i0
    nw = words.shape[0]
    while i < nw:
        w = int(words[i])
        kind = w >> 12
        v = w & 0xFFF
        if started == 0:
            if kind == 8:
                started = 1
                high = v
        elif kind == 2:  # ADDR_X: one event
            if cd:
                if n >= cap:
                    break
                tt = (loops << 24) + (high << 12) + low
                xx, pp = v & 0x7FF, v >> 11
                x[n], y[n], t[n], p[n] = xx, cur_y, tt, pp
                xl, xh = _mm(xx, xl, xh)
                yl, yh = _mm(cur_y, yl, yh)
                pl, ph = _mm(pp, pl, ph)
                if tt < prev and bad < 0:
                    bad = n - 1
                prev = tt
                n += 1
        elif kind == 0:  # ADDR_Y (bit 11 is the system type)
            cur_y = v & 0x7FF
            cd = 1
        elif kind == 4 or kind == 5:  # VECT_12 / VECT_8
            width = 12 if kind == 4 else 8
            if base_x >= 0:
                bits = v if kind == 4 else v & 0xFF
                if cd and bits:
                    if n + width > cap:
                        break
                    tt = (loops << 24) + (high << 12) + low
                    if tt < prev and bad < 0:
                        bad = n - 1
                    prev = tt
                    yl, yh = _mm(cur_y, yl, yh)
                    pl, ph = _mm(base_p, pl, ph)
                    for k in range(width):
                        if (bits >> k) & 1:
                            xx = base_x + k
                            x[n], y[n], t[n], p[n] = xx, cur_y, tt, base_p
                            xl, xh = _mm(xx, xl, xh)
                            n += 1
                base_x += width
        elif kind == 3:  # VECT_BASE_X
            base_x = v & 0x7FF
            base_p = v >> 11
        elif kind == 6:  # TIME_LOW
            low = v
        elif kind == 8:  # TIME_HIGH
            if v != high:
                if high >= v + 2048:  # a drop of half the range or more: the 24-bit time looped
                    loops += 1
                high = v
                low = 0
        elif kind == 1:  # ADDR_Y of exposure-measurement events: not CD
            cd = 0
        # 7 CONTINUED_4, 10 EXT_TRIGGER, 14 OTHERS, 15 CONTINUED_12 and reserved types: skipped
        i += 1
    state[0], state[1], state[2], state[3], state[4] = i, started, high, low, loops
    state[5], state[6], state[7], state[8] = cur_y, cd, base_x, base_p
    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7] = xl, xh, yl, yh, pl, ph, bad, prev
    return n


@njit(cache=True)
def evt2_kernel(words, x, y, t, p, write, b):  # pragma: no cover - compiled
    """Decode EVT 2.0 words (see :func:`spike.io.prophesee.decode_evt2`); returns the event count.
    At most one event per word: callers may allocate ``len(words)`` and write at once."""
    n = 0
    started = False
    high = 0
    loops = 0
    xl, xh, yl, yh, pl, ph, prev, bad = _HI, _LO, _HI, _LO, _HI, _LO, _LO, -1
    for i in range(words.shape[0]):
        w = int(words[i])
        kind = w >> 28
        if kind <= 1:  # CD_OFF / CD_ON
            if started:
                if write:
                    xx, yy = (w >> 11) & 0x7FF, w & 0x7FF
                    tt = (((loops << 28) + high) << 6) + ((w >> 22) & 0x3F)
                    x[n], y[n], t[n], p[n] = xx, yy, tt, kind
                    xl, xh = _mm(xx, xl, xh)
                    yl, yh = _mm(yy, yl, yh)
                    pl, ph = _mm(kind, pl, ph)
                    if tt < prev and bad < 0:
                        bad = n - 1
                    prev = tt
                n += 1
        elif kind == 8:  # TIME_HIGH: bits 33..6 of the time
            h = w & 0x0FFFFFFF
            if started and high >= h + (1 << 27):  # half the range or more: the time looped
                loops += 1
            high = h
            started = True
        # 10 EXT_TRIGGER, 14 OTHERS, 15 CONTINUED and reserved types: skipped
    if write:
        _store(b, n, xl, xh, yl, yh, pl, ph, bad)
    return n


@njit(cache=True)
def dat_kernel(raw, version, x, y, t, p, b):  # pragma: no cover - compiled
    """Decode DAT events (``raw``: uint32 pairs ``[t, data]``; see
    :func:`spike.io.prophesee.decode_dat`)."""
    n = raw.shape[0] // 2
    xl, xh, yl, yh, pl, ph, prev, bad = _HI, _LO, _HI, _LO, _HI, _LO, _LO, -1
    offset = 0
    last = 0
    for i in range(n):
        tr = int(raw[2 * i])
        d = int(raw[2 * i + 1])
        if i and last - tr > 2**31:  # the 32-bit clock looped
            offset += 2**32
        last = tr
        tt = tr + offset
        if version == 1:
            xx, yy, pp = d & 0x1FF, (d >> 9) & 0xFF, (d >> 17) & 0xF
        else:
            xx, yy, pp = d & 0x3FFF, (d >> 14) & 0x3FFF, d >> 28
        x[i], y[i], t[i], p[i] = xx, yy, tt, pp
        xl, xh = _mm(xx, xl, xh)
        yl, yh = _mm(yy, yl, yh)
        pl, ph = _mm(pp, pl, ph)
        if tt < prev and bad < 0:
            bad = i - 1
        prev = tt
    _store(b, n, xl, xh, yl, yh, pl, ph, bad)
    return n


@njit(cache=True)
def copy_kernel(sx, sy, st, sp, start, x, y, t, p, b):  # pragma: no cover - compiled
    """Copy one packet's fields (any integer or bool dtypes) into the output at ``start`` and
    fold them into ``b`` (``b[6]``: first backward step, ``b[7]``: the previous t)."""
    xl, xh, yl, yh, pl, ph, bad, prev = b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]
    for i in range(sx.shape[0]):
        xx, yy, tt, pp = np.int64(sx[i]), np.int64(sy[i]), np.int64(st[i]), np.int64(sp[i])
        j = start + i
        x[j], y[j], t[j], p[j] = xx, yy, tt, pp
        xl, xh = _mm(xx, xl, xh)
        yl, yh = _mm(yy, yl, yh)
        pl, ph = _mm(pp, pl, ph)
        if tt < prev and bad < 0:
            bad = j - 1
        prev = tt
    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7] = xl, xh, yl, yh, pl, ph, bad, prev
    return 0


@njit(cache=True)
def bounds_kernel(x, y, t, p, b):  # pragma: no cover - compiled
    """``b`` (see the module docstring) of an existing event array, in one pass."""
    n = x.shape[0]
    xl, xh, yl, yh, pl, ph, prev, bad = _HI, _LO, _HI, _LO, _HI, _LO, _LO, -1
    for i in range(n):
        xl, xh = _mm(x[i], xl, xh)
        yl, yh = _mm(y[i], yl, yh)
        pl, ph = _mm(p[i], pl, ph)
        tt = t[i]
        if tt < prev and bad < 0:
            bad = i - 1
        prev = tt
    _store(b, n, xl, xh, yl, yh, pl, ph, bad)
    return 0
