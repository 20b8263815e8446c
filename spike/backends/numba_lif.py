r"""Fused CPU LIF backend (registered as ``"numba"``): one numba loop forward, one loop backward.

The input ``x: [T, B, *features]`` is viewed as ``[T, M]`` with ``M = B * prod(features)``. Both
kernels split the ``M`` neurons into chunks (spread over ``torch.get_num_threads()`` threads for
large inputs); each chunk keeps its membrane in a small local array and walks the time axis inside,
so a step costs one read of ``x_t`` and one write of ``s_t``. The forward pass allocates only its
outputs; the backward pass allocates ``dL/dx``, or writes it over ``x`` when ``x`` is a copy that a
saved-tensor hook restored for this backward (``spike.train.memory``'s ``packed``/``mesa8``).

The forward pass repeats the operations of :func:`spike.neurons.lif.lif_step` in the same order and
in ``x``'s dtype, so spikes are bit-identical to the reference:

.. math::
    \ell_t = v_\text{rest} + \beta (v_{t-1} - v_\text{rest}),\quad
    h_t = \ell_t + g x_t\ \text{(immediate)}\ \text{or}\ R(\ell_t, s_{t-1}) + g x_t\ \text{(deferred)},\quad
    s_t = H(h_t - v_\text{th})

with every reset written as :math:`R(h, s) = h (1 - a s) - b s` (subtract: :math:`a=0, b=v_\text{th}`;
to_value: :math:`a=1, b=-v_\text{reset}`; none: :math:`a=b=0`), which is exact for :math:`s \in \{0,1\}`.
Saved for backward are the input ``x`` and the output spikes as bits (1/32 of a float32 tensor) but
no membrane: the backward kernel recomputes each neuron chunk's pre-reset membranes ``h`` (bit-identical,
the resets taken from the saved spikes) into a local ``[T, chunk]`` buffer, then the surrogate
derivative :math:`\sigma'(h_t - v_\text{th})` and the previous membrane from them, and walks time in
reverse:

.. math::
    \bar h_t = \bar v_t \frac{\partial R}{\partial h}
        + \sigma'_t\Big(\bar s_t + \bar v_t \frac{\partial R}{\partial s}\Big),\quad
    \bar x_t = g \bar h_t,\quad \bar v_{t-1} = \beta \bar h_t,\quad
    \bar\beta \mathrel{+}= \bar h_t (v_{t-1} - v_\text{rest}),\quad \bar g \mathrel{+}= \bar h_t x_t

(immediate timing; the deferred variant moves the reset derivative to the next step and carries
:math:`\bar s_{t-1}` back through it). ``detach_reset`` drops the :math:`\partial R/\partial s` term.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import math
import sys
import threading

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spike.core.registry import BackendError
from spike.neurons.lif import LIFDiscrete, LIFState

try:
    import numba
    import numpy as np
    from numba import njit
except ImportError as _e:  # pragma: no cover - exercised only without numba
    numba = None
    _NUMBA_MISSING = f"numba is not installed ({_e}); pip install numba"
else:
    _NUMBA_MISSING = None

__all__ = ["supports", "multi_step", "multi_step_spatial", "private_restores"]

_SURROGATES = {"atan": 0, "sigmoid": 1, "fast_sigmoid": 2, "triangle": 3}
_DTYPES = (torch.float32, torch.float64)
_NP_DTYPES = {torch.float32: "float32", torch.float64: "float64"}
# layout of the per-call constant vector (in x's dtype)
_VTH, _VRESET, _VREST, _ONE, _ZERO, _RA, _RB, _KD, _SG1, _SG2 = range(10)
_CHUNK_BYTES = 16384  # contiguous bytes per time row of one work item
_PARALLEL_MIN = 1 << 20  # T * M from which the neurons are split over torch.get_num_threads() threads


_PRIVATE = threading.local()


class private_restores:  # noqa: N801 - used as a context manager, like torch's
    """Context under which every saved tensor comes back as a fresh copy, private to one backward
    (``spike.train.memory``'s ``packed``/``mesa8`` hooks pack each save separately and unpack into a
    new buffer): the backward pass may then write ``dL/dx`` over the restored ``x``."""

    def __enter__(self):
        _PRIVATE.depth = getattr(_PRIVATE, "depth", 0) + 1
        return self

    def __exit__(self, *exc):
        _PRIVATE.depth -= 1
        return False


def supports(p: LIFDiscrete, x: Tensor) -> str | None:
    """``None`` if the fused kernel runs ``p`` on ``x`` exactly like the reference, else the reason."""
    if _NUMBA_MISSING is not None:
        return _NUMBA_MISSING
    if not isinstance(x, Tensor):
        return f"input must be a torch.Tensor, got {type(x).__name__}"
    if x.device.type != "cpu":
        return f"input is on {x.device.type}, the numba backend runs on CPU only"
    if x.dtype not in _DTYPES:
        return f"dtype {x.dtype} is not supported (float32 or float64)"
    if x.dim() < 2 or x.shape[0] == 0:
        return f"input must be [T, B, ...] with T >= 1, got shape {tuple(x.shape)}"
    if p.w_rec is not None:
        return "recurrent weights (w_rec) are not supported by the numba kernel"
    feat = tuple(x.shape[2:])
    for name, val in (("beta", p.beta), ("gain", p.gain)):
        reason = _check_coef(name, val, feat, x)
        if reason is not None:
            return reason
    try:
        kind, param = p.surrogate.kernel_spec
    except (NotImplementedError, AttributeError):
        return f"surrogate {p.surrogate!r} has no kernel_spec"
    if kind not in _SURROGATES:
        return f"surrogate {kind!r} has no numba kernel (known: {sorted(_SURROGATES)})"
    if not math.isfinite(float(param)):
        return f"surrogate parameter must be finite, got {param!r}"
    return None


def _check_coef(name: str, val, feat: tuple[int, ...], x: Tensor) -> str | None:
    if isinstance(val, (int, float)):
        return None
    if not isinstance(val, Tensor):
        return f"{name} must be a float or a tensor, got {type(val).__name__}"
    if val.device.type != "cpu":
        return f"{name} is on {val.device.type}, the numba backend runs on CPU only"
    if not val.is_floating_point():
        return f"{name} must be a floating tensor, got {val.dtype}"
    try:
        ok = val.dim() <= len(feat) and torch.broadcast_shapes(val.shape, feat) == feat
    except RuntimeError:
        ok = False
    if not ok:
        return f"{name} of shape {tuple(val.shape)} does not broadcast to the feature shape {feat}"
    if torch.result_type(val, x) != x.dtype:
        return f"{name} ({val.dtype}) would promote the {x.dtype} input; cast tau to {x.dtype}"
    return None


def multi_step(x: Tensor, state: LIFState | None, p: LIFDiscrete,
               record: bool = False) -> tuple[Tensor, LIFState, Tensor | None]:
    """Fused multi-step LIF over ``x: [T, B, ...]``; same contract and results as the reference.

    Args:
        x: input current ``[T, B, *features]`` (float32/float64, CPU).
        state: initial ``LIFState`` shaped like ``x[0]`` or ``None`` (rest).
        p: discretised parameters (see :func:`spike.neurons.lif.discretize`).
        record: also return the membrane after every step (``state.v`` of the reference).

    Returns:
        ``(spikes [T, B, ...], final LIFState, trace [T, B, ...] or None)``.

    Raises:
        BackendError: if :func:`supports` rejects the configuration or ``state`` does not match ``x``.
    """
    return _multi_step(x, state, p, record, temporal=True)


def multi_step_spatial(x: Tensor, state: LIFState | None, p: LIFDiscrete,
                       record: bool = False) -> tuple[Tensor, LIFState, Tensor | None]:
    r""":func:`multi_step` with the temporal gradient path cut (SLTT, Meng et al. 2023): the same forward
    values, but the backward pass treats the state entering every step as a constant, i.e. the gradient
    of the reference run with ``LIFState(v.detach(), s.detach())`` before each step. In the reverse
    loop the carries :math:`\bar v_{t-1}` and (deferred reset) :math:`\bar s_{t-1}` are zero, so each
    step's :math:`\bar x_t = g\,\bar h_t` is local; gradients of ``beta`` and ``gain`` keep their
    per-step terms. No gradient reaches the initial ``state``.
    """
    return _multi_step(x, state, p, record, temporal=False)


def _multi_step(x: Tensor, state: LIFState | None, p: LIFDiscrete, record: bool,
                temporal: bool) -> tuple[Tensor, LIFState, Tensor | None]:
    reason = supports(p, x)
    if reason is not None:
        raise BackendError(f"backend 'numba' cannot run this lif configuration: {reason}")
    T, step_shape = x.shape[0], tuple(x.shape[1:])
    M = math.prod(step_shape)
    x2 = x.contiguous().view(T, M)  # [T, B, ...] -> [T, M]
    if state is None:
        v0 = _full(M, p.v_rest, x.dtype)
        s0 = _full(M, 0.0, x.dtype)
    else:
        for name, t in (("v", state.v), ("s", state.s)):
            if not isinstance(t, Tensor) or tuple(t.shape) != step_shape or t.dtype != x.dtype \
                    or t.device.type != "cpu":
                raise BackendError(
                    f"backend 'numba': state.{name} must be a CPU {x.dtype} tensor of shape {step_shape}, "
                    f"got {getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
        v0 = state.v.reshape(M)  # [B, ...] -> [M]
        s0 = state.s.reshape(M)
    beta_m = _per_neuron(p.beta, step_shape, x.dtype)
    gain_m = _per_neuron(p.gain, step_shape, x.dtype)
    cfg = _config(p, x.dtype, T, M, temporal)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x2, v0, s0, beta_m, gain_m)):
        spikes, v_t, s_t, trace = _LIFFunction.apply(x2, v0, s0, beta_m, gain_m, cfg, record)
    else:  # inference: no autograd node, no saved membrane
        spikes, v_t, s_t, trace, _ = _run_forward(x2, v0, s0, beta_m, gain_m, cfg, record)
    final = LIFState(v_t.view(step_shape), s_t.view(step_shape))
    return spikes.view(x.shape), final, (trace.view(x.shape) if record else None)


def _per_neuron(c, step_shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A float or a feature-broadcastable tensor as one value per neuron ``[M]`` (autograd reduces back)."""
    if isinstance(c, Tensor):
        return c.to(dtype).expand(step_shape).contiguous().view(-1)  # [*features] -> [B, *features] -> [M]
    return _full(math.prod(step_shape), float(c), dtype)


