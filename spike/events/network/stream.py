"""Streaming entry point :class:`EventStream`: one sample whose events arrive over time."""

from __future__ import annotations

import numpy as np

from spike.core.events import validate_events
from spike.events.network.batch import RunResult, StopRule, _check_violations, _stage_counts
from spike.events.network.inputs import _prepare, _unpack, bin_events
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
        self._cnt = np.zeros((len(prog.iops), 4), np.int64)
        self._done = 0  # steps processed
        self._open: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # events of the open bin
        self._open_bin = 0
        self._last_t = None
        self._stopped = False
        self._finished = False
        self._rec = np.zeros((1, 1), np.uint8)

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
        if np.any(np.diff(tb) < 0):
            k = int(np.flatnonzero(np.diff(tb) < 0)[0])
            raise EventNetworkError(f"events out of time order: t_bin[{k + 1}]={tb[k + 1]} < t_bin[{k}]={tb[k]}")
        if tb[0] < self._open_bin:
            raise EventNetworkError(f"events out of time order: t_bin {tb[0]} arrives after bin "
                                    f"{self._open_bin} was opened (steps < {self._done} are already processed)")
        if ch.min() < 0 or ch.max() >= self.net.n_in:
            raise EventNetworkError(f"channel outside [0, {self.net.n_in}): range [{ch.min()}, {ch.max()}]")
        val = np.ones(len(tb), self.net.dtype) if cnt is None else np.asarray(cnt, self.net.dtype)
        top = int(tb[-1])
        if top > self._open_bin:
            cut = int(np.searchsorted(tb, top, "left"))
            self._open.append((tb[:cut], ch[:cut], val[:cut]))
            self._process_until(top)
            self._open = [(tb[cut:], ch[cut:], val[cut:])]
            self._open_bin = top
        else:
            self._open.append((tb, ch, val))
        return self._done

    def feed_events(self, events: np.ndarray) -> int:
        """Add a chunk of a tonic structured event array (``sensor_size`` and ``dt`` set at creation).

        Raises:
            EventError / EventNetworkError: malformed events, or ``t`` earlier than already fed events.
        """
        if self._sensor is None or self._dt is None:
            raise EventNetworkError("feed_events needs sensor_size and dt given to EventStream(...)")
        validate_events(events, tuple(self._sensor))
        if len(events):
            t0 = events["t"][0]
            if self._last_t is not None and t0 < self._last_t:
                raise EventNetworkError(f"events out of time order: t={t0} arrives after t={self._last_t}")
            self._last_t = events["t"][-1]
        b = bin_events(events, self._sensor, self._dt, t_start=self._t_start)
        return self.feed(b.t_bin, b.channel)

    def advance(self, n_steps: int) -> int:
        """Declare that time has reached step ``n_steps``: every bin ``< n_steps`` is complete and is
        processed (also the silent ones). Returns :attr:`steps_done`."""
        if self._finished:
            raise EventNetworkError("the stream is finished; start a new EventStream")
        if n_steps < self._open_bin:
            raise EventNetworkError(f"cannot advance to step {n_steps}: events of bin {self._open_bin} were fed")
        if not self._stopped and n_steps > self._done:
            self._process_until(n_steps)
            self._open = []
            self._open_bin = n_steps
        return self._done

    def finish(self, n_steps: int | None = None) -> RunResult:
        """End the input after ``n_steps`` steps (default: one past the last fed bin), run the
        network's ``TimePad`` tail, and return the sample's :class:`RunResult` (``B = 1``)."""
        if self._finished:
            raise EventNetworkError("finish() was already called")
        if n_steps is None:
            n_steps = max(self._done, self._open_bin + 1 if self._open else self._done)
        if n_steps < self._done or (self._open and n_steps <= self._open_bin):
            raise EventNetworkError(f"n_steps={n_steps} ends before events already fed (bin {self._open_bin})")
        self._process_until(n_steps, t_in_end=n_steps)
        self._process_until(n_steps + self.net.pad_total, t_in_end=n_steps)
        self._finished = True
        cnt = self._cnt[None]
        _check_violations(cnt)
        syn, upd, dec = _stage_counts(self.net, cnt)
        out = self.output()[:, None]  # [T, 1, *out_shape]
        return RunResult(out, np.array([self._done]), syn, upd, dec, self.net.stage_names)

    def _process_until(self, t_end: int, t_in_end: int | None = None) -> None:
        """Process steps ``[steps_done, t_end)`` with the buffered events of bins ``< t_end``."""
        if self._stopped or t_end <= self._done:
            return
        prog = self.net._prog
        n = t_end - self._done
        parts = [p for p in self._open if len(p[0])]
        if parts:
            tb = np.concatenate([p[0] for p in parts])
            ch = np.concatenate([p[1] for p in parts])
            val = np.concatenate([p[2] for p in parts])
        else:
            tb = ch = np.zeros(0, np.int64)
            val = np.zeros(0, self.net.dtype)
        keep = tb < t_end
        n_in = n if t_in_end is None else max(0, min(t_in_end, t_end) - self._done)
        if n_in:
            ptr, idx, v = _prepare((tb[keep], ch[keep], val[keep]), self._done, n_in, self.net.n_in,
                                   self.net.dtype, "stream")
        else:
            ptr, idx, v = np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, self.net.dtype)
        if len(ptr) < n + 1:  # steps beyond the input: no events
            ptr = np.concatenate([ptr, np.full(n + 1 - len(ptr), ptr[-1], np.int64)])
        if t_end > len(self._out):
            cap = max(t_end, 2 * len(self._out))
            grown = np.zeros((cap, prog.n_out), self.net.dtype)
            grown[:len(self._out)] = self._out
            self._out = grown
        thr = self._stop.array(t_end) if self._stop is not None else np.zeros(1)
        t_in = np.iinfo(np.int64).max // 4 if t_in_end is None else t_in_end
        done, stopped = run_range(prog.iops, prog.fops, prog.w, prog.b, prog.d, prog.beta, prog.gain, prog.lay,
                                  self._fs, self._ist, ptr, idx, v, self._done, t_end, t_in, thr,
                                  self._stop is not None, self._out, self._cum, self._rec, 0, self._cnt)
        self._stopped = bool(stopped)  # also when the rule fires on the last step of the range
        self._done = done
