r"""Fused multi-step LIF/IF kernels in Triton: one launch walks all T steps forward, one walks them back.

Backend ``"triton"`` of the ``"lif"`` model (see :mod:`spike.core.registry`); the reference is
:func:`spike.neurons.lif.multi_step`, and the update is the one in :mod:`spike.neurons.lif`:

.. math::
    h_t = v_\text{rest} + \beta (v_{t-1} - v_\text{rest}) + g x_t,\quad s_t = H(h_t - \theta),\quad v_t = R(h_t, s_t)

(``reset_timing="immediate"``) or :math:`v_t = h_t = R(\cdot, s_{t-1}) + g x_t` (``"deferred"``).

Contract: ``x`` is ``[T, B, *F]`` and is viewed as ``[T, M]`` with ``M = B * prod(F)``; each program
owns ``BLOCK`` neurons and keeps their membrane in registers for all T steps. The forward pass writes
the spikes and the pre-reset membrane ``h`` (float32, the only thing backward needs: spikes and the
previous membrane are recomputed from it); the backward pass walks time in reverse and writes the
input gradient plus per-element gradients of ``beta`` and ``gain``, which are reduced over the batch
in torch (no atomics). All arithmetic is float32 (``bfloat16``/``float16`` inputs are up-cast on
load and the spikes cast back), and multiply-add fusion is disabled on the GPU so that spikes are
bit-identical to the reference computed in float32.

On a CPU the kernels run in Triton's interpreter when ``TRITON_INTERPRET=1`` is set (slow; for
testing the kernel logic without a GPU). Not supported (clear error; ``backend="auto"`` uses the
reference path): the recurrent weight, float64 inputs on CUDA, ``beta``/``gain`` tensors that are not
scalars or shaped like the feature dimensions.
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

import triton
import triton.language as tl

from spike.neurons.lif import LIFDiscrete, LIFState

__all__ = ["supports", "multi_step", "multi_step_spatial"]

_RESET = {"subtract": 0, "to_value": 1, "none": 2}
_SURROGATE = {"atan": 0, "sigmoid": 1, "fast_sigmoid": 2, "triangle": 3}
_BLOCK = 256


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0", "false", "False")


def _feature_numel(p_val, feat: tuple[int, ...]) -> str | None:
    if not isinstance(p_val, Tensor):
        return None
    if p_val.numel() == 1 or tuple(p_val.shape) == feat or (p_val.dim() == 1 and p_val.numel() == math.prod(feat)
                                                             and len(feat) == 1):
        return None
    return f"parameter tensor of shape {tuple(p_val.shape)} is neither a scalar nor the feature shape {feat}"


def supports(p: LIFDiscrete, x: Tensor) -> str | None:
    """``None`` if the Triton kernels can run ``p`` on ``x``, else the reason."""
    if p.w_rec is not None:
        return "the recurrent weight needs a matmul per step (not fused); use backend='reference'"
    if x.device.type == "cuda":
        if x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            return f"dtype {x.dtype} (the kernels support float32, bfloat16, float16)"
    elif x.device.type == "cpu":
        if not _interpreting():
            return "a CPU tensor: the Triton kernels need CUDA (or TRITON_INTERPRET=1 to run them interpreted)"
        if x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            return f"dtype {x.dtype}"
    else:
        return f"device {x.device.type}"
    if p.surrogate.kernel_spec[0] not in _SURROGATE:
        return f"surrogate {p.surrogate.kernel_spec[0]!r} has no kernel implementation"
    feat = tuple(x.shape[2:])
    for name in ("beta", "gain"):
        reason = _feature_numel(getattr(p, name), feat)
        if reason:
            return f"{name}: {reason}"
    return None


# --------------------------------------------------------------------------------------------------
# kernels (plain functions, jitted on first use: compiled for CUDA, or interpreted on the CPU)
# --------------------------------------------------------------------------------------------------


def _surrogate_grad(u, SUR: tl.constexpr, a):
    if SUR == 0:  # atan: (a/2) / (1 + (pi/2 a u)^2)
        z = 1.5707963267948966 * a * u
        g = (0.5 * a) / (1.0 + z * z)
    elif SUR == 1:  # sigmoid: a s (1 - s)
        sg = 1.0 / (1.0 + tl.exp(-a * u))
        g = a * sg * (1.0 - sg)
    elif SUR == 2:  # fast sigmoid: 1 / (1 + a|u|)^2
        d = 1.0 + a * tl.abs(u)
        g = 1.0 / (d * d)
    else:  # triangle: max(0, 1 - |u|/a) / a
        g = tl.maximum(1.0 - tl.abs(u) / a, 0.0) / a
    return g


def _reset(h, s, v_th, v_reset, RESET: tl.constexpr):
    if RESET == 0:
        r = h - s * v_th
    elif RESET == 1:
        r = h * (1.0 - s) + s * v_reset
    else:
        r = h
    return r


def _lif_fwd(x_ptr, v0_ptr, s0_ptr, beta_ptr, gain_ptr, spk_ptr, h_ptr, tr_ptr, vT_ptr, sT_ptr,
             T, M, N, v_th, v_reset, v_rest,
             RESET: tl.constexpr, DEFERRED: tl.constexpr, SAVE_H: tl.constexpr, RECORD: tl.constexpr,
             BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    n = offs % N
    beta = tl.load(beta_ptr + n, mask=mask, other=0.0)
    gain = tl.load(gain_ptr + n, mask=mask, other=0.0)
    v = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    s = tl.load(s0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    for t in range(T):
        base = t * M
        x = tl.load(x_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
        leak = v_rest + beta * (v - v_rest)
        drive = gain * x
        if DEFERRED:
            h = _reset(leak, s, v_th, v_reset, RESET) + drive
            s = tl.where(h - v_th >= 0.0, 1.0, 0.0)
            v = h
        else:
            h = leak + drive
            s = tl.where(h - v_th >= 0.0, 1.0, 0.0)
            v = _reset(h, s, v_th, v_reset, RESET)
        tl.store(spk_ptr + base + offs, s.to(spk_ptr.dtype.element_ty), mask=mask)
        if SAVE_H:
            tl.store(h_ptr + base + offs, h, mask=mask)
        if RECORD:
            tl.store(tr_ptr + base + offs, v.to(tr_ptr.dtype.element_ty), mask=mask)
    tl.store(vT_ptr + offs, v.to(vT_ptr.dtype.element_ty), mask=mask)
    tl.store(sT_ptr + offs, s.to(sT_ptr.dtype.element_ty), mask=mask)


def _lif_bwd(gspk_ptr, gtr_ptr, gvT_ptr, gsT_ptr, h_ptr, x_ptr, v0_ptr, s0_ptr, beta_ptr, gain_ptr,
             gx_ptr, gv0_ptr, gs0_ptr, gbeta_ptr, ggain_ptr,
             T, M, N, v_th, v_reset, v_rest, sur_a,
             RESET: tl.constexpr, DEFERRED: tl.constexpr, DETACH: tl.constexpr, SUR: tl.constexpr,
             HAS_GTR: tl.constexpr, NEED_GGAIN: tl.constexpr, TEMPORAL: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    n = offs % N
    beta = tl.load(beta_ptr + n, mask=mask, other=0.0)
    gain = tl.load(gain_ptr + n, mask=mask, other=0.0)
    v0 = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    s0 = tl.load(s0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    carry_v = tl.load(gvT_ptr + offs, mask=mask, other=0.0).to(tl.float32)  # dL/dv_t from the future
    carry_s = tl.load(gsT_ptr + offs, mask=mask, other=0.0).to(tl.float32)  # dL/ds_t from the future
    gbeta = tl.full([BLOCK], 0.0, tl.float32)
    ggain = tl.full([BLOCK], 0.0, tl.float32)
    for i in range(T):
        t = T - 1 - i
        base = t * M
        h = tl.load(h_ptr + base + offs, mask=mask, other=0.0)
        s = tl.where(h - v_th >= 0.0, 1.0, 0.0)
        sg = _surrogate_grad(h - v_th, SUR, sur_a)
        gs = tl.load(gspk_ptr + base + offs, mask=mask, other=0.0).to(tl.float32) + carry_s
        gv = carry_v
        if HAS_GTR:
            gv += tl.load(gtr_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
        # previous membrane and spikes (recomputed from the saved pre-reset membrane)
        has_prev = t > 0
        base_prev = tl.maximum(t - 1, 0) * M
        h_prev = tl.load(h_ptr + base_prev + offs, mask=mask, other=0.0)  # row 0 again at t = 0 (unused)
        s_prev = tl.where(has_prev, tl.where(h_prev - v_th >= 0.0, 1.0, 0.0), s0)
        if DEFERRED:
            v_prev = tl.where(has_prev, h_prev, v0)
            gh = gs * sg + gv  # v_t = h_t
            leak = v_rest + beta * (v_prev - v_rest)
            if RESET == 0:
                dr_da = tl.full([BLOCK], 1.0, tl.float32)
                dr_ds = tl.full([BLOCK], -v_th, tl.float32)
            elif RESET == 1:
                dr_da = 1.0 - s_prev
                dr_ds = v_reset - leak
            else:
                dr_da = tl.full([BLOCK], 1.0, tl.float32)
                dr_ds = tl.full([BLOCK], 0.0, tl.float32)
            g_leak = gh * dr_da
            carry_v = g_leak * beta
            if DETACH:
                carry_s = tl.full([BLOCK], 0.0, tl.float32)
            else:
                carry_s = gh * dr_ds
        else:
            if RESET == 0:
                if DETACH:
                    dv_dh = tl.full([BLOCK], 1.0, tl.float32)
                else:
                    dv_dh = 1.0 - v_th * sg
            elif RESET == 1:
                if DETACH:
                    dv_dh = 1.0 - s
                else:
                    dv_dh = (1.0 - s) + (v_reset - h) * sg
            else:
                dv_dh = tl.full([BLOCK], 1.0, tl.float32)
            gh = gs * sg + gv * dv_dh
            v_prev = tl.where(has_prev, _reset(h_prev, s_prev, v_th, v_reset, RESET), v0)
            g_leak = gh
            carry_v = g_leak * beta
            carry_s = tl.full([BLOCK], 0.0, tl.float32)  # s_{t-1} does not enter step t
        if not TEMPORAL:  # SLTT: the state entering step t is a constant, nothing flows to step t-1
            carry_v = tl.full([BLOCK], 0.0, tl.float32)
            carry_s = tl.full([BLOCK], 0.0, tl.float32)
        gbeta += g_leak * (v_prev - v_rest)
        if NEED_GGAIN:
            x = tl.load(x_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
            ggain += gh * x
        tl.store(gx_ptr + base + offs, (gh * gain).to(gx_ptr.dtype.element_ty), mask=mask)
    tl.store(gv0_ptr + offs, carry_v.to(gv0_ptr.dtype.element_ty), mask=mask)
    tl.store(gs0_ptr + offs, carry_s.to(gs0_ptr.dtype.element_ty), mask=mask)
    tl.store(gbeta_ptr + offs, gbeta, mask=mask)
    if NEED_GGAIN:
        tl.store(ggain_ptr + offs, ggain, mask=mask)


_JITTED: dict = {}


def _kernel(name: str, interpret: bool):
    """The kernel ``name`` jitted for CUDA, or wrapped for Triton's CPU interpreter."""
    key = (name, interpret)
    if key not in _JITTED:
        helpers = (_surrogate_grad, _reset)
        if interpret:
            from triton.runtime.interpreter import InterpretedFunction

            wrap = InterpretedFunction
        else:
            wrap = triton.jit
        # helpers must be jitted (or interpreted) functions in the kernel's globals
        g = globals()
        for h in helpers:
            g.setdefault(f"_jit_{h.__name__}_{interpret}", wrap(h))
        fn = {"fwd": _lif_fwd, "bwd": _lif_bwd}[name]
        _JITTED[key] = _with_helpers(fn, {h.__name__: g[f"_jit_{h.__name__}_{interpret}"] for h in helpers}, wrap)
    return _JITTED[key]


