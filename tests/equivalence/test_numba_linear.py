"""Sparse-input numba Linear vs the dense reference (outputs and gradients)."""

import numpy as np
import pytest
import torch

from spike.core.registry import BackendError, resolve
from spike.synapses import Linear


def _pair(k, o, bias, dtype, seed=0):
    torch.manual_seed(seed)
    ref = Linear(k, o, bias=bias, backend="reference").to(dtype)
    fast = Linear(k, o, bias=bias, backend="numba").to(dtype)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(7, 3, 37), (1, 1, 5), (30, 16, 700)])
@pytest.mark.parametrize("grad_input", [False, True])
def test_matches_dense_reference(dtype, bias, shape, grad_input):
    k = shape[-1]
    ref, fast = _pair(k, 23, bias, dtype)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(*shape, generator=g) < 0.05).to(dtype) * torch.randint(1, 3, shape, generator=g).to(dtype)
    xr, xf = x.clone().requires_grad_(grad_input), x.clone().requires_grad_(grad_input)
    yr, yf = ref(xr), fast(xf)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(yf, yr, **tol)
    gy = torch.randn(yr.shape, generator=g, dtype=dtype)
    yr.backward(gy)
    yf.backward(gy)
    torch.testing.assert_close(fast.weight.grad, ref.weight.grad, **tol)
    if bias:
        torch.testing.assert_close(fast.bias.grad, ref.bias.grad, **tol)
    if grad_input:
        torch.testing.assert_close(xf.grad, xr.grad, **tol)


def test_all_zero_input_gives_bias_only():
    ref, fast = _pair(12, 4, True, torch.float32)
    x = torch.zeros(3, 2, 12)
    torch.testing.assert_close(fast(x), ref.bias.expand(3, 2, 4))  # empty input
    fast(x).sum().backward()
    assert torch.count_nonzero(fast.weight.grad) == 0


def test_dense_input_is_declined_by_auto_only():
    ref, fast = _pair(8, 3, True, torch.float32)
    x = torch.rand(4, 2, 8) + 0.1
    torch.testing.assert_close(fast(x), ref(x))  # named explicitly: runs (correctly) on dense input too
    with pytest.raises(BackendError, match="dtype"):
        fast(x.half())
    auto = Linear(1024, 64)  # auto: dense input goes to the dense matmul, sparse input (of a large layer) to numba
    assert resolve("linear", "auto", auto, torch.rand(32, 32, 1024) + 0.1).__name__ == "spike.synapses.layers"
    sparse = torch.zeros(32, 32, 1024)
    sparse[0, 0, 0] = 1.0
    assert resolve("linear", "auto", auto, sparse).__name__ == "spike.backends.numba_linear"


def test_linear_auto_takes_the_kernel_only_where_it_was_measured_faster():
    """``Linear(backend="auto")`` (the registry's auto, asking ``numba_linear.prefers``): the sparse kernel
    only for sparse inputs of large layers (many rows, inputs and outputs); small or denser ones take the matmul."""
    from spike.backends import numba_linear as NL

    def picked(layer, x):
        return resolve("linear", "auto", layer, x).__name__

    big = Linear(2312, 512)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(20, 64, 2312, generator=g) < 0.03).float()  # 1280 rows, 3 %
    assert picked(big, x) == "spike.backends.numba_linear"
    x5 = (torch.rand(20, 64, 2312, generator=g) < 0.05).float()  # 1280 rows, 5 %: over the narrow limit
    assert picked(big, x5) == "spike.synapses.layers"
    wide = (torch.rand(100, 64, 2312, generator=g) < 0.05).float()  # 6400 rows, 5 %: under the wide limit
    assert picked(big, wide) == "spike.backends.numba_linear"
    assert picked(big, (wide + (torch.rand_like(wide) < 0.05)).clamp(max=1)) == "spike.synapses.layers"  # ~10 %
    assert picked(big, x[:10]) == "spike.synapses.layers"  # 640 rows < MIN_ROWS
    assert picked(Linear(700, 256), wide[..., :700]) == "spike.backends.numba_linear"  # the MLP's first layer
    assert picked(Linear(256, 256), wide[..., :256]) == "spike.backends.numba_linear"
    assert picked(Linear(128, 256), wide[..., :128]) == "spike.synapses.layers"  # 128 inputs < MIN_IN
    assert picked(Linear(2312, 20), x) == "spike.synapses.layers"  # 20 outputs < MIN_OUT
    assert NL.MAX_DENSITY_NARROW < 0.05 and NL.MAX_DENSITY < 0.08
    torch.testing.assert_close(big(x), torch.nn.functional.linear(x, big.weight, big.bias), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_col", [33, 64, 200])  # the tail alone, one 64-column mask, masks and a tail
@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_csr_lists_every_nonzero_in_order_whatever_the_row_split(parts, n_col):
    """The CSR fill writes only inside its own row range: rows that are empty, full or at a range's
    end, split over 1-7 ranges, give exactly torch.nonzero's entries."""
    from spike.backends import numba_linear as NL

    g = torch.Generator().manual_seed(3)
    x = (torch.rand(40, n_col, generator=g) < 0.2).float() * torch.randn(40, n_col, generator=g)
    x[3, -1] = -0.0  # a signed zero is no entry
    x[5:12] = 0.0  # a run of empty rows (the slot after row 4 is row 12's)
    x[20] = 1.5  # a full row
    x[-1] = 0.0
    xn = x.numpy()
    cnt = np.empty(40, np.int64)
    ranges = NL._split(40, parts)
    for a, b in ranges:
        NL._count_rows(xn, cnt, a, b)
    ptr = np.zeros(41, np.int64)
    np.cumsum(cnt, out=ptr[1:])
    idx = np.full(int(ptr[-1]), -1, np.int32)
    val = np.zeros(int(ptr[-1]), np.float32)
    for a, b in reversed(ranges):  # later ranges first: a range must not write into an earlier one's slots
        NL._fill_rows(xn, ptr, idx, val, a, b)
    nz = torch.nonzero(x)
    assert np.array_equal(idx, nz[:, 1].numpy()) and np.array_equal(val, x[x != 0].numpy())
    for a, b in ranges:  # and not into a later one's: fill each range alone into a fresh buffer
        fresh = np.full_like(idx, -7)
        NL._fill_rows(xn, ptr, fresh, np.zeros_like(val), a, b)
        outside = np.r_[0:ptr[a], ptr[b]:len(idx)]
        assert (fresh[outside] == -7).all()


@pytest.mark.parametrize("shape", [(100, 64, 700), (33, 7, 300), (5, 40), (1, 1, 64)])
def test_sample_density_counts_the_rows_torch_counts(shape):
    # the numba count (contiguous CPU floats) against torch's count_nonzero on the same rows: signed
    # zeros are zeros, NaNs are non-zeros; a non-contiguous input takes torch's count and agrees too
    from spike.backends import numba_linear as NL

    g = torch.Generator().manual_seed(sum(shape))
    x = (torch.rand(*shape, generator=g) < 0.1).float()
    flat = x.view(-1)
    flat[::97] = -0.0
    flat[5::89] = float("nan")
    x2 = x.reshape(-1, shape[-1])
    sub = x2[:: max(1, x2.shape[0] // 512)]
    want = float(torch.count_nonzero(sub)) / sub.numel()
    assert NL.sample_density(x) == want
    assert NL.sample_density(x.double()) == want
    xt = x.transpose(-1, -2).contiguous().transpose(-1, -2)  # same values, not contiguous
    assert NL.sample_density(xt) == want
