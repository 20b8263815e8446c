"""The numba kernels of the fused CPU LIF backend (:mod:`spike.backends.numba_lif`, which documents the
equations and the memory layout). Two backward passes share one forward kernel:

* :func:`_bwd_chunks_h` reads the pre-reset membrane ``h`` the forward saved (``save_h``): the fast path
  of plain BPTT;
* :func:`_bwd_chunks_bits` recomputes each neuron chunk's membranes from the saved input and the spikes
  saved as bits (``save_bits``): no ``[T, M]`` float buffer is kept between the passes; used under
  :mod:`spike.train.memory`'s ``packed`` / ``mesa8`` hooks.

Both run the same reverse pass, :func:`_bwd_reverse`, which takes the membranes from wherever they are
and the spikes from the bits or from the membranes.

``cst`` is the per-call constant vector laid out by :data:`CONSTANTS`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: layout of the per-call constant vector ``cst`` (in x's dtype)
_VTH, _VRESET, _VREST, _ONE, _ZERO, _RA, _RB, _KD, _SG1, _SG2 = range(10)
CONSTANTS = ("v_th", "v_reset", "v_rest", "one", "zero", "ra", "rb", "kd", "sg1", "sg2")

_JIT = dict(cache=True, fastmath=False, error_model="numpy")  # exact IEEE order, no zero-div checks


@njit(**_JIT)
def surrogate_grad(ht, vth, kind, c1, c2, one, zero, out):  # pragma: no cover - compiled
    """``out[j] = sigma'(ht[j] - vth)`` for the surrogate ``kind`` (formulas of spike.surrogate; shared by
    the LIF, CubaLIF and SE-adLIF kernels)."""
    n = out.shape[0]
    if kind == 0:
        for j in range(n):
            out[j] = _sg0(ht[j] - vth, c1, c2, one, zero)
    elif kind == 1:
        for j in range(n):
            out[j] = _sg1(ht[j] - vth, c1, c2, one, zero)
    elif kind == 2:
        for j in range(n):
            out[j] = _sg2(ht[j] - vth, c1, c2, one, zero)
    else:
        for j in range(n):
            out[j] = _sg3(ht[j] - vth, c1, c2, one, zero)


# sigma'(d) of each surrogate kind, one scalar each (inlined: the loops that call them vectorise)
@njit(inline="always", **_JIT)
def _sg0(d, c1, c2, one, zero):  # pragma: no cover - compiled; ATan
    w = c2 * d
    return c1 * (one / (one + w * w))


@njit(inline="always", **_JIT)
def _sg1(d, c1, c2, one, zero):  # pragma: no cover - compiled; sigmoid
    e = one / (one + math.exp(-(c1 * d)))
    return c1 * e * (one - e)


@njit(inline="always", **_JIT)
def _sg2(d, c1, c2, one, zero):  # pragma: no cover - compiled; fast sigmoid
    q = one + c1 * abs(d)
    return one / (q * q)


@njit(inline="always", **_JIT)
def _sg3(d, c1, c2, one, zero):  # pragma: no cover - compiled; triangle
    w = one - abs(d) / c1
    return (w if w > zero else zero) / c1


@njit(inline="always", **_JIT)
def step_immediate(xt, b, g, v, st, ht, save_h, n, vth, vr, one, zero, ra, rb):  # pragma: no cover - compiled
    """One immediate-reset step of ``n`` neurons: spikes into ``st``, the pre-reset membrane into ``ht``
    when ``save_h``, the state ``v`` in place (shared by the LIF kernel and the fused LIF + pool)."""
    if save_h:
        for j in range(n):
            hh = (vr + b[j] * (v[j] - vr)) + g[j] * xt[j]
            sn = one if hh - vth >= zero else zero
            st[j] = sn
            ht[j] = hh
            v[j] = hh * (one - sn * ra) - sn * rb
    else:
        for j in range(n):
            hh = (vr + b[j] * (v[j] - vr)) + g[j] * xt[j]
            sn = one if hh - vth >= zero else zero
            st[j] = sn
            v[j] = hh * (one - sn * ra) - sn * rb


@njit(**_JIT)
def _fwd_chunk(x, v0, s0, beta, gain, cst, deferred, record, save_bits, save_h, lo, hi,
               spikes, sbits, hsave, trace, v_out, s_out):  # pragma: no cover - compiled
    # neurons lo:hi over all steps (lo a multiple of 8). x, spikes: [T, M]; trace: [T, M] when
    # recorded, else a [1, M] scratch row; sbits: the spikes as bits [T, ceil(M/8)] (neuron m in
    # bit m % 8 of byte m // 8) when saved, else a scratch row. Rows are sliced per step
    # (xt = x[t, lo:hi]): 1-D loops vectorise.
    T = x.shape[0]
    n = hi - lo
    vth, vr, one, zero, ra, rb = cst[_VTH], cst[_VREST], cst[_ONE], cst[_ZERO], cst[_RA], cst[_RB]
    b = beta[lo:hi]
    g = gain[lo:hi]
    v = v0[lo:hi].copy()
    s = s0[lo:hi].copy()
    for t in range(T):
        xt = x[t, lo:hi]
        st = spikes[t, lo:hi]
        rt = trace[t * record, lo:hi]
        ht = hsave[t * save_h, lo:hi]
        if deferred:
            for j in range(n):
                sp = s[j]
                leak = vr + b[j] * (v[j] - vr)
                hh = (leak * (one - sp * ra) - sp * rb) + g[j] * xt[j]
                sn = one if hh - vth >= zero else zero
                st[j] = sn
                ht[j] = hh
                rt[j] = hh
                v[j] = hh
                s[j] = sn
        elif record:
            for j in range(n):
                leak = vr + b[j] * (v[j] - vr)
                hh = leak + g[j] * xt[j]
                sn = one if hh - vth >= zero else zero
                st[j] = sn
                ht[j] = hh
                vn = hh * (one - sn * ra) - sn * rb
                rt[j] = vn
                v[j] = vn
                s[j] = sn
        else:  # the same step with only the stores it needs (s is the last row of spikes)
            step_immediate(xt, b, g, v, st, ht, save_h, n, vth, vr, one, zero, ra, rb)
        if save_bits:
            _tobits(st, sbits[t], lo, zero)
    if T > 0 and not deferred and not record:
        s[:] = spikes[T - 1, lo:hi]
    v_out[lo:hi] = v
    s_out[lo:hi] = s


@njit(**_JIT)
def _tobits(st, row, lo, zero):  # pragma: no cover - compiled
    # spikes st (neurons lo..lo+len-1, lo a multiple of 8) into their bytes of the bit row
    n = st.shape[0]
    b0 = lo >> 3
    for k in range((n + 7) >> 3):
        byte = 0
        for q in range(8):
            j = 8 * k + q
            if j < n and st[j] != zero:
                byte |= 1 << q
        row[b0 + k] = byte


@njit(**_JIT)
def _unbits(row, lo, out, one, zero):  # pragma: no cover - compiled
    for j in range(out.shape[0]):
        m = lo + j
        out[j] = one if (row[m >> 3] >> (m & 7)) & 1 else zero




@njit(**_JIT)
def _bwd_chunk_bits(x, spk, v0, s0, beta, gain, cst, sg_kind, deferred, temporal, has_gs, has_gtr, need_gb,
                    need_gg, lo, hi, gs, gs_off, gtr, gvT, gsT, gx, gv0, gs0, gb_out, gg_out, hbuf):  # pragma: no cover
    # neurons lo:hi: recompute the pre-reset membrane of every step into this thread's hbuf with the
    # forward's operations in its order and the resets of the saved spikes (bit-identical to the
    # forward's for an exact x), then the reverse pass. spk: the spikes as bits [T, ceil(M/8)]; gx may be
    # x's own buffer (x[:, lo:hi] is read here, before the reverse pass writes gx[:, lo:hi]).
    T = x.shape[0]
    n = hi - lo
    vr, one, zero, ra, rb = cst[_VREST], cst[_ONE], cst[_ZERO], cst[_RA], cst[_RB]
    b = beta[lo:hi]
    g = gain[lo:hi]
    hb = hbuf[:, :n]  # [T, n]: this thread's scratch, reused chunk after chunk (no fresh pages)
    st = np.empty(n, x.dtype)  # spikes s_t
    v = v0[lo:hi].copy()
    s = s0[lo:hi].copy()
    for t in range(T):
        xt = x[t, lo:hi]
        _unbits(spk[t], lo, st, one, zero)
        hr = hb[t]
        if deferred:
            for j in range(n):
                sp_ = s[j]
                leak = vr + b[j] * (v[j] - vr)
                hh = (leak * (one - sp_ * ra) - sp_ * rb) + g[j] * xt[j]
                hr[j] = hh
                v[j] = hh
                s[j] = st[j]
        else:
            for j in range(n):
                leak = vr + b[j] * (v[j] - vr)
                hh = leak + g[j] * xt[j]
                hr[j] = hh
                sn = st[j]
                v[j] = hh * (one - sn * ra) - sn * rb
    _bwd_reverse(x, hbuf, 0, spk, 1, v0, s0, beta, gain, cst, sg_kind, deferred, temporal, has_gs, has_gtr, need_gb,
                 need_gg, lo, hi, gs, gs_off, gtr, gvT, gsT, gx, gv0, gs0, gb_out, gg_out)


@njit(**_JIT)
def _spikes_of(hs, ho, spk, from_bits, t, lo, out, vth, one, zero):  # pragma: no cover - compiled
    # the spikes s_t of neurons lo:lo+len(out): from the saved bits, or H(h_t - v_th) of the saved h
    if from_bits:
        _unbits(spk[t], lo, out, one, zero)
    else:
        ht = hs[t, ho:ho + out.shape[0]]
        for j in range(out.shape[0]):
            out[j] = one if ht[j] - vth >= zero else zero


@njit(**_JIT)
def _bwd_reverse(x, hs, ho, spk, from_bits, v0, s0, beta, gain, cst, sg_kind, deferred, temporal, has_gs, has_gtr,
                 need_gb, need_gg, lo, hi, gs, gs_off, gtr, gvT, gsT, gx, gv0, gs0, gb_out, gg_out):  # pragma: no cover
    # BPTT through neurons lo:hi, time reversed. hs[:, ho:ho + n]: their pre-reset membranes (the saved
    # [T, M] h with ho = lo, or a chunk's recomputed [T, n] buffer with ho = 0); spikes from the saved
    # bits (from_bits) or from h. gx: [T, M], which may be the rows 1..T of h's buffer (row t+1 of h is
    # dead by step t) or x's own buffer (then the gain gradient, which reads x, is not asked for);
    # gs/gtr: [T, M] or one [1, M] row (has_* = 0); the rest [M]. Few passes per step: each extra pass
    # costs as much as the math. temporal = 0 (SLTT): the carries to step t-1 (gv, gsc) are dropped
    # after every step.
    T = x.shape[0]
    n = hi - lo
    vth, vr, one, zero = cst[_VTH], cst[_VREST], cst[_ONE], cst[_ZERO]
    ra, rb, kd, c1, c2 = cst[_RA], cst[_RB], cst[_KD], cst[_SG1], cst[_SG2]
    b = beta[lo:hi]
    g = gain[lo:hi]
    gv = gvT[lo:hi].copy()   # dL/d(state v) flowing back into step t
    gsc = gsT[lo:hi].copy()  # dL/d(s_t) from outside the step (final state, deferred reset)
    snt = np.empty(n, x.dtype)  # spikes s_t
    spp = np.empty(n, x.dtype)  # spikes s_{t-1}
    sg = np.empty(n, x.dtype)  # surrogate derivative at step t
    vp = np.empty(n, x.dtype)  # state before step t: membrane v_{t-1} ...
    sp = np.empty(n, x.dtype)  # ... and spikes s_{t-1}
    gl = np.empty(n, x.dtype)  # dL/d(leak_t)
    gh = np.empty(n, x.dtype)  # dL/d(h_t) (deferred only; equal to gl when immediate)
    gbl = np.zeros(n, x.dtype)
    ggl = np.zeros(n, x.dtype)
    for t in range(T - 1, -1, -1):
        ht = hs[t, ho:ho + n]
        if not deferred:
            _spikes_of(hs, ho, spk, from_bits, t, lo, snt, vth, one, zero)
        gst = gs[t * has_gs, lo - gs_off:hi - gs_off]  # gs holds the neurons from gs_off on
        grt = gtr[t * has_gtr, lo:hi]
        surrogate_grad(ht, vth, sg_kind, c1, c2, one, zero, sg)  # sigma'(h_t - v_th)
        # state before step t
        if deferred or need_gb:
            if t == 0:
                vp[:] = v0[lo:hi]
                sp[:] = s0[lo:hi]
            else:
                hp = hs[t - 1, ho:ho + n]
                _spikes_of(hs, ho, spk, from_bits, t - 1, lo, spp, vth, one, zero)
                if deferred:
                    for j in range(n):
                        vp[j] = hp[j]
                        sp[j] = spp[j]
                else:
                    for j in range(n):
                        sq = spp[j]
                        vp[j] = hp[j] * (one - sq * ra) - sq * rb
                        sp[j] = sq
        gxt = gx[t, lo:hi]
        if deferred:
            for j in range(n):
                gg = gv[j] + grt[j] + sg[j] * (gst[j] + gsc[j])
                gxt[j] = gg * g[j]
                leak = vr + b[j] * (vp[j] - vr)
                g_leak = gg * (one - sp[j] * ra)
                gsc[j] = kd * gg * (-(leak * ra) - rb)
                gv[j] = g_leak * b[j]
                gl[j] = g_leak
                gh[j] = gg
        else:
            for j in range(n):
                hh = ht[j]
                sn = snt[j]
                gvt = gv[j] + grt[j]
                gg = gvt * (one - sn * ra) + sg[j] * ((gst[j] + gsc[j]) + kd * gvt * (-(hh * ra) - rb))
                gxt[j] = gg * g[j]
                gv[j] = gg * b[j]
                gsc[j] = zero
                gl[j] = gg
        if not temporal:
            gv[:] = zero
            gsc[:] = zero
        if need_gb:
            for j in range(n):
                gbl[j] += gl[j] * (vp[j] - vr)
        if need_gg:
            xt = x[t, lo:hi]
            dh = gh if deferred else gl
            for j in range(n):
                ggl[j] += dh[j] * xt[j]
    gv0[lo:hi] = gv
    gs0[lo:hi] = gsc
    gb_out[lo:hi] = gbl
    gg_out[lo:hi] = ggl


@njit(inline="always", **_JIT)
def _imm_grad(hh, sgj, gvt, gin, vth, one, zero, ra, rb, kd):  # pragma: no cover - compiled
    # dL/dh_t of an immediate-reset step: the main loop of _bwd_reverse, term for term
    sn = one if hh - vth >= zero else zero
    return gvt * (one - sn * ra) + sgj * (gin + kd * gvt * (-(hh * ra) - rb))


@njit(**_JIT)
def _bwd_immediate(hs, cst, sg_kind, beta, gain, has_gs, has_gtr, lo, hi, gs, gs_off, gtr, gvT, gsT, gx, gv0, gs0,
                   gb_out, gg_out):  # pragma: no cover - compiled
    # _bwd_reverse for the usual training case (immediate reset, full BPTT, no beta / gain gradient,
    # the saved h): spikes, surrogate and gradient in one pass per step, with the surrogate's kind
    # chosen outside the loop so that each loop vectorises; gs holds the neurons from gs_off on (0 for
    # a [T, M] gradient). The same operations in the same order: the results are _bwd_reverse's bit
    # for bit (tests/equivalence/test_numba_lif.py).
    T = hs.shape[0]
    n = hi - lo
    vth, one, zero = cst[_VTH], cst[_ONE], cst[_ZERO]
    ra, rb, kd, c1, c2 = cst[_RA], cst[_RB], cst[_KD], cst[_SG1], cst[_SG2]
    b = beta[lo:hi]
    g = gain[lo:hi]
    gv = gvT[lo:hi].copy()
    gsc = gsT[lo:hi].copy()
    for t in range(T - 1, -1, -1):
        ht = hs[t, lo:hi]
        gst = gs[t * has_gs, lo - gs_off:hi - gs_off]
        grt = gtr[t * has_gtr, lo:hi]
        gxt = gx[t, lo:hi]
        if sg_kind == 0:
            for j in range(n):
                hh = ht[j]
                gg = _imm_grad(hh, _sg0(hh - vth, c1, c2, one, zero), gv[j] + grt[j], gst[j] + gsc[j], vth, one,
                               zero, ra, rb, kd)
                gxt[j] = gg * g[j]
                gv[j] = gg * b[j]
                gsc[j] = zero
        elif sg_kind == 1:
            for j in range(n):
                hh = ht[j]
                gg = _imm_grad(hh, _sg1(hh - vth, c1, c2, one, zero), gv[j] + grt[j], gst[j] + gsc[j], vth, one,
                               zero, ra, rb, kd)
                gxt[j] = gg * g[j]
                gv[j] = gg * b[j]
                gsc[j] = zero
        elif sg_kind == 2:
            for j in range(n):
                hh = ht[j]
                gg = _imm_grad(hh, _sg2(hh - vth, c1, c2, one, zero), gv[j] + grt[j], gst[j] + gsc[j], vth, one,
                               zero, ra, rb, kd)
                gxt[j] = gg * g[j]
                gv[j] = gg * b[j]
                gsc[j] = zero
        else:
            for j in range(n):
                hh = ht[j]
                gg = _imm_grad(hh, _sg3(hh - vth, c1, c2, one, zero), gv[j] + grt[j], gst[j] + gsc[j], vth, one,
                               zero, ra, rb, kd)
                gxt[j] = gg * g[j]
                gv[j] = gg * b[j]
                gsc[j] = zero
    gv0[lo:hi] = gv
    gs0[lo:hi] = gsc
    gb_out[lo:hi] = zero
    gg_out[lo:hi] = zero


@njit(nogil=True, **_JIT)
def _fwd_chunks(x, v0, s0, beta, gain, cst, deferred, record, save_bits, save_h, chunk, c0, c1,
                spikes, sbits, hsave, trace, v_out, s_out):  # pragma: no cover - compiled
    M = x.shape[1]
    for c in range(c0, c1):
        _fwd_chunk(x, v0, s0, beta, gain, cst, deferred, record, save_bits, save_h, c * chunk,
                   min(M, (c + 1) * chunk), spikes, sbits, hsave, trace, v_out, s_out)



@njit(nogil=True, **_JIT)
def _bwd_chunks_bits(x, spk, v0, s0, beta, gain, cst, sg_kind, deferred, temporal, has_gs, has_gtr, need_gb,
                     need_gg, chunk, c0, c1, gs, gtr, gvT, gsT, gx, gv0, gs0, gb_out, gg_out):  # pragma: no cover
    M = x.shape[1]
    hbuf = np.empty((x.shape[0], min(chunk, M)), x.dtype)  # one [T, chunk] membrane buffer per thread
    for c in range(c0, c1):
        _bwd_chunk_bits(x, spk, v0, s0, beta, gain, cst, sg_kind, deferred, temporal, has_gs, has_gtr, need_gb,
                        need_gg, c * chunk, min(M, (c + 1) * chunk), gs, 0, gtr, gvT, gsT, gx, gv0, gs0, gb_out,
                        gg_out, hbuf)


@njit(nogil=True, **_JIT)
def _bwd_chunks_h(x, h, v0, s0, beta, gain, cst, sg_kind, deferred, temporal, has_gs, has_gtr, need_gb,
                  need_gg, chunk, c0, c1, gs, gtr, gvT, gsT, gx, gv0, gs0, gb_out, gg_out):  # pragma: no cover
    # the saved pre-reset membrane h [T, M]: the reverse pass reads it in place, spikes from h
    M = x.shape[1]
    nobits = np.empty((1, 1), np.uint8)
    fused = not deferred and temporal and not need_gb and not need_gg
    for c in range(c0, c1):
        lo, hi = c * chunk, min(M, (c + 1) * chunk)
        if fused:
            _bwd_immediate(h, cst, sg_kind, beta, gain, has_gs, has_gtr, lo, hi, gs, 0, gtr, gvT, gsT, gx, gv0, gs0,
                           gb_out, gg_out)
        else:
            _bwd_reverse(x, h, lo, nobits, 0, v0, s0, beta, gain, cst, sg_kind, deferred, temporal, has_gs, has_gtr,
                         need_gb, need_gg, lo, hi, gs, 0, gtr, gvT, gsT, gx, gv0, gs0, gb_out, gg_out)
