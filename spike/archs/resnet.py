"""Deep residual SNNs over ``[T, B, C, H, W]``: spiking ResNet, SEW-ResNet and Max-ResNet.

* ``spiking_resnet``: the plain spiking ResNet baseline, ``SN(BN(conv(SN(BN(conv x)))) + shortcut(x))``
  (the neuron after the addition; Zheng et al. 2021 and the baseline of Fang et al. 2021).
* ``sew_resnet``: spike-element-wise ResNet (Fang et al. 2021, "Deep Residual Learning in Spiking Neural
  Networks", NeurIPS, arXiv:2102.04159): ``g(SN(BN(conv(SN(BN(conv x))))), S)`` with ``g`` = ADD / IAND / AND
  and ``S`` the input spikes (or ``SN(BN(conv1x1 x))`` when the shape changes).
* ``max_resnet``: Max-ResNet-18 (Fang et al. 2025, "Spiking Neural Networks Need High Frequency
  Information", NeurIPS, arXiv:2505.18608): membrane shortcuts (neuron *before* each conv,
  ``x + BN(conv(SN(BN(conv(SN x)))))``), widths 128/256/512 with 3/3/2 blocks, and the stride-2 blocks
  down-sample with a 3x3 max-pool after the first conv instead of a strided conv.

The stem follows the input size: ``"imagenet"`` (7x7/2 conv + 3x3/2 max-pool) for inputs of 64 pixels
or more, ``"cifar"`` (3x3/1 conv) below; pass ``stem=`` to choose.
"""

from __future__ import annotations

from torch import nn

from spike.archs.blocks import CONNECTS, NeuronFactory, Residual, SpatialMean, conv_bn
from spike.synapses import Linear, MaxPool2d, Sequential

__all__ = ["RESNET_LAYERS", "STEMS", "resnet", "max_resnet"]

#: blocks per stage of the basic-block ResNets (He et al. 2016).
RESNET_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
STEMS = ("auto", "imagenet", "cifar")


def _stem_kind(stem: str, input_shape: tuple[int, ...]) -> str:
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
    if stem == "auto":
        return "imagenet" if min(input_shape[1:]) >= 64 else "cifar"
    return stem


def _check_image(kind: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"{kind} needs image inputs [C, H, W], got input_shape={tuple(input_shape)}")
    return tuple(int(s) for s in input_shape)  # type: ignore[return-value]


def _basic_block(kind: str, c_in: int, c_out: int, stride: int, neuron: NeuronFactory, connect: str) -> Residual:
    """One basic block (two 3x3 convs) of the ``spiking`` or ``sew`` ResNet."""
    project = stride != 1 or c_in != c_out
    if kind == "sew":
        main = Sequential(*conv_bn(c_in, c_out, 3, stride), neuron(), *conv_bn(c_out, c_out, 3), neuron())
        short = Sequential(*conv_bn(c_in, c_out, 1, stride), neuron()) if project else None
        return Residual(main, short, connect=connect)
    main = Sequential(*conv_bn(c_in, c_out, 3, stride), neuron(), *conv_bn(c_out, c_out, 3))
    short = Sequential(*conv_bn(c_in, c_out, 1, stride)) if project else None
    return Residual(main, short, connect="add", post=neuron())


