r"""Forward learning for spiking networks: Forward-Forward and Mono-Forward, layer-local, no backward
pass between layers.

**Forward-Forward** (Hinton 2022, arXiv:2212.13345, supervised variant). The label is embedded in the
input: the flattened input is normalised to unit RMS (below) and a one-hot block of value
``label_scale`` is appended at every time step (``label_embedding="append"``) or written over its
first ``C`` features (``"replace"``, as Hinton does with the first 10 MNIST pixels). Positive data
carry the true label, negative data the same input with a wrong label (uniform, or drawn from the
readout's softmax: ``negatives="hard"``). Every layer ``l`` gets the *detached*, normalised spikes of
the layer below; its goodness is the scaled mean squared firing rate and its loss the logistic one:

.. math::
    \hat x_t = \frac{x_t}{\operatorname{rms}(\bar x) + \epsilon},\quad \bar x = \frac1T\sum_t x_t,\qquad
    G_l = \frac{\kappa}{N_l} \sum_i \Big(\frac1T \sum_t s^l_{t,i}\Big)^2,\qquad
    L_l = -\log\sigma(G_l^+ - \theta) - \log\big(1 - \sigma(G_l^- - \theta)\big)

Dividing by the rate vector's norm removes the layer below's goodness (its squared norm), so a
layer cannot just copy it. The scale :math:`\kappa` (``goodness_scale``) sets how sharp the logistic
is: rates live in ``[0, 1]``, so with :math:`\kappa = 1` the loss is almost linear in
:math:`G^+ - G^-` and learning on the quickstart digits stalls near 80 %; :math:`\kappa = 20`,
:math:`\theta = 4` (a mean squared rate of 0.2) let well-separated samples saturate. Each layer's
loss is back-propagated (through time, inside the layer only) before the next layer runs, so one
layer's graph is alive at a time. Inference: embed every candidate label, add the goodness of all
layers and take the largest (``inference="goodness"``, ``C`` forward passes), or the faster linear
readout (``"readout"``, one pass): a linear classifier on the normalised rates of all layers for a
neutral label (every class at ``label_scale / C``), trained alongside with cross-entropy on
detached features.

**Mono-Forward** (Gong, Li, Abdulla 2025, arXiv:2501.09238). No label in the input and no negative
data: every layer ``l`` has its own projection :math:`M_l` from its firing rates to class scores and
minimises a local cross-entropy :math:`\mathrm{CE}(M_l \bar s^l, y)`; its input is the detached
spike train of the layer below. Inference uses the last layer's scores (``"last"``) or the sum of
all layers' scores (``"sum"``).

Both strategies call :func:`~spike.train.distributed.sync_gradients` once per batch, so they run
unchanged under ``torchrun``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spike.core.config import ConfigError, ModelConfig
from spike.neurons.scan import check_sequence
from spike.synapses import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Flatten, Linear, SeqOutput, Sequential,
                            SharedDropout)
from spike.train.distributed import rank_world, sync_gradients, unwrap
from spike.train.strategy import StepResult

__all__ = ["FFNet", "MonoNet", "ForwardForward", "MonoForward", "goodness", "normalise_rates", "embed_label",
           "ff_backward", "mono_backward", "negative_labels", "build_ff_blocks", "FF_INFERENCE",
           "MONO_INFERENCE", "LABEL_EMBEDDINGS", "NEGATIVES"]

FF_INFERENCE = ("goodness", "readout")
MONO_INFERENCE = ("last", "sum")
LABEL_EMBEDDINGS = ("append", "replace")
NEGATIVES = ("random", "hard")
_EPS = 1e-6


def goodness(spikes: Tensor, scale: float = 1.0) -> Tensor:
    r"""Scaled mean squared firing rate :math:`G = \frac{\kappa}{N}\sum_i \bar s_i^2 \in [0, \kappa]`:
    ``[T, B, N] -> [B]``."""
    return spikes.mean(0).pow(2).mean(-1) * scale


def normalise_rates(x: Tensor) -> Tensor:
    """``x [T, B, N]`` divided by the RMS of its time-averaged vector (per sample): goodness cannot pass."""
    rms = x.mean(0).pow(2).mean(-1).sqrt()  # [B]
    return x / (rms + _EPS)[None, :, None]


def embed_label(x: Tensor, labels: Tensor | None, n_classes: int, scale: float, mode: str = "append") -> Tensor:
    """Put a one-hot label (``None``: neutral, every class ``scale / n_classes``) into ``x [T, B, D]``.

    Returns:
        ``[T, B, D + C]`` for ``mode="append"``; ``[T, B, D]`` with the first ``C`` features replaced for
        ``"replace"``.
    """
    t, b, d = x.shape
    if labels is None:
        lab = x.new_full((b, n_classes), scale / n_classes)
    else:
        lab = F.one_hot(labels, n_classes).to(x.dtype) * scale  # [B, C]
    lab = lab.unsqueeze(0).expand(t, b, n_classes)  # [T, B, C], the same at every step
    if mode == "append":
        return torch.cat([x, lab], dim=-1)  # [T, B, D + C]
    return torch.cat([lab, x[..., n_classes:]], dim=-1)  # [T, B, D]


def negative_labels(y: Tensor, n_classes: int, probs: Tensor | None = None,
                    generator: torch.Generator | None = None) -> Tensor:
    """A wrong label per sample: uniform over the other ``C - 1`` classes, or drawn from ``probs [B, C]``
    restricted to the wrong classes (hard negatives, Hinton 2022 sec. 3.3).

    One uniform number per sample is drawn for the *global* batch and this process keeps its slice
    ``rank::world``, so the negatives do not depend on how a batch is split over processes.
    """
    rank, world = rank_world()
    u = torch.rand(y.shape[0] * world, generator=generator)[rank::world].to(y.device)  # [B] in [0, 1)
    if probs is None:
        off = (u * (n_classes - 1)).long().clamp_(max=n_classes - 2) + 1  # [B] in [1, C-1]
        return (y + off) % n_classes
    p = probs.detach().float().clone()
    p[torch.arange(y.shape[0], device=y.device), y] = 0.0
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-12)
    cdf = p.cumsum(-1)  # [B, C]
    idx = torch.searchsorted(cdf, u.unsqueeze(-1).to(cdf.dtype), right=True).squeeze(-1)  # cdf[i-1] <= u < cdf[i]
    idx = idx.clamp_(max=n_classes - 1)
    return torch.where(idx == y, p.argmax(-1), idx)  # only when rounding left cdf[-1] < u


def build_ff_blocks(m: ModelConfig, input_shape: tuple[int, ...], *, flat_inputs: int | None = None,
                    allow_conv: bool = False) -> tuple[nn.ModuleList, list[tuple[int, ...]]]:
    """The hidden layers of ``m`` as independent blocks (Linear/Conv → [BN] → neuron → [pool] → [dropout]).

    Returns:
        ``(blocks, output shapes per step)``.
    """
    from spike.models import neuron_from_config

    blocks, shapes = nn.ModuleList(), []
    if not m.hidden:
        raise ConfigError("[model] hidden must list at least one layer for layer-local training")
    if m.kind == "mlp":
        n_in = flat_inputs if flat_inputs is not None else math.prod(input_shape)
        for h in m.hidden:
            layers: list[nn.Module] = [Linear(n_in, int(h))]
            if m.batchnorm:
                layers.append(BatchNorm1d(int(h)))
            layers.append(neuron_from_config(m, int(h)))
            if m.dropout > 0:
                layers.append(SharedDropout(m.dropout))
            blocks.append(Sequential(*layers))
            shapes.append((int(h),))
            n_in = int(h)
    elif m.kind == "conv" and allow_conv:
        if len(input_shape) != 3:
            raise ConfigError(f"[model] kind='conv' needs [C, H, W] inputs, got {input_shape}")
        c, hgt, wid = input_shape
        for ch in m.hidden:
            layers = [Conv2d(c, int(ch), 3, padding=1, bias=not m.batchnorm)]
            if m.batchnorm:
                layers.append(BatchNorm2d(int(ch)))
            layers += [neuron_from_config(m, (int(ch), hgt, wid)), AvgPool2d(2)]
            c, hgt, wid = int(ch), hgt // 2, wid // 2
            if m.dropout > 0:
                layers.append(SharedDropout(m.dropout))
            blocks.append(Sequential(*layers))
            shapes.append((c, hgt, wid))
    else:
        raise ConfigError(f"[model] kind = {m.kind!r} is not supported by this layer-local method "
                          f"(use 'mlp'{' or conv' if allow_conv else ''})")
    return blocks, shapes


def _records(spikes: list[Tensor]) -> dict[str, tuple[Tensor, Tensor | None]]:
    return {f"block{i}": (s, None) for i, s in enumerate(spikes)}


class FFNet(nn.Module):
    r"""A spiking MLP trained by Forward-Forward (see the module docstring).

    The first layer's input current for input ``x`` and label ``l`` is computed without building the
    label-embedded input: :math:`W [\hat x;\ l] + b = (W_x x) / (\operatorname{rms}(\bar x) + \epsilon)
    + W_l l + b` (``in_proj`` holds :math:`W_x`, ``label_proj`` holds :math:`W_l, b`). The image part is
    computed once per batch and shared by the positive, negative and neutral passes and by the ``C``
    candidate labels of inference; it equals ``Linear(embed_label(normalise_rates(x), l))``.

    Args:
        in_proj: ``Linear(D_img, N_0, bias=False)`` on the image features (``D_img = D`` for
            ``"append"``, ``D - C`` for ``"replace"``: the first ``C`` features are replaced by the label).
        blocks: the hidden layers, each a ``Sequential`` producing spikes ``[T, B, N_l]``; the first one
            starts after its Linear (it receives the input current), the others with their Linear.
        n_inputs: flattened input features per step (without the label).
        n_classes: number of labels ``C``.
        label_scale: value of the one-hot label features.
        label_embedding: ``"append"`` or ``"replace"``.
        inference: ``"goodness"`` or ``"readout"``.
        goodness_scale: :math:`\kappa` of :func:`goodness`.

    Shape:
        ``forward(x [T, B, ...]) -> SeqOutput(out [1, B, C], (), records)``: class scores (total goodness
        or readout logits) as a one-step output sequence, so the trainer's losses and accuracy apply.

    Raises:
        ConfigError: if the input cannot carry a label (fewer features than classes for ``"replace"``,
            fewer than 2 classes) or an option is unknown.
    """

    def __init__(self, in_proj: nn.Module, blocks: nn.ModuleList, n_inputs: int, n_classes: int, *,
                 label_scale: float = 20.0, label_embedding: str = "append", inference: str = "goodness",
                 goodness_scale: float = 20.0):
        super().__init__()
        if label_embedding not in LABEL_EMBEDDINGS:
            raise ConfigError(f"[train] ff_label_embedding must be one of {LABEL_EMBEDDINGS}, got {label_embedding!r}")
        if inference not in FF_INFERENCE:
            raise ConfigError(f"[train] ff_inference must be one of {FF_INFERENCE} for forward_forward, "
                              f"got {inference!r}")
        if n_classes < 2:
            raise ConfigError(f"forward-forward needs >= 2 classes to draw a wrong (negative) label, got {n_classes}")
        if label_embedding == "replace" and n_inputs <= n_classes:
            raise ConfigError(f"[train] ff_label_embedding = 'replace' writes the label over the first {n_classes} "
                              f"input features, but the input has only {n_inputs}; use 'append'")
        if not (label_scale > 0 and math.isfinite(label_scale)):
            raise ConfigError(f"[train] ff_label_scale must be a positive number, got {label_scale!r}")
        if not (goodness_scale > 0 and math.isfinite(goodness_scale)):
            raise ConfigError(f"[train] ff_goodness_scale must be a positive number, got {goodness_scale!r}")
        d_img = n_inputs if label_embedding == "append" else n_inputs - n_classes
        if getattr(in_proj, "in_features", d_img) != d_img or getattr(in_proj, "bias", None) is not None:
            raise ValueError(f"in_proj must be a Linear({d_img}, N, bias=False) for {label_embedding!r}")
        self.goodness_scale = float(goodness_scale)
        self.in_proj, self.blocks = in_proj, blocks
        n0 = in_proj.out_features
        self.label_proj = nn.Linear(n_classes, n0)
        bound = 1.0 / math.sqrt(d_img + n_classes)  # as one Linear over the embedded input
        nn.init.uniform_(self.label_proj.weight, -bound, bound)
        nn.init.uniform_(self.label_proj.bias, -bound, bound)
        self.n_inputs, self.n_classes = n_inputs, n_classes
        self.label_scale, self.label_embedding, self.inference = float(label_scale), label_embedding, inference
        widths = [n0] + [self._width(b) for b in list(blocks)[1:]]
        self.readout = nn.Linear(sum(widths), n_classes)

    @staticmethod
    def _width(block: nn.Module) -> int:
        lin = [m for m in block.modules() if isinstance(m, nn.Linear)]
        return lin[-1].out_features

    def flat_input(self, x: Tensor) -> Tensor:
        """``[T, B, ...] -> [T, B, D]`` with a shape check."""
        check_sequence(x, "forward-forward input")
        flat = x.flatten(2)  # [T, B, D]
        if flat.shape[-1] != self.n_inputs:
            raise ValueError(f"forward-forward input has {flat.shape[-1]} features per step, the network was "
                             f"built for {self.n_inputs}")
        return flat

    def image_drive(self, flat: Tensor) -> Tensor:
        """The label-free part of the first layer's input current, ``[T, B, D] -> [T, B, N_0]``."""
        rms = flat.mean(0).pow(2).mean(-1).sqrt()  # [B], the normalisation of normalise_rates
        img = flat if self.label_embedding == "append" else flat[..., self.n_classes:]
        return self.in_proj(img) / (rms + _EPS)[None, :, None]

    def label_drive(self, labels: Tensor | None, batch: int, like: Tensor) -> Tensor:
        """``W_l l + b`` for one-hot labels ``[B]`` (``None``: neutral, every class ``scale / C``): ``[B, N_0]``."""
        if labels is None:
            lab = like.new_full((batch, self.n_classes), self.label_scale / self.n_classes)
        else:
            lab = F.one_hot(labels, self.n_classes).to(like.dtype) * self.label_scale  # [B, C]
        return self.label_proj(lab)

    def layer_spikes(self, drive: Tensor) -> list[Tensor]:
        """Spikes of every block for the first layer's input current ``drive [T, B, N_0]`` (later blocks
        see the normalised spikes of the layer below)."""
        out = []
        h = drive
        for i, block in enumerate(self.blocks):
            h = block(h if i == 0 else normalise_rates(h)).out
            out.append(h)
        return out

    def spikes_for(self, flat: Tensor, labels: Tensor | None, image: Tensor | None = None) -> list[Tensor]:
        """Spikes of every block for input ``flat`` with ``labels`` embedded (``image``: a precomputed
        :meth:`image_drive`)."""
        image = self.image_drive(flat) if image is None else image
        return self.layer_spikes(image + self.label_drive(labels, flat.shape[1], flat)[None])

    def readout_features(self, spikes: list[Tensor]) -> Tensor:
        """Normalised rates of all layers, concatenated: ``[B, sum N_l]``."""
        return torch.cat([normalise_rates(s).mean(0) for s in spikes], dim=-1)

    def goodness_scores(self, flat: Tensor) -> Tensor:
        """``[B, C]``: total goodness over layers for every candidate label."""
        b = flat.shape[1]
        image = self.image_drive(flat)  # shared by all candidate labels
        scores = flat.new_zeros(b, self.n_classes)
        for c in range(self.n_classes):
            lab = torch.full((b,), c, dtype=torch.long, device=flat.device)
            scores[:, c] = sum(goodness(s, self.goodness_scale) for s in self.spikes_for(flat, lab, image))
        return scores

    def forward(self, x: Tensor, state: Any = None, record: bool = False,  # type: ignore[override]
                inference: str | None = None) -> SeqOutput:
        mode = inference or self.inference
        if mode not in FF_INFERENCE:
            raise ValueError(f"inference must be one of {FF_INFERENCE}, got {mode!r}")
        flat = self.flat_input(x)
        spikes: list[Tensor] = []
        if mode == "readout" or record:
            spikes = self.spikes_for(flat, None)
        if mode == "readout":
            scores = self.readout(self.readout_features(spikes))
        else:
            scores = self.goodness_scores(flat)
        return SeqOutput(scores.unsqueeze(0), (), _records(spikes) if record else None)  # [1, B, C]


