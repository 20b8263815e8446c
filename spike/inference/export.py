"""Export a trained :class:`spike.synapses.Sequential` to a torch-free :class:`~spike.events.network.EventNetwork`.

The exported network runs event by event (:func:`spike.events.network.run`) with the semantics of
the model in ``eval()`` mode: dropout is the identity and :class:`~spike.synapses.delays.DelayedLinear`
uses its rounded integer delays (:meth:`~spike.synapses.delays.DelayedLinear.delays`).

Supported layers: ``Flatten``, ``Linear`` (and ``nn.Linear``), ``DelayedLinear``, ``Conv2d`` (zero
padding, any stride/dilation/groups), ``AvgPool2d`` / ``MaxPool2d`` (no padding, floor mode),
``LIF`` / ``IF`` / ``LI`` (any reset, reset timing, ``decay_input``, learnable per-neuron ``tau``),
``CubaLIF`` (any reset and reset timing, ``exp`` / ``euler``, learnable per-neuron ``tau``/``tau_syn``),
``AdLIF`` (SE-adLIF: any reset, learnable per-neuron ``tau``/``tau_w`` and ``a``/``b``), a final
``LI -> LI`` pair (NIR ``CubaLI`` as :func:`spike.nir.from_nir` imports it: first ``v_rest = 0`` and
unit gains; it runs as one CUBA-LI readout named after the second ``LI``),
``SharedDropout`` / ``nn.Dropout`` / ``nn.Identity`` (skipped) and ``TimePad``. Recurrent weights
(``recurrent=True``) have no event-driven form. Anything else raises :class:`ExportError` naming the
layer and the reason.

Example:
    >>> net = export_event_network(model, input_shape=(2, 34, 34))
    >>> res = run(net, [bin_events(ev, (34, 34, 2), dt=1000)], n_steps=100)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from spike.events.network import AdLIFNeurons, Conv, CubaNeurons, Dense, EventNetwork, Neurons, Pool, TimePad
from spike.neurons import adlif as AD
from spike.neurons import cuba as CU
from spike.neurons import lif as F
from spike.neurons.modules import LI, LIF
from spike.synapses import AvgPool2d, Conv2d, Flatten, Linear, MaxPool2d, SharedDropout

__all__ = ["ExportError", "export_event_network", "model_fingerprint", "save_event_network", "load_event_network",
           "NPZ_FORMAT"]

NPZ_FORMAT = "spike-event-network-v1"


class ExportError(ValueError):
    """A layer cannot be expressed on the event path (the message names the layer and why)."""


def _np(t: Tensor, dtype) -> np.ndarray:
    return t.detach().cpu().to(torch.float64 if dtype == np.float64 else torch.float32).numpy().copy()


def _coef(c, shape: tuple[int, ...], dtype) -> np.ndarray | float:
    """A discretised coefficient (python float or tensor) as numpy, flattened over the features."""
    if isinstance(c, Tensor):
        return np.ascontiguousarray(np.broadcast_to(_np(c, dtype), shape).reshape(-1))  # [*shape] -> [N]
    return float(c)


def _bad(name: str, layer: nn.Module, why: str) -> ExportError:
    return ExportError(f"layer {name!r} ({type(layer).__name__}) cannot be exported to the event path: {why}")


def export_event_network(model: nn.Module, input_shape: tuple[int, ...] | int, *,
                         dtype: type | np.dtype | None = None) -> EventNetwork:
    """Convert ``model`` (a ``Sequential`` of supported layers) to an :class:`EventNetwork`.

    Args:
        model: the trained network (its ``eval()`` semantics are exported; the model is not modified).
        input_shape: one input step's shape, e.g. ``(2, 34, 34)`` or ``2312``.
        dtype: ``np.float32`` / ``np.float64``; default: the dtype of the model's parameters.

    Returns:
        The event network; stage names are the module names (the keys of ``Sequential``'s records).

    Raises:
        ExportError: an unsupported layer or configuration, naming the layer and the reason.
    """
    shape = _shape(input_shape)
    if dtype is None:
        p = next(iter(model.parameters()), None)
        dtype = np.float64 if (p is not None and p.dtype == torch.float64) else np.float32
    dtype = np.dtype(dtype)
    if isinstance(model, nn.Sequential):
        children = list(model.named_children())
    else:
        children = [(type(model).__name__, model)]
    layers, modules = [], []
    for name, layer in children:
        out, shape = _export_layer(name, layer, shape, dtype)
        if out is not None:
            layers.append(out)
            modules.append(layer)
    if not layers:
        raise ExportError("the model has no exportable layer")
    if len(layers) >= 2 and all(isinstance(m, LI) for m in modules[-2:]):
        layers[-2:] = [_fuse_cuba_li(modules[-2], layers[-2], layers[-1])]
    try:
        return EventNetwork(_shape(input_shape), tuple(layers), dtype)
    except ValueError as e:
        raise ExportError(f"the exported layers do not form an event network: {e}") from e


def _shape(input_shape) -> tuple[int, ...]:
    return (int(input_shape),) if isinstance(input_shape, (int, np.integer)) else tuple(int(s) for s in input_shape)


def _export_layer(name: str, layer: nn.Module, shape: tuple[int, ...], dtype):
    """One module -> (event layer or None, output shape)."""
    from spike.synapses.delays import DelayedLinear, TimePad as TorchTimePad

    n = math.prod(shape)
    if isinstance(layer, (SharedDropout, nn.Dropout, nn.Identity)):
        return None, shape
    if isinstance(layer, Flatten) or type(layer) is nn.Flatten:
        if isinstance(layer, nn.Flatten) and (layer.start_dim, layer.end_dim) != (2, -1):
            raise _bad(name, layer, "on [T, B, ...] only nn.Flatten(start_dim=2) flattens the features")
        return None, (n,)
    if isinstance(layer, TorchTimePad):
        return TimePad(int(layer.n), name), shape
    if isinstance(layer, DelayedLinear):
        if shape != (layer.in_features,):
            raise _bad(name, layer, f"expects {layer.in_features} features, gets shape {shape}")
        delay = layer.delays().cpu().numpy().astype(np.int64)  # [C_out, C_in] rounded, as in eval()
        bias = _np(layer.bias, dtype) if layer.bias is not None else None
        return Dense(_np(layer.weight, dtype), bias, delay, name), (layer.out_features,)
    if isinstance(layer, (Linear, nn.Linear)):
        if shape != (layer.in_features,):
            raise _bad(name, layer, f"expects {layer.in_features} features, gets shape {shape} (add a Flatten)")
        bias = _np(layer.bias, dtype) if layer.bias is not None else None
        return Dense(_np(layer.weight, dtype), bias, None, name), (layer.out_features,)
    if isinstance(layer, (Conv2d, nn.Conv2d)):
        if len(shape) != 3:
            raise _bad(name, layer, f"needs a [C, H, W] input step, gets shape {shape}")
        if layer.padding_mode != "zeros":
            raise _bad(name, layer, f"padding_mode={layer.padding_mode!r} (only 'zeros')")
        kh, kw = layer.kernel_size
        dh, dw = layer.dilation
        if isinstance(layer.padding, str):
            if layer.padding == "valid":
                pad = (0, 0, 0, 0)
            else:  # 'same' (stride 1): torch puts the extra row/column at the bottom/right
                th, tw = dh * (kh - 1), dw * (kw - 1)
                pad = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        else:
            pad = (layer.padding[0], layer.padding[0], layer.padding[1], layer.padding[1])
        bias = _np(layer.bias, dtype) if layer.bias is not None else None
        conv = Conv(_np(layer.weight, dtype), shape, bias, tuple(layer.stride), pad, (dh, dw), layer.groups, name)
        return conv, conv.out_shape
    if isinstance(layer, (AvgPool2d, MaxPool2d, nn.AvgPool2d, nn.MaxPool2d)):
        if len(shape) != 3:
            raise _bad(name, layer, f"needs a [C, H, W] input step, gets shape {shape}")
        pad = layer.padding if isinstance(layer.padding, tuple) else (layer.padding,) * 2
        if any(pad) or layer.ceil_mode:
            raise _bad(name, layer, "padding and ceil_mode are not supported")
        kind = "max" if isinstance(layer, nn.MaxPool2d) else "avg"
        if kind == "max":
            dil = layer.dilation if isinstance(layer.dilation, tuple) else (layer.dilation,) * 2
            if dil != (1, 1) or layer.return_indices:
                raise _bad(name, layer, "dilation and return_indices are not supported")
            div = None
        else:
            div = layer.divisor_override
        stride = layer.stride if layer.stride is not None else layer.kernel_size
        pool = Pool(kind, shape, layer.kernel_size, stride, div, name)
        return pool, pool.out_shape
    if isinstance(layer, LIF):
        return _export_neurons(name, layer, shape, dtype), shape
    if isinstance(layer, CU.CubaLIF):
        return _export_cuba(name, layer, shape, dtype), shape
    if isinstance(layer, AD.AdLIF):
        return _export_adlif(name, layer, shape, dtype), shape
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
        raise _bad(name, layer, "batch norm adds a per-neuron affine map after the synaptic sum; fold it into "
                                "the previous layer's weights and bias first (the result is then no longer "
                                "bit-identical to the unfolded model)")
    raise _bad(name, layer, "no event-driven implementation (supported: Flatten, Linear, DelayedLinear, Conv2d, "
                            "AvgPool2d, MaxPool2d, LIF, IF, LI, CubaLIF, AdLIF, Dropout, TimePad)")


def _export_neurons(name: str, layer: LIF, shape: tuple[int, ...], dtype) -> Neurons:
    p = F.discretize(layer.params())
    if p.w_rec is not None:
        raise _bad(name, layer, "recurrent weights (recurrent=True) are not supported")
    if layer.shape is not None and tuple(layer.shape) != tuple(shape):
        raise _bad(name, layer, f"was built for shape {layer.shape} but receives {shape}")
    if p.v_rest >= p.v_th and p.reset != "none" and not isinstance(layer, LI):
        raise _bad(name, layer, f"v_rest={p.v_rest} >= v_th={p.v_th}: neurons fire without input, "
                                f"nothing is event-driven")
    beta = _coef(p.beta, shape, dtype)
    gain = _coef(p.gain, shape, dtype)
    return Neurons(tuple(shape), beta, gain, p.v_th, p.v_reset, p.v_rest, p.reset, bool(p.deferred),
                   "membrane" if isinstance(layer, LI) else "spikes", name)


def _check_two_variable(name: str, layer: nn.Module, p, shape: tuple[int, ...]) -> None:
    if p.w_rec is not None:
        raise _bad(name, layer, "recurrent weights (recurrent=True) feed last step's spikes back into the "
                                "neurons; the event path has no recurrent synapses")
    if layer.shape is not None and tuple(layer.shape) != tuple(shape):
        raise _bad(name, layer, f"was built for shape {layer.shape} but receives {shape}")


def _export_cuba(name: str, layer: nn.Module, shape: tuple[int, ...], dtype) -> CubaNeurons:
    """:class:`~spike.neurons.cuba.CubaLIF` -> :class:`CubaNeurons` (the discrete ``alpha``, ``beta``)."""
    p = CU.discretize(layer.params())
    _check_two_variable(name, layer, p, shape)
    return CubaNeurons(tuple(shape), _coef(p.alpha, shape, dtype), _coef(p.beta, shape, dtype), p.v_th, p.v_reset,
                       0.0, p.reset, bool(p.deferred), "spikes", name)


def _export_adlif(name: str, layer: nn.Module, shape: tuple[int, ...], dtype) -> AdLIFNeurons:
    """:class:`~spike.neurons.adlif.AdLIF` -> :class:`AdLIFNeurons`; ``qa = q a``, ``qb = q b`` as the
    reference computes them (:func:`spike.neurons.adlif.discretize`)."""
    p = AD.discretize(layer.params())
    _check_two_variable(name, layer, p, shape)
    return AdLIFNeurons(tuple(shape), _coef(p.alpha, shape, dtype), _coef(p.beta, shape, dtype),
                        _coef(p.qa, shape, dtype), _coef(p.qb, shape, dtype), p.v_th, p.v_reset, p.reset, name)


def _fuse_cuba_li(first: nn.Module, syn: Neurons, mem: Neurons) -> CubaNeurons:
    r"""``LI -> LI`` (NIR ``CubaLI`` as imported) -> one CUBA-LI readout: with ``v_rest = 0`` and unit
    gains the pair's update :math:`i_t = \beta_1 i_{t-1} + x_t`, :math:`v_t = L(v_{t-1}) + i_t` is the CUBA
    update, operation for operation."""
    why = []
    if syn.v_rest != 0.0:
        why.append(f"v_rest={syn.v_rest} (the synaptic current decays to 0)")
    for lay in (syn, mem):
        if np.any(np.asarray(lay.gain) != 1):
            why.append(f"{lay.name!r} has a gain != 1 (decay_input=True)")
    if why:
        raise _bad(syn.name, first, "an LI feeding an LI runs on the event path only as a CUBA-LI readout, "
                                    "which needs " + "; ".join(why) + " to be absent")
    return CubaNeurons(mem.shape, syn.beta, mem.beta, mem.v_th, mem.v_reset, mem.v_rest, "none", False, "membrane",
                       mem.name)


# -- fingerprint and the .npz file -------------------------------------------------------------------
def model_fingerprint(model: nn.Module, n_steps: int) -> str:
    """``"sha256:<hex>"`` of the model's state (names, shapes, values) and the number of input steps.

    A calibrated :class:`~spike.inference.anytime.Cutoff` stores it; an exported ``.npz`` stores the
    fingerprint of the model it came from, so a cutoff is matched to either.
    """
    h = hashlib.sha256(f"n_steps={int(n_steps)}".encode())
    for k, v in sorted(model.state_dict().items()):
        a = v.detach().cpu().contiguous()
        h.update(f"|{k}:{tuple(a.shape)}:{a.dtype}|".encode())
        h.update(a.numpy().tobytes() if a.dtype != torch.bfloat16 else a.float().numpy().tobytes())
    return "sha256:" + h.hexdigest()


_KINDS = {"Dense": Dense, "Conv": Conv, "Pool": Pool, "Neurons": Neurons, "CubaNeurons": CubaNeurons,
          "AdLIFNeurons": AdLIFNeurons, "TimePad": TimePad}


def save_event_network(path: str | Path, net: EventNetwork, meta: dict | None = None) -> Path:
    """Write ``net`` as an ``.npz`` (no pickle), written atomically.

    Layout: ``meta`` -- a JSON string: ``format`` (:data:`NPZ_FORMAT`), ``input_shape``, ``dtype``,
    ``layers`` (per layer: ``kind`` -- Dense / Conv / Pool / Neurons / CubaNeurons / AdLIFNeurons /
    TimePad --, ``name``, and its
    scalar fields) plus the caller's ``meta`` (:mod:`spike.inference.deploy` adds ``binning``:
    ``dataset``, ``n_time_bins``, ``sensor_size`` (W, H, P), ``input_shape``, ``duration_us``,
    ``size_hw``, ``dt_us``; ``loss``, ``n_classes``, ``fingerprint``); ``L{i}.{field}`` -- every array
    field of layer ``i`` (``weight``, ``bias``, ``delay``, ``beta``, ``gain``, ``alpha``, ``qa``, ``qb``;
    an absent ``None`` field has no entry). Files written before the two-variable kinds load unchanged
    (the format is the same; an older reader rejects the new kinds by name).
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for i, layer in enumerate(net.layers):
        entry = {"kind": type(layer).__name__}
        for f in dataclasses.fields(layer):
            v = getattr(layer, f.name)
            if isinstance(v, np.ndarray):
                arrays[f"L{i}.{f.name}"] = v
            elif v is not None:
                entry[f.name] = list(v) if isinstance(v, tuple) else (v.item() if isinstance(v, np.generic) else v)
        layers.append(entry)
    doc = {**(meta or {}), "format": NPZ_FORMAT, "input_shape": list(net.input_shape),
           "dtype": np.dtype(net.dtype).name, "layers": layers}
    tmp = path.with_name(path.name + ".tmp.npz")
    try:
        np.savez(tmp, meta=np.array(json.dumps(doc)), **arrays)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_event_network(path: str | Path) -> tuple[EventNetwork, dict]:
    """Read a file written by :func:`save_event_network`: ``(network, meta)``.

    Raises:
        ExportError: not such a file, or a broken layer (naming the file and the array or layer).
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            doc = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except (OSError, ValueError, KeyError) as e:
        raise ExportError(f"{path}: not an event-network .npz: {type(e).__name__}: {e}") from None
    if doc.get("format") != NPZ_FORMAT:
        raise ExportError(f"{path}: format {doc.get('format')!r} is not {NPZ_FORMAT!r}")
    layers = []
    for i, entry in enumerate(doc["layers"]):
        kind = entry.get("kind")
        if kind not in _KINDS:
            raise ExportError(f"{path}: layer {i} has unknown kind {kind!r}; expected one of {sorted(_KINDS)}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in entry.items() if k != "kind"}
        kw.update({k.split(".", 1)[1]: a for k, a in arrays.items() if k.startswith(f"L{i}.")})
        try:
            layers.append(_KINDS[kind](**kw))
        except (TypeError, ValueError) as e:
            raise ExportError(f"{path}: layer {i} ({kind} {entry.get('name')!r}): {e}") from None
    try:
        net = EventNetwork(tuple(doc["input_shape"]), tuple(layers), np.dtype(doc["dtype"]))
    except ValueError as e:
        raise ExportError(f"{path}: the layers do not form an event network: {e}") from None
    return net, doc
