"""``spike import``: a NIR graph as a spike checkpoint that ``spike eval``/``energy``/``export``/``stream`` run.

* ``spike import MODEL.nir OUT.pt --config CONFIG.toml [--dt DT] [--discretization exp|euler]
  [--input-shape C H W]``: the graph
  is read with :func:`spike.nir.from_nir` and written as a checkpoint (:func:`save_checkpoint`) with a
  stored config and a ``data`` record, as ``spike train`` writes them.

A NIR file names no data set, so ``--config`` supplies ``[data]`` (and ``[run]``, ``[train]``: the loss
``spike eval`` scores with); its ``[model]`` is replaced by the one the graph states. ``spike eval``
rebuilds models from ``[model]`` (:func:`spike.models.build_model`), so the graph must be one of its
layouts: ``kind="mlp"`` (``[Flatten] (Linear -> neuron)* -> Linear -> readout``) or ``kind="conv"``
(``(Conv3x3 pad 1 -> neuron -> AvgPool2) * -> Flatten -> Linear -> readout``), hidden neurons of one
kind (LIF, IF, CubaLIF) with one set of parameters (Norse-style ``decay_input`` LIF and a non-zero
``v_leak`` included: ``[model] decay_input`` / ``v_rest``), readout LI / the same neuron / none. The rebuilt model
is checked against the imported one (same outputs, bit for bit, on a random input) before writing.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

__all__ = ["add_parsers", "cmd_import", "model_config_of", "import_checkpoint", "NIRCheckpointError"]


def add_parsers(sub) -> None:
    """Register ``import`` on the ``spike`` sub-parsers."""
    p = sub.add_parser("import", help="write a NIR graph as a spike checkpoint (for eval / energy / export)")
    p.add_argument("model", metavar="MODEL.nir")
    p.add_argument("out", metavar="OUT.pt")
    p.add_argument("--config", required=True, metavar="CONFIG.toml",
                   help="a NIR file names no data set: [data] (and [run], [train]) come from this config; "
                        "its [model] is replaced by the graph's")
    p.add_argument("--dt", type=float, default=None,
                   help="simulation step in the graph's time unit (default: the graph's spike.dt metadata)")
    p.add_argument("--discretization", choices=("exp", "euler"), default=None,
                   help="how every neuron is discretised (default: the graph's spike.discretization metadata, "
                        "else exp; graphs from Norse need euler, see spike.nir.mapping)")
    p.add_argument("--input-shape", type=int, nargs="+", default=None, metavar="N",
                   help="per-sample input shape (default: the graph's Input type)")


class NIRCheckpointError(ValueError):
    """An imported graph that ``spike eval`` cannot rebuild from a ``[model]`` config (names the layer)."""


def _neuron_fields(layer) -> tuple[str, dict]:
    from spike.neurons.cuba import CubaLIF
    from spike.neurons.modules import IF, LI, LIF

    p = layer.params()
    common = dict(dt=p.dt, v_th=p.v_th, v_reset=p.v_reset, reset=p.reset, reset_timing=p.reset_timing,
                  detach_reset=p.detach_reset, discretization=p.discretization)
    if type(layer) is CubaLIF:
        return "cubalif", dict(common, tau=float(p.tau), tau_syn=float(p.tau_syn))
    if type(layer) in (LIF, IF):
        if type(layer) is IF:
            if p.decay_input:
                raise NIRCheckpointError("IF with decay_input=True: an IF has no leak to share its input with")
            return "if", dict(common, v_rest=float(p.v_rest))
        return "lif", dict(common, tau=float(p.tau), decay_input=bool(p.decay_input), v_rest=float(p.v_rest))
    raise NIRCheckpointError(f"{type(layer).__name__} is not a configurable hidden neuron")


def _is_neuron(m) -> bool:
    from spike.neurons.cuba import CubaLIF
    from spike.neurons.modules import LIF

    return isinstance(m, (LIF, CubaLIF))


def model_config_of(model, base):
    """The :class:`~spike.core.config.ModelConfig` (``base`` for what a graph does not state) of ``model``.

    Raises:
        NIRCheckpointError: a layout or neuron ``[model]`` cannot state, naming the layer.
    """
    from spike.neurons.modules import LI
    from spike.synapses.layers import AvgPool2d, Conv2d, Flatten, Linear

    layers = list(model)
    where = lambda i: f"layer {i} ({type(layers[i]).__name__})"  # noqa: E731
    i, hidden, neurons = 0, [], []
    kind = "conv" if any(isinstance(m, Conv2d) for m in layers) else "mlp"
    if kind == "mlp":
        while i < len(layers) and isinstance(layers[i], Flatten):
            i += 1
        while i + 1 < len(layers) and isinstance(layers[i], Linear) and _is_neuron(layers[i + 1]) \
                and type(layers[i + 1]) is not LI and i + 2 < len(layers) and isinstance(layers[i + 2], Linear):
            hidden.append(layers[i].out_features)
            neurons.append(i + 1)
            i += 2
    else:
        while i + 2 < len(layers) and isinstance(layers[i], Conv2d):
            c, pool = layers[i], layers[i + 2]
            ok = (c.kernel_size == (3, 3) and c.padding == (1, 1) and c.stride == (1, 1) and c.dilation == (1, 1)
                  and c.groups == 1 and c.bias is not None and _is_neuron(layers[i + 1])
                  and isinstance(pool, AvgPool2d) and pool.kernel_size in (2, (2, 2)) and pool.stride in (2, (2, 2))
                  and pool.padding in (0, (0, 0)) and pool.divisor_override is None)
            if not ok:
                raise NIRCheckpointError(f"{where(i)}: kind='conv' needs Conv2d(3x3, padding 1, bias) -> neuron -> "
                                         f"AvgPool2d(2) blocks")
            hidden.append(c.out_channels)
            neurons.append(i + 1)
            i += 3
        if i >= len(layers) or not isinstance(layers[i], Flatten):
            raise NIRCheckpointError(f"{where(min(i, len(layers) - 1))}: kind='conv' needs Flatten after the blocks")
        i += 1
    if i >= len(layers) or not isinstance(layers[i], Linear):
        raise NIRCheckpointError(f"{where(min(i, len(layers) - 1))}: expected the Linear head of a "
                                 f"kind={kind!r} model")
    i += 1
    readout, rest = "linear", layers[i:]
    fields: dict = {}
    if len(rest) > 1:
        raise NIRCheckpointError(f"{where(i + 1)}: nothing may follow the readout")
    for k in neurons:
        name, f = _neuron_fields(layers[k])
        f["neuron"] = name
        if fields and f != fields:
            raise NIRCheckpointError(f"{where(k)}: its parameters differ from layer {neurons[0]}'s; [model] has "
                                     f"one neuron setting for all hidden layers")
        fields = f
    if rest and type(rest[0]) is LI:
        p = rest[0].params()
        if math.isinf(p.tau):
            raise NIRCheckpointError(f"{where(i)}: the LI readout needs a finite tau")
        if fields and (p.dt != fields["dt"] or p.discretization != fields["discretization"]):
            raise NIRCheckpointError(f"{where(i)}: the LI readout's dt/discretisation differ from the hidden neurons'")
        hid = (bool(fields.get("decay_input", False)), float(fields.get("v_rest", 0.0)))
        if fields and (bool(p.decay_input), float(p.v_rest)) != hid:
            raise NIRCheckpointError(f"{where(i)}: the LI readout's decay_input={bool(p.decay_input)}, "
                                     f"v_rest={float(p.v_rest)} differ from the hidden neurons' {hid[0]}, {hid[1]} "
                                     f"([model] states them once for both)")
        readout = "li"
        fields.setdefault("dt", p.dt)
        fields.setdefault("discretization", p.discretization)
        fields.setdefault("decay_input", bool(p.decay_input))
        fields.setdefault("v_rest", float(p.v_rest))
        fields["readout_tau"] = float(p.tau)
    elif rest:
        name, f = _neuron_fields(rest[0])
        f["neuron"] = name
        if fields and f != fields:
            raise NIRCheckpointError(f"{where(i)}: a spiking readout must be the hidden neuron with its parameters")
        fields, readout = f, "spikes"
    return dataclasses.replace(base, kind=kind, hidden=tuple(hidden), readout=readout, batchnorm=False,
                               dropout=0.0, learn_tau=False, recurrent=False, **fields)


def _copy_into(built, model) -> None:
    """Copy the imported weights into the rebuilt model, layer by layer (a missing bias is zero)."""
    import torch

    src = [m for m in model if hasattr(m, "weight")]
    dst = [m for m in built if hasattr(m, "weight")]
    with torch.no_grad():
        for a, b in zip(src, dst):
            if a.weight.shape != b.weight.shape:
                raise NIRCheckpointError(f"{type(a).__name__} weight {tuple(a.weight.shape)} does not fit the "
                                         f"rebuilt {tuple(b.weight.shape)}")
            b.weight.copy_(a.weight)
            if b.bias is not None:
                b.bias.copy_(a.bias if a.bias is not None else torch.zeros_like(b.bias))


def import_checkpoint(graph, dt: float, cfg, input_shape: tuple[int, ...] | None = None,
                      discretization: str | None = None):
    """``(payload, model)``: a checkpoint payload for ``graph`` with ``cfg``'s ``[data]``, and the model.

    Raises:
        NIRCheckpointError: the graph is not a ``[model]`` layout, or does not fit the data set.
    """
    import torch

    from spike.core.config import config_from_dict, config_to_dict
    from spike.data.builders import build_data
    from spike.models import build_model
    from spike.nir import from_nir
    from spike.synapses import Flatten, Linear, Sequential

    model = from_nir(graph, dt, discretization)
    data = build_data(cfg.data, cfg.run.seed)
    shape = tuple(input_shape) if input_shape is not None else tuple(data.input_shape)
    if len(shape) > 1 and isinstance(model[0], Linear) and model[0].in_features == math.prod(shape):
        # a graph of flat inputs (Norse's exporter has no Flatten): the data's [C, H, W] flattened in C order
        model = Sequential(Flatten(), *model)
    mcfg = model_config_of(model, cfg.model)
    cfg = config_from_dict(config_to_dict(dataclasses.replace(cfg, model=mcfg)), source="the imported NIR graph")
    mcfg = cfg.model
    if shape != tuple(data.input_shape):
        raise NIRCheckpointError(f"--input-shape {shape} is not the data set's input shape {tuple(data.input_shape)}")
    built = build_model(mcfg, shape, data.n_classes).eval()
    _copy_into(built, model)
    x = (torch.rand(8, 2, *shape, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    try:
        with torch.no_grad():
            want, got = model(x).out, built(x).out
    except (RuntimeError, ValueError) as e:
        raise NIRCheckpointError(f"the graph does not run on the data set's input {shape} with "
                                 f"{data.n_classes} classes: {e}") from None
    if want.shape != got.shape or not torch.equal(want, got):
        raise NIRCheckpointError(f"the model rebuilt from [model] (kind={mcfg.kind!r}) does not reproduce the "
                                 f"graph's outputs; it cannot be stored as a spike checkpoint")
    meta = {"name": data.name, "input_shape": list(data.input_shape), "n_classes": data.n_classes,
            "n_time_bins": data.n_time_bins, "dt_us": data.dt_us}
    payload = {"epoch": 0, "model": built.state_dict(), "config": config_to_dict(cfg), "data": meta,
               "history": [], "nir": {"dt": float(dt)}}
    return payload, built


def cmd_import(args) -> dict:
    import nir

    from spike.core.config import load_config
    from spike.train.trainer import save_checkpoint

    src, out = Path(args.model), Path(args.out)
    if not src.is_file():
        raise ValueError(f"{src}: no such NIR file")
    if out.suffix != ".pt":
        raise ValueError(f"{out}: the output must end in .pt")
    try:
        try:
            graph = nir.read(str(src))
        except ValueError as e:  # NIR's type check refuses batch-first Input types (Norse, snnTorch write
            if "type" not in str(e).lower():  # them); from_nir detects those and checks every shape itself
                raise
            graph = nir.read(str(src), type_check=False)
    except Exception as e:  # h5py / NIR format errors
        raise ValueError(f"{src}: cannot read NIR graph: {type(e).__name__}: {e}") from None
    dt = args.dt if args.dt is not None else (graph.metadata or {}).get("spike.dt")
    if dt is None:
        raise ValueError(f"{src}: the graph has no spike.dt metadata; pass --dt (the step in the graph's time unit)")
    cfg = load_config(args.config)
    shape = tuple(args.input_shape) if args.input_shape else None
    payload, model = import_checkpoint(graph, float(dt), cfg, shape, getattr(args, "discretization", None))
    payload["nir"]["source"] = str(src)
    save_checkpoint(out, payload)
    m = payload["config"]["model"]
    return {"checkpoint": str(out), "nir": str(src), "dt": float(dt), "kind": m["kind"], "hidden": list(m["hidden"]),
            "neuron": m["neuron"], "readout": m["readout"], "data": payload["data"]["name"],
            "layers": [type(layer).__name__ for layer in model]}
