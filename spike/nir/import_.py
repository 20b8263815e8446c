"""Import a NIR graph as a spike :class:`~spike.synapses.Sequential` (:func:`from_nir`)."""

from __future__ import annotations

import math

import nir
import numpy as np
import torch
from torch import nn

from spike.neurons.cuba import CubaLIF
from spike.neurons.modules import IF, LI, LIF
from spike.nir.mapping import DEFAULT_DISCRETIZATION, check_unit_gain, decay_input_of, meta_str, uniform
from spike.synapses.delays import DelayedLinear
from spike.synapses.layers import AvgPool2d, Conv2d, Flatten, Linear
from spike.synapses.sequential import Sequential

__all__ = ["from_nir", "NIRImportError"]


class NIRImportError(ValueError):
    """A NIR graph that spike cannot run exactly (the message names the node)."""


def _where(name: str, node: nir.NIRNode) -> str:
    return f"NIR node {name!r} ({type(node).__name__})"


def _check_graph(g: nir.NIRGraph) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    succ: dict[str, list[str]] = {n: [] for n in g.nodes}
    pred: dict[str, list[str]] = {n: [] for n in g.nodes}
    for a, b in g.edges:
        for n in (a, b):
            if n not in g.nodes:
                raise NIRImportError(f"edge ({a!r}, {b!r}) names node {n!r}, which is not in the graph")
        succ[a].append(b)
        pred[b].append(a)
    # Kahn's algorithm: whatever is left over lies on (or behind) a cycle
    indeg = {n: len(p) for n, p in pred.items()}
    todo = [n for n, k in indeg.items() if k == 0]
    while todo:
        n = todo.pop()
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                todo.append(m)
    left = {n for n, k in indeg.items() if k > 0}  # on a cycle or downstream of one
    cyc = sorted(n for n in left if _reaches(n, n, succ, left))
    if cyc:
        raise NIRImportError(f"the graph has a cycle through node(s) {cyc} (recurrence is not supported)")
    ins = [n for n, v in g.nodes.items() if isinstance(v, nir.Input)]
    outs = [n for n, v in g.nodes.items() if isinstance(v, nir.Output)]
    if len(ins) != 1 or len(outs) != 1:
        raise NIRImportError(f"need exactly one Input and one Output node, got inputs {ins}, outputs {outs}")
    return succ, pred


def _reaches(a: str, b: str, succ: dict[str, list[str]], within: set[str]) -> bool:
    seen, todo = set(), list(succ[a])
    while todo:
        n = todo.pop()
        if n == b:
            return True
        if n in within and n not in seen:
            seen.add(n)
            todo += succ[n]
    return False


def _shape_in(node: nir.NIRNode) -> tuple[int, ...] | None:
    t = getattr(node, "input_type", None) or {}
    v = t.get("input")
    return None if v is None or np.asarray(v).size == 0 else tuple(int(i) for i in np.asarray(v))


def _shape_out(node: nir.NIRNode) -> tuple[int, ...] | None:
    t = getattr(node, "output_type", None) or {}
    v = t.get("output")
    return None if v is None or np.asarray(v).size == 0 else tuple(int(i) for i in np.asarray(v))


def _neuron(name: str, node: nir.NIRNode, dt: float, disc: str | None) -> nn.Module:
    w = _where(name, node)
    meta = node.metadata or {}
    d = disc or meta_str(meta, "spike.discretization", DEFAULT_DISCRETIZATION)
    detach = meta_str(meta, "spike.detach_reset", "False") == "True"
    common = dict(dt=dt, detach_reset=detach)
    if isinstance(node, nir.LI):
        tau = uniform(node, "tau", w)
        di = decay_input_of(uniform(node, "r", w), tau, dt, d, w)
        return LI(tau=tau, v_rest=uniform(node, "v_leak", w), discretization=d, decay_input=di, **common)
    common.update(v_th=uniform(node, "v_threshold", w), v_reset=uniform(node, "v_reset", w),
                  reset=meta_str(meta, "spike.reset", "to_value"),
                  reset_timing=meta_str(meta, "spike.reset_timing", "immediate"))
    if isinstance(node, nir.IF):
        decay_input_of(uniform(node, "r", w), math.inf, dt, d, w)
        return IF(v_rest=float(meta.get("spike.v_rest", 0.0)), **common)
    tau = uniform(node, "tau", w)
    di = decay_input_of(uniform(node, "r", w), tau, dt, d, w)
    return LIF(tau=tau, v_rest=uniform(node, "v_leak", w), discretization=d, decay_input=di, **common)


