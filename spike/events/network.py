r"""Event-driven inference of feed-forward spiking networks on the CPU (numpy + numba, no torch).

A network is a tuple of plain-array layers (:class:`Dense` -- with optional integer synaptic delays --,
:class:`Conv`, :class:`Pool`, :class:`Neurons`, :class:`TimePad`) inside an :class:`EventNetwork`,
usually made from a trained torch model by :func:`spike.inference.export.export_event_network`.

**Semantics** are those of the dense, clock-driven path (``spike.synapses.Sequential`` in ``eval()``
mode on binned inputs ``[T, B, ...]``): step ``t`` of every layer sees the input bin ``t``, and a
LIF neuron follows :func:`spike.neurons.lif.lif_step`

.. math::
    h_t = R\big(v_\text{rest} + \beta (v_{t-1} - v_\text{rest}),\ s_{t-1}\big)^{\text{deferred}}
          + g\,x_t,\qquad s_t = H(h_t - v_\text{th}),\qquad v_t = R(h_t, s_t)^{\text{immediate}}.

**Event-driven evaluation.** Only the work that changes something is done:

* an incoming event ``(i, value)`` adds ``value * W[:, i]`` (its weight column, or the kernel
  footprint of a convolution) to the targets' input; with a delay ``d`` the addition goes to the slot
  ``(t + d) mod (D + 1)`` of a per-layer ring buffer;
* only neurons that received input at ``t`` are updated and checked for threshold, plus the few whose
  *input-free* next step would reach threshold (flagged after their last update: e.g. a subtract
  reset that leaves ``v >= v_th``, or a deferred reset); layers with a bias, and the readout layer,
  are updated every step;
* decay is applied lazily: a neuron touched at ``t`` after its last update at ``u`` first replays
  the ``t - u - 1`` input-free steps;
* a layer all of whose neurons are touched at consecutive steps (full fan-out, bias) takes a
  branch-free vectorised update; a full-fan-out scatter adds four weight rows per pass (more loads
  in flight, the same order of additions).

**Exactness.** The lazy decay replays the skipped steps by repeated multiplication (stopping early
once the membrane reaches its fixed point ``v_rest``), never by ``beta ** k``: ``x * b**k`` and ``k``
rounded multiplications by ``b`` differ in the last bits, and a last-bit difference next to the
threshold flips a spike. Every neuron operation is done in the network's dtype in the order of
:func:`~spike.neurons.lif.lif_step` (or a value-identical form of it), so neuron dynamics are
bit-identical; within a step the synaptic terms are always added in ascending source order, so the
batch and the streaming entry points agree bit for bit. The one thing that cannot
be replayed is the order in which the dense path's matrix product adds the synaptic terms (blocked
BLAS / oneDNN, FMA, thread-dependent): spikes are therefore *bit-identical* whenever the synaptic sums
are exact (weights on a dyadic grid, e.g. quantised models; tested), and in ``float64`` the sums differ
by ~1e-16 relative, so spikes agree unless a membrane lands within ~1e-15 of threshold (tested exact
on random and on trained networks). With arbitrary ``float32`` weights an input current may differ in
its last bit (~1e-7 relative) and a neuron sitting that close to threshold can flip.

**Input convention.** One sample is a list of binned events ``(t_bin, channel[, count])``: channel is
the flat index into one step of the dense input (for a camera ``[P, H, W]``:
``channel = p*H*W + y*W + x``), ``count`` (default 1) the number of events of that channel in that bin
(the dense input value). Duplicate ``(t_bin, channel)`` pairs are summed. :func:`bin_events` makes this
from tonic's structured arrays with bins ``[t_start + k*dt, t_start + (k+1)*dt)``, the same windows as
``to_frame(..., time_window=dt, start_time=t_start)``.

Entry points: :func:`run` (a batch of samples, in parallel over samples with ``prange``) and
:class:`EventStream` (one sample, events fed as they arrive, output readable at any moment).
Both accept a :class:`StopRule` (per-step thresholds on the top-1/top-2 gap of the cumulative output)
and count synaptic operations and neuron updates per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence, Union

import numpy as np
from numba import njit, prange

from spike.core.events import validate_events

__all__ = ["Dense", "Conv", "Pool", "Neurons", "TimePad", "Layer", "EventNetwork", "StopRule",
           "BinnedEvents", "RunResult", "EventStream", "EventNetworkError", "bin_events", "run",
           "dense_ops", "to_dense"]


class EventNetworkError(ValueError):
    """An event network, its input or a stream call is malformed (names the layer / event)."""


# ------------------------------------------------------------------------------------------------
# network description: frozen dataclasses of plain arrays
# ------------------------------------------------------------------------------------------------

RESETS = ("subtract", "to_value", "none")
OUTPUTS = ("spikes", "membrane")


def _pair(v, what: str) -> tuple[int, int]:
    t = (int(v), int(v)) if np.isscalar(v) else tuple(int(a) for a in v)
    if len(t) != 2:
        raise EventNetworkError(f"{what} must be an int or a pair, got {v!r}")
    return t  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class Dense:
    """Fully connected synapses ``y_t = b + W x_{t - D}`` (``D``: per-synapse integer delays or 0).

    Args:
        weight: ``[n_out, n_in]`` (torch ``nn.Linear`` layout).
        bias: optional ``[n_out]``.
        delay: optional ``[n_out, n_in]`` non-negative integer delays in steps (``DelayedLinear``).
        name: layer name (used in errors and results).
    """

    weight: np.ndarray
    bias: np.ndarray | None = None
    delay: np.ndarray | None = None
    name: str = "dense"

    def __post_init__(self):
        w = np.asarray(self.weight)
        if w.ndim != 2 or w.dtype.kind != "f" or not np.isfinite(w).all():
            raise EventNetworkError(f"{self.name}: weight must be a finite float [n_out, n_in] array, "
                                    f"got {w.dtype} {w.shape}")
        if self.bias is not None and np.shape(self.bias) != (w.shape[0],):
            raise EventNetworkError(f"{self.name}: bias must have shape ({w.shape[0]},), got {np.shape(self.bias)}")
        if self.delay is not None:
            d = np.asarray(self.delay)
            if d.shape != w.shape or d.dtype.kind not in "iu" or (d.size and d.min() < 0):
                raise EventNetworkError(f"{self.name}: delay must be a non-negative integer array of shape "
                                        f"{w.shape}, got {d.dtype} {d.shape}")

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[0])

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.n_out,)

    @property
    def max_delay(self) -> int:
        return int(np.max(self.delay)) if self.delay is not None and self.delay.size else 0


@dataclass(frozen=True, eq=False)
class Conv:
    """2-D convolution (cross-correlation, zero padding) over one step ``[C, H, W]``.

    Args:
        weight: ``[C_out, C_in // groups, kh, kw]`` (torch layout).
        in_shape: ``(C_in, H, W)``.
        bias: optional ``[C_out]``.
        stride, dilation: ints or pairs.
        padding: int, pair ``(ph, pw)`` (symmetric) or ``(top, bottom, left, right)``.
        groups: number of groups.
    """

    weight: np.ndarray
    in_shape: tuple[int, int, int]
    bias: np.ndarray | None = None
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, ...] = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    name: str = "conv"

    def __post_init__(self):
        w = np.asarray(self.weight)
        if w.ndim != 4 or w.dtype.kind != "f" or not np.isfinite(w).all():
            raise EventNetworkError(f"{self.name}: weight must be a finite float [C_out, C_in/groups, kh, kw] "
                                    f"array, got {w.dtype} {w.shape}")
        c_in = self.in_shape[0]
        if len(self.in_shape) != 3 or self.groups < 1 or c_in % self.groups or w.shape[0] % self.groups \
                or w.shape[1] * self.groups != c_in:
            raise EventNetworkError(f"{self.name}: weight {w.shape} does not fit in_shape {self.in_shape} with "
                                    f"groups={self.groups}")
        if self.bias is not None and np.shape(self.bias) != (w.shape[0],):
            raise EventNetworkError(f"{self.name}: bias must have shape ({w.shape[0]},)")
        ho, wo = self.out_shape[1:]
        if ho < 1 or wo < 1 or min(self.stride_hw + self.dilation_hw) < 1 or min(self.pad4) < 0:
            raise EventNetworkError(f"{self.name}: empty output {self.out_shape} or bad stride/padding/dilation")

    @property
    def stride_hw(self) -> tuple[int, int]:
        return _pair(self.stride, f"{self.name}: stride")

    @property
    def dilation_hw(self) -> tuple[int, int]:
        return _pair(self.dilation, f"{self.name}: dilation")

    @property
    def pad4(self) -> tuple[int, int, int, int]:
        """``(top, bottom, left, right)``."""
        p = self.padding
        if np.isscalar(p):
            return (int(p),) * 4  # type: ignore[return-value]
        p = tuple(int(a) for a in p)
        if len(p) == 2:
            return (p[0], p[0], p[1], p[1])
        if len(p) == 4:
            return p  # type: ignore[return-value]
        raise EventNetworkError(f"{self.name}: padding must be an int, a pair or 4 values, got {self.padding!r}")

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def out_shape(self) -> tuple[int, int, int]:
        _, h, w = self.in_shape
        co, _, kh, kw = self.weight.shape
        (sh, sw), (dh, dw), (pt, pb, pl, pr) = self.stride_hw, self.dilation_hw, self.pad4
        return (int(co), (h + pt + pb - dh * (kh - 1) - 1) // sh + 1, (w + pl + pr - dw * (kw - 1) - 1) // sw + 1)

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))


@dataclass(frozen=True, eq=False)
class Pool:
    """Max or average pooling over one step ``[C, H, W]`` (no padding, floor mode).

    Average pooling emits ``sum / divisor`` (``divisor = kh * kw`` unless given), like
    ``torch.nn.AvgPool2d``; max pooling assumes non-negative inputs (spikes, counts).
    """

    kind: str
    in_shape: tuple[int, int, int]
    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    divisor: int | None = None
    name: str = "pool"

    def __post_init__(self):
        if self.kind not in ("max", "avg"):
            raise EventNetworkError(f"{self.name}: pool kind must be 'max' or 'avg', got {self.kind!r}")
        if len(self.in_shape) != 3 or min(self.out_shape) < 1:
            raise EventNetworkError(f"{self.name}: pooling {self.kernel} does not fit in_shape {self.in_shape}")

    @property
    def kernel_hw(self) -> tuple[int, int]:
        return _pair(self.kernel, f"{self.name}: kernel")

    @property
    def stride_hw(self) -> tuple[int, int]:
        return _pair(self.kernel if self.stride is None else self.stride, f"{self.name}: stride")

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def out_shape(self) -> tuple[int, int, int]:
        c, h, w = self.in_shape
        (kh, kw), (sh, sw) = self.kernel_hw, self.stride_hw
        return (c, (h - kh) // sh + 1, (w - kw) // sw + 1)

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))


@dataclass(frozen=True, eq=False)
class Neurons:
    """A LIF/IF/LI population with discrete coefficients (see :func:`spike.neurons.lif.discretize`).

    Args:
        shape: feature shape of one step (``(N,)`` or ``(C, H, W)``).
        beta, gain: per-step decay and input gain, scalars or ``[N]`` arrays (flattened feature order).
        v_th, v_reset, v_rest: threshold, reset value, resting potential.
        reset: ``"subtract"`` | ``"to_value"`` | ``"none"``.
        deferred: ``reset_timing="deferred"`` (snnTorch order).
        output: ``"spikes"`` or ``"membrane"`` (a non-spiking LI readout; only as the last layer).
    """

    shape: tuple[int, ...]
    beta: np.ndarray | float = 1.0
    gain: np.ndarray | float = 1.0
    v_th: float = 1.0
    v_reset: float = 0.0
    v_rest: float = 0.0
    reset: str = "subtract"
    deferred: bool = False
    output: str = "spikes"
    name: str = "neurons"

    def __post_init__(self):
        if self.reset not in RESETS:
            raise EventNetworkError(f"{self.name}: reset must be one of {RESETS}, got {self.reset!r}")
        if self.output not in OUTPUTS:
            raise EventNetworkError(f"{self.name}: output must be one of {OUTPUTS}, got {self.output!r}")
        for what in ("beta", "gain"):
            a = np.asarray(getattr(self, what))
            if a.size not in (1, self.n) or not np.isfinite(a).all():
                raise EventNetworkError(f"{self.name}: {what} must be finite, a scalar or [{self.n}], got {a.shape}")
        if not all(math.isfinite(v) for v in (self.v_th, self.v_reset, self.v_rest)):
            raise EventNetworkError(f"{self.name}: v_th, v_reset, v_rest must be finite")

    @property
    def n(self) -> int:
        return int(np.prod(self.shape))

    n_in = n_out = n

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.shape)


@dataclass(frozen=True)
class TimePad:
    """Append ``n`` silent steps to the sequence (``spike.synapses.delays.TimePad``): layers before it
    stop at the end of the input, layers after it run ``n`` steps longer."""

    n: int
    name: str = "pad"


Layer = Union[Dense, Conv, Pool, Neurons, TimePad]

# op kinds, synapse kinds, output modes, resets (shared with the kernels)
_POOL_MAX, _POOL_AVG, _STAGE = 0, 1, 2
_SYN_DENSE, _SYN_DELAY, _SYN_CONV, _SYN_IDENT = 0, 1, 2, 3
_OUT_SPIKES, _OUT_MEMBRANE, _OUT_CURRENT = 0, 1, 2
_R_SUB, _R_VAL, _R_NONE = 0, 1, 2
# op table columns
(C_KIND, C_SYN, C_NIN, C_NOUT, C_WOFF, C_BOFF, C_DOFF, C_DEPTH, C_ROFF, C_RSOFF, C_NOFF, C_POFF, C_OUT,
 C_RESET, C_DEFER, C_ALL, C_LAST, C_RECOFF, C_PAD, C_CI, C_HI, C_WI, C_CO, C_HO, C_WO, C_KH, C_KW, C_SH,
 C_SW, C_PT, C_PL, C_DH, C_DW, C_GROUPS) = range(34)
N_ICOLS = 34
F_VTH, F_VRESET, F_VREST, F_DIV, F_ONE, F_ZERO = range(6)
N_FCOLS = 6
# layout of the per-sample state (offsets into the float array `fs` and the int array `ist`)
(L_V, L_S, L_RING, L_PV, L_EVV0, L_EVV1, L_LAST, L_UST, L_RMARK, L_RTCH, L_RTN, L_RANY, L_PEND, L_PENDN,
 L_EVI0, L_EVI1, L_PMARK, L_PLIST, L_STAMP, L_FSIZE, L_ISIZE, L_NOPS, L_FLAG, L_FULL) = range(24)
N_LAY = 24


class _Program(NamedTuple):
    iops: np.ndarray  # [n_ops, N_ICOLS] int64
    fops: np.ndarray  # [n_ops, N_FCOLS] dtype
    w: np.ndarray  # all weights, dtype
    b: np.ndarray  # all biases, dtype
    d: np.ndarray  # all delays, int64
    beta: np.ndarray  # per-neuron decay, dtype
    gain: np.ndarray  # per-neuron gain, dtype
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
    (LI) layer may only be last.

    Args:
        input_shape: shape of one input step (e.g. ``(2, 34, 34)``); channels index it flat.
        layers: the layers in order.
        dtype: ``float32`` or ``float64``; all state and arithmetic use it.
    """

    input_shape: tuple[int, ...]
    layers: tuple
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))
    _prog: _Program = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        dt = np.dtype(self.dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise EventNetworkError(f"dtype must be float32 or float64, got {dt}")
        object.__setattr__(self, "dtype", dt)
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "_prog", _compile(self))

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


