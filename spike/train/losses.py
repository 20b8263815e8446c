r"""Losses on an output sequence ``out: [T, B, C]`` and the matching class scores for accuracy.

* ``count``: cross-entropy on spike counts :math:`\sum_t s_t` (spiking readout).
* ``mean_membrane`` / ``max_membrane``: cross-entropy on the mean / max over time of a non-spiking
  readout's membrane.
* ``per_step``: mean over t of the cross-entropy of every step's output (TET-style,
  Deng et al. 2022, arXiv:2202.11946).
* ``sum_softmax``: cross-entropy on :math:`\sum_t \mathrm{softmax}(u_t)` (Hammouamri et al. 2024, DCLS
  delays, arXiv:2306.17670).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LOSSES", "get_loss", "scores"]


def _check(out: Tensor, y: Tensor) -> None:
    if out.dim() != 3:
        raise ValueError(f"loss expects the output sequence [T, B, C], got {tuple(out.shape)}")
    if y.shape[0] != out.shape[1]:
        raise ValueError(f"batch of labels ({y.shape[0]}) does not match output batch ({out.shape[1]})")


def _reduce(name: str, out: Tensor) -> Tensor:
    if name == "count":
        return out.sum(0)
    if name == "mean_membrane" or name == "per_step":
        return out.mean(0)
    if name == "max_membrane":
        return out.amax(0)
    if name == "sum_softmax":
        return out.softmax(-1).sum(0)
    raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")


def scores(name: str, out: Tensor) -> Tensor:
    """Class scores ``[B, C]`` the loss ``name`` trains from readout ``out [T, B, C]`` (argmax = prediction).

    Raises:
        TypeError: ``name`` is not a string or ``out`` not a tensor (e.g. the arguments swapped).
        ValueError: an unknown loss, or ``out`` not ``[T, B, C]``.
    """
    if not isinstance(name, str):
        raise TypeError(f"scores(name, out): name must be a loss name (one of {sorted(LOSSES)}), got a "
                        f"{type(name).__name__}{' -- arguments swapped?' if isinstance(out, str) else ''}")
    if not isinstance(out, Tensor):
        raise TypeError(f"scores(name, out): out must be the readout tensor [T, B, C], got {type(out).__name__}")
    if out.dim() != 3:
        raise ValueError(f"scores(name, out): out must be the readout [T, B, C], got shape {tuple(out.shape)}")
    return _reduce(name, out)


def _ce_reduced(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    def loss(out: Tensor, y: Tensor) -> Tensor:
        _check(out, y)
        return F.cross_entropy(_reduce(name, out), y)

    loss.__name__ = name
    return loss


def per_step(out: Tensor, y: Tensor) -> Tensor:
    _check(out, y)
    t, b, c = out.shape
    return F.cross_entropy(out.reshape(t * b, c), y.repeat(t))  # [T*B, C] vs [T*B]


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "count": _ce_reduced("count"),
    "mean_membrane": _ce_reduced("mean_membrane"),
    "max_membrane": _ce_reduced("max_membrane"),
    "sum_softmax": _ce_reduced("sum_softmax"),
    "per_step": per_step,
}


def get_loss(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None


def accuracy_count(name: str, out: Tensor, y: Tensor) -> int:
    """Number of correct predictions in a batch."""
    with torch.no_grad():
        return int((scores(name, out).argmax(-1) == y).sum())
