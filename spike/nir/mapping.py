r"""THE mapping between spike's discrete neurons and NIR's continuous-time nodes (one place).

NIR (Pedersen et al. 2024, doi:10.1038/s41467-024-52259-9) states neurons as ODEs:

.. math::
    \text{LIF/LI:}\quad \tau \dot v = (v_\text{leak} - v) + r\,I \qquad
    \text{IF:}\quad \dot v = r\,I \qquad
    \text{LIF/IF:}\ z = H(v - v_\text{threshold}),\ v \leftarrow v_\text{reset}\ \text{if}\ z

spike runs one step of length ``dt`` (:func:`spike.neurons.lif.discretize`) with input held constant
over the step (zero-order hold):

.. math::
    v_t = v_\text{rest} + \beta (v_{t-1} - v_\text{rest}) + g\, x_t

* ``discretization="exp"`` is the exact solution: :math:`\beta = e^{-dt/\tau}`, :math:`g = (1-\beta)\,r`.
* ``discretization="euler"`` is forward Euler: :math:`\beta = 1 - dt/\tau`, :math:`g = (dt/\tau)\,r`
  (what snnTorch's and Norse's NIR importers use).
* IF (:math:`\tau = \infty`): :math:`\beta = 1`, :math:`g = dt\,r`.

spike's input gain is :math:`g = 1` (``decay_input=False``) or :math:`g = 1-\beta` (``decay_input=True``),
so the fields are:

======================  =====================================================================
spike                   NIR
======================  =====================================================================
``tau`` (units of dt)   ``tau`` (LIF, LI; same unit as ``dt``; IF has none)
``v_rest``              ``v_leak`` (IF: metadata ``spike.v_rest`` when non-zero)
``v_th``                ``v_threshold``
``v_reset``             ``v_reset``
``decay_input=True``    ``r = 1``
``decay_input=False``   ``r = 1/(1-β)`` (exp), ``r = τ/dt`` (euler), ``r = 1/dt`` (IF)
reset to_value, immed.  plain NIR (its reset rule; ``reset="to_value"``, ``reset_timing="immediate"``)
other reset / timing    metadata ``spike.reset``, ``spike.reset_timing`` (``to_nir(strict=True)`` raises)
``discretization``      metadata ``spike.discretization`` (import default ``"exp"``)
``detach_reset``        metadata ``spike.detach_reset`` (gradient only)
======================  =====================================================================

CubaLIF (:class:`spike.neurons.CubaLIF`) is the same statement applied to each variable in turn, the
synaptic current first and then the membrane driven by the *new* current, each held constant over
its own step (NIR: :math:`\tau_\text{syn} \dot I = -I + w_\text{in} S`,
:math:`\tau_\text{mem} \dot v = (v_\text{leak} - v) + r I`):

.. math::
    I_t &= \alpha I_{t-1} + g_\text{syn}\, x_t \\
    v_t &= v_\text{leak} + \beta (v_{t-1} - v_\text{leak}) + g_\text{mem}\, I_t

with :math:`\alpha, \beta` as above from ``tau_syn``, ``tau_mem`` and :math:`g_\text{syn} = (1-\alpha)\,w_\text{in}`,
:math:`g_\text{mem} = (1-\beta)\,r` (exp) or :math:`(dt/\tau_\text{syn})\,w_\text{in}`, :math:`(dt/\tau_\text{mem})\,r`
(euler). spike's CubaLIF has unit gains and leaks to 0, so:

======================  =====================================================================
spike ``CubaLIF``       NIR ``CubaLIF``
======================  =====================================================================
``tau``, ``tau_syn``    ``tau_mem``, ``tau_syn``
(gain 1 on ``x``)       ``w_in = 1/(1-α)`` (exp), ``τ_syn/dt`` (euler); import accepts only this
(gain 1 on ``I``)       ``r = 1/(1-β)`` (exp), ``τ_mem/dt`` (euler); import accepts only this
(leaks to 0)            ``v_leak = 0`` (import raises otherwise)
``v_th``, ``v_reset``   ``v_threshold``, ``v_reset``; reset, timing, discretisation as for LIF
======================  =====================================================================

The euler row is what snnTorch writes for ``Synaptic`` (``w_in = τ_syn/dt``, ``r = τ_mem/dt``) and what
Norse's importer runs (``LIBox`` then ``LIFBox``, forward Euler). NIR ``CubaLI`` (no spikes) imports as
``LI(tau=tau_syn) -> LI(tau=tau_mem, v_rest=v_leak)``, the same update with the membrane as output.
SE-adLIF (:class:`spike.neurons.adlif.AdLIF`) has no NIR node: export raises naming the layer.

Import recomputes :math:`\beta` from ``tau`` and the caller's ``dt`` with the same float64 formula
and accepts ``r`` when it matches one of the two gains to ``R_RTOL`` (so a spike export reads back
bit-identically, and a peer's float32 export is accepted); any other ``r`` raises (it would need a
rescaled weight, which is not exact). The surrogate is gradient-only and is not exported.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["R_RTOL", "DEFAULT_DISCRETIZATION", "beta_of", "r_of", "decay_input_of", "check_unit_gain", "uniform",
           "meta_str"]

R_RTOL = 1e-6
"""Relative tolerance on ``r`` at import (float32 rounding of a peer's export)."""

DEFAULT_DISCRETIZATION = "exp"
"""Discretisation used on import when a node has no ``spike.discretization`` metadata."""


def beta_of(tau: float, dt: float, discretization: str) -> float:
    """Per-step decay :math:`\\beta` (same formula as :func:`spike.neurons.lif.discretize`)."""
    if math.isinf(tau):
        return 1.0
    return math.exp(-dt / tau) if discretization == "exp" else 1.0 - dt / tau


def r_of(tau: float, dt: float, discretization: str, decay_input: bool) -> float:
    """NIR ``r`` that gives spike's input gain (1, or ``1 - beta`` with ``decay_input``)."""
    if decay_input:
        return 1.0
    if math.isinf(tau):
        return 1.0 / dt
    if discretization == "exp":
        return 1.0 / (1.0 - beta_of(tau, dt, "exp"))
    return tau / dt


def decay_input_of(r: float, tau: float, dt: float, discretization: str, where: str) -> bool:
    """``decay_input`` that reproduces NIR's ``r`` at this ``dt``; raise ``ValueError`` if none does."""
    for flag in ((False,) if math.isinf(tau) else (False, True)):
        want = r_of(tau, dt, discretization, flag)
        if math.isclose(r, want, rel_tol=R_RTOL, abs_tol=0.0):
            return flag
    gain = r * dt if math.isinf(tau) else r * (1.0 - beta_of(tau, dt, discretization)) \
        if discretization == "exp" else r * dt / tau
    raise ValueError(f"{where}: r={r!r} gives an input gain of {gain!r} per step at dt={dt} "
                     f"({discretization}); spike's neurons have gain 1 or 1-beta only "
                     f"(r={r_of(tau, dt, discretization, False)!r} or r=1)")


def check_unit_gain(r: float, tau: float, dt: float, discretization: str, where: str) -> None:
    """Raise ``ValueError`` unless NIR's gain ``r`` (or ``w_in``) gives spike's input gain 1 at this ``dt``."""
    want = r_of(tau, dt, discretization, False)
    if not math.isclose(r, want, rel_tol=R_RTOL, abs_tol=0.0):
        raise ValueError(f"{where}: {r!r} gives an input gain other than 1 per step at dt={dt} "
                         f"({discretization}); spike's CubaLIF needs {want!r}")


def uniform(node: Any, field: str, where: str) -> float:
    """The single value of a per-neuron NIR array field; raise if the neurons differ."""
    arr = np.asarray(getattr(node, field))
    vals = np.unique(arr)
    if vals.size != 1:
        raise ValueError(f"{where}: field {field!r} differs across neurons ({vals.size} values); "
                         f"spike's neurons share one value per layer")
    return float(vals[0])


def meta_str(meta: dict, key: str, default: str) -> str:
    """A string metadata entry (h5py may return bytes or numpy scalars)."""
    v = meta.get(key, default)
    if isinstance(v, bytes):
        v = v.decode()
    return str(v)
