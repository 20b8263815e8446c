"""Backend registry: ``(model, backend) -> implementation``, resolved lazily at call time.

A backend is a module exposing two functions with the model's contract:

* ``supports(params, x) -> str | None``: ``None`` if it can run this configuration, else the reason;
* ``multi_step(x, state, params, record) -> (out, state, trace)``: the multi-step update over ``[T, B, ...]``
  (``"lif"``), or ``linear(x, weight, bias)`` (``"linear"``), or ``avg_pool2d(x, args)`` (``"avgpool"``), or
  ``lif_avgpool(lif, pool, x, state) -> (pooled, state)`` (``"lif_avgpool"``, params ``(lif, pool, state)``),
  or ``conv_lif_avgpool(conv, lif, pool, x, state)`` (``"conv_lif_avgpool"``, params ``(conv, lif, pool, state)``);
* optionally ``prefers(params, x) -> str | None``: a speed heuristic that ``backend="auto"`` consults
  (e.g. the sparse-input Linear declines dense inputs); a backend named explicitly ignores it.

The neuron layer never imports a backend module; it asks :func:`resolve`. Names map to import paths
here, so a missing optional dependency (numba, triton) only matters when that backend is chosen.
"""

from __future__ import annotations

import functools
import importlib
import logging
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: core never imports torch at run time
    import torch

__all__ = ["BackendError", "BACKENDS", "AUTO_ORDER", "resolve", "available"]

log = logging.getLogger("spike")


class BackendError(RuntimeError):
    """The requested backend cannot run the requested configuration."""


# model -> backend name -> module path. The reference implementation is the source of truth.
BACKENDS: dict[str, dict[str, str]] = {
    "lif": {
        "reference": "spike.neurons.lif",
        "numba": "spike.backends.numba_lif",
        "triton": "spike.backends.triton_lif",
    },
    "linear": {
        "reference": "spike.synapses.layers",
        "numba": "spike.backends.numba_linear",
    },
    "avgpool": {
        "reference": "spike.synapses.layers",
        "numba": "spike.backends.numba_pool",
    },
    "lif_avgpool": {  # a LIF followed by an AvgPool2d, as Sequential runs them (fused: spikes stay in cache)
        "reference": "spike.synapses.sequential",
        "numba": "spike.backends.numba_lif_pool",
    },
    "conv_lif_avgpool": {  # Conv2d -> LIF -> AvgPool2d, as Sequential runs them (in time chunks)
        "reference": "spike.synapses.sequential",
        "numba": "spike.backends.numba_conv_lif_pool",
    },
    "cuba": {
        "reference": "spike.neurons.cuba",
        "numba": "spike.backends.numba_cuba",
    },
    "adlif": {
        "reference": "spike.neurons.adlif",
        "numba": "spike.backends.numba_adlif",
    },
}

# Fast backends tried, in order, by backend="auto" on each device type (then "reference").
AUTO_ORDER: dict[str, tuple[str, ...]] = {"cpu": ("numba",), "cuda": ("triton",)}


def _load(model: str, name: str) -> ModuleType:
    try:
        path = BACKENDS[model][name]
    except KeyError:
        known = sorted(BACKENDS.get(model, {}))
        raise BackendError(f"unknown backend {name!r} for {model!r}; known: {known + ['auto']}") from None
    try:
        return importlib.import_module(path)
    except ImportError as e:
        raise BackendError(f"backend {name!r} for {model!r} needs a package that is not installed: {e}") from e


@functools.lru_cache(maxsize=None)
def _say_once(msg: str) -> None:
    log.info(msg)


def resolve(model: str, name: str, params: Any, x: "torch.Tensor") -> ModuleType:
    """Return the backend module that runs ``params`` on ``x``.

    Args:
        model: model family, e.g. ``"lif"``.
        name: ``"auto"``, ``"reference"`` or a fast backend name.
        params: the discretised parameters passed to the backend.
        x: the input tensor (its device and dtype matter).

    Raises:
        BackendError: if a named backend cannot run this configuration (never a silent fallback).
    """
    if name != "auto":
        mod = _load(model, name)
        reason = mod.supports(params, x)
        if reason is not None:
            raise BackendError(f"backend {name!r} cannot run this {model} configuration: {reason}")
        return mod
    reasons = []
    for cand in AUTO_ORDER.get(x.device.type, ()):
        try:
            mod = _load(model, cand)
        except BackendError as e:
            reasons.append(str(e))
            continue
        reason = mod.supports(params, x)
        prefers = getattr(mod, "prefers", None)  # optional speed heuristic, consulted by "auto" only
        if reason is None and prefers is not None:
            reason = prefers(params, x)
        if reason is None:
            return mod
        reasons.append(f"{cand}: {reason}")
    if reasons:
        _say_once(f"spike: backend 'auto' uses the reference {model} path ({'; '.join(reasons)})")
    return _load(model, "reference")


def available(model: str) -> dict[str, str]:
    """Which backends of ``model`` import on this machine: name -> "ok" or the import error."""
    out = {}
    for name in BACKENDS.get(model, {}):
        try:
            _load(model, name)
            out[name] = "ok"
        except BackendError as e:
            out[name] = str(e.__cause__ or e)
    return out
