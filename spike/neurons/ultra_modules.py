r"""Module shells for :mod:`spike.neurons.ultralif`: they hold the learnable temperature (and
optionally the decay), nothing else. A call takes ``x: [T, B, ...]`` and an optional
:class:`~spike.neurons.ultralif.UltraState` and returns
:class:`~spike.neurons.modules.NeuronOutput` ``(spikes, state, v)``, like :class:`~spike.neurons.LIF`.

Training strategies: both are plain differentiable functions, so BPTT needs no surrogate. With SLTT
(state detached between steps) only the within-step path is trained, which is exact at ``T = 1``
and an approximation otherwise, as for LIF; the combination is allowed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spike.neurons import ultralif as F
from spike.neurons.modules import NeuronOutput
from spike.neurons.scan import check_finite, check_sequence, check_state

__all__ = ["UltraLIF", "UltraDLIF", "spike_rate_penalty"]


class _RatePenalty(torch.autograd.Function):
    """Identity forward; backward adds ``weight / numel`` (the gradient of ``weight * s.mean()``)."""

    @staticmethod
    def forward(ctx, s: Tensor, weight: float) -> Tensor:  # type: ignore[override]
        ctx.weight, ctx.n = weight, s.numel()
        return s.view_as(s)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return grad + ctx.weight / ctx.n, None


def spike_rate_penalty(s: Tensor, weight: float) -> Tensor:
    r"""Return ``s`` unchanged, but back-propagate as if ``weight * s.mean()`` were added to the loss.

    The sparsity penalty of the UltraLIF paper (:math:`\lambda \cdot` mean firing rate), applied
    where the spikes are made, so it works with every training strategy without changing the loss
    function (the logged loss excludes it). It applies per call: a sequence run in ``n`` chunks
    (SLTT steps one time step at a time) is penalised ``n`` times the mean rate of its chunks.
    """
    if weight == 0.0 or not (torch.is_grad_enabled() and s.requires_grad):
        return s
    return _RatePenalty.apply(s, float(weight))


class _UltraBase(nn.Module):
    spatial = False

    def __init__(self, *, v_th: float, eps: float, eps_range: tuple[float, float], learn_eps: bool,
                 sparsity: float, boundary: str):
        super().__init__()
        self.eps_min, self.eps_max = F.check_eps_range(*eps_range)
        e = F.check_eps(eps)
        if not self.eps_min <= e <= self.eps_max:
            raise ValueError(f"initial eps={e} lies outside eps_range={eps_range}")
        if not math.isfinite(v_th):
            raise ValueError(f"v_th must be finite, got {v_th!r}")
        if not (sparsity >= 0.0 and math.isfinite(sparsity)):
            raise ValueError(f"sparsity penalty must be finite and >= 0, got {sparsity!r}")
        if boundary not in F.BOUNDARIES:
            raise ValueError(f"boundary must be one of {F.BOUNDARIES}, got {boundary!r}")
        # eps = exp(log_eps) clamped into [eps_min, eps_max] (as in the paper's code)
        if learn_eps:
            self.log_eps = nn.Parameter(torch.tensor(math.log(e)))
        else:
            self.register_buffer("log_eps", torch.tensor(math.log(e)))
        self.v_th, self.sparsity, self.boundary = float(v_th), float(sparsity), boundary

    @property
    def eps(self) -> Tensor:
        """The temperature in use, ``exp(log_eps)`` clamped into ``eps_range``."""
        return self.log_eps.exp().clamp(self.eps_min, self.eps_max)

    def _log_tau(self) -> float | Tensor:
        return 0.0

    def params(self) -> F.UltraParams:
        return F.UltraParams(self.eps, self._log_tau(), self.v_th, self.boundary)

    def forward(self, x: Tensor, state: F.UltraState | None = None, record: bool = False) -> NeuronOutput:
        name = type(self).__name__
        what = f"{name} input"
        check_sequence(x, what, finite=False)
        named = check_state(state, x, "state", "pass state=None to start from V = 0") if state is not None else []
        check_finite((what, x), *named)  # one reduction for the input and the initial state
        spikes, state, v = F.multi_step(x, state, self.params(), spatial=self.spatial, record=record)
        if self.training and self.sparsity > 0.0:
            spikes = spike_rate_penalty(spikes, self.sparsity)
        return NeuronOutput(spikes, state, v)


class UltraLIF(_UltraBase):
    r"""UltraLIF layer over ``[T, B, ...]``: :math:`V \leftarrow \mathrm{LSE}_\varepsilon(V + \log\tau, I)`,
    :math:`s = \sigma((V-\theta)/\varepsilon)`, :math:`V \leftarrow V(1-s)` (see :mod:`spike.neurons.ultralif`).

    Args:
        tau: per-step decay factor in ``(0, 1]`` (paper default 0.9).
        v_th: threshold :math:`\theta`.
        eps: initial temperature (paper: 1.0).
        eps_range: ``(min, max)`` the learnable temperature is clamped to (paper: ``(0.1, 20)``).
        learn_eps: make :math:`\varepsilon` a parameter (stored as ``log_eps``).
        learn_tau: make :math:`\tau` a parameter (UltraPLIF; ``log_tau`` clamped to ``[log 0.1, log 0.99]``).
        sparsity: weight :math:`\lambda` of the firing-rate penalty :math:`\lambda\,\overline{s}`
            (see :func:`spike_rate_penalty`); 0 disables it.

    Shape:
        input ``[T, B, ...]`` → spikes ``[T, B, ...]`` (soft, in ``(0, 1)``).

    Example:
        >>> out = UltraLIF()(torch.randn(4, 2, 3))
        >>> out.spikes.shape, bool(((out.spikes > 0) & (out.spikes < 1)).all())
        (torch.Size([4, 2, 3]), True)
    """

    def __init__(self, tau: float = 0.9, *, v_th: float = 1.0, eps: float = 1.0,
                 eps_range: tuple[float, float] = (0.1, 20.0), learn_eps: bool = True, learn_tau: bool = False,
                 sparsity: float = 0.0):
        super().__init__(v_th=v_th, eps=eps, eps_range=eps_range, learn_eps=learn_eps, sparsity=sparsity,
                         boundary="wrap")
        tau = F.check_tau(tau)
        if learn_tau:
            if not 0.1 <= tau <= 0.99:
                raise ValueError(f"learn_tau=True keeps tau in [0.1, 0.99]; initial tau={tau} is outside")
            self.log_tau = nn.Parameter(torch.tensor(math.log(tau)))
        else:
            self.log_tau = None
            self._fixed_log_tau = math.log(tau)

    def _log_tau(self) -> float | Tensor:
        if self.log_tau is None:
            return self._fixed_log_tau
        return self.log_tau.clamp(math.log(0.1), math.log(0.99))

    def extra_repr(self) -> str:
        lt = self._log_tau()
        tau = math.exp(float(lt.detach()) if isinstance(lt, Tensor) else lt)
        return (f"tau={tau:.3g}, v_th={self.v_th}, eps={float(self.eps.detach()):.3g}, "
                f"eps_range=({self.eps_min}, {self.eps_max}), learn_tau={self.log_tau is not None}, "
                f"sparsity={self.sparsity}")


class UltraDLIF(_UltraBase):
    r"""UltraDLIF layer over ``[T, B, ...]``: :math:`V_i \leftarrow \mathrm{LSE}_\varepsilon(V_{i-1}, V_i, V_{i+1}) + I_i`,
    then the UltraLIF spike and reset; neighbours along the flattened features.

    Args:
        boundary: ``"wrap"`` (ring, as in the paper) or ``"none"`` (chain; edge neurons have one neighbour).
        v_th, eps, eps_range, learn_eps, sparsity: as in :class:`UltraLIF`.

    Example:
        >>> out = UltraDLIF(boundary="none")(torch.randn(4, 2, 5))
        >>> out.state.v.shape
        torch.Size([2, 5])
    """

    spatial = True

    def __init__(self, *, boundary: str = "wrap", v_th: float = 1.0, eps: float = 1.0,
                 eps_range: tuple[float, float] = (0.1, 20.0), learn_eps: bool = True, sparsity: float = 0.0):
        super().__init__(v_th=v_th, eps=eps, eps_range=eps_range, learn_eps=learn_eps, sparsity=sparsity,
                         boundary=boundary)

    def extra_repr(self) -> str:
        return (f"boundary={self.boundary!r}, v_th={self.v_th}, eps={float(self.eps.detach()):.3g}, "
                f"eps_range=({self.eps_min}, {self.eps_max}), sparsity={self.sparsity}")