def _cuba(name: str, node: nir.NIRNode, dt: float, disc: str | None) -> list[nn.Module]:
    """NIR ``CubaLIF`` -> :class:`CubaLIF`; ``CubaLI`` -> ``LI(tau_syn) -> LI(tau_mem)`` (same update)."""
    w = _where(name, node)
    meta = node.metadata or {}
    d = disc or meta_str(meta, "spike.discretization", DEFAULT_DISCRETIZATION)
    detach = meta_str(meta, "spike.detach_reset", "False") == "True"
    tau_syn, tau = uniform(node, "tau_syn", w), uniform(node, "tau_mem", w)
    check_unit_gain(uniform(node, "w_in", w), tau_syn, dt, d, f"{w} field 'w_in'")
    check_unit_gain(uniform(node, "r", w), tau, dt, d, f"{w} field 'r'")
    v_leak = uniform(node, "v_leak", w)
    if isinstance(node, nir.CubaLI):
        return [LI(tau=tau_syn, dt=dt, discretization=d, detach_reset=detach),
                LI(tau=tau, dt=dt, v_rest=v_leak, discretization=d, detach_reset=detach)]
    if v_leak != 0.0:
        raise ValueError(f"{w}: v_leak={v_leak!r}; spike's CubaLIF leaks towards 0 only")
    return [CubaLIF(tau=tau, tau_syn=tau_syn, dt=dt, v_th=uniform(node, "v_threshold", w),
                    v_reset=uniform(node, "v_reset", w), reset=meta_str(meta, "spike.reset", "to_value"),
                    reset_timing=meta_str(meta, "spike.reset_timing", "immediate"), detach_reset=detach,
                    discretization=d)]


def _param(a: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.array(a)))


def _layer(name: str, node: nir.NIRNode, dt: float, disc: str | None,
           batched: bool = False) -> nn.Module | list[nn.Module]:
    w = _where(name, node)
    if isinstance(node, (nir.LIF, nir.IF, nir.LI)):
        return _neuron(name, node, dt, disc)
    if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
        return _cuba(name, node, dt, disc)
    if isinstance(node, (nir.Affine, nir.Linear)):
        wt = np.asarray(node.weight)
        if wt.ndim != 2:
            raise NIRImportError(f"{w}: weight must be 2-D [out, in], got shape {wt.shape}")
        has_b = isinstance(node, nir.Affine) and node.bias is not None
        m = Linear(wt.shape[1], wt.shape[0], bias=has_b)
        m.weight = _param(wt)
        if has_b:
            m.bias = _param(node.bias)
        return m
    if isinstance(node, nir.Conv2d):
        wt = np.asarray(node.weight)
        has_b = meta_str(node.metadata or {}, "spike.bias", "True") == "True"
        pad = node.padding if isinstance(node.padding, str) else tuple(int(p) for p in np.atleast_1d(node.padding))
        m = Conv2d(wt.shape[1] * int(node.groups), wt.shape[0], tuple(wt.shape[-2:]),
                   stride=tuple(int(s) for s in np.atleast_1d(node.stride)), padding=pad,
                   dilation=tuple(int(s) for s in np.atleast_1d(node.dilation)), groups=int(node.groups),
                   bias=has_b)
        m.weight = _param(wt)
        if has_b:
            m.bias = _param(node.bias)
        return m
    if isinstance(node, nir.Flatten):
        ndim = len(_shape_in(node) or ())
        if batched and node.start_dim >= 1:  # a batch-first exporter's Flatten(start_dim=1) over [B, ...]
            ndim, start = ndim - 1, node.start_dim - 1
            end = node.end_dim if node.end_dim < 0 else node.end_dim - 1
        else:
            start, end = node.start_dim, node.end_dim
        if start != 0 or end not in (-1, ndim - 1):
            raise NIRImportError(f"{w}: only Flatten(start_dim=0, end_dim=-1) over the whole sample is "
                                 f"supported (start_dim=1 with a batch dimension), got start_dim={node.start_dim}, "
                                 f"end_dim={node.end_dim}")
        return Flatten()
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        pair = lambda v: tuple(int(i) for i in np.broadcast_to(np.atleast_1d(v), (2,)))  # noqa: E731
        args = dict(kernel_size=pair(node.kernel_size), stride=pair(node.stride), padding=pair(node.padding))
        return AvgPool2d(**args, divisor_override=1 if isinstance(node, nir.SumPool2d) else None)
    raise NIRImportError(f"{w} is not supported (supported: Affine, Linear, Conv2d, Flatten, AvgPool2d, "
                         f"SumPool2d, LIF, IF, LI, CubaLIF, CubaLI, and Delay->Linear branches)")


