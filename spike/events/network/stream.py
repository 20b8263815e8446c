"""Streaming entry point :class:`EventStream`: one sample whose events arrive over time."""

from __future__ import annotations

import numpy as np
from numba import njit

from spike.core.events import validate_events
from spike.events.network.batch import N_COUNTERS, RunResult, StopRule, _check_violations, _stage_counts, _stage_macs
from spike.events.network.inputs import _csr_open, _unpack, bin_events
from spike.events.network.kernels import init_state, run_range
from spike.events.network.layers import EventNetworkError
from spike.events.network.program import L_FSIZE, L_ISIZE, EventNetwork

__all__ = ["EventStream"]


class EventStream:
    """Event-driven inference of one sample whose events arrive over time.

    The stream is the one stateful object of this module: it owns the sample's neuron state and
    advances it as bins are completed. Events must arrive in non-decreasing time; a bin is processed
    as soon as an event of a later bin arrives, or on :meth:`advance` / :meth:`finish`.

    Args:
        net: the network.
        stop_rule: optional early exit (thresholds indexed by step); once it fires, further events are
            ignored and :attr:`stopped` is true.
        sensor_size, dt, t_start: needed by :meth:`feed_events` (structured arrays, binned as
            :func:`bin_events`).

    Example:
        >>> s = EventStream(net)
        >>> s.feed(t_bin=[0, 0, 3], channel=[5, 9, 5])   # processes steps 0..2 (bin 3 is still open)
        >>> s.output().shape                              # readout of the steps done so far
        (3, 10)
        >>> res = s.finish(n_steps=10)
    """

    def __init__(self, net: EventNetwork, *, stop_rule: StopRule | None = None,
                 sensor_size: tuple[int, int, int] | None = None, dt: float | None = None, t_start: float = 0):
        prog = net._prog
        if stop_rule is not None and prog.n_out < 2:
            raise EventNetworkError("a stop rule needs at least two outputs (top-1 vs top-2 gap)")
        self.net = net
        self._stop = stop_rule
        self._sensor, self._dt, self._t_start = sensor_size, dt, t_start
        self._fs = np.empty(prog.lay[L_FSIZE], net.dtype)
        self._ist = np.empty(prog.lay[L_ISIZE], np.int64)
        init_state(prog.lay, prog.vinit, self._fs, self._ist)
        self._cum = np.zeros(prog.n_out, np.float64)
        self._out = np.zeros((64, prog.n_out), net.dtype)  # grows by doubling: [capacity, C]
        self._cnt = np.zeros((len(prog.iops), N_COUNTERS), np.int64)
        self._done = 0  # steps processed
        self._och = np.empty(256, np.int64)  # events of the open bin: channels, values [capacity]
        self._oval = np.empty(256, net.dtype)
        self._n_open = 0
        self._open_bin = 0
        self._last_t = None
        self._last_int = None  # _last_t as a Python int when it is an integer (the numba path)
        self._stopped = False
        self._finished = False
        self._rec = np.zeros((1, 1), np.uint8)
        # constant per stream, computed once: program, thresholds, binning parameters, scratch buffers
        self._p = prog
        self._thr = np.zeros(1) if stop_rule is None else np.zeros(0)
        self._ones = np.ones(256, net.dtype)
        self._tb_buf = np.empty(256, np.int64)
        self._ch_buf = np.empty(256, np.int64)
        self._dtype_ok: dict = {}
        self._n_in = net.n_in
        self._ptr = np.empty(256, np.int64)  # the CSR of the bins being processed
        self._idx = np.empty(256, np.int64)
        self._v = np.empty(256, net.dtype)
        self._dt_i = self._t0_i = self._sensor_i = None
        if sensor_size is not None and dt is not None:
            try:
                ok = float(dt) > 0 and float(dt).is_integer() and float(t_start).is_integer()
            except (TypeError, ValueError):
                ok = False
            if ok and len(sensor_size) == 3:
                self._dt_i, self._t0_i = int(dt), int(t_start)
                self._sensor_i = tuple(int(s) for s in sensor_size)

    # -- state
    @property
    def steps_done(self) -> int:
        return self._done

    @property
    def stopped(self) -> bool:
        return self._stopped

    def output(self) -> np.ndarray:
        """The readout of every processed step, ``[steps_done, *out_shape]`` (a copy); after
        :meth:`finish` the same array is ``RunResult.output[:, 0]`` (alias of ``RunResult.out``)."""
        return self._out[:self._done].reshape(self._done, *self.net.out_shape).copy()

    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(synops, updates, decays)`` per stage (``[L]``, in the order of ``net.stage_names``) so far."""
        syn, upd, dec = _stage_counts(self.net, self._cnt[None])
        return syn[0], upd[0], dec[0]

    def mac_synops(self) -> np.ndarray:
        """Synaptic operations so far triggered by input values other than +-1, per stage (``[L]``)."""
        return _stage_macs(self.net, self._cnt[None])[0]

    def cumulative(self) -> np.ndarray:
        """Sum of the readout over the processed steps (float64), ``[*out_shape]``."""
        return self._cum.reshape(self.net.out_shape).copy()

    # -- input
    def feed(self, t_bin, channel, count=None) -> int:
        """Add events ``(t_bin, channel[, count])`` in non-decreasing ``t_bin``; returns :attr:`steps_done`.

        Raises:
            EventNetworkError: a bin earlier than one already fed, channels out of range, after finish.
        """
        if self._finished:
            raise EventNetworkError("the stream is finished; start a new EventStream")
        tb, ch, cnt = _unpack((t_bin, channel, count))
        if self._stopped or tb.size == 0:
            return self._done
        code, k = _check_feed(tb, ch, self._open_bin, self._n_in)
        if code == 1:
            raise EventNetworkError(f"events out of time order: t_bin[{k + 1}]={tb[k + 1]} < t_bin[{k}]={tb[k]}")
        if code == 2:
            raise EventNetworkError(f"events out of time order: t_bin {tb[0]} arrives after bin "
                                    f"{self._open_bin} was opened (steps < {self._done} are already processed)")
        if code == 3:
            raise EventNetworkError(f"channel outside [0, {self.net.n_in}): range [{ch.min()}, {ch.max()}]")
        val = self._ones_of(len(tb)) if cnt is None else np.asarray(cnt, self.net.dtype)
        return self._push(tb, ch, val)

    def feed_events(self, events: np.ndarray) -> int:
        """Add a chunk of a tonic structured event array (``sensor_size`` and ``dt`` set at creation).

        Raises:
            EventError / EventNetworkError: malformed events, or ``t`` earlier than already fed events.
        """
        fields = self._fast_fields(events)
        if fields is None:  # not the common case (float fields, float dt, after finish, ...): reference
            return self._feed_events_ref(events)
        n = len(events)
        if n == 0:
            return self._done
        x, t, p = _i64(events["x"]), _i64(events["t"]), _i64(events["p"])
        y = _i64(events["y"]) if fields[1] is not None else None
        if len(self._tb_buf) < n:
            self._tb_buf = np.empty(2 * n, np.int64)
            self._ch_buf = np.empty(2 * n, np.int64)
        w, h, n_pol = self._sensor_i
        code, m = _bin_chunk(x, x if y is None else y, t, p, y is not None, w, h, n_pol, self._dt_i,
                             self._t0_i, self._last_int or 0, self._last_int is not None, self._tb_buf, self._ch_buf)
        if code or (not self._stopped and m and self._tb_buf[0] < self._open_bin):
            return self._feed_events_ref(events)  # it raises the reference's error
        self._last_t = t[n - 1]
        self._last_int = int(self._last_t)
        if self._stopped or m == 0:
            return self._done
        return self._push(self._tb_buf[:m], self._ch_buf[:m], self._ones_of(m))

    def _feed_events_ref(self, events: np.ndarray) -> int:
        """The reference of :meth:`feed_events` (every check in Python)."""
        if self._sensor is None or self._dt is None:
            raise EventNetworkError("feed_events needs sensor_size and dt given to EventStream(...)")
        validate_events(events, tuple(self._sensor))
        if len(events):
            t0 = events["t"][0]
            if self._last_t is not None and t0 < self._last_t:
                raise EventNetworkError(f"events out of time order: t={t0} arrives after t={self._last_t}")
            self._last_t = events["t"][-1]
            lt = self._last_t
            self._last_int = int(lt) if isinstance(lt, (int, np.integer)) else None
        b = bin_events(events, self._sensor, self._dt, t_start=self._t_start)
        return self.feed(b.t_bin, b.channel)

    def _fast_fields(self, events):
        """``(x, y or None, t, p)`` field names when ``events`` may take the numba path, else None."""
        if self._dt_i is None or self._finished or not isinstance(events, np.ndarray) or events.ndim != 1:
            return None
        if self._last_t is not None and self._last_int is None:
            return None
        dt = events.dtype
        if dt not in self._dtype_ok:
            names = dt.names or ()
            ok = all(f in names for f in ("x", "t", "p")) and all(
                dt[f].kind in "iub" and not (dt[f].kind == "u" and dt[f].itemsize == 8)
                for f in ("x", "y", "t", "p") if f in names)
            self._dtype_ok[dt] = ("x", "y" if "y" in names else None, "t", "p") if ok else None
        return self._dtype_ok[dt]

    def _ones_of(self, n: int) -> np.ndarray:
        if len(self._ones) < n:
            self._ones = np.ones(2 * n, self.net.dtype)
        return self._ones[:n]

    def advance(self, n_steps: int) -> int:
        """Declare that time has reached step ``n_steps``: every bin ``< n_steps`` is complete and is
        processed (also the silent ones). Returns :attr:`steps_done`."""
        if self._finished:
            raise EventNetworkError("the stream is finished; start a new EventStream")
        if n_steps < self._open_bin:
            raise EventNetworkError(f"cannot advance to step {n_steps}: events of bin {self._open_bin} were fed")
        if not self._stopped and n_steps > self._done:
            self._process(n_steps, _NO_I, _NO_I, self._ones[:0], 0)
            self._n_open = 0
            self._open_bin = n_steps
        return self._done

    def finish(self, n_steps: int | None = None) -> RunResult:
        """End the input after ``n_steps`` steps (default: one past the last fed bin), run the
        network's ``TimePad`` tail, and return the sample's :class:`RunResult` (``B = 1``)."""
        if self._finished:
            raise EventNetworkError("finish() was already called")
        is_open = self._n_open > 0
        if n_steps is None:
            n_steps = max(self._done, self._open_bin + 1 if is_open else self._done)
        if n_steps < self._done or (is_open and n_steps <= self._open_bin):
            raise EventNetworkError(f"n_steps={n_steps} ends before events already fed (bin {self._open_bin})")
        self._process(n_steps, _NO_I, _NO_I, self._ones[:0], 0, t_in_end=n_steps)
        self._n_open = 0
        self._process(n_steps + self.net.pad_total, _NO_I, _NO_I, self._ones[:0], 0, t_in_end=n_steps)
        self._finished = True
        cnt = self._cnt[None]
        _check_violations(cnt)
        syn, upd, dec = _stage_counts(self.net, cnt)
        out = self.output()[:, None]  # [T, 1, *out_shape]
        return RunResult(out, np.array([self._done]), syn, upd, dec, self.net.stage_names,
                         mac_synops=_stage_macs(self.net, cnt))

    # -- processing
    def _push(self, tb, ch, val) -> int:
        """Validated events (``tb >= open bin``, sorted): process the bins they complete, keep the rest."""
        top = int(tb[-1])
        if top > self._open_bin:
            cut = int(np.searchsorted(tb, top, "left"))
            self._process(top, tb, ch, val, cut)
            self._n_open = 0
            self._open_bin = top
            self._append(ch[cut:], val[cut:])
        else:
            self._append(ch, val)
        return self._done

    def _append(self, ch, val) -> None:
        n0, k = self._n_open, len(ch)
        if n0 + k > len(self._och):
            cap = max(2 * len(self._och), n0 + k)
            och, oval = np.empty(cap, np.int64), np.empty(cap, self.net.dtype)
            och[:n0], oval[:n0] = self._och[:n0], self._oval[:n0]
            self._och, self._oval = och, oval
        self._och[n0:n0 + k] = ch
        self._oval[n0:n0 + k] = val
        self._n_open = n0 + k

    def _process(self, t_end: int, tb, ch, val, n_new: int, t_in_end: int | None = None) -> None:
        """Process steps ``[steps_done, t_end)`` with the open bin's events and the first ``n_new`` of
        ``(tb, ch, val)`` (all in bins ``< t_end``): two numba calls (CSR of the bins, the time loop)."""
        if self._stopped or t_end <= self._done:
            return
        if t_end > len(self._out):
            cap = max(t_end, 2 * len(self._out))
            grown = np.zeros((cap, self._out.shape[1]), self.net.dtype)
            grown[:len(self._out)] = self._out
            self._out = grown
        if self._stop is not None and t_end > len(self._thr):
            scalar = np.ndim(self._stop.thresholds) == 0
            self._thr = self._stop.array(max(t_end, 2 * len(self._thr)) if scalar else t_end)
        p = self._p
        t_in = _T_INF if t_in_end is None else t_in_end
        if t_end - self._done + 1 > len(self._ptr):
            self._ptr = np.empty(2 * (t_end - self._done + 1), np.int64)
        if self._n_open + n_new > len(self._idx):
            self._idx = np.empty(2 * (self._n_open + n_new), np.int64)
            self._v = np.empty(2 * (self._n_open + n_new), self.net.dtype)
        _csr_open(self._och, self._oval, self._n_open, self._open_bin, tb, ch, val, n_new, self._done, t_end,
                  t_in, self._n_in, self._ptr, self._idx, self._v)
        done, stopped = run_range(p.iops, p.fops, p.w, p.b, p.d, p.beta, p.gain, p.lay, self._fs, self._ist,
                                  self._ptr, self._idx, self._v, self._done, t_end, t_in, self._thr,
                                  self._stop is not None, self._out, self._cum, self._rec, 0, self._cnt)
        self._stopped = bool(stopped)  # also when the rule fires on the last step of the range
        self._done = int(done)


_T_INF = np.iinfo(np.int64).max // 4


def _i64(a: np.ndarray) -> np.ndarray:
    return a if a.dtype == np.int64 else a.astype(np.int64)
_NO_I = np.zeros(0, np.int64)


# ------------------------------------------------------------------------------------------------
# numba: the checks and binning of a feed call in one call each (no calls into other files: numba's
# cache would not see those change)
# ------------------------------------------------------------------------------------------------


@njit(cache=True)
def _check_feed(tb, ch, open_bin, n_in):  # pragma: no cover - numba
    """``(0, 0)`` if ``tb`` is sorted from ``open_bin`` on and channels are in ``[0, n_in)``, else
    ``(1, k)`` (``tb[k + 1] < tb[k]``), ``(2, 0)`` (before the open bin), ``(3, k)`` (channel)."""
    for k in range(len(tb) - 1):
        if tb[k + 1] < tb[k]:
            return 1, k
    if tb[0] < open_bin:
        return 2, 0
    for k in range(len(ch)):
        if ch[k] < 0 or ch[k] >= n_in:
            return 3, k
    return 0, 0


@njit(cache=True)
def _bin_chunk(x, y, t, p, has_y, w, h, n_pol, dt, t_start, last_t, has_last, tb_out, ch_out):  # pragma: no cover
    """:func:`validate_events` + :func:`bin_events` of a chunk with integer fields and integer ``dt``:
    ``(0, m)`` with ``m`` binned entries, or ``(code > 0, 0)`` for any problem (the caller then runs
    the reference, which raises its error)."""
    n = len(t)
    for k in range(n):
        if k > 0 and t[k] < t[k - 1]:
            return 1, 0
        if x[k] < 0 or x[k] >= w or (has_y and (y[k] < 0 or y[k] >= h)):
            return 2, 0
        if (n_pol == 2 and (p[k] < -1 or p[k] > 1)) or (n_pol != 2 and (p[k] < 0 or p[k] >= n_pol)):
            return 3, 0
    if has_last and n > 0 and t[0] < last_t:
        return 4, 0
    m = 0
    for k in range(n):
        b = (t[k] - t_start) // dt
        if b < 0:
            continue
        pk = p[k]
        if n_pol == 2 and pk < 0:
            pk = 0
        yk = y[k] if has_y else 0
        tb_out[m] = b
        ch_out[m] = (pk * h + yk) * w + x[k]
        m += 1
    return 0, m
