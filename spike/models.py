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
        return LIF(tau=m.tau, dt=m.dt, learn_tau=m.learn_tau, recurrent=m.recurrent, discretization=m.discretization,
                   decay_input=m.decay_input, v_rest=m.v_rest,
                   shape=shape if (m.learn_tau or m.recurrent) else None, **common)
    if m.neuron in ("ultralif", "ultradlif"):
        return ultra_neuron_from_config(m)
    if m.neuron == "if":
        return IF(dt=m.dt, recurrent=m.recurrent, v_rest=m.v_rest, shape=shape if m.recurrent else None, **common)
    if m.neuron in ("cubalif", "adlif"):
        return _adaptive_neuron_from_config(m, shape, common)
    raise ConfigError("[model] neuron must be 'lif', 'if', 'ultralif', 'ultradlif', 'cubalif' or 'adlif', "
                      f"got {m.neuron!r}")


def _adaptive_neuron_from_config(m: ModelConfig, shape: int | tuple | None, common: dict) -> nn.Module:
    """CubaLIF (:mod:`spike.neurons.cuba`) or SE-adLIF (:mod:`spike.neurons.adlif`) as configured."""
    from spike.neurons.adlif import AdLIF
    from spike.neurons.cuba import CubaLIF

    try:
        if m.neuron == "cubalif":
            return CubaLIF(tau=m.tau, tau_syn=m.tau_syn, dt=m.dt, learn_tau=m.learn_tau, recurrent=m.recurrent,
                           discretization=m.discretization,
                           shape=shape if (m.learn_tau or m.recurrent) else None, **common)
        if m.reset_timing != "immediate":
            raise ValueError("SE-adLIF resets immediately; reset_timing must be 'immediate'")
        common = {k: v for k, v in common.items() if k != "reset_timing"}
        per_neuron = m.learn_tau or m.recurrent or m.learn_adapt
        return AdLIF(tau=m.tau, tau_w=m.adapt_tau, dt=m.dt, a=m.adapt_a, b=m.adapt_b, q=m.adapt_q,
                     learn_tau=m.learn_tau, learn_ab=m.learn_adapt, recurrent=m.recurrent,
                     discretization=m.discretization, shape=shape if per_neuron else None, **common)
    except ValueError as e:
        raise ConfigError(f"[model] {m.neuron}: {e}") from None


#: ``[model] kind`` values built by :func:`spike.archs.build_arch`.
ARCH_KINDS = ("sew_resnet", "spiking_resnet", "max_resnet", "spikformer", "max_former")


