r"""Search of the HRSNN timescale distribution: a labelled stand-in for LNP's Bayesian optimisation.

The LNP paper (Chakraborty et al., ICLR 2024) ends with "a Bayesian optimization for fine-tuning
[the] hyperparameter set of neurons" (OpenReview review summary; the paper's text and its search
space could not be read here). This module does **not** implement Bayesian optimisation. It is a
seeded **random search** over the two parameters of the timescale law
:math:`\tau_i \sim \mathrm{Gamma}(k, \tau_\text{mean}/k)` (:func:`spike.prune.hrsnn.gamma_taus`):

.. math::
    \log k \sim U(\log k_\text{lo}, \log k_\text{hi}),\qquad
    \log \tau_\text{mean} \sim U(\log m_\text{lo}, \log m_\text{hi}),

each candidate scored by a caller-supplied objective (lower is better, e.g. the validation MSE of the
pruned and trained network) and the best one returned. The first candidate is ``start`` (the
configuration in use) so the search never returns something it scored worse than that.
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

    def as_dict(self) -> dict:
        return {"tau_shape": self.tau_shape, "tau_mean": self.tau_mean, "score": self.score,
                "trials": [list(t) for t in self.trials], "method": "random_search"}


def _check_range(name: str, r) -> tuple[float, float]:
    try:
        lo, hi = float(r[0]), float(r[1])
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"{name} must be a pair (lo, hi) of positive numbers, got {r!r}") from None
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise ValueError(f"{name} must satisfy 0 < lo <= hi < inf, got {r!r}")
    return lo, hi


def tau_search(objective: Callable[[float, float], float], *, n_trials: int = 8,
               shape_range: tuple[float, float] = (1.0, 10.0), mean_range: tuple[float, float] = (3.0, 30.0),
               start: tuple[float, float] | None = None, seed: int = 0) -> TauSearchResult:
    """Seeded random search of ``(tau_shape, tau_mean)`` minimising ``objective(tau_shape, tau_mean)``.

    Args:
        objective: builds/prunes/trains a network with those timescale parameters and returns a
            validation score (lower is better); a non-finite score counts as the worst.
        n_trials: candidates scored, ``start`` included.
        shape_range, mean_range: log-uniform ranges of the gamma shape ``k`` and mean timescale.
        start: a first candidate, e.g. the current configuration (default: none).
        seed: seed of the candidate draws (same seed, same candidates).

    Raises:
        ValueError: ``n_trials < 1`` or a bad range.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    klo, khi = _check_range("shape_range", shape_range)
    mlo, mhi = _check_range("mean_range", mean_range)
    rng = np.random.default_rng(seed)
    cands: list[tuple[float, float]] = [] if start is None else [(float(start[0]), float(start[1]))]
    while len(cands) < n_trials:
        cands.append((float(np.exp(rng.uniform(math.log(klo), math.log(khi)))),
                      float(np.exp(rng.uniform(math.log(mlo), math.log(mhi))))))
    trials = []
    for k, m in cands:
        v = float(objective(k, m))
        trials.append((k, m, v if math.isfinite(v) else math.inf))
    best = min(trials, key=lambda t: t[2])
    return TauSearchResult(best[0], best[1], best[2], trials)