def _compile(net: EventNetwork) -> _Program:
    """Validate the chain and pack it into flat arrays for the kernels."""
    dt = net.dtype
    layers = net.layers
    if not layers:
        raise EventNetworkError("the network has no layers")
    for i, layer in enumerate(layers):
        if not isinstance(layer, (Dense, Conv, Pool, Neurons, TimePad)):
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
        row[C_BOFF] = row[C_DOFF] = row[C_NOFF] = row[C_RECOFF] = -1
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
            if isinstance(nxt, Neurons):
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
            row[C_WOFF] = w_off
            ws.append(wt.ravel())
            w_off += wt.size
            if syn.delay is not None and syn.max_delay > 0:
                row[C_SYN] = _SYN_DELAY
                depth = syn.max_delay + 1
                row[C_DOFF] = d_off
                dd = np.ascontiguousarray(np.asarray(syn.delay, np.int64).T).ravel()  # [n_in, n_out]
                ds.append(dd)
                d_off += dd.size
            else:
                row[C_SYN] = _SYN_DENSE
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
            row[C_DEFER] = int(neu.deferred)
            row[C_NOFF] = n_off
            row[C_POFF] = p_off
            betas.append(np.broadcast_to(np.asarray(neu.beta, dt).ravel(), (n,)))
            gains.append(np.broadcast_to(np.asarray(neu.gain, dt).ravel(), (n,)))
            vinit.append(np.full(n, neu.v_rest, dt))
            p_off += n
            n_off += n
            frow[F_VTH], frow[F_VRESET], frow[F_VREST] = neu.v_th, neu.v_reset, neu.v_rest
            if neu.output == "spikes":
                row[C_RECOFF] = rec_off
                rec.append((neu.name, rec_off, n, tuple(neu.shape)))
                rec_off += n
        row[C_ALL] = int(row[C_BOFF] >= 0 or (last and row[C_OUT] != _OUT_SPIKES))
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
                    (L_EVV1, max_n), (L_FLAG, max_n)):
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

    return _Program(iops, fops, cat(ws, dt), cat(bs, dt), cat(ds, np.int64), cat(betas, dt), cat(gains, dt),
                    cat(vinit, dt), lay, tuple(stages), tuple(rec), int(iops[-1, C_NOUT]), pad)


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


