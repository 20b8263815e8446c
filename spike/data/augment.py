"""Augmentation of binned training samples ``[T, P, H, W]`` (or ``[T, C]``), configured by ``[data] augment``.

The data sets are binned once and cached (:mod:`spike.data.cache`); augmentation happens afterwards, on
each training sample as it is read, so the cache only ever holds un-augmented frames. Each operation here
is *exactly* the binning of its event-level counterpart in :mod:`spike.events.augment` (same draws from
the generator, same result; tested):

====================  =====================================  ==========================================
config name           frames                                 events
====================  =====================================  ==========================================
``flip_x[:p]``        mirror the W axis, probability p=0.5   :func:`spike.events.augment.random_flip_x`
``flip_y[:p]``        mirror the H axis                      :func:`~spike.events.augment.random_flip_y`
``polarity_flip[:p]`` reverse the P axis                     :func:`~spike.events.augment.random_polarity_flip`
``translate[:k]``     shift by U{-k..k} px (k=2), zero fill   :func:`~spike.events.augment.random_translate`
``drop_area[:a]``     zero a box of area fraction a (0.1)    :func:`~spike.events.augment.drop_by_area`
``drop_time[:r]``     zero round(r * T) consecutive bins     bin-aligned :func:`~spike.events.augment.drop_by_time`
====================  =====================================  ==========================================

:func:`cutmix` mixes two samples of a batch and returns both labels and the mixing weight, with
:meth:`MixedBatch.loss` the loss-side mix ``lam * loss(y_a) + (1 - lam) * loss(y_b)``. It acts on batches,
so it is not a ``[data] augment`` name: ``[data] mix = "cutmix" | "eventmix"`` makes the trainer apply it
(:class:`~spike.train.Trainer` ``batch_mix``).

Randomness: sample ``i`` of epoch ``e`` in a run with seed ``s`` draws from
``np.random.default_rng([SALT, s, e, i])`` (:func:`sample_rng`), so the result depends neither on the
order samples are read, nor on ``num_workers``, and a resumed run replays every epoch exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from spike.core.augment_spec import AUGMENT_SPECS, augment_problem, parse_augment_item  # noqa: F401
from spike.events.augment import area_box, shift_limits

__all__ = ["flip_x", "flip_y", "flip_polarity", "translate", "drop_box", "drop_bins", "random_flip_x",
           "random_flip_y", "random_polarity_flip", "random_translate", "random_drop_area", "random_drop_time",
           "AUGMENTATIONS", "Augment", "parse_augment", "augment_problem", "sample_rng", "AugmentedDataset",
           "MixedBatch", "cutmix", "SALT"]

SALT = 0x5A17AC  # keeps the augmentation stream apart from any other use of (seed, epoch, index)


# --------------------------------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------------------------------


def _dims(x: Tensor) -> tuple[int, int, int, int]:
    """``(T, P, H, W)`` of a sample ``[T, P, H, W]`` or ``[T, C]`` (``P = H = 1``, ``W = C``)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a frames tensor [T, P, H, W] or [T, C], got {type(x).__name__}")
    if x.dim() == 4:
        t, p, h, w = x.shape
        return t, p, h, w
    if x.dim() == 2:
        return x.shape[0], 1, 1, x.shape[1]
    raise ValueError(f"expected frames [T, P, H, W] or [T, C], got shape {tuple(x.shape)}")


# --------------------------------------------------------------------------------------------------
# deterministic operations (new tensors; the input is never modified)
# --------------------------------------------------------------------------------------------------


def flip_x(x: Tensor) -> Tensor:
    """Mirror the last (W) axis: the binning of :func:`spike.events.augment.flip_x`."""
    _dims(x)
    return torch.flip(x, [-1])


def flip_y(x: Tensor) -> Tensor:
    """Mirror the H axis (a copy for ``[T, C]``)."""
    return torch.flip(x, [-2]) if _dims(x) and x.dim() == 4 else x.clone()


def flip_polarity(x: Tensor) -> Tensor:
    """Reverse the P axis (``p -> P - 1 - p``; a copy for ``[T, C]``)."""
    return torch.flip(x, [1]) if _dims(x) and x.dim() == 4 else x.clone()


def translate(x: Tensor, dx: int, dy: int = 0) -> Tensor:
    """Shift by ``(dx, dy)`` pixels, zero fill: the binning of :func:`spike.events.augment.translate`."""
    _, _, h, w = _dims(x)
    out = torch.zeros_like(x)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    if x.dim() == 2:
        out[:, xd] = x[:, xs]
        return out
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    out[..., yd, xd] = x[..., ys, xs]
    return out


def drop_box(x: Tensor, x0: int, y0: int, width: int, height: int) -> Tensor:
    """Zero the pixels ``[x0, x0 + width) x [y0, y0 + height)``."""
    _dims(x)
    out = x.clone()
    if x.dim() == 2:
        out[:, x0:x0 + width] = 0
    else:
        out[..., y0:y0 + height, x0:x0 + width] = 0
    return out


