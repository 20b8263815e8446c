"""Inference helpers: export to the event-driven CPU path (:mod:`spike.inference.export`).

Kept lean: submodules are imported on first use (``from spike.inference.export import ...``).
"""

from __future__ import annotations

import importlib

__all__ = ["export_event_network", "ExportError"]

_LAZY = {"export_event_network": "spike.inference.export", "ExportError": "spike.inference.export"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'spike.inference' has no attribute {name!r}")
