"""The numba average pooling (tiling windows) against the reference, torch's ``avg_pool2d``: outputs
and input gradients bit for bit, which random normal inputs check (any other summation order or a
division done differently changes the low bits), plus the backend choice and its refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("numba")

from spike.backends import numba_pool  # noqa: E402
from spike.core.registry import BackendError  # noqa: E402
from spike.synapses import AvgPool2d  # noqa: E402

TILING = [
    dict(kernel_size=2),
    dict(kernel_size=2, stride=2, ceil_mode=True),
    dict(kernel_size=3),
    dict(kernel_size=(2, 3)),
    dict(kernel_size=(1, 4), stride=(1, 4)),
    dict(kernel_size=2, divisor_override=1),  # sum pooling
    dict(kernel_size=2, divisor_override=3),
]


def _x(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype) * torch.exp(3 * torch.randn(*shape, generator=g, dtype=dtype))


def _check(opts, x, backend="numba"):
    ref_in = x.clone().requires_grad_(True)
    ref = nn.AvgPool2d(**opts)(ref_in.flatten(0, 1))  # [T*B, C, H', W']
    ours_in = x.clone().requires_grad_(True)
    ours = AvgPool2d(**opts, backend=backend)(ours_in)  # [T, B, C, H', W']
    assert torch.equal(ours.reshape(ref.shape), ref)
    g = _x(ref.shape, x.dtype, seed=1)
    ref.backward(g)
    ours.backward(g.reshape(ours.shape))
    assert torch.equal(ours_in.grad, ref_in.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("opts", TILING, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_bit_identical_to_torch(opts, dtype):
    k = opts["kernel_size"]
    kh, kw = (k, k) if isinstance(k, int) else k
    _check(opts, _x((3, 2, 4, 6 * kh, 5 * kw), dtype))


def test_large_input_split_over_threads_is_identical():
    # above the parallel threshold: the planes run in chunks on several threads
    x = _x((4, 8, 16, 32, 32))
    assert x.numel() >= numba_pool._PARALLEL_MIN
    _check(dict(kernel_size=2), x)
    _check(dict(kernel_size=(2, 4)), x)


def test_spikes_and_signed_zeros():
    x = (torch.rand(5, 3, 2, 8, 8, generator=torch.Generator().manual_seed(3)) < 0.2).float()
    _check(dict(kernel_size=2), x)
    # torch's backward zero-fills, then adds g / d: a gradient of -0.0 arrives as +0.0
    xin = torch.zeros(1, 1, 1, 4, 4, requires_grad=True)
    y = AvgPool2d(2, backend="numba")(xin)
    y.backward(torch.full_like(y, -0.0))
    ref_in = torch.zeros(1, 1, 4, 4, requires_grad=True)
    nn.functional.avg_pool2d(ref_in, 2).backward(torch.full((1, 1, 2, 2), -0.0))
    assert not torch.signbit(ref_in.grad).any()
    assert not torch.signbit(xin.grad).any()


def test_non_contiguous_incoming_gradient():
    x = _x((2, 3, 4, 8, 8)).requires_grad_(True)
    y = AvgPool2d(2, backend="numba")(x)
    g = _x((2, 3, 4, 4, 4), seed=2).transpose(-1, -2)  # not contiguous
    y.backward(g)
    ref_in = x.detach().clone().requires_grad_(True)
    nn.functional.avg_pool2d(ref_in.flatten(0, 1), 2).backward(g.flatten(0, 1))
    assert torch.equal(x.grad, ref_in.grad)


def test_auto_takes_the_kernel_only_for_tiling_windows(monkeypatch):
    calls = []
    real = numba_pool.avg_pool2d
    monkeypatch.setattr(numba_pool, "avg_pool2d", lambda x, args: calls.append(args) or real(x, args))
    x = _x((2, 2, 3, 8, 8))
    AvgPool2d(2)(x)
    assert len(calls) == 1
    AvgPool2d(3, stride=1, padding=1)(x)  # overlapping windows: torch's kernel
    AvgPool2d(3)(x)  # 8 is not divisible by 3: torch's kernel
    AvgPool2d(2, backend="reference")(x)
    assert len(calls) == 1


@pytest.mark.parametrize("opts,shape,why", [
    (dict(kernel_size=3, stride=1, padding=1), (2, 2, 3, 8, 8), "do not tile"),
    (dict(kernel_size=3), (2, 2, 3, 8, 8), "not divisible"),
    (dict(kernel_size=2), (2, 2, 3, 8, 8), "integer"),
])
def test_numba_named_refuses_what_it_cannot_run(opts, shape, why):
    x = _x(shape)
    if why == "integer":
        x = x.to(torch.int32)
        why = "dtype"
    with pytest.raises(BackendError, match=why):
        AvgPool2d(**opts, backend="numba")(x)


def test_numba_named_refuses_channels_last():
    x = _x((4, 3, 8, 8)).contiguous(memory_format=torch.channels_last).unsqueeze(0)  # [1, 4, 3, 8, 8]
    with pytest.raises(BackendError, match="not contiguous"):
        AvgPool2d(2, backend="numba")(x)
    y = AvgPool2d(2)(x)  # auto: torch's kernel, same values
    assert torch.equal(y[0], nn.functional.avg_pool2d(x[0], 2))