class MonoNet(nn.Module):
    """A spiking network trained by Mono-Forward: hidden blocks plus one class projection per block.

    Shape:
        ``forward(x [T, B, ...]) -> SeqOutput(out [1, B, C], (), records)``.
    """

    def __init__(self, blocks: nn.ModuleList, shapes: list[tuple[int, ...]], n_classes: int, *,
                 inference: str = "last"):
        super().__init__()
        if inference not in MONO_INFERENCE:
            raise ConfigError(f"[train] ff_inference must be one of {MONO_INFERENCE} for mono_forward, "
                              f"got {inference!r}")
        self.blocks = blocks
        self.projections = nn.ModuleList(nn.Linear(math.prod(s), n_classes, bias=False) for s in shapes)
        self.n_classes, self.inference = n_classes, inference

    def layer_scores(self, i: int, spikes: Tensor) -> Tensor:
        """Class scores ``[B, C]`` of block ``i`` from its spikes ``[T, B, ...]`` (rate projection)."""
        return self.projections[i](spikes.mean(0).flatten(1))

    def forward(self, x: Tensor, state: Any = None, record: bool = False,  # type: ignore[override]
                inference: str | None = None) -> SeqOutput:
        mode = inference or self.inference
        if mode not in MONO_INFERENCE:
            raise ValueError(f"inference must be one of {MONO_INFERENCE}, got {mode!r}")
        check_sequence(x, "mono-forward input")
        h, spikes, scores = x, [], None
        for i, block in enumerate(self.blocks):
            h = block(h).out
            spikes.append(h)
            s = self.layer_scores(i, h)
            scores = s if (scores is None or mode == "last") else scores + s
        return SeqOutput(scores.unsqueeze(0), (), _records(spikes) if record else None)  # [1, B, C]


