r"""A LIF layer followed by average pooling over tiling windows, fused on the CPU.

Backend ``"numba"`` of the ``"lif_avgpool"`` pair, which :class:`spike.synapses.Sequential` asks for
when a :class:`~spike.neurons.LIF` (or ``IF``) is followed by an :class:`~spike.synapses.AvgPool2d`
(the usual conv SNN block ``Conv2d -> LIF -> AvgPool2d(2)``). It computes the same thing as the two
layers, the LIF step of :func:`spike.neurons.lif.lif_step` (immediate reset)

.. math:: h_t = \beta v_{t-1} + g x_t,\quad s_t = H(h_t - v_{th}),\quad v_t = R(h_t, s_t)

and then :math:`y_t = \mathrm{avgpool}(s_t)`, but the spikes never leave the cache: each work item
(a block of whole pooling-window rows) steps its neurons, pools the step's spikes at once and keeps
only the pre-reset membrane for the backward pass. The backward expands the pooled gradient
(``0 + g / d``, what torch's pooling backward writes) into a small per-item buffer and runs the LIF's
one-pass backward on it. Neither the ``[T, B, C, H, W]`` spikes nor their gradient is ever written
to memory: two full-size tensors fewer per block in each direction.

Outputs, final state and gradients equal the two layers run separately bit for bit
(tests/equivalence/test_numba_lif_pool.py): the spikes are exactly 0 or 1, so each window's sum is
exact in any order, and the backward is the LIF kernel's own. Under the ``packed`` / ``mesa8``
memory modes it keeps what the LIF kernel keeps there (the input and the spikes as bits) and
recomputes the membranes per work item. What it does not cover (learnable ``tau``, deferred reset,
recording, recurrent weights, forward hooks on either layer, windows that do not tile)
:func:`supports` names, and ``Sequential`` runs the two layers one after the other.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit
from torch import Tensor, nn

from spike.backends import numba_lif as NL
from spike.backends import numba_pool as NP
from spike.backends._numba_lif_kernels import (_JIT, _ONE, _RA, _RB, _VREST, _VTH, _ZERO, _bwd_chunk_bits,
                                               _bwd_immediate, _tobits, step_immediate)
from spike.backends._pool import run_chunks
from spike.backends.numba_pool import _bwd, _bwd22, _fwd, _fwd22

__all__ = ["supports", "lif_avgpool"]

_SCRATCH_BYTES = 1 << 18  # a backward work item's [T, chunk] gradient buffer stays about this size (L2)


def _pool_args(pool) -> tuple:
    from torch.nn.modules.utils import _pair
    kernel = _pair(pool.kernel_size)
    stride = _pair(pool.stride) if pool.stride else kernel
    return kernel, stride, _pair(pool.padding), pool.ceil_mode, pool.count_include_pad, pool.divisor_override


def supports(params: tuple, x: Tensor) -> str | None:
    """``None`` if ``params = (lif, pool, state)`` on ``x [T, B, C, H, W]`` can run fused, else the reason."""
    from spike.neurons import lif as F
    from spike.neurons.modules import IF, LIF
    from spike.synapses.layers import AvgPool2d

    lif, pool, state = params
    if type(lif) not in (LIF, IF) or type(pool) is not AvgPool2d:
        return f"not a LIF / IF followed by an AvgPool2d ({type(lif).__name__}, {type(pool).__name__})"
    if lif.backend not in ("auto", "numba") or pool.backend not in ("auto", "numba"):
        return f"backends {lif.backend!r} / {pool.backend!r} asked for (auto or numba fuse)"
    if lif.log_tau is not None or lif.w_rec is not None:
        return "learnable tau or recurrent weights"
    if (lif._forward_hooks or lif._forward_pre_hooks or pool._forward_hooks or pool._forward_pre_hooks
            or nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks):
        return "forward hooks see each layer's output"
    if not isinstance(x, Tensor) or x.dim() != 5:
        return "input is not [T, B, C, H, W]"
    p = F.discretize(lif.params())
    reason = NL.supports(p, x)
    if reason is not None:
        return reason
    if p.deferred:
        return "deferred reset"
    for c in (p.beta, p.gain):
        if isinstance(c, Tensor) and c.requires_grad:
            return "beta / gain need a gradient"
    return NP.supports(_pool_args(pool), x[0])


@njit(inline="always", **_JIT)
def _item(c, chunk, M, R, wo):  # pragma: no cover - compiled
    # work item c: its neurons [lo, hi), its number of window rows (R neurons each), its first pooled index
    lo = c * chunk
    hi = min(M, lo + chunk)
    return lo, hi, (hi - lo) // R, (lo // R) * wo


@njit(nogil=True, **_JIT)
def _fwd_chunks(x, v0, beta, gain, cst, save_h, save_bits, kh, kw, W, pcst, chunk, c0, c1, hsave, sbits, pooled,
                v_out, s_out):  # pragma: no cover - compiled
    # neurons [c * chunk, (c + 1) * chunk) of x [T, M] (chunk a multiple of kh * W: whole window rows,
    # and of 8); pooled [T, M / (kh kw)]; hsave [T, M] when save_h; sbits: the spikes as bits
    # [T, ceil(M / 8)] when save_bits (the memory modes)
    T, M = x.shape
    R = kh * W
    wo = W // kw
    vth, vr, one, zero, ra, rb = cst[_VTH], cst[_VREST], cst[_ONE], cst[_ZERO], cst[_RA], cst[_RB]
    st = np.empty(chunk, x.dtype)  # one step's spikes of the item: never leave the cache
    for c in range(c0, c1):
        lo, hi, rows, p0 = _item(c, chunk, M, R, wo)
        n = hi - lo
        b = beta[lo:hi]
        g = gain[lo:hi]
        v = v0[lo:hi].copy()
        for t in range(T):
            step_immediate(x[t, lo:hi], b, g, v, st, hsave[t * save_h, lo:hi], save_h, n, vth, vr, one, zero, ra, rb)
            if save_bits:
                _tobits(st[:n], sbits[t], lo, zero)
            xs = st[:n].reshape((rows, kh, W))  # [window rows, kh, W]
            ys = pooled[t, p0:p0 + rows * wo].reshape((rows, 1, wo))  # their pooled rows
            if kh == 2 and kw == 2:
                _fwd22(xs, ys, pcst, 0, rows)
            else:
                _fwd(xs, ys, kh, kw, pcst, 0, rows)
        v_out[lo:hi] = v
        s_out[lo:hi] = st[:n]


@njit(inline="always", **_JIT)
def _expand(gp, gs, p0, rows, kh, kw, W, pcst):  # pragma: no cover - compiled
    # dL/dspikes of an item's neurons, every step: its pooled rows' gradient gp[:, p0:] spread as
    # 0 + g / d over each window (torch's pooling backward) into gs [T, >= rows * kh * W]
    wo = W // kw
    for t in range(gs.shape[0]):
        gps = gp[t, p0:p0 + rows * wo].reshape((rows, 1, wo))  # the pooled rows' gradient
        gss = gs[t, :rows * kh * W].reshape((rows, kh, W))  # -> their neurons'
        if kh == 2 and kw == 2:
            _bwd22(gps, gss, pcst, 0, rows)
        else:
            _bwd(gps, gss, kh, kw, pcst, 0, rows)


@njit(nogil=True, **_JIT)
def _bwd_chunks(h, cst, sg_kind, beta, gain, kh, kw, W, pcst, chunk, c0, c1, gp, gtr0, gvT, gsT, gx, gv0, gs0, gb,
                gg):  # pragma: no cover - compiled
    # each item: dL/dspikes of its neurons from the pooled gradient gp [T, M / (kh kw)] into a
    # [T, chunk] buffer (0 + g / d over each window, torch's pooling backward), then the LIF backward
    T, M = h.shape
    R = kh * W
    wo = W // kw
    gs = np.empty((T, chunk), h.dtype)
    for c in range(c0, c1):
        lo, hi, rows, p0 = _item(c, chunk, M, R, wo)
        _expand(gp, gs, p0, rows, kh, kw, W, pcst)
        _bwd_immediate(h, cst, sg_kind, beta, gain, 1, 0, lo, hi, gs, lo, gtr0, gvT, gsT, gx, gv0, gs0, gb, gg)


@njit(nogil=True, **_JIT)
def _bwd_chunks_bits(x, spk, v0, beta, gain, cst, sg_kind, kh, kw, W, pcst, chunk, c0, c1, gp, gtr0, gvT, gsT, gx, gv0,
                     gs0, gb, gg):  # pragma: no cover - compiled
    # the memory modes: each item recomputes its membranes from x and the saved spike bits (the LIF
    # kernel's lean backward, _bwd_chunk_bits) with dL/dspikes expanded from gp as in _bwd_chunks;
    # gx may be x's own (restored) buffer: each item reads its x before writing its gx
    T, M = x.shape
    R = kh * W
    wo = W // kw
    gs = np.empty((T, chunk), x.dtype)
    hbuf = np.empty((T, chunk), x.dtype)
    s0 = gtr0[0]  # zeros: the immediate reset never reads s0
    for c in range(c0, c1):
        lo, hi, rows, p0 = _item(c, chunk, M, R, wo)
        _expand(gp, gs, p0, rows, kh, kw, W, pcst)
        _bwd_chunk_bits(x, spk, v0, s0, beta, gain, cst, sg_kind, 0, 1, 1, 0, 0, 0, lo, hi, gs, lo, gtr0, gvT, gsT, gx,
                        gv0, gs0, gb, gg, hbuf)


def _geometry(T: int, M: int, kh: int, W: int, itemsize: int, nthreads: int) -> int:
    """Neurons per work item: whole window rows (a multiple of 8, for the spike bits), a few KiB per time
    row, a [T, chunk] backward buffer of about :data:`_SCRATCH_BYTES`, and enough items for every thread."""
    R = math.lcm(kh * W, 8)
    want = min(NL._CHUNK_BYTES // itemsize, _SCRATCH_BYTES // (itemsize * max(T, 1)), -(-M // max(nthreads, 1)))
    return max(R, (want // R) * R)


class _LIFPoolFn(torch.autograd.Function):
    """``(x [T, M], v0 [M], beta [M], gain [M]) -> (pooled [T, P], v_T [M], s_T [M])``.

    Keeps what the LIF kernel keeps (:class:`spike.backends.numba_lif._LIFFunction`): plain BPTT, ``x``
    and the pre-reset membrane ``h`` (rows ``0..T-1`` of a ``[T+1, M]`` buffer whose rows ``1..T`` the
    backward reuses for ``dL/dx``); under the ``packed`` / ``mesa8`` hooks, ``x`` and the spikes as
    bits, the membranes recomputed per work item in the backward."""

    @staticmethod
    def forward(ctx, x2, v0, beta_m, gain_m, run):  # type: ignore[override]
        lean = getattr(NL._PRIVATE, "depth", 0) > 0
        pooled, v_t, s_t, kept = run(x2, v0, beta_m, gain_m, "bits" if lean else "h")
        ctx.save_for_backward(x2, kept, v0, beta_m, gain_m)
        ctx.run, ctx.h_used, ctx.lean = run, False, lean
        ctx.x_ptr = x2.data_ptr() if lean else None  # lean: dL/dx may go over a restored copy of x, never x
        return pooled, v_t, s_t

    @staticmethod
    def backward(ctx, gp, gvT, gsT):  # type: ignore[override]
        x2, kept, v0, beta_m, gain_m = ctx.saved_tensors
        run = ctx.run
        T, M = x2.shape
        z = NL._full(M, 0.0, x2.dtype)
        gp = torch.zeros(run.pooled_shape, dtype=x2.dtype) if gp is None else gp.contiguous()
        gvT = z if gvT is None else gvT.contiguous()
        gsT = z if gsT is None else gsT.contiguous()
        gv0, gs0, gb, gg = (torch.empty(M, dtype=x2.dtype) for _ in range(4))
        if ctx.lean:
            restored = x2.data_ptr() != ctx.x_ptr and x2.is_contiguous()
            gx = x2 if restored else NL._empty((T, M), x2.dtype)
            run.backward_bits(x2, kept, v0, beta_m, gain_m, gp.view(T, -1), z.view(1, M), gvT, gsT, gx, gv0, gs0,
                              gb, gg)
        else:
            hbuf = kept
            if ctx.h_used:  # a second backward (retain_graph=True): the first wrote dL/dx over h's rows 1..T
                hbuf = run(x2, v0, beta_m, gain_m, "h")[3]
            ctx.h_used = True
            gx = hbuf.as_strided((T, M), (M, 1), hbuf.storage_offset() + M)  # rows 1..T of the buffer
            run.backward(hbuf[:T], beta_m, gain_m, gp.view(T, -1), z.view(1, M), gvT, gsT, gx, gv0, gs0, gb, gg)
        return gx, (gv0 if ctx.needs_input_grad[1] else None), None, None, None


class _Run:
    """The kernels' constants for one call; forward / backward launches over the thread pool."""

    def __init__(self, p, x: Tensor, kernel: tuple[int, int], divisor: float):
        T, B, C, H, W = x.shape
        self.T, self.M = T, B * C * H * W
        self.kh, self.kw, self.W = kernel[0], kernel[1], W
        self.cst, self.sg_kind, _, _, self.nthreads, _ = NL._config(p, x.dtype, T, self.M, True)
        np_dtype = self.cst.dtype
        self.pcst = np.array([0.0, divisor], dtype=np_dtype)
        self.chunk = _geometry(T, self.M, self.kh, W, np_dtype.itemsize, self.nthreads)
        self.n_items = -(-self.M // self.chunk)
        self.pooled_shape = (T, B, C, H // kernel[0], W // kernel[1])
        self.dtype = x.dtype

    def __call__(self, x2, v0, beta_m, gain_m, save: str | None):
        """Forward: ``(pooled, v_T, s_T, kept)``, ``kept`` the ``[T+1, M]`` membrane buffer (``save="h"``),
        the spike bits (``"bits"``) or a scratch row (``None``)."""
        T, M = self.T, self.M
        pooled = torch.empty(self.pooled_shape, dtype=self.dtype)
        hbuf = NL._empty((T + 1, M), self.dtype) if save == "h" else None
        bits = torch.empty(T, (M + 7) // 8, dtype=torch.uint8) if save == "bits" else None
        v_t, s_t = self.forward_into(x2, v0, beta_m, gain_m, pooled.view(T, -1), hbuf, bits)
        return pooled, v_t, s_t, (bits if save == "bits" else hbuf)

    def forward_into(self, x2, v0, beta_m, gain_m, pooled2, hsave=None, bits=None):
        """The forward kernel over the ``T'`` rows of ``x2 [T', M]`` (any ``T'``: a time chunk of a longer
        sequence continues from ``v0``), writing ``pooled2 [T', P]`` and, when given, the pre-reset
        membranes into ``hsave`` (rows ``0..T'-1``) or the spikes as bits into ``bits [T', ceil(M/8)]``;
        returns the final ``(v, s)``."""
        M = self.M
        v_t = torch.empty(M, dtype=self.dtype)
        s_t = torch.empty(M, dtype=self.dtype)
        head = (NL._np(x2), NL._np(v0), NL._np(beta_m), NL._np(gain_m), self.cst, int(hsave is not None),
                int(bits is not None), self.kh, self.kw, self.W, self.pcst, self.chunk)
        hs = hsave if hsave is not None else torch.empty(1, M, dtype=self.dtype)
        bs = bits if bits is not None else torch.empty(1, (M + 7) // 8, dtype=torch.uint8)
        tail = (hs.numpy(), bs.numpy(), pooled2.numpy(), v_t.numpy(), s_t.numpy())
        run_chunks(lambda c0, c1: _fwd_chunks(*head, c0, c1, *tail), self.n_items, self.nthreads)
        return v_t, s_t

    def backward_bits(self, x2, bits, v0, beta_m, gain_m, gp, gtr0, gvT, gsT, gx, gv0, gs0, gb, gg) -> None:
        head = (NL._np(x2), bits.numpy(), NL._np(v0), NL._np(beta_m), NL._np(gain_m), self.cst, self.sg_kind, self.kh,
                self.kw, self.W, self.pcst, self.chunk)
        tail = (NL._np(gp), gtr0.numpy(), NL._np(gvT), NL._np(gsT), gx.detach().numpy(), gv0.numpy(), gs0.numpy(),
                gb.numpy(), gg.numpy())
        run_chunks(lambda c0, c1: _bwd_chunks_bits(*head, c0, c1, *tail), self.n_items, self.nthreads)

    def backward(self, h, beta_m, gain_m, gp, gtr0, gvT, gsT, gx, gv0, gs0, gb, gg) -> None:
        head = (NL._np(h), self.cst, self.sg_kind, NL._np(beta_m), NL._np(gain_m), self.kh, self.kw, self.W,
                self.pcst, self.chunk)
        tail = (NL._np(gp), gtr0.numpy(), NL._np(gvT), NL._np(gsT), gx.numpy(), gv0.numpy(), gs0.numpy(),
                gb.numpy(), gg.numpy())
        run_chunks(lambda c0, c1: _bwd_chunks(*head, c0, c1, *tail), self.n_items, self.nthreads)


def lif_avgpool(lif, pool, x: Tensor, state):
    """``pool(lif(x, state).spikes)`` and the LIF's final state, fused (see the module docstring).

    Returns:
        ``(pooled [T, B, C, H', W'], LIFState)``.
    """
    from spike.neurons import lif as F

    p = lif.check_input(x, state)
    kernel, _, _, _, _, divisor_override = _pool_args(pool)
    run = _Run(p, x, kernel, float(divisor_override or kernel[0] * kernel[1]))
    T, M = run.T, run.M
    step_shape = tuple(x.shape[1:])
    x2 = x.contiguous().view(T, M)  # [T, B, C, H, W] -> [T, M]
    if state is None:
        v0 = NL._full(M, p.v_rest, x.dtype)
    else:
        v0 = state.v.reshape(M).contiguous()  # [B, C, H, W] -> [M]
    beta_m = NL._per_neuron(p.beta, step_shape, x.dtype)
    gain_m = NL._per_neuron(p.gain, step_shape, x.dtype)
    if torch.is_grad_enabled() and (x2.requires_grad or v0.requires_grad):
        pooled, v_t, s_t = _LIFPoolFn.apply(x2, v0, beta_m, gain_m, run)
    else:
        pooled, v_t, s_t, _ = run(x2, v0, beta_m, gain_m, None)
    return pooled.view(run.pooled_shape), F.LIFState(v_t.view(step_shape), s_t.view(step_shape))
