"""The program of an event network: its layers validated and packed into flat arrays (op table, weights,
per-sample state layout) that the kernels of :mod:`.kernels` read. The table columns and state offsets
below are the contract between :func:`compile_program` and the kernels."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from spike.events.network.layers import (NEURON_TYPES, RESETS, Conv, CubaNeurons, Dense, EventNetworkError,
                                         Neurons, Pool, TimePad)

__all__ = ["EventNetwork", "Program", "compile_program", "dense_ops"]

# op kinds, synapse kinds, output modes, resets (shared with the kernels)
_POOL_MAX, _POOL_AVG, _STAGE = 0, 1, 2
_SYN_DENSE, _SYN_DELAY, _SYN_CONV, _SYN_IDENT = 0, 1, 2, 3
_OUT_SPIKES, _OUT_MEMBRANE, _OUT_CURRENT = 0, 1, 2
_R_SUB, _R_VAL, _R_NONE = 0, 1, 2
# neuron models: LIF/IF/LI (lazy, event-driven updates), CUBA-LIF and SE-adLIF (every neuron every step)
_M_LIF, _M_CUBA, _M_ADLIF = 0, 1, 2
# op table columns. Int data (`Program.d`) per synapse: C_DOFF -> delays [n_in, n_out] (delayed dense);
# C_ZOFF -> the non-zero fan-out of every source [n_in] (dense) or of every tap [C_in, kh, kw] (conv):
# the synaptic operations one event costs (a pruned, zero weight is no synapse).
(C_KIND, C_SYN, C_NIN, C_NOUT, C_WOFF, C_BOFF, C_DOFF, C_DEPTH, C_ROFF, C_RSOFF, C_NOFF, C_POFF, C_OUT,
 C_RESET, C_DEFER, C_ALL, C_LAST, C_RECOFF, C_PAD, C_CI, C_HI, C_WI, C_CO, C_HO, C_WO, C_KH, C_KW, C_SH,
 C_SW, C_PT, C_PL, C_DH, C_DW, C_GROUPS, C_ZOFF, C_MODEL) = range(36)
N_ICOLS = 36
F_VTH, F_VRESET, F_VREST, F_DIV, F_ONE, F_ZERO = range(6)
N_FCOLS = 6
# layout of the per-sample state (offsets into the float array `fs` and the int array `ist`)
(L_V, L_S, L_RING, L_PV, L_EVV0, L_EVV1, L_LAST, L_UST, L_RMARK, L_RTCH, L_RTN, L_RANY, L_PEND, L_PENDN,
 L_EVI0, L_EVI1, L_PMARK, L_PLIST, L_STAMP, L_FSIZE, L_ISIZE, L_NOPS, L_FLAG, L_FULL, L_AUX) = range(25)
N_LAY = 25


class Program(NamedTuple):
    """An :class:`EventNetwork` packed for the kernels."""

    iops: np.ndarray  # [n_ops, N_ICOLS] int64
    fops: np.ndarray  # [n_ops, N_FCOLS] dtype
    w: np.ndarray  # all weights, dtype
    b: np.ndarray  # all biases, dtype
    d: np.ndarray  # int data of the synapses (delays, non-zero fan-outs), int64
    beta: np.ndarray  # per-neuron coefficients from C_POFF, dtype: LIF beta [N]; CUBA alpha, beta [2, N];
    #                   adLIF alpha, 1 - alpha, beta, 1 - beta, qa, qb [6, N]
    gain: np.ndarray  # per-neuron gain (LIF; zeros for the other models), the layout of `beta`, dtype
    vinit: np.ndarray  # [n_neurons] initial membrane (v_rest), dtype
    lay: np.ndarray  # [N_LAY] int64 state layout
    stages: tuple  # (name, op index, neurons or None, synapse layer or None)
    rec: tuple  # (name, offset, n) of recorded spiking layers
    n_out: int
    pad_total: int


@dataclass(frozen=True, eq=False)
class EventNetwork:
    """A feed-forward network as plain arrays, ready for :func:`run` and :class:`EventStream`.

    Structure: a chain of layers where every synapse (:class:`Dense`, :class:`Conv`) is followed by
    its :class:`Neurons` (a synapse may end the network: its output is then the input current),
    :class:`Pool` layers sit between a spiking layer and the next synapse, a :class:`Neurons` layer
    directly after the input or a pool receives the events as input current, and a ``"membrane"``
    (LI, CUBA-LI) layer may only be last. Neuron layers are :class:`Neurons` (LIF / IF / LI),
    :class:`CubaNeurons` (CUBA-LIF / CUBA-LI) and :class:`AdLIFNeurons` (SE-adLIF).

    Args:
        input_shape: shape of one input step (e.g. ``(2, 34, 34)``); channels index it flat.
        layers: the layers in order.
        dtype: ``float32`` or ``float64``; all state and arithmetic use it.
    """

    input_shape: tuple[int, ...]
    layers: tuple
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))
    _prog: Program = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        dt = np.dtype(self.dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise EventNetworkError(f"dtype must be float32 or float64, got {dt}")
        object.__setattr__(self, "dtype", dt)
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "_prog", compile_program(self))

    @property
    def n_in(self) -> int:
        return math.prod(self.input_shape)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.layers[-1].out_shape)

    @property
    def stage_names(self) -> tuple[str, ...]:
        """Names of the synapse+neuron stages, the keys of the per-layer counters."""
        return tuple(s[0] for s in self._prog.stages)

    @property
    def spiking_names(self) -> tuple[str, ...]:
        """Names of the spiking layers recorded by ``run(..., record=True)``."""
        return tuple(r[0] for r in self._prog.rec)

    @property
    def pad_total(self) -> int:
        return self._prog.pad_total


def compile_program(net: EventNetwork) -> Program:
    """Validate the chain and pack it into flat arrays for the kernels."""
    dt = net.dtype
    layers = net.layers
    if not layers:
        raise EventNetworkError("the network has no layers")
    for i, layer in enumerate(layers):
        if not isinstance(layer, (Dense, Conv, Pool, TimePad) + NEURON_TYPES):
            raise EventNetworkError(f"layer {i} ({type(layer).__name__}) is not an event-network layer")
    if isinstance(layers[-1], (Pool, TimePad)):
        raise EventNetworkError(f"the network must end with a neuron layer or a synapse, not "
                                f"{type(layers[-1]).__name__} {layers[-1].name!r}")
    rows, frows = [], []
    ws, bs, ds, betas, gains, vinit = [], [], [], [], [], []
    stages, rec = [], []
    w_off = b_off = d_off = p_off = n_off = r_off = rs_off = rec_off = 0
    pad = 0
    size = net.n_in
    max_n = size
    spiking = True  # the input is events
    i = 0
    while i < len(layers):
        layer = layers[i]
        last = i == len(layers) - 1
        if isinstance(layer, TimePad):
            if isinstance(layer.n, bool) or int(layer.n) != layer.n or layer.n < 0:
                raise EventNetworkError(f"{layer.name}: TimePad n must be an integer >= 0")
            pad += int(layer.n)
            i += 1
            continue
        if layer.n_in != size:
            raise EventNetworkError(f"{layer.name}: expects {layer.n_in} inputs per step but the previous layer "
                                    f"gives {size}")
        if not spiking:
            raise EventNetworkError(f"{layer.name}: its input is a membrane (LI) output, not events; a "
                                    f"'membrane' layer must be the last")
        row = np.zeros(N_ICOLS, np.int64)
        frow = np.zeros(N_FCOLS, dt)
        frow[F_ONE], frow[F_ZERO] = 1, 0
        row[C_PAD] = pad
        row[C_NIN] = size
        row[C_BOFF] = row[C_DOFF] = row[C_NOFF] = row[C_RECOFF] = row[C_ZOFF] = -1
        if isinstance(layer, Pool):
            row[C_KIND] = _POOL_MAX if layer.kind == "max" else _POOL_AVG
            (row[C_CI], row[C_HI], row[C_WI]) = layer.in_shape
            (row[C_CO], row[C_HO], row[C_WO]) = layer.out_shape
            (row[C_KH], row[C_KW]), (row[C_SH], row[C_SW]) = layer.kernel_hw, layer.stride_hw
            div = layer.divisor if layer.divisor is not None else layer.kernel_hw[0] * layer.kernel_hw[1]
            frow[F_DIV] = div
            row[C_NOUT] = layer.n_out
            size = layer.n_out
            rows.append(row)
            frows.append(frow)
            max_n = max(max_n, size)
            i += 1
            continue
        # a stage: synapse (or identity) + neurons (or none)
        row[C_KIND] = _STAGE
        syn, neu = None, None
        if isinstance(layer, (Dense, Conv)):
            syn = layer
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(nxt, NEURON_TYPES):
                neu = nxt
                i += 2
            elif nxt is None:
                i += 1
            else:
                raise EventNetworkError(
                    f"{layer.name}: a synapse must be followed by its neurons, got "
                    f"{type(nxt).__name__} {getattr(nxt, 'name', '')!r} (two synapse layers in a row have "
                    f"non-spike inputs; TimePad belongs before the synapse)")
        else:
            neu = layer
            i += 1
        n = syn.n_out if syn is not None else neu.n
        if neu is not None and neu.n != n:
            raise EventNetworkError(f"{neu.name}: has {neu.n} neurons but {syn.name} gives {n} outputs")
        last = i == len(layers)
        row[C_NOUT] = n
        depth = 1
        if syn is None:
            row[C_SYN] = _SYN_IDENT
        elif isinstance(syn, Dense):
            wt = np.ascontiguousarray(np.asarray(syn.weight, dt).T)  # [n_in, n_out]: a spike adds one row
            nz = wt != 0  # [n_in, n_out] synapses that exist (a pruned weight is no synapse)
            fan = np.count_nonzero(nz, axis=1).astype(np.int64)  # [n_in] non-zero fan-out per source
            row[C_ZOFF] = d_off
            ds.append(fan)
            d_off += fan.size
            delayed = syn.delay is not None and syn.max_delay > 0
            row[C_SYN] = _SYN_DELAY if delayed else _SYN_DENSE
            # full rows, also when pruned: adding a whole row vectorises, and beats a CSR scatter of the
            # non-zero weights down to ~0.5 % density (measured: 2312 -> 4096, 30 events per step)
            row[C_WOFF] = w_off
            ws.append(wt.ravel())
            w_off += wt.size
            if delayed:
                depth = syn.max_delay + 1
                row[C_DOFF] = d_off
                dd = np.ascontiguousarray(np.asarray(syn.delay, np.int64).T).ravel()  # [n_in, n_out]
                ds.append(dd)
                d_off += dd.size
        else:
            row[C_SYN] = _SYN_CONV
            w = np.asarray(syn.weight, dt)
            co, cig, kh, kw = w.shape
            g = syn.groups
            cog = co // g
            # [C_out, C_in/g, kh, kw] -> [C_in, kh, kw, C_out/g]: one input spike reads contiguous C_out/g runs
            wg = w.reshape(g, cog, cig, kh, kw).transpose(0, 2, 3, 4, 1).reshape(g * cig, kh, kw, cog)
            row[C_WOFF] = w_off
            ws.append(np.ascontiguousarray(wg).ravel())
            w_off += wg.size
            fan = np.count_nonzero(wg, axis=3).astype(np.int64).ravel()  # [C_in*kh*kw] non-zero weights per tap
            row[C_ZOFF] = d_off
            ds.append(fan)
            d_off += fan.size
            (row[C_CI], row[C_HI], row[C_WI]) = syn.in_shape
            (row[C_CO], row[C_HO], row[C_WO]) = syn.out_shape
            row[C_KH], row[C_KW] = kh, kw
            (row[C_SH], row[C_SW]), (row[C_DH], row[C_DW]) = syn.stride_hw, syn.dilation_hw
            pt, _, pl, _ = syn.pad4
            row[C_PT], row[C_PL] = pt, pl
            row[C_GROUPS] = g
        if syn is not None and syn.bias is not None:
            row[C_BOFF] = b_off
            bias = np.asarray(syn.bias, dt).ravel()
            if isinstance(syn, Conv):  # one bias per output channel -> one per neuron [C_out*Ho*Wo]
                bias = np.repeat(bias, n // len(bias))
            bs.append(bias)
            b_off += n
        row[C_DEPTH] = depth
        row[C_ROFF] = r_off
        r_off += depth * n
        row[C_RSOFF] = rs_off
        rs_off += depth
        row[C_LAST] = int(last)
        if neu is None:
            row[C_OUT] = _OUT_CURRENT
            spiking = False
        else:
            row[C_OUT] = _OUT_SPIKES if neu.output == "spikes" else _OUT_MEMBRANE
            spiking = neu.output == "spikes"
            row[C_RESET] = RESETS.index(neu.reset)
            row[C_DEFER] = int(getattr(neu, "deferred", False))
            row[C_NOFF] = n_off
            row[C_POFF] = p_off
            coefs = _coefficients(neu, n, dt)  # [k, N]
            row[C_MODEL] = _M_LIF if isinstance(neu, Neurons) else (_M_CUBA if isinstance(neu, CubaNeurons)
                                                                    else _M_ADLIF)
            betas.append(coefs.ravel())
            gains.append(np.broadcast_to(np.asarray(neu.gain, dt).ravel(), (n,)) if isinstance(neu, Neurons)
                         else np.zeros(coefs.size, dt))
            v_rest = getattr(neu, "v_rest", 0.0)
            vinit.append(np.full(n, v_rest, dt))
            p_off += coefs.size
            n_off += n
            frow[F_VTH], frow[F_VRESET], frow[F_VREST] = neu.v_th, neu.v_reset, v_rest
            if neu.output == "spikes":
                row[C_RECOFF] = rec_off
                rec.append((neu.name, rec_off, n, tuple(neu.shape)))
                rec_off += n
        # every neuron every step: a bias, a non-spiking readout, or a two-variable model (CUBA, adLIF)
        row[C_ALL] = int(row[C_BOFF] >= 0 or (last and row[C_OUT] != _OUT_SPIKES) or row[C_MODEL] != _M_LIF)
        stages.append(((neu or syn).name, len(rows), neu, syn))
        rows.append(row)
        frows.append(frow)
        size = n
        max_n = max(max_n, n)
    n_ops = len(rows)
    iops = np.stack(rows)
    fops = np.stack(frows)
    # per-sample state layout
    lay = np.zeros(N_LAY, np.int64)
    f = 0
    for key, sz in ((L_V, n_off), (L_S, n_off), (L_RING, r_off), (L_PV, max_n), (L_EVV0, max_n),
                    (L_EVV1, max_n), (L_FLAG, max_n), (L_AUX, n_off)):
        lay[key] = f
        f += sz
    lay[L_FSIZE] = f
    k = 0
    for key, sz in ((L_LAST, n_off), (L_UST, n_off), (L_RMARK, r_off), (L_RTCH, r_off), (L_RTN, rs_off),
                    (L_RANY, rs_off), (L_PEND, 2 * n_off), (L_PENDN, 2 * n_ops), (L_EVI0, max_n),
                    (L_EVI1, max_n), (L_PMARK, max_n), (L_PLIST, max_n), (L_STAMP, 1), (L_FULL, n_ops)):
        lay[key] = k
        k += sz
    lay[L_ISIZE] = k
    lay[L_NOPS] = n_ops

    def cat(parts, dtype):
        return np.ascontiguousarray(np.concatenate(parts).astype(dtype)) if parts else np.zeros(1, dtype)

    return Program(iops, fops, cat(ws, dt), cat(bs, dt), cat(ds, np.int64), cat(betas, dt), cat(gains, dt),
                    cat(vinit, dt), lay, tuple(stages), tuple(rec), int(iops[-1, C_NOUT]), pad)


def _coefficients(neu, n: int, dt: np.dtype) -> np.ndarray:
    """The per-neuron coefficient rows ``[k, N]`` of a neuron layer (the layout of ``Program.beta``).

    SE-adLIF's complements ``1 - alpha``, ``1 - beta`` are computed as torch computes
    ``1.0 - p.alpha``: in float64 and then rounded for a scalar (a Python float), in the network
    dtype for an array (a tensor)."""

    def row(c) -> np.ndarray:
        return np.broadcast_to(np.asarray(c, dt).ravel(), (n,))

    def complement(c) -> np.ndarray:
        a = np.asarray(c)
        return row(1.0 - float(a) if a.ndim == 0 else np.asarray(1, dt) - a.astype(dt))

    if isinstance(neu, Neurons):
        return np.stack([row(neu.beta)])
    if isinstance(neu, CubaNeurons):
        return np.stack([row(neu.alpha), row(neu.beta)])
    return np.stack([row(neu.alpha), complement(neu.alpha), row(neu.beta), complement(neu.beta), row(neu.qa),
                     row(neu.qb)])


def dense_ops(net: EventNetwork, n_steps: int) -> dict[str, tuple[int, int]]:
    """Operations of the dense, clock-driven path: stage name -> ``(MACs, neuron updates)`` for
    ``n_steps`` input steps (every synapse of every step, every neuron every step)."""
    out = {}
    for name, op, neu, syn in net._prog.stages:
        steps = n_steps + int(net._prog.iops[op, C_PAD])
        if isinstance(syn, Dense):
            macs = syn.n_in * syn.n_out
        elif isinstance(syn, Conv):
            co, cig, kh, kw = syn.weight.shape
            macs = co * cig * kh * kw * syn.out_shape[1] * syn.out_shape[2]
        else:
            macs = neu.n
        out[name] = (steps * macs, steps * (neu.n if neu is not None else 0))
    return out

