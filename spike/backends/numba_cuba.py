r"""Fused CPU CUBA-LIF backend (registered as ``"numba"`` for ``"cuba"``): one numba loop each way.

The input ``x: [T, B, *features]`` is viewed as ``[T, M]`` (``M = B * prod(features)``); the kernels
walk time inside chunks of neighbouring neurons (several threads for large inputs). The forward pass
repeats :func:`spike.neurons.cuba.cuba_step` operation by operation in ``x``'s dtype, so spikes are
bit-identical to the reference scan:

.. math::
    i_t = \alpha i_{t-1} + x_t,\quad c_t = \beta v_{t-1} + i_t,\quad
    h_t = c_t\ \text{(immediate)}\ \text{or}\ R(c_t, s_{t-1})\ \text{(deferred)},\quad s_t = H(h_t - v_\text{th})

with :math:`R(h, s) = h (1 - r_a s) - r_b s` (subtract: :math:`r_a=0, r_b=v_\text{th}`; to_value:
:math:`r_a=1, r_b=-v_\text{reset}`; none: :math:`r_a=r_b=0`), exact for :math:`s \in \{0, 1\}`.

Saved for the backward pass: the charge ``h`` and the current ``i`` (``[T, M]`` each); the previous
membrane and spikes are recomputed from ``h``. The reverse loop (BPTT, immediate timing) is

.. math::
    \bar h_t = \bar v_t \partial_h R + \sigma'_t (\bar s_t + \bar v_t \partial_s R),\quad
    \bar\imath_t \mathrel{+}= \bar h_t,\quad \bar x_t = \bar\imath_t,\quad
    \bar v_{t-1} = \beta \bar h_t,\quad \bar\imath_{t-1} = \alpha \bar\imath_t,\quad
    \bar\beta \mathrel{+}= \bar h_t v_{t-1},\quad \bar\alpha \mathrel{+}= \bar\imath_t i_{t-1}

(deferred: the reset derivative acts on :math:`c_t` and sends :math:`\bar s_{t-1}` back).
``detach_reset`` drops the :math:`\partial R/\partial s` terms. ``dL/dx`` is written over the saved
current (row ``t`` is dead once step ``t`` is done), so forward+backward allocates three ``[T, M]``
buffers (spikes, ``h``, ``i``). Not supported (a clear :class:`~spike.core.registry.BackendError`):
recurrent weights, non-CPU tensors, dtypes other than float32/float64, coefficients that do not
broadcast to the feature shape, surrogates without a ``kernel_spec`` in :data:`SURROGATES`.

The helpers below (thread launch, per-neuron coefficients, output gradients) are shared with
:mod:`spike.backends.numba_adlif`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spike.backends._pool import run_chunks
from spike.core.registry import BackendError
from spike.neurons.cuba import CubaDiscrete, CubaState

try:
    import numba
    import numpy as np
    from numba import njit
except ImportError as _e:  # pragma: no cover - exercised only without numba
    numba = None
    NUMBA_MISSING: str | None = f"numba is not installed ({_e}); pip install numba"
else:
    NUMBA_MISSING = None

__all__ = ["supports", "prefers", "multi_step", "SURROGATES"]

#: surrogate ``kernel_spec`` names the kernels implement (same derivatives as :mod:`spike.surrogate`)
SURROGATES = {"atan": 0, "sigmoid": 1, "fast_sigmoid": 2, "triangle": 3}
DTYPES = (torch.float32, torch.float64)
_NP_DTYPES = {torch.float32: "float32", torch.float64: "float64"}
# layout of the per-call constant vector (in x's dtype)
VTH, ONE, ZERO, RA, RB, KD, SG1, SG2 = range(8)
_CHUNK_BYTES = 16384  # contiguous bytes per time row of one work item
_PARALLEL_MIN = 1 << 20  # T * M from which the neurons are split over torch.get_num_threads() threads


# --------------------------------------------------------------------------------------------------
# shared helpers (also used by numba_adlif)
# --------------------------------------------------------------------------------------------------

def check_common(x: Tensor, w_rec, surrogate, coefs: tuple[tuple[str, object], ...]) -> str | None:
    """Reason why the fused kernels cannot run (``None`` if they can): input, coefficients, surrogate."""
    if NUMBA_MISSING is not None:
        return NUMBA_MISSING
    if not isinstance(x, Tensor):
        return f"input must be a torch.Tensor, got {type(x).__name__}"
    if x.device.type != "cpu":
        return f"input is on {x.device.type}, the numba backend runs on CPU only"
    if x.dtype not in DTYPES:
        return f"dtype {x.dtype} is not supported (float32 or float64)"
    if x.dim() < 2 or x.shape[0] == 0:
        return f"input must be [T, B, ...] with T >= 1, got shape {tuple(x.shape)}"
    if w_rec is not None:
        return "recurrent weights (w_rec) are not supported by the numba kernel (use backend='reference')"
    feat = tuple(x.shape[2:])
    for name, val in coefs:
        reason = _check_coef(name, val, feat, x)
        if reason is not None:
            return reason
    try:
        kind, param = surrogate.kernel_spec
    except (NotImplementedError, AttributeError):
        return f"surrogate {surrogate!r} has no kernel_spec"
    if kind not in SURROGATES:
        return f"surrogate {kind!r} has no numba kernel (known: {sorted(SURROGATES)})"
    if not math.isfinite(float(param)):
        return f"surrogate parameter must be finite, got {param!r}"
    return None


def _check_coef(name: str, val, feat: tuple[int, ...], x: Tensor) -> str | None:
    if isinstance(val, (int, float)):
        return None if math.isfinite(float(val)) else f"{name} must be finite, got {val!r}"
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
        return f"{name} ({val.dtype}) would promote the {x.dtype} input; cast the parameters to {x.dtype}"
    return None


def flat_state(state, fields: tuple[str, ...], step_shape: tuple[int, ...], x: Tensor, M: int,
               model: str) -> list[Tensor]:
    """The initial state as ``[M]`` views (zeros when ``state`` is ``None``); wrong fields raise."""
    if state is None:
        return [full(M, 0.0, x.dtype) for _ in fields]
    out = []
    for name in fields:
        t = getattr(state, name)
        if not isinstance(t, Tensor) or tuple(t.shape) != step_shape or t.dtype != x.dtype \
                or t.device.type != "cpu":
            raise BackendError(
                f"backend 'numba' ({model}): state.{name} must be a CPU {x.dtype} tensor of shape {step_shape}, "
                f"got {getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
        out.append(t.reshape(M))
    return out


def per_neuron(c, step_shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A float or a feature-broadcastable tensor as one value per neuron ``[M]`` (autograd reduces back)."""
    if isinstance(c, Tensor):
        return c.to(dtype).expand(step_shape).contiguous().view(-1)  # [*features] -> [B, *features] -> [M]
    return full(math.prod(step_shape), float(c), dtype)


