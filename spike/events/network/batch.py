"""Batch entry point :func:`run`, the :class:`StopRule` and the :class:`RunResult` of both entry points."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

from spike.events.network.inputs import _prepare, bin_events
from spike.events.network.kernels import run_batch, run_sample
from spike.events.network.layers import EventNetworkError
from spike.events.network.program import _M_LIF, C_MODEL, C_NOFF, C_PAD, EventNetwork

__all__ = ["StopRule", "RunResult", "run"]


@dataclass(frozen=True, eq=False)
class StopRule:
    r"""Anytime early exit: stop a sample after the first step ``t`` with

    .. math:: \mathrm{top}_1(c_t) - \mathrm{top}_2(c_t) > \beta_t,\qquad c_t = \sum_{\tau \le t} y_\tau

    where :math:`y_\tau` is the network output of step :math:`\tau` (spikes, LI membrane or current)
    and :math:`c_t` is accumulated in float64. ``thresholds`` holds :math:`\beta_t` (``+inf``: never
    stop at ``t``; a scalar applies to every step); it must cover every simulated step.
    """

    thresholds: np.ndarray | float

    def array(self, n_steps: int) -> np.ndarray:
        th = np.asarray(self.thresholds, np.float64)
        if th.ndim == 0:
            th = np.full(n_steps, float(th))
        if th.ndim != 1 or len(th) < n_steps or np.isnan(th).any():
            raise EventNetworkError(f"stop rule thresholds must be a scalar or a 1-D array of at least "
                                    f"{n_steps} steps without NaN, got shape {th.shape}")
        return np.ascontiguousarray(th)


class RunResult(NamedTuple):
    """Output of :func:`run` (and :meth:`EventStream.finish`).

    * ``out [T_total, B, *out_shape]`` (also ``.output``): the readout of every step (zeros after a
      sample stopped);
    * ``steps [B]``: steps processed (``T_total`` unless the stop rule fired);
    * ``synops, updates, decays [B, L]`` per stage (``layers``): synaptic operations (events x non-zero
      fan-out reached), neuron updates with a threshold check, lazily replayed decay steps;
    * ``mac_synops [B, L]``: the synaptic operations triggered by an input value other than +-1 (a count
      of several events in a bin, an average-pooled value): multiply-accumulates under the per-element
      rule of :class:`spike.energy.EnergyMeter`; the rest (``synops - mac_synops``) are accumulates;
    * ``record=True`` only: ``spikes``: layer -> ``[T_layer, B, *shape]`` uint8 (``T_layer = T`` +
      the TimePads before the layer); ``v_final`` / ``s_final``: layer -> ``[B, *shape]``, the state
      after each sample's last step; ``aux_final``: the same for the second state variable of the
      CUBA (synaptic current ``i``) and SE-adLIF (adaptation ``w``) layers.
    """

    out: np.ndarray
    steps: np.ndarray
    synops: np.ndarray
    updates: np.ndarray
    decays: np.ndarray
    layers: tuple[str, ...]
    spikes: dict[str, np.ndarray] | None = None
    v_final: dict[str, np.ndarray] | None = None
    s_final: dict[str, np.ndarray] | None = None
    mac_synops: np.ndarray | None = None
    aux_final: dict[str, np.ndarray] | None = None

    @property
    def output(self) -> np.ndarray:
        """The readout ``[T_total, B, *out_shape]``: the same array as ``out`` (the name
        :meth:`EventStream.output` uses; ``out`` stays for compatibility)."""
        return self.out


#: columns of the per-op counters: synops, updates, decays, violations, MAC synops
N_COUNTERS = 5


def _stage_counts(net: EventNetwork, cnt: np.ndarray):
    """``(synops, updates, decays)`` ``[B, L]`` of the stages (fresh arrays, one fancy index)."""
    c = cnt[:, [s[1] for s in net._prog.stages], :3]  # [B, L, 3]
    return c[..., 0], c[..., 1], c[..., 2]


def _stage_macs(net: EventNetwork, cnt: np.ndarray) -> np.ndarray:
    """MAC synops ``[B, L]`` of the stages."""
    return cnt[:, [s[1] for s in net._prog.stages], 4]


def run(net: EventNetwork, samples: Sequence, n_steps: int, *, record: bool = False,
        stop_rule: StopRule | None = None, sensor_size: tuple[int, int, int] | None = None,
        dt: float | None = None, t_start: float = 0) -> RunResult:
    """Event-driven inference of a batch of samples, in parallel over samples.

    Args:
        net: the network.
        samples: per sample ``(t_bin, channel)`` / ``(t_bin, channel, count)`` / :class:`BinnedEvents`,
            or tonic structured arrays when ``sensor_size`` and ``dt`` are given (binned with
            :func:`bin_events`, ``n_steps`` bins from ``t_start``).
        n_steps: number of input steps ``T`` (the dense input's ``T``); the network runs
            ``T + net.pad_total`` steps.
        record: also return every spiking layer's spikes and the final neuron states.
        stop_rule: optional per-sample early exit (:class:`StopRule`).

    Returns:
        :class:`RunResult`.

    Raises:
        EventNetworkError: entries outside ``[0, T) x [0, n_in)``, malformed samples.
    """
    prog = net._prog
    if isinstance(samples, np.ndarray) and samples.dtype.names is not None:
        raise EventNetworkError("samples must be a list of samples; wrap a single event array in a list")
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 0:
        raise EventNetworkError(f"n_steps must be an integer >= 0, got {n_steps!r}")
    n_steps = int(n_steps)
    dtype = net.dtype
    t_total = n_steps + prog.pad_total
    n_b = len(samples)
    ptrs = np.empty((n_b, n_steps + 1), np.int64)
    idx_parts, val_parts, offs = [], [], [0]
    for bi, smp in enumerate(samples):
        if isinstance(smp, np.ndarray) and smp.dtype.names is not None:
            if sensor_size is None or dt is None:
                raise EventNetworkError(f"sample {bi} is a structured event array: pass sensor_size and dt")
            smp = bin_events(smp, sensor_size, dt, t_start=t_start, n_steps=n_steps)
        ptr, idx, val = _prepare(smp, 0, n_steps, net.n_in, dtype, f"sample {bi}")
        ptrs[bi] = ptr
        idx_parts.append(idx)
        val_parts.append(val)
        offs.append(offs[-1] + len(idx))
    ev_idx = np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int64)
    ev_val = np.concatenate(val_parts) if val_parts else np.zeros(0, dtype)
    thr = stop_rule.array(t_total) if stop_rule is not None else np.zeros(1)
    if stop_rule is not None and prog.n_out < 2:
        raise EventNetworkError("a stop rule needs at least two outputs (top-1 vs top-2 gap)")
    out = np.zeros((n_b, t_total, prog.n_out), dtype)  # [B, T, C]
    steps = np.zeros(n_b, np.int64)
    n_rec = sum(r[2] for r in prog.rec)
    rec = np.zeros((n_b, t_total, n_rec) if record else (n_b, 1, 1), np.uint8)  # [B, T, R]
    cnt = np.zeros((n_b, len(prog.iops), N_COUNTERS), np.int64)
    n_neur = len(prog.vinit)
    vfinal = np.zeros((n_b, n_neur) if record else (1, 1), dtype)
    sfinal = np.zeros((n_b, n_neur) if record else (1, 1), dtype)
    afinal = np.zeros((n_b, n_neur) if record else (1, 1), dtype)
    args = (prog.iops, prog.fops, prog.w, prog.b, prog.d, prog.beta, prog.gain, prog.vinit, prog.lay, ptrs,
            ev_idx, ev_val, np.asarray(offs, np.int64))
    rest = (0, n_steps, thr, stop_rule is not None, out, steps, rec, int(record), cnt, vfinal, sfinal, afinal)
    if n_b == 1:  # one sample: no thread pool
        run_sample(*args, 0, *rest)
    elif n_b > 1:
        run_batch(*args, *rest)
    _check_violations(cnt)
    syn, upd, dec = _stage_counts(net, cnt)
    out_t = out.transpose(1, 0, 2).reshape(t_total, n_b, *net.out_shape)  # [B, T, C] -> [T, B, *out_shape]
    spikes = v_final = s_final = aux_final = None
    if record:
        spikes, v_final, s_final, aux_final = {}, {}, {}, {}
        pads = {name: int(prog.iops[op, C_PAD]) for name, op, _, _ in prog.stages}
        for name, off, n, shape in prog.rec:
            t_layer = n_steps + pads[name]  # a layer before a TimePad runs only n_steps + its pads
            r = rec[:, :t_layer, off:off + n]
            spikes[name] = np.moveaxis(r, 0, 1).reshape(t_layer, n_b, *shape)  # [B, T, N] -> [T, B, *shape]
        for name, op, neu, _ in prog.stages:
            if neu is None:
                continue
            noff = int(prog.iops[op, C_NOFF])
            v_final[name] = vfinal[:, noff:noff + neu.n].reshape(n_b, *neu.shape)  # [B, *shape]
            s_final[name] = sfinal[:, noff:noff + neu.n].reshape(n_b, *neu.shape)
            if int(prog.iops[op, C_MODEL]) != _M_LIF:
                aux_final[name] = afinal[:, noff:noff + neu.n].reshape(n_b, *neu.shape)
    return RunResult(out_t, steps, syn, upd, dec, net.stage_names, spikes, v_final, s_final,
                     mac_synops=_stage_macs(net, cnt), aux_final=aux_final)


def _check_violations(cnt: np.ndarray) -> None:
    bad = int(cnt[..., 3].sum())
    if bad:
        raise RuntimeError(f"event path invariant broken: {bad} lazily replayed step(s) reached threshold "
                           f"(a neuron crossed without input and was not flagged); please report this network")


