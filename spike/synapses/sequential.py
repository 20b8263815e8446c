"""A ``Sequential`` that threads explicit neuron state through the network."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor, nn

__all__ = ["SeqOutput", "Sequential"]


class SeqOutput(NamedTuple):
    """``out [T, B, ...]``; ``state``: one entry per layer (``None`` for stateless ones);
    ``records``: layer name -> ``(spikes, membrane)`` when called with ``record=True``."""

    out: Tensor
    state: tuple[Any, ...]
    records: dict[str, tuple[Tensor, Tensor | None]] | None = None


def is_stateful(layer: nn.Module) -> bool:
    """A layer is stateful if its ``forward`` takes a ``state`` (neurons, delayed synapses)."""
    return bool(getattr(layer, "stateful", False)) or _has_state_arg(layer)


def _has_state_arg(layer: nn.Module) -> bool:
    import inspect

    try:
        return "state" in inspect.signature(layer.forward).parameters
    except (TypeError, ValueError):
        return False


class Sequential(nn.Sequential):
    """Layers applied in order to ``[T, B, ...]``; stateful layers get and return their state.

    Example:
        >>> from spike.neurons import LIF, LI
        >>> from spike.synapses import Linear
        >>> net = Sequential(Linear(4, 8), LIF(tau=5.0), Linear(8, 2), LI(tau=5.0))
        >>> y = net(torch.rand(10, 3, 4))
        >>> y.out.shape
        torch.Size([10, 3, 2])
    """

    def forward(self, x: Tensor, state: tuple[Any, ...] | None = None,  # type: ignore[override]
                record: bool = False) -> SeqOutput:
        layers = list(self._modules.items())
        if state is not None and len(state) != len(layers):
            raise ValueError(f"state has {len(state)} entries but the network has {len(layers)} layers")
        new_state: list[Any] = []
        records: dict[str, tuple[Tensor, Tensor | None]] = {}
        for i, (name, layer) in enumerate(layers):
            if is_stateful(layer):
                res = layer(x, state[i] if state is not None else None, record=record)
                x = res[0]
                new_state.append(res[1])
                if record:
                    records[name] = (res[0], res[2] if len(res) > 2 else None)
            else:
                x = layer(x)
                new_state.append(None)
        return SeqOutput(x, tuple(new_state), records if record else None)
