"""Layer types of an event network: frozen dataclasses of plain numpy arrays (validated on creation)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import numpy as np

__all__ = ["EventNetworkError", "Dense", "Conv", "Pool", "Neurons", "CubaNeurons", "AdLIFNeurons", "TimePad", "Layer",
           "NEURON_TYPES", "RESETS", "OUTPUTS"]


class EventNetworkError(ValueError):
    """An event network, its input or a stream call is malformed (names the layer / event)."""


# ------------------------------------------------------------------------------------------------
# network description: frozen dataclasses of plain arrays
# ------------------------------------------------------------------------------------------------

RESETS = ("subtract", "to_value", "none")
OUTPUTS = ("spikes", "membrane")


def _pair(v, what: str) -> tuple[int, int]:
    t = (int(v), int(v)) if np.isscalar(v) else tuple(int(a) for a in v)
    if len(t) != 2:
        raise EventNetworkError(f"{what} must be an int or a pair, got {v!r}")
    return t  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class Dense:
    """Fully connected synapses ``y_t = b + W x_{t - D}`` (``D``: per-synapse integer delays or 0).

    Args:
        weight: ``[n_out, n_in]`` (torch ``nn.Linear`` layout).
        bias: optional ``[n_out]``.
        delay: optional ``[n_out, n_in]`` non-negative integer delays in steps (``DelayedLinear``).
        name: layer name (used in errors and results).
    """

    weight: np.ndarray
    bias: np.ndarray | None = None
    delay: np.ndarray | None = None
    name: str = "dense"

    def __post_init__(self):
        w = np.asarray(self.weight)
        if w.ndim != 2 or w.dtype.kind != "f" or not np.isfinite(w).all():
            raise EventNetworkError(f"{self.name}: weight must be a finite float [n_out, n_in] array, "
                                    f"got {w.dtype} {w.shape}")
        if self.bias is not None and np.shape(self.bias) != (w.shape[0],):
            raise EventNetworkError(f"{self.name}: bias must have shape ({w.shape[0]},), got {np.shape(self.bias)}")
        if self.delay is not None:
            d = np.asarray(self.delay)
            if d.shape != w.shape or d.dtype.kind not in "iu" or (d.size and d.min() < 0):
                raise EventNetworkError(f"{self.name}: delay must be a non-negative integer array of shape "
                                        f"{w.shape}, got {d.dtype} {d.shape}")

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[0])

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.n_out,)

    @property
    def max_delay(self) -> int:
        return int(np.max(self.delay)) if self.delay is not None and self.delay.size else 0


@dataclass(frozen=True, eq=False)
class Conv:
    """2-D convolution (cross-correlation, zero padding) over one step ``[C, H, W]``.

    Args:
        weight: ``[C_out, C_in // groups, kh, kw]`` (torch layout).
        in_shape: ``(C_in, H, W)``.
        bias: optional ``[C_out]``.
        stride, dilation: ints or pairs.
        padding: int, pair ``(ph, pw)`` (symmetric) or ``(top, bottom, left, right)``.
        groups: number of groups.
    """

    weight: np.ndarray
    in_shape: tuple[int, int, int]
    bias: np.ndarray | None = None
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, ...] = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    name: str = "conv"

    def __post_init__(self):
        w = np.asarray(self.weight)
        if w.ndim != 4 or w.dtype.kind != "f" or not np.isfinite(w).all():
            raise EventNetworkError(f"{self.name}: weight must be a finite float [C_out, C_in/groups, kh, kw] "
                                    f"array, got {w.dtype} {w.shape}")
        c_in = self.in_shape[0]
        if len(self.in_shape) != 3 or self.groups < 1 or c_in % self.groups or w.shape[0] % self.groups \
                or w.shape[1] * self.groups != c_in:
            raise EventNetworkError(f"{self.name}: weight {w.shape} does not fit in_shape {self.in_shape} with "
                                    f"groups={self.groups}")
        if self.bias is not None and np.shape(self.bias) != (w.shape[0],):
            raise EventNetworkError(f"{self.name}: bias must have shape ({w.shape[0]},)")
        ho, wo = self.out_shape[1:]
        if ho < 1 or wo < 1 or min(self.stride_hw + self.dilation_hw) < 1 or min(self.pad4) < 0:
            raise EventNetworkError(f"{self.name}: empty output {self.out_shape} or bad stride/padding/dilation")

    @property
    def stride_hw(self) -> tuple[int, int]:
        return _pair(self.stride, f"{self.name}: stride")

    @property
    def dilation_hw(self) -> tuple[int, int]:
        return _pair(self.dilation, f"{self.name}: dilation")

    @property
    def pad4(self) -> tuple[int, int, int, int]:
        """``(top, bottom, left, right)``."""
        p = self.padding
        if np.isscalar(p):
            return (int(p),) * 4  # type: ignore[return-value]
        p = tuple(int(a) for a in p)
        if len(p) == 2:
            return (p[0], p[0], p[1], p[1])
        if len(p) == 4:
            return p  # type: ignore[return-value]
        raise EventNetworkError(f"{self.name}: padding must be an int, a pair or 4 values, got {self.padding!r}")

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def out_shape(self) -> tuple[int, int, int]:
        _, h, w = self.in_shape
        co, _, kh, kw = self.weight.shape
        (sh, sw), (dh, dw), (pt, pb, pl, pr) = self.stride_hw, self.dilation_hw, self.pad4
        return (int(co), (h + pt + pb - dh * (kh - 1) - 1) // sh + 1, (w + pl + pr - dw * (kw - 1) - 1) // sw + 1)

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))


@dataclass(frozen=True, eq=False)
class Pool:
    """Max or average pooling over one step ``[C, H, W]`` (no padding, floor mode).

    Average pooling emits ``sum / divisor`` (``divisor = kh * kw`` unless given), like
    ``torch.nn.AvgPool2d``; max pooling assumes non-negative inputs (spikes, counts).
    """

    kind: str
    in_shape: tuple[int, int, int]
    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] | None = None
    divisor: int | None = None
    name: str = "pool"

    def __post_init__(self):
        if self.kind not in ("max", "avg"):
            raise EventNetworkError(f"{self.name}: pool kind must be 'max' or 'avg', got {self.kind!r}")
        if len(self.in_shape) != 3 or min(self.out_shape) < 1:
            raise EventNetworkError(f"{self.name}: pooling {self.kernel} does not fit in_shape {self.in_shape}")

    @property
    def kernel_hw(self) -> tuple[int, int]:
        return _pair(self.kernel, f"{self.name}: kernel")

    @property
    def stride_hw(self) -> tuple[int, int]:
        return _pair(self.kernel if self.stride is None else self.stride, f"{self.name}: stride")

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def out_shape(self) -> tuple[int, int, int]:
        c, h, w = self.in_shape
        (kh, kw), (sh, sw) = self.kernel_hw, self.stride_hw
        return (c, (h - kh) // sh + 1, (w - kw) // sw + 1)

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))


@dataclass(frozen=True, eq=False)
class Neurons:
    """A LIF/IF/LI population with discrete coefficients (see :func:`spike.neurons.lif.discretize`).

    Args:
        shape: feature shape of one step (``(N,)`` or ``(C, H, W)``).
        beta, gain: per-step decay and input gain, scalars or ``[N]`` arrays (flattened feature order).
        v_th, v_reset, v_rest: threshold, reset value, resting potential.
        reset: ``"subtract"`` | ``"to_value"`` | ``"none"``.
        deferred: ``reset_timing="deferred"`` (snnTorch order).
        output: ``"spikes"`` or ``"membrane"`` (a non-spiking LI readout; only as the last layer).
    """

    shape: tuple[int, ...]
    beta: np.ndarray | float = 1.0
    gain: np.ndarray | float = 1.0
    v_th: float = 1.0
    v_reset: float = 0.0
    v_rest: float = 0.0
    reset: str = "subtract"
    deferred: bool = False
    output: str = "spikes"
    name: str = "neurons"

    def __post_init__(self):
        if self.reset not in RESETS:
            raise EventNetworkError(f"{self.name}: reset must be one of {RESETS}, got {self.reset!r}")
        if self.output not in OUTPUTS:
            raise EventNetworkError(f"{self.name}: output must be one of {OUTPUTS}, got {self.output!r}")
        for what in ("beta", "gain"):
            a = np.asarray(getattr(self, what))
            if a.size not in (1, self.n) or not np.isfinite(a).all():
                raise EventNetworkError(f"{self.name}: {what} must be finite, a scalar or [{self.n}], got {a.shape}")
        if not all(math.isfinite(v) for v in (self.v_th, self.v_reset, self.v_rest)):
            raise EventNetworkError(f"{self.name}: v_th, v_reset, v_rest must be finite")

    @property
    def n(self) -> int:
        return int(np.prod(self.shape))

    n_in = n_out = n

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.shape)


def _check_coefs(layer, names: tuple[str, ...], values: tuple[str, ...]) -> None:
    """Common checks of a neuron layer: reset/output choices, per-neuron coefficients, finite values."""
    if layer.reset not in RESETS:
        raise EventNetworkError(f"{layer.name}: reset must be one of {RESETS}, got {layer.reset!r}")
    if layer.output not in OUTPUTS:
        raise EventNetworkError(f"{layer.name}: output must be one of {OUTPUTS}, got {layer.output!r}")
    for what in names:
        a = np.asarray(getattr(layer, what))
        if a.size not in (1, layer.n) or not np.isfinite(a).all():
            raise EventNetworkError(f"{layer.name}: {what} must be finite, a scalar or [{layer.n}], got {a.shape}")
    if not all(math.isfinite(getattr(layer, v)) for v in values):
        raise EventNetworkError(f"{layer.name}: {', '.join(values)} must be finite")


@dataclass(frozen=True, eq=False)
class CubaNeurons:
    r"""A current-based LIF population (:func:`spike.neurons.cuba.cuba_step`), or with
    ``output="membrane"`` its non-spiking CUBA-LI readout (NIR ``CubaLI``):

    .. math::
        I_t = \alpha I_{t-1} + x_t,\quad h_t = v_\text{rest} + \beta (v_{t-1} - v_\text{rest}) + I_t,\quad
        s_t = H(h_t - v_\text{th}),\quad v_t = R(h_t, s_t)

    (deferred: :math:`v_t = h_t = R(\ldots, s_{t-1})`; :math:`\beta v` when :math:`v_\text{rest} = 0`,
    the reference's form). State starts at :math:`I = 0`, :math:`v = v_\text{rest}`.

    Args:
        shape: feature shape of one step.
        alpha, beta: per-step current and membrane decays, scalars or ``[N]`` arrays.
        v_th, v_reset, v_rest: threshold, reset value, resting potential (0 for ``CubaLIF``).
        reset: ``"subtract"`` | ``"to_value"`` | ``"none"``; deferred: ``reset_timing="deferred"``.
        output: ``"spikes"`` or ``"membrane"`` (only as the last layer).
    """

    shape: tuple[int, ...]
    alpha: np.ndarray | float = 1.0
    beta: np.ndarray | float = 1.0
    v_th: float = 1.0
    v_reset: float = 0.0
    v_rest: float = 0.0
    reset: str = "subtract"
    deferred: bool = False
    output: str = "spikes"
    name: str = "cuba"

    def __post_init__(self):
        _check_coefs(self, ("alpha", "beta"), ("v_th", "v_reset", "v_rest"))

    @property
    def n(self) -> int:
        return int(np.prod(self.shape))

    n_in = n_out = n

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.shape)


@dataclass(frozen=True, eq=False)
class AdLIFNeurons:
    r"""An SE-adLIF population (:func:`spike.neurons.adlif.adlif_step`, Baronig et al. 2024,
    arXiv:2408.07517):

    .. math::
        h_t = \alpha u_{t-1} + (1 - \alpha)(x_t - w_{t-1}),\quad s_t = H(h_t - \vartheta),\quad
        u_t = R(h_t, s_t),\quad w_t = \beta w_{t-1} + (1 - \beta)(q_a u_t + q_b s_t)

    State starts at :math:`u = w = 0`. A scalar coefficient's complement :math:`1 - \alpha` is computed
    in float64 and then rounded (as torch does for a Python float), an array's in the network dtype.

    Args:
        shape: feature shape of one step.
        alpha, beta: per-step membrane and adaptation decays, scalars or ``[N]`` arrays.
        qa, qb: the scaled couplings :math:`q a` and :math:`q b`, scalars or ``[N]`` arrays.
        v_th, v_reset: threshold and reset value.
        reset: ``"to_value"`` | ``"subtract"`` | ``"none"`` (immediate).
    """

    shape: tuple[int, ...]
    alpha: np.ndarray | float = 1.0
    beta: np.ndarray | float = 1.0
    qa: np.ndarray | float = 0.0
    qb: np.ndarray | float = 0.0
    v_th: float = 1.0
    v_reset: float = 0.0
    reset: str = "to_value"
    name: str = "adlif"
    output: str = "spikes"

    def __post_init__(self):
        if self.output != "spikes":
            raise EventNetworkError(f"{self.name}: an AdLIF population emits spikes, got output={self.output!r}")
        _check_coefs(self, ("alpha", "beta", "qa", "qb"), ("v_th", "v_reset"))

    @property
    def n(self) -> int:
        return int(np.prod(self.shape))

    n_in = n_out = n

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.shape)


@dataclass(frozen=True)
class TimePad:
    """Append ``n`` silent steps to the sequence (``spike.synapses.delays.TimePad``): layers before it
    stop at the end of the input, layers after it run ``n`` steps longer."""

    n: int
    name: str = "pad"


NEURON_TYPES = (Neurons, CubaNeurons, AdLIFNeurons)
Layer = Union[Dense, Conv, Pool, Neurons, CubaNeurons, AdLIFNeurons, TimePad]
