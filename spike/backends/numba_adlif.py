r"""Fused CPU SE-adLIF backend (registered as ``"numba"`` for ``"adlif"``): one numba loop each way.

Same layout as :mod:`spike.backends.numba_cuba` (``[T, M]`` view, chunks of neurons walking time,
helpers shared from there). The forward pass repeats :func:`spike.neurons.adlif.adlif_step` operation
by operation in ``x``'s dtype (spikes bit-identical to the reference scan):

.. math::
    h_t = \alpha u_{t-1} + \bar\alpha (x_t - w_{t-1}),\quad s_t = H(h_t - \vartheta),\quad
    u_t = R(h_t, s_t),\quad w_t = \beta w_{t-1} + \bar\beta (q_a u_t + q_b s_t)

with :math:`\bar\alpha = 1 - \alpha`, :math:`\bar\beta = 1 - \beta` computed by torch exactly as the
reference does (a float decay in double precision, a learnable one in the tensor's dtype) and passed
to the kernel as separate coefficients, so autograd chains their gradients back to ``tau``, ``tau_w``,
``a``, ``b``. Saved for backward: the charge ``h`` and the adaptation ``w`` (``[T, M]`` each); the
reverse loop is

.. math::
    \bar w_t &\text{ (carried)},\quad \bar u_t \mathrel{+}= \bar\beta q_a \bar w_t,\quad
    \bar s_t \mathrel{+}= \bar\beta q_b \bar w_t \\
    \bar h_t &= \bar u_t \partial_h R + \sigma'_t(\bar s_t + \bar u_t \partial_s R),\quad
    \bar x_t = \bar\alpha \bar h_t,\quad \bar u_{t-1} = \alpha \bar h_t,\quad
    \bar w_{t-1} = \beta \bar w_t - \bar\alpha \bar h_t

plus the per-neuron sums for :math:`\alpha, \bar\alpha, \beta, \bar\beta, q_a, q_b`. ``detach_reset``
drops :math:`\partial R/\partial s` only (the spike still drives :math:`w` through :math:`q_b`, as in the
reference). ``dL/dx`` is written over the saved ``w``. Not supported (clear
:class:`~spike.core.registry.BackendError`): recurrent weights, non-CPU tensors, dtypes other than
float32/float64, coefficients not broadcastable to the feature shape, surrogates without a numba kernel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spike.backends.numba_cuba import (KD, ONE, RA, RB, SG1, SG2, VTH, ZERO, as_np, check_common, config,
                                       flat_state, launch, numba, per_neuron, prefers, state_grad, time_grad)
from spike.core.registry import BackendError
from spike.neurons.adlif import AdLIFDiscrete, AdLIFState

__all__ = ["supports", "prefers", "multi_step"]


def _one_minus(c):
    """``1 - c`` as the reference computes it (a float in double precision, a tensor in its dtype)."""
    return 1.0 - c


def supports(p: AdLIFDiscrete, x: Tensor) -> str | None:
    """``None`` if the fused kernel runs ``p`` on ``x`` exactly like the reference, else the reason."""
    return check_common(x, p.w_rec, p.surrogate,
                        (("alpha", p.alpha), ("beta", p.beta), ("qa", p.qa), ("qb", p.qb)))


def multi_step(x: Tensor, state: AdLIFState | None, p: AdLIFDiscrete,
               record: bool = False) -> tuple[Tensor, AdLIFState, Tensor | None]:
    """Fused multi-step SE-adLIF over ``x: [T, B, ...]``; same contract and results as the reference.

    Args:
        x: input ``[T, B, *features]`` (float32/float64, CPU).
        state: initial :class:`~spike.neurons.adlif.AdLIFState` shaped like ``x[0]``, or ``None`` (rest).
        p: discretised parameters (:func:`spike.neurons.adlif.discretize`).
        record: also return the membrane ``u`` after every step.

    Returns:
        ``(spikes [T, B, ...], final AdLIFState, trace [T, B, ...] or None)``.

    Raises:
        BackendError: if :func:`supports` rejects the configuration or ``state`` does not match ``x``.
    """
    reason = supports(p, x)
    if reason is not None:
        raise BackendError(f"backend 'numba' cannot run this adlif configuration: {reason}")
    T, step_shape = x.shape[0], tuple(x.shape[1:])
    M = math.prod(step_shape)
    x2 = x.contiguous().view(T, M)
    u0, w0, _ = flat_state(state, ("v", "w", "s"), step_shape, x, M, "adlif")  # s0 unused without w_rec
    coefs = [per_neuron(c, step_shape, x.dtype)
             for c in (p.alpha, _one_minus(p.alpha), p.beta, _one_minus(p.beta), p.qa, p.qb)]
    cfg = config(p.surrogate, p.reset, p.v_th, p.v_reset, p.detach_reset, x.dtype, T, M)
    inputs = (x2, u0, w0, *coefs)
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        spikes, u_t, w_t, s_t, trace = _AdLIFFunction.apply(*inputs, cfg, record)
    else:  # inference: no autograd node, nothing saved
        spikes, u_t, w_t, s_t, trace, _, _ = _forward(*inputs, cfg, record, save=False)
    final = AdLIFState(u_t.view(step_shape), w_t.view(step_shape), s_t.view(step_shape))
    return spikes.view(x.shape), final, (trace.view(x.shape) if record else None)


def _forward(x2, u0, w0, a, oa, b, ob, qa, qb, cfg, record: bool, save: bool):
    """Run the forward kernel: ``(spikes, u_T, w_T, s_T, trace, h, w)`` (unsaved/unrecorded: one scratch row)."""
    cst, _, chunk, nthreads = cfg
    T, M = x2.shape
    spikes = torch.empty_like(x2)
    rows = T if save else 1
    h = torch.empty(rows, M, dtype=x2.dtype)
    wsave = torch.empty(rows, M, dtype=x2.dtype)
    trace = torch.empty(T if record else 1, M, dtype=x2.dtype)
    u_t, w_t, s_t = (torch.empty_like(u0) for _ in range(3))
    head = (as_np(x2), as_np(u0), as_np(w0), as_np(a), as_np(oa), as_np(b), as_np(ob), as_np(qa), as_np(qb), cst,
            int(record), int(save), chunk)
    tail = (spikes.numpy(), h.numpy(), wsave.numpy(), trace.numpy(), u_t.numpy(), w_t.numpy(), s_t.numpy())
    launch(lambda c0, c1: _fwd_chunks(*head, c0, c1, *tail), M, chunk, nthreads)
    return spikes, u_t, w_t, s_t, trace, h, wsave


class _AdLIFFunction(torch.autograd.Function):
    """``(x, u0, w0, alpha, 1-alpha, beta, 1-beta, qa, qb) -> (spikes [T,M], u_T, w_T, s_T [M], trace)``."""

    @staticmethod
    def forward(ctx, x2, u0, w0, a, oa, b, ob, qa, qb, cfg, record):  # type: ignore[override]
        spikes, u_t, w_t, s_t, trace, h, wsave = _forward(x2, u0, w0, a, oa, b, ob, qa, qb, cfg, record, save=True)
        ctx.save_for_backward(x2, h, wsave, u0, w0, a, oa, b, ob, qa, qb)
        ctx.cfg = cfg
        ctx.overwritten = False
        ctx.set_materialize_grads(False)
        return spikes, u_t, w_t, s_t, (trace if record else trace[:0])

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spikes, g_u, g_w, g_s, g_trace):  # type: ignore[override]
        x2, h, wsave, u0, w0, a, oa, b, ob, qa, qb = ctx.saved_tensors
        cst, sg_kind, chunk, nthreads = ctx.cfg
        T, M = x2.shape
        if ctx.overwritten:  # a second backward (retain_graph=True): the first wrote dL/dx over `wsave`
            _, _, _, _, _, h, wsave = _forward(x2, u0, w0, a, oa, b, ob, qa, qb, ctx.cfg, False, save=True)
        ctx.overwritten = True
        gs, has_gs = time_grad(g_spikes, M, x2.dtype)
        gtr, has_gtr = time_grad(g_trace, M, x2.dtype)
        guT, gwT, gsT = (state_grad(g, M, x2.dtype) for g in (g_u, g_w, g_s))
        gx = wsave  # row t of the saved adaptation is dead once step t is done
        grads = [torch.empty_like(u0) for _ in range(8)]  # u0, w0, a, oa, b, ob, qa, qb
        head = (as_np(x2), h.numpy(), wsave.numpy(), as_np(u0), as_np(w0), as_np(a), as_np(oa), as_np(b),
                as_np(ob), as_np(qa), as_np(qb), cst, sg_kind, has_gs, has_gtr, chunk)
        tail = (as_np(gs), as_np(gtr), as_np(guT), as_np(gwT), as_np(gsT), gx.numpy(), *(g.numpy() for g in grads))
        launch(lambda c0, c1: _bwd_chunks(*head, c0, c1, *tail), M, chunk, nthreads)
        need = ctx.needs_input_grad
        return (gx if need[0] else None, *(g if n else None for g, n in zip(grads, need[1:9])), None, None)


if numba is not None:
    import numpy as np
    from numba import njit

    from spike.backends._numba_lif_kernels import surrogate_grad

    _JIT = dict(cache=True, fastmath=False, error_model="numpy")  # exact IEEE order, no zero-div checks

    @njit(**_JIT)
    def _fwd_chunk(x, u0, w0, a, oa, b, ob, qa, qb, cst, record, save, lo, hi,
                   spikes, hsave, wsave, trace, u_out, w_out, s_out):  # pragma: no cover - compiled
        T = x.shape[0]
        vth, one, zero, ra, rb = cst[VTH], cst[ONE], cst[ZERO], cst[RA], cst[RB]
        al, oal, be, obe, qal, qbl = a[lo:hi], oa[lo:hi], b[lo:hi], ob[lo:hi], qa[lo:hi], qb[lo:hi]
        u = u0[lo:hi].copy()
        w = w0[lo:hi].copy()
        s = np.zeros(hi - lo, x.dtype)
        for t in range(T):
            xt = x[t, lo:hi]
            st = spikes[t, lo:hi]
            ht = hsave[t * save, lo:hi]
            wt = wsave[t * save, lo:hi]
            rt = trace[t * record, lo:hi]
            for j in range(hi - lo):
                hh = al[j] * u[j] + oal[j] * (xt[j] - w[j])
                sn = one if hh - vth >= zero else zero
                un = hh * (one - sn * ra) - sn * rb
                wn = be[j] * w[j] + obe[j] * (qal[j] * un + qbl[j] * sn)
                st[j] = sn
                ht[j] = hh
                wt[j] = wn
                rt[j] = un
                u[j] = un
                w[j] = wn
                s[j] = sn
        u_out[lo:hi] = u
        w_out[lo:hi] = w
        s_out[lo:hi] = s

    @njit(**_JIT)
    def _bwd_chunk(x, h, wsave, u0, w0, a, oa, b, ob, qa, qb, cst, sg_kind, has_gs, has_gtr, lo, hi,
                   gs, gtr, guT, gwT, gsT, gx, gu0, gw0, ga, goa, gb, gob, gqa, gqb):  # pragma: no cover
        # neurons lo:hi, time reversed. gx may be wsave itself: step t writes row t and reads row t-1 only.
        T = x.shape[0]
        n = hi - lo
        vth, one, zero, ra, rb, kd = cst[VTH], cst[ONE], cst[ZERO], cst[RA], cst[RB], cst[KD]
        c1, c2 = cst[SG1], cst[SG2]
        al, oal, be, obe, qal, qbl = a[lo:hi], oa[lo:hi], b[lo:hi], ob[lo:hi], qa[lo:hi], qb[lo:hi]
        gu = guT[lo:hi].copy()   # dL/du_t from the future
        gw = gwT[lo:hi].copy()   # dL/dw_t from the future
        gsc = gsT[lo:hi].copy()  # dL/ds_t from the final state
        sg = np.empty(n, x.dtype)
        up = np.empty(n, x.dtype)
        wp = np.empty(n, x.dtype)
        acc = np.zeros((6, n), x.dtype)  # sums for a, oa, b, ob, qa, qb
        for t in range(T - 1, -1, -1):
            ht = h[t, lo:hi]
            xt = x[t, lo:hi]
            gst = gs[t * has_gs, lo:hi]
            grt = gtr[t * has_gtr, lo:hi]
            surrogate_grad(ht, vth, sg_kind, c1, c2, one, zero, sg)
            if t == 0:
                up[:] = u0[lo:hi]
                wp[:] = w0[lo:hi]
            else:  # state before step t: u from the saved charge, w saved
                hp = h[t - 1, lo:hi]
                wpr = wsave[t - 1, lo:hi]
                for j in range(n):
                    sq = one if hp[j] - vth >= zero else zero
                    up[j] = hp[j] * (one - sq * ra) - sq * rb
                    wp[j] = wpr[j]
            gxt = gx[t, lo:hi]
            for j in range(n):
                hh = ht[j]
                sn = one if hh - vth >= zero else zero
                un = hh * (one - sn * ra) - sn * rb
                gwt = gw[j]
                gwo = gwt * obe[j]
                gut = gu[j] + grt[j] + gwo * qal[j]
                gstt = gst[j] + gsc[j] + gwo * qbl[j]
                gh = gut * (one - sn * ra) + sg[j] * (gstt + kd * gut * (-(hh * ra) - rb))
                acc[0, j] += gh * up[j]
                acc[1, j] += gh * (xt[j] - wp[j])
                acc[2, j] += gwt * wp[j]
                acc[3, j] += gwt * (qal[j] * un + qbl[j] * sn)
                acc[4, j] += gwo * un
                acc[5, j] += gwo * sn
                gxt[j] = gh * oal[j]
                gu[j] = al[j] * gh
                gw[j] = be[j] * gwt - oal[j] * gh
                gsc[j] = zero
        gu0[lo:hi] = gu
        gw0[lo:hi] = gw
        ga[lo:hi] = acc[0]
        goa[lo:hi] = acc[1]
        gb[lo:hi] = acc[2]
        gob[lo:hi] = acc[3]
        gqa[lo:hi] = acc[4]
        gqb[lo:hi] = acc[5]

    @njit(nogil=True, **_JIT)
    def _fwd_chunks(x, u0, w0, a, oa, b, ob, qa, qb, cst, record, save, chunk, c0, c1,
                    spikes, hsave, wsave, trace, u_out, w_out, s_out):  # pragma: no cover - compiled
        M = x.shape[1]
        for c in range(c0, c1):
            _fwd_chunk(x, u0, w0, a, oa, b, ob, qa, qb, cst, record, save, c * chunk, min(M, (c + 1) * chunk),
                       spikes, hsave, wsave, trace, u_out, w_out, s_out)

    @njit(nogil=True, **_JIT)
    def _bwd_chunks(x, h, wsave, u0, w0, a, oa, b, ob, qa, qb, cst, sg_kind, has_gs, has_gtr, chunk, c0, c1,
                    gs, gtr, guT, gwT, gsT, gx, gu0, gw0, ga, goa, gb, gob, gqa, gqb):  # pragma: no cover
        M = x.shape[1]
        for c in range(c0, c1):
            _bwd_chunk(x, h, wsave, u0, w0, a, oa, b, ob, qa, qb, cst, sg_kind, has_gs, has_gtr, c * chunk,
                       min(M, (c + 1) * chunk), gs, gtr, guT, gwT, gsT, gx, gu0, gw0, ga, goa, gb, gob, gqa, gqb)
