r"""SE-adLIF: adaptive LIF with a membrane-coupled adaptation current, symplectic-Euler discretised.

Baronig, Ferrand, Sabathiel & Legenstein 2024, "Advancing spatio-temporal processing in spiking neural
networks through adaptation", arXiv:2408.07517. The continuous model (their Eq. 1-2, units where the
input resistance is 1) is

.. math::
    \tau_u \dot u = -u - w + I,\qquad \tau_w \dot w = -w + a\,u + b\,\tau_w S(t)

with a reset of :math:`u` at each spike. Symplectic Euler (SE) updates :math:`u` with the *old*
:math:`w_{t-1}` and then :math:`w` with the *new* :math:`u_t` and :math:`s_t`. What one step of
:func:`adlif_step` computes, with :math:`\alpha = e^{-dt/\tau_u}`, :math:`\beta = e^{-dt/\tau_w}`:

.. math::
    h_t &= \alpha\, u_{t-1} + (1-\alpha)\,\big(x_t + W_\text{rec} s_{t-1} - w_{t-1}\big) \\
    s_t &= H(h_t - \vartheta) \\
    u_t &= R(h_t, s_t) \\
    w_t &= \beta\, w_{t-1} + (1-\beta)\, q\,\big(a\, u_t + b\, s_t\big)

:math:`R` is ``to_value`` (:math:`h(1-s) + s\,u_r`, the paper's reset to :math:`u_r = 0`), ``subtract``
(:math:`h - s\,\vartheta`) or ``none``; the reset is immediate, and the adaptation sees the membrane
*after* the reset (as in the authors' code). :math:`q` is the paper's fixed scale of the adaptation
(their ``q``; 1 here by default). The authors detach the reset from the gradient (our
``detach_reset=True``) and keep :math:`a \in [0, 1]`, :math:`b \in [0, 2]` by clipping after every
optimiser step; :class:`AdLIF` with ``learn_ab=True`` instead maps unconstrained parameters onto the
same ranges with a sigmoid, :math:`a = a_\min + (a_\max - a_\min)\,\sigma(\tilde a)`, so no
optimiser hook is needed. Time constants are learnable as :math:`\log\tau` (the authors interpolate
within fixed ranges).

With :math:`a > 0` the subthreshold system is a damped oscillator when
:math:`(1/\tau_u + 1/\tau_w)^2 < 4(1 + q a)/(\tau_u \tau_w)` (resonance); :math:`b > 0` gives
spike-triggered adaptation (inter-spike intervals grow under constant drive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import Tensor, nn

from spike.core.registry import resolve
from spike.neurons.cuba import (check_backend, check_dt, check_finite_floats, check_layer_input, check_tau, decay,
                                feature_shape, log_param, recurrent_weight)
from spike.neurons.lif import DISCRETIZATIONS, RESETS, _check_choice, _reset
from spike.neurons.modules import NeuronOutput
from spike.neurons.scan import scan
from spike.surrogate import ATan, Surrogate, get_surrogate, spike_fn

__all__ = ["AdLIFState", "AdLIFParams", "AdLIFDiscrete", "discretize", "init_state", "adlif_step",
           "multi_step", "supports", "AdLIF", "A_RANGE", "B_RANGE"]

A_RANGE = (0.0, 1.0)  # the paper's range of the subthreshold coupling a
B_RANGE = (0.0, 2.0)  # and of the spike-triggered increment b


class AdLIFState(NamedTuple):
    """Membrane ``v`` (:math:`u`, after reset; recorded), adaptation ``w`` and last step's spikes ``s``."""

    v: Tensor
    w: Tensor
    s: Tensor


@dataclass(frozen=True)
class AdLIFParams:
    """Physical SE-adLIF parameters.

    Args:
        tau: membrane time constant :math:`\\tau_u` (same unit as ``dt``); float or tensor.
        tau_w: adaptation time constant :math:`\\tau_w`.
        dt: simulation step.
        a: subthreshold coupling of the adaptation to the membrane (float or tensor).
        b: spike-triggered adaptation increment (float or tensor).
        q: fixed scale of the adaptation drive (the paper's ``q``).
        v_th: threshold :math:`\\vartheta`.
        v_reset: reset value :math:`u_r` of ``reset="to_value"``.
        reset: ``"to_value"`` (paper, with ``v_reset=0``), ``"subtract"`` or ``"none"``.
        detach_reset: cut the reset out of the gradient (the paper's code does).
        surrogate: surrogate gradient of the spike (default :class:`~spike.surrogate.ATan`).
        discretization: decays ``"exp"`` (paper) or ``"euler"`` (:math:`1 - dt/\\tau`).
        w_rec: optional recurrent weight ``[N, N]`` applied to last step's spikes.
    """

    tau: float | Tensor = 20.0
    tau_w: float | Tensor = 200.0
    dt: float = 1.0
    a: float | Tensor = 0.5
    b: float | Tensor = 1.0
    q: float = 1.0
    v_th: float = 1.0
    v_reset: float = 0.0
    reset: str = "to_value"
    detach_reset: bool = False
    surrogate: Surrogate | None = None
    discretization: str = "exp"
    w_rec: Tensor | None = None

    def __post_init__(self):
        _check_choice("reset", self.reset, RESETS)
        _check_choice("discretization", self.discretization, DISCRETIZATIONS)
        check_dt(self.dt)
        check_tau("tau", self.tau)
        check_tau("tau_w", self.tau_w)
        names = ("q", "v_th", "v_reset") + tuple(n for n in ("a", "b") if not isinstance(getattr(self, n), Tensor))
        check_finite_floats(self, names)


