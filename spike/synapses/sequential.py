"""A ``Sequential`` that threads explicit neuron state through the network."""

from __future__ import annotations

import contextlib
import functools
from typing import Any, NamedTuple

from torch import Tensor, nn

from spike.core.registry import resolve
from spike.neurons.modules import IF, LIF, checked_input
from spike.synapses.layers import AvgPool2d, Conv2d

__all__ = ["SeqOutput", "Sequential"]


class SeqOutput(NamedTuple):
    """``out [T, B, ...]``; ``state``: one entry per layer (``None`` for stateless ones);
    ``records``: layer name -> ``(spikes, membrane)`` when called with ``record=True``."""

    out: Tensor
    state: tuple[Any, ...]
    records: dict[str, tuple[Tensor, Tensor | None]] | None = None


def is_stateful(layer: nn.Module) -> bool:
    """A layer is stateful if its ``forward`` takes a ``state`` (neurons, delayed synapses)."""
    return bool(getattr(layer, "stateful", False)) or _has_state_arg(type(layer).forward)


@functools.lru_cache(maxsize=None)
def _has_state_arg(forward) -> bool:
    import inspect

    try:
        return "state" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False


def supports(params, x: Tensor) -> str | None:
    """The reference ``"lif_avgpool"`` path (the two layers one after the other) runs everything."""
    return None


def lif_avgpool(lif: nn.Module, pool: nn.Module, x: Tensor, state) -> tuple[Tensor, Any]:
    """Reference for a LIF followed by an AvgPool2d: ``(pool(lif(x, state).spikes), lif's final state)``."""
    out = lif(x, state)
    return pool(out.spikes), out.state


def conv_lif_avgpool(conv: nn.Module, lif: nn.Module, pool: nn.Module, x: Tensor, state) -> tuple[Tensor, Any]:
    """Reference for a Conv2d followed by a LIF and an AvgPool2d: the convolution, then the pair (fused
    where ``"lif_avgpool"`` supports it)."""
    z = conv(x)
    return resolve("lif_avgpool", "auto", (lif, pool, state), z).lif_avgpool(lif, pool, z, state)


def _pair_candidate(layer: nn.Module, nxt: nn.Module, x: Tensor) -> bool:
    """A LIF / IF followed by an AvgPool2d, both on an automatic or numba backend, on the CPU: the
    registry's ``"lif_avgpool"`` may run them fused (it checks the rest)."""
    return (type(layer) in (LIF, IF) and type(nxt) is AvgPool2d and x.device.type == "cpu"
            and layer.backend in ("auto", "numba") and nxt.backend in ("auto", "numba"))


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
        """Run the layers in order.

        The input is checked once, by the first layer (shape and NaN/Inf, with that layer's own
        message); when that layer's check covers NaN/Inf (``checks_finite``), the later layers check
        shapes only (finite input through finite weights stays finite).

        A ``LIF`` / ``IF`` followed by an ``AvgPool2d`` runs as one fused step on the CPU where the
        ``"lif_avgpool"`` backend supports them (:mod:`spike.backends.numba_lif_pool`: same outputs,
        state and gradients, bit for bit, without writing the spikes to memory); with ``record=True``,
        forward hooks on either layer, or anything the backend names, they run one after the other.
        A ``Conv2d`` before such a pair runs with it in time chunks where ``"conv_lif_avgpool"``
        supports them (:mod:`spike.backends.numba_conv_lif_pool`: the convolution's output is never
        held whole; the weight gradient is a sum over chunks, equal to the separate layers' to float
        rounding, and the same in every memory mode).
        """
        layers = list(self._modules.items())
        if state is not None and len(state) != len(layers):
            raise ValueError(f"state has {len(state)} entries but the network has {len(layers)} layers")
        new_state: list[Any] = []
        records: dict[str, tuple[Tensor, Tensor | None]] = {}
        with contextlib.ExitStack() as checked:
            i = 0
            while i < len(layers):
                name, layer = layers[i]
                if (not record and i + 2 < len(layers) and type(layer) is Conv2d
                        and _pair_candidate(layers[i + 1][1], layers[i + 2][1], x)):
                    lif, pool = layers[i + 1][1], layers[i + 2][1]
                    st = state[i + 1] if state is not None else None
                    x, lif_state = resolve("conv_lif_avgpool", "auto", (layer, lif, pool, st), x).conv_lif_avgpool(
                        layer, lif, pool, x, st)
                    new_state += [None, lif_state, None]
                    step = 3
                elif not record and i + 1 < len(layers) and _pair_candidate(layer, layers[i + 1][1], x):
                    pool = layers[i + 1][1]
                    st = state[i] if state is not None else None
                    x, lif_state = resolve("lif_avgpool", "auto", (layer, pool, st), x).lif_avgpool(layer, pool, x, st)
                    new_state += [lif_state, None]
                    step = 2
                else:
                    x = self._call(i, name, layer, x, state, record, new_state, records)
                    step = 1
                if i == 0 and getattr(layer, "checks_finite", False):
                    checked.enter_context(checked_input())
                i += step
        return SeqOutput(x, tuple(new_state), records if record else None)

    @staticmethod
    def _call(i: int, name: str, layer: nn.Module, x: Tensor, state, record: bool, new_state: list,
              records: dict) -> Tensor:
        """Layer ``i``: stateful layers get and return their state (appended to ``new_state``)."""
        if is_stateful(layer):
            res = layer(x, state[i] if state is not None else None, record=record)
            x = res[0]
            new_state.append(res[1])
            if record:
                records[name] = (res[0], res[2] if len(res) > 2 else None)
        else:
            x = layer(x)
            new_state.append(None)
        return x