def drop_bins(x: Tensor, t0: int, n: int) -> Tensor:
    """Zero the time bins ``[t0, t0 + n)``."""
    _dims(x)
    out = x.clone()
    out[t0:t0 + n] = 0
    return out


# --------------------------------------------------------------------------------------------------
# random versions: the same draws, in the same order, as the event-level functions
# --------------------------------------------------------------------------------------------------


def random_flip_x(x: Tensor, rng: np.random.Generator, p: float = 0.5) -> Tensor:
    """:func:`flip_x` with probability ``p``. Draws: ``rng.random()``."""
    return flip_x(x) if rng.random() < p else x.clone()


def random_flip_y(x: Tensor, rng: np.random.Generator, p: float = 0.5) -> Tensor:
    """:func:`flip_y` with probability ``p``. Draws: ``rng.random()``."""
    return flip_y(x) if rng.random() < p else x.clone()


def random_polarity_flip(x: Tensor, rng: np.random.Generator, p: float = 0.5) -> Tensor:
    """:func:`flip_polarity` with probability ``p``. Draws: ``rng.random()``."""
    return flip_polarity(x) if rng.random() < p else x.clone()


def random_translate(x: Tensor, rng: np.random.Generator, max_shift=2) -> Tensor:
    """:func:`translate` by ``dx ~ U{-mx..mx}``, ``dy ~ U{-my..my}`` (as :func:`spike.events.augment.random_translate`)."""
    _, _, h, _ = _dims(x)
    mx, my = shift_limits(max_shift, h)
    dx = int(rng.integers(-mx, mx + 1))
    dy = int(rng.integers(-my, my + 1))
    return translate(x, dx, dy)


def random_drop_area(x: Tensor, rng: np.random.Generator, area: float = 0.1) -> Tensor:
    """Zero a random box covering ``area`` of the sensor (:func:`spike.events.augment.area_box`)."""
    _, _, h, w = _dims(x)
    x0, y0, bw, bh = area_box(w, h, rng, area)
    return drop_box(x, x0, y0, bw, bh)


def random_drop_time(x: Tensor, rng: np.random.Generator, ratio: float = 0.1) -> Tensor:
    """Zero ``round(ratio * T)`` consecutive bins at a uniform start. Draws: ``rng.integers(0, T - n + 1)``.

    The event-level :func:`spike.events.augment.drop_by_time` with an interval aligned to the bins.
    """
    t = _dims(x)[0]
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be a fraction in [0, 1), got {ratio!r}")
    n = int(round(ratio * t))
    t0 = int(rng.integers(0, t - n + 1))
    return drop_bins(x, t0, n)


# --------------------------------------------------------------------------------------------------
# ``[data] augment``: "name" or "name:value"
# --------------------------------------------------------------------------------------------------


#: ``name: (function, default value, check of the value, what the value is)`` (the syntax and checks:
#: :mod:`spike.core.augment_spec`)
AUGMENTATIONS: dict[str, tuple[Callable, float, Callable[[float], str | None], str]] = {
    name: (fn, *AUGMENT_SPECS[name]) for name, fn in (
        ("flip_x", random_flip_x), ("flip_y", random_flip_y), ("polarity_flip", random_polarity_flip),
        ("translate", random_translate), ("drop_area", random_drop_area), ("drop_time", random_drop_time))}


@dataclass(frozen=True)
class Augment:
    """One configured step: ``Augment("translate", 4)(x, rng)``."""

    name: str
    value: float

    def __call__(self, x: Tensor, rng: np.random.Generator) -> Tensor:
        fn = AUGMENTATIONS[self.name][0]
        return fn(x, rng, int(self.value) if self.name == "translate" else self.value)


def _parse_one(item) -> Augment:
    """``"translate:4"`` -> ``Augment("translate", 4.0)``; raises ValueError naming the problem."""
    return Augment(*parse_augment_item(item))


def parse_augment(spec: Sequence[str | Augment]) -> list[Augment]:
    """The steps of a ``[data] augment`` list (names, or :class:`Augment` steps), in order.

    Raises:
        ValueError: ``augment[i] = "...": <problem>`` for the first bad entry.
    """
    out = []
    for i, item in enumerate(spec):
        if isinstance(item, Augment):
            out.append(item)
            continue
        try:
            out.append(_parse_one(item))
        except ValueError as e:
            raise ValueError(f"augment[{i}] = {item!r}: {e}") from None
    return out


