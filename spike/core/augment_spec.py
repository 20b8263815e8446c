"""The ``[data] augment`` syntax: ``"name"`` or ``"name:value"``, checked without torch.

The names, their default values and the checks of their values live here, below the config, so
:mod:`spike.core.config` can validate an augmentation list without importing the data layer;
:mod:`spike.data.augment` maps each name to its function.
"""

from __future__ import annotations

import difflib
import math
from typing import Callable

__all__ = ["AUGMENT_SPECS", "parse_augment_item", "augment_problem"]


def _probability(v: float) -> str | None:
    return None if 0.0 <= v <= 1.0 else "must be a probability in [0, 1]"


def _fraction(v: float) -> str | None:
    return None if 0.0 <= v < 1.0 else "must be a fraction in [0, 1)"


def _pixels(v: float) -> str | None:
    return None if v >= 0 and float(v).is_integer() else "must be a whole number of pixels >= 0"


#: ``name: (default value, check of the value, what the value is)``
AUGMENT_SPECS: dict[str, tuple[float, Callable[[float], str | None], str]] = {
    "flip_x": (0.5, _probability, "probability"),
    "flip_y": (0.5, _probability, "probability"),
    "polarity_flip": (0.5, _probability, "probability"),
    "translate": (2, _pixels, "largest shift in pixels"),
    "drop_area": (0.1, _fraction, "fraction of the sensor area"),
    "drop_time": (0.1, _fraction, "fraction of the time bins"),
}

_LIBRARY_ONLY = {"cutmix": "cutmix mixes two samples and their labels, so it acts on batches, not on one sample: "
                           "set [data] mix = \"cutmix\" (with mix_alpha, mix_prob) instead of an augment name",
                 "eventmix": "eventmix mixes two samples and their labels, so it acts on batches, not on one sample: "
                             "set [data] mix = \"eventmix\" (with mix_alpha, mix_prob) instead of an augment name"}


def parse_augment_item(item) -> tuple[str, float]:
    """``"translate:4"`` -> ``("translate", 4.0)``; raises ValueError naming the problem."""
    if not isinstance(item, str):
        raise ValueError('must be an augmentation name such as "flip_x" or "translate:4"')
    name, sep, raw = item.strip().partition(":")
    name = name.strip()
    if name in _LIBRARY_ONLY:
        raise ValueError(_LIBRARY_ONLY[name])
    if name not in AUGMENT_SPECS:
        hint = difflib.get_close_matches(name, list(AUGMENT_SPECS), n=1)
        raise ValueError(f"unknown augmentation {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                         + f"; known: {', '.join(sorted(AUGMENT_SPECS))}")
    default, check, what = AUGMENT_SPECS[name]
    if not sep:
        return name, float(default)
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}: the value after ':' must be a number ({what}), got {raw.strip()!r}") from None
    problem = check(value) if math.isfinite(value) else "must be finite"
    if problem:
        raise ValueError(f"{name}:{raw.strip()}: the {what} {problem}")
    return name, value


def augment_problem(item) -> str | None:
    """What is wrong with one ``[data] augment`` entry, or None."""
    try:
        parse_augment_item(item)
    except ValueError as e:
        return str(e)
    return None
