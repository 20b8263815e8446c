r"""Current-based LIF (CUBA-LIF): a LIF membrane driven by an exponentially decaying synaptic current.

Discrete-time update (one step of length ``dt``), with :math:`\alpha` and :math:`\beta` from
:func:`discretize`:

.. math::
    I_t &= \alpha\, I_{t-1} + x_t + W_\text{rec}\, s_{t-1} \\
    h_t &= \beta\, v_{t-1} + I_t \\
    s_t &= H(h_t - v_\text{th}) \\
    v_t &= R(h_t, s_t)

with :math:`\alpha = e^{-dt/\tau_\text{syn}}`, :math:`\beta = e^{-dt/\tau}` (``discretization="exp"``;
``"euler"`` gives :math:`1 - dt/\tau`). The reset :math:`R` is the one of :mod:`spike.neurons.lif`:
``subtract`` (:math:`h - s\,v_\text{th}`), ``to_value`` (:math:`h(1-s) + s\,v_\text{reset}`) or ``none``.
Only the membrane is reset; the synaptic current keeps integrating (Gerstner et al. 2014,
*Neuronal Dynamics*, ch. 1.3 and 3.1, doi:10.1017/CBO9781107447615; Zenke & Ganguli 2018, SuperSpike,
doi:10.1162/neco_a_01086, use the same two-variable neuron).

``reset_timing="immediate"`` (default) resets the charged membrane at once, as above.
``reset_timing="deferred"`` is snnTorch's order: the spike of step :math:`t-1` acts at step :math:`t`
on the whole new charge, and the stored membrane is the not-yet-reset value:

.. math:: v_t = h_t = R\big(\beta v_{t-1} + I_t,\ s_{t-1}\big),\qquad s_t = H(h_t - v_\text{th})

With ``subtract`` this is the LIF deferred order. With ``to_value`` the step after a spike is clamped to
:math:`v_\text{reset}` *including* that step's synaptic input (snnTorch ``Synaptic`` "zero" zeroes the
whole membrane), unlike :func:`spike.neurons.lif.lif_step`, whose deferred ``to_value`` adds the step's
drive to the reset value.

Peer mapping (tested to 1e-6, spikes exactly, in ``tests/neurons/test_cubalif.py``): snnTorch
``Synaptic(alpha=a, beta=b, threshold=θ, reset_mechanism="subtract"|"zero")`` (its default
``reset_delay=True``) == ``CubaLIF(tau=-dt/ln b, tau_syn=-dt/ln a, dt, v_th=θ,
reset="subtract"|"to_value", v_reset=0, reset_timing="deferred")``; snnTorch's ``syn`` and ``mem`` are our
``state.i`` and recorded membrane. snnTorch detaches its reset signal (our ``detach_reset=True``) and
thresholds with ``>`` (we use ``>=``; equal only for a membrane exactly at threshold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import Tensor, nn

from spike.core.registry import BACKENDS, resolve
from spike.neurons.lif import DISCRETIZATIONS, RESET_TIMINGS, RESETS, _check_choice, _reset
from spike.neurons.modules import NeuronOutput
from spike.neurons.scan import check_finite, check_sequence, check_state, scan
from spike.surrogate import ATan, Surrogate, get_surrogate, spike_fn

__all__ = ["CubaState", "CubaParams", "CubaDiscrete", "decay", "discretize", "init_state", "cuba_step",
           "multi_step", "supports", "CubaLIF"]



class CubaState(NamedTuple):
    """Membrane ``v`` (recorded), synaptic current ``i`` and the last step's spikes ``s`` (same shape)."""

    v: Tensor
    i: Tensor
    s: Tensor


