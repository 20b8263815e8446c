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


import numpy as np
import torch
from numba import njit
from torch import Tensor

from spike.backends._pool import run_chunks

__all__ = ["supports", "prefers", "linear", "sample_density", "MAX_DENSITY", "MAX_DENSITY_NARROW", "MIN_OUT",
           "MIN_IN", "MIN_ROWS", "MIN_ROWS_WIDE"]

#: ``backend="auto"`` takes this kernel only at most at this input density (estimated on a subsample of
#: rows) for layers of at least :data:`MIN_ROWS_WIDE` rows (``T * B``), at most at :data:`MAX_DENSITY_NARROW`
#: for :data:`MIN_ROWS` to :data:`MIN_ROWS_WIDE` rows, and only with at least :data:`MIN_OUT` outputs and
#: :data:`MIN_IN` inputs; everything else takes torch's matmul. Measured with ``bench/linear.py`` (bench/README.md,
#: "Linear: sparse kernel or matmul"; 2-core AVX-512 Xeon, forward + backward, 2 threads), kernel / matmul
#: time at 2 / 5 / 8 / 12 % density: 6400 x 700 -> 256 0.31 / 0.48 / 0.57 / 0.89, 6400 x 256 -> 256 (with
#: the input gradient, a matmul either way) 0.70 / 0.72 / 0.89 / 1.02, 2000 x 2312 -> 512 0.33 / 0.51 /
#: 0.58 / 0.76, 1280 x 1024 -> 256 0.48 / 0.66 / 0.80 / 1.10, 1280 x 512 -> 256 (+ input gradient) 0.71 /
#: 0.81 / 1.02 / 1.08; the limits keep a margin below the crossovers (8-12 %, 5-8 % at 1280 rows), which
#: move with the machine's matmul rate. With fewer than 64 outputs the kernel lost everywhere (2.5x at
#: 6400 x 256 -> 20, 5 %).
MAX_DENSITY = 0.06
MAX_DENSITY_NARROW = 0.04
MIN_OUT = 64
MIN_IN = 256
MIN_ROWS = 1024
MIN_ROWS_WIDE = 4096


@njit(cache=True, nogil=True)
def _count_rows(x, cnt, r0, r1):  # pragma: no cover - numba
    # non-zeros of rows r0:r1
    for r in range(r0, r1):
        xr = x[r]
        m = 0
        for k in range(xr.shape[0]):
            if xr[k] != 0.0:
                m += 1
        cnt[r] = m


# de Bruijn sequence and table: the index of a uint64's lowest set bit b is _DEBRUIJN_POS[(b * _DEBRUIJN) >> 58]
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_DEBRUIJN_POS = np.array([0, 1, 48, 2, 57, 49, 28, 3, 61, 58, 50, 42, 38, 29, 17, 4, 62, 55, 59, 36, 53, 51, 43, 22, 45,
                          39, 33, 30, 24, 18, 12, 5, 63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23, 11, 46,
                          26, 40, 15, 34, 20, 31, 10, 25, 14, 19, 9, 13, 8, 7, 6], np.int64)


@njit(cache=True, nogil=True)
def _fill_rows(x, ptr, idx, val, r0, r1):  # pragma: no cover - numba
    # the CSR lists of rows r0:r1: column indices and values of the non-zeros, row by row, in column
    # order. Each run of 64 columns becomes a bit mask in one vectorised pass; only its set bits are
    # visited (lowest first, found by the de Bruijn multiplication), so a sparse row costs a pass of
    # compares plus one step per non-zero instead of a store per element (1.9x faster at 5 %).
    n_col = x.shape[1]
    for r in range(r0, r1):
        xr = x[r]
        p = ptr[r]
        k = 0
        while k + 64 <= n_col:
            m = np.uint64(0)
            for q in range(64):
                m |= np.uint64(xr[k + q] != 0.0) << np.uint64(q)
            while m:
                low = m & (~m + np.uint64(1))  # the lowest set bit
                c = k + _DEBRUIJN_POS[(low * _DEBRUIJN) >> np.uint64(58)]
                idx[p] = c
                val[p] = xr[c]
                p += 1
                m ^= low
            k += 64
        while k < n_col:
            v = xr[k]
            if v != 0.0:
                idx[p] = k
                val[p] = v
                p += 1
            k += 1


