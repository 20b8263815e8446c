"""Thin ``nn.Module`` shells around the pure neuron functions: they hold parameters, nothing else.

A call takes ``x: [T, B, ...]`` and an optional initial state and returns
``NeuronOutput(spikes, state, v)``; nothing is remembered between calls, so there is no
``reset_net()`` to forget and the batch size may change freely.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, NamedTuple

import torch
from torch import Tensor, nn

from spike.core.registry import resolve
from spike.neurons import lif as F
from spike.neurons.scan import check_finite, check_sequence, check_state
from spike.surrogate import ATan, Surrogate, get_surrogate

__all__ = ["NeuronOutput", "LIF", "IF", "LI", "input_checked", "checked_input"]

_INPUT_CHECKED: ContextVar[bool] = ContextVar("spike_input_checked", default=False)


def input_checked() -> bool:
    """True inside a model call whose input was already checked for NaN/Inf (by its first layer).

    Layers then skip their own finiteness reduction (shape checks still run): a finite input through
    finite weights stays finite, so one check per model call at the input is enough.
    """
    return _INPUT_CHECKED.get()


@contextmanager
def checked_input() -> Iterator[None]:
    """Mark the rest of this model call as running on an input already checked finite."""
    token = _INPUT_CHECKED.set(True)
    try:
        yield
    finally:
        _INPUT_CHECKED.reset(token)


class NeuronOutput(NamedTuple):
    """``spikes [T, B, ...]``, final ``state``, membrane trace ``v [T, B, ...]`` (``None`` unless recorded)."""

    spikes: Tensor
    state: F.LIFState
    v: Tensor | None = None


class LIF(nn.Module):
    r"""Leaky integrate-and-fire layer over ``[T, B, ...]`` (see :mod:`spike.neurons.lif` for the update).

    Args:
        tau: membrane time constant (same unit as ``dt``); ``math.inf`` gives IF.
        dt: step length.
        v_th, v_reset, v_rest: threshold, reset value, resting potential.
        reset: ``"subtract"`` | ``"to_value"`` | ``"none"``.
        reset_timing: ``"immediate"`` (default; SpikingJelly, Norse) | ``"deferred"`` (snnTorch).
        detach_reset: remove the reset from the gradient.
        surrogate: a :class:`~spike.surrogate.Surrogate` or its name (default :class:`~spike.surrogate.ATan`).
        discretization: ``"exp"`` | ``"euler"``.
        decay_input: scale the input by ``1 - beta``.
        learn_tau: make ``tau`` a parameter (PLIF, Fang et al. 2021, doi:10.1109/ICCV48922.2021.00266),
            stored as ``log_tau`` so it stays positive; per neuron if ``shape`` is given, else scalar.
        shape: feature shape after ``[T, B]``; needed for per-neuron tau and for ``recurrent``.
        recurrent: add a learnable recurrent weight ``[N, N]`` (``shape`` must be ``(N,)``).
        backend: ``"auto"`` (fastest that supports the configuration), ``"reference"``, ``"numba"``, ...

    Shape:
        input ``[T, B, *shape]`` → spikes ``[T, B, *shape]``.

    Example:
        >>> lif = LIF(tau=5.0, dt=1.0)
        >>> out = lif(torch.rand(10, 2, 3))
        >>> out.spikes.shape, out.state.v.shape
        (torch.Size([10, 2, 3]), torch.Size([2, 3]))
    """

    checks_finite = True  # its input check includes NaN/Inf (see spike.synapses.Sequential)

    def __init__(self, tau: float = 10.0, dt: float = 1.0, *, v_th: float = 1.0, v_reset: float = 0.0,
                 v_rest: float = 0.0, reset: str = "subtract", reset_timing: str = "immediate",
                 detach_reset: bool = False, surrogate: Surrogate | str | None = None,
                 discretization: str = "exp", decay_input: bool = False, learn_tau: bool = False,
                 shape: int | tuple[int, ...] | None = None, recurrent: bool = False,
                 backend: str = "auto"):
        super().__init__()
        if isinstance(surrogate, str):
            surrogate = get_surrogate(surrogate)
        self.shape = (shape,) if isinstance(shape, int) else (tuple(shape) if shape is not None else None)
        # validates every option once, at construction
        self._template = F.LIFParams(tau=float(tau), dt=float(dt), v_th=v_th, v_reset=v_reset, v_rest=v_rest,
                                     reset=reset, reset_timing=reset_timing, detach_reset=detach_reset,
                                     surrogate=surrogate or ATan(), discretization=discretization,
                                     decay_input=decay_input)
        if learn_tau:
            if math.isinf(tau):
                raise ValueError("learn_tau=True needs a finite initial tau")
            init = torch.full(self.shape or (), math.log(tau))
            self.log_tau = nn.Parameter(init)
        else:
            self.log_tau = None
        if recurrent:
            if self.shape is None or len(self.shape) != 1:
                raise ValueError("recurrent=True needs shape=N (features last, [T, B, N])")
            n = self.shape[0]
            self.w_rec = nn.Parameter(torch.empty(n, n).uniform_(-1 / math.sqrt(n), 1 / math.sqrt(n)))
        else:
            self.w_rec = None
        self.backend = backend

    def params(self) -> F.LIFParams:
        """Current physical parameters (tau as a tensor when learnable)."""
        p = self._template
        if self.log_tau is None and self.w_rec is None:
            return p
        from dataclasses import replace
        tau = torch.exp(self.log_tau) if self.log_tau is not None else p.tau
        return replace(p, tau=tau, w_rec=self.w_rec)

    @property
    def tau(self) -> float | Tensor:
        return self.params().tau

    def forward(self, x: Tensor, state: F.LIFState | None = None, record: bool = False) -> NeuronOutput:
        p = self.check_input(x, state)
        impl = resolve("lif", self.backend, p, x)
        spikes, state, v = impl.multi_step(x, state, p, record)
        return NeuronOutput(spikes, state, v)

    def check_input(self, x: Tensor, state: F.LIFState | None = None) -> F.LIFDiscrete:
        """Validate ``x [T, B, ...]`` and ``state`` for this layer; return the discretised parameters.

        Raises:
            ValueError: wrong rank/shape, no time steps (``T = 0``), non-finite input, or a state that
                does not match one step of ``x`` or holds NaN/Inf.
        """
        what = f"{type(self).__name__} input"
        check_sequence(x, what, finite=False)
        if self.shape is not None and tuple(x.shape[2:]) != self.shape:
            raise ValueError(f"{type(self).__name__} expects [T, B, {', '.join(map(str, self.shape))}], "
                             f"got {tuple(x.shape)}")
        named = check_state(state, x, "state", "pass state=None to start from rest") if state is not None else []
        if input_checked():  # inside a model call whose input was checked once, at its first layer
            check_finite(*named)
        else:
            check_finite((what, x), *named)  # one reduction for the input and the initial state
        return F.discretize(self.params())

    def extra_repr(self) -> str:
        p = self._template
        return (f"tau={p.tau}, dt={p.dt}, v_th={p.v_th}, reset={p.reset!r}, reset_timing={p.reset_timing!r}, "
                f"surrogate={p.surrogate}, learn_tau={self.log_tau is not None}, "
                f"recurrent={self.w_rec is not None}, backend={self.backend!r}")


class IF(LIF):
    """Integrate-and-fire: :class:`LIF` with ``tau = inf`` (no leak, ``beta = 1``)."""

    def __init__(self, dt: float = 1.0, **kwargs):
        if "tau" in kwargs or kwargs.get("learn_tau"):
            raise ValueError("IF has no leak: do not pass tau or learn_tau (use LIF)")
        super().__init__(tau=math.inf, dt=dt, **kwargs)


class LI(LIF):
    r"""Non-spiking leaky integrator (readout layer): returns the membrane as ``spikes``.

    .. math:: v_t = \beta v_{t-1} + g x_t
    """

    def __init__(self, tau: float = 10.0, dt: float = 1.0, **kwargs):
        super().__init__(tau=tau, dt=dt, reset="none", **kwargs)

    def forward(self, x: Tensor, state: F.LIFState | None = None, record: bool = False) -> NeuronOutput:
        out = super().forward(x, state, record=True)
        return NeuronOutput(out.v, out.state, out.v)