@dataclass(frozen=True)
class CubaParams:
    """Physical CUBA-LIF parameters.

    Args:
        tau: membrane time constant, same unit as ``dt`` (``math.inf``: no leak); float or tensor.
        tau_syn: synaptic current time constant (``math.inf``: the current never decays).
        dt: simulation step.
        v_th: firing threshold.
        v_reset: value the membrane is set to by ``reset="to_value"``.
        reset: ``"subtract"``, ``"to_value"`` or ``"none"``.
        reset_timing: ``"immediate"`` (default) or ``"deferred"`` (snnTorch ``Synaptic``).
        detach_reset: cut the reset out of the gradient.
        surrogate: surrogate gradient of the spike function (default :class:`~spike.surrogate.ATan`).
        discretization: ``"exp"`` (:math:`e^{-dt/\\tau}`) or ``"euler"`` (:math:`1 - dt/\\tau`), both decays.
        w_rec: optional recurrent weight ``[N, N]``; last step's spikes enter the synaptic current.
    """

    tau: float | Tensor = 10.0
    tau_syn: float | Tensor = 5.0
    dt: float = 1.0
    v_th: float = 1.0
    v_reset: float = 0.0
    reset: str = "subtract"
    reset_timing: str = "immediate"
    detach_reset: bool = False
    surrogate: Surrogate | None = None
    discretization: str = "exp"
    w_rec: Tensor | None = None

    def __post_init__(self):
        _check_choice("reset", self.reset, RESETS)
        _check_choice("reset_timing", self.reset_timing, RESET_TIMINGS)
        _check_choice("discretization", self.discretization, DISCRETIZATIONS)
        check_dt(self.dt)
        for name in ("tau", "tau_syn"):
            check_tau(name, getattr(self, name))
        check_finite_floats(self, ("v_th", "v_reset"))


class CubaDiscrete(NamedTuple):
    """What one step needs: current decay ``alpha``, membrane decay ``beta`` and the discrete options."""

    alpha: float | Tensor
    beta: float | Tensor
    v_th: float
    v_reset: float
    reset: str
    deferred: bool
    detach_reset: bool
    surrogate: Surrogate
    w_rec: Tensor | None


def check_dt(dt: float) -> None:
    """Raise ``ValueError`` unless ``dt`` is a positive finite number."""
    if not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"dt must be a positive finite number, got {dt!r}")


def check_tau(name: str, tau: float | Tensor) -> None:
    """Raise ``ValueError`` unless a float time constant is ``> 0`` (``math.inf`` allowed)."""
    if not isinstance(tau, Tensor) and not tau > 0:
        raise ValueError(f"{name} must be > 0 (math.inf: no decay), got {tau!r}")


