"""Sparse-input Linear on the CPU: work only where the input is non-zero (spikes).

Backend ``"numba"`` of the ``"linear"`` model. For ``y = x Wᵀ + b`` with ``x: [..., K]`` mostly zeros
(binary spikes at a few percent activity), the forward adds one row of ``Wᵀ`` per non-zero input and
the weight gradient ``∂L/∂W = gyᵀ x`` adds one row of ``gy`` per non-zero input, so both cost
``nnz(x) · O`` instead of ``R · K · O``. The input gradient ``gy W`` is dense (torch matmul).

Agreement with the reference ``torch.nn.functional.linear``: to float rounding (the sums run in a
different order; tested to 1e-5 relative), not bit-exact. For ``backend="auto"``, :func:`prefers`
declines what the dense matmul does faster (the rule and its measurement are documented there).
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from numba import njit
from torch import Tensor

__all__ = ["supports", "prefers", "linear", "sample_density", "MAX_DENSITY", "MIN_OUT", "MIN_IN", "MIN_ROWS"]

#: ``backend="auto"`` takes this kernel only below this input density (estimated on a subsample of rows), for
#: at least :data:`MIN_OUT` outputs, :data:`MIN_IN` inputs and :data:`MIN_ROWS` rows (``T * B``); everything
#: else takes torch's matmul. Measured on a quiet 2-core AVX-512 Xeon (bench/README.md, "Linear: sparse kernel
#: or matmul"): the kernel beat the matmul only for 2000 x 2312 -> 512 at <= 2 % density (0.70-0.96x its time,
#: forward + backward); at 700 or 256 inputs it was 1.1-1.7x slower even at 0.5 %, and at 100 rows 2.4-3.2x
#: slower (its fixed cost: weight transposes, the dense scan of the input). Under heavy load (more runnable
#: threads than cores) the matmul loses more than the kernel does; ``backend="numba"`` picks it explicitly.
MAX_DENSITY = 0.02
MIN_OUT = 64
MIN_IN = 1024
MIN_ROWS = 1024


@njit(cache=True, nogil=True)
def _fwd_rows(x, wt, y, r0, r1):  # pragma: no cover - numba
    # rows r0:r1 of y = x wt: the non-zeros of a row are listed first, then their weight rows are
    # summed into a local accumulator (a fresh array: no aliasing with wt, so the loop vectorises)
    k_in = x.shape[1]
    n_out = wt.shape[1]
    acc = np.empty(n_out, wt.dtype)
    idx = np.empty(k_in, np.int64)
    for r in range(r0, r1):
        xr = x[r]
        m = 0
        for k in range(k_in):
            if xr[k] != 0.0:
                idx[m] = k
                m += 1
        acc[:] = 0.0
        for q in range(m):
            k = idx[q]
            v = xr[k]
            wk = wt[k]
            for o in range(n_out):
                acc[o] += v * wk[o]
        y[r, :] = acc


@njit(cache=True, nogil=True)
def _dw_cols(x, gy, gwt, k0, k1):  # pragma: no cover - numba
    # columns k0:k1 of gwt = x^T gy; each gy row is copied into a local array first (no aliasing with
    # gwt: the inner loop vectorises)
    n_out = gy.shape[1]
    g = np.empty(n_out, gy.dtype)
    for r in range(x.shape[0]):
        xr = x[r]
        copied = False
        for k in range(k0, k1):
            v = xr[k]
            if v != 0.0:
                if not copied:
                    g[:] = gy[r]
                    copied = True
                gk = gwt[k]
                for o in range(n_out):
                    gk[o] += v * g[o]


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    step = -(-n // parts)
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def _run(kernel, ranges, *args) -> None:
    if len(ranges) == 1:
        kernel(*args, *ranges[0])
        return
    threads = [threading.Thread(target=kernel, args=(*args, a, b)) for a, b in ranges]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


def _threads(work: int) -> int:
    return max(1, min(torch.get_num_threads(), work // (1 << 18) or 1))


def supports(p, x: Tensor) -> str | None:
    w = p.weight
    if x.device.type != "cpu" or w.device.type != "cpu":
        return "not a CPU tensor"
    if x.dtype not in (torch.float32, torch.float64) or w.dtype != x.dtype:
        return f"dtype {x.dtype} / weight {w.dtype}"
    return None


def sample_density(x: Tensor, rows: int = 512) -> float:
    """Fraction of non-zeros in ``x [..., K]``, counted on about ``rows`` evenly spaced rows (cheap)."""
    x2 = x.reshape(-1, x.shape[-1])
    step = max(1, x2.shape[0] // rows)
    sub = x2[::step]
    return float(torch.count_nonzero(sub)) / max(1, sub.numel())


def prefers(p, x: Tensor) -> str | None:
    """For ``backend="auto"``: decline what the dense matmul does faster (see :data:`MAX_DENSITY`)."""
    n_out, n_in = p.weight.shape
    rows = x.numel() // max(1, x.shape[-1])
    if n_out < MIN_OUT or n_in < MIN_IN or rows < MIN_ROWS:
        return f"a {rows} x {n_in} -> {n_out} layer (the dense matmul is faster below {MIN_ROWS} x {MIN_IN} -> {MIN_OUT})"
    if sample_density(x) > MAX_DENSITY:
        return f"input denser than {MAX_DENSITY:.0%} (the dense matmul is faster)"
    return None


class _SparseLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2, weight, bias):  # type: ignore[override]
        xn = x2.detach().numpy()
        wt = weight.detach().t().contiguous()  # [K, O]
        y = torch.zeros((x2.shape[0], weight.shape[0]), dtype=x2.dtype)
        _run(_fwd_rows, _split(x2.shape[0], _threads(x2.numel())), xn, wt.numpy(), y.numpy())
        if bias is not None:
            y += bias.detach()
        ctx.save_for_backward(x2, weight)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        x2, weight = ctx.saved_tensors
        gy = gy.contiguous()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = gy @ weight  # [R, K], dense
        if ctx.needs_input_grad[1]:
            gwt = torch.zeros((x2.shape[1], gy.shape[1]), dtype=gy.dtype)  # [K, O]
            _run(_dw_cols, _split(x2.shape[1], _threads(x2.numel())), x2.detach().numpy(), gy.numpy(), gwt.numpy())
            gw = gwt.t()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gy.sum(0)
        return gx, gw, gb


def linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x Wᵀ + b`` over ``x: [..., K]`` (sparse-input kernels)."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1]).contiguous()  # [R, K]
    y = _SparseLinear.apply(x2, weight, bias)
    return y.reshape(*lead, weight.shape[0])  # [..., O]
