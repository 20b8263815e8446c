"""Inference helpers: export to the event-driven CPU path (:mod:`spike.inference.export`), anytime
inference (:mod:`spike.inference.anytime`) and checkpoint -> recording deployment
(:mod:`spike.inference.deploy`).

Kept lean: submodules are imported on first use (``from spike.inference.export import ...``).
"""

from __future__ import annotations

import importlib

__all__ = ["export_event_network", "ExportError", "load_deployable", "bin_recording", "stream_recording",
           "run_recordings"]

_LAZY = {"export_event_network": "spike.inference.export", "ExportError": "spike.inference.export",
         "load_deployable": "spike.inference.deploy", "bin_recording": "spike.inference.deploy",
         "stream_recording": "spike.inference.deploy", "run_recordings": "spike.inference.deploy"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'spike.inference' has no attribute {name!r}")
