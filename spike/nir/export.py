"""Export a spike model to a NIR graph (:func:`to_nir`); see :mod:`spike.nir.mapping` for the neurons."""

from __future__ import annotations

import math

import nir
import numpy as np
import torch
from torch import nn

from spike.neurons.adlif import AdLIF
from spike.neurons.cuba import CubaLIF
from spike.neurons.modules import IF, LI, LIF
from spike.nir.mapping import r_of
from spike.synapses.delays import DelayedLinear
from spike.synapses.layers import AvgPool2d, Conv2d, Flatten, Linear, SharedDropout

__all__ = ["to_nir", "NIRExportError"]


class NIRExportError(ValueError):
    """A layer has no exact NIR equivalent (the message names the layer's index and type)."""


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _layers(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    if isinstance(model, nn.Sequential):
        out = []
        for name, m in model.named_children():
            out += _layers(m, f"{prefix}{name}.") if isinstance(m, nn.Sequential) else [(prefix + name, m)]
        return out
    return [(prefix + "0", model)]


def _infer_input_shape(layers: list[tuple[str, nn.Module]]) -> tuple[int, ...]:
    for name, m in layers:
        if isinstance(m, (nn.Linear, DelayedLinear)):
            return (m.in_features,)
        if isinstance(m, nn.Conv2d) or not isinstance(m, (LIF, SharedDropout)):
            break
    raise NIRExportError("to_nir needs input_shape (per-sample shape, e.g. (C, H, W)) for this model")


def _neuron(name: str, m: LIF, shape: tuple[int, ...], dt: float, strict: bool, where: str) -> nir.NIRNode:
    if m.log_tau is not None:
        raise NIRExportError(f"{where}: learn_tau=True is not exported (learnable tau); build a LIF "
                             f"with the trained tau as a fixed float")
    if m.w_rec is not None:
        raise NIRExportError(f"{where}: the recurrent weight (recurrent=True) is not supported by this exporter")
    p = m.params()
    if p.dt != dt:
        raise NIRExportError(f"{where}: the layer's dt={p.dt} differs from to_nir's dt={dt}")
    tau = float(p.tau)
    full = lambda v: np.full(shape, float(v), dtype=np.float64)  # noqa: E731
    r = full(r_of(tau, dt, p.discretization, p.decay_input))
    meta = {"spike.discretization": p.discretization, "spike.detach_reset": str(bool(p.detach_reset))}
    if isinstance(m, LI):
        if math.isinf(tau):
            raise NIRExportError(f"{where}: LI with tau=inf (a pure integrator) is not supported")
        return nir.LI(tau=full(tau), r=r, v_leak=full(p.v_rest), metadata=meta)
    meta.update(_reset_meta(p, strict, where))
    if math.isinf(tau):
        if p.v_rest != 0.0:
            meta["spike.v_rest"] = float(p.v_rest)
        return nir.IF(r=r, v_threshold=full(p.v_th), v_reset=full(p.v_reset), metadata=meta)
    return nir.LIF(tau=full(tau), r=r, v_leak=full(p.v_rest), v_threshold=full(p.v_th),
                   v_reset=full(p.v_reset), metadata=meta)


def _reset_meta(p, strict: bool, where: str) -> dict:
    if (p.reset != "to_value" or p.reset_timing != "immediate") and strict:
        raise NIRExportError(f"{where}: reset={p.reset!r}, reset_timing={p.reset_timing!r} is not NIR's "
                             f"reset-to-v_reset rule (strict=True); use reset='to_value', "
                             f"reset_timing='immediate' or strict=False (spike.* metadata)")
    return {"spike.reset": p.reset, "spike.reset_timing": p.reset_timing}


def _cuba(m: CubaLIF, shape: tuple[int, ...], dt: float, strict: bool, where: str) -> nir.CubaLIF:
    """NIR ``CubaLIF`` with ``w_in``/``r`` giving spike's unit gains (:mod:`spike.nir.mapping`)."""
    if m.log_tau is not None:
        raise NIRExportError(f"{where}: learn_tau=True is not exported (learnable tau, tau_syn); build a "
                             f"CubaLIF with the trained taus as fixed floats")
    if m.w_rec is not None:
        raise NIRExportError(f"{where}: the recurrent weight (recurrent=True) is not supported by this exporter")
    p = m.params()
    if p.dt != dt:
        raise NIRExportError(f"{where}: the layer's dt={p.dt} differs from to_nir's dt={dt}")
    full = lambda v: np.full(shape, float(v), dtype=np.float64)  # noqa: E731
    meta = {"spike.discretization": p.discretization, "spike.detach_reset": str(bool(p.detach_reset)),
            **_reset_meta(p, strict, where)}
    tau, tau_syn = float(p.tau), float(p.tau_syn)
    return nir.CubaLIF(tau_syn=full(tau_syn), tau_mem=full(tau), r=full(r_of(tau, dt, p.discretization, False)),
                       v_leak=full(0.0), v_threshold=full(p.v_th), v_reset=full(p.v_reset),
                       w_in=full(r_of(tau_syn, dt, p.discretization, False)), metadata=meta)


def _pool(m: nn.AvgPool2d, where: str) -> nir.NIRNode:
    pair = lambda v: np.array(v if isinstance(v, (tuple, list)) else (v, v))  # noqa: E731
    if m.ceil_mode:
        raise NIRExportError(f"{where}: ceil_mode=True has no NIR equivalent")
    if np.any(pair(m.padding) != 0) and not m.count_include_pad:
        raise NIRExportError(f"{where}: count_include_pad=False with padding has no NIR equivalent")
    args = dict(kernel_size=pair(m.kernel_size), stride=pair(m.stride), padding=pair(m.padding))
    if m.divisor_override is None:
        return nir.AvgPool2d(**args)
    if m.divisor_override == 1:
        return nir.SumPool2d(**args)
    raise NIRExportError(f"{where}: divisor_override={m.divisor_override} has no NIR equivalent")


def _delayed(name: str, m: DelayedLinear, dt: float, where: str) -> tuple[dict, list, list[str]]:
    """Branches ``Delay(d*dt) -> Linear/Affine(W masked to delay d)``; returns nodes, inner edges, tails."""
    if m.training:
        raise NIRExportError(f"{where}: DelayedLinear in training mode uses Gaussian (non-integer) delays; "
                             f"call model.eval() to export its rounded integer delays")
    d_all = m.delays()  # [C_out, C_in]
    w = m.weight.detach()
    nodes, edges, tails = {}, [], []
    meta = {"spike.max_delay": int(m.max_delay), "spike.sigma": float(m.sigma)}
    for k, d in enumerate(torch.unique(d_all).tolist()):
        wd = torch.where(d_all == d, w, torch.zeros_like(w))  # [C_out, C_in], this delay's synapses
        nodes[f"{name}.delay{d}"] = nir.Delay(delay=np.full(m.in_features, d * dt, dtype=np.float64))
        if k == 0 and m.bias is not None:
            lin = nir.Affine(weight=_np(wd), bias=_np(m.bias), metadata=dict(meta))
        else:
            lin = nir.Linear(weight=_np(wd), metadata=dict(meta))
        nodes[f"{name}.w{d}"] = lin
        edges.append((f"{name}.delay{d}", f"{name}.w{d}"))
        tails.append(f"{name}.w{d}")
    return nodes, edges, tails


def to_nir(model: nn.Module, dt: float, input_shape: tuple[int, ...] | None = None,
           strict: bool = False) -> nir.NIRGraph:
    """Export a (``Sequential``) spike model to an exact NIR graph.

    Args:
        model: a :class:`~spike.synapses.Sequential` (or one layer) of Linear, Conv2d, Flatten,
            AvgPool2d (``divisor_override=1``: SumPool2d), LIF, IF, LI, CubaLIF, eval-mode DelayedLinear and
            eval-mode SharedDropout (dropped: identity).
        dt: the model's step, in the unit of its ``tau``; NIR times (``tau``, delays) use this unit.
        input_shape: per-sample input shape (default: ``(in_features,)`` of a first Linear).
        strict: raise for resets NIR 1.0 cannot state (subtract, none, deferred) instead of
            recording them in ``spike.*`` node metadata.

    Returns:
        ``nir.NIRGraph`` with nodes ``input``, one per layer (named by its index), ``output``.

    Raises:
        NIRExportError: a layer without an exact NIR equivalent, naming its index and type.
    """
    if not (dt > 0 and math.isfinite(dt)):
        raise NIRExportError(f"dt must be a positive finite number, got {dt!r}")
    layers = _layers(model)
    shape = tuple(input_shape) if input_shape is not None else _infer_input_shape(layers)
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(shape))}
    edges: list[tuple[str, str]] = []
    tails = ["input"]
    x = torch.zeros(1, 1, *shape)  # [T=1, B=1, *shape], only to propagate shapes
    for name, m in layers:
        where = f"layer {name} ({type(m).__name__})"
        heads: list[str] = [name]
        if isinstance(m, SharedDropout):
            if m.training and m.p > 0:
                raise NIRExportError(f"{where}: dropout in training mode is random; call model.eval()")
            continue
        if type(m) in (LIF, IF, LI):
            nodes[name] = _neuron(name, m, shape, float(dt), strict, where)
        elif type(m) is CubaLIF:
            nodes[name] = _cuba(m, shape, float(dt), strict, where)
        elif isinstance(m, AdLIF):
            raise NIRExportError(f"{where}: NIR 1.0 has no adaptive LIF node (SE-adLIF's adaptation "
                                 f"current w has no NIR equivalent); it cannot be exported")
        elif type(m) is Linear or type(m) is nn.Linear:
            nodes[name] = (nir.Affine(weight=_np(m.weight), bias=_np(m.bias)) if m.bias is not None
                           else nir.Linear(weight=_np(m.weight)))
        elif type(m) is Conv2d:
            if m.padding_mode != "zeros":
                raise NIRExportError(f"{where}: padding_mode={m.padding_mode!r} has no NIR equivalent")
            bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_channels, dtype=np.float32)
            nodes[name] = nir.Conv2d(input_shape=tuple(shape[-2:]), weight=_np(m.weight), stride=m.stride,
                                     padding=m.padding, dilation=m.dilation, groups=m.groups, bias=bias,
                                     metadata={"spike.bias": str(m.bias is not None)})
        elif type(m) is Flatten:
            nodes[name] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
        elif type(m) is AvgPool2d:
            nodes[name] = _pool(m, where)
        elif type(m) is DelayedLinear:
            new, inner, heads_tails = _delayed(name, m, float(dt), where)
            nodes.update(new)
            edges += inner
            heads = [n for n in new if ".delay" in n]
        else:
            raise NIRExportError(f"{where} has no exact NIR equivalent (supported: Linear, Conv2d, Flatten, "
                                 f"AvgPool2d, LIF, IF, LI, CubaLIF, DelayedLinear, eval-mode SharedDropout)")
        edges += [(t, h) for t in tails for h in heads]
        tails = heads_tails if type(m) is DelayedLinear else [name]
        with torch.no_grad():
            y = m(x)
            x = y[0] if isinstance(y, tuple) else y
        shape = tuple(x.shape[2:])
    nodes["output"] = nir.Output(output_type=np.array(shape))
    edges += [(t, "output") for t in tails]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"spike.dt": float(dt)})