# ------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------------
# kernels
# ------------------------------------------------------------------------------------------------


@njit(cache=True)
def _init_state(prog_lay, vinit, fs, ist):  # pragma: no cover - numba
    fs[:] = 0
    ist[:] = 0
    nn = len(vinit)
    for q in range(nn):
        fs[prog_lay[L_V] + q] = vinit[q]
        ist[prog_lay[L_LAST] + q] = -1
        ist[prog_lay[L_UST] + q] = -1
    for q in range(prog_lay[L_RTCH] - prog_lay[L_RMARK]):
        ist[prog_lay[L_RMARK] + q] = -1
    for q in range(prog_lay[L_PLIST] - prog_lay[L_PMARK]):
        ist[prog_lay[L_PMARK] + q] = -1
    for q in range(prog_lay[L_NOPS]):
        ist[prog_lay[L_FULL] + q] = -1


@njit(cache=True)
def _leak(vv, b, vrest, vrest_zero):  # pragma: no cover - numba
    if vrest_zero:
        return b * vv
    return vrest + b * (vv - vrest)


@njit(cache=True)
def _rst(h, sp, reset, vth, vreset):  # pragma: no cover - numba
    if sp == 0 or reset == _R_NONE:
        return h
    if reset == _R_SUB:
        return h - vth
    return vreset


