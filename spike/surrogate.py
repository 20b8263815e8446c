"""Surrogate gradients for the Heaviside spike function.

The forward pass is always the exact step ``H(x) = 1[x >= 0]`` (a neuron fires when its membrane
*reaches* the threshold). The backward pass replaces ``H'(x) = δ(x)`` by the derivative of a smooth
``primitive`` (Neftci, Mostafa & Zenke 2019, doi:10.1109/MSP.2019.2931595). Each surrogate is a small
frozen dataclass holding that primitive and its derivative, so the pair can be checked against
finite differences, and kernels (numba, Triton) can read ``kernel_spec`` to implement the same
derivative.

Every primitive and derivative is finite for every finite input (tested at ``±1e4``).

Example:
    >>> import torch
    >>> from spike.surrogate import ATan, spike_fn
    >>> x = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
    >>> spike_fn(x, ATan()).tolist()
    [0.0, 1.0, 1.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Surrogate", "ATan", "Sigmoid", "FastSigmoid", "Triangle", "spike_fn", "get_surrogate"]


class Surrogate:
    """Base class: ``primitive(x)`` is the smooth stand-in for ``H``; ``grad(x)`` its derivative."""

    name: str = "base"

    def primitive(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def grad(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def kernel_spec(self) -> tuple[str, float]:
        """``(name, parameter)`` that fused kernels use to implement the same ``grad``."""
        raise NotImplementedError

    def __call__(self, x: Tensor) -> Tensor:
        return spike_fn(x, self)


@dataclass(frozen=True)
class ATan(Surrogate):
    r"""Arc-tangent surrogate (Fang et al. 2021, doi:10.1109/ICCV48922.2021.00266).

    .. math::
        g(x) = \tfrac{1}{\pi}\arctan(\tfrac{\pi}{2}\alpha x) + \tfrac12,\qquad
        g'(x) = \frac{\alpha/2}{1 + (\tfrac{\pi}{2}\alpha x)^2}

    Same as snnTorch ``surrogate.atan(alpha)`` and SpikingJelly ``surrogate.ATan(alpha)``.
    """

    alpha: float = 2.0
    name = "atan"

    def __post_init__(self):
        _check_positive("ATan.alpha", self.alpha)

    def primitive(self, x: Tensor) -> Tensor:
        return torch.atan(0.5 * math.pi * self.alpha * x) / math.pi + 0.5

    def grad(self, x: Tensor) -> Tensor:
        return (0.5 * self.alpha) / (1.0 + (0.5 * math.pi * self.alpha * x) ** 2)

    @property
    def kernel_spec(self) -> tuple[str, float]:
        return ("atan", float(self.alpha))


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    r"""Logistic surrogate (Zenke & Ganguli 2018, doi:10.1162/neco_a_01086).

    .. math:: g(x) = \sigma(\alpha x),\qquad g'(x) = \alpha\,\sigma(\alpha x)(1-\sigma(\alpha x))
    """

    alpha: float = 4.0
    name = "sigmoid"

    def __post_init__(self):
        _check_positive("Sigmoid.alpha", self.alpha)

    def primitive(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.alpha * x)

    def grad(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(self.alpha * x)
        return self.alpha * s * (1.0 - s)

    @property
    def kernel_spec(self) -> tuple[str, float]:
        return ("sigmoid", float(self.alpha))


@dataclass(frozen=True)
class FastSigmoid(Surrogate):
    r"""Fast sigmoid of SuperSpike (Zenke & Ganguli 2018, doi:10.1162/neco_a_01086).

    .. math:: g(x) = \frac{x}{1 + k|x|},\qquad g'(x) = \frac{1}{(1 + k|x|)^2}

    ``g'`` equals snnTorch's ``surrogate.fast_sigmoid(slope=k)``.
    """

    slope: float = 25.0
    name = "fast_sigmoid"

    def __post_init__(self):
        _check_positive("FastSigmoid.slope", self.slope)

    def primitive(self, x: Tensor) -> Tensor:
        return x / (1.0 + self.slope * x.abs())

    def grad(self, x: Tensor) -> Tensor:
        return 1.0 / (1.0 + self.slope * x.abs()) ** 2

    @property
    def kernel_spec(self) -> tuple[str, float]:
        return ("fast_sigmoid", float(self.slope))


@dataclass(frozen=True)
class Triangle(Surrogate):
    r"""Triangular (piecewise-linear) surrogate of unit area (Esser et al. 2016, doi:10.1073/pnas.1604850113).

    .. math::
        g'(x) = \frac{1}{w}\max\!\left(0, 1 - \frac{|x|}{w}\right),\qquad
        g(x) = \int_{-\infty}^{x} g'(u)\,du
    """

    width: float = 1.0
    name = "triangle"

    def __post_init__(self):
        _check_positive("Triangle.width", self.width)

    def primitive(self, x: Tensor) -> Tensor:
        w = self.width
        u = (x / w).clamp(-1.0, 1.0)  # normalised position inside the support
        # integral of (1-|u|) du from -1 to u, which is 0.5*(1+u)^2 for u<0 and 1-0.5*(1-u)^2 for u>=0
        return torch.where(u < 0, 0.5 * (1.0 + u) ** 2, 1.0 - 0.5 * (1.0 - u) ** 2)

    def grad(self, x: Tensor) -> Tensor:
        w = self.width
        return torch.clamp(1.0 - x.abs() / w, min=0.0) / w

    @property
    def kernel_spec(self) -> tuple[str, float]:
        return ("triangle", float(self.width))


_BY_NAME = {"atan": ATan, "sigmoid": Sigmoid, "fast_sigmoid": FastSigmoid, "triangle": Triangle}


def get_surrogate(name: str, param: float | None = None) -> Surrogate:
    """Build a surrogate from its name (``atan``, ``sigmoid``, ``fast_sigmoid``, ``triangle``)."""
    try:
        cls = _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown surrogate {name!r}; choose one of {sorted(_BY_NAME)}") from None
    return cls() if param is None else cls(param)


def _check_positive(what: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{what} must be a positive finite number, got {value!r}")


class _Heaviside(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, surrogate: Surrogate) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.grad(x), None


def spike_fn(x: Tensor, surrogate: Surrogate) -> Tensor:
    """Heaviside ``1[x >= 0]`` forward, ``surrogate.grad(x)`` backward."""
    return _Heaviside.apply(x, surrogate)