def check_finite_floats(p: object, names: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the first attribute of ``p`` in ``names`` that is not a finite number."""
    for name in names:
        value = getattr(p, name)
        try:
            ok = math.isfinite(float(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{name} must be finite, got {value!r}")


def decay(tau: float | Tensor, dt: float, discretization: str = "exp", what: str = "tau") -> float | Tensor:
    r"""Per-step decay of a leaky variable: :math:`e^{-dt/\tau}` (``exp``) or :math:`1 - dt/\tau` (``euler``).

    ``tau = inf`` gives 1 (no decay). A tensor ``tau`` (learnable) keeps the graph; with ``euler`` it is
    clamped into ``[0, 1]``, a float ``tau < dt`` raises.
    """
    if isinstance(tau, Tensor):
        return torch.exp(-dt / tau) if discretization == "exp" else (1.0 - dt / tau).clamp(0.0, 1.0)
    if math.isinf(tau):
        return 1.0
    b = math.exp(-dt / tau) if discretization == "exp" else 1.0 - dt / tau
    if not 0.0 <= b <= 1.0:
        raise ValueError(f"euler discretization needs {what} >= dt, got {what}={tau}, dt={dt}")
    return b


def discretize(p: CubaParams) -> CubaDiscrete:
    r"""Convert physical parameters to per-step coefficients (the only place this happens).

    .. math:: \alpha = e^{-dt/\tau_\text{syn}},\quad \beta = e^{-dt/\tau}\ \text{(exp)};\qquad
              1 - dt/\tau_\text{syn},\ 1 - dt/\tau\ \text{(euler)}
    """
    return CubaDiscrete(decay(p.tau_syn, p.dt, p.discretization, "tau_syn"), decay(p.tau, p.dt, p.discretization),
                        float(p.v_th), float(p.v_reset), p.reset, p.reset_timing == "deferred",
                        bool(p.detach_reset), p.surrogate or ATan(), p.w_rec)


def init_state(x: Tensor, p: CubaDiscrete | None = None) -> CubaState:
    """Resting state shaped like one time step ``x`` (``[B, ...]``): ``v = i = 0``, no spikes."""
    z = torch.zeros_like(x)
    return CubaState(z, z.clone(), z.clone())


def cuba_step(x: Tensor, state: CubaState, p: CubaDiscrete) -> tuple[Tensor, CubaState]:
    """One CUBA-LIF step ``(x_t, state_{t-1}) -> (s_t, state_t)``; the reference implementation."""
    v, i, s_prev = state
    drive = x if p.w_rec is None else x + s_prev @ p.w_rec.t()
    i_new = p.alpha * i + drive
    h = p.beta * v + i_new
    if p.deferred:
        h = _reset(h, s_prev.detach() if p.detach_reset else s_prev, p)
        s = spike_fn(h - p.v_th, p.surrogate)
        return s, CubaState(h, i_new, s)
    s = spike_fn(h - p.v_th, p.surrogate)
    return s, CubaState(_reset(h, s.detach() if p.detach_reset else s, p), i_new, s)


def supports(p: CubaDiscrete, x: Tensor) -> str | None:
    """The reference scan runs every configuration on every device and dtype."""
    return None


def multi_step(x: Tensor, state: CubaState | None, p: CubaDiscrete,
               record: bool = False) -> tuple[Tensor, CubaState, Tensor | None]:
    """CUBA-LIF over ``x: [T, B, ...]`` (plain autograd through :func:`cuba_step`)."""
    if x.shape[0] == 0:
        raise ValueError(f"x has T = 0 time steps; expected [T >= 1, B, ...], got shape {tuple(x.shape)}")
    return scan(cuba_step, x, state if state is not None else init_state(x[0], p), p, record)


# --------------------------------------------------------------------------------------------------
# module shell (shared helpers are reused by spike.neurons.adlif)
# --------------------------------------------------------------------------------------------------

def check_backend(backend: str, name: str, model: str, recurrent: bool = False) -> str:
    """Validate a layer's ``backend`` against the registered ones of ``model`` (``"cuba"``, ``"adlif"``).

    ``auto`` picks the fused numba kernel on CPU when it supports the call (see
    :func:`spike.core.registry.resolve`), else the reference scan. The numba kernels have no recurrent
    weights, so ``backend="numba"`` with ``recurrent=True`` is refused here, at construction.
    """
    known = ("auto",) + tuple(BACKENDS[model])
    if backend not in known:
        raise ValueError(f"{name} backend must be one of {known}, got {backend!r}")
    if backend == "numba" and recurrent:
        raise ValueError(f"{name}: backend='numba' does not support recurrent=True (the fused kernel has no "
                         f"recurrent weights); use backend='reference' or 'auto'")
    return backend


def feature_shape(shape: int | tuple[int, ...] | None) -> tuple[int, ...] | None:
    return (shape,) if isinstance(shape, int) else (tuple(shape) if shape is not None else None)


def log_param(value: float, shape: tuple[int, ...] | None, what: str) -> nn.Parameter:
    """A learnable time constant stored as its logarithm (stays positive), per neuron if ``shape``."""
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"learnable {what} needs a finite initial value > 0, got {value!r}")
    return nn.Parameter(torch.full(shape or (), math.log(value)))


def recurrent_weight(shape: tuple[int, ...] | None) -> nn.Parameter:
    """Learnable ``[N, N]`` recurrent weight, uniform in ``±1/sqrt(N)`` (as :class:`~spike.neurons.LIF`)."""
    if shape is None or len(shape) != 1:
        raise ValueError("recurrent=True needs shape=N (features last, [T, B, N])")
    n = shape[0]
    return nn.Parameter(torch.empty(n, n).uniform_(-1 / math.sqrt(n), 1 / math.sqrt(n)))


def check_layer_input(layer: nn.Module, x: Tensor, state: NamedTuple | None) -> None:
    """Validate ``x [T, B, ...]`` (and ``state``) for a neuron layer; one clear ``ValueError``/``TypeError``."""
    what = f"{type(layer).__name__} input"
    check_sequence(x, what, finite=False)
    shape = getattr(layer, "shape", None)
    if shape is not None and tuple(x.shape[2:]) != shape:
        raise ValueError(f"{type(layer).__name__} expects [T, B, {', '.join(map(str, shape))}], got {tuple(x.shape)}")
    named = check_state(state, x, "state", "pass state=None to start from rest") if state is not None else []
    check_finite((what, x), *named)


class CubaLIF(nn.Module):
    r"""Current-based LIF layer over ``[T, B, ...]`` (see :mod:`spike.neurons.cuba` for the update).

    Args:
        tau: membrane time constant (same unit as ``dt``).
        tau_syn: synaptic current time constant.
        dt: step length.
        v_th, v_reset: threshold and reset value.
        reset: ``"subtract"`` | ``"to_value"`` | ``"none"``.
        reset_timing: ``"immediate"`` (default) | ``"deferred"`` (snnTorch ``Synaptic``).
        detach_reset: remove the reset from the gradient.
        surrogate: a :class:`~spike.surrogate.Surrogate` or its name (default ATan).
        discretization: ``"exp"`` | ``"euler"``.
        learn_tau: make both ``tau`` and ``tau_syn`` parameters (stored as ``log_tau``, ``log_tau_syn``),
            per neuron if ``shape`` is given, else scalar.
        shape: feature shape after ``[T, B]``; needed for per-neuron taus and ``recurrent``.
        recurrent: add a learnable recurrent weight ``[N, N]`` into the synaptic current.
        backend: ``"auto"`` (numba on CPU when it supports the call, else the reference), ``"reference"``
            or ``"numba"`` (:mod:`spike.backends.numba_cuba`; a configuration it cannot run raises).

    Example:
        >>> out = CubaLIF(tau=10.0, tau_syn=5.0)(torch.rand(8, 2, 3), record=True)
        >>> out.spikes.shape, out.state.i.shape
        (torch.Size([8, 2, 3]), torch.Size([2, 3]))
    """

    def __init__(self, tau: float = 10.0, tau_syn: float = 5.0, dt: float = 1.0, *, v_th: float = 1.0,
                 v_reset: float = 0.0, reset: str = "subtract", reset_timing: str = "immediate",
                 detach_reset: bool = False, surrogate: Surrogate | str | None = None,
                 discretization: str = "exp", learn_tau: bool = False,
                 shape: int | tuple[int, ...] | None = None, recurrent: bool = False, backend: str = "auto"):
        super().__init__()
        if isinstance(surrogate, str):
            surrogate = get_surrogate(surrogate)
        self.shape = feature_shape(shape)
        self._template = CubaParams(tau=float(tau), tau_syn=float(tau_syn), dt=float(dt), v_th=v_th,
                                    v_reset=v_reset, reset=reset, reset_timing=reset_timing,
                                    detach_reset=detach_reset, surrogate=surrogate or ATan(),
                                    discretization=discretization)
        self.log_tau = log_param(tau, self.shape, "tau") if learn_tau else None
        self.log_tau_syn = log_param(tau_syn, self.shape, "tau_syn") if learn_tau else None
        self.w_rec = recurrent_weight(self.shape) if recurrent else None
        self.backend = check_backend(backend, "CubaLIF", "cuba", recurrent)

    def params(self) -> CubaParams:
        """Current physical parameters (taus as tensors when learnable)."""
        p = self._template
        if self.log_tau is None and self.w_rec is None:
            return p
        if self.log_tau is None:
            return replace(p, w_rec=self.w_rec)
        return replace(p, tau=torch.exp(self.log_tau), tau_syn=torch.exp(self.log_tau_syn), w_rec=self.w_rec)

    def forward(self, x: Tensor, state: CubaState | None = None, record: bool = False) -> NeuronOutput:
        check_layer_input(self, x, state)
        p = discretize(self.params())
        spikes, state, v = resolve("cuba", self.backend, p, x).multi_step(x, state, p, record)
        return NeuronOutput(spikes, state, v)

    def extra_repr(self) -> str:
        p = self._template
        return (f"tau={p.tau}, tau_syn={p.tau_syn}, dt={p.dt}, v_th={p.v_th}, reset={p.reset!r}, "
                f"reset_timing={p.reset_timing!r}, surrogate={p.surrogate}, learn_tau={self.log_tau is not None}, "
                f"recurrent={self.w_rec is not None}")
