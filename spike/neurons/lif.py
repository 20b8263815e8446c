r"""Leaky integrate-and-fire (LIF) and integrate-and-fire (IF) neurons as pure step functions.

Discrete-time update (one step of length ``dt``), with :math:`\beta` and :math:`g` from :func:`discretize`:

.. math::
    h_t &= v_\text{rest} + \beta\,(v_{t-1} - v_\text{rest}) + g\,(x_t + W_\text{rec}\, s_{t-1}) \\
    s_t &= H(h_t - v_\text{th}) \\
    v_t &= R(h_t, s_t)

where the reset :math:`R` is ``subtract`` (:math:`h - s\,v_\text{th}`), ``to_value``
(:math:`h(1-s) + s\,v_\text{reset}`) or ``none`` (:math:`h`). This is ``reset_timing="immediate"``
(the default; Gerstner et al. 2014, *Neuronal Dynamics*, ch. 1.3, doi:10.1017/CBO9781107447615):
the spike resets the charged membrane at once, and the next step decays the reset value.

``reset_timing="deferred"`` reproduces snnTorch: the spike of step :math:`t-1` is applied at step
:math:`t`, *after* the decay, and the stored membrane is the charged, not-yet-reset value:

.. math::
    v_t = h_t = R\big(v_\text{rest} + \beta (v_{t-1} - v_\text{rest}),\ s_{t-1}\big) + g\,(x_t + W_\text{rec} s_{t-1})

With subtraction the two orders differ (immediate subtracts :math:`\beta v_\text{th}` from the next
step, deferred subtracts :math:`v_\text{th}`); with ``to_value`` and :math:`v_\text{reset}=v_\text{rest}=0`
they give the same spikes (the recorded membrane still differs: reset value vs charged value).

Peer mapping (tested to 1e-6 in ``tests/equivalence``):

* snnTorch ``Leaky(beta=b, threshold=θ, reset_mechanism="subtract"|"zero")`` ==
  ``LIF(tau=-dt/ln(b), dt, v_th=θ, reset="subtract"|"to_value", v_reset=0, reset_timing="deferred")``;
  snnTorch's returned ``mem`` is our recorded membrane.
* SpikingJelly ``LIFNode(tau=τ, decay_input=d, v_threshold=θ, v_reset=r)`` ==
  ``LIF(tau=τ·dt, dt, discretization="euler", decay_input=d, v_th=θ, reset_timing="immediate")`` with
  ``reset="to_value", v_reset=r, v_rest=r`` (SpikingJelly leaks towards ``v_reset``), or
  ``reset="subtract", v_rest=0`` when ``r is None``; SpikingJelly's ``v_seq`` is our recorded membrane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from spike.neurons.scan import scan
from spike.surrogate import Surrogate, spike_fn

__all__ = [
    "RESETS", "RESET_TIMINGS", "DISCRETIZATIONS", "LIFParams", "LIFDiscrete", "LIFState",
    "discretize", "init_state", "charge", "lif_step", "multi_step", "supports",
]

RESETS = ("subtract", "to_value", "none")
RESET_TIMINGS = ("immediate", "deferred")
DISCRETIZATIONS = ("exp", "euler")


class LIFState(NamedTuple):
    """State of a LIF population: membrane ``v`` and the last step's spikes ``s`` (same shape)."""

    v: Tensor
    s: Tensor


@dataclass(frozen=True)
class LIFParams:
    """Physical LIF parameters.

    Args:
        tau: membrane time constant, same unit as ``dt`` (``math.inf`` gives an IF neuron); a float
            or a tensor broadcastable to the feature shape (learnable tau).
        dt: simulation step.
        v_th: firing threshold.
        v_reset: value the membrane is set to by ``reset="to_value"``.
        v_rest: resting potential the membrane leaks towards.
        reset: ``"subtract"``, ``"to_value"`` or ``"none"``.
        reset_timing: ``"immediate"`` (default) or ``"deferred"`` (snnTorch); see the module docstring.
        detach_reset: cut the reset out of the gradient (Zenke & Vogels 2021).
        surrogate: surrogate gradient of the spike function.
        discretization: ``"exp"`` (:math:`\\beta = e^{-dt/\\tau}`, exact for constant input) or
            ``"euler"`` (:math:`\\beta = 1 - dt/\\tau`, SpikingJelly).
        decay_input: scale the input by :math:`1-\\beta` (SpikingJelly ``decay_input=True``).
        w_rec: optional recurrent weight ``[N, N]`` applied to last step's spikes (features last).
    """

    tau: float | Tensor = 10.0
    dt: float = 1.0
    v_th: float = 1.0
    v_reset: float = 0.0
    v_rest: float = 0.0
    reset: str = "subtract"
    reset_timing: str = "immediate"
    detach_reset: bool = False
    surrogate: Surrogate | None = None
    discretization: str = "exp"
    decay_input: bool = False
    w_rec: Tensor | None = None

    def __post_init__(self):
        _check_choice("reset", self.reset, RESETS)
        _check_choice("reset_timing", self.reset_timing, RESET_TIMINGS)
        _check_choice("discretization", self.discretization, DISCRETIZATIONS)
        if not (self.dt > 0 and math.isfinite(self.dt)):
            raise ValueError(f"dt must be a positive finite number, got {self.dt!r}")
        if not isinstance(self.tau, Tensor) and not self.tau > 0:
            raise ValueError(f"tau must be > 0 (math.inf for an IF neuron), got {self.tau!r}")
        if self.decay_input and not isinstance(self.tau, Tensor) and math.isinf(self.tau):
            raise ValueError("decay_input=True scales the input by 1-beta, which is 0 for tau=inf (IF)")
        for name in ("v_th", "v_reset", "v_rest"):
            value = getattr(self, name)
            try:
                ok = math.isfinite(float(value))
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"{name} must be finite, got {value!r}")


