r"""Heterogeneous recurrent spiking network (HRSNN): one recurrent LIF layer with per-neuron time constants.

The network is ``Linear(n_in, N) -> LIF(recurrent, per-neuron tau) -> Linear(N, n_out)``, a
:class:`spike.synapses.Sequential` with the named layers ``inp``, ``rec`` and ``out``. The hidden
layer follows :mod:`spike.neurons.lif` (subtractive, immediate reset):

.. math::
    h_t = \beta \odot (h_{t-1} - v_\text{th} s_{t-1}) + W_\text{in} u_t + b + W s_{t-1},\qquad
    s_t = H(h_t - v_\text{th}),\qquad \beta_i = e^{-dt/\tau_i}

Heterogeneity (Chakraborty & Mukhopadhyay, ICLR 2024, sec. 2: the HRSNN draws each neuron's membrane
time constant from a gamma distribution): :math:`\tau_i \sim \mathrm{Gamma}(k, \theta)` with shape
:math:`k` = ``tau_shape`` and scale :math:`\theta` = ``tau_mean / tau_shape`` (mean ``tau_mean``, variance
``tau_mean**2 / tau_shape``), clamped below at ``tau_min``. The paper's exact shape/scale values were not
checked; the defaults here are ours (:func:`spike.prune.tau_search.tau_search` searches them).

The recurrent weights start as :math:`W_{ij} \sim \mathcal{N}(0, g^2/N)` (gain ``g``). A binary
``mask`` buffer marks the synapses that exist; a gradient hook multiplies ``dL/dW`` by the mask so a
pruned synapse stays exactly zero under any optimizer whose update is zero for a zero gradient and a
zero weight (SGD, Adam, AdamW).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
from torch import Tensor

from spike.neurons.modules import LIF
from spike.synapses import Linear, Sequential

__all__ = ["HRSNN", "gamma_taus"]


def gamma_taus(n: int, tau_mean: float = 10.0, tau_shape: float = 3.0, tau_min: float = 1.5,
               seed: int = 0) -> Tensor:
    r"""Draw ``n`` membrane time constants :math:`\tau_i \sim \mathrm{Gamma}(k, \tau_\text{mean}/k)`, clamped at ``tau_min``.

    Raises:
        ValueError: ``n < 1`` or a non-positive ``tau_mean`` / ``tau_shape`` / ``tau_min``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    for name, v in (("tau_mean", tau_mean), ("tau_shape", tau_shape), ("tau_min", tau_min)):
        if not (v > 0 and math.isfinite(v)):
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    rng = np.random.default_rng(seed)
    tau = rng.gamma(shape=float(tau_shape), scale=float(tau_mean) / float(tau_shape), size=n)
    return torch.from_numpy(np.maximum(tau, tau_min)).to(torch.float32)