def resnet(input_shape: tuple[int, ...], n_classes: int, *, neuron: NeuronFactory, block: str = "sew",
           depth: int = 18, connect: str = "add", width: int = 64, stem: str = "auto",
           layers: tuple[int, ...] | None = None) -> Sequential:
    """A spiking (``block="spiking"``) or SEW (``block="sew"``) basic-block ResNet.

    Args:
        input_shape: ``(C, H, W)`` of one time step.
        n_classes: outputs of the linear head (``[T, B, n_classes]``; train with ``mean_membrane``).
        neuron: neuron factory (:func:`~spike.archs.blocks.neuron_factory`).
        block: ``"sew"`` or ``"spiking"``.
        depth: 18 or 34 (ignored when ``layers`` is given).
        connect: SEW function ``"add"`` | ``"iand"`` | ``"and"`` (``block="sew"`` only).
        width: channels of the first stage (64 in the papers); stages use ``width * (1, 2, 4, 8)``.
        stem: ``"auto"`` | ``"imagenet"`` | ``"cifar"``.
        layers: blocks per stage, overriding ``depth``.
    """
    c, _, _ = _check_image(f"{block}_resnet", input_shape)
    if block not in ("sew", "spiking"):
        raise ValueError(f"block must be 'sew' or 'spiking', got {block!r}")
    if connect not in CONNECTS:
        raise ValueError(f"connect must be one of {CONNECTS}, got {connect!r}")
    if block == "spiking" and connect != "add":
        raise ValueError(f"the spiking ResNet adds its shortcut; connect={connect!r} is for sew_resnet")
    if layers is None:
        if depth not in RESNET_LAYERS:
            raise ValueError(f"depth must be one of {sorted(RESNET_LAYERS)} (or give layers=...), got {depth!r}")
        layers = RESNET_LAYERS[depth]
    if width < 1 or not layers or min(layers) < 1:
        raise ValueError(f"width must be >= 1 and layers non-empty positive, got width={width}, layers={layers}")
    mods: list[nn.Module] = []
    if _stem_kind(stem, input_shape) == "imagenet":
        mods += [*conv_bn(c, width, 7, 2), neuron(), MaxPool2d(3, stride=2, padding=1)]
    else:
        mods += [*conv_bn(c, width, 3, 1), neuron()]
    c_in = width
    for i, n in enumerate(layers):
        c_out = width * 2 ** i
        for j in range(n):
            mods.append(_basic_block(block, c_in, c_out, 2 if (i > 0 and j == 0) else 1, neuron, connect))
            c_in = c_out
    mods += [SpatialMean(), Linear(c_in, n_classes)]
    return Sequential(*mods)


class _MaxBlock(Residual):
    """Membrane-shortcut block of Max-ResNet: ``x + BN(conv(SN(pool(BN(conv(SN x))))))``."""

    def __init__(self, c_in: int, c_out: int, downsample: bool, neuron: NeuronFactory):
        pool = [MaxPool2d(3, stride=2, padding=1)] if downsample else []
        main = Sequential(neuron(), *conv_bn(c_in, c_out, 3), *pool, neuron(), *conv_bn(c_out, c_out, 3))
        short = None
        if downsample or c_in != c_out:
            short = Sequential(*conv_bn(c_in, c_out, 1, 2 if downsample else 1))
        super().__init__(main, short, connect="add")


def max_resnet(input_shape: tuple[int, ...], n_classes: int, *, neuron: NeuronFactory, width: int = 64,
               layers: tuple[int, ...] = (3, 3, 2), stem: str = "cifar") -> Sequential:
    """Max-ResNet-18 (CIFAR layout): 3x3 stem conv + BN to ``width`` channels, stages of ``width * 2``,
    ``width * 4``, ``width * 8`` channels (``layers`` blocks each; stages after the first halve the
    resolution with a max-pool), then neuron, global average and a linear head.

    ``stem="cifar"`` (default, the paper's) keeps the full resolution; ``"imagenet"`` is a 7x7/2 conv + BN
    and a 3x3/2 max-pool (``H -> H/4``, same as the ResNets' ImageNet stem; not a published Max-ResNet);
    ``"auto"`` picks ``"imagenet"`` for inputs of 64 pixels or more.
    """
    c, _, _ = _check_image("max_resnet", input_shape)
    if width < 1 or not layers or min(layers) < 1:
        raise ValueError(f"width must be >= 1 and layers non-empty positive, got width={width}, layers={layers}")
    if _stem_kind(stem, input_shape) == "imagenet":  # membrane out, the first block's neuron spikes it
        mods: list[nn.Module] = [*conv_bn(c, width, 7, 2), MaxPool2d(3, stride=2, padding=1)]
    else:
        mods = [*conv_bn(c, width, 3)]  # membrane out: the first block's neuron spikes it
    c_in = width
    for i, n in enumerate(layers):
        c_out = width * 2 ** (i + 1)
        for j in range(n):
            mods.append(_MaxBlock(c_in, c_out, downsample=(i > 0 and j == 0), neuron=neuron))
            c_in = c_out
    mods += [neuron(), SpatialMean(), Linear(c_in, n_classes)]
    return Sequential(*mods)