class LIFDiscrete(NamedTuple):
    """What one step needs: per-step decay ``beta`` and input ``gain`` plus the discrete options."""

    beta: float | Tensor
    gain: float | Tensor
    v_th: float
    v_reset: float
    v_rest: float
    reset: str
    deferred: bool
    detach_reset: bool
    surrogate: Surrogate
    w_rec: Tensor | None


def discretize(p: LIFParams) -> LIFDiscrete:
    r"""Convert physical parameters to per-step coefficients (the only place this happens).

    .. math:: \beta = e^{-dt/\tau}\ \text{(exp)}\quad\text{or}\quad 1 - dt/\tau\ \text{(euler)},\qquad
              g = 1 - \beta\ \text{if decay\_input else } 1
    """
    from spike.surrogate import ATan

    tau = p.tau
    if isinstance(tau, Tensor):
        beta = torch.exp(-p.dt / tau) if p.discretization == "exp" else (1.0 - p.dt / tau).clamp(0.0, 1.0)
    elif math.isinf(tau):
        beta = 1.0
    else:
        beta = math.exp(-p.dt / tau) if p.discretization == "exp" else 1.0 - p.dt / tau
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"euler discretization needs tau >= dt, got tau={tau}, dt={p.dt}")
    gain = (1.0 - beta) if p.decay_input else 1.0
    return LIFDiscrete(beta, gain, float(p.v_th), float(p.v_reset), float(p.v_rest), p.reset,
                       p.reset_timing == "deferred", bool(p.detach_reset), p.surrogate or ATan(), p.w_rec)


def init_state(x: Tensor, p: LIFDiscrete | None = None) -> LIFState:
    """Resting state shaped like one time step ``x`` (``[B, ...]``): ``v = v_rest``, no spikes."""
    v = torch.full_like(x, p.v_rest if p is not None else 0.0)
    return LIFState(v, torch.zeros_like(x))


def _reset(h: Tensor, s: Tensor, p: LIFDiscrete) -> Tensor:
    if p.reset == "subtract":
        return h - s * p.v_th
    if p.reset == "to_value":
        return h * (1.0 - s) + s * p.v_reset
    return h


def charge(x: Tensor, state: LIFState, p: LIFDiscrete) -> Tensor:
    """The membrane before the spike decision, :math:`h_t` of the module equations (with the deferred
    reset of :math:`s_{t-1}` already applied for ``reset_timing="deferred"``); used by :func:`lif_step`."""
    v, s_prev = state
    leak = p.v_rest + p.beta * (v - p.v_rest) if p.v_rest != 0.0 else p.beta * v
    drive = x if p.w_rec is None else x + s_prev @ p.w_rec.t()
    drive = drive if isinstance(p.gain, float) and p.gain == 1.0 else p.gain * drive
    if p.deferred:
        r = s_prev.detach() if p.detach_reset else s_prev
        return _reset(leak, r, p) + drive
    return leak + drive


def lif_step(x: Tensor, state: LIFState, p: LIFDiscrete) -> tuple[Tensor, LIFState]:
    """One LIF step ``(x_t, state_{t-1}) -> (s_t, state_t)``; the reference for every backend."""
    h = charge(x, state, p)
    s = spike_fn(h - p.v_th, p.surrogate)
    if p.deferred:
        return s, LIFState(h, s)
    v_new = _reset(h, s.detach() if p.detach_reset else s, p)
    return s, LIFState(v_new, s)


def supports(p: LIFDiscrete, x: Tensor) -> str | None:
    """The reference path runs every configuration on every device and dtype."""
    return None


def multi_step(x: Tensor, state: LIFState | None, p: LIFDiscrete,
               record: bool = False) -> tuple[Tensor, LIFState, Tensor | None]:
    """Reference multi-step LIF over ``x: [T, B, ...]`` (plain autograd through :func:`lif_step`)."""
    if x.shape[0] == 0:
        raise ValueError(f"x has T = 0 time steps; expected [T >= 1, B, ...], got shape {tuple(x.shape)}")
    if state is None:
        state = init_state(x[0], p)
    return scan(lif_step, x, state, p, record)


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {choices}, got {value!r}")