class AdLIFDiscrete(NamedTuple):
    """What one step needs: decays ``alpha`` (membrane), ``beta`` (adaptation), scaled couplings
    ``qa = q a`` and ``qb = q b``, and the discrete options."""

    alpha: float | Tensor
    beta: float | Tensor
    qa: float | Tensor
    qb: float | Tensor
    v_th: float
    v_reset: float
    reset: str
    detach_reset: bool
    surrogate: Surrogate
    w_rec: Tensor | None


def discretize(p: AdLIFParams) -> AdLIFDiscrete:
    r"""Per-step coefficients (the only place this happens):
    :math:`\alpha = e^{-dt/\tau_u}`, :math:`\beta = e^{-dt/\tau_w}` (``exp``), :math:`q a`, :math:`q b`."""
    return AdLIFDiscrete(decay(p.tau, p.dt, p.discretization), decay(p.tau_w, p.dt, p.discretization, "tau_w"),
                         p.q * p.a, p.q * p.b, float(p.v_th), float(p.v_reset), p.reset, bool(p.detach_reset),
                         p.surrogate or ATan(), p.w_rec)


def init_state(x: Tensor, p: AdLIFDiscrete | None = None) -> AdLIFState:
    """Resting state shaped like one time step ``x`` (``[B, ...]``): ``u = w = 0``, no spikes."""
    z = torch.zeros_like(x)
    return AdLIFState(z, z.clone(), z.clone())


def adlif_step(x: Tensor, state: AdLIFState, p: AdLIFDiscrete) -> tuple[Tensor, AdLIFState]:
    """One SE-adLIF step ``(x_t, state_{t-1}) -> (s_t, state_t)`` (module equations); the reference."""
    u, w, s_prev = state
    drive = x if p.w_rec is None else x + s_prev @ p.w_rec.t()
    h = p.alpha * u + (1.0 - p.alpha) * (drive - w)
    s = spike_fn(h - p.v_th, p.surrogate)
    u_new = _reset(h, s.detach() if p.detach_reset else s, p)
    w_new = p.beta * w + (1.0 - p.beta) * (p.qa * u_new + p.qb * s)
    return s, AdLIFState(u_new, w_new, s)


def supports(p: AdLIFDiscrete, x: Tensor) -> str | None:
    """The reference scan runs every configuration on every device and dtype."""
    return None


def multi_step(x: Tensor, state: AdLIFState | None, p: AdLIFDiscrete,
               record: bool = False) -> tuple[Tensor, AdLIFState, Tensor | None]:
    """SE-adLIF over ``x: [T, B, ...]`` (plain autograd through :func:`adlif_step`)."""
    if x.shape[0] == 0:
        raise ValueError(f"x has T = 0 time steps; expected [T >= 1, B, ...], got shape {tuple(x.shape)}")
    return scan(adlif_step, x, state if state is not None else init_state(x[0], p), p, record)


def _logit_in(value: float, lo: float, hi: float, what: str) -> float:
    if not lo < value < hi:
        raise ValueError(f"learn_ab=True keeps {what} in ({lo:g}, {hi:g}); initial {what}={value!r} is outside")
    r = (value - lo) / (hi - lo)
    return math.log(r / (1.0 - r))


