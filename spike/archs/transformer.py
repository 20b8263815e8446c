"""Spiking transformers over ``[T, B, C, H, W]``: Spikformer and Max-Former.

* ``spikformer`` (Zhou et al. 2023, "Spikformer: When Spiking Neural Network Meets Transformer", ICLR,
  arXiv:2209.15425): spiking patch splitting (four conv-BN-SN stages to ``dim/8, dim/4, dim/2, dim``
  channels with max-pools, plus a conv relative position embedding), then ``depth`` blocks
  ``x + SSA(x)``, ``x + MLP(x)`` and a linear head on the token mean. Spiking self-attention has no
  softmax: ``SN(Q Kᵀ V · s)`` with spike-valued ``Q, K, V``, so the product is associative and is
  evaluated in the cheaper order.
* ``max_former`` (Fang et al. 2025, "Spiking Neural Networks Need High Frequency Information", NeurIPS,
  arXiv:2505.18608): three stages of widths ``dim/4, dim/2, dim`` with membrane shortcuts (neuron before
  each conv); patch embeddings with an extra max-pool (high-pass) on both the conv and the shortcut path,
  depth-wise convolutions as token mixers in the early stages and SSA only in the last.

Token ``n`` of the ``H x W`` grid is pixel ``(n // W, n % W)``; the 1x1 convolutions are the per-token
linear layers (``Conv1d(k=1)`` of the papers), with ``BatchNorm`` over time, batch and tokens.
"""

from __future__ import annotations

from torch import Tensor, nn

from spike.archs.blocks import NeuronFactory, Residual, SpatialMean, Threaded, conv_bn
from spike.neurons.scan import check_sequence
from spike.synapses import AvgPool2d, BatchNorm2d, Conv2d, Linear, MaxPool2d, Sequential

__all__ = ["MIXERS", "ssa_product", "SpikingSelfAttention", "spikformer", "max_former"]

MIXERS = ("identity", "avgpool", "maxpool", "dwc3", "dwc5", "dwc7", "ssa")


