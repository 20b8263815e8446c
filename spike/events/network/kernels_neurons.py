r"""Numba step of the two-variable neuron models on the event path: CUBA-LIF / CUBA-LI and SE-adLIF.

Their second state variable (synaptic current :math:`I`, adaptation :math:`w`) couples to the
membrane, so an input-free step is not a pure decay of one variable; these layers are therefore
updated every step, every neuron (like the LIF path's layers with a bias), and nothing is replayed
lazily. Each update is the reference step in the same operations, order and dtype, so the dynamics are
bit-identical:

* CUBA (:func:`spike.neurons.cuba.cuba_step`; :math:`v_\text{rest} \ne 0` only for the fused NIR
  ``CubaLI`` readout, the form of :func:`spike.neurons.lif.lif_step`'s leak):

  .. math::
      I_t = \alpha I_{t-1} + x_t,\quad h_t = \beta v_{t-1} + I_t,\quad s_t = H(h_t - v_\text{th}),\quad
      v_t = R(h_t, s_t)\quad(\text{deferred: } v_t = h_t = R(\beta v_{t-1} + I_t, s_{t-1}))

* SE-adLIF (:func:`spike.neurons.adlif.adlif_step`, Baronig et al. 2024, arXiv:2408.07517):

  .. math::
      h_t = \alpha u_{t-1} + (1-\alpha)(x_t - w_{t-1}),\quad s_t = H(h_t - \vartheta),\quad
      u_t = R(h_t, s_t),\quad w_t = \beta w_{t-1} + (1-\beta)(q_a u_t + q_b s_t)

The reset :math:`R` uses the LIF path's value-identical branch-free form
:math:`h (1 - s\,r_a) - s\,r_b`. State: membrane at ``L_V``, spikes at ``L_S``, the second variable
at ``L_AUX`` (offsets of :mod:`spike.events.network.program`); coefficient rows from ``C_POFF`` in
``Program.beta``.

Note: numba's on-disk cache of :mod:`.kernels` may keep a stale copy of this step after an edit here;
clear the ``*.nbi`` / ``*.nbc`` files in ``__pycache__`` (or set ``NUMBA_CACHE_DIR``) when changing it.
"""

from __future__ import annotations

from numba import njit

from spike.events.network.program import (
    _M_CUBA, _OUT_MEMBRANE, _R_SUB, _R_VAL, C_BOFF, C_DEFER, C_DEPTH, C_LAST, C_MODEL, C_NOFF, C_NOUT, C_OUT,
    C_POFF, C_RECOFF, C_RESET, C_ROFF, C_RSOFF, F_ONE, F_VRESET, F_VREST, F_VTH, F_ZERO, L_AUX, L_FULL, L_RANY,
    L_RING, L_RTN, L_S, L_V)

__all__ = ["neurons_coupled"]


@njit(cache=True)
def neurons_coupled(iops, fops, op, Bv, coef, lay, fs, ist, t, eo_i, eo_v, out, rec, do_rec,
                    cnt):  # pragma: no cover - numba
    """Update every neuron of the CUBA / adLIF stage ``op`` at step ``t`` with the input current in
    its ring slot (plus the bias); write the spikes at ``(eo_i, eo_v)`` (or the readout ``out[t]``
    for the last layer) and return their number."""
    n = iops[op, C_NOUT]
    noff = iops[op, C_NOFF]
    poff = iops[op, C_POFF]
    boff = iops[op, C_BOFF]
    depth = iops[op, C_DEPTH]
    rbase = lay[L_RING] + iops[op, C_ROFF] + (t % depth) * n
    reset = iops[op, C_RESET]
    deferred = iops[op, C_DEFER]
    vth, vreset, vrest = fops[op, F_VTH], fops[op, F_VRESET], fops[op, F_VREST]
    zero, one = fops[op, F_ZERO], fops[op, F_ONE]
    ra = one if reset == _R_VAL else zero  # R(h, s) = h (1 - s ra) - s rb
    rb = vth if reset == _R_SUB else (-vreset if reset == _R_VAL else zero)
    v = fs[lay[L_V] + noff:lay[L_V] + noff + n]
    s = fs[lay[L_S] + noff:lay[L_S] + noff + n]
    u = fs[lay[L_AUX] + noff:lay[L_AUX] + noff + n]  # CUBA: current I; adLIF: adaptation w
    ring = fs[rbase:rbase + n]
    if boff >= 0:
        for j in range(n):
            ring[j] = ring[j] + Bv[boff + j]
    if iops[op, C_MODEL] == _M_CUBA:
        al = coef[poff:poff + n]
        be = coef[poff + n:poff + 2 * n]
        for j in range(n):
            cur = al[j] * u[j] + ring[j]
            lk = be[j] * v[j] if vrest == zero else vrest + be[j] * (v[j] - vrest)
            h = lk + cur
            ring[j] = zero
            if deferred:
                sp = s[j]
                h = h * (one - sp * ra) - sp * rb
                sn = one if h - vth >= zero else zero
                v[j] = h
            else:
                sn = one if h - vth >= zero else zero
                v[j] = h * (one - sn * ra) - sn * rb
            u[j] = cur
            s[j] = sn
    else:
        al = coef[poff:poff + n]
        oal = coef[poff + n:poff + 2 * n]
        be = coef[poff + 2 * n:poff + 3 * n]
        obe = coef[poff + 3 * n:poff + 4 * n]
        qa = coef[poff + 4 * n:poff + 5 * n]
        qb = coef[poff + 5 * n:poff + 6 * n]
        for j in range(n):
            h = al[j] * v[j] + oal[j] * (ring[j] - u[j])
            ring[j] = zero
            sn = one if h - vth >= zero else zero
            un = h * (one - sn * ra) - sn * rb
            u[j] = be[j] * u[j] + obe[j] * (qa[j] * un + qb[j] * sn)
            v[j] = un
            s[j] = sn
    # outputs: readout membrane, or the spikes in index order
    is_last = iops[op, C_LAST]
    recoff = iops[op, C_RECOFF]
    nout_ev = 0
    if iops[op, C_OUT] == _OUT_MEMBRANE:
        if is_last:
            for j in range(n):
                out[t, j] = v[j]
    else:
        for j in range(n):
            if s[j] != zero:
                if is_last:
                    out[t, j] = one
                else:
                    ist[eo_i + nout_ev] = j
                    fs[eo_v + nout_ev] = one
                    nout_ev += 1
                if do_rec:
                    rec[t, recoff + j] = 1
    slot = lay[L_RTN] + iops[op, C_RSOFF] + t % depth
    ist[slot] = 0  # the touched list of this slot (a conv / identity scatter) is consumed
    ist[lay[L_RANY] + iops[op, C_RSOFF] + t % depth] = 0
    ist[lay[L_FULL] + op] = t
    cnt[op, 1] += n
    return nout_ev
