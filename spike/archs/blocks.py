"""Time-first building blocks for deep SNNs: a residual container, spatial reductions and the neuron factory.

Every container here follows the :class:`~spike.synapses.Sequential` rule: a stateful child (a neuron, a
``Sequential``, another container) is called as ``child(x, state)`` and returns ``(out, state)``; the
container returns ``(out, state)`` where ``state`` is a dict ``child name -> child state``. Passing that
state back continues the time loop exactly (a run on ``T`` steps equals two runs on ``T/2`` steps with
the state carried over). Nothing is remembered between calls: there is no ``reset_net()``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from torch import Tensor, nn

from spike.neurons import IF, LIF
from spike.neurons.scan import check_sequence
from spike.synapses import BatchNorm2d, Conv2d
from spike.synapses.sequential import is_stateful

__all__ = ["CONNECTS", "connect", "run_layer", "Threaded", "Residual", "SpatialMean", "NeuronFactory",
           "neuron_factory", "conv_bn", "count_params"]

CONNECTS = ("add", "iand", "and")

#: ``factory(**overrides) -> neuron module``; overrides are keyword options such as ``v_th``.
NeuronFactory = Callable[..., nn.Module]


def connect(kind: str, a: Tensor, s: Tensor) -> Tensor:
    """SEW element-wise function ``g(A, S)`` of the residual branch ``a`` and the shortcut ``s``.

    ``add``: :math:`A + S`; ``iand``: :math:`(1 - A)\\,S` (NOT A AND S); ``and``: :math:`A\\,S`
    (Fang et al. 2021, "Deep Residual Learning in Spiking Neural Networks", NeurIPS, arXiv:2102.04159).
    """
    if kind == "add":
        return a + s
    if kind == "iand":
        return (1.0 - a) * s
    if kind == "and":
        return a * s
    raise ValueError(f"connect must be one of {CONNECTS}, got {kind!r}")


def run_layer(layer: nn.Module, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
    """Apply one layer the way :class:`~spike.synapses.Sequential` does: ``(out, new state or None)``."""
    if is_stateful(layer):
        res = layer(x, state)
        return res[0], res[1]
    return layer(x), None


class Threaded(nn.Module):
    """Base of a stateful container: ``forward(x, state, record) -> (out, state dict)``.

    A subclass writes ``body(x, call)``, where ``call(name, x)`` applies child ``name`` with its state
    threaded in and out. Each stateful child must be called exactly once per forward.
    """

    stateful = True

    def body(self, x: Tensor, call: Callable[[str, Tensor], Tensor]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor, state: dict[str, Any] | None = None,
                record: bool = False) -> tuple[Tensor, dict[str, Any]]:
        if state is not None and not isinstance(state, dict):
            raise ValueError(f"{type(self).__name__} state must be the dict it returned, got {type(state).__name__}")
        prev = state or {}
        new: dict[str, Any] = {}

        def call(name: str, h: Tensor) -> Tensor:
            y, s = run_layer(getattr(self, name), h, prev.get(name))
            if s is not None:
                if name in new:
                    raise RuntimeError(f"{type(self).__name__}: stateful child {name!r} called twice in one forward")
                new[name] = s
            return y

        out = self.body(x, call)
        if state is not None and set(state) != set(new):
            raise ValueError(f"{type(self).__name__} state has entries {sorted(state)} but the block keeps "
                             f"{sorted(new)}; pass the state this block returned, or None to start from rest")
        return out, new


class Residual(Threaded):
    """``out = post(g(main(x), shortcut(x)))``, time-first.

    Args:
        main: the residual branch (any layer or :class:`~spike.synapses.Sequential`).
        shortcut: the shortcut branch; ``None`` is the identity.
        connect: ``"add"`` | ``"iand"`` | ``"and"`` (see :func:`connect`).
        post: optional layer applied after the merge (e.g. the neuron of a spiking ResNet block).
    """

    def __init__(self, main: nn.Module, shortcut: nn.Module | None = None, connect: str = "add",
                 post: nn.Module | None = None):
        super().__init__()
        if connect not in CONNECTS:
            raise ValueError(f"connect must be one of {CONNECTS}, got {connect!r}")
        self.main = main
        self.shortcut = shortcut
        self.post = post
        self.connect = connect

    def body(self, x: Tensor, call) -> Tensor:
        a = call("main", x)
        s = x if self.shortcut is None else call("shortcut", x)
        if a.shape != s.shape:
            raise ValueError(f"Residual: branch output {tuple(a.shape)} and shortcut {tuple(s.shape)} differ; "
                             "give the shortcut a projection (stride / channels)")
        out = connect(self.connect, a, s)
        return out if self.post is None else call("post", out)

    def extra_repr(self) -> str:
        return f"connect={self.connect!r}"


class SpatialMean(nn.Module):
    """Global average over space: ``[T, B, C, H, W] -> [T, B, C]``."""

    def forward(self, x: Tensor) -> Tensor:
        check_sequence(x, "SpatialMean input", 5)
        return x.mean(dim=(3, 4))  # [T, B, C]


def neuron_factory(neuron: str | NeuronFactory = "lif", *, tau: float = 2.0, v_th: float = 1.0,
                   surrogate: Any = None, detach_reset: bool = True, backend: str = "auto",
                   spikingjelly: bool = True) -> NeuronFactory:
    """A factory of the spiking neurons an architecture uses.

    Args:
        neuron: ``"lif"``, ``"if"``, or a callable ``factory(**overrides) -> module`` (any neuron kind,
            any backend); it is returned unchanged. Overrides the architectures pass: ``v_th``.
        tau, v_th, surrogate, detach_reset, backend: options of :class:`~spike.neurons.LIF` / ``IF``.
        spikingjelly: the papers' SpikingJelly ``MultiStepLIFNode(tau=2.0)``: Euler step, input scaled
            by ``1/tau`` (``decay_input``), hard reset to 0. ``False``: spike's defaults (exp, subtract).

    Raises:
        ValueError: unknown neuron name or invalid neuron options (raised here, not at first use).
    """
    if callable(neuron) and not isinstance(neuron, str):
        return neuron
    if neuron not in ("lif", "if"):
        raise ValueError(f"neuron must be 'lif', 'if' or a callable factory, got {neuron!r}")
    base: dict[str, Any] = dict(v_th=v_th, detach_reset=detach_reset, surrogate=surrogate, backend=backend)
    if spikingjelly:
        base.update(reset="to_value", v_reset=0.0)
    if neuron == "lif":
        if not (tau > 0 and math.isfinite(tau)):
            raise ValueError(f"neuron 'lif' needs a finite tau > 0, got {tau!r}")
        base["tau"] = float(tau)
        if spikingjelly:
            base.update(discretization="euler", decay_input=True)
        cls: type[nn.Module] = LIF
    else:
        cls = IF

    def make(**overrides: Any) -> nn.Module:
        return cls(**{**base, **overrides})

    make()  # validate the options now
    return make


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    """``Conv2d`` (no bias, 'same' padding ``kernel // 2``) followed by ``BatchNorm2d``."""
    return [Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False), BatchNorm2d(c_out)]


def count_params(module: nn.Module) -> int:
    """Number of parameters (``sum(p.numel())``)."""
    return sum(p.numel() for p in module.parameters())

