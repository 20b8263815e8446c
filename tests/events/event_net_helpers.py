"""Helpers shared by the event-network tests: dyadic weights (exact partial sums), random binned input,
and the dense input as per-sample ``(t_bin, channel, count)`` lists."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from spike.synapses.delays import DelayedLinear


def dyadic_(model: nn.Module, gen: torch.Generator, bits: int = 5, span: int = 24) -> None:
    """Synaptic weights and biases on the grid k / 2**bits, |k| <= span: every partial sum is exact."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, DelayedLinear)):
                for p in (m.weight, m.bias):
                    if p is not None:
                        p.copy_(torch.randint(-span, span + 1, p.shape, generator=gen).to(p.dtype) / 2 ** bits)


def rand_input(gen: torch.Generator, t: int, b: int, shape, p: float = 0.1, max_count: int = 3) -> torch.Tensor:
    """Binned input ``[T, B, *shape]`` with counts in ``1..max_count`` at a fraction ``p`` of entries."""
    size = (t, b, *shape)
    on = torch.rand(size, generator=gen) < p
    return on.float() * torch.randint(1, max_count + 1, size, generator=gen).float()


def to_samples(x: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``[T, B, ...]`` dense input -> per-sample ``(t_bin, channel, count)``."""
    flat = x.reshape(x.shape[0], x.shape[1], -1).numpy()  # [T, B, n_in]
    out = []
    for b in range(flat.shape[1]):
        t, c = np.nonzero(flat[:, b])
        out.append((t, c, flat[t, b, c]))
    return out
