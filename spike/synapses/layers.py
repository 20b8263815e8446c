"""Stateless layers lifted over time by folding ``T`` into the batch: ``[T, B, ...] -> [T*B, ...]``."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from spike.core.registry import resolve
from spike.neurons.modules import input_checked
from spike.neurons.scan import check_sequence

__all__ = ["TimeDistributed", "Linear", "Conv2d", "BatchNorm1d", "BatchNorm2d", "AvgPool2d", "MaxPool2d",
           "Flatten", "SharedDropout"]


def _check(x: Tensor, what: str, min_dim: int = 3) -> None:
    """Shape checks always; NaN/Inf only when this model call's input was not checked already."""
    check_sequence(x, what, min_dim, finite=not input_checked())


def fold(x: Tensor) -> Tensor:
    """``[T, B, ...] -> [T*B, ...]``."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])  # [T*B, ...]


def unfold(y: Tensor, t: int) -> Tensor:
    """``[T*B, ...] -> [T, B, ...]``."""
    return y.reshape(t, y.shape[0] // t, *y.shape[1:])  # [T, B, ...]


class _Folded:
    """Mixin: run the wrapped per-sample op on ``[T*B, ...]`` and restore ``[T, B, ...]``."""

    _min_dim = 3
    checks_finite = True

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        _check(x, type(self).__name__ + " input", self._min_dim)
        return unfold(super().forward(fold(x)), x.shape[0])  # type: ignore[misc]


class TimeDistributed(nn.Module):
    """Apply any per-sample module to every time step of ``[T, B, ...]`` in one call."""

    checks_finite = True

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        _check(x, "TimeDistributed input")
        return unfold(self.module(fold(x)), x.shape[0])


def supports(p, x: Tensor) -> str | None:
    """The reference paths (dense ``F.linear``, torch's ``avg_pool2d``) run everything."""
    return None


def linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Reference ``x Wᵀ + b`` (dense matmul)."""
    return nn.functional.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` over ``[T, B, F_in] -> [T, B, F_out]`` (one matmul for all steps).

    Args:
        backend: ``"auto"`` uses the sparse-input numba kernels on the CPU when the input is sparse
            and the layer large enough (the measured rule of :data:`spike.backends.numba_linear.MAX_DENSITY`),
            else the dense matmul; ``"reference"`` always uses
            the dense matmul, ``"numba"`` always the sparse kernel.
    """

    checks_finite = True

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, backend: str = "auto",
                 device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        _check(x, "Linear input")
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expects [T, B, {self.in_features}], got {tuple(x.shape)}")
        return resolve("linear", self.backend, self, x).linear(x, self.weight, self.bias)


class Conv2d(_Folded, nn.Conv2d):
    """``nn.Conv2d`` over ``[T, B, C, H, W]``."""

    _min_dim = 5


class BatchNorm1d(_Folded, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over ``[T, B, C]``: statistics over time and batch together."""


class BatchNorm2d(_Folded, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` over ``[T, B, C, H, W]``."""

    _min_dim = 5


class _AvgPool2dFn(torch.autograd.Function):
    """``F.avg_pool2d`` whose backward keeps only the input's shape, not the input.

    The gradient of an average is ``grad / divisor`` spread over each window: it does not depend on the
    input's values. torch's own ``avg_pool2d`` saves its input anyway (and under ``[train] memory =
    "packed" | "mesa8"`` the saved-tensor hook has to restore the whole float tensor for a shape);
    this one calls the same backward kernel (``aten::avg_pool2d_backward``) with a zero-stride stand-in
    of the input's shape, so the gradient is torch's, bit for bit (tests/synapses/test_avgpool_backward.py).
    Windows that tile the input (stride = kernel, no padding, sizes divisible: the usual ``AvgPool2d(2)``)
    skip that kernel's zero fill: ``grad / divisor`` is expanded over each window in one pass, the same
    values as torch's ``0 + grad / divisor``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, args: tuple) -> Tensor:  # type: ignore[override]
        ctx.shape, ctx.args = x.shape, args
        return nn.functional.avg_pool2d(x, *args)  # [N, C, H', W']

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        n, c, h, w = ctx.shape
        kernel, stride, padding, _, _, divisor = ctx.args
        if (kernel == stride and padding == (0, 0) and h % kernel[0] == 0 and w % kernel[1] == 0
                and grad.is_contiguous()):
            # tiling windows: every input element gets its window's grad / divisor, written in one pass
            # (torch's kernel first zero-fills the input gradient, then adds grad / divisor into it:
            # the same values, bit for bit, since 0 + g / d = g / d)
            g = grad / (divisor or kernel[0] * kernel[1])  # [N, C, H', W']
            ho, wo = h // kernel[0], w // kernel[1]
            return g[:, :, :, None, :, None].expand(n, c, ho, kernel[0], wo, kernel[1]).reshape(n, c, h, w), None
        shape_only = grad.new_zeros(()).expand(ctx.shape)  # [N, C, H, W], no storage; its values are never read
        return torch.ops.aten.avg_pool2d_backward(grad, shape_only, *ctx.args), None


def avg_pool2d(x: Tensor, args: tuple) -> Tensor:
    """Reference ``F.avg_pool2d(x, *args)`` over ``x [N, C, H, W]``, ``args = (kernel, stride, padding,
    ceil_mode, count_include_pad, divisor_override)``: torch's kernels; the backward keeps only the
    input's shape (:class:`_AvgPool2dFn`) unless the input is not contiguous (channels-last), which
    takes torch's ``avg_pool2d`` as it is so that its gradient keeps torch's layout."""
    if not x.is_contiguous():
        return nn.functional.avg_pool2d(x, *args)
    return _AvgPool2dFn.apply(x, args)


class AvgPool2d(_Folded, nn.AvgPool2d):
    """``nn.AvgPool2d`` over ``[T, B, C, H, W]``; its backward keeps the input's shape, not the input.

    Outputs and gradients are bit-identical to ``nn.AvgPool2d`` with every option (padding,
    ``ceil_mode``, ``count_include_pad``, ``divisor_override``).

    Args:
        backend: ``"auto"`` runs the numba kernel (:mod:`spike.backends.numba_pool`) on the CPU for
            windows that tile the input (``stride == kernel_size``, no padding, sizes divisible: the
            usual ``AvgPool2d(2)``) and torch's kernels otherwise; ``"reference"`` always torch's;
            ``"numba"`` the kernel, raising :class:`~spike.core.registry.BackendError` for anything else.
    """

    _min_dim = 5

    def __init__(self, *args, backend: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        _check(x, "AvgPool2d input", self._min_dim)
        xf = fold(x)  # [T*B, C, H, W]
        kernel = _pair(self.kernel_size)
        stride = _pair(self.stride) if self.stride else kernel  # nn.AvgPool2d: stride None -> kernel_size
        args = (kernel, stride, _pair(self.padding), self.ceil_mode, self.count_include_pad, self.divisor_override)
        return unfold(resolve("avgpool", self.backend, args, xf).avg_pool2d(xf, args), x.shape[0])  # [T, B, C, H', W']


class MaxPool2d(_Folded, nn.MaxPool2d):
    """``nn.MaxPool2d`` over ``[T, B, C, H, W]``."""

    _min_dim = 5


class Flatten(nn.Module):
    """``[T, B, d1, d2, ...] -> [T, B, d1*d2*...]``."""

    checks_finite = True

    def forward(self, x: Tensor) -> Tensor:
        _check(x, "Flatten input")
        return x.flatten(2)  # [T, B, F]


class SharedDropout(nn.Module):
    """Dropout with one mask per sample shared by all time steps (a dropped unit stays silent).

    Args:
        p: drop probability.
    """

    checks_finite = True

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        _check(x, "SharedDropout input", 2)
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty_like(x[0]).bernoulli_(1.0 - self.p)  # [B, ...], same mask for every t
        return x * (keep / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"