def ff_backward(net: FFNet, x: Tensor, y: Tensor, theta: float, negatives: str = "random",
                generator: torch.Generator | None = None) -> tuple[float, Tensor]:
    """Accumulate Forward-Forward gradients (every layer + the readout) of one batch into ``.grad``.

    Args:
        net: the network; x: ``[T, B, ...]``; y: ``[B]``; theta: goodness threshold.
        negatives: ``"random"`` (uniform wrong label) or ``"hard"`` (wrong label drawn from the readout's
            softmax, so confusable labels are used more often).

    Returns:
        ``(mean layer loss, readout scores [B, C] of the batch before the update, detached)``.
    """
    if negatives not in NEGATIVES:
        raise ConfigError(f"[train] ff_negatives must be one of {NEGATIVES}, got {negatives!r}")
    flat = net.flat_input(x)
    b = y.shape[0]
    image = net.image_drive(flat)  # [T, B, N_0], shared by the neutral, positive and negative passes
    with torch.no_grad():
        feats = net.readout_features(net.spikes_for(flat, None, image.detach()))  # neutral label
    scores = net.readout(feats)
    F.cross_entropy(scores, y).backward()
    probs = scores.detach().softmax(-1) if negatives == "hard" else None
    y_neg = negative_labels(y, net.n_classes, probs, generator)
    labels = net.label_drive(torch.cat([y, y_neg]), 2 * b, flat)  # [2B, N_0]
    h = image.repeat(1, 2, 1) + labels[None]  # [T, 2B, N_0]: positive | negative
    total = 0.0
    for i, block in enumerate(net.blocks):
        s = block(h if i == 0 else normalise_rates(h)).out  # [T, 2B, N]; graph inside this block only
        g = goodness(s, net.goodness_scale)  # [2B]
        # -log σ(G+ - θ) - log(1 - σ(G- - θ))
        loss = F.softplus(theta - g[:b]).mean() + F.softplus(g[b:] - theta).mean()
        loss.backward()
        total += float(loss.detach())
        h = s.detach()
    return total / len(net.blocks), scores.detach()


