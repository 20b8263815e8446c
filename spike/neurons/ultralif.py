r"""UltraLIF and UltraDLIF: spiking neurons made fully differentiable by ultradiscretization.

Ultradiscretization replaces :math:`(+, \times)` by :math:`(\max, +)`; its smooth form is the
log-sum-exp soft maximum with temperature :math:`\varepsilon > 0` (Miñoza 2026, "UltraLIF: Fully
Differentiable Spiking Neural Networks via Ultradiscretization and Max-Plus Algebra",
arXiv:2602.11206, doi:10.48550/arXiv.2602.11206):

.. math::
    \mathrm{LSE}_\varepsilon(a_1, \dots, a_n) = \varepsilon \log \sum_k e^{a_k/\varepsilon},\qquad
    \max_k a_k \le \mathrm{LSE}_\varepsilon(a) \le \max_k a_k + \varepsilon \log n

**UltraLIF** (from the LIF ODE; :math:`\tau \in (0, 1]` is the per-step decay, so :math:`\log\tau \le 0`
is an additive leak in the max-plus domain):

.. math::
    V &\leftarrow \mathrm{LSE}_\varepsilon(V + \log\tau,\ I) \\
    s &= \sigma\big((V - \theta)/\varepsilon\big) \\
    V &\leftarrow V\,(1 - s)

**UltraDLIF** (from the diffusion equation: gap-junction coupling along the population, neurons in
flattened feature order, ``boundary="wrap"`` (a ring, as in the paper) or ``"none"`` (a chain; the
missing neighbour is :math:`-\infty`)):

.. math:: V_i \leftarrow \mathrm{LSE}_\varepsilon(V_{i-1}, V_i, V_{i+1}) + I_i

with the same spike and reset. Forward and backward use the same smooth function (no surrogate, no
forward/backward mismatch); as :math:`\varepsilon \to 0` the soft max becomes the hard max and the
spike a Heaviside step. The state starts at :math:`V = 0` (the reset value).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from spike.neurons.scan import scan

__all__ = ["BOUNDARIES", "UltraState", "UltraParams", "lse", "soft_spike", "init_state", "ultralif_step",
           "ultradlif_step", "multi_step", "check_eps", "check_eps_range", "check_tau"]

BOUNDARIES = ("wrap", "none")


class UltraState(NamedTuple):
    """Membrane ``v`` (after reset) and the last step's soft spikes ``s`` (same shape as one step)."""

    v: Tensor
    s: Tensor


class UltraParams(NamedTuple):
    """What one step needs.

    Attributes:
        eps: temperature :math:`\\varepsilon > 0` (float or scalar/broadcastable tensor, learnable).
        log_tau: :math:`\\log\\tau \\le 0` (UltraLIF leak; unused by UltraDLIF).
        v_th: threshold :math:`\\theta`.
        boundary: UltraDLIF coupling at the ends of the population, ``"wrap"`` or ``"none"``.
    """

    eps: float | Tensor
    log_tau: float | Tensor = math.log(0.9)
    v_th: float = 1.0
    boundary: str = "wrap"


def check_eps(eps: float) -> float:
    """Return ``float(eps)`` if it is a finite number ``> 0``, else raise ``ValueError``."""
    e = float(eps)
    if not (e > 0.0 and math.isfinite(e)):
        raise ValueError(f"the temperature eps must be a finite number > 0, got {eps!r}")
    return e


def check_eps_range(lo: float, hi: float) -> tuple[float, float]:
    """Validate the ``[lo, hi]`` range a learnable temperature is kept in."""
    lo, hi = check_eps(lo), check_eps(hi)
    if not lo <= hi:
        raise ValueError(f"eps range must satisfy 0 < lo <= hi, got ({lo}, {hi})")
    return lo, hi


def check_tau(tau: float) -> float:
    """The UltraLIF decay factor must lie in ``(0, 1]`` (``log tau <= 0``)."""
    t = float(tau)
    if not (0.0 < t <= 1.0):
        raise ValueError(f"UltraLIF tau is the per-step decay factor and must lie in (0, 1], got {tau!r}")
    return t


def lse(*xs: Tensor, eps: float | Tensor) -> Tensor:
    r"""Soft maximum :math:`\varepsilon \log \sum_k e^{x_k/\varepsilon}` of same-shaped tensors (elementwise).

    Numerically stable for every :math:`\varepsilon > 0`; ``-inf`` entries are ignored (max-plus zero).
    """
    if not xs:
        raise ValueError("lse needs at least one tensor")
    out = xs[0] / eps
    for x in xs[1:]:
        out = torch.logaddexp(out, x / eps)
    return out * eps


def soft_spike(v: Tensor, v_th: float, eps: float | Tensor) -> Tensor:
    r""":math:`s = \sigma((V - \theta)/\varepsilon)`; tends to :math:`H(V - \theta)` as :math:`\varepsilon \to 0`."""
    return torch.sigmoid((v - v_th) / eps)


def init_state(x: Tensor) -> UltraState:
    """``V = 0``, no spikes, shaped like one step ``x`` (``[B, ...]``)."""
    return UltraState(torch.zeros_like(x), torch.zeros_like(x))


def ultralif_step(x: Tensor, state: UltraState, p: UltraParams) -> tuple[Tensor, UltraState]:
    """One UltraLIF step ``(I_t, state_{t-1}) -> (s_t, state_t)``."""
    v = lse(state.v + p.log_tau, x, eps=p.eps)
    s = soft_spike(v, p.v_th, p.eps)
    return s, UltraState(v * (1.0 - s), s)


def _neighbours(v: Tensor, boundary: str) -> tuple[Tensor, Tensor]:
    """``(V_{i-1}, V_{i+1})`` along the flattened features of ``v: [B, N]``."""
    if boundary == "wrap":
        return torch.roll(v, 1, -1), torch.roll(v, -1, -1)
    ninf = v.new_full((v.shape[0], 1), -math.inf)  # [B, 1]
    left = torch.cat([ninf, v[:, :-1]], -1)  # [B, N]
    right = torch.cat([v[:, 1:], ninf], -1)  # [B, N]
    return left, right


def ultradlif_step(x: Tensor, state: UltraState, p: UltraParams) -> tuple[Tensor, UltraState]:
    """One UltraDLIF step: soft max over each neuron and its two neighbours, plus the input."""
    v = state.v.reshape(state.v.shape[0], -1)  # [B, N]
    left, right = _neighbours(v, p.boundary)
    v = lse(left, v, right, eps=p.eps).reshape(x.shape) + x  # [B, ...]
    s = soft_spike(v, p.v_th, p.eps)
    return s, UltraState(v * (1.0 - s), s)


def multi_step(x: Tensor, state: UltraState | None, p: UltraParams, spatial: bool = False,
               record: bool = False) -> tuple[Tensor, UltraState, Tensor | None]:
    """UltraLIF (``spatial=False``) or UltraDLIF over ``x: [T, B, ...]`` with :func:`~spike.neurons.scan.scan`."""
    if p.boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {p.boundary!r}")
    if x.shape[0] == 0:
        raise ValueError(f"x has T = 0 time steps; expected [T >= 1, B, ...], got shape {tuple(x.shape)}")
    if state is None:
        state = init_state(x[0])
    return scan(ultradlif_step if spatial else ultralif_step, x, state, p, record)
