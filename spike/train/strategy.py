"""Training strategies: how one batch turns into parameter updates.

A strategy is any object with ``name`` and
``train_step(model, x, y, loss_fn, optimizer, grad_clip) -> StepResult``; the :class:`~spike.train.Trainer`
owns everything else (epochs, evaluation, logging, checkpoints).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Protocol

import torch
from torch import Tensor, nn

__all__ = ["StepResult", "Strategy", "BPTT", "model_output"]


class StepResult(NamedTuple):
    loss: float
    out: Tensor  # [T, B, C] output sequence (detached), for accuracy


class Strategy(Protocol):
    name: str

    def train_step(self, model: nn.Module, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor],
                   optimizer: torch.optim.Optimizer, grad_clip: float) -> StepResult: ...


def model_output(result) -> Tensor:
    """The ``[T, B, C]`` output of a model call (``SeqOutput.out``, ``NeuronOutput.spikes`` or a tensor)."""
    if isinstance(result, Tensor):
        return result
    return result[0]


@dataclass(frozen=True)
class BPTT:
    """Back-propagation through time: one forward over all T steps, one backward through the graph.

    ``regularizer``: optional ``reg(records, out, y) -> scalar`` added to the loss (e.g.
    :class:`spike.train.regularizers.CutoffRegularizer`); the model is then called with ``record=True``.
    """

    name: str = "bptt"
    regularizer: Callable | None = None
    memory: str = "none"  # what backward keeps: none | packed[:N] | checkpoint[:N] | mesa8[:N] (spike.train.memory)

    def __post_init__(self):
        from spike.train.memory import MemoryModeError, parse_memory

        name, chunk = parse_memory(self.memory)
        if self.regularizer is not None and (name == "checkpoint" or chunk):
            raise MemoryModeError(f"memory = {self.memory!r} runs the model in time chunks, which do not record "
                                  f"the layers a regularizer needs")
        if self.regularizer is not None and name == "mesa8":
            from spike.train.memory import warn_whole

            warn_whole("a regularizer needs the records of the whole sequence")

    def train_step(self, model, x, y, loss_fn, optimizer, grad_clip):
        from spike.train.memory import memory_forward, saved_tensor_hooks

        optimizer.zero_grad(set_to_none=True)
        with saved_tensor_hooks(self.memory):
            if self.regularizer is None:
                out = memory_forward(model, x, self.memory, model_output)
                loss = loss_fn(out, y)
            else:
                res = model(x, record=True)
                out = model_output(res)
                loss = loss_fn(out, y) + self.regularizer(getattr(res, "records", None), out, y)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        return StepResult(float(loss.detach()), out.detach())