def mono_backward(net: MonoNet, x: Tensor, y: Tensor) -> tuple[float, Tensor]:
    """Accumulate Mono-Forward gradients (every block and its projection) of one batch into ``.grad``.

    Returns:
        ``(mean layer loss, scores [B, C] as used for inference, detached)``.
    """
    check_sequence(x, "mono-forward input")
    h, total, scores = x, 0.0, None
    for i, block in enumerate(net.blocks):
        s = block(h.detach()).out  # graph inside this block only
        logits = net.layer_scores(i, s)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        total += float(loss.detach())
        scores = logits.detach() if (scores is None or net.inference == "last") else scores + logits.detach()
        h = s.detach()
    return total / len(net.blocks), scores  # type: ignore[return-value]


def _finish(model: nn.Module, optimizer, grad_clip: float) -> None:
    sync_gradients(model)
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(unwrap(model).parameters(), grad_clip)
    optimizer.step()


@dataclass(frozen=True)
class ForwardForward:
    """Forward-Forward strategy; builds its :class:`FFNet` from a :class:`~spike.core.config.ModelConfig`.

    Args:
        theta: goodness threshold :math:`\\theta` (``[train] ff_theta``).
        goodness_scale: :math:`\\kappa` of :func:`goodness` (``ff_goodness_scale``).
        label_scale: see :class:`FFNet`.
        label_embedding: see :class:`FFNet`.
        inference: see :class:`FFNet`.
        negatives: ``"random"`` or ``"hard"`` (see :func:`ff_backward`).

    Example:
        >>> strategy = ForwardForward()
        >>> net = strategy.build_model(ModelConfig(hidden=(256, 256)), (2, 34, 34), 10)
        >>> res = strategy.train_step(net, x, y, get_loss("mean_membrane"), optimizer, grad_clip=0.0)
    """

    theta: float = 4.0
    goodness_scale: float = 20.0
    label_scale: float = 20.0
    label_embedding: str = "append"
    inference: str = "goodness"
    negatives: str = "random"
    name: str = "forward_forward"

    def __post_init__(self):
        if not math.isfinite(self.theta):
            raise ConfigError(f"[train] ff_theta must be finite, got {self.theta!r}")
        if self.negatives not in NEGATIVES:
            raise ConfigError(f"[train] ff_negatives must be one of {NEGATIVES}, got {self.negatives!r}")
        if self.inference not in FF_INFERENCE:
            raise ConfigError(f"[train] ff_inference must be one of {FF_INFERENCE} (or 'auto') for "
                              f"forward_forward, got {self.inference!r}")
        if self.label_embedding not in LABEL_EMBEDDINGS:
            raise ConfigError(f"[train] ff_label_embedding must be one of {LABEL_EMBEDDINGS}, "
                              f"got {self.label_embedding!r}")
        if not (self.label_scale > 0 and math.isfinite(self.label_scale)):
            raise ConfigError(f"[train] ff_label_scale must be a positive number, got {self.label_scale!r}")
        if not (self.goodness_scale > 0 and math.isfinite(self.goodness_scale)):
            raise ConfigError(f"[train] ff_goodness_scale must be a positive number, got {self.goodness_scale!r}")

    def build_model(self, m: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> FFNet:
        if m.kind != "mlp":
            raise ConfigError(f"forward_forward embeds the label in the flattened input and needs [model] kind = "
                              f"'mlp', got {m.kind!r}")
        n_in = math.prod(input_shape)
        if self.label_embedding == "replace" and n_in <= n_classes:
            raise ConfigError(f"[train] ff_label_embedding = 'replace' writes the label over the first {n_classes} "
                              f"input features, but the input has only {n_in}; use 'append'")
        d_img = n_in if self.label_embedding == "append" else n_in - n_classes
        blocks, _ = build_ff_blocks(m, input_shape, flat_inputs=max(d_img, 1))
        first = list(blocks[0])
        in_proj = Linear(d_img, first[0].out_features, bias=False)
        with torch.no_grad():  # initialised as one Linear over the embedded input (d_img + C inputs)
            bound = 1.0 / math.sqrt(d_img + n_classes)
            in_proj.weight.uniform_(-bound, bound)
        blocks[0] = Sequential(*first[1:])  # [BN] -> neuron -> [dropout]: receives the input current
        return FFNet(in_proj, blocks, n_in, n_classes, label_scale=self.label_scale,
                     label_embedding=self.label_embedding, inference=self.inference,
                     goodness_scale=self.goodness_scale)

    def train_step(self, model, x, y, loss_fn, optimizer, grad_clip):
        net = unwrap(model)
        if not isinstance(net, FFNet):
            raise TypeError(f"forward_forward trains an FFNet (build it with ForwardForward.build_model), "
                            f"got {type(net).__name__}")
        optimizer.zero_grad(set_to_none=True)
        loss, scores = ff_backward(net, x, y, self.theta, self.negatives)
        _finish(model, optimizer, grad_clip)
        return StepResult(loss, scores.unsqueeze(0))  # [1, B, C]


@dataclass(frozen=True)
class MonoForward:
    """Mono-Forward strategy; builds its :class:`MonoNet` (MLP or conv blocks) from a ``ModelConfig``."""

    inference: str = "last"
    name: str = "mono_forward"

    def __post_init__(self):
        if self.inference not in MONO_INFERENCE:
            raise ConfigError(f"[train] ff_inference must be one of {MONO_INFERENCE} (or 'auto') for "
                              f"mono_forward, got {self.inference!r}")

    def build_model(self, m: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> MonoNet:
        blocks, shapes = build_ff_blocks(m, input_shape, allow_conv=True)
        if m.kind == "mlp":
            blocks[0].insert(0, Flatten())
        return MonoNet(blocks, shapes, n_classes, inference=self.inference)

    def train_step(self, model, x, y, loss_fn, optimizer, grad_clip):
        net = unwrap(model)
        if not isinstance(net, MonoNet):
            raise TypeError(f"mono_forward trains a MonoNet (build it with MonoForward.build_model), "
                            f"got {type(net).__name__}")
        optimizer.zero_grad(set_to_none=True)
        loss, scores = mono_backward(net, x, y)
        _finish(model, optimizer, grad_clip)
        return StepResult(loss, scores.unsqueeze(0))  # [1, B, C]