def _with_helpers(fn, helpers: dict, wrap):
    import types

    glb = dict(fn.__globals__)
    glb.update(helpers)
    clone = types.FunctionType(fn.__code__, glb, fn.__name__, fn.__defaults__, fn.__closure__)
    clone.__module__ = fn.__module__
    clone.__qualname__ = fn.__qualname__
    return wrap(clone)


def _launch(kernel, grid, args, kwargs, interpret: bool):
    if not interpret:
        kwargs = dict(kwargs, enable_fp_fusion=False)  # no FMA contraction: bit-identical spikes
    kernel[grid](*args, **kwargs)


def _param_vec(val, feat: tuple[int, ...], like: Tensor) -> Tensor:
    """A per-neuron float32 vector ``[N]`` (keeps the autograd graph of a learnable tensor)."""
    n = math.prod(feat)
    if isinstance(val, Tensor):
        v = val.to(device=like.device, dtype=torch.float32)
        return (v.reshape(-1).expand(n) if v.numel() == 1 else v.reshape(n)).contiguous()
    return torch.full((n,), float(val), device=like.device, dtype=torch.float32)


class _FusedLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2, v0, s0, beta, gain, meta):  # type: ignore[override]
        t, m, nfeat, p, record, interpret, _ = meta
        spikes = torch.empty_like(x2)
        need_grad = any(ctx.needs_input_grad[:5])
        h = torch.empty((t, m), device=x2.device, dtype=torch.float32) if need_grad else x2.new_empty(1, dtype=torch.float32)
        trace = torch.empty_like(x2) if record else x2.new_empty(1)
        v_t = torch.empty_like(v0)
        s_t = torch.empty_like(s0)
        grid = (triton.cdiv(m, _BLOCK),)
        _launch(_kernel("fwd", interpret), grid,
                (x2, v0, s0, beta, gain, spikes, h, trace, v_t, s_t, t, m, nfeat,
                 p.v_th, p.v_reset, p.v_rest),
                dict(RESET=_RESET[p.reset], DEFERRED=p.deferred, SAVE_H=need_grad, RECORD=record, BLOCK=_BLOCK),
                interpret)
        ctx.meta = meta
        ctx.save_for_backward(h, x2 if ctx.needs_input_grad[4] else None, v0, s0, beta, gain)
        return spikes, v_t, s_t, trace

    @staticmethod
    def backward(ctx, g_spk, g_vT, g_sT, g_tr):  # type: ignore[override]
        t, m, nfeat, p, record, interpret, temporal = ctx.meta
        h, x2, v0, s0, beta, gain = ctx.saved_tensors
        need_ggain = x2 is not None
        g_spk = g_spk.contiguous() if g_spk is not None else torch.zeros((t, m), device=h.device, dtype=torch.float32)
        g_vT = g_vT.contiguous() if g_vT is not None else torch.zeros_like(v0)
        g_sT = g_sT.contiguous() if g_sT is not None else torch.zeros_like(s0)
        has_gtr = record and g_tr is not None
        g_tr = g_tr.contiguous() if has_gtr else g_spk
        gx = torch.empty((t, m), device=h.device, dtype=g_spk.dtype if g_spk.dtype != torch.float64 else torch.float32)
        gv0 = torch.empty_like(v0)
        gs0 = torch.empty_like(s0)
        gbeta = torch.empty(m, device=h.device, dtype=torch.float32)
        ggain = torch.empty(m, device=h.device, dtype=torch.float32) if need_ggain else gbeta
        sur_name, sur_a = p.surrogate.kernel_spec
        grid = (triton.cdiv(m, _BLOCK),)
        _launch(_kernel("bwd", interpret), grid,
                (g_spk, g_tr, g_vT, g_sT, h, x2 if need_ggain else h, v0, s0, beta, gain,
                 gx, gv0, gs0, gbeta, ggain, t, m, nfeat, p.v_th, p.v_reset, p.v_rest, sur_a),
                dict(RESET=_RESET[p.reset], DEFERRED=p.deferred, DETACH=p.detach_reset, SUR=_SURROGATE[sur_name],
                     HAS_GTR=has_gtr, NEED_GGAIN=need_ggain, TEMPORAL=temporal, BLOCK=_BLOCK), interpret)
        b = m // nfeat
        gb = gbeta.view(b, nfeat).sum(0) if ctx.needs_input_grad[3] else None  # [N]
        gg = ggain.view(b, nfeat).sum(0) if need_ggain else None
        return gx, (gv0 if temporal else None), (gs0 if temporal else None), gb, gg, None


