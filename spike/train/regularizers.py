r"""Training regularisers that act on per-layer, per-step representations.

:class:`CutoffRegularizer` (RCS, "regularising cosine similarity") makes early time steps carry the
same information as late ones, so that an anytime cutoff (:mod:`spike.inference.anytime`) can stop
early without changing the answer (Wu et al., AOI-SNN, Front. Neurosci. 19 (2025),
doi:10.3389/fnins.2025.1522788, arXiv:2301.09522). For every recorded stateful layer :math:`l` with
spikes :math:`s_t` and membrane :math:`v_t` the per-step representation is

.. math::
    r_t = s_t + \mathrm{ReLU}(v_t) \quad\text{(spiking layer)}, \qquad r_t = v_t \quad\text{(non-spiking readout)},

its late-time mean :math:`\bar r = \frac{1}{|L|}\sum_{t \in L} r_t` over the last ``late_fraction`` of
the steps is a fixed target (no gradient), and the loss over the correctly classified samples
:math:`\mathcal C` of the batch is

.. math::
    \mathcal L_\text{RCS} = w \cdot \frac{1}{|\text{layers}|}\sum_l \frac{1}{|\mathcal C|\,T}
        \sum_{b \in \mathcal C}\sum_t \big(1 - \cos(r_t^{(b)}, \bar r^{(b)})\big).

The paper penalises :math:`1/\cos`; we use :math:`1 - \cos`, which has the same minimiser and stays
bounded when a layer is silent early on (:math:`\cos \to 0`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from spike.train.losses import scores

__all__ = ["CutoffRegularizer", "rcs_layer_loss", "layer_representation"]


def layer_representation(spikes: Tensor, membrane: Tensor | None) -> Tensor:
    """Per-step representation ``[T, B, F]`` of one layer's record (see the module docstring)."""
    if membrane is None:
        r = spikes
    elif membrane is spikes:  # non-spiking layer (LI readout): its output is the membrane
        r = membrane
    else:
        r = spikes + torch.relu(membrane)
    return r.reshape(r.shape[0], r.shape[1], -1)  # [T, B, F]


def rcs_layer_loss(r: Tensor, mask: Tensor, late_fraction: float = 0.5, eps: float = 1e-8) -> Tensor:
    r"""Mean of :math:`1 - \cos(r_t, \bar r)` over steps and the samples in ``mask``.

    Args:
        r: ``[T, B, F]`` per-step representation.
        mask: ``[B]`` bool, the samples to regularise (correctly classified ones).
        late_fraction: the target is the mean over the last ``ceil(late_fraction * T)`` steps.
    """
    t = r.shape[0]
    n_late = max(1, math.ceil(late_fraction * t))
    target = r[t - n_late:].mean(0).detach()  # [B, F]
    dot = (r * target).sum(-1)  # [T, B]
    cos = dot / (r.norm(dim=-1) * target.norm(dim=-1) + eps)  # [T, B]
    m = mask.to(r.dtype)  # [B]
    return ((1.0 - cos) * m).sum() / (m.sum() * t).clamp_min(1.0)


@dataclass(frozen=True)
class CutoffRegularizer:
    """RCS loss term for a strategy: ``reg(records, out, y) -> weight * L_RCS``.

    Args:
        weight: multiplier ``w`` (``[train] rcs_weight``); must be ``>= 0``.
        loss_name: the training loss, whose scores decide which samples are correct.
        late_fraction: fraction of the last steps whose mean is the target, in ``(0, 1]``.

    Example:
        >>> reg = CutoffRegularizer(0.1)
        >>> res = net(x, record=True)
        >>> loss = loss_fn(res.out, y) + reg(res.records, res.out, y)
    """

    weight: float
    loss_name: str = "mean_membrane"
    late_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not (isinstance(self.weight, (int, float)) and math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"rcs_weight must be a finite number >= 0, got {self.weight!r}")
        if not 0.0 < self.late_fraction <= 1.0:
            raise ValueError(f"late_fraction must be in (0, 1], got {self.late_fraction}")

    def __call__(self, records: dict[str, tuple[Tensor, Tensor | None]] | None, out: Tensor, y: Tensor) -> Tensor:
        if not records:
            raise ValueError("the RCS regulariser needs per-layer records: call the model with record=True "
                             "(spike.synapses.Sequential) and pass SeqOutput.records")
        with torch.no_grad():
            correct = scores(self.loss_name, out).argmax(-1) == y  # [B]
        terms = [rcs_layer_loss(layer_representation(s, v), correct, self.late_fraction)
                 for s, v in records.values() if s is not None and s.dim() >= 3]
        if not terms:
            return out.new_zeros(())
        return self.weight * torch.stack(terms).mean()
