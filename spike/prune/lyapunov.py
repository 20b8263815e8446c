r"""Lyapunov spectrum of discrete-time maps (Benettin QR method) and of a smooth surrogate of an HRSNN.

**Benettin / QR method** (Benettin et al. 1980; Eckmann & Ruelle 1985) for a map
:math:`x_{t+1} = f_t(x_t)` with Jacobian :math:`J_t = \partial f_t / \partial x\,(x_t)`: start from
:math:`Q_0 = I_{[:, :k]}` and at every step

.. math::
    Q_{t+1} R_{t+1} = J_t Q_t \quad (\text{thin QR, } \operatorname{diag} R > 0),\qquad
    \lambda_j = \frac{1}{T - T_0} \sum_{t = T_0}^{T-1} \ln R_{t+1, jj}

in nats per step, sorted descending; the first ``n_discard`` steps :math:`T_0` only align :math:`Q`.
For :math:`x_{t+1} = A x_t` the exponents are :math:`\ln|\mathrm{eig}(A)|`; for the logistic map at
:math:`r = 4` the one exponent is :math:`\ln 2`. :math:`k = 1` gives the largest exponent by tangent
vector renormalisation (cost :math:`O(N^2)` a step instead of :math:`O(N^2 k)`).

**Surrogate network dynamics.** The spiking map is piecewise constant in the spikes, so its Jacobian is
zero or undefined almost everywhere. We use the smooth surrogate of the HRSNN update (our choice; the
paper's exact way of computing exponents on the spiking network was not verified), with the
pre-reset membrane :math:`h` as the state, a logistic spike :math:`s = \sigma((h - v_\text{th})/\kappa)`
and noise current :math:`x_t = \mu + \sigma_\xi \xi_t`, :math:`\xi_t \sim \mathcal{N}(0, I)`:

.. math::
    h_{t+1} &= \beta \odot (h_t - v_\text{th}\, s(h_t)) + W s(h_t) + x_{t+1} \\
    J_t &= \operatorname{diag}\big(\beta \odot (1 - v_\text{th}\, s'(h_t))\big) + W \operatorname{diag}(s'(h_t)),
    \qquad s' = s (1 - s) / \kappa

As :math:`\kappa \to 0` the map is the spiking network's own update (:mod:`spike.neurons.lif`,
subtractive immediate reset).

**Per-neuron exponents** (our definition, used by :mod:`spike.prune.lnp`): with the Lyapunov vectors
:math:`Q_t` of the full spectrum, neuron :math:`i`'s exponent is its participation-weighted share

.. math:: \lambda^{(n)}_i = \sum_j \langle Q_{t, ij}^2 \rangle_t\, \lambda_j,
          \qquad \sum_i \lambda^{(n)}_i = \sum_j \lambda_j .
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor

__all__ = ["LyapunovResult", "lyapunov_spectrum", "largest_lyapunov", "surrogate_step", "surrogate_jacobian",
           "network_lyapunov", "noise_drive"]

Map = Callable[[Tensor, int], Tensor]


class LyapunovResult(NamedTuple):
    """``exponents [k]`` (descending, nats/step), ``participation [N, k]`` (time mean of ``Q**2``, columns in
    the order of ``exponents``) and the final trajectory point ``x``."""

    exponents: Tensor
    participation: Tensor
    x: Tensor

    def per_neuron(self) -> Tensor:
        r""":math:`\lambda^{(n)}_i = \sum_j \langle Q_{ij}^2\rangle \lambda_j` (meaningful for the full spectrum)."""
        return self.participation @ self.exponents


def lyapunov_spectrum(step: Map, x0: Tensor, n_steps: int, *, jacobian: Map | None = None, k: int | None = None,
                      n_discard: int = 0) -> LyapunovResult:
    """The ``k`` largest Lyapunov exponents of ``x_{t+1} = step(x_t, t)`` by the QR method (module docstring).

    Args:
        step: the map, ``step(x [N], t) -> x_next [N]``.
        x0: initial state ``[N]`` (float64 recommended).
        n_steps: total steps ``T``; exponents average the last ``T - n_discard``.
        jacobian: ``jacobian(x, t) -> [N, N]``, the derivative of ``step`` at ``x``; default: autograd.
        k: how many exponents (default ``N``).
        n_discard: transient steps not averaged.

    Raises:
        ValueError: ``x0`` not 1-D, ``k`` outside ``[1, N]``, or ``n_discard >= n_steps``.
    """
    if x0.ndim != 1:
        raise ValueError(f"x0 must be a state vector [N], got shape {tuple(x0.shape)}")
    n = x0.shape[0]
    k = n if k is None else int(k)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    if not 0 <= n_discard < n_steps:
        raise ValueError(f"need 0 <= n_discard < n_steps, got n_discard={n_discard}, n_steps={n_steps}")
    if jacobian is None:
        def jacobian(x, t):
            return torch.autograd.functional.jacobian(lambda z: step(z, t), x)
    x = x0.clone()
    q = torch.eye(n, k, dtype=x0.dtype)
    logs = torch.zeros(k, dtype=torch.float64)
    part = torch.zeros(n, k, dtype=torch.float64)
    for t in range(n_steps):
        z = jacobian(x, t) @ q
        q, r = torch.linalg.qr(z)
        d = torch.diagonal(r)
        sign = torch.where(d < 0, -1.0, 1.0).to(q.dtype)
        q = q * sign  # make diag(R) positive so Q evolves continuously
        if t >= n_discard:
            logs += torch.log(d.abs().to(torch.float64).clamp_min(1e-300))
            part += (q.to(torch.float64) ** 2)
        x = step(x, t)
    m = n_steps - n_discard
    lam = logs / m
    order = torch.argsort(lam, descending=True)
    return LyapunovResult(lam[order], (part / m)[:, order], x)


def largest_lyapunov(step: Map, x0: Tensor, n_steps: int, *, jacobian: Map | None = None,
                     n_discard: int = 0) -> float:
    """The largest Lyapunov exponent (``lyapunov_spectrum`` with ``k = 1``)."""
    return float(lyapunov_spectrum(step, x0, n_steps, jacobian=jacobian, k=1, n_discard=n_discard).exponents[0])


# -- the HRSNN surrogate ----------------------------------------------------------------------------

def _spike(h: Tensor, v_th: float, kappa: float) -> tuple[Tensor, Tensor]:
    s = torch.sigmoid((h - v_th) / kappa)
    return s, s * (1.0 - s) / kappa


def surrogate_step(h: Tensor, x_next: Tensor, beta: Tensor, w: Tensor, v_th: float, kappa: float) -> Tensor:
    r""":math:`h_{t+1} = \beta \odot (h_t - v_\text{th} s(h_t)) + W s(h_t) + x_{t+1}` (module docstring)."""
    s, _ = _spike(h, v_th, kappa)
    return beta * (h - v_th * s) + w @ s + x_next


def surrogate_jacobian(h: Tensor, beta: Tensor, w: Tensor, v_th: float, kappa: float) -> Tensor:
    r""":math:`J = \operatorname{diag}(\beta (1 - v_\text{th} s')) + W \operatorname{diag}(s')` at ``h`` (analytic)."""
    _, ds = _spike(h, v_th, kappa)
    return torch.diag(beta * (1.0 - v_th * ds)) + w * ds  # w * ds[None, :] == W diag(s')


def noise_drive(n: int, n_steps: int, mean: float, std: float, seed: int = 0) -> Tensor:
    r"""The injected noise current :math:`x_t = \mu + \sigma_\xi \xi_t` as ``[n_steps, n]`` float64 (seeded)."""
    g = torch.Generator().manual_seed(seed)
    return mean + std * torch.randn(n_steps, n, generator=g, dtype=torch.float64)


def network_lyapunov(w: Tensor, tau: Tensor, *, dt: float = 1.0, v_th: float = 1.0, kappa: float = 0.25,
                     noise_mean: float = 0.3, noise_std: float = 0.5, n_steps: int = 300, n_discard: int = 100,
                     k: int | None = None, seed: int = 0) -> LyapunovResult:
    """Lyapunov exponents of the surrogate HRSNN map (module docstring) driven by seeded Gaussian noise.

    Args:
        w: recurrent weight ``[N, N]``.
        tau: per-neuron time constants ``[N]`` (``beta = exp(-dt / tau)``).
        kappa: width of the logistic surrogate spike (in units of the membrane).
        noise_mean, noise_std: the injected current (same realisation for the same ``seed`` and ``N``).
        k: number of exponents (``None``: all ``N``; ``1``: the largest only, cheap).

    Raises:
        ValueError: shapes that do not match, or a non-positive ``kappa``.
    """
    n = w.shape[0]
    if w.ndim != 2 or w.shape[1] != n or tuple(tau.shape) != (n,):
        raise ValueError(f"need w [N, N] and tau [N], got {tuple(w.shape)} and {tuple(tau.shape)}")
    if not kappa > 0:
        raise ValueError(f"kappa must be > 0, got {kappa}")
    w64 = w.detach().to(torch.float64)
    beta = torch.exp(-dt / tau.detach().to(torch.float64))
    drive = noise_drive(n, n_steps + 1, noise_mean, noise_std, seed)
    return lyapunov_spectrum(lambda h, t: surrogate_step(h, drive[t + 1], beta, w64, v_th, kappa),
                             drive[0].clone(), n_steps,
                             jacobian=lambda h, t: surrogate_jacobian(h, beta, w64, v_th, kappa),
                             k=k, n_discard=n_discard)