def multi_step(x: Tensor, state: LIFState | None, p: LIFDiscrete,
               record: bool = False) -> tuple[Tensor, LIFState, Tensor | None]:
    """Fused multi-step LIF (same contract as :func:`spike.neurons.lif.multi_step`)."""
    return _multi_step(x, state, p, record, temporal=True)


def multi_step_spatial(x: Tensor, state: LIFState | None, p: LIFDiscrete,
                       record: bool = False) -> tuple[Tensor, LIFState, Tensor | None]:
    """:func:`multi_step` with the temporal gradient path cut (SLTT; see
    :func:`spike.backends.numba_lif.multi_step_spatial`): same values, the backward kernel drops the
    carries to step ``t-1``, no gradient to the initial state."""
    return _multi_step(x, state, p, record, temporal=False)


def _multi_step(x: Tensor, state: LIFState | None, p: LIFDiscrete, record: bool,
                temporal: bool) -> tuple[Tensor, LIFState, Tensor | None]:
    reason = supports(p, x)
    if reason is not None:
        from spike.core.registry import BackendError

        raise BackendError(f"triton backend: {reason}")
    t, b = x.shape[0], x.shape[1]
    feat = tuple(x.shape[2:])
    nfeat = math.prod(feat)
    m = b * nfeat
    x2 = x.reshape(t, m).contiguous()  # [T, M]
    if state is None:
        v0 = torch.full((m,), p.v_rest, device=x.device, dtype=x.dtype)
        s0 = torch.zeros((m,), device=x.device, dtype=x.dtype)
    else:
        v0 = state.v.reshape(m).contiguous()  # [M]
        s0 = state.s.reshape(m).contiguous()
    beta = _param_vec(p.beta, feat, x)
    gain = _param_vec(p.gain, feat, x)
    meta = (t, m, nfeat, p, record, x.device.type == "cpu", temporal)
    spikes, v_t, s_t, trace = _FusedLIF.apply(x2, v0, s0, beta, gain, meta)
    shape = (b, *feat)
    return (spikes.reshape(x.shape), LIFState(v_t.reshape(shape), s_t.reshape(shape)),
            trace.reshape(x.shape) if record else None)