def _delayed(g: nir.NIRGraph, delays: list[str], succ: dict, pred: dict, dt: float) -> tuple[DelayedLinear, list[str]]:
    """Merge branches ``Delay(d) -> Linear/Affine`` (summed) into one eval-mode :class:`DelayedLinear`."""
    lins, steps = [], []
    for dn in delays:
        node = g.nodes[dn]
        w = _where(dn, node)
        if len(succ[dn]) != 1 or not isinstance(g.nodes[succ[dn][0]], (nir.Linear, nir.Affine)) \
                or pred[succ[dn][0]] != [dn]:
            raise NIRImportError(f"{w}: a Delay must feed exactly one Linear/Affine that has no other input")
        q = uniform(node, "delay", w) / dt
        k = round(q)
        if k < 0 or abs(q - k) > 1e-9 * max(1.0, abs(q)):
            raise NIRImportError(f"{w}: delay {q * dt!r} is not a whole number of steps of dt={dt}")
        lins.append(succ[dn][0])
        steps.append(k)
    ws = [np.asarray(g.nodes[n].weight) for n in lins]
    if len({a.shape for a in ws}) != 1 or ws[0].ndim != 2:
        raise NIRImportError(f"NIR nodes {lins}: delay branches need weights of one 2-D shape, got "
                             f"{[a.shape for a in ws]}")
    biases = [n for n in lins if isinstance(g.nodes[n], nir.Affine) and g.nodes[n].bias is not None]
    if len(biases) > 1:
        raise NIRImportError(f"NIR nodes {biases}: more than one delay branch has a bias")
    meta = g.nodes[lins[0]].metadata or {}
    max_delay = int(meta.get("spike.max_delay", max(steps)))
    if max(steps) > max_delay:
        raise NIRImportError(f"NIR node {lins[steps.index(max(steps))]!r}: delay {max(steps)} > max_delay {max_delay}")
    c_out, c_in = ws[0].shape
    m = DelayedLinear(c_in, c_out, max_delay, sigma=float(meta.get("spike.sigma", 0.0)), bias=bool(biases))
    weight = np.zeros_like(ws[0])
    pos = np.zeros(ws[0].shape, dtype=np.float32)
    for a, k in zip(ws, steps):
        hit = a != 0  # [C_out, C_in]; a zero-weight synapse carries nothing: its delay is kept at 0
        if np.any(hit & (weight != 0)):
            raise NIRImportError(f"NIR nodes {lins}: a synapse has non-zero weight in two delay branches")
        weight[hit] = a[hit]
        pos[hit] = k
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(weight))
        m.pos.copy_(torch.from_numpy(pos))
        if biases:
            m.bias.copy_(torch.from_numpy(np.asarray(g.nodes[biases[0]].bias)))
    return m.eval(), lins


