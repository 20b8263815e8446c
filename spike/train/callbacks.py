r"""Small trainer callbacks, duck-typed by hook name (see :class:`~spike.train.trainer.Trainer`).

Hooks: ``on_epoch_start(trainer, epoch)``, ``on_epoch_end(trainer, epoch, metrics)``,
``on_batch_end(trainer, step, result)``. A callback needs only ``trainer.model``. Each class here is
stateless: what it does at epoch ``e`` depends on ``e`` only, so a resumed run behaves exactly like an
uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from spike.synapses.delays import check_sigma, delay_layers

__all__ = ["SigmaSchedule", "ClampDelayPositions"]


@dataclass(frozen=True)
class SigmaSchedule:
    r"""Shrink the Gaussian width of every :class:`~spike.synapses.delays.DelayedLinear` per epoch.

    Geometric decay from :math:`\sigma_0` to a floor, reached at epoch ``decay_epochs`` and kept
    afterwards (Hammouamri et al. 2024, arXiv:2306.17670: per-epoch multiplicative decay, reaching
    about 0.5 after a quarter of training):

    .. math:: \sigma(e) = \sigma_0 \left(\sigma_\text{floor} / \sigma_0\right)^{\min(e, E)/E}

    Args:
        decay_epochs: :math:`E`, the epoch (0-based) from which :math:`\sigma = \sigma_\text{floor}`;
            0 means the floor from the start.
        sigma_floor: final width in steps, > 0 (paper: 0.5); also used when :math:`\\sigma_0` is smaller.
        sigma_init: :math:`\sigma_0` in steps; ``None`` uses each layer's ``max_delay / 2``.

    Example:
        >>> s = SigmaSchedule(decay_epochs=37)
        >>> round(s.sigma_at(0, 25), 3), round(s.sigma_at(37, 25), 3), round(s.sigma_at(100, 25), 3)
        (12.5, 0.5, 0.5)
    """

    decay_epochs: int
    sigma_floor: float = 0.5
    sigma_init: float | None = None

    def __post_init__(self):
        if isinstance(self.decay_epochs, bool) or not isinstance(self.decay_epochs, int) or self.decay_epochs < 0:
            raise ValueError(f"decay_epochs must be an integer >= 0, got {self.decay_epochs!r}")
        if not check_sigma(self.sigma_floor) > 0.0:
            raise ValueError("sigma_floor must be > 0 (a zero width stops position learning; eval mode "
                             "already uses rounded delays)")
        if self.sigma_init is not None:
            check_sigma(self.sigma_init)

    @classmethod
    def for_training(cls, epochs: int, fraction: float = 0.25, sigma_floor: float = 0.5,
                     sigma_init: float | None = None) -> "SigmaSchedule":
        """The floor is reached after ``fraction`` of ``epochs`` (the paper's quarter)."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
        return cls(int(epochs * fraction), sigma_floor, sigma_init)

    def sigma_at(self, epoch: int, max_delay: int) -> float:
        """:math:`\\sigma` during epoch ``epoch`` (0-based) for a layer with ``max_delay``."""
        s0 = max_delay / 2 if self.sigma_init is None else self.sigma_init
        floor = self.sigma_floor
        if s0 <= floor or self.decay_epochs == 0:
            return floor
        frac = min(max(epoch, 0), self.decay_epochs) / self.decay_epochs
        return s0 * math.exp(frac * math.log(floor / s0))

    def on_epoch_start(self, trainer, epoch: int) -> None:
        for layer in delay_layers(trainer.model):
            layer.set_sigma(self.sigma_at(epoch, layer.max_delay))


@dataclass(frozen=True)
class ClampDelayPositions:
    """Keep every delay position inside ``[0, max_delay]`` after each optimiser step (as the paper does)."""

    def on_batch_end(self, trainer, step: int, result) -> None:
        for layer in delay_layers(trainer.model):
            layer.clamp_positions_()
