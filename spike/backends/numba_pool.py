"""Average pooling over tiling windows on the CPU, bit-identical to torch's ``avg_pool2d``.

Backend ``"numba"`` of the ``"avgpool"`` model. It runs the usual SNN pooling, windows that tile the
input (``stride == kernel_size``, no padding, ``H`` and ``W`` divisible by the kernel): each output is

.. math:: y_{p,i,j} = \\Big(\\big(0 + \\textstyle\\sum_{a < k_h} \\sum_{b < k_w} x_{p,\\,k_h i + a,\\,k_w j + b}\\big)\\Big) / d

summed in torch's order (window row by row, left to right, from ``0``) and divided by
``d = divisor_override or k_h k_w``, and the input gradient is ``0 + g_{p,i,j} / d`` on every element of
window ``(i, j)``, which is what torch's ``avg_pool2d_backward`` writes (a zero fill, then one addition
per element). Outputs and gradients equal the reference (:func:`spike.synapses.layers.avg_pool2d`)
bit for bit (tests/equivalence/test_numba_pool.py). torch's NCHW kernel is scalar: in
``bench/pool.py`` this one takes 0.35-0.4x its time forward and 0.44-0.6x forward + backward at the conv
net's shapes (bench/README.md, "Average pooling"; the kernel alone, into an existing output, is ~18x). The backward keeps only the input's shape; under
``create_graph=True`` it is torch's differentiable ``avg_pool2d_backward``, so second derivatives work.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from spike.backends._pool import run_chunks

__all__ = ["supports", "avg_pool2d"]

_PARALLEL_MIN = 1 << 18  # input elements from which the planes are split over torch.get_num_threads() threads
_CHUNK_MIN = 1 << 16  # input elements per chunk (at least)


def supports(args: tuple, x: Tensor) -> str | None:
    """``None`` if the kernel runs ``avg_pool2d(x, *args)``, else the reason.

    ``args = (kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)`` as pairs.
    """
    kernel, stride, padding, _, _, divisor_override = args
    if divisor_override is not None and divisor_override == 0:
        return "divisor_override is 0 (torch's kernel raises for it)"
    if x.device.type != "cpu":
        return f"input is on {x.device.type}, the kernel runs on the CPU"
    if x.dtype not in (torch.float32, torch.float64):
        return f"dtype {x.dtype} (float32 / float64 only)"
    if x.dim() != 4:
        return f"input of {x.dim()} dims, expected [N, C, H, W]"
    if not x.is_contiguous():
        return "input is not contiguous (channels-last or a strided view)"
    if tuple(kernel) != tuple(stride) or tuple(padding) != (0, 0):
        return f"windows do not tile the input (kernel {tuple(kernel)}, stride {tuple(stride)}, padding {tuple(padding)})"
    h, w = x.shape[-2:]
    if h % kernel[0] or w % kernel[1]:
        return f"input {h}x{w} is not divisible by the kernel {tuple(kernel)}"
    return None


@njit(cache=True, nogil=True)
def _fwd22(x, y, cst, p0, p1):  # pragma: no cover - numba
    """2x2 windows, planes ``[p0, p1)``: ``x [P, H, W] -> y [P, H/2, W/2]``."""
    zero, div = cst[0], cst[1]
    ho, wo = y.shape[1], y.shape[2]
    for p in range(p0, p1):
        for i in range(ho):
            yr, r0, r1 = y[p, i], x[p, 2 * i], x[p, 2 * i + 1]
            for j in range(wo):
                yr[j] = ((((zero + r0[2 * j]) + r0[2 * j + 1]) + r1[2 * j]) + r1[2 * j + 1]) / div


@njit(cache=True, nogil=True)
def _fwd(x, y, kh, kw, cst, p0, p1):  # pragma: no cover - numba
    """Any tiling ``kh x kw`` window: each output row accumulates its window's input rows in order."""
    zero, div = cst[0], cst[1]
    ho, wo = y.shape[1], y.shape[2]
    for p in range(p0, p1):
        for i in range(ho):
            yr = y[p, i]
            for j in range(wo):
                yr[j] = zero
            for a in range(kh):
                xr = x[p, kh * i + a]
                for b in range(kw):
                    for j in range(wo):
                        yr[j] += xr[kw * j + b]
            for j in range(wo):
                yr[j] = yr[j] / div


