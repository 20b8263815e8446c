r"""Mackey-Glass time series, the usual chaotic benchmark for one-step-ahead prediction.

.. math:: \frac{dx}{dt} = \beta \frac{x(t - \tau)}{1 + x(t - \tau)^n} - \gamma x(t)

(Mackey & Glass 1977; defaults :math:`\beta = 0.2, \gamma = 0.1, n = 10, \tau = 17`, chaotic). Integrated
with classical RK4 at step ``h`` (``tau / h`` must be an integer); the delayed value at the RK4 half step
is the mean of the two neighbouring history samples. The history on :math:`[-\tau, 0]` is the constant
``x0``, so on :math:`[0, \tau]` the delayed term is constant and the solution is
:math:`x(t) = c/\gamma + (x_0 - c/\gamma) e^{-\gamma t}` with :math:`c = \beta x_0 / (1 + x_0^n)`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mackey_glass", "mackey_glass_rhs"]


def mackey_glass_rhs(x: np.ndarray | float, x_delayed: np.ndarray | float, beta: float = 0.2, gamma: float = 0.1,
                     n: float = 10.0):
    r"""The right-hand side :math:`\beta x_\tau / (1 + x_\tau^n) - \gamma x`."""
    return beta * x_delayed / (1.0 + x_delayed ** n) - gamma * x


def mackey_glass(n_samples: int, *, tau: float = 17.0, h: float = 0.1, sample_every: int = 10, x0: float = 1.2,
                 beta: float = 0.2, gamma: float = 0.1, n: float = 10.0) -> np.ndarray:
    """``n_samples`` values of the series, one every ``sample_every * h`` time units, starting at ``t = 0``.

    Raises:
        ValueError: ``tau / h`` not a positive integer, or ``n_samples`` / ``sample_every`` < 1.
    """
    lag = tau / h
    if not (lag >= 1 and abs(lag - round(lag)) < 1e-9):
        raise ValueError(f"tau / h must be a positive integer, got tau={tau}, h={h}")
    if n_samples < 1 or sample_every < 1:
        raise ValueError(f"n_samples and sample_every must be >= 1, got {n_samples}, {sample_every}")
    lag = int(round(lag))
    steps = (n_samples - 1) * sample_every
    x = np.empty(lag + steps + 1)
    x[: lag + 1] = x0  # history x(t) = x0 for t in [-tau, 0]
    f = lambda xi, xd: mackey_glass_rhs(xi, xd, beta, gamma, n)  # noqa: E731
    for i in range(lag, lag + steps):
        d0, d1 = x[i - lag], x[i - lag + 1]
        dm = 0.5 * (d0 + d1)
        k1 = f(x[i], d0)
        k2 = f(x[i] + 0.5 * h * k1, dm)
        k3 = f(x[i] + 0.5 * h * k2, dm)
        k4 = f(x[i] + h * k3, d1)
        x[i + 1] = x[i] + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x[lag::sample_every].copy()
