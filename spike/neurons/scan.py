"""The one loop over time. Every multi-step neuron in `spike` is ``scan(step, ...)``."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor

__all__ = ["scan", "check_sequence"]


def check_sequence(x: Tensor, what: str = "input", min_dim: int = 3) -> None:
    """Raise one clear error if ``x`` is not a finite ``[T, B, ...]`` tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor of shape [T, B, ...], got {type(x).__name__}")
    if x.dim() < min_dim:
        raise ValueError(
            f"{what} must be time-first [T, B, features...] with at least {min_dim} dims, got shape "
            f"{tuple(x.shape)}; add a time axis (x.unsqueeze(0)) for a single step")
    if x.is_floating_point():
        with torch.no_grad():
            finite = bool(torch.isfinite(x.sum()))  # one reduction: a finite sum proves every element finite
        if not finite:  # NaN/Inf somewhere, or a sum that overflowed: count exactly
            bad = int((~torch.isfinite(x)).sum())
            if bad:
                raise ValueError(f"{what} contains {bad} NaN/Inf value(s); shape {tuple(x.shape)}")


def scan(step: Callable[[Tensor, Any, Any], tuple[Tensor, NamedTuple]], xs: Tensor, state: NamedTuple,
         params: Any, record: bool = False) -> tuple[Tensor, NamedTuple, Tensor | None]:
    """Apply ``step`` over the leading time axis.

    Iterates over ``xs.unbind(0)`` (indexing ``xs[t]`` in a loop makes backward O(T²)).

    Args:
        step: ``step(x_t, state, params) -> (out_t, state)``.
        xs: ``[T, B, ...]`` input.
        state: initial state (a NamedTuple whose first field is the membrane ``v``).
        params: passed unchanged to every step.
        record: also return the membrane trace ``state.v`` after every step.

    Returns:
        ``(out [T, B, ...], final state, trace [T, B, ...] or None)``.
    """
    outs, trace = [], []
    for x in xs.unbind(0):
        out, state = step(x, state, params)
        outs.append(out)
        if record:
            trace.append(state[0])
    return torch.stack(outs), state, (torch.stack(trace) if record else None)