@njit(cache=True, nogil=True)
def _bwd22(g, gi, cst, p0, p1):  # pragma: no cover - numba
    zero, div = cst[0], cst[1]
    ho, wo = g.shape[1], g.shape[2]
    for p in range(p0, p1):
        for i in range(ho):
            gr, r0, r1 = g[p, i], gi[p, 2 * i], gi[p, 2 * i + 1]
            for j in range(wo):
                v = zero + gr[j] / div
                r0[2 * j] = v
                r0[2 * j + 1] = v
                r1[2 * j] = v
                r1[2 * j + 1] = v


@njit(cache=True, nogil=True)
def _bwd(g, gi, kh, kw, cst, p0, p1):  # pragma: no cover - numba
    zero, div = cst[0], cst[1]
    ho, wo = g.shape[1], g.shape[2]
    for p in range(p0, p1):
        for i in range(ho):
            gr = g[p, i]
            for a in range(kh):
                r = gi[p, kh * i + a]
                for j in range(wo):
                    v = zero + gr[j] / div
                    for b in range(kw):
                        r[kw * j + b] = v


def _launch(fn, src: np.ndarray, dst: np.ndarray, kernel: tuple[int, int], cst: np.ndarray, n_elem: int) -> None:
    """``fn`` over the planes of ``src [P, ., .]``, split over threads when the work is large."""
    planes = src.shape[0]
    per_plane = max(1, n_elem // max(planes, 1))
    chunk = max(1, _CHUNK_MIN // per_plane)
    nthreads = torch.get_num_threads() if n_elem >= _PARALLEL_MIN else 1
    if kernel == (2, 2):
        run_chunks(lambda c0, c1: fn[0](src, dst, cst, c0 * chunk, min(planes, c1 * chunk)), -(-planes // chunk), nthreads)
    else:
        kh, kw = kernel
        run_chunks(lambda c0, c1: fn[1](src, dst, kh, kw, cst, c0 * chunk, min(planes, c1 * chunk)),
                   -(-planes // chunk), nthreads)


class _AvgPoolFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, args: tuple) -> Tensor:  # type: ignore[override]
        n, c, h, w = x.shape
        kh, kw = kernel = (int(args[0][0]), int(args[0][1]))
        ctx.shape, ctx.kernel, ctx.args = x.shape, kernel, args
        ctx.divisor = float(args[5] or kh * kw)  # divisor_override, else the window's size
        y = torch.empty(n, c, h // kh, w // kw, dtype=x.dtype)  # [N, C, H', W']
        if y.numel():
            xn = x.detach().numpy()
            cst = np.array([0.0, ctx.divisor], dtype=xn.dtype)
            _launch((_fwd22, _fwd), xn.reshape(n * c, h, w), y.numpy().reshape(n * c, h // kh, w // kw), kernel, cst,
                    x.numel())
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        n, c, h, w = ctx.shape
        kh, kw = ctx.kernel
        if grad.requires_grad:  # create_graph=True: torch's differentiable backward (the same values)
            shape_only = grad.new_zeros(()).expand(ctx.shape)  # [N, C, H, W], no storage, never read
            return torch.ops.aten.avg_pool2d_backward(grad, shape_only, *ctx.args), None
        g = grad.contiguous()
        gi = torch.empty(n, c, h, w, dtype=g.dtype)  # [N, C, H, W]
        if gi.numel():
            gin = gi.numpy()
            cst = np.array([0.0, ctx.divisor], dtype=gin.dtype)
            _launch((_bwd22, _bwd), g.numpy().reshape(n * c, h // kh, w // kw), gin.reshape(n * c, h, w), ctx.kernel,
                    cst, gi.numel())
        return gi, None


def avg_pool2d(x: Tensor, args: tuple) -> Tensor:
    """``F.avg_pool2d(x, *args)`` for ``x [N, C, H, W]`` on tiling windows (see :func:`supports`), with
    its gradient; bit-identical to the reference."""
    return _AvgPoolFn.apply(x, args)