def _full(n: int, value: float, dtype: torch.dtype) -> Tensor:
    """A constant ``[n]`` tensor made by numpy: torch would run a parallel fill for large ``n``, and
    each parallel region can cost milliseconds on a busy machine (idle OpenMP threads must be woken)."""
    return torch.from_numpy(np.full(n, value, dtype=_NP_DTYPES[dtype]))


def _config(p: LIFDiscrete, dtype: torch.dtype, T: int, M: int, temporal: bool = True) -> tuple:
    kind, param = p.surrogate.kernel_spec
    param = float(param)
    if kind == "atan":  # grad = (alpha/2) / (1 + (pi/2 * alpha * u)^2), constants as in ATan.grad
        sg1, sg2 = 0.5 * param, 0.5 * math.pi * param
    else:
        sg1, sg2 = param, 0.0
    ra, rb = {"subtract": (0.0, p.v_th), "to_value": (1.0, -p.v_reset), "none": (0.0, 0.0)}[p.reset]
    cst = (p.v_th, p.v_reset, p.v_rest, 1.0, 0.0, ra, rb, 0.0 if p.detach_reset else 1.0, sg1, sg2)
    # A work item walks time over `chunk` neighbouring neurons: rows of 16 KiB keep the hardware
    # prefetcher streaming while the item's local arrays stay in L2.
    np_dtype = _NP_DTYPES[dtype]
    nthreads = torch.get_num_threads() if T * M >= _PARALLEL_MIN else 1
    chunk = min(_CHUNK_BYTES // np.dtype(np_dtype).itemsize, max(64, -(-M // nthreads)))
    chunk = -(-chunk // 16) * 16
    return np.array(cst, dtype=np_dtype), _SURROGATES[kind], int(p.deferred), chunk, nthreads, int(temporal)


class _LIFFunction(torch.autograd.Function):
    """``(x [T,M], v0 [M], s0 [M], beta [M], gain [M]) -> (spikes [T,M], v_T [M], s_T [M], trace)``.

    Saves the input ``x``, the output spikes as bits (uint8 ``[T, ceil(M/8)]``, written by the forward
    kernel) and the ``[M]`` state and coefficients, no membrane: the backward kernel recomputes each
    neuron chunk's pre-reset membrane from them into a small local buffer, the resets taken from the
    saved spikes. The forward pass thus allocates no float ``[T, M]`` buffer beyond its outputs; under
    ``spike.train.memory``'s ``mesa8`` hooks ``x`` is stored in 8 bits.
    """

    @staticmethod
    def forward(ctx, x2, v0, s0, beta_m, gain_m, cfg, record):  # type: ignore[override]
        spikes, v_t, s_t, trace, bits = _run_forward(x2, v0, s0, beta_m, gain_m, cfg, record, save_bits=True)
        ctx.save_for_backward(x2, bits, v0, s0, beta_m, gain_m)
        # backward may write dL/dx over a private restored copy of x, never over x itself
        ctx.x_ptr = x2.data_ptr() if getattr(_PRIVATE, "depth", 0) > 0 else None
        ctx.cfg = cfg
        ctx.set_materialize_grads(False)
        return spikes, v_t, s_t, (trace if record else trace[:0])

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spikes, g_v, g_s, g_trace):  # type: ignore[override]
        x2, bits, v0, s0, beta_m, gain_m = ctx.saved_tensors
        cst, sg_kind, deferred, chunk, nthreads, temporal = ctx.cfg
        T, M = x2.shape
        gs, has_gs = _time_grad(g_spikes, M, x2.dtype)
        gtr, has_gtr = _time_grad(g_trace, M, x2.dtype)
        gvT = g_v.contiguous() if g_v is not None else _full(M, 0.0, x2.dtype)
        gsT = g_s.contiguous() if g_s is not None else _full(M, 0.0, x2.dtype)
        need = ctx.needs_input_grad
        # dL/dx over x when x is a private copy restored by spike.train.memory's hooks (read by the
        # kernel before it is overwritten, column range by column range); the gain gradient reads x
        # after dL/dx is written, so it needs a separate buffer
        restored = (ctx.x_ptr is not None and x2.data_ptr() != ctx.x_ptr and x2.is_contiguous()
                    and not need[4])
        gx = x2 if restored else _empty((T, M), x2.dtype)
        gv0, gs0, gb, gg = (torch.empty_like(v0) for _ in range(4))
        head = (_np(x2), bits.numpy(), _np(v0), _np(s0), _np(beta_m), _np(gain_m), cst, sg_kind, deferred,
                temporal, has_gs, has_gtr, int(need[3]), int(need[4]), chunk)
        tail = (_np(gs), _np(gtr), _np(gvT), _np(gsT), gx.numpy(), gv0.numpy(), gs0.numpy(), gb.numpy(),
                gg.numpy())
        _launch(lambda c0, c1: _bwd_chunks(*head, c0, c1, *tail), -(-M // chunk), nthreads)
        s0_used = temporal and deferred and cst[_KD] != 0.0 and (cst[_RA] != 0.0 or cst[_RB] != 0.0)
        return (gx if need[0] else None, gv0 if (need[1] and temporal) else None,
                gs0 if (need[2] and s0_used) else None,
                gb if need[3] else None, gg if need[4] else None, None, None)


def _run_forward(x2, v0, s0, beta_m, gain_m, cfg, record: bool, save_bits: bool = False):
    """Allocate the outputs and run the forward kernel: ``(spikes, v_T, s_T, trace, bits)`` (``trace``
    is ``[T, M]`` when recorded, else a ``[1, M]`` scratch row; ``bits``: the spikes as a uint8
    ``[T, ceil(M / 8)]`` bit array when saved, else a scratch row)."""
    cst, sg_kind, deferred, chunk, nthreads, _ = cfg
    T, M = x2.shape
    spikes = _empty_like(x2)
    bits = torch.empty(T if save_bits else 1, (M + 7) // 8, dtype=torch.uint8)
    trace = _empty_like(x2) if record else torch.empty(1, M, dtype=x2.dtype)
    v_t = torch.empty_like(v0)
    s_t = torch.empty_like(v0)
    head = (_np(x2), _np(v0), _np(s0), _np(beta_m), _np(gain_m), cst, deferred, int(record), int(save_bits),
            chunk)
    tail = (spikes.numpy(), bits.numpy(), trace.numpy(), v_t.numpy(), s_t.numpy())
    _launch(lambda c0, c1: _fwd_chunks(*head, c0, c1, *tail), -(-M // chunk), nthreads)
    return spikes, v_t, s_t, trace, bits


def _launch(run, n_chunks: int, nthreads: int) -> None:
    """``run(c0, c1)`` over chunks ``[0, n_chunks)`` on up to ``nthreads`` threads (kernels release the GIL).

    Threads take the next chunk from a shared counter, so a thread that the OS parks on a busy
    machine holds up at most one chunk. Plain threads joined per call rather than numba's OpenMP
    pool, whose idle threads spin: that cost tens of milliseconds per call on a loaded machine.
    """
    nthreads = min(nthreads, n_chunks)
    if nthreads <= 1:
        run(0, n_chunks)
        return
    counter = itertools.count()  # next() on it is atomic under the GIL

    def worker():
        for c in iter(counter.__next__, -1):
            if c >= n_chunks:
                return
            run(c, c + 1)

    workers = [threading.Thread(target=worker) for _ in range(nthreads - 1)]
    for w in workers:
        w.start()
    worker()
    for w in workers:
        w.join()


def _np(t: Tensor):
    return t.detach().numpy()


_HUGE_PAGE = 1 << 21
_MADV_HUGEPAGE = 14


@functools.lru_cache(maxsize=1)
def _madvise():
    """libc ``madvise`` on Linux, else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        f = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    f.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return f


def _empty_like(t: Tensor) -> Tensor:
    return _empty(tuple(t.shape), t.dtype)


def _empty(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """``torch.empty`` that asks Linux for transparent huge pages when the buffer is large.

    A fresh ``[T, M]`` buffer page-faults on first touch, 4 KiB at a time; with 2 MiB pages the
    first touch of a 128 MB buffer costs several times less (measured 4x on the benchmark machine).
    The advice covers only whole huge pages inside the buffer and is ignored where THP is off.
    """
    out = torch.empty(shape, dtype=dtype)
    nbytes = out.numel() * out.element_size()
    madvise = _madvise() if nbytes >= 4 * _HUGE_PAGE else None
    if madvise is not None:
        start = (out.data_ptr() + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
        end = (out.data_ptr() + nbytes) & ~(_HUGE_PAGE - 1)
        madvise(start, end - start, _MADV_HUGEPAGE)  # a failure only means small pages
    return out


def _time_grad(g: Tensor | None, M: int, dtype: torch.dtype) -> tuple[Tensor, int]:
    """A ``[T, M]`` output gradient for the kernel, plus 1 if row ``t`` is step t's, 0 if row 0 serves all.

    Absent gradients become one zero row, and gradients broadcast over time (``out.sum().backward()``
    sends a stride-0 tensor) are passed as their single row instead of being materialised.
    """
    if g is None or g.numel() == 0:
        return _full(M, 0.0, dtype).view(1, M), 0
    if g.stride(0) == 0:
        return g[0].contiguous().view(1, M), 0
    return g.contiguous(), 1


if numba is not None:
    _JIT = dict(cache=True, fastmath=False, error_model="numpy")  # exact IEEE order, no zero-div checks

    @njit(**_JIT)
    def _fwd_chunk(x, v0, s0, beta, gain, cst, deferred, record, save_bits, lo, hi,
                   spikes, sbits, trace, v_out, s_out):  # pragma: no cover - compiled
        # neurons lo:hi over all steps (lo a multiple of 8). x, spikes: [T, M]; trace: [T, M] when
        # recorded, else a [1, M] scratch row; sbits: the spikes as bits [T, ceil(M/8)] (neuron m in
        # bit m % 8 of byte m // 8) when saved, else a scratch row. Rows are sliced per step
        # (xt = x[t, lo:hi]): 1-D loops vectorise.
        T = x.shape[0]
        n = hi - lo
        vth, vr, one, zero, ra, rb = cst[_VTH], cst[_VREST], cst[_ONE], cst[_ZERO], cst[_RA], cst[_RB]
        b = beta[lo:hi]
        g = gain[lo:hi]
        v = v0[lo:hi].copy()
        s = s0[lo:hi].copy()
        for t in range(T):
            xt = x[t, lo:hi]
            st = spikes[t, lo:hi]
            rt = trace[t * record, lo:hi]
            if deferred:
                for j in range(n):
                    sp = s[j]
                    leak = vr + b[j] * (v[j] - vr)
                    hh = (leak * (one - sp * ra) - sp * rb) + g[j] * xt[j]
                    sn = one if hh - vth >= zero else zero
                    st[j] = sn
                    rt[j] = hh
                    v[j] = hh
                    s[j] = sn
            else:
                for j in range(n):
                    leak = vr + b[j] * (v[j] - vr)
                    hh = leak + g[j] * xt[j]
                    sn = one if hh - vth >= zero else zero
                    st[j] = sn
                    vn = hh * (one - sn * ra) - sn * rb
                    rt[j] = vn
                    v[j] = vn
                    s[j] = sn
            if save_bits:
                _tobits(st, sbits[t], lo, zero)
        v_out[lo:hi] = v
        s_out[lo:hi] = s

    @njit(**_JIT)
    def _tobits(st, row, lo, zero):  # pragma: no cover - compiled
        # spikes st (neurons lo..lo+len-1, lo a multiple of 8) into their bytes of the bit row
        n = st.shape[0]
        b0 = lo >> 3
        for k in range((n + 7) >> 3):
            byte = 0
            for q in range(8):
                j = 8 * k + q
                if j < n and st[j] != zero:
                    byte |= 1 << q
            row[b0 + k] = byte

    @njit(**_JIT)
    def _unbits(row, lo, out, one, zero):  # pragma: no cover - compiled
        for j in range(out.shape[0]):
            m = lo + j
            out[j] = one if (row[m >> 3] >> (m & 7)) & 1 else zero

    @njit(**_JIT)
    def _bwd_chunk(x, spk, v0, s0, beta, gain, cst, sg_kind, deferred, temporal, has_gs, has_gtr, need_gb,
                   need_gg, lo, hi, gs, gtr, gvT, gsT, gx, gv0, gs0, gb_out, gg_out):  # pragma: no cover
        # neurons lo:hi, time reversed. x: the saved input [T, M]; spk: the saved spikes as bits
        # [T, ceil(M/8)] (see _fwd_chunk); gx: [T, M], which
        # may be x's own buffer (x[:, lo:hi] is read into the local membrane before gx[:, lo:hi] is
        # written); gs/gtr: [T, M] or one [1, M] row (has_* = 0); the rest [M]. Few passes per step:
        # each extra pass costs as much as the math. temporal = 0 (SLTT): the carries to step t-1
        # (gv, gsc) are dropped after every step.
        T = x.shape[0]
        n = hi - lo
        vth, vr, one, zero = cst[_VTH], cst[_VREST], cst[_ONE], cst[_ZERO]
        ra, rb, kd, c1, c2 = cst[_RA], cst[_RB], cst[_KD], cst[_SG1], cst[_SG2]
        b = beta[lo:hi]
        g = gain[lo:hi]
        # pre-reset membrane of every step, recomputed with the forward's operations in its order and
        # the resets of the saved spikes (bit-identical to the forward's for an exact x)
        hb = np.empty((T, n), x.dtype)
        st = np.empty(n, x.dtype)  # spikes s_t
        spp = np.empty(n, x.dtype)  # spikes s_{t-1}
        v = v0[lo:hi].copy()
        s = s0[lo:hi].copy()
        for t in range(T):
            xt = x[t, lo:hi]
            _unbits(spk[t], lo, st, one, zero)
            hr = hb[t]
            if deferred:
                for j in range(n):
                    sp_ = s[j]
                    leak = vr + b[j] * (v[j] - vr)
                    hh = (leak * (one - sp_ * ra) - sp_ * rb) + g[j] * xt[j]
                    hr[j] = hh
                    v[j] = hh
                    s[j] = st[j]
            else:
                for j in range(n):
                    leak = vr + b[j] * (v[j] - vr)
                    hh = leak + g[j] * xt[j]
                    hr[j] = hh
                    sn = st[j]
                    v[j] = hh * (one - sn * ra) - sn * rb
        gv = gvT[lo:hi].copy()   # dL/d(state v) flowing back into step t
        gsc = gsT[lo:hi].copy()  # dL/d(s_t) from outside the step (final state, deferred reset)
        sg = np.empty(n, x.dtype)  # surrogate derivative at step t
        vp = np.empty(n, x.dtype)  # state before step t: membrane v_{t-1} ...
        sp = np.empty(n, x.dtype)  # ... and spikes s_{t-1}
        gl = np.empty(n, x.dtype)  # dL/d(leak_t)
        gh = np.empty(n, x.dtype)  # dL/d(h_t) (deferred only; equal to gl when immediate)
        gbl = np.zeros(n, x.dtype)
        ggl = np.zeros(n, x.dtype)
        for t in range(T - 1, -1, -1):
            ht = hb[t]
            snt = st
            _unbits(spk[t], lo, snt, one, zero)
            gst = gs[t * has_gs, lo:hi]
            grt = gtr[t * has_gtr, lo:hi]
            # surrogate derivative at u = h - v_th (same formulas as spike.surrogate)
            if sg_kind == 0:
                for j in range(n):
                    w = c2 * (ht[j] - vth)
                    sg[j] = c1 * (one / (one + w * w))
            elif sg_kind == 1:
                for j in range(n):
                    e = one / (one + math.exp(-(c1 * (ht[j] - vth))))
                    sg[j] = c1 * e * (one - e)
            elif sg_kind == 2:
                for j in range(n):
                    d = one + c1 * abs(ht[j] - vth)
                    sg[j] = one / (d * d)
            else:
                for j in range(n):
                    w = one - abs(ht[j] - vth) / c1
                    sg[j] = (w if w > zero else zero) / c1
            # state before step t
            if deferred or need_gb:
                if t == 0:
                    vp[:] = v0[lo:hi]
                    sp[:] = s0[lo:hi]
                elif deferred:
                    hp = hb[t - 1]
                    _unbits(spk[t - 1], lo, spp, one, zero)
                    for j in range(n):
                        vp[j] = hp[j]
                        sp[j] = spp[j]
                else:
                    hp = hb[t - 1]
                    _unbits(spk[t - 1], lo, spp, one, zero)
                    for j in range(n):
                        sq = spp[j]
                        vp[j] = hp[j] * (one - sq * ra) - sq * rb
                        sp[j] = sq
            xt = x[t, lo:hi]  # read only for the gain gradient, when gx is a separate buffer
            gxt = gx[t, lo:hi]
            if deferred:
                for j in range(n):
                    gg = gv[j] + grt[j] + sg[j] * (gst[j] + gsc[j])
                    gxt[j] = gg * g[j]
                    leak = vr + b[j] * (vp[j] - vr)
                    g_leak = gg * (one - sp[j] * ra)
                    gsc[j] = kd * gg * (-(leak * ra) - rb)
                    gv[j] = g_leak * b[j]
                    gl[j] = g_leak
                    gh[j] = gg
            else:
                for j in range(n):
                    hh = ht[j]
                    sn = snt[j]
                    gvt = gv[j] + grt[j]
                    gg = gvt * (one - sn * ra) + sg[j] * ((gst[j] + gsc[j]) + kd * gvt * (-(hh * ra) - rb))
                    gxt[j] = gg * g[j]
                    gv[j] = gg * b[j]
                    gsc[j] = zero
                    gl[j] = gg
            if not temporal:
                gv[:] = zero
                gsc[:] = zero
            if need_gb:
                for j in range(n):
                    gbl[j] += gl[j] * (vp[j] - vr)
            if need_gg:
                dh = gh if deferred else gl
                for j in range(n):
                    ggl[j] += dh[j] * xt[j]
        gv0[lo:hi] = gv
        gs0[lo:hi] = gsc
        gb_out[lo:hi] = gbl
        gg_out[lo:hi] = ggl

    @njit(nogil=True, **_JIT)
    def _fwd_chunks(x, v0, s0, beta, gain, cst, deferred, record, save_bits, chunk, c0, c1,
                    spikes, sbits, trace, v_out, s_out):  # pragma: no cover - compiled
        M = x.shape[1]
        for c in range(c0, c1):
            _fwd_chunk(x, v0, s0, beta, gain, cst, deferred, record, save_bits, c * chunk,
                       min(M, (c + 1) * chunk), spikes, sbits, trace, v_out, s_out)

    @njit(nogil=True, **_JIT)
    def _bwd_chunks(x, spk, v0, s0, beta, gain, cst, sg_kind, deferred, temporal, has_gs, has_gtr, need_gb,
                    need_gg, chunk, c0, c1, gs, gtr, gvT, gsT, gx, gv0, gs0, gb_out, gg_out):  # pragma: no cover
        M = x.shape[1]
        for c in range(c0, c1):
            _bwd_chunk(x, spk, v0, s0, beta, gain, cst, sg_kind, deferred, temporal, has_gs, has_gtr, need_gb,
                       need_gg, c * chunk, min(M, (c + 1) * chunk), gs, gtr, gvT, gsT, gx, gv0, gs0, gb_out, gg_out)