def _arch(m: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """A deep architecture (:mod:`spike.archs`) with ``[model] arch`` options and the ``[model]`` neuron.

    Every spiking neuron of the network is ``[model] neuron`` with the ``[model]`` neuron settings
    (``tau``, ``dt``, ``v_th``, reset, surrogate, backend, ...); an architecture's own overrides (the
    attention neuron's ``v_th``) are applied on top. The readout is ``[model] readout = "li"`` (a leaky
    integrator after the linear head) or the plain head with ``readout = "linear"``.
    """
    import dataclasses

    from spike.archs import OPTIONS, build_arch

    if len(input_shape) != 3:
        raise ConfigError(f"[model] kind={m.kind!r} needs [C, H, W] inputs, got {input_shape}")
    if m.recurrent:
        raise ConfigError(f"[model] kind={m.kind!r}: recurrent neurons are not supported in deep architectures")
    opts = dict(m.arch)
    unknown = sorted(set(opts) - set(OPTIONS[m.kind]))
    if unknown:
        raise ConfigError(f"[model] arch: unknown option(s) {unknown} for kind={m.kind!r}; it takes "
                          f"{sorted(OPTIONS[m.kind])} (neuron settings come from [model] itself)")
    if m.readout not in ("li", "linear"):
        raise ConfigError(f"[model] readout for kind={m.kind!r} must be 'li' or 'linear', got {m.readout!r}")
    if m.neuron in ("ultralif", "ultradlif"):
        raise ConfigError(f"[model] kind={m.kind!r}: neuron {m.neuron!r} is not supported in deep architectures")
    neuron_from_config(m, None)  # validate the neuron settings once, here

    def neuron(**overrides) -> nn.Module:
        return neuron_from_config(dataclasses.replace(m, **overrides), None)

    try:
        return build_arch(m.kind, input_shape, n_classes, neuron=neuron, readout=m.readout,
                          readout_tau=m.readout_tau, **opts)
    except ValueError as e:
        raise ConfigError(f"[model] arch: {e}") from None


def ultra_neuron_from_config(m: ModelConfig) -> nn.Module:
    """UltraLIF / UltraDLIF (:mod:`spike.neurons.ultralif`) as configured (no surrogate, no reset options)."""
    from spike.neurons.ultra_modules import UltraDLIF, UltraLIF

    common = dict(v_th=m.v_th, eps=m.ultra_eps, eps_range=(m.ultra_eps_min, m.ultra_eps_max),
                  learn_eps=m.ultra_learn_eps, sparsity=m.sparsity_penalty)
    try:
        if m.neuron == "ultralif":
            return UltraLIF(tau=m.ultra_tau, learn_tau=m.learn_tau, **common)
        return UltraDLIF(boundary=m.ultra_boundary, **common)
    except ValueError as e:
        raise ConfigError(f"[model] {m.neuron}: {e}") from None


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
    elif m.kind == "delay_mlp":
        return _delay_mlp(m, input_shape, n_classes)
    elif m.kind in ARCH_KINDS:
        return _arch(m, input_shape, n_classes)
    else:
        raise ConfigError(f"[model] kind must be one of 'mlp', 'conv', 'delay_mlp', {', '.join(map(repr, ARCH_KINDS))}; "
                          f"got {m.kind!r}")
    layers.append(Linear(n_in, n_classes))
    if m.readout == "li":
        layers.append(_li_readout(m))
    elif m.readout == "spikes":
        layers.append(neuron_from_config(m, n_classes))
    elif m.readout != "linear":
        raise ConfigError(f"[model] readout must be 'li', 'spikes' or 'linear', got {m.readout!r}")
    return Sequential(*layers)


def _li_readout(m: ModelConfig) -> nn.Module:
    """The leaky-integrator readout: ``readout_tau``, with the hidden LIF's input scaling and rest (Norse-style
    ``decay_input`` graphs import whole)."""
    return LI(tau=m.readout_tau, dt=m.dt, backend=m.backend, discretization=m.discretization,
              decay_input=m.decay_input, v_rest=m.v_rest)


def _readout(m: ModelConfig, n_classes: int) -> nn.Module:
    if m.readout == "li":
        return _li_readout(m)
    if m.readout == "spikes":
        return neuron_from_config(m, n_classes)
    raise ConfigError(f"[model] readout must be 'li' or 'spikes', got {m.readout!r}")


def _delay_mlp(m: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> Sequential:
    """``kind="delay_mlp"`` (Hammouamri et al. 2024, arXiv:2306.17670): Flatten →
    ([TimePad] → DelayedLinear → [BN] → neuron → [Dropout]) × len(hidden) → [TimePad] → DelayedLinear → readout."""
    from spike.synapses.delays import DelayedLinear, TimePad, check_max_delay

    try:
        pad = check_max_delay(m.max_delay) // 2 if m.delay_pad < 0 else m.delay_pad
        sigma = m.delay_sigma_init if m.delay_sigma_init > 0 else None
        def delayed(n_in: int, n_out: int) -> list[nn.Module]:
            return ([TimePad(pad)] if pad else []) + [DelayedLinear(n_in, n_out, m.max_delay, sigma=sigma)]

        layers: list[nn.Module] = [Flatten()]
        n_in = math.prod(input_shape)
        for h in m.hidden:
            layers += delayed(n_in, int(h))
            if m.batchnorm:
                layers.append(BatchNorm1d(int(h)))
            layers.append(neuron_from_config(m, int(h)))
            if m.dropout > 0:
                layers.append(SharedDropout(m.dropout))
            n_in = int(h)
        layers += delayed(n_in, n_classes)
    except ValueError as e:
        raise ConfigError(f"[model] delay_mlp: {e}") from None
    layers.append(_readout(m, n_classes))
    return Sequential(*layers)