# --------------------------------------------------------------------------------------------------
# the training-set wrapper
# --------------------------------------------------------------------------------------------------


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` in ``epoch`` of a run seeded ``seed``."""
    return np.random.default_rng([SALT, int(seed), int(epoch), int(index)])


class AugmentedDataset(Dataset):
    """``dataset[i]`` with the configured steps applied, drawn from :func:`sample_rng` ``(seed, epoch, i)``.

    The epoch comes from :meth:`set_epoch`, or from the trainer: pass this object among the
    :class:`~spike.train.trainer.Trainer` callbacks and its ``on_epoch_start`` sets it. Loader workers
    (not persistent) copy the dataset when each epoch's iterator starts, i.e. after ``on_epoch_start``.
    The wrapped dataset (and so the cache behind it) is never modified.
    """

    def __init__(self, dataset: Dataset, augment: Sequence[str | Augment], seed: int = 0, epoch: int = 0):
        self.dataset = dataset
        self.steps = parse_augment(augment)
        self.seed, self.epoch = int(seed), int(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def on_epoch_start(self, trainer, epoch: int) -> None:
        """Trainer callback hook."""
        self.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        x, y = self.dataset[i]
        rng = sample_rng(self.seed, self.epoch, i)
        for step in self.steps:
            x = step(x, rng)
        return x, y


# --------------------------------------------------------------------------------------------------
# mixing (library only)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MixedBatch:
    """A mixed batch: inputs ``x`` whose labels are ``y_a`` with weight ``lam`` and ``y_b`` with ``1 - lam``."""

    x: Tensor
    y_a: Tensor
    y_b: Tensor
    lam: float

    def loss(self, loss_fn: Callable[[Tensor, Tensor], Tensor], out: Tensor) -> Tensor:
        """The loss-side mix ``lam * loss_fn(out, y_a) + (1 - lam) * loss_fn(out, y_b)`` (works with every
        hard-label loss of :mod:`spike.train.losses`; equals cross-entropy on the soft targets for the
        cross-entropy losses)."""
        return self.lam * loss_fn(out, self.y_a) + (1.0 - self.lam) * loss_fn(out, self.y_b)

    def soft_targets(self, n_classes: int) -> Tensor:
        """``[B, C]`` label distributions ``lam * onehot(y_a) + (1 - lam) * onehot(y_b)``."""
        oh = torch.nn.functional.one_hot
        return self.lam * oh(self.y_a, n_classes).float() + (1.0 - self.lam) * oh(self.y_b, n_classes).float()


def cutmix(x: Tensor, y: Tensor, rng: np.random.Generator, alpha: float = 1.0, label_mix: str = "area"
           ) -> MixedBatch:
    """CutMix of a time-first batch ``x [T, B, P, H, W]`` (or ``[T, B, C]``): paste a box of a shuffled
    partner sample into every sample over all time bins.

    Args:
        x, y: the batch and its labels ``[B]`` (as :func:`spike.data.builders.time_first_collate` gives).
        rng: draws, in order: ``perm = rng.permutation(B)``, ``l ~ Beta(alpha, alpha)``, then the box
            position (a box of area ``1 - l``, sides scaled by ``sqrt(1 - l)``).
        label_mix: ``"area"`` (CutMix: ``lam`` = kept area fraction) or ``"events"`` (EventMix-style:
            ``lam`` = fraction of the mixed batch's events that come from the original samples).

    Returns:
        :class:`MixedBatch` with a new ``x``; the input is not modified.
    """
    if x.dim() not in (3, 5):
        raise ValueError(f"cutmix expects a time-first batch [T, B, P, H, W] or [T, B, C], got {tuple(x.shape)}")
    if label_mix not in ("area", "events"):
        raise ValueError(f"label_mix must be 'area' or 'events', got {label_mix!r}")
    b = x.shape[1]
    h, w = (x.shape[-2], x.shape[-1]) if x.dim() == 5 else (1, x.shape[-1])
    perm = torch.as_tensor(rng.permutation(b))
    l0 = float(rng.beta(alpha, alpha))
    side = np.sqrt(1.0 - l0)
    bw = int(round(w * (1.0 - l0))) if h == 1 else int(round(w * side))
    bh = 1 if h == 1 else int(round(h * side))
    x0 = int(rng.integers(0, w - bw + 1))
    y0 = int(rng.integers(0, h - bh + 1))
    mixed = x.clone()
    partner = x[:, perm]
    if x.dim() == 5:
        mixed[..., y0:y0 + bh, x0:x0 + bw] = partner[..., y0:y0 + bh, x0:x0 + bw]
        pasted = partner[..., y0:y0 + bh, x0:x0 + bw]
    else:
        mixed[..., x0:x0 + bw] = partner[..., x0:x0 + bw]
        pasted = partner[..., x0:x0 + bw]
    if label_mix == "area":
        lam = 1.0 - (bw * bh) / float(w * h)
    else:
        total = float(mixed.sum())
        lam = 1.0 - float(pasted.sum()) / total if total > 0 else 1.0 - (bw * bh) / float(w * h)
    return MixedBatch(mixed, y, y[perm], lam)
