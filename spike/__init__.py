"""spike: spiking neural networks on event data.

Heavy submodules (torch, numba) are imported lazily on first attribute access, so that
``import spike.events`` never pulls in torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    # name -> module that defines it
    "surrogate": "spike.surrogate",
    "neurons": "spike.neurons",
    "synapses": "spike.synapses",
    "LIF": "spike.neurons",
    "IF": "spike.neurons",
    "Sequential": "spike.synapses",
    "LI": "spike.neurons",
    "UltraLIF": "spike.neurons",
    "UltraDLIF": "spike.neurons",
    "DelayedLinear": "spike.synapses",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        mod = importlib.import_module(_LAZY[name])
        return mod if mod.__name__.endswith("." + name) else getattr(mod, name)
    raise AttributeError(f"module 'spike' has no attribute {name!r}")