@njit(cache=True)
def _pool(iops, fops, op, lay, fs, ist, ei, ev, ne, eo_i, eo_v):  # pragma: no cover - numba
    """Max / average pooling of the ``ne`` events at ``(ei, ev)``; writes the pooled events at
    ``(eo_i, eo_v)`` and returns their number."""
    kind = iops[op, C_KIND]
    o_pv, o_pmark, o_plist = lay[L_PV], lay[L_PMARK], lay[L_PLIST]
    hi, wi = iops[op, C_HI], iops[op, C_WI]
    ho, wo = iops[op, C_HO], iops[op, C_WO]
    kh, kw, sh, sw = iops[op, C_KH], iops[op, C_KW], iops[op, C_SH], iops[op, C_SW]
    stamp = ist[lay[L_STAMP]] + 1  # marks "touched by this call" without clearing
    ist[lay[L_STAMP]] = stamp
    npool = 0
    for k in range(ne):
        i = ist[ei + k]
        val = fs[ev + k]
        c = i // (hi * wi)
        y = (i // wi) % hi
        x = i % wi
        oy_lo = max(0, (y - kh + sh) // sh)  # windows oy*sh <= y < oy*sh + kh
        oy_hi = min(ho - 1, y // sh)
        ox_lo = max(0, (x - kw + sw) // sw)
        ox_hi = min(wo - 1, x // sw)
        for oy in range(oy_lo, oy_hi + 1):
            for ox in range(ox_lo, ox_hi + 1):
                j = (c * ho + oy) * wo + ox
                if ist[o_pmark + j] != stamp:
                    ist[o_pmark + j] = stamp
                    ist[o_plist + npool] = j
                    npool += 1
                    fs[o_pv + j] = val
                elif kind == _POOL_MAX:
                    if val > fs[o_pv + j]:
                        fs[o_pv + j] = val
                else:
                    fs[o_pv + j] += val
    div = fops[op, F_DIV]
    for k in range(npool):
        j = ist[o_plist + k]
        ist[eo_i + k] = j
        fs[eo_v + k] = fs[o_pv + j] if kind == _POOL_MAX else fs[o_pv + j] / div
    return npool


@njit(cache=True)
def _scatter(iops, fops, op, W, Dl, lay, fs, ist, ei, ev, ne, t):  # pragma: no cover - numba
    """Add every event's weights to the ring buffer of stage ``op``; returns the synaptic operations."""
    syn = iops[op, C_SYN]
    n = iops[op, C_NOUT]
    depth = iops[op, C_DEPTH]
    ring = lay[L_RING] + iops[op, C_ROFF]
    rany = lay[L_RANY] + iops[op, C_RSOFF]
    rtn = lay[L_RTN] + iops[op, C_RSOFF]
    woff = iops[op, C_WOFF]
    one = fops[op, F_ONE]
    slot = t % depth
    mk = lay[L_RMARK] + iops[op, C_ROFF] + slot * n  # per-neuron "touched at t" marks of this slot
    tch = lay[L_RTCH] + iops[op, C_ROFF] + slot * n  # the touched list
    if syn == _SYN_DENSE:
        if ne > 0:
            ist[rany] = 1  # full fan-out: every neuron is touched
        dst = fs[ring:ring + n]
        k = 0
        while k + 3 < ne:  # four rows per pass (more loads in flight), same order of additions
            a = W[woff + ist[ei + k] * n:woff + (ist[ei + k] + 1) * n]
            b = W[woff + ist[ei + k + 1] * n:woff + (ist[ei + k + 1] + 1) * n]
            c = W[woff + ist[ei + k + 2] * n:woff + (ist[ei + k + 2] + 1) * n]
            d = W[woff + ist[ei + k + 3] * n:woff + (ist[ei + k + 3] + 1) * n]
            va, vb, vc, vd = fs[ev + k], fs[ev + k + 1], fs[ev + k + 2], fs[ev + k + 3]
            if va == one and vb == one and vc == one and vd == one:
                for j in range(n):
                    dst[j] = (((dst[j] + a[j]) + b[j]) + c[j]) + d[j]
            else:
                for j in range(n):
                    dst[j] = (((dst[j] + a[j] * va) + b[j] * vb) + c[j] * vc) + d[j] * vd
            k += 4
        while k < ne:
            src = W[woff + ist[ei + k] * n:woff + (ist[ei + k] + 1) * n]
            val = fs[ev + k]
            for j in range(n):
                dst[j] += src[j] * val
            k += 1
        return ne * n
    if syn == _SYN_DELAY:
        doff = iops[op, C_DOFF]
        for k in range(ne):
            i = ist[ei + k]
            val = fs[ev + k]
            for j in range(n):
                sl = (t + Dl[doff + i * n + j]) % depth
                fs[ring + sl * n + j] += W[woff + i * n + j] * val
                ist[rany + sl] = 1
        return ne * n
    if syn == _SYN_IDENT:
        base = ring + slot * n
        for k in range(ne):
            j = ist[ei + k]
            fs[base + j] += fs[ev + k]
            if ist[mk + j] != t:
                ist[mk + j] = t
                ist[tch + ist[rtn + slot]] = j
                ist[rtn + slot] += 1
        return ne
    # convolution: an input spike at (c, y, x) reaches (co, oy, ox) with oy*sh = y + pt - ky*dh
    hi, wi = iops[op, C_HI], iops[op, C_WI]
    ho, wo = iops[op, C_HO], iops[op, C_WO]
    kh, kw, sh, sw = iops[op, C_KH], iops[op, C_KW], iops[op, C_SH], iops[op, C_SW]
    pt, pl, dh, dw = iops[op, C_PT], iops[op, C_PL], iops[op, C_DH], iops[op, C_DW]
    groups = iops[op, C_GROUPS]
    cig = iops[op, C_CI] // groups
    cog = iops[op, C_CO] // groups
    hw = ho * wo
    base = ring + slot * n
    nsyn = 0
    for k in range(ne):
        i = ist[ei + k]
        val = fs[ev + k]
        c = i // (hi * wi)
        y = (i // wi) % hi
        x = i % wi
        g = c // cig
        for ky in range(kh):
            ny = y + pt - ky * dh
            if ny < 0 or ny % sh != 0:
                continue
            oy = ny // sh
            if oy >= ho:
                continue
            for kx in range(kw):
                nx = x + pl - kx * dw
                if nx < 0 or nx % sw != 0:
                    continue
                ox = nx // sw
                if ox >= wo:
                    continue
                wb = woff + ((c * kh + ky) * kw + kx) * cog  # weights [C_in, kh, kw, C_out/g]
                j0 = g * cog * hw + oy * wo + ox
                for q in range(cog):
                    j = j0 + q * hw
                    fs[base + j] += W[wb + q] * val
                    if ist[mk + j] != t:
                        ist[mk + j] = t
                        ist[tch + ist[rtn + slot]] = j
                        ist[rtn + slot] += 1
                nsyn += cog
    return nsyn


@njit(cache=True)
def _replay(vv, ss, lag, b, vth, vreset, vrest, vrest_zero, reset, deferred, one, zero):  # pragma: no cover
    """Apply up to ``lag`` input-free steps by repeated multiplication (bit-identical to the dense
    loop), stopping at the fixed point. Returns ``(v, s, steps done, threshold crossings)``; a
    crossing is impossible for a neuron that was not flagged."""
    done = 0
    viol = 0
    while lag > 0:
        lk = _leak(vv, b, vrest, vrest_zero)
        if deferred:
            h = _rst(lk, ss, reset, vth, vreset)
            sn = one if h - vth >= zero else zero
            nv = h
        else:
            h = lk
            sn = one if h - vth >= zero else zero
            nv = _rst(h, sn, reset, vth, vreset)
        done += 1
        if sn != zero:
            viol += 1
        if nv == vv and sn == ss:
            break  # fixed point (v_rest): the remaining steps change nothing
        vv = nv
        ss = sn
        lag -= 1
    return vv, ss, done, viol


@njit(cache=True)
def _neurons_all(iops, fops, op, Bv, beta, gain, lay, fs, ist, t, eo_i, eo_v, out, rec, do_rec,
                 cnt):  # pragma: no cover - numba
    """:func:`_neurons` when every neuron of the layer is updated at ``t`` and was at ``t - 1``
    (no lazy decay to replay): branch-free vectorisable passes, then a compaction of the spikes.

    ``last`` is not written: the layer's "all updated at" step (``L_FULL``) stands for it. The
    flags for the next step are only needed if that step may update a subset (no bias)."""
    n_ops = lay[L_NOPS]
    n = iops[op, C_NOUT]
    noff = iops[op, C_NOFF]
    poff = iops[op, C_POFF]
    boff = iops[op, C_BOFF]
    rbase = lay[L_RING] + iops[op, C_ROFF] + (t % iops[op, C_DEPTH]) * n
    reset = iops[op, C_RESET]
    deferred = iops[op, C_DEFER]
    need_flags = iops[op, C_ALL] == 0
    vth, vreset, vrest = fops[op, F_VTH], fops[op, F_VRESET], fops[op, F_VREST]
    zero, one = fops[op, F_ZERO], fops[op, F_ONE]
    v = fs[lay[L_V] + noff:lay[L_V] + noff + n]
    s = fs[lay[L_S] + noff:lay[L_S] + noff + n]
    ring = fs[rbase:rbase + n]
    flag = fs[lay[L_FLAG]:lay[L_FLAG] + n]
    b = beta[poff:poff + n]
    g = gain[poff:poff + n]
    if boff >= 0:
        bias = Bv[boff:boff + n]
        for j in range(n):
            ring[j] = ring[j] + bias[j]
    # the step, branch-free: leak = v_rest + b (v - v_rest) and R(h, s) = h (1 - s ra) - s rb are
    # value-identical to the reference's b*v (v_rest = 0) and h - s v_th | h (1 - s) + s v_reset | h
    ra = one if reset == _R_VAL else zero
    rb = vth if reset == _R_SUB else (-vreset if reset == _R_VAL else zero)
    if deferred:
        for j in range(n):
            sp = s[j]
            lk = (vrest + b[j] * (v[j] - vrest)) * (one - sp * ra) - sp * rb
            h = lk + g[j] * ring[j]
            ring[j] = zero
            v[j] = h
            s[j] = one if h - vth >= zero else zero
        if need_flags:
            for j in range(n):
                lk2 = (vrest + b[j] * (v[j] - vrest)) * (one - s[j] * ra) - s[j] * rb
                flag[j] = one if lk2 - vth >= zero else zero
    else:
        for j in range(n):
            h = (vrest + b[j] * (v[j] - vrest)) + g[j] * ring[j]
            ring[j] = zero
            sn = one if h - vth >= zero else zero
            v[j] = h * (one - sn * ra) - sn * rb
            s[j] = sn
        if need_flags:
            for j in range(n):
                lk2 = vrest + b[j] * (v[j] - vrest)
                flag[j] = one if lk2 - vth >= zero else zero
    # outputs: readout membrane, or the spikes compacted branch-free (write always, advance on a hit)
    outm = iops[op, C_OUT]
    is_last = iops[op, C_LAST]
    recoff = iops[op, C_RECOFF]
    nout_ev = 0
    if outm == _OUT_MEMBRANE:
        if is_last:
            for j in range(n):
                out[t, j] = v[j]
    else:
        spk = ist[eo_i:eo_i + n]
        for j in range(n):
            spk[nout_ev] = j
            nout_ev += s[j] != zero
        for k in range(nout_ev):
            j = spk[k]
            if is_last:
                out[t, j] = one
            else:
                fs[eo_v + k] = one
            if do_rec:
                rec[t, recoff + j] = 1
        if is_last:
            nout_ev = 0
    n_new_pend = 0
    if need_flags:
        pend_w = lay[L_PEND] + (1 - t % 2) * (lay[L_S] - lay[L_V]) + noff
        pend = ist[pend_w:pend_w + n]
        for j in range(n):
            pend[n_new_pend] = j
            n_new_pend += flag[j] != zero
    ist[lay[L_PENDN] + (1 - t % 2) * n_ops + op] = n_new_pend
    ist[lay[L_RTN] + iops[op, C_RSOFF] + t % iops[op, C_DEPTH]] = 0
    ist[lay[L_RANY] + iops[op, C_RSOFF] + t % iops[op, C_DEPTH]] = 0
    ist[lay[L_FULL] + op] = t
    cnt[op, 1] += n
    return nout_ev


@njit(cache=True)
def _neurons(iops, fops, op, Bv, beta, gain, lay, fs, ist, t, eo_i, eo_v, out, rec, do_rec, cnt):  # pragma: no cover
    """Update the neurons of stage ``op`` that received input at ``t`` (all of them for a bias or a
    dense readout) plus the flagged ones; write spikes at ``(eo_i, eo_v)``, return their number."""
    n_ops = lay[L_NOPS]
    n_tot = lay[L_S] - lay[L_V]
    o_v, o_s, o_last, o_ust = lay[L_V], lay[L_S], lay[L_LAST], lay[L_UST]
    n = iops[op, C_NOUT]
    depth = iops[op, C_DEPTH]
    slot = t % depth
    rbase = lay[L_RING] + iops[op, C_ROFF] + slot * n
    tch = lay[L_RTCH] + iops[op, C_ROFF] + slot * n
    rany = lay[L_RANY] + iops[op, C_RSOFF] + slot
    rtn = lay[L_RTN] + iops[op, C_RSOFF] + slot
    outm = iops[op, C_OUT]
    last = iops[op, C_LAST]
    boff = iops[op, C_BOFF]
    noff = iops[op, C_NOFF]
    poff = iops[op, C_POFF]
    reset = iops[op, C_RESET]
    deferred = iops[op, C_DEFER]
    recoff = iops[op, C_RECOFF]
    vth, vreset, vrest = fops[op, F_VTH], fops[op, F_VRESET], fops[op, F_VREST]
    zero, one = fops[op, F_ZERO], fops[op, F_ONE]
    vrest_zero = vrest == zero
    all_mode = iops[op, C_ALL] == 1 or ist[rany] == 1
    has_neu = noff >= 0
    if all_mode and has_neu and ist[lay[L_FULL] + op] == t - 1:
        return _neurons_all(iops, fops, op, Bv, beta, gain, lay, fs, ist, t, eo_i, eo_v, out, rec, do_rec, cnt)
    n_first = n if all_mode else ist[rtn]
    par = t % 2
    pend_r = lay[L_PEND] + par * n_tot + (noff if has_neu else 0)  # flagged for this step
    pend_w = lay[L_PEND] + (1 - par) * n_tot + (noff if has_neu else 0)  # flagged for the next
    n_pend = ist[lay[L_PENDN] + par * n_ops + op] if (has_neu and not all_mode) else 0
    n_new_pend = 0
    nout_ev = 0
    nupd = 0
    ndec = 0
    nviol = 0
    for k in range(n_first + n_pend):
        if k < n_first:
            j = k if all_mode else ist[tch + k]
        else:
            j = ist[pend_r + k - n_first]
        x = fs[rbase + j]
        fs[rbase + j] = zero
        if boff >= 0:
            x = x + Bv[boff + j]
        if not has_neu:
            out[t, j] = x  # a synapse ends the network: its current is the output
            continue
        q = noff + j
        if ist[o_ust + q] == t:
            continue  # touched and flagged: already updated
        ist[o_ust + q] = t
        b = beta[poff + j]
        gn = gain[poff + j]
        vv = fs[o_v + q]
        ss = fs[o_s + q]
        lag = t - max(ist[o_last + q], ist[lay[L_FULL] + op]) - 1  # last update of this neuron
        if lag > 0:  # lazy decay over the steps without input
            vv, ss, nd, nb = _replay(vv, ss, lag, b, vth, vreset, vrest, vrest_zero, reset, deferred, one, zero)
            ndec += nd
            nviol += nb
        # the step itself, in the order of spike.neurons.lif.lif_step
        lk = _leak(vv, b, vrest, vrest_zero)
        if deferred:
            h = _rst(lk, ss, reset, vth, vreset) + gn * x
            sn = one if h - vth >= zero else zero
            vv = h
        else:
            h = lk + gn * x
            sn = one if h - vth >= zero else zero
            vv = _rst(h, sn, reset, vth, vreset)
        ss = sn
        fs[o_v + q] = vv
        fs[o_s + q] = ss
        ist[o_last + q] = t
        nupd += 1
        if outm == _OUT_MEMBRANE:
            if last:
                out[t, j] = vv
        elif sn != zero:
            if last:
                out[t, j] = one
            else:
                ist[eo_i + nout_ev] = j
                fs[eo_v + nout_ev] = one
                nout_ev += 1
            if do_rec:
                rec[t, recoff + j] = 1
        # flag the neuron if its next input-free step reaches threshold
        lk = _leak(vv, b, vrest, vrest_zero)
        h = _rst(lk, ss, reset, vth, vreset) if deferred else lk
        if h - vth >= zero:
            ist[pend_w + n_new_pend] = j
            n_new_pend += 1
    if has_neu:
        ist[lay[L_PENDN] + (1 - par) * n_ops + op] = n_new_pend
        if all_mode:
            ist[lay[L_FULL] + op] = t  # every neuron is now up to date
    ist[rtn] = 0
    ist[rany] = 0
    cnt[op, 1] += nupd
    cnt[op, 2] += ndec
    cnt[op, 3] += nviol
    return nout_ev


@njit(cache=True)
def _run_range(iops, fops, W, Bv, Dl, beta, gain, lay, fs, ist, ev_ptr, ev_idx, ev_val, t0, t1, t_in_end,
               thr, use_stop, out, cum, rec, do_rec, cnt):  # pragma: no cover - numba
    """Advance one sample from step ``t0`` to ``t1`` (exclusive), events of step t in
    ``ev_idx/ev_val[ev_ptr[t - t0]:ev_ptr[t - t0 + 1]]``. Layers with ``C_PAD = p`` run while
    ``t < t_in_end + p``. Writes ``out[t]``, ``cum``, ``rec[t]``, ``cnt[op] += (synops, updates, decays,
    violations)``. Returns the first step not processed (``< t1`` if the stop rule fired)."""
    n_ops = lay[L_NOPS]
    n_out = out.shape[1]
    for t in range(t0, t1):
        ne = 0
        if t < t_in_end:  # input events of step t into buffer 0
            a = ev_ptr[t - t0]
            for k in range(a, ev_ptr[t - t0 + 1]):
                ist[lay[L_EVI0] + ne] = ev_idx[k]
                fs[lay[L_EVV0] + ne] = ev_val[k]
                ne += 1
        cb = 0
        for op in range(n_ops):
            if t >= t_in_end + iops[op, C_PAD]:
                ne = 0  # this layer has ended (a later TimePad extends only the layers after it)
                continue
            ei = lay[L_EVI0] if cb == 0 else lay[L_EVI1]
            ev = lay[L_EVV0] if cb == 0 else lay[L_EVV1]
            eo_i = lay[L_EVI1] if cb == 0 else lay[L_EVI0]
            eo_v = lay[L_EVV1] if cb == 0 else lay[L_EVV0]
            if iops[op, C_KIND] != _STAGE:
                ne = _pool(iops, fops, op, lay, fs, ist, ei, ev, ne, eo_i, eo_v)
            else:
                cnt[op, 0] += _scatter(iops, fops, op, W, Dl, lay, fs, ist, ei, ev, ne, t)
                ne = _neurons(iops, fops, op, Bv, beta, gain, lay, fs, ist, t, eo_i, eo_v, out, rec, do_rec, cnt)
            cb = 1 - cb
        # readout and stop rule
        top1 = -np.inf
        top2 = -np.inf
        for c in range(n_out):
            cum[c] += out[t, c]
            v64 = cum[c]
            if v64 > top1:
                top2 = top1
                top1 = v64
            elif v64 > top2:
                top2 = v64
        if use_stop and top1 - top2 > thr[t]:
            return t + 1
    return t1


@njit(cache=True)
def _settle(iops, fops, beta, lay, fs, ist, t_end, t_in_end):  # pragma: no cover - numba
    """Replay the input-free steps of every neuron up to its layer's last step (< t_end), so that
    the stored ``v, s`` are the state after the last step. Returns the number of violations."""
    viol = 0
    for op in range(lay[L_NOPS]):
        noff = iops[op, C_NOFF]
        if iops[op, C_KIND] != _STAGE or noff < 0:
            continue
        stop = min(t_end, t_in_end + iops[op, C_PAD]) - 1
        zero, one = fops[op, F_ZERO], fops[op, F_ONE]
        vth, vreset, vrest = fops[op, F_VTH], fops[op, F_VRESET], fops[op, F_VREST]
        poff = iops[op, C_POFF]
        full = ist[lay[L_FULL] + op]
        for j in range(iops[op, C_NOUT]):
            q = noff + j
            lag = stop - max(ist[lay[L_LAST] + q], full)
            if lag <= 0:
                continue
            vv, ss, _, nb = _replay(fs[lay[L_V] + q], fs[lay[L_S] + q], lag, beta[poff + j], vth, vreset, vrest,
                                    vrest == zero, iops[op, C_RESET], iops[op, C_DEFER], one, zero)
            viol += nb
            fs[lay[L_V] + q] = vv
            fs[lay[L_S] + q] = ss
            ist[lay[L_LAST] + q] = stop
    return viol


@njit(cache=True)
def _run_sample(iops, fops, W, Bv, Dl, beta, gain, vinit, lay, ptrs, ev_idx, ev_val, sample_ev_off, bi,
                t_first, n_in_steps, thr, use_stop, out, steps, rec, do_rec, cnt, vfinal, sfinal):  # pragma: no cover
    """Sample ``bi`` from rest: events ``ev_*[sample_ev_off[bi]:sample_ev_off[bi + 1]]`` indexed by
    ``ptrs[bi] [T + 1]``; writes ``out[bi] [T_total, C]``, ``steps[bi]``, ``cnt[bi]`` (and the
    records / final states when ``do_rec``)."""
    fs = np.empty(lay[L_FSIZE], fops.dtype)
    ist = np.empty(lay[L_ISIZE], np.int64)
    _init_state(lay, vinit, fs, ist)
    cum = np.zeros(out.shape[2], np.float64)
    eo = sample_ev_off[bi]
    eo2 = sample_ev_off[bi + 1]
    done = _run_range(iops, fops, W, Bv, Dl, beta, gain, lay, fs, ist, ptrs[bi], ev_idx[eo:eo2],
                      ev_val[eo:eo2], t_first, out.shape[1], n_in_steps, thr, use_stop, out[bi], cum,
                      rec[bi], do_rec, cnt[bi])
    steps[bi] = done
    if do_rec:
        cnt[bi, 0, 3] += _settle(iops, fops, beta, lay, fs, ist, done, n_in_steps)
        for q in range(len(vinit)):
            vfinal[bi, q] = fs[lay[L_V] + q]
            sfinal[bi, q] = fs[lay[L_S] + q]


@njit(cache=True, parallel=True)
def _run_batch(iops, fops, W, Bv, Dl, beta, gain, vinit, lay, ptrs, ev_idx, ev_val, sample_ev_off, t_first,
               n_in_steps, thr, use_stop, out, steps, rec, do_rec, cnt, vfinal, sfinal):  # pragma: no cover
    """Every sample from rest, in parallel over samples (``prange``)."""
    for bi in prange(out.shape[0]):
        _run_sample(iops, fops, W, Bv, Dl, beta, gain, vinit, lay, ptrs, ev_idx, ev_val, sample_ev_off, bi,
                    t_first, n_in_steps, thr, use_stop, out, steps, rec, do_rec, cnt, vfinal, sfinal)


# ------------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------------


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

    * ``out [T_total, B, *out_shape]``: the readout of every step (zeros after a sample stopped);
    * ``steps [B]``: steps processed (``T_total`` unless the stop rule fired);
    * ``synops, updates, decays [B, L]`` per stage (``layers``): weight additions performed (events x
      fan-out actually applied), neuron updates with a threshold check, lazily replayed decay steps;
    * ``record=True`` only: ``spikes``: layer -> ``[T_layer, B, *shape]`` uint8 (``T_layer = T`` +
      the TimePads before the layer); ``v_final`` / ``s_final``: layer -> ``[B, *shape]``, the state
      after each sample's last step.
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


def _stage_counts(net: EventNetwork, cnt: np.ndarray):
    ops = [s[1] for s in net._prog.stages]
    return cnt[:, ops, 0], cnt[:, ops, 1], cnt[:, ops, 2]


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
    cnt = np.zeros((n_b, len(prog.iops), 4), np.int64)
    n_neur = len(prog.vinit)
    vfinal = np.zeros((n_b, n_neur) if record else (1, 1), dtype)
    sfinal = np.zeros((n_b, n_neur) if record else (1, 1), dtype)
    args = (prog.iops, prog.fops, prog.w, prog.b, prog.d, prog.beta, prog.gain, prog.vinit, prog.lay, ptrs,
            ev_idx, ev_val, np.asarray(offs, np.int64))
    rest = (0, n_steps, thr, stop_rule is not None, out, steps, rec, int(record), cnt, vfinal, sfinal)
    if n_b == 1:  # one sample: no thread pool
        _run_sample(*args, 0, *rest)
    elif n_b > 1:
        _run_batch(*args, *rest)
    _check_violations(cnt)
    syn, upd, dec = _stage_counts(net, cnt)
    out_t = out.transpose(1, 0, 2).reshape(t_total, n_b, *net.out_shape)  # [B, T, C] -> [T, B, *out_shape]
    spikes = v_final = s_final = None
    if record:
        spikes, v_final, s_final = {}, {}, {}
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
    return RunResult(out_t, steps, syn, upd, dec, net.stage_names, spikes, v_final, s_final)


def _check_violations(cnt: np.ndarray) -> None:
    bad = int(cnt[..., 3].sum())
    if bad:
        raise RuntimeError(f"event path invariant broken: {bad} lazily replayed step(s) reached threshold "
                           f"(a neuron crossed without input and was not flagged); please report this network")


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
        _init_state(prog.lay, prog.vinit, self._fs, self._ist)
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
        """The readout of every processed step, ``[steps_done, *out_shape]`` (a copy)."""
        return self._out[:self._done].reshape(self._done, *self.net.out_shape).copy()

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
        done = _run_range(prog.iops, prog.fops, prog.w, prog.b, prog.d, prog.beta, prog.gain, prog.lay, self._fs,
                          self._ist, ptr, idx, v, self._done, t_end, t_in, thr, self._stop is not None,
                          self._out, self._cum, self._rec, 0, self._cnt)
        self._stopped = done < t_end
        self._done = done