@njit(cache=True, nogil=True)
def _fwd_rows(ptr, idx, val, wt, b, y, r0, r1):  # pragma: no cover - numba
    # rows r0:r1 of y = x wt: each row's weight rows summed into a local accumulator (a fresh array: no
    # aliasing with wt, so the loop vectorises) in the order of the row's non-zeros, four weight rows per
    # pass over the accumulator (a quarter of its loads and stores; the same additions in the same order);
    # the accumulator starts at the bias b
    n_out = wt.shape[1]
    acc = np.empty(n_out, wt.dtype)
    for r in range(r0, r1):
        acc[:] = b
        q, end = ptr[r], ptr[r + 1]
        while q + 4 <= end:
            v0, v1, v2, v3 = val[q], val[q + 1], val[q + 2], val[q + 3]
            w0, w1, w2, w3 = wt[idx[q]], wt[idx[q + 1]], wt[idx[q + 2]], wt[idx[q + 3]]
            for o in range(n_out):
                acc[o] = (((acc[o] + v0 * w0[o]) + v1 * w1[o]) + v2 * w2[o]) + v3 * w3[o]
            q += 4
        while q < end:
            v = val[q]
            wk = wt[idx[q]]
            for o in range(n_out):
                acc[o] += v * wk[o]
            q += 1
        y[r, :] = acc


