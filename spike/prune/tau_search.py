r"""Search of the HRSNN timescale distribution: LNP's Bayesian optimisation of the neurons' hyperparameters.

The LNP paper (Chakraborty et al., ICLR 2024) ends with "a Bayesian optimization for fine-tuning
[the] hyperparameter set of neurons" (OpenReview review summary; the paper's text and its search
space could not be read here). :func:`tau_search` optimises the two parameters of the timescale law
:math:`\tau_i \sim \mathrm{Gamma}(k, \tau_\text{mean}/k)` (:func:`spike.prune.hrsnn.gamma_taus`) in
the log box :math:`u = (\log k, \log \tau_\text{mean})` scaled to :math:`[0, 1]^2`, each candidate
scored by a caller-supplied objective :math:`f` (lower is better, e.g. the validation MSE of the
pruned and trained network).

``method = "bayes"`` (default), standard GP-EI Bayesian optimisation (Jones et al. 1998; Snoek et al.
2012): ``n_init`` candidates (``start`` first, the rest log-uniform draws), then, for every further
trial, a Gaussian process with a Matérn-5/2 kernel (length scales, amplitude and noise fitted by
maximum marginal likelihood, scikit-learn's ``GaussianProcessRegressor``) is fitted to the
standardised scores :math:`y` and the next candidate maximises the expected improvement over the best
score :math:`y^*`:

.. math::
    \mathrm{EI}(u) = (y^* - \mu(u) - \xi)\,\Phi(z) + \sigma(u)\,\varphi(z),\qquad
    z = \frac{y^* - \mu(u) - \xi}{\sigma(u)},

maximised over 2048 seeded uniform points and 256 perturbations of the best point so far.
``method = "random"``: every candidate after ``start`` a log-uniform draw. A non-finite score counts as
the worst (for the GP: the worst finite score plus the finite scores' range).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["TauSearchResult", "tau_search"]


@dataclass
class TauSearchResult:
    """Best ``(tau_shape, tau_mean)`` found, its score, and every trial as ``(tau_shape, tau_mean, score)``."""

    tau_shape: float
    tau_mean: float
    score: float
    trials: list[tuple[float, float, float]] = field(default_factory=list)
    method: str = "bayes"

    def as_dict(self) -> dict:
        return {"tau_shape": self.tau_shape, "tau_mean": self.tau_mean, "score": self.score,
                "trials": [list(t) for t in self.trials], "method": self.method}


def _check_range(name: str, r) -> tuple[float, float]:
    try:
        lo, hi = float(r[0]), float(r[1])
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"{name} must be a pair (lo, hi) of positive numbers, got {r!r}") from None
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise ValueError(f"{name} must satisfy 0 < lo <= hi < inf, got {r!r}")
    return lo, hi


METHODS = ("bayes", "random")
_XI = 0.01  # EI's exploration margin, in units of the standardised score
_N_CANDIDATES, _N_LOCAL = 2048, 256


def tau_search(objective: Callable[[float, float], float], *, n_trials: int = 12,
               shape_range: tuple[float, float] = (1.0, 10.0), mean_range: tuple[float, float] = (3.0, 30.0),
               start: tuple[float, float] | None = None, seed: int = 0, method: str = "bayes",
               n_init: int = 4) -> TauSearchResult:
    """Minimise ``objective(tau_shape, tau_mean)`` by Bayesian optimisation (or random search).

    Args:
        objective: builds/prunes/trains a network with those timescale parameters and returns a
            validation score (lower is better); a non-finite score counts as the worst.
        n_trials: candidates scored, ``start`` included.
        shape_range, mean_range: ranges of the gamma shape ``k`` and mean timescale (searched in log).
        start: a first candidate, e.g. the current configuration (default: none).
        seed: seed of the draws and of the GP fits (same seed and scores, same candidates).
        method: ``"bayes"`` (GP + expected improvement after ``n_init`` initial candidates) or ``"random"``.
        n_init: candidates scored before the first GP fit (``start`` included).

    Raises:
        ValueError: ``n_trials < 1``, ``n_init < 1``, an unknown method or a bad range.
    """
    for name, v in (("n_trials", n_trials), ("n_init", n_init)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    klo, khi = _check_range("shape_range", shape_range)
    mlo, mhi = _check_range("mean_range", mean_range)
    lo = np.log([klo, mlo])
    span = np.log([khi, mhi]) - lo
    span[span == 0] = 1.0  # a degenerate range: every u maps to its one value

    def to_params(u: np.ndarray) -> tuple[float, float]:
        k, m = np.exp(lo + np.clip(u, 0.0, 1.0) * span)
        return float(k), float(m)

    rng = np.random.default_rng(seed)
    us: list[np.ndarray] = []
    trials: list[tuple[float, float, float]] = []

    def score(k: float, m: float) -> None:
        v = float(objective(k, m))
        trials.append((k, m, v if math.isfinite(v) else math.inf))
        us.append((np.log([k, m]) - lo) / span)

    if start is not None:
        score(float(start[0]), float(start[1]))
    while len(trials) < n_trials:
        if method == "random" or len(trials) < n_init:
            score(*to_params(rng.uniform(0.0, 1.0, 2)))
        else:
            score(*to_params(_next_by_ei(np.array(us), np.array([t[2] for t in trials]), rng)))
    best = min(trials, key=lambda t: t[2])
    return TauSearchResult(best[0], best[1], best[2], trials, method)


def _next_by_ei(u: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The candidate in ``[0, 1]^2`` of largest expected improvement under a GP fitted to ``(u, y)``."""
    import warnings

    from scipy.stats import norm
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    finite = np.isfinite(y)
    if not finite.any():
        return rng.uniform(0.0, 1.0, 2)
    yf = y[finite]
    y = np.where(finite, y, yf.max() + (np.ptp(yf) or 1.0))
    y = (y - y.mean()) / (y.std() or 1.0)  # standardised scores
    kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(length_scale=[0.3, 0.3], length_scale_bounds=(1e-2, 10.0),
                                                       nu=2.5) + WhiteKernel(1e-4, (1e-8, 1e-1))
    gp = GaussianProcessRegressor(kernel, normalize_y=False, n_restarts_optimizer=3,
                                  random_state=int(rng.integers(2**31)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a bound reached is a fit, not a failure
        gp.fit(u, y)
    best = u[int(np.argmin(y))]
    cand = np.concatenate([rng.uniform(0.0, 1.0, (_N_CANDIDATES, 2)),
                           np.clip(best + rng.normal(0.0, 0.05, (_N_LOCAL, 2)), 0.0, 1.0)])
    mu, sd = gp.predict(cand, return_std=True)
    sd = np.maximum(sd, 1e-12)
    imp = y.min() - mu - _XI
    z = imp / sd
    ei = imp * norm.cdf(z) + sd * norm.pdf(z)
    return cand[int(np.argmax(ei))]
