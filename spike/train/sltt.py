r"""SLTT and SLTT-K: spatial learning through time (Meng et al., ICCV 2023, arXiv:2302.14311).

BPTT keeps the graph of all ``T`` steps, so its memory grows linearly with ``T``. SLTT drops the
temporal part of the gradient, the membrane-to-membrane path (leak and reset) from step ``t-1`` to
``t``, and back-propagates the loss of every step at once:

.. math::
    L = \frac{1}{T}\sum_{t=1}^{T} \ell(o_t, y),\qquad
    \frac{\partial L}{\partial W^l} \approx \frac{1}{T}\sum_t
    \frac{\partial \ell(o_t, y)}{\partial s^l_t}\,
    \frac{\partial s^l_t}{\partial u^l_t}\,\frac{\partial u^l_t}{\partial W^l}
    \quad\text{with } \frac{\partial u^l_{t}}{\partial u^l_{t-1}} := 0 .

No graph over time is kept, so memory does not depend on ``T``. SLTT-K back-propagates only at
``K`` steps drawn uniformly without replacement per batch (:math:`L = \frac1K\sum_{t\in S}\ell(o_t,y)`,
an unbiased estimate of the SLTT gradient) and runs the other steps without a graph.

Implementation. The network (a :class:`~spike.synapses.Sequential`) is run in chunks of at most
``chunk`` steps, each holding only back-propagated steps or only steps run without a graph (so
SLTT-K never builds a graph for a step it does not back-propagate). ``chunk = 1`` is the paper's
step-by-step algorithm; every chunk size gives the same gradient (models with BatchNorm: statistics per
chunk when ``chunk < T``), and memory grows with the chunk, not with ``T``. The default, 25, is the
measured best on CPU (``bench/sltt.py --t100``, 700-256-256-20 MLP, T = 100, quiet 2-core machine: 0.71x
the per-step autograd BPTT of the paper's comparison, 0.60x SpikingJelly's BPTT, 1.11x the fused-kernel
BPTT, at 0.27x its memory; chunk 1 took 2.8x the fused BPTT's time). Between
chunks the state is detached. Inside a chunk:

* stateless layers (Linear, Conv, pooling, ...) run on the whole chunk at once;
* :class:`~spike.neurons.LIF` / ``IF`` / ``LI`` run their backend's ``multi_step_spatial`` when it
  has one (numba): the fused forward kernel, and a backward kernel that drops the carries
  :math:`\bar v_{t-1}`, :math:`\bar s_{t-1}` after every step, so one forward and one backward pass
  per chunk as in BPTT (a one-step chunk on CPU runs ``lif_step`` from the detached state instead:
  cheaper than a kernel call). Other backends run their own forward without a graph and attach the spatial
  derivative :math:`\partial s_t/\partial x_t = g\,\sigma'(h_t - v_\text{th})` with :math:`h_t`
  recomputed (:func:`~spike.neurons.lif.charge`) from the recorded membrane; with a learnable ``tau``
  or recurrent weights they recompute the chunk with autograd through
  :func:`~spike.neurons.lif_step` from the *detached* previous state (a one-step chunk is just
  ``lif_step`` from the detached state). Forward values are those of the plain forward, and the
  gradient contains only the spatial path :math:`x_t \to h_t \to s_t` (plus :math:`\beta`, :math:`g`,
  :math:`W_\text{rec}` applied to detached state, so a learnable ``tau`` and recurrent weights still get
  their local gradient);
* any other stateful layer (e.g. a delayed synapse whose state is its input history) is stepped one
  step at a time with its state detached before every step. For delays this means the delayed
  taps' weights (and delay parameters) are trained, but no gradient reaches the *earlier* inputs
  through a delay ``d > 0``: that path goes back in time, which is exactly what SLTT drops;
* :class:`~spike.synapses.SharedDropout` draws its mask once per batch and reuses it in every chunk,
  as in the whole-sequence forward.

Losses: each configured loss is applied to every single-step output ``o_t[None]`` (for the built-in
losses as one vectorised per-step cross-entropy per chunk). For
``per_step`` this is exactly the configured loss; ``mean_membrane`` and ``max_membrane`` do not
decompose over time, so SLTT trains their per-step form (``per_step``, TET-style) and says so once in
the log; ``count`` and ``sum_softmax`` are refused by :func:`check_loss`.

BatchNorm layers (folded over time) see each chunk as a batch: statistics over ``chunk * B``
samples instead of ``T * B``, and running statistics are updated once per chunk (a warning is logged
once; with ``chunk = T`` the statistics are those of BPTT, at BPTT's activation memory).

Example:
    >>> from spike.train.sltt import SLTT
    >>> strategy = SLTT()            # or SLTT(k=2) for SLTT-K, SLTT(chunk=8) for speed
    >>> res = strategy.train_step(model, x, y, get_loss("per_step"), optimizer, grad_clip=0.0)
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from spike.neurons import IF, LI, LIF
from spike.core.registry import resolve
from spike.neurons.lif import LIFState, charge, discretize, init_state, lif_step
from spike.neurons.scan import check_sequence
from spike.synapses import MaxMembrane, MeanMembrane, SharedDropout, SpikeCount
from spike.synapses.layers import BatchNorm1d, BatchNorm2d
from spike.synapses.sequential import Sequential, is_stateful
from spike.train.distributed import sync_gradients, unwrap
from spike.train.losses import get_loss, per_step
from spike.train.strategy import StepResult

__all__ = ["SLTT", "SLTTError", "sltt_backward", "detach_state", "check_loss", "choose_steps",
           "EXACT_LOSSES", "PER_STEP_FORM_LOSSES"]

log = logging.getLogger("spike")

_LIF_TYPES = (LIF, IF, LI)
_TIME_REDUCING = (SpikeCount, MeanMembrane, MaxMembrane)
EXACT_LOSSES = ("per_step",)
"""Losses that are a mean over time of a per-step loss: SLTT optimises exactly them."""
PER_STEP_FORM_LOSSES = ("mean_membrane", "max_membrane")
"""Losses SLTT replaces by their per-step form (same class scores, ``mean_t CE(o_t)``)."""


class SLTTError(ValueError):
    """A model, loss or setting SLTT cannot run."""


@functools.lru_cache(maxsize=None)
def _say_once(msg: str) -> None:
    log.warning(msg)


def check_loss(name: str) -> None:
    """Raise :class:`SLTTError` for a loss SLTT cannot decompose over time steps.

    Raises:
        SLTTError: for ``count`` and ``sum_softmax`` (naming ``[train] loss``).
    """
    if name in EXACT_LOSSES or name in PER_STEP_FORM_LOSSES:
        return
    raise SLTTError(f"[train] loss = {name!r} cannot be split into per-time-step losses, which SLTT needs "
                    f"(it back-propagates every step's loss at once); use loss = 'per_step' (the paper's "
                    f"L = 1/T sum_t CE(o_t, y)) or one of {list(PER_STEP_FORM_LOSSES)}")


def detach_state(state: Any) -> Any:
    """Detach every tensor inside a nested state (NamedTuples, tuples, lists, dicts; ``None`` kept)."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # NamedTuple
        return type(state)(*(detach_state(s) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    return state


def choose_steps(n_steps: int, k: int | None, generator: torch.Generator | None = None) -> list[int]:
    """The steps SLTT back-propagates: all of them (``k=None``) or ``k`` drawn without replacement.

    Raises:
        SLTTError: if ``k`` is not in ``[1, n_steps]`` (naming ``[train] sltt_k``).
    """
    if k is None:
        return list(range(n_steps))
    if not 1 <= k <= n_steps:
        raise SLTTError(f"[train] sltt_k = {k} must be between 1 and the number of time steps T = {n_steps}")
    return sorted(torch.randperm(n_steps, generator=generator)[:k].tolist())


def _check_layers(layers: Sequence[tuple[str, nn.Module]]) -> None:
    for name, layer in layers:
        if isinstance(layer, _TIME_REDUCING):
            raise SLTTError(f"layer {name!r} ({type(layer).__name__}) reduces over time; SLTT needs a network "
                            f"that outputs one value per step [T, B, C] (put the reduction in the loss)")


def _lif_chunk(layer: LIF, x: Tensor, state: LIFState | None) -> tuple[Tensor, LIFState]:
    """LIF/IF/LI over a chunk with the temporal path cut before every step (see module docstring)."""
    if not torch.is_grad_enabled():
        res = layer(x, state)
        return res.spikes, res.state
    p = layer.check_input(x, state)
    # one step on CPU: the reference step from the detached state is cheaper than a kernel call
    # (measured: 269 vs 317 ms per chunk-1 step of the 700-256-256-20 net at T = 100)
    one_cpu_step = x.shape[0] == 1 and x.device.type == "cpu"
    spatial = None if one_cpu_step else getattr(resolve("lif", layer.backend, p, x), "multi_step_spatial", None)
    if spatial is not None:  # a fused kernel whose backward drops the temporal carries itself
        spikes, st, v = spatial(x, detach_state(state), p, isinstance(layer, LI))
        return (v if isinstance(layer, LI) else spikes), detach_state(st)
    if x.shape[0] == 1:  # one step: the reference step itself from the detached state (no sequential pass)
        st0 = state if state is not None else init_state(x[0].detach(), p)
        spikes, st = lif_step(x[0], LIFState(st0.v.detach(), st0.s.detach()), p)
        return (st.v if isinstance(layer, LI) else spikes).unsqueeze(0), st
    with torch.no_grad():
        res = layer(x.detach(), state, record=True)  # fast sequential update: membrane after each step
    st0 = state if state is not None else init_state(x[0].detach(), p)
    if p.w_rec is None and not any(isinstance(c, Tensor) and c.requires_grad for c in (p.beta, p.gain)):
        return _spatial_chunk(layer, x, res, st0, p), res.state
    v_prev = torch.cat([st0.v.unsqueeze(0), res.v[:-1]])  # [C, B, ...] membrane before each step
    if isinstance(layer, LI):  # output is v; spikes of LI never feed back (reset none, no w_rec)
        s_prev = torch.zeros_like(v_prev)
    else:
        s_prev = torch.cat([st0.s.unsqueeze(0), res.spikes[:-1]])  # [C, B, ...]
    spikes, st = lif_step(x, LIFState(v_prev, s_prev), p)  # vectorised over the chunk, graph: x -> h -> s
    return (st.v if isinstance(layer, LI) else spikes), res.state


class _LocalGrad(torch.autograd.Function):
    """``out`` (values computed without a graph) with the elementwise derivative ``d out / d x = local``."""

    @staticmethod
    def forward(ctx, x: Tensor, out: Tensor, local: Tensor | float) -> Tensor:  # type: ignore[override]
        if isinstance(local, Tensor):
            ctx.save_for_backward(local)
        ctx.local = None if isinstance(local, Tensor) else local
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        local = ctx.saved_tensors[0] if ctx.local is None else ctx.local
        return (grad if isinstance(local, float) and local == 1.0 else grad * local), None, None


def _spatial_chunk(layer: LIF, x: Tensor, res, st0: LIFState, p) -> Tensor:
    r"""Fast path of :func:`_lif_chunk` for constant ``beta``/``gain`` and no recurrence: the spikes (LI:
    membrane) of the plain forward ``res`` carry the spatial derivative only,
    :math:`\partial s_t/\partial x_t = g\,\sigma'(h_t - v_\text{th})` (LI: :math:`\partial v_t/\partial x_t = g`),
    with :math:`h_t` recomputed without a graph from the recorded membrane; no second autograd pass."""
    if isinstance(layer, LI):  # reset none, no recurrence: v_t = h_t
        return _LocalGrad.apply(x, res.v, p.gain if isinstance(p.gain, float) else p.gain.detach())
    with torch.no_grad():
        v_prev = torch.cat([st0.v.unsqueeze(0), res.v[:-1]])  # [C, B, ...] membrane before each step
        s_prev = torch.cat([st0.s.unsqueeze(0), res.spikes[:-1]]) if p.deferred else v_prev  # unused if immediate
        h = charge(x.detach(), LIFState(v_prev, s_prev), p)  # [C, B, ...] same values as the forward's
        local = p.surrogate.grad(h - p.v_th)
        if not (isinstance(p.gain, float) and p.gain == 1.0):
            local = local * p.gain
    return _LocalGrad.apply(x, res.spikes, local)


def _stateful_chunk(layer: nn.Module, x: Tensor, state: Any) -> tuple[Tensor, Any]:
    """Any other stateful layer: one step at a time, state detached before each step."""
    outs = []
    for xt in x.unbind(0):
        res = layer(xt.unsqueeze(0), detach_state(state), record=False)
        outs.append(res[0])
        state = res[1]
    return torch.cat(outs), state


def _forward_chunk(layers: Sequence[tuple[str, nn.Module]], x: Tensor, state: list[Any],
                   masks: dict[int, Tensor]) -> Tensor:
    """Run a chunk ``x [C, B, ...]`` through the layers; updates ``state`` in place (a local list)."""
    n = x.shape[0]
    for i, (name, layer) in enumerate(layers):
        if isinstance(layer, SharedDropout):
            if layer.training and layer.p > 0.0:
                if i not in masks:  # same draw as SharedDropout.forward on the whole sequence
                    keep = torch.empty_like(x[0]).bernoulli_(1.0 - layer.p)  # [B, ...]
                    masks[i] = keep / (1.0 - layer.p)
                x = x * masks[i]
        elif type(layer) in _LIF_TYPES and not (isinstance(layer, LI) and layer.w_rec is not None):
            x, state[i] = _lif_chunk(layer, x, state[i])
        elif is_stateful(layer):
            x, state[i] = _stateful_chunk(layer, x, state[i])
        else:
            x = layer(x)
        if x.shape[0] != n:
            raise SLTTError(f"layer {name!r} ({type(layer).__name__}) changed the time axis from {n} to "
                            f"{x.shape[0]} steps; SLTT needs layers that keep [T, B, ...]")
    return x


def sltt_backward(model: nn.Module, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor], *,
                  k: int | None = None, chunk: int = 25, steps: Sequence[int] | None = None,
                  generator: torch.Generator | None = None, reduce: str | None = None) -> tuple[float, Tensor]:
    """Accumulate the SLTT (or SLTT-K) gradient of ``model`` on one batch into ``.grad``.

    Args:
        model: a :class:`~spike.synapses.Sequential` (or a DDP wrapper of one).
        x: input ``[T, B, ...]``; y: labels ``[B]``.
        loss_fn: ``loss_fn(out [T', B, C], y)``; called on every single-step output ``o_t[None]``.
        k: number of back-propagated steps (SLTT-K); ``None`` = all ``T`` (SLTT).
        chunk: steps run together (memory grows with ``chunk``, not with ``T``; same gradient).
        steps: explicit steps to back-propagate (overrides ``k``; for tests).
        generator: random source for the ``k`` steps (default: torch's global RNG).
        reduce: ``None`` returns the whole output ``[T, B, C]``; ``"mean"`` / ``"max"`` return its mean /
            max over time ``[1, B, C]``, accumulated chunk by chunk, so nothing kept grows with ``T``.

    Returns:
        ``(loss, out)``: the per-step loss :math:`\\frac1T\\sum_t \\ell(o_t, y)` over *all* steps and the
        detached output (``[T, B, C]``, or ``[1, B, C]`` with ``reduce``).

    Raises:
        SLTTError: bad ``k``/``chunk``, a model that is not a ``Sequential``, a layer reducing over time.

    Note:
        With ``mean_membrane`` / ``max_membrane`` the returned loss is the per-step form that was
        trained, not the configured loss (the trainer's evaluation reports the configured one).
    """
    net = unwrap(model)
    if not isinstance(net, Sequential):
        raise SLTTError(f"SLTT runs spike.synapses.Sequential models (it steps their layers), got "
                        f"{type(net).__name__}")
    check_sequence(x, "SLTT input")
    if not (isinstance(chunk, int) and chunk >= 1):
        raise SLTTError(f"[train] sltt_chunk must be an integer >= 1, got {chunk!r}")
    n_steps = x.shape[0]
    if steps is None:
        sel = choose_steps(n_steps, k, generator)
    else:
        sel = sorted({int(t) for t in steps})
        if not sel or sel[0] < 0 or sel[-1] >= n_steps:
            raise SLTTError(f"steps {list(steps)} must be non-empty and within [0, {n_steps})")
    layers = list(net._modules.items())
    _check_layers(layers)
    if chunk < n_steps and any(isinstance(m, (BatchNorm1d, BatchNorm2d)) and m.training for _, m in layers):
        _say_once(f"spike: SLTT with sltt_chunk = {chunk} < T: BatchNorm statistics are computed per chunk of "
                  f"{chunk} steps and running statistics updated once per chunk")
    loss_name = getattr(loss_fn, "__name__", "")
    if loss_name in PER_STEP_FORM_LOSSES:
        _say_once(f"spike: SLTT trains loss {loss_name!r} in its per-step form 1/T sum_t CE(o_t, y) (it does not "
                  f"split over time steps); set [train] loss = 'per_step' to train and log the same objective")
    weight = 1.0 / len(sel)
    # the built-in losses SLTT accepts all equal CE(o_t, y) on one step: one vectorised call per chunk
    per_step_form = loss_name in EXACT_LOSSES + PER_STEP_FORM_LOSSES and loss_fn is get_loss(loss_name)
    chosen = set(sel)
    if reduce not in (None, "mean", "max"):
        raise SLTTError(f"reduce must be None, 'mean' or 'max', got {reduce!r}")
    state: list[Any] = [None] * len(layers)
    masks: dict[int, Tensor] = {}
    outs: list[Tensor] = []
    acc: Tensor | None = None  # running sum / max over time (reduce)
    total = 0.0  # (1/T) sum_t loss(o_t), over all steps, for the log
    for c0, c1, grad in _segments(n_steps, chosen, chunk):
        with torch.set_grad_enabled(grad):
            out = _forward_chunk(layers, x[c0:c1], state, masks)  # [C, B, C_out] (x is the input: no graph)
            if per_step_form:  # sum_t CE(o_t, y) over the chunk in one call: C * mean_t CE(o_t, y)
                chunk_loss = per_step(out, y) * out.shape[0]
            else:
                chunk_loss = sum(loss_fn(o.unsqueeze(0), y) for o in out.unbind(0))  # per-step losses
            if grad:
                (chunk_loss * weight).backward()  # type: ignore[union-attr]
        total += float(chunk_loss.detach()) / n_steps  # type: ignore[union-attr]
        state = detach_state(state)
        out = out.detach()
        if reduce is None:
            outs.append(out)
        elif reduce == "mean":
            acc = out.sum(0) if acc is None else acc + out.sum(0)  # [B, C]
        else:
            acc = out.amax(0) if acc is None else torch.maximum(acc, out.amax(0))
    if reduce is None:
        return total, torch.cat(outs)  # [T, B, C]
    assert acc is not None
    return total, (acc / n_steps if reduce == "mean" else acc).unsqueeze(0)  # [1, B, C]


def _segments(n_steps: int, chosen: set[int], chunk: int) -> list[tuple[int, int, bool]]:
    """Split ``[0, T)`` into runs ``(start, stop, with_graph)`` of at most ``chunk`` steps that are all
    back-propagated or all not: steps that are not chosen never get a graph, whatever the chunk."""
    segs: list[tuple[int, int, bool]] = []
    start = 0
    for t in range(1, n_steps + 1):
        if t == n_steps or t - start == chunk or ((t in chosen) != (start in chosen)):
            segs.append((start, t, start in chosen))
            start = t
    return segs


@dataclass(frozen=True)
class SLTT:
    """SLTT (``k=None``) or SLTT-K strategy for the :class:`~spike.train.Trainer`.

    Args:
        k: steps back-propagated per batch (SLTT-K), ``None`` for all (SLTT).
        chunk: steps run per chunk (default 25, measured fastest on CPU; 1 = the paper's online algorithm; same
            gradient).
    """

    k: int | None = None
    chunk: int = 25

    def __post_init__(self):
        if self.k is not None and (not isinstance(self.k, int) or self.k < 1):
            raise SLTTError(f"[train] sltt_k must be an integer >= 1, got {self.k!r}")
        if not isinstance(self.chunk, int) or self.chunk < 1:
            raise SLTTError(f"[train] sltt_chunk must be an integer >= 1, got {self.chunk!r}")

    @property
    def name(self) -> str:
        return "sltt" if self.k is None else "sltt_k"

    def check_time_steps(self, n_steps: int) -> None:
        """Raise :class:`SLTTError` if ``k`` exceeds the ``n_steps`` time steps of the data."""
        if self.k is not None and self.k > n_steps:
            raise SLTTError(f"[train] sltt_k = {self.k} exceeds the number of time steps T = {n_steps} "
                            f"([data] n_time_bins); choose 1 <= sltt_k <= {n_steps}")

    def train_step(self, model, x, y, loss_fn, optimizer, grad_clip):
        """One SLTT update. ``StepResult.out`` is the output's mean (``max_membrane``: max) over time
        ``[1, B, C]``, which gives the loss's class scores, so that no tensor kept grows with ``T``."""
        name = getattr(loss_fn, "__name__", "")
        reduce = "max" if name == "max_membrane" else ("mean" if name in ("per_step", "mean_membrane") else None)
        optimizer.zero_grad(set_to_none=True)
        loss, out = sltt_backward(model, x, y, loss_fn, k=self.k, chunk=self.chunk, reduce=reduce)
        sync_gradients(model)
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(unwrap(model).parameters(), grad_clip)
        optimizer.step()
        return StepResult(loss, out)
