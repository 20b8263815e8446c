"""Task-agnostic pruning of heterogeneous recurrent SNNs: Lyapunov Noise Pruning (LNP).

See :mod:`spike.prune.lnp` for the algorithm, :mod:`spike.prune.lyapunov` for the Lyapunov spectrum,
:mod:`spike.prune.hrsnn` for the network, :mod:`spike.prune.tau_search` for the (Bayesian-optimisation) timescale
search and :mod:`spike.prune.mackey_glass` for the benchmark series.
"""

from spike.prune.graph import betweenness_centrality, effective_resistance
from spike.prune.hrsnn import HRSNN, gamma_taus
from spike.prune.lnp import (TOPUP, LNPReport, activity_prune, heterogeneity_edges, keep_probabilities, lnp_prune,
                             synapse_budget)
from spike.prune.lyapunov import (LyapunovResult, largest_lyapunov, lyapunov_spectrum, network_lyapunov,
                                  noise_drive, surrogate_jacobian, surrogate_step)
from spike.prune.mackey_glass import mackey_glass, mackey_glass_rhs
from spike.prune.tau_search import TauSearchResult, tau_search

__all__ = ["HRSNN", "gamma_taus", "LNPReport", "lnp_prune", "activity_prune", "keep_probabilities",
           "synapse_budget", "heterogeneity_edges", "TOPUP", "tau_search", "TauSearchResult", "LyapunovResult",
           "lyapunov_spectrum", "largest_lyapunov", "network_lyapunov", "noise_drive", "surrogate_step",
           "surrogate_jacobian", "effective_resistance", "betweenness_centrality", "mackey_glass",
           "mackey_glass_rhs"]
