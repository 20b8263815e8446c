"""Build the standard networks of the configs from a :class:`~spike.core.config.ModelConfig`."""

from __future__ import annotations

import math

from torch import nn

from spike.core.config import ConfigError, ModelConfig
from spike.neurons import IF, LI, LIF
from spike.surrogate import get_surrogate
from spike.synapses import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Flatten, Linear, SharedDropout,
                            Sequential)

__all__ = ["build_model", "neuron_from_config"]


def neuron_from_config(m: ModelConfig, shape: int | tuple | None = None) -> nn.Module:
    """One spiking neuron layer as configured."""
    sur = get_surrogate(m.surrogate, m.surrogate_param or None)
    common = dict(v_th=m.v_th, v_reset=m.v_reset, reset=m.reset, reset_timing=m.reset_timing,
                  detach_reset=m.detach_reset, surrogate=sur, backend=m.backend)
    if m.neuron == "lif":
        return LIF(tau=m.tau, dt=m.dt, learn_tau=m.learn_tau, recurrent=m.recurrent,
                   shape=shape if (m.learn_tau or m.recurrent) else None, **common)
    if m.neuron == "if":
        return IF(dt=m.dt, recurrent=m.recurrent, shape=shape if m.recurrent else None, **common)
    raise ConfigError(f"[model] neuron must be 'lif' or 'if', got {m.neuron!r}")


def build_model(m: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> Sequential:
    """A feed-forward SNN for inputs ``[T, B, *input_shape]`` and ``n_classes`` outputs.

    ``kind="mlp"``: Flatten → (Linear → [BN] → LIF → [Dropout]) × len(hidden) → Linear → readout.
    ``kind="conv"``: (Conv3x3 → [BN] → LIF → AvgPool2) × len(hidden) → Flatten → Linear → readout.
    The readout is a non-spiking leaky integrator (``readout="li"``) or a spiking LIF (``"spikes"``).
    """
    layers: list[nn.Module] = []
    if m.kind == "mlp":
        layers.append(Flatten())
        n_in = math.prod(input_shape)
        for h in m.hidden:
            layers.append(Linear(n_in, int(h)))
            if m.batchnorm:
                layers.append(BatchNorm1d(int(h)))
            layers.append(neuron_from_config(m, int(h)))
            if m.dropout > 0:
                layers.append(SharedDropout(m.dropout))
            n_in = int(h)
    elif m.kind == "conv":
        if len(input_shape) != 3:
            raise ConfigError(f"[model] kind='conv' needs [C, H, W] inputs, got {input_shape}")
        c, hgt, wid = input_shape
        for ch in m.hidden:
            layers.append(Conv2d(c, int(ch), 3, padding=1, bias=not m.batchnorm))
            if m.batchnorm:
                layers.append(BatchNorm2d(int(ch)))
            layers.append(neuron_from_config(m, (int(ch), hgt, wid)))
            layers.append(AvgPool2d(2))
            c, hgt, wid = int(ch), hgt // 2, wid // 2
            if m.dropout > 0:
                layers.append(SharedDropout(m.dropout))
        layers.append(Flatten())
        n_in = c * hgt * wid
    else:
        raise ConfigError(f"[model] kind must be 'mlp' or 'conv', got {m.kind!r}")
    layers.append(Linear(n_in, n_classes))
    if m.readout == "li":
        layers.append(LI(tau=m.readout_tau, dt=m.dt, backend=m.backend))
    elif m.readout == "spikes":
        layers.append(neuron_from_config(m, n_classes))
    else:
        raise ConfigError(f"[model] readout must be 'li' or 'spikes', got {m.readout!r}")
    return Sequential(*layers)