def ssa_product(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """``Q Kᵀ V · scale`` over ``[..., N, dh]`` without softmax, in the cheaper of the two equal orders.

    ``(Q Kᵀ) V`` costs ``N²·dh`` and ``Q (Kᵀ V)`` costs ``N·dh²``; with spike-valued inputs both are
    exact integer sums, so the order does not change the result.
    """
    n, dh = q.shape[-2], q.shape[-1]
    if n > dh:
        y = q @ (k.transpose(-2, -1) @ v)  # [..., N, dh] @ [..., dh, dh]
    else:
        y = (q @ k.transpose(-2, -1)) @ v  # [..., N, N] @ [..., N, dh]
    return y * scale


class SpikingSelfAttention(Threaded):
    """Spiking self-attention (SSA) of Spikformer over ``[T, B, C, H, W]``, attention within each step.

    ``Q, K, V = SN(BN(W x))``; ``A = SN_attn(Q Kᵀ V · scale)`` per head; output ``BN(W_o A + b)``, then a
    neuron (``membrane_shortcut=False``, Spikformer) or, with ``membrane_shortcut=True`` (Max-Former /
    MS-style), a neuron on the input first and no neuron at the end.

    Args:
        dim: channels; heads: number of heads (``dim % heads == 0``).
        neuron: neuron factory; the attention neuron gets ``v_th=attn_v_th`` (0.5 in the papers).
        scale: the fixed scale ``s`` (0.125 in the papers).
    """

    def __init__(self, dim: int, heads: int, neuron: NeuronFactory, *, scale: float = 0.125,
                 attn_v_th: float = 0.5, membrane_shortcut: bool = False):
        super().__init__()
        if heads < 1 or dim % heads:
            raise ValueError(f"SSA: dim={dim} must be a positive multiple of heads={heads}")
        self.heads, self.scale, self.membrane_shortcut = heads, float(scale), membrane_shortcut
        if membrane_shortcut:
            self.pre = neuron()
        self.q = Sequential(Conv2d(dim, dim, 1, bias=False), BatchNorm2d(dim), neuron())
        self.k = Sequential(Conv2d(dim, dim, 1, bias=False), BatchNorm2d(dim), neuron())
        self.v = Sequential(Conv2d(dim, dim, 1, bias=False), BatchNorm2d(dim), neuron())
        self.attn = neuron(v_th=attn_v_th)
        self.proj = Sequential(Conv2d(dim, dim, 1), BatchNorm2d(dim), *([] if membrane_shortcut else [neuron()]))

    def split(self, x: Tensor) -> Tensor:
        """``[T, B, C, H, W] -> [T, B, heads, N, C/heads]``."""
        t, b, c, h, w = x.shape
        return x.reshape(t, b, self.heads, c // self.heads, h * w).transpose(-2, -1)  # [T, B, nh, N, dh]

    def body(self, x: Tensor, call) -> Tensor:
        check_sequence(x, "SpikingSelfAttention input", 5)
        t, b, c, h, w = x.shape
        if self.membrane_shortcut:
            x = call("pre", x)
        q, k, v = self.split(call("q", x)), self.split(call("k", x)), self.split(call("v", x))
        y = ssa_product(q, k, v, self.scale)  # [T, B, nh, N, dh]
        y = y.transpose(-2, -1).reshape(t, b, c, h, w)  # [T, B, nh, dh, N] -> [T, B, C, H, W]
        return call("proj", call("attn", y))

    def extra_repr(self) -> str:
        return f"heads={self.heads}, scale={self.scale}, membrane_shortcut={self.membrane_shortcut}"


def _check(kind: str, input_shape: tuple[int, ...], dim: int, mlp_ratio: float) -> int:
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"{kind} needs image inputs [C, H, W], got input_shape={tuple(input_shape)}")
    if dim < 8 or dim % 8:
        raise ValueError(f"{kind}: dim must be a positive multiple of 8, got {dim}")
    if not mlp_ratio > 0:
        raise ValueError(f"{kind}: mlp_ratio must be > 0, got {mlp_ratio}")
    return int(input_shape[0])


def _heads(dim: int, heads: int | None) -> int:
    return heads if heads is not None else max(1, dim // 64)


def spikformer(input_shape: tuple[int, ...], n_classes: int, *, neuron: NeuronFactory, dim: int = 384,
               depth: int = 4, heads: int | None = None, mlp_ratio: float = 4.0, pools: int | None = None,
               attn_v_th: float = 0.5) -> Sequential:
    """Spikformer-``depth``-``dim`` (Spikformer-8-768 on ImageNet, -4-384 on CIFAR).

    Args:
        heads: attention heads (default ``dim // 64``; 12 for 768, 6 for 384).
        pools: 3x3/2 max-pools in the patch splitting, after the last ``pools`` of its four stages
            (default 4 for inputs of 64 pixels or more, i.e. 224 -> 14 and 128 -> 8, else 2: 32 -> 8).
    """
    c = _check("spikformer", input_shape, dim, mlp_ratio)
    pools = (4 if min(input_shape[1:]) >= 64 else 2) if pools is None else pools
    if not 0 <= pools <= 4 or depth < 1:
        raise ValueError(f"spikformer: pools must be in 0..4 and depth >= 1, got pools={pools}, depth={depth}")
    heads = _heads(dim, heads)
    hidden = int(dim * mlp_ratio)
    chans = (c, dim // 8, dim // 4, dim // 2, dim)
    mods: list[nn.Module] = []
    for i in range(4):  # spiking patch splitting
        mods += [*conv_bn(chans[i], chans[i + 1], 3), neuron()]
        if i >= 4 - pools:
            mods.append(MaxPool2d(3, stride=2, padding=1))
    mods.append(Residual(Sequential(*conv_bn(dim, dim, 3), neuron())))  # relative position embedding
    for _ in range(depth):
        mods.append(Residual(SpikingSelfAttention(dim, heads, neuron, attn_v_th=attn_v_th)))
        mods.append(Residual(Sequential(Conv2d(dim, hidden, 1), BatchNorm2d(hidden), neuron(),
                                        Conv2d(hidden, dim, 1), BatchNorm2d(dim), neuron())))
    mods += [SpatialMean(), Linear(dim, n_classes)]
    return Sequential(*mods)


def _ms_mlp(dim: int, hidden: int, neuron: NeuronFactory) -> Residual:
    """``x + BN(W2 SN(BN(W1 SN(x) + b1)) + b2)`` (membrane shortcut)."""
    return Residual(Sequential(neuron(), Conv2d(dim, hidden, 1), BatchNorm2d(hidden),
                               neuron(), Conv2d(hidden, dim, 1), BatchNorm2d(dim)))


def _mixer(kind: str, dim: int, heads: int, neuron: NeuronFactory, attn_v_th: float) -> list[nn.Module]:
    if kind == "identity":
        return []
    if kind == "maxpool":  # high-pass token mixing of the paper's ablation: 3x3/1 pool of the membrane, no weights
        return [MaxPool2d(3, stride=1, padding=1)]
    if kind == "avgpool":  # its low-pass counterpart (PoolFormer-style, padding not counted)
        return [AvgPool2d(3, stride=1, padding=1, count_include_pad=False)]
    if kind == "ssa":
        return [Residual(SpikingSelfAttention(dim, heads, neuron, attn_v_th=attn_v_th, membrane_shortcut=True))]
    k = int(kind[3:])  # dwcK: depth-wise K x K convolution
    return [Residual(Sequential(neuron(), Conv2d(dim, dim, k, padding=k // 2, groups=dim), BatchNorm2d(dim)))]


def _max_embed(c_in: int, c_out: int, neuron: NeuronFactory) -> list[nn.Module]:
    """Max-Former patch embedding: ``y = SN(x)``, ``BN(conv(SN(pool(BN(conv y))))) + pool(BN(conv1x1 y))``."""
    main = Sequential(*conv_bn(c_in, c_out, 3), MaxPool2d(3, stride=2, padding=1), neuron(), *conv_bn(c_out, c_out, 3))
    short = Sequential(*conv_bn(c_in, c_out, 1), MaxPool2d(3, stride=2, padding=1))
    return [neuron(), Residual(main, short)]


def max_former(input_shape: tuple[int, ...], n_classes: int, *, neuron: NeuronFactory, dim: int = 384,
               depths: tuple[int, int, int] = (1, 2, 7), mixers: tuple[str, str, str] = ("dwc7", "dwc5", "ssa"),
               heads: int | None = None, mlp_ratio: float = 4.0, stem: str = "auto",
               attn_v_th: float = 0.5) -> Sequential:
    """Max-Former-``sum(depths)``-``dim`` (Max-Former-10-768 on ImageNet: ``depths=(1, 2, 7)``, mixers
    DWC7 / DWC5 / SSA; the CIFAR code uses ``depths=(1, 1, 2)``, mixers identity / DWC3 / SSA).

    Args:
        dim: width of the last stage; the stages are ``dim/4, dim/2, dim`` wide.
        mixers: token mixer of each stage, from ``"identity"``, ``"avgpool"``, ``"maxpool"``, ``"dwc3"``,
            ``"dwc5"``, ``"dwc7"``, ``"ssa"``. ``avgpool`` / ``maxpool`` are the paper's Avg-Pool vs Max-Pool
            token-mixing ablation (reference code ``Avg_Mixer`` / ``Max_Mixer``: a 3x3 stride-1 pool that
            replaces the tokens, no shortcut, no weights; the block's MLP keeps its shortcut).
        heads: SSA heads (default ``dim // 64``).
        stem: ``"imagenet"`` (two stride-2 convs: 224 -> 56 before stage 1) or ``"cifar"`` (stride 1);
            ``"auto"`` picks ``"imagenet"`` for inputs of 64 pixels or more.
    """
    c = _check("max_former", input_shape, dim, mlp_ratio)
    if len(depths) != 3 or min(depths) < 0 or len(mixers) != 3 or any(m not in MIXERS for m in mixers):
        raise ValueError(f"max_former: depths must be 3 counts >= 0 and mixers 3 of {MIXERS}, "
                         f"got depths={depths}, mixers={mixers}")
    if stem not in ("auto", "imagenet", "cifar"):
        raise ValueError(f"max_former: stem must be 'auto', 'imagenet' or 'cifar', got {stem!r}")
    if stem == "auto":
        stem = "imagenet" if min(input_shape[1:]) >= 64 else "cifar"
    heads = _heads(dim, heads)
    widths = (dim // 4, dim // 2, dim)
    d0 = widths[0]
    if stem == "imagenet":  # two stride-2 convs, the second with its own shortcut: H -> H/4
        main = Sequential(*conv_bn(d0 // 2, d0, 3, 2), neuron(), *conv_bn(d0, d0, 3))
        short = Sequential(*conv_bn(d0 // 2, d0, 1, 2))
        mods: list[nn.Module] = [*conv_bn(c, d0 // 2, 3, 2), neuron(), Residual(main, short)]
    else:  # full resolution
        main, short = Sequential(*conv_bn(d0 // 2, d0, 3)), Sequential(*conv_bn(d0 // 2, d0, 1))
        mods = [*conv_bn(c, d0 // 2, 3), neuron(), Residual(main, short)]
    for i, (d, n, mix) in enumerate(zip(widths, depths, mixers)):
        if i > 0:
            mods += _max_embed(widths[i - 1], d, neuron)
        for _ in range(n):
            mods += _mixer(mix, d, heads, neuron, attn_v_th)
            mods.append(_ms_mlp(d, int(d * mlp_ratio), neuron))
    mods += [SpatialMean(), neuron(), Linear(dim, n_classes)]
    return Sequential(*mods)