def full(n: int, value: float, dtype: torch.dtype) -> Tensor:
    """A constant ``[n]`` tensor made by numpy (no parallel torch fill for a small constant)."""
    return torch.from_numpy(np.full(n, value, dtype=_NP_DTYPES[dtype]))


def config(surrogate, reset: str, v_th: float, v_reset: float, detach_reset: bool, dtype: torch.dtype,
           T: int, M: int) -> tuple:
    """``(constants, surrogate kind, chunk, threads)`` for the kernels."""
    kind, param = surrogate.kernel_spec
    param = float(param)
    if kind == "atan":  # grad = (alpha/2) / (1 + (pi/2 * alpha * u)^2), constants as in ATan.grad
        sg1, sg2 = 0.5 * param, 0.5 * math.pi * param
    else:
        sg1, sg2 = param, 0.0
    ra, rb = {"subtract": (0.0, v_th), "to_value": (1.0, -v_reset), "none": (0.0, 0.0)}[reset]
    np_dtype = _NP_DTYPES[dtype]
    cst = np.array((v_th, 1.0, 0.0, ra, rb, 0.0 if detach_reset else 1.0, sg1, sg2), dtype=np_dtype)
    nthreads = torch.get_num_threads() if T * M >= _PARALLEL_MIN else 1
    chunk = min(_CHUNK_BYTES // np.dtype(np_dtype).itemsize, max(64, -(-M // nthreads)))
    chunk = -(-chunk // 16) * 16
    return cst, SURROGATES[kind], chunk, nthreads


def launch(run, M: int, chunk: int, nthreads: int) -> None:
    """``run(c0, c1)`` over the neuron chunks ``[0, ceil(M / chunk))`` on up to ``nthreads`` threads
    (:func:`spike.backends._pool.run_chunks`)."""
    run_chunks(run, -(-M // chunk), nthreads)


def as_np(t: Tensor):
    return t.detach().numpy()


def time_grad(g: Tensor | None, M: int, dtype: torch.dtype) -> tuple[Tensor, int]:
    """A ``[T, M]`` output gradient for the kernel, plus 1 if row ``t`` is step t's, 0 if row 0 serves all
    (absent gradients become one zero row; a gradient broadcast over time is passed as its one row)."""
    if g is None or g.numel() == 0:
        return full(M, 0.0, dtype).view(1, M), 0
    if g.stride(0) == 0:
        return g[0].contiguous().view(1, M), 0
    return g.contiguous(), 1


def state_grad(g: Tensor | None, M: int, dtype: torch.dtype) -> Tensor:
    return g.contiguous().view(M) if g is not None else full(M, 0.0, dtype)


# --------------------------------------------------------------------------------------------------
# CUBA-LIF
# --------------------------------------------------------------------------------------------------

def prefers(p, x: Tensor) -> str | None:
    """Speed heuristic for ``backend="auto"``: decline a single time step (SLTT's per-step calls), where
    the reference step is about twice as fast as a kernel call (measured fwd+bwd at B=32, N=512:
    0.20 vs 0.38 ms CUBA, 0.29 vs 0.56 ms SE-adLIF); from ``T = 2`` on the kernel is on par or faster."""
    return "one time step: the reference step is cheaper than a kernel call" if x.shape[0] == 1 else None


def supports(p: CubaDiscrete, x: Tensor) -> str | None:
    """``None`` if the fused kernel runs ``p`` on ``x`` exactly like the reference, else the reason."""
    return check_common(x, p.w_rec, p.surrogate, (("alpha", p.alpha), ("beta", p.beta)))


def multi_step(x: Tensor, state: CubaState | None, p: CubaDiscrete,
               record: bool = False) -> tuple[Tensor, CubaState, Tensor | None]:
    """Fused multi-step CUBA-LIF over ``x: [T, B, ...]``; same contract and results as the reference.

    Args:
        x: input ``[T, B, *features]`` (float32/float64, CPU).
        state: initial :class:`~spike.neurons.cuba.CubaState` shaped like ``x[0]``, or ``None`` (rest).
        p: discretised parameters (:func:`spike.neurons.cuba.discretize`).
        record: also return the membrane after every step (``state.v`` of the reference).

    Returns:
        ``(spikes [T, B, ...], final CubaState, trace [T, B, ...] or None)``.

    Raises:
        BackendError: if :func:`supports` rejects the configuration or ``state`` does not match ``x``.
    """
    reason = supports(p, x)
    if reason is not None:
        raise BackendError(f"backend 'numba' cannot run this cuba configuration: {reason}")
    T, step_shape = x.shape[0], tuple(x.shape[1:])
    M = math.prod(step_shape)
    x2 = x.contiguous().view(T, M)
    v0, i0, s0 = flat_state(state, ("v", "i", "s"), step_shape, x, M, "cuba")
    alpha_m = per_neuron(p.alpha, step_shape, x.dtype)
    beta_m = per_neuron(p.beta, step_shape, x.dtype)
    cfg = config(p.surrogate, p.reset, p.v_th, p.v_reset, p.detach_reset, x.dtype, T, M) + (int(p.deferred),)
    inputs = (x2, v0, i0, s0, alpha_m, beta_m)
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        spikes, v_t, i_t, s_t, trace = _CubaFunction.apply(*inputs, cfg, record)
    else:  # inference: no autograd node, nothing saved
        spikes, v_t, i_t, s_t, trace, _, _ = _forward(*inputs, cfg, record, save=False)
    final = CubaState(v_t.view(step_shape), i_t.view(step_shape), s_t.view(step_shape))
    return spikes.view(x.shape), final, (trace.view(x.shape) if record else None)


def _forward(x2, v0, i0, s0, alpha_m, beta_m, cfg, record: bool, save: bool):
    """Run the forward kernel: ``(spikes, v_T, i_T, s_T, trace, h, i)`` (unsaved/unrecorded: one scratch row)."""
    cst, _, chunk, nthreads, deferred = cfg
    T, M = x2.shape
    spikes = torch.empty_like(x2)
    rows = T if save else 1
    h = torch.empty(rows, M, dtype=x2.dtype)
    cur = torch.empty(rows, M, dtype=x2.dtype)
    trace = torch.empty(T if record else 1, M, dtype=x2.dtype)
    v_t, i_t, s_t = (torch.empty_like(v0) for _ in range(3))
    head = (as_np(x2), as_np(v0), as_np(i0), as_np(s0), as_np(alpha_m), as_np(beta_m), cst, deferred,
            int(record), int(save), chunk)
    tail = (spikes.numpy(), h.numpy(), cur.numpy(), trace.numpy(), v_t.numpy(), i_t.numpy(), s_t.numpy())
    launch(lambda c0, c1: _fwd_chunks(*head, c0, c1, *tail), M, chunk, nthreads)
    return spikes, v_t, i_t, s_t, trace, h, cur


class _CubaFunction(torch.autograd.Function):
    """``(x, v0, i0, s0, alpha, beta) [T,M]/[M] -> (spikes [T,M], v_T, i_T, s_T [M], trace)``."""

    @staticmethod
    def forward(ctx, x2, v0, i0, s0, alpha_m, beta_m, cfg, record):  # type: ignore[override]
        spikes, v_t, i_t, s_t, trace, h, cur = _forward(x2, v0, i0, s0, alpha_m, beta_m, cfg, record, save=True)
        ctx.save_for_backward(x2, h, cur, v0, i0, s0, alpha_m, beta_m)
        ctx.cfg = cfg
        ctx.overwritten = False
        ctx.set_materialize_grads(False)
        return spikes, v_t, i_t, s_t, (trace if record else trace[:0])

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spikes, g_v, g_i, g_s, g_trace):  # type: ignore[override]
        x2, h, cur, v0, i0, s0, alpha_m, beta_m = ctx.saved_tensors
        cst, sg_kind, chunk, nthreads, deferred = ctx.cfg
        T, M = x2.shape
        if ctx.overwritten:  # a second backward (retain_graph=True): the first wrote dL/dx over `cur`
            _, _, _, _, _, h, cur = _forward(x2, v0, i0, s0, alpha_m, beta_m, ctx.cfg, False, save=True)
        ctx.overwritten = True
        gs, has_gs = time_grad(g_spikes, M, x2.dtype)
        gtr, has_gtr = time_grad(g_trace, M, x2.dtype)
        gvT, giT, gsT = (state_grad(g, M, x2.dtype) for g in (g_v, g_i, g_s))
        gx = cur  # row t of the saved current is dead once step t is done
        gv0, gi0, gs0, ga, gb = (torch.empty_like(v0) for _ in range(5))
        need = ctx.needs_input_grad
        head = (as_np(x2), h.numpy(), cur.numpy(), as_np(v0), as_np(i0), as_np(s0), as_np(alpha_m),
                as_np(beta_m), cst, sg_kind, deferred, has_gs, has_gtr, chunk)
        tail = (as_np(gs), as_np(gtr), as_np(gvT), as_np(giT), as_np(gsT), gx.numpy(), gv0.numpy(), gi0.numpy(),
                gs0.numpy(), ga.numpy(), gb.numpy())
        launch(lambda c0, c1: _bwd_chunks(*head, c0, c1, *tail), M, chunk, nthreads)
        s0_used = deferred and cst[KD] != 0.0 and (cst[RA] != 0.0 or cst[RB] != 0.0)
        return (gx if need[0] else None, gv0 if need[1] else None, gi0 if need[2] else None,
                gs0 if (need[3] and s0_used) else None, ga if need[4] else None, gb if need[5] else None,
                None, None)


if numba is not None:
    _JIT = dict(cache=True, fastmath=False, error_model="numpy")  # exact IEEE order, no zero-div checks

    from spike.backends._numba_lif_kernels import surrogate_grad  # shared with the LIF and SE-adLIF kernels

    @njit(**_JIT)
    def _fwd_chunk(x, v0, i0, s0, alpha, beta, cst, deferred, record, save, lo, hi,
                   spikes, hsave, isave, trace, v_out, i_out, s_out):  # pragma: no cover - compiled
        # neurons lo:hi over all steps; hsave/isave/trace are [T, M] when saved/recorded, else one row
        T = x.shape[0]
        vth, one, zero, ra, rb = cst[VTH], cst[ONE], cst[ZERO], cst[RA], cst[RB]
        a = alpha[lo:hi]
        b = beta[lo:hi]
        v = v0[lo:hi].copy()
        cu = i0[lo:hi].copy()
        s = s0[lo:hi].copy()
        for t in range(T):
            xt = x[t, lo:hi]
            st = spikes[t, lo:hi]
            ht = hsave[t * save, lo:hi]
            it = isave[t * save, lo:hi]
            rt = trace[t * record, lo:hi]
            if deferred:
                for j in range(hi - lo):
                    ii = a[j] * cu[j] + xt[j]
                    c = b[j] * v[j] + ii
                    sp = s[j]
                    hh = c * (one - sp * ra) - sp * rb
                    sn = one if hh - vth >= zero else zero
                    st[j] = sn
                    ht[j] = hh
                    it[j] = ii
                    rt[j] = hh
                    v[j] = hh
                    cu[j] = ii
                    s[j] = sn
            else:
                for j in range(hi - lo):
                    ii = a[j] * cu[j] + xt[j]
                    hh = b[j] * v[j] + ii
                    sn = one if hh - vth >= zero else zero
                    vn = hh * (one - sn * ra) - sn * rb
                    st[j] = sn
                    ht[j] = hh
                    it[j] = ii
                    rt[j] = vn
                    v[j] = vn
                    cu[j] = ii
                    s[j] = sn
        v_out[lo:hi] = v
        i_out[lo:hi] = cu
        s_out[lo:hi] = s

    @njit(**_JIT)
    def _bwd_chunk(x, h, isave, v0, i0, s0, alpha, beta, cst, sg_kind, deferred, has_gs, has_gtr, lo, hi,
                   gs, gtr, gvT, giT, gsT, gx, gv0, gi0, gs0, ga_out, gb_out):  # pragma: no cover - compiled
        # neurons lo:hi, time reversed. gx may be isave itself: step t writes row t and reads row t-1 only.
        T = x.shape[0]
        n = hi - lo
        vth, one, zero, ra, rb, kd = cst[VTH], cst[ONE], cst[ZERO], cst[RA], cst[RB], cst[KD]
        c1, c2 = cst[SG1], cst[SG2]
        a = alpha[lo:hi]
        b = beta[lo:hi]
        gv = gvT[lo:hi].copy()   # dL/dv_t from the future
        gi = giT[lo:hi].copy()   # dL/di_t from the future
        gsc = gsT[lo:hi].copy()  # dL/ds_t from the future (final state, deferred reset)
        sg = np.empty(n, x.dtype)
        vp = np.empty(n, x.dtype)
        ip = np.empty(n, x.dtype)
        sp = np.empty(n, x.dtype)
        gal = np.zeros(n, x.dtype)
        gbl = np.zeros(n, x.dtype)
        for t in range(T - 1, -1, -1):
            ht = h[t, lo:hi]
            xt = x[t, lo:hi]
            gst = gs[t * has_gs, lo:hi]
            grt = gtr[t * has_gtr, lo:hi]
            surrogate_grad(ht, vth, sg_kind, c1, c2, one, zero, sg)
            if t == 0:
                vp[:] = v0[lo:hi]
                ip[:] = i0[lo:hi]
                sp[:] = s0[lo:hi]
            else:  # state before step t, recomputed from the saved charge
                hp = h[t - 1, lo:hi]
                ipr = isave[t - 1, lo:hi]
                for j in range(n):
                    sq = one if hp[j] - vth >= zero else zero
                    vp[j] = hp[j] if deferred else hp[j] * (one - sq * ra) - sq * rb
                    ip[j] = ipr[j]
                    sp[j] = sq
            gxt = gx[t, lo:hi]
            if deferred:
                for j in range(n):
                    gh = gv[j] + grt[j] + sg[j] * (gst[j] + gsc[j])
                    c = b[j] * vp[j] + (a[j] * ip[j] + xt[j])  # pre-reset charge, as in the forward
                    gc = gh * (one - sp[j] * ra)
                    gsc[j] = kd * gh * (-(c * ra) - rb)
                    git = gc + gi[j]
                    gxt[j] = git
                    gal[j] += git * ip[j]
                    gbl[j] += gc * vp[j]
                    gi[j] = a[j] * git
                    gv[j] = b[j] * gc
            else:
                for j in range(n):
                    hh = ht[j]
                    sn = one if hh - vth >= zero else zero
                    gvt = gv[j] + grt[j]
                    gc = gvt * (one - sn * ra) + sg[j] * ((gst[j] + gsc[j]) + kd * gvt * (-(hh * ra) - rb))
                    gsc[j] = zero
                    git = gc + gi[j]
                    gxt[j] = git
                    gal[j] += git * ip[j]
                    gbl[j] += gc * vp[j]
                    gi[j] = a[j] * git
                    gv[j] = b[j] * gc
        gv0[lo:hi] = gv
        gi0[lo:hi] = gi
        gs0[lo:hi] = gsc
        ga_out[lo:hi] = gal
        gb_out[lo:hi] = gbl

    @njit(nogil=True, **_JIT)
    def _fwd_chunks(x, v0, i0, s0, alpha, beta, cst, deferred, record, save, chunk, c0, c1,
                    spikes, hsave, isave, trace, v_out, i_out, s_out):  # pragma: no cover - compiled
        M = x.shape[1]
        for c in range(c0, c1):
            _fwd_chunk(x, v0, i0, s0, alpha, beta, cst, deferred, record, save, c * chunk, min(M, (c + 1) * chunk),
                       spikes, hsave, isave, trace, v_out, i_out, s_out)

    @njit(nogil=True, **_JIT)
    def _bwd_chunks(x, h, isave, v0, i0, s0, alpha, beta, cst, sg_kind, deferred, has_gs, has_gtr, chunk, c0, c1,
                    gs, gtr, gvT, giT, gsT, gx, gv0, gi0, gs0, ga_out, gb_out):  # pragma: no cover - compiled
        M = x.shape[1]
        for c in range(c0, c1):
            _bwd_chunk(x, h, isave, v0, i0, s0, alpha, beta, cst, sg_kind, deferred, has_gs, has_gtr, c * chunk,
                       min(M, (c + 1) * chunk), gs, gtr, gvT, giT, gsT, gx, gv0, gi0, gs0, ga_out, gb_out)
