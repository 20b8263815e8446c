"""Deep SNN architectures over ``[T, B, C, H, W]``: residual (SEW / spiking / Max-ResNet) and transformer
(Spikformer / Max-Former) networks, built from spike's layers and neurons and driven by
:class:`~spike.synapses.Sequential` (explicit state, any neuron kind, any backend).

Every network returns ``SeqOutput(out [T, B, n_classes], state, records)``; the head is linear, so
train it with the ``mean_membrane`` loss (the papers' mean of the logits over time).

Example:
    >>> net = build_arch("sew_resnet", (2, 32, 32), 10, depth=18, width=8, connect="iand")
    >>> net(torch.rand(4, 3, 2, 32, 32)).out.shape
    torch.Size([4, 3, 10])
"""

from __future__ import annotations

from typing import Any

from torch import nn

from spike.archs.blocks import CONNECTS, Residual, SpatialMean, Threaded, connect, count_params, neuron_factory
from spike.archs.resnet import max_resnet, resnet
from spike.archs.transformer import MIXERS, SpikingSelfAttention, max_former, spikformer
from spike.neurons import LI
from spike.synapses import Sequential

__all__ = ["KINDS", "NEURON_OPTIONS", "OPTIONS", "build_arch", "neuron_factory", "Residual", "Threaded",
           "SpatialMean", "SpikingSelfAttention", "connect", "count_params", "CONNECTS", "MIXERS"]

#: options every kind takes: the neuron and the readout.
NEURON_OPTIONS = ("neuron", "tau", "v_th", "surrogate", "detach_reset", "backend", "spikingjelly",
                  "readout", "readout_tau")

#: kind -> its own options (see the builders for their meaning and defaults).
OPTIONS: dict[str, tuple[str, ...]] = {
    "sew_resnet": ("depth", "connect", "width", "stem", "layers"),
    "spiking_resnet": ("depth", "width", "stem", "layers"),
    "max_resnet": ("width", "layers", "stem"),
    "spikformer": ("dim", "depth", "heads", "mlp_ratio", "pools", "attn_v_th"),
    "max_former": ("dim", "depths", "mixers", "heads", "mlp_ratio", "stem", "attn_v_th"),
}
KINDS = tuple(OPTIONS)

_TUPLES = ("layers", "depths", "mixers")


def build_arch(kind: str, input_shape: tuple, n_classes: int, **options: Any) -> nn.Module:
    """Build architecture ``kind`` for inputs ``[T, B, *input_shape]`` and ``n_classes`` outputs.

    Args:
        kind: ``"sew_resnet"``, ``"spiking_resnet"``, ``"max_resnet"``, ``"spikformer"`` or ``"max_former"``.
        input_shape: ``(C, H, W)`` of one time step.
        n_classes: number of outputs.
        **options: the neuron (``neuron="lif" | "if" | factory``, ``tau=2.0``, ``v_th=1.0``,
            ``surrogate``, ``detach_reset=True``, ``backend="auto"``, ``spikingjelly=True``; see
            :func:`~spike.archs.blocks.neuron_factory`), the readout (``readout="linear"`` or ``"li"``:
            a leaky integrator after the head, ``readout_tau=5.0``) and the kind's own options
            (:data:`OPTIONS`; e.g. ``depth``, ``connect``, ``width``, ``dim``, ``depths``).

    Returns:
        a :class:`~spike.synapses.Sequential`.

    Raises:
        ValueError: unknown kind, unknown option (named) or an invalid value.
    """
    if kind not in OPTIONS:
        raise ValueError(f"unknown architecture kind {kind!r}; choose one of {list(KINDS)}")
    if not isinstance(n_classes, int) or n_classes < 1:
        raise ValueError(f"{kind}: n_classes must be a positive int, got {n_classes!r}")
    unknown = sorted(set(options) - set(OPTIONS[kind]) - set(NEURON_OPTIONS))
    if unknown:
        raise ValueError(f"{kind}: unknown option(s) {unknown}; {kind} takes {sorted(OPTIONS[kind] + NEURON_OPTIONS)}")
    input_shape = tuple(int(s) for s in input_shape)
    neuron_opts = {k: options.pop(k) for k in NEURON_OPTIONS[:7] if k in options}
    readout = options.pop("readout", "linear")
    readout_tau = float(options.pop("readout_tau", 5.0))
    if readout not in ("linear", "li"):
        raise ValueError(f"{kind}: readout must be 'linear' or 'li', got {readout!r}")
    for key in _TUPLES:
        if key in options and options[key] is not None:
            options[key] = tuple(options[key])
    if callable(neuron_opts.get("neuron")) and len(neuron_opts) > 1:
        raise ValueError(f"{kind}: neuron is a factory, so {sorted(set(neuron_opts) - {'neuron'})} would be "
                         "ignored; set those options inside the factory")
    neuron = neuron_factory(**neuron_opts)
    if kind == "sew_resnet":
        net = resnet(input_shape, n_classes, neuron=neuron, block="sew", **options)
    elif kind == "spiking_resnet":
        net = resnet(input_shape, n_classes, neuron=neuron, block="spiking", **options)
    elif kind == "max_resnet":
        net = max_resnet(input_shape, n_classes, neuron=neuron, **options)
    elif kind == "spikformer":
        net = spikformer(input_shape, n_classes, neuron=neuron, **options)
    else:
        net = max_former(input_shape, n_classes, neuron=neuron, **options)
    if readout == "li":
        backend = neuron_opts.get("backend", "auto")
        net = Sequential(*net, LI(tau=readout_tau, backend=backend))
    return net