class HRSNN(Sequential):
    """Heterogeneous recurrent SNN ``inp -> rec (recurrent LIF, per-neuron tau) -> out`` over ``[T, B, n_in]``.

    Args:
        n_in, n_hidden, n_out: layer widths.
        tau_mean, tau_shape, tau_min: gamma distribution of the time constants (see :func:`gamma_taus`).
        gain: recurrent weight scale ``g`` (``W ~ N(0, g^2/N)``).
        input_scale: scale of the input weights (default init times this).
        dt, v_th: LIF step and threshold.
        learn_tau: train the time constants (the heterogeneity is kept either way).
        seed: seed of every random draw (weights and taus).

    Shape:
        ``[T, B, n_in] -> SeqOutput(out [T, B, n_out], ...)``; ``record=True`` records the hidden spikes
        under ``records["rec"]``.
    """

    def __init__(self, n_in: int, n_hidden: int, n_out: int, *, tau_mean: float = 10.0, tau_shape: float = 3.0,
                 tau_min: float = 1.5, gain: float = 1.0, input_scale: float = 1.0, dt: float = 1.0,
                 v_th: float = 1.0, learn_tau: bool = True, seed: int = 0, surrogate=None):
        gen = torch.Generator().manual_seed(seed)
        inp = Linear(n_in, n_hidden)
        rec = LIF(tau=tau_mean, dt=dt, v_th=v_th, learn_tau=True, shape=n_hidden, recurrent=True,
                  surrogate=surrogate, backend="reference")
        out = Linear(n_hidden, n_out)
        super().__init__(OrderedDict(inp=inp, rec=rec, out=out))
        with torch.no_grad():
            for lin in (inp, out):
                bound = 1.0 / math.sqrt(lin.in_features)
                lin.weight.copy_(torch.empty_like(lin.weight).uniform_(-bound, bound, generator=gen))
                lin.bias.copy_(torch.empty_like(lin.bias).uniform_(-bound, bound, generator=gen))
            inp.weight.mul_(input_scale)
            rec.w_rec.copy_(torch.randn(n_hidden, n_hidden, generator=gen) * (gain / math.sqrt(n_hidden)))
            rec.log_tau.copy_(torch.log(gamma_taus(n_hidden, tau_mean, tau_shape, tau_min, seed)))
        rec.log_tau.requires_grad_(learn_tau)
        self.register_buffer("mask", torch.ones(n_hidden, n_hidden))
        rec.w_rec.register_hook(self._mask_grad)
        self.config = dict(n_in=n_in, n_hidden=n_hidden, n_out=n_out, tau_mean=tau_mean, tau_shape=tau_shape,
                           tau_min=tau_min, gain=gain, input_scale=input_scale, dt=dt, v_th=v_th,
                           learn_tau=learn_tau, seed=seed)

    def _mask_grad(self, grad: Tensor) -> Tensor:
        return grad * self.mask

    # -- views ---------------------------------------------------------------------------------
    @property
    def n_hidden(self) -> int:
        return int(self.rec.w_rec.shape[0])

    @property
    def w_rec(self) -> Tensor:
        """The recurrent weight ``[N, N]`` (row = postsynaptic neuron, column = presynaptic)."""
        return self.rec.w_rec

    @property
    def taus(self) -> Tensor:
        """Per-neuron membrane time constants ``[N]``."""
        return torch.exp(self.rec.log_tau.detach())

    def synapse_count(self) -> int:
        """Number of recurrent synapses that exist (non-zero mask entries)."""
        return int(self.mask.count_nonzero())

    # -- editing -------------------------------------------------------------------------------
    def set_recurrent(self, weight: Tensor) -> None:
        """Replace the recurrent weight; its non-zero pattern becomes the mask.

        Raises:
            ValueError: wrong shape or non-finite entries.
        """
        n = self.n_hidden
        if tuple(weight.shape) != (n, n):
            raise ValueError(f"recurrent weight must be [{n}, {n}], got {tuple(weight.shape)}")
        if not torch.isfinite(weight).all():
            raise ValueError("recurrent weight holds NaN/Inf")
        with torch.no_grad():
            self.rec.w_rec.copy_(weight.to(self.rec.w_rec.dtype))
            self.mask.copy_((weight != 0).to(self.mask.dtype))

    def subnetwork(self, keep: Tensor) -> "HRSNN":
        """A new network made of the hidden neurons ``keep`` (indices), with their weights, taus and mask.

        Raises:
            ValueError: empty, repeated or out-of-range indices.
        """
        keep = torch.as_tensor(keep, dtype=torch.long).flatten()
        n = self.n_hidden
        if keep.numel() == 0 or keep.unique().numel() != keep.numel() or keep.min() < 0 or keep.max() >= n:
            raise ValueError(f"keep must hold distinct neuron indices in [0, {n}), got {keep.tolist()[:10]}...")
        cfg = dict(self.config, n_hidden=int(keep.numel()))
        sub = HRSNN(**cfg, surrogate=self.rec._template.surrogate)
        with torch.no_grad():
            sub.inp.weight.copy_(self.inp.weight[keep])
            sub.inp.bias.copy_(self.inp.bias[keep])
            sub.rec.log_tau.copy_(self.rec.log_tau[keep])
            sub.out.weight.copy_(self.out.weight[:, keep])
            sub.out.bias.copy_(self.out.bias)
            sub.set_recurrent(self.w_rec[keep][:, keep] * self.mask[keep][:, keep])
        return sub

    def copy(self) -> "HRSNN":
        """An independent copy (same weights, taus and mask)."""
        return self.subnetwork(torch.arange(self.n_hidden))