@njit(cache=True, nogil=True)
def _dw_rows(ptr, idx, val, gy, gwt, r0, r1):  # pragma: no cover - numba
    # gwt += x[r0:r1]^T gy[r0:r1] (gwt: this thread's own [K, O] sum); each gy row is copied into a local
    # array first (no aliasing with gwt: the inner loop vectorises)
    n_out = gy.shape[1]
    g = np.empty(n_out, gy.dtype)
    for r in range(r0, r1):
        if ptr[r + 1] == ptr[r]:
            continue
        g[:] = gy[r]
        for q in range(ptr[r], ptr[r + 1]):
            v = val[q]
            gk = gwt[idx[q]]
            for o in range(n_out):
                gk[o] += v * g[o]


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    step = -(-n // parts)
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def _run(kernel, ranges, *args) -> None:
    """``kernel(*args, a, b)`` for every ``(a, b)`` in ``ranges``, one range per chunk of
    :func:`spike.backends._pool.run_chunks`."""
    run_chunks(lambda c0, c1: [kernel(*args, *ranges[c]) for c in range(c0, c1)], len(ranges), len(ranges))


_MIN_WORK_PER_THREAD = 1 << 22  # scanned input elements, or multiply-adds; below: one thread


def _threads(work: int) -> int:
    """Threads for ``work`` (at least :data:`_MIN_WORK_PER_THREAD` each, at most torch's thread count):
    measured, a second thread made small calls slower (its start and a core shared with torch's
    still-spinning OpenMP workers cost more than half the work)."""
    return max(1, min(torch.get_num_threads(), work // _MIN_WORK_PER_THREAD or 1))


def supports(p, x: Tensor) -> str | None:
    w = p.weight
    if x.device.type != "cpu" or w.device.type != "cpu":
        return "not a CPU tensor"
    if x.dtype not in (torch.float32, torch.float64) or w.dtype != x.dtype:
        return f"dtype {x.dtype} / weight {w.dtype}"
    return None


@njit(cache=True, nogil=True)
def _count_every(x, step):  # pragma: no cover - numba
    # non-zeros of rows 0, step, 2 step, ... of x [R, K], and how many rows that is
    m = 0
    rows = 0
    for r in range(0, x.shape[0], step):
        xr = x[r]
        for k in range(xr.shape[0]):
            if xr[k] != 0.0:
                m += 1
        rows += 1
    return m, rows


def sample_density(x: Tensor, rows: int = 512) -> float:
    """Fraction of non-zeros in ``x [..., K]``, counted on about ``rows`` evenly spaced rows (cheap).

    On a contiguous CPU float tensor the count runs on the calling thread (a numba loop): torch's
    parallel ``count_nonzero`` right after another parallel op waited for the other core's still
    spinning OpenMP worker, and cost 0.9 ms in the 700-256-256-20 training step where it costs 0.17 ms
    alone."""
    x2 = x.reshape(-1, x.shape[-1])  # [R, K]
    step = max(1, x2.shape[0] // rows)
    if x2.device.type == "cpu" and x2.dtype in (torch.float32, torch.float64) and x2.is_contiguous():
        m, n_rows = _count_every(x2.detach().numpy(), step)
        return m / max(1, n_rows * x2.shape[1])
    sub = x2[::step]
    return float(torch.count_nonzero(sub)) / max(1, sub.numel())


def prefers(p, x: Tensor) -> str | None:
    """For ``backend="auto"``: decline what the dense matmul does faster (see :data:`MAX_DENSITY`)."""
    n_out, n_in = p.weight.shape
    rows = x.numel() // max(1, x.shape[-1])
    if n_out < MIN_OUT or n_in < MIN_IN or rows < MIN_ROWS:
        return f"a {rows} x {n_in} -> {n_out} layer (the dense matmul is faster below {MIN_ROWS} x {MIN_IN} -> {MIN_OUT})"
    limit = MAX_DENSITY if rows >= MIN_ROWS_WIDE else MAX_DENSITY_NARROW
    if sample_density(x) > limit:
        return f"input denser than {limit:.0%} at {rows} rows (the dense matmul is faster)"
    return None


def _csr(x2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``x2 [R, K]`` as CSR: ``ptr [R+1]`` (int64), ``idx [nnz]`` (int32 columns), ``val [nnz]``; two
    passes over ``x2`` (count, fill), split over row ranges."""
    xn = x2.detach().numpy()
    rows = x2.shape[0]
    ranges = _split(rows, _threads(x2.numel()))
    cnt = np.empty(rows, np.int64)
    _run(_count_rows, ranges, xn, cnt)
    ptr = np.zeros(rows + 1, np.int64)
    np.cumsum(cnt, out=ptr[1:])
    nnz = int(ptr[-1])
    idx = np.empty(nnz, np.int32)
    val = np.empty(nnz, xn.dtype)
    _run(_fill_rows, ranges, xn, ptr, idx, val)
    return torch.from_numpy(ptr), torch.from_numpy(idx), torch.from_numpy(val)


class _SparseLinear(torch.autograd.Function):
    """Forward and weight gradient from the input's CSR lists, built once in forward and kept for backward
    instead of the input (``nnz`` indices and values: at 5 % density about a tenth of the input's bytes)."""

    @staticmethod
    def forward(ctx, x2, weight, bias):  # type: ignore[override]
        ptr, idx, val = _csr(x2)
        wt = weight.detach().t().contiguous()  # [K, O]
        rows = x2.shape[0]
        y = torch.empty((rows, weight.shape[0]), dtype=x2.dtype)  # every row is written
        b = bias.detach().contiguous() if bias is not None else torch.zeros(weight.shape[0], dtype=x2.dtype)
        _run(_fwd_rows, _split(rows, _threads(int(ptr[-1]) * weight.shape[0])), ptr.numpy(), idx.numpy(),
             val.numpy(), wt.numpy(), b.numpy(), y.numpy())
        ctx.save_for_backward(ptr, idx, val, weight)
        ctx.has_bias = bias is not None
        ctx.n_in = x2.shape[1]
        return y

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        ptr, idx, val, weight = ctx.saved_tensors
        gy = gy.contiguous()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = gy @ weight  # [R, K], dense
        if ctx.needs_input_grad[1]:
            # each thread sums its row range into its own [K, O]; the partial sums are added at the end
            ranges = _split(gy.shape[0], _threads(int(ptr[-1]) * gy.shape[1]))
            parts = [torch.zeros((ctx.n_in, gy.shape[1]), dtype=gy.dtype) for _ in ranges]
            args = (ptr.numpy(), idx.numpy(), val.numpy(), gy.numpy())
            run_chunks(lambda c0, c1: [_dw_rows(*args, parts[c].numpy(), *ranges[c]) for c in range(c0, c1)],
                       len(ranges), len(ranges))
            gwt = parts[0]
            for part in parts[1:]:
                gwt += part
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
