"""The one loop over time. Every multi-step neuron in `spike` is ``scan(step, ...)``."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor

__all__ = ["scan", "check_sequence", "check_finite", "check_state"]


def check_sequence(x: Tensor, what: str = "input", min_dim: int = 3, finite: bool = True) -> None:
    """Raise one clear error if ``x`` is not a finite ``[T, B, ...]`` tensor with ``T >= 1``.

    Args:
        x: the tensor to check.
        what: how to name it in the message.
        min_dim: least number of dimensions (3: ``[T, B, features...]``).
        finite: also check for NaN/Inf (one reduction per call, whatever ``T``); pass ``False`` when
            the caller checks finiteness itself together with other tensors (:func:`check_finite`).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor of shape [T, B, ...], got {type(x).__name__}")
    if x.dim() < min_dim:
        raise ValueError(
            f"{what} must be time-first [T, B, features...] with at least {min_dim} dims, got shape "
            f"{tuple(x.shape)}; add a time axis (x.unsqueeze(0)) for a single step")
    if x.shape[0] == 0:
        raise ValueError(f"{what} has T = 0 time steps; expected [T >= 1, B, ...], got shape {tuple(x.shape)}")
    if finite:
        check_finite((what, x))


def check_finite(*named: tuple[str, Tensor]) -> None:
    """Raise ``ValueError`` naming the first ``(name, tensor)`` pair that holds NaN/Inf.

    One reduction over all floating tensors (one device sync per call): a finite sum of sums proves
    every element finite; only when it is not are the elements counted, tensor by tensor.
    """
    floats = [(n, t) for n, t in named if t.is_floating_point()]
    if not floats:
        return
    with torch.no_grad():
        if len(floats) == 1:
            total = floats[0][1].sum()
        else:
            total = torch.stack([t.sum().float() for _, t in floats]).sum()  # an overflow only means counting
        if bool(torch.isfinite(total)):
            return
        for name, t in floats:  # NaN/Inf somewhere, or a sum that overflowed: count exactly
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise ValueError(f"{name} contains {bad} NaN/Inf value(s); shape {tuple(t.shape)}")


def check_state(state: NamedTuple, x: Tensor, what: str = "state", hint: str = "") -> list[tuple[str, Tensor]]:
    """Check that a user-given ``state`` fits one step of ``x``; return its fields for :func:`check_finite`.

    Every field must be a tensor shaped like ``x[0]`` (``[B, ...]``).

    Args:
        state: a NamedTuple of tensors (e.g. :class:`~spike.neurons.lif.LIFState`).
        x: the ``[T, B, ...]`` input it goes with.
        what: how to name the state in messages.
        hint: appended to the shape error (e.g. how to start from rest).

    Returns:
        ``[("state.v", v), ("state.s", s), ...]``.
    """
    step = tuple(x.shape[1:])
    fields = getattr(state, "_fields", None)
    if fields is None:
        raise TypeError(f"{what} must be a NamedTuple of tensors (e.g. LIFState(v, s)), got {type(state).__name__}")
    out = []
    for name, t in zip(fields, state):
        if not isinstance(t, Tensor):
            raise TypeError(f"{what}.{name} must be a torch.Tensor of shape {step}, got {type(t).__name__}")
        if tuple(t.shape) != step:
            raise ValueError(f"{what}.{name} has shape {tuple(t.shape)} but one step of the input has "
                             f"{step}{'; ' + hint if hint else ''}")
        out.append((f"{what}.{name}", t))
    return out


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