class AdLIF(nn.Module):
    r"""SE-adLIF layer over ``[T, B, ...]`` (see :mod:`spike.neurons.adlif` for the update).

    Args:
        tau: membrane time constant :math:`\tau_u` (same unit as ``dt``).
        tau_w: adaptation time constant :math:`\tau_w`.
        dt: step length.
        a, b: adaptation coupling and spike increment (initial values when learnable).
        q: fixed adaptation scale.
        v_th, v_reset: threshold and reset value.
        reset: ``"to_value"`` (default, paper with ``v_reset=0``) | ``"subtract"`` | ``"none"``.
        detach_reset: remove the reset from the gradient (paper: yes).
        surrogate: a :class:`~spike.surrogate.Surrogate` or its name (default ATan).
        discretization: ``"exp"`` | ``"euler"``.
        learn_tau: make ``tau`` and ``tau_w`` parameters (``log_tau``, ``log_tau_w``).
        learn_ab: make ``a``, ``b`` parameters, kept in :data:`A_RANGE`, :data:`B_RANGE` by a sigmoid
            (``a_raw``, ``b_raw``); the initial values must lie strictly inside those ranges.
        shape: feature shape after ``[T, B]``; per-neuron parameters when given.
        recurrent: add a learnable recurrent weight ``[N, N]``.
        backend: ``"auto"`` (numba on CPU when it supports the call, else the reference), ``"reference"``
            or ``"numba"`` (:mod:`spike.backends.numba_adlif`; a configuration it cannot run raises).

    Example:
        >>> out = AdLIF(tau=10.0, tau_w=100.0, a=0.5, b=1.0)(torch.rand(8, 2, 3))
        >>> out.spikes.shape, out.state.w.shape
        (torch.Size([8, 2, 3]), torch.Size([2, 3]))
    """

    def __init__(self, tau: float = 20.0, tau_w: float = 200.0, dt: float = 1.0, *, a: float = 0.5, b: float = 1.0,
                 q: float = 1.0, v_th: float = 1.0, v_reset: float = 0.0, reset: str = "to_value",
                 detach_reset: bool = False, surrogate: Surrogate | str | None = None, discretization: str = "exp",
                 learn_tau: bool = False, learn_ab: bool = False, shape: int | tuple[int, ...] | None = None,
                 recurrent: bool = False, backend: str = "auto"):
        super().__init__()
        if isinstance(surrogate, str):
            surrogate = get_surrogate(surrogate)
        self.shape = feature_shape(shape)
        self._template = AdLIFParams(tau=float(tau), tau_w=float(tau_w), dt=float(dt), a=float(a), b=float(b),
                                     q=float(q), v_th=v_th, v_reset=v_reset, reset=reset, detach_reset=detach_reset,
                                     surrogate=surrogate or ATan(), discretization=discretization)
        self.log_tau = log_param(tau, self.shape, "tau") if learn_tau else None
        self.log_tau_w = log_param(tau_w, self.shape, "tau_w") if learn_tau else None
        if learn_ab:
            self.a_raw = nn.Parameter(torch.full(self.shape or (), _logit_in(float(a), *A_RANGE, "a")))
            self.b_raw = nn.Parameter(torch.full(self.shape or (), _logit_in(float(b), *B_RANGE, "b")))
        else:
            self.a_raw = self.b_raw = None
        self.w_rec = recurrent_weight(self.shape) if recurrent else None
        self.backend = check_backend(backend, "AdLIF", "adlif", recurrent)

    @property
    def a(self) -> float | Tensor:
        """The coupling in use (in :data:`A_RANGE` when learnable)."""
        if self.a_raw is None:
            return self._template.a
        return A_RANGE[0] + (A_RANGE[1] - A_RANGE[0]) * torch.sigmoid(self.a_raw)

    @property
    def b(self) -> float | Tensor:
        """The spike increment in use (in :data:`B_RANGE` when learnable)."""
        if self.b_raw is None:
            return self._template.b
        return B_RANGE[0] + (B_RANGE[1] - B_RANGE[0]) * torch.sigmoid(self.b_raw)

    def params(self) -> AdLIFParams:
        """Current physical parameters (tensors where learnable)."""
        p = self._template
        if self.log_tau is None and self.a_raw is None and self.w_rec is None:
            return p
        kw: dict = {"w_rec": self.w_rec, "a": self.a, "b": self.b}
        if self.log_tau is not None:
            kw.update(tau=torch.exp(self.log_tau), tau_w=torch.exp(self.log_tau_w))
        return replace(p, **kw)

    def forward(self, x: Tensor, state: AdLIFState | None = None, record: bool = False) -> NeuronOutput:
        check_layer_input(self, x, state)
        p = discretize(self.params())
        spikes, state, v = resolve("adlif", self.backend, p, x).multi_step(x, state, p, record)
        return NeuronOutput(spikes, state, v)

    def extra_repr(self) -> str:
        p = self._template
        return (f"tau={p.tau}, tau_w={p.tau_w}, dt={p.dt}, a={p.a}, b={p.b}, q={p.q}, v_th={p.v_th}, "
                f"reset={p.reset!r}, surrogate={p.surrogate}, learn_tau={self.log_tau is not None}, "
                f"learn_ab={self.a_raw is not None}, recurrent={self.w_rec is not None}")
