"""spike's AvgPool2d keeps only its input's shape for backward; outputs and gradients are torch's
``nn.AvgPool2d`` (the reference) bit for bit, for every option the class accepts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spike.synapses import AvgPool2d
from spike.train import memory as M

OPTIONS = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=3, stride=1, padding=1, count_include_pad=False),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0)),
    dict(kernel_size=2, divisor_override=1),  # sum pooling (NIR SumPool2d)
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, divisor_override=3),
]


def _input(dtype=torch.float32, shape=(6, 3, 4, 9, 11)):
    g = torch.Generator().manual_seed(0)
    return torch.randn(*shape, generator=g, dtype=dtype)  # [T, B, C, H, W], not spikes: values matter


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_output_and_gradient_bit_identical_to_torch(opts, dtype):
    x = _input(dtype)
    ref_in = x.clone().requires_grad_(True)
    ref = nn.AvgPool2d(**opts)(ref_in.reshape(-1, *x.shape[2:]))  # [T*B, C, H', W']
    ours_in = x.clone().requires_grad_(True)
    ours = AvgPool2d(**opts)(ours_in)  # [T, B, C, H', W']
    assert ours.shape == (*x.shape[:2], *ref.shape[1:])
    assert torch.equal(ours.reshape(ref.shape), ref)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    ref.backward(g)
    ours.backward(g.reshape(ours.shape))
    assert ref_in.grad.abs().sum() > 0
    assert torch.equal(ours_in.grad, ref_in.grad)
    assert ours_in.grad.stride() == ref_in.grad.stride()


def test_backward_keeps_no_copy_of_the_input():
    """Nothing but the shape is saved: no saved tensor reaches the pack hook (torch's saves the input)."""
    x = _input().requires_grad_(True)
    saved: list = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = AvgPool2d(2)(x)
    assert saved == []
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        nn.AvgPool2d(2)(x.reshape(-1, *x.shape[2:]))
    assert any(t.shape == (18, 4, 9, 11) for t in saved)  # the reference does save it: the check can fail
    y.sum().backward()
    assert x.grad is not None


def test_second_order_gradient_matches_torch():
    x = _input(torch.float64, (3, 2, 2, 6, 6))
    outs = []
    for pool in (lambda t: AvgPool2d(3, stride=1, padding=1)(t),
                 lambda t: nn.AvgPool2d(3, stride=1, padding=1)(t.reshape(-1, *t.shape[2:]))):
        xi = x.clone().requires_grad_(True)
        (gx,) = torch.autograd.grad((pool(xi) ** 2).sum(), xi, create_graph=True)
        (ggx,) = torch.autograd.grad((gx ** 2).sum(), xi)
        outs.append((gx.detach(), ggx))
    assert torch.equal(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=0, atol=1e-12)


def test_channels_last_input_takes_torch_path():
    """A channels-last input goes through torch's avg_pool2d: same output and gradient, layout included."""
    x = _input(shape=(2, 3, 4, 8, 8))
    xf = x.reshape(6, 4, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    pool = dict(kernel_size=3, stride=1, padding=1)  # overlapping windows: accumulation order matters
    ours = AvgPool2d(**pool)(xf.unsqueeze(0))  # [1, 6, C, H, W], channels-last strides
    ref = nn.AvgPool2d(**pool)(xf)
    assert torch.equal(ours[0], ref)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    (g_ours,) = torch.autograd.grad(ours, xf, g.unsqueeze(0))
    (g_ref,) = torch.autograd.grad(ref, xf, g)
    assert torch.equal(g_ours, g_ref)
    assert g_ours.stride() == g_ref.stride()


@pytest.mark.parametrize("mode", ["packed", "mesa8"])
def test_pool_of_spikes_under_memory_hooks_restores_nothing(mode):
    """Under packed/mesa8 the pooling layer records nothing for the hooks (it used to cost a float restore)."""
    x = (torch.rand(8, 4, 4, 16, 16, generator=torch.Generator().manual_seed(2)) < 0.3).float().requires_grad_(True)
    stats: dict = {}
    with M.saved_tensor_hooks(mode, stats):
        y = AvgPool2d(2)(x)
    assert stats == {}
    y.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 0.25))


TILING = [
    dict(kernel_size=2),
    dict(kernel_size=(2, 3)),  # stride = kernel: tiling windows
    dict(kernel_size=3, stride=3),  # divisor 9: g / 9 must round as torch's kernel does
    dict(kernel_size=2, divisor_override=1),
    dict(kernel_size=2, divisor_override=3, ceil_mode=True),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("opts", TILING, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("backend", ["auto", "reference"])  # auto: the numba kernel where numba is installed
def test_tiling_windows_take_the_one_pass_backward_bit_identical_to_torch(opts, dtype, backend, monkeypatch):
    """Windows that tile the input (stride = kernel, no padding, sizes divisible) skip torch's
    zero-filled backward; the gradient is still torch's bit for bit, first and second order."""
    calls = []
    real = torch.ops.aten.avg_pool2d_backward
    x = _input(dtype, (4, 3, 5, 12, 18))
    ref_in = x.clone().requires_grad_(True)
    ref = nn.AvgPool2d(**opts)(ref_in.reshape(-1, *x.shape[2:]))
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(2), dtype=dtype) * 3.7
    ref.backward(g)
    monkeypatch.setattr(torch.ops.aten, "avg_pool2d_backward", lambda *a: calls.append(1) or real(*a))
    ours_in = x.clone().requires_grad_(True)
    ours = AvgPool2d(**opts, backend=backend)(ours_in)
    assert torch.equal(ours.reshape(ref.shape), ref)
    ours.backward(g.reshape(ours.shape))
    assert not calls  # the one-pass path ran
    assert torch.equal(ours_in.grad, ref_in.grad) and ours_in.grad.is_contiguous()
    xi = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad((AvgPool2d(**opts, backend=backend)(xi) ** 2).sum(), xi, create_graph=True)
    (ggx,) = torch.autograd.grad((gx ** 2).sum(), xi)
    xr = x.clone().requires_grad_(True)
    (gr,) = torch.autograd.grad((nn.AvgPool2d(**opts)(xr.reshape(-1, *x.shape[2:])) ** 2).sum(), xr, create_graph=True)
    (ggr,) = torch.autograd.grad((gr ** 2).sum(), xr)
    assert torch.equal(gx, gr)
    torch.testing.assert_close(ggx, ggr, rtol=1e-6, atol=1e-12)


def test_windows_that_do_not_tile_take_torchs_kernel(monkeypatch):
    calls = []
    real = torch.ops.aten.avg_pool2d_backward
    monkeypatch.setattr(torch.ops.aten, "avg_pool2d_backward", lambda *a: calls.append(1) or real(*a))
    for opts, shape in ((dict(kernel_size=2), (2, 2, 3, 9, 12)), (dict(kernel_size=2, stride=1), (2, 2, 3, 8, 8)),
                        (dict(kernel_size=2, padding=1), (2, 2, 3, 8, 8))):
        x = _input(torch.float32, shape).requires_grad_(True)
        AvgPool2d(**opts)(x).sum().backward()
    assert len(calls) == 3