def from_nir(graph: nir.NIRGraph, dt: float, discretization: str | None = None,
             batch_dim: bool | None = None) -> Sequential:
    """Build a spike model that runs ``graph`` exactly at step ``dt``.

    Args:
        graph: a chain ``Input -> ... -> Output``; a layer may be a set of parallel
            ``Delay -> Linear/Affine`` branches summed into the next node (becomes a DelayedLinear).
        dt: step, in the unit of the graph's ``tau`` and delays.
        discretization: ``"exp"`` or ``"euler"`` for every neuron (default: the node's
            ``spike.discretization`` metadata, else ``"exp"``; see :mod:`spike.nir.mapping`).
        batch_dim: the Input/Output types (and ``Flatten(start_dim=1)``) include a leading batch
            dimension, as nirtorch writes them from a ``[1, ...]`` sample (Norse); default: detected
            (the Input type has one dimension more than the first node takes, or it feeds
            ``Flatten(start_dim=1)``).

    Returns:
        :class:`~spike.synapses.Sequential` in eval mode.

    Raises:
        NIRImportError: unsupported node, mismatched shapes, a cycle or a branching graph (names the node).
        ValueError: neuron parameters spike cannot express (names the node).
    """
    if not (dt > 0 and math.isfinite(dt)):
        raise NIRImportError(f"dt must be a positive finite number, got {dt!r}")
    succ, pred = _check_graph(graph)
    start = next(n for n, v in graph.nodes.items() if isinstance(v, nir.Input))
    frontier, layers = [start], []
    shape = _shape_out(graph.nodes[start]) or _shape_in(graph.nodes[start])
    batched = _batched(graph, start, shape, succ) if batch_dim is None else bool(batch_dim)
    if batched:
        shape = _unbatch(shape, start)
    prev = start
    while True:
        nxt = sorted({b for a in frontier for b in succ[a]})
        for n in nxt:
            if sorted(pred[n]) != sorted(frontier) or any(sorted(succ[a]) != nxt for a in frontier):
                raise NIRImportError(f"{_where(n, graph.nodes[n])}: branching graphs are not supported "
                                     f"(only a chain, with Delay->Linear branches summed into one node)")
        if not nxt:
            raise NIRImportError(f"{_where(frontier[0], graph.nodes[frontier[0]])} does not lead to the Output")
        nodes = [graph.nodes[n] for n in nxt]
        if all(isinstance(v, nir.Delay) for v in nodes):
            m, frontier = _delayed(graph, nxt, succ, pred, dt)
            layers.append(m)
            want = _shape_in(nodes[0])
            here = nxt[0]
        elif len(nxt) == 1:
            here = nxt[0]
            want = _shape_in(nodes[0]) if not isinstance(nodes[0], nir.Output) else _shape_out(nodes[0])
            if batched and _carries_batch(nodes[0]):
                want = _unbatch(want, here)
            if isinstance(nodes[0], nir.Output):
                _check_shape(prev, here, shape, want, graph)
                break
            m = _layer(here, nodes[0], dt, discretization, batched)
            layers += m if isinstance(m, list) else [m]
            frontier = [here]
        else:
            raise NIRImportError(f"{_where(nxt[0], nodes[0])}: parallel branches are only supported as "
                                 f"Delay->Linear/Affine (a delayed layer)")
        _check_shape(prev, here, shape, want, graph)
        prev = frontier[0]
        shape = _shape_out(graph.nodes[prev])
        if batched and _carries_batch(graph.nodes[prev]):
            shape = _unbatch(shape, prev)
    return Sequential(*layers).eval()


def _carries_batch(node: nir.NIRNode) -> bool:
    """Whether a batch-first exporter's node type has the batch dimension (Input/Output, Flatten(start_dim>=1))."""
    return isinstance(node, (nir.Input, nir.Output)) or (isinstance(node, nir.Flatten) and node.start_dim >= 1)


def _unbatch(shape, name: str):
    if shape is None:
        return None
    if len(shape) < 2:
        raise NIRImportError(f"NIR node {name!r}: type {tuple(shape)} has no batch dimension to drop")
    return tuple(shape[1:])


def _batched(g: nir.NIRGraph, start: str, shape, succ: dict) -> bool:
    """Auto-detect a batch-first graph (Norse/nirtorch with a ``[1, ...]`` sample): the Input type has one
    leading dimension more than the first node expects, or the first node is ``Flatten(start_dim=1)``."""
    if shape is None or len(shape) < 2 or len(succ[start]) != 1:
        return False
    first = g.nodes[succ[start][0]]
    if isinstance(first, nir.Flatten):
        return first.start_dim >= 1 and shape[0] == 1
    want = _shape_in(first)
    return want is not None and tuple(want) == tuple(shape[1:])


def _check_shape(prev: str, here: str, have, want, g: nir.NIRGraph) -> None:
    if have is not None and want is not None and tuple(have) != tuple(want):
        raise NIRImportError(f"{_where(here, g.nodes[here])} expects input shape {tuple(want)} but "
                             f"{_where(prev, g.nodes[prev])} gives {tuple(have)}")
