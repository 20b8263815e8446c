"""Readouts: reduce a ``[T, B, C]`` output sequence to per-class scores ``[B, C]``."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["spike_count", "mean_membrane", "max_membrane", "SpikeCount", "MeanMembrane", "MaxMembrane"]


def spike_count(out: Tensor) -> Tensor:
    """Spike count over time, ``[T, B, C] -> [B, C]``."""
    return out.sum(0)


def mean_membrane(out: Tensor) -> Tensor:
    """Mean membrane over time, ``[T, B, C] -> [B, C]``."""
    return out.mean(0)


def max_membrane(out: Tensor) -> Tensor:
    """Max membrane over time, ``[T, B, C] -> [B, C]``."""
    return out.amax(0)


class SpikeCount(nn.Module):
    def forward(self, out: Tensor) -> Tensor:
        return spike_count(out)


class MeanMembrane(nn.Module):
    def forward(self, out: Tensor) -> Tensor:
        return mean_membrane(out)


class MaxMembrane(nn.Module):
    def forward(self, out: Tensor) -> Tensor:
        return max_membrane(out)
