r"""Graph quantities of the synaptic graph used by LNP: effective resistance and betweenness centrality.

**Effective resistance** (Spielman & Srivastava 2011, spectral sparsification): the synaptic graph is
made undirected with conductances :math:`c_{ij} = (|W_{ij}| + |W_{ji}|)/2`, Laplacian
:math:`L = D - C` and pseudo-inverse :math:`L^+`:

.. math:: R_{ij} = L^+_{ii} + L^+_{jj} - 2 L^+_{ij}

Foster's theorem, :math:`\sum_{(i,j) \in E} c_{ij} R_{ij} = N - 1` on a connected graph, is a check.

**Betweenness centrality** (Brandes 2001) of the directed graph with edge :math:`j \to i` (presynaptic
:math:`j`) of length :math:`1/|W_{ij}|` (a strong synapse is a short path):

.. math:: C_B(v) = \sum_{s \ne v \ne t} \sigma_{st}(v) / \sigma_{st}

where :math:`\sigma_{st}` counts the shortest paths from :math:`s` to :math:`t` and :math:`\sigma_{st}(v)` those
through :math:`v` (unnormalised, as ``networkx.betweenness_centrality(normalized=False)``).
"""

from __future__ import annotations

import heapq

import numpy as np
import torch
from torch import Tensor

__all__ = ["effective_resistance", "betweenness_centrality"]


def effective_resistance(w: Tensor) -> Tensor:
    """Effective resistance ``R [N, N]`` between every pair of neurons of the symmetrised ``|W|`` graph (float64)."""
    a = w.detach().to(torch.float64).abs()
    c = 0.5 * (a + a.t())
    c.fill_diagonal_(0.0)
    lap = torch.diag(c.sum(1)) - c
    lp = torch.linalg.pinv(lap, hermitian=True)
    d = torch.diagonal(lp)
    return (d[:, None] + d[None, :] - 2.0 * lp).clamp_min(0.0)


def betweenness_centrality(w: Tensor, tol: float = 1e-12) -> Tensor:
    """Unnormalised betweenness of every neuron in the directed synaptic graph (module docstring), float64 ``[N]``.

    Edge ``j -> i`` exists where ``W[i, j] != 0`` (``i != j``); its length is ``1/|W[i, j]|``. Path lengths
    equal within ``tol`` (relative) count as ties.
    """
    a = w.detach().to(torch.float64).abs().numpy()
    n = a.shape[0]
    succ = [[(i, 1.0 / a[i, j]) for i in np.flatnonzero(a[:, j]) if i != j] for j in range(n)]
    cb = np.zeros(n)
    for s in range(n):
        stack: list[int] = []
        pred: list[list[int]] = [[] for _ in range(n)]
        sigma = np.zeros(n)
        sigma[s] = 1.0
        dist = np.full(n, np.inf)
        dist[s] = 0.0
        heap = [(0.0, s)]
        done = np.zeros(n, dtype=bool)
        while heap:
            d, v = heapq.heappop(heap)
            if done[v]:
                continue
            done[v] = True
            stack.append(v)
            for u, length in succ[v]:
                nd = d + length
                if nd < dist[u] * (1 - tol) and not done[u]:
                    dist[u] = nd
                    sigma[u] = sigma[v]
                    pred[u] = [v]
                    heapq.heappush(heap, (nd, u))
                elif abs(nd - dist[u]) <= tol * max(nd, dist[u]) and not done[u]:
                    sigma[u] += sigma[v]
                    pred[u].append(v)
        delta = np.zeros(n)
        for v in reversed(stack):
            for p in pred[v]:
                delta[p] += sigma[p] / sigma[v] * (1.0 + delta[v])
            if v != s:
                cb[v] += delta[v]
    return torch.from_numpy(cb)
