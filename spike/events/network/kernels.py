"""The numba kernels of the event path: per-step scatter of events into ring buffers, lazy neuron
updates, pooling, and the time loop over one sample (:func:`run_range`) or a batch (:func:`run_batch`).
The LIF / IF / LI update is here; the two-variable models (CUBA, SE-adLIF) step in
:mod:`.kernels_neurons`.

They read only the flat arrays of :class:`~spike.events.network.program.Program` and a per-sample state
(``fs`` floats, ``ist`` ints) laid out by ``Program.lay``; the column and offset names are those of
:mod:`spike.events.network.program`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from spike.events.network.kernels_neurons import neurons_coupled
from spike.events.network.program import (  # op table columns, state offsets, kinds
    _M_LIF, _OUT_MEMBRANE, _POOL_MAX, _R_NONE, _R_SUB, _R_VAL, _STAGE, _SYN_DELAY, _SYN_DENSE, _SYN_IDENT,
    C_ALL, C_BOFF, C_CI, C_CO, C_DEFER, C_DEPTH, C_DH, C_DOFF, C_DW, C_GROUPS, C_HI,
    C_HO, C_KH, C_KIND, C_KW, C_LAST, C_MODEL, C_NOFF, C_NOUT, C_OUT, C_PAD, C_PL, C_POFF, C_PT,
    C_RECOFF, C_RESET, C_ROFF, C_RSOFF, C_SH, C_SW, C_SYN, C_WI, C_WO, C_WOFF, C_ZOFF, F_DIV, F_ONE,
    F_VRESET, F_VREST, F_VTH, F_ZERO, L_AUX, L_EVI0, L_EVI1, L_EVV0, L_EVV1, L_FLAG, L_FSIZE, L_FULL,
    L_ISIZE, L_LAST, L_NOPS, L_PEND, L_PENDN, L_PLIST, L_PMARK, L_PV, L_RANY, L_RING, L_RMARK,
    L_RTCH, L_RTN, L_S, L_STAMP, L_UST, L_V)

__all__ = ["init_state", "run_range", "settle", "run_sample", "run_batch"]


@njit(cache=True)
def init_state(prog_lay, vinit, fs, ist):  # pragma: no cover - numba
    fs[:] = 0
    ist[:] = 0
    nn = len(vinit)
    for q in range(nn):
        fs[prog_lay[L_V] + q] = vinit[q]
        ist[prog_lay[L_LAST] + q] = -1
        ist[prog_lay[L_UST] + q] = -1
    for q in range(prog_lay[L_RTCH] - prog_lay[L_RMARK]):
        ist[prog_lay[L_RMARK] + q] = -1
    for q in range(prog_lay[L_PLIST] - prog_lay[L_PMARK]):
        ist[prog_lay[L_PMARK] + q] = -1
    for q in range(prog_lay[L_NOPS]):
        ist[prog_lay[L_FULL] + q] = -1


@njit(cache=True)
def _leak(vv, b, vrest, vrest_zero):  # pragma: no cover - numba
    if vrest_zero:
        return b * vv
    return vrest + b * (vv - vrest)


@njit(cache=True)
def _rst(h, sp, reset, vth, vreset):  # pragma: no cover - numba
    if sp == 0 or reset == _R_NONE:
        return h
    if reset == _R_SUB:
        return h - vth
    return vreset


@njit(cache=True, inline="always")
def _pool(iops, fops, op, lay, fs, ist, ei, ev, ne, eo_i, eo_v):  # pragma: no cover - numba
    """Max / average pooling of the ``ne`` events at ``(ei, ev)``; writes the pooled events at
    ``(eo_i, eo_v)`` and returns their number."""
    kind = iops[op, C_KIND]
    o_pv, o_pmark, o_plist = lay[L_PV], lay[L_PMARK], lay[L_PLIST]
    hi, wi = iops[op, C_HI], iops[op, C_WI]
    ho, wo = iops[op, C_HO], iops[op, C_WO]
    kh, kw, sh, sw = iops[op, C_KH], iops[op, C_KW], iops[op, C_SH], iops[op, C_SW]
    stamp = ist[lay[L_STAMP]] + 1  # marks "touched by this call" without clearing
    ist[lay[L_STAMP]] = stamp
    npool = 0
    for k in range(ne):
        i = ist[ei + k]
        val = fs[ev + k]
        c = i // (hi * wi)
        y = (i // wi) % hi
        x = i % wi
        oy_lo = max(0, (y - kh + sh) // sh)  # windows oy*sh <= y < oy*sh + kh
        oy_hi = min(ho - 1, y // sh)
        ox_lo = max(0, (x - kw + sw) // sw)
        ox_hi = min(wo - 1, x // sw)
        for oy in range(oy_lo, oy_hi + 1):
            for ox in range(ox_lo, ox_hi + 1):
                j = (c * ho + oy) * wo + ox
                if ist[o_pmark + j] != stamp:
                    ist[o_pmark + j] = stamp
                    ist[o_plist + npool] = j
                    npool += 1
                    fs[o_pv + j] = val
                elif kind == _POOL_MAX:
                    if val > fs[o_pv + j]:
                        fs[o_pv + j] = val
                else:
                    fs[o_pv + j] += val
    div = fops[op, F_DIV]
    for k in range(npool):
        j = ist[o_plist + k]
        ist[eo_i + k] = j
        fs[eo_v + k] = fs[o_pv + j] if kind == _POOL_MAX else fs[o_pv + j] / div
    return npool


@njit(cache=True, inline="always")
def _mac_synops(iops, fops, op, Dl, fs, ist, ei, ev, ne):  # pragma: no cover - numba
    """Synaptic operations of stage ``op`` triggered by event values other than +-1 (multiply-accumulates
    under the per-element AC/MAC rule of :class:`spike.energy.EnergyMeter`); the same fan-out count
    :func:`_scatter` makes, for those events only. Binary spikes cost one comparison each."""
    one = fops[op, F_ONE]
    syn = iops[op, C_SYN]
    zoff = iops[op, C_ZOFF]
    nmac = 0
    for k in range(ne):
        val = fs[ev + k]
        if val == one or val == -one:
            continue
        i = ist[ei + k]
        if syn == _SYN_DENSE or syn == _SYN_DELAY:
            nmac += Dl[zoff + i]
        elif syn == _SYN_IDENT:
            nmac += 1
        else:  # convolution: the taps of the footprint that fall inside the output
            hi, wi = iops[op, C_HI], iops[op, C_WI]
            ho, wo = iops[op, C_HO], iops[op, C_WO]
            kh, kw, sh, sw = iops[op, C_KH], iops[op, C_KW], iops[op, C_SH], iops[op, C_SW]
            pt, pl, dh, dw = iops[op, C_PT], iops[op, C_PL], iops[op, C_DH], iops[op, C_DW]
            c = i // (hi * wi)
            y = (i // wi) % hi
            x = i % wi
            for ky in range(kh):
                ny = y + pt - ky * dh
                if ny < 0 or ny % sh != 0 or ny // sh >= ho:
                    continue
                for kx in range(kw):
                    nx = x + pl - kx * dw
                    if nx < 0 or nx % sw != 0 or nx // sw >= wo:
                        continue
                    nmac += Dl[zoff + (c * kh + ky) * kw + kx]
    return nmac


@njit(cache=True, inline="always")
def _scatter(iops, fops, op, W, Dl, lay, fs, ist, ei, ev, ne, t):  # pragma: no cover - numba
    """Add every event's weights to the ring buffer of stage ``op``; returns the synaptic operations
    (one per event and non-zero weight it reaches: a pruned weight is no synapse)."""
    syn = iops[op, C_SYN]
    n = iops[op, C_NOUT]
    depth = iops[op, C_DEPTH]
    ring = lay[L_RING] + iops[op, C_ROFF]
    rany = lay[L_RANY] + iops[op, C_RSOFF]
    rtn = lay[L_RTN] + iops[op, C_RSOFF]
    woff = iops[op, C_WOFF]
    zoff = iops[op, C_ZOFF]
    one = fops[op, F_ONE]
    slot = t % depth
    mk = lay[L_RMARK] + iops[op, C_ROFF] + slot * n  # per-neuron "touched at t" marks of this slot
    tch = lay[L_RTCH] + iops[op, C_ROFF] + slot * n  # the touched list
    if syn == _SYN_DENSE:
        nsyn = 0
        for k in range(ne):
            nsyn += Dl[zoff + ist[ei + k]]
        if ne > 0:
            ist[rany] = 1  # full fan-out: every neuron is touched
        # unsigned offsets, not slices: a slice is a new array whose two atomic reference counts
        # are memory fences (they stall the weight loads in flight); an unsigned index has no
        # negative-index wraparound, so the loops still vectorise
        un = np.uint64(n)
        ro = np.uint64(ring)
        wo = np.uint64(woff)
        k = 0
        while k + 7 < ne:  # eight rows per pass (more loads in flight), same order of additions
            a = wo + np.uint64(ist[ei + k]) * un
            b = wo + np.uint64(ist[ei + k + 1]) * un
            c = wo + np.uint64(ist[ei + k + 2]) * un
            d = wo + np.uint64(ist[ei + k + 3]) * un
            e = wo + np.uint64(ist[ei + k + 4]) * un
            f = wo + np.uint64(ist[ei + k + 5]) * un
            g = wo + np.uint64(ist[ei + k + 6]) * un
            h = wo + np.uint64(ist[ei + k + 7]) * un
            unit = True
            for q in range(8):
                if fs[ev + k + q] != one:
                    unit = False
            if unit:
                for j in range(un):
                    fs[ro + j] = (((((((fs[ro + j] + W[a + j]) + W[b + j]) + W[c + j]) + W[d + j]) + W[e + j])
                                  + W[f + j]) + W[g + j]) + W[h + j]
            else:
                va, vb, vc, vd = fs[ev + k], fs[ev + k + 1], fs[ev + k + 2], fs[ev + k + 3]
                ve, vf, vg, vh = fs[ev + k + 4], fs[ev + k + 5], fs[ev + k + 6], fs[ev + k + 7]
                for j in range(un):
                    fs[ro + j] = (((((((fs[ro + j] + W[a + j] * va) + W[b + j] * vb) + W[c + j] * vc)
                                     + W[d + j] * vd) + W[e + j] * ve) + W[f + j] * vf) + W[g + j] * vg) + W[h + j] * vh
            k += 8
        while k + 3 < ne:  # four rows per pass
            a = wo + np.uint64(ist[ei + k]) * un
            b = wo + np.uint64(ist[ei + k + 1]) * un
            c = wo + np.uint64(ist[ei + k + 2]) * un
            d = wo + np.uint64(ist[ei + k + 3]) * un
            va, vb, vc, vd = fs[ev + k], fs[ev + k + 1], fs[ev + k + 2], fs[ev + k + 3]
            for j in range(un):
                fs[ro + j] = (((fs[ro + j] + W[a + j] * va) + W[b + j] * vb) + W[c + j] * vc) + W[d + j] * vd
            k += 4
        while k < ne:
            a = wo + np.uint64(ist[ei + k]) * un
            val = fs[ev + k]
            for j in range(un):
                fs[ro + j] = fs[ro + j] + W[a + j] * val
            k += 1
        return nsyn
    if syn == _SYN_DELAY:
        doff = iops[op, C_DOFF]
        nsyn = 0
        for k in range(ne):
            i = ist[ei + k]
            val = fs[ev + k]
            nsyn += Dl[zoff + i]
            for j in range(n):
                w = W[woff + i * n + j]
                if w == 0:
                    continue  # no synapse: nothing arrives, the slot is not marked
                sl = (t + Dl[doff + i * n + j]) % depth
                fs[ring + sl * n + j] += w * val
                ist[rany + sl] = 1
        return nsyn
    if syn == _SYN_IDENT:
        base = ring + slot * n
        for k in range(ne):
            j = ist[ei + k]
            fs[base + j] += fs[ev + k]
            if ist[mk + j] != t:
                ist[mk + j] = t
                ist[tch + ist[rtn + slot]] = j
                ist[rtn + slot] += 1
        return ne
    # convolution: an input spike at (c, y, x) reaches (co, oy, ox) with oy*sh = y + pt - ky*dh
    hi, wi = iops[op, C_HI], iops[op, C_WI]
    ho, wo = iops[op, C_HO], iops[op, C_WO]
    kh, kw, sh, sw = iops[op, C_KH], iops[op, C_KW], iops[op, C_SH], iops[op, C_SW]
    pt, pl, dh, dw = iops[op, C_PT], iops[op, C_PL], iops[op, C_DH], iops[op, C_DW]
    groups = iops[op, C_GROUPS]
    cig = iops[op, C_CI] // groups
    cog = iops[op, C_CO] // groups
    hw = ho * wo
    base = ring + slot * n
    nsyn = 0
    for k in range(ne):
        i = ist[ei + k]
        val = fs[ev + k]
        c = i // (hi * wi)
        y = (i // wi) % hi
        x = i % wi
        g = c // cig
        for ky in range(kh):
            ny = y + pt - ky * dh
            if ny < 0 or ny % sh != 0:
                continue
            oy = ny // sh
            if oy >= ho:
                continue
            for kx in range(kw):
                nx = x + pl - kx * dw
                if nx < 0 or nx % sw != 0:
                    continue
                ox = nx // sw
                if ox >= wo:
                    continue
                tap = (c * kh + ky) * kw + kx
                ntap = Dl[zoff + tap]
                if ntap == 0:
                    continue  # a fully pruned tap
                wb = woff + tap * cog  # weights [C_in, kh, kw, C_out/g]
                j0 = g * cog * hw + oy * wo + ox
                for q in range(cog):
                    w = W[wb + q]
                    if w == 0:
                        continue
                    j = j0 + q * hw
                    fs[base + j] += w * val
                    if ist[mk + j] != t:
                        ist[mk + j] = t
                        ist[tch + ist[rtn + slot]] = j
                        ist[rtn + slot] += 1
                nsyn += ntap
    return nsyn


@njit(cache=True)
def _replay(vv, ss, lag, b, vth, vreset, vrest, vrest_zero, reset, deferred, one, zero):  # pragma: no cover
    """Apply up to ``lag`` input-free steps by repeated multiplication (bit-identical to the dense
    loop), stopping at the fixed point. Returns ``(v, s, steps done, threshold crossings)``; a
    crossing is impossible for a neuron that was not flagged."""
    done = 0
    viol = 0
    while lag > 0:
        lk = _leak(vv, b, vrest, vrest_zero)
        if deferred:
            h = _rst(lk, ss, reset, vth, vreset)
            sn = one if h - vth >= zero else zero
            nv = h
        else:
            h = lk
            sn = one if h - vth >= zero else zero
            nv = _rst(h, sn, reset, vth, vreset)
        done += 1
        if sn != zero:
            viol += 1
        if nv == vv and sn == ss:
            break  # fixed point (v_rest): the remaining steps change nothing
        vv = nv
        ss = sn
        lag -= 1
    return vv, ss, done, viol


@njit(cache=True, inline="always")
def _neurons_all(iops, fops, op, Bv, beta, gain, lay, fs, ist, t, eo_i, eo_v, out, rec, do_rec,
                 cnt):  # pragma: no cover - numba
    """:func:`_neurons` when every neuron of the layer is updated at ``t`` and was at ``t - 1``
    (no lazy decay to replay): branch-free vectorisable passes, then a compaction of the spikes.

    ``last`` is not written: the layer's "all updated at" step (``L_FULL``) stands for it. The
    flags for the next step are only needed if that step may update a subset (no bias)."""
    n_ops = lay[L_NOPS]
    n = iops[op, C_NOUT]
    noff = iops[op, C_NOFF]
    poff = iops[op, C_POFF]
    boff = iops[op, C_BOFF]
    rbase = lay[L_RING] + iops[op, C_ROFF] + (t % iops[op, C_DEPTH]) * n
    reset = iops[op, C_RESET]
    deferred = iops[op, C_DEFER]
    need_flags = iops[op, C_ALL] == 0
    vth, vreset, vrest = fops[op, F_VTH], fops[op, F_VRESET], fops[op, F_VREST]
    zero, one = fops[op, F_ZERO], fops[op, F_ONE]
    v = fs[lay[L_V] + noff:lay[L_V] + noff + n]
    s = fs[lay[L_S] + noff:lay[L_S] + noff + n]
    ring = fs[rbase:rbase + n]
    flag = fs[lay[L_FLAG]:lay[L_FLAG] + n]
    b = beta[poff:poff + n]
    g = gain[poff:poff + n]
    if boff >= 0:
        bias = Bv[boff:boff + n]
        for j in range(n):
            ring[j] = ring[j] + bias[j]
    # the step, branch-free: leak = v_rest + b (v - v_rest) and R(h, s) = h (1 - s ra) - s rb are
    # value-identical to the reference's b*v (v_rest = 0) and h - s v_th | h (1 - s) + s v_reset | h
    ra = one if reset == _R_VAL else zero
    rb = vth if reset == _R_SUB else (-vreset if reset == _R_VAL else zero)
    if deferred:
        for j in range(n):
            sp = s[j]
            lk = (vrest + b[j] * (v[j] - vrest)) * (one - sp * ra) - sp * rb
            h = lk + g[j] * ring[j]
            ring[j] = zero
            v[j] = h
            s[j] = one if h - vth >= zero else zero
        if need_flags:
            for j in range(n):
                lk2 = (vrest + b[j] * (v[j] - vrest)) * (one - s[j] * ra) - s[j] * rb
                flag[j] = one if lk2 - vth >= zero else zero
    else:
        for j in range(n):
            h = (vrest + b[j] * (v[j] - vrest)) + g[j] * ring[j]
            ring[j] = zero
            sn = one if h - vth >= zero else zero
            v[j] = h * (one - sn * ra) - sn * rb
            s[j] = sn
        if need_flags:
            for j in range(n):
                lk2 = vrest + b[j] * (v[j] - vrest)
                flag[j] = one if lk2 - vth >= zero else zero
    # outputs: readout membrane, or the spikes compacted branch-free (write always, advance on a hit)
    outm = iops[op, C_OUT]
    is_last = iops[op, C_LAST]
    recoff = iops[op, C_RECOFF]
    nout_ev = 0
    if outm == _OUT_MEMBRANE:
        if is_last:
            for j in range(n):
                out[t, j] = v[j]
    else:
        spk = ist[eo_i:eo_i + n]
        for j in range(n):
            spk[nout_ev] = j
            nout_ev += s[j] != zero
        for k in range(nout_ev):
            j = spk[k]
            if is_last:
                out[t, j] = one
            else:
                fs[eo_v + k] = one
            if do_rec:
                rec[t, recoff + j] = 1
        if is_last:
            nout_ev = 0
    n_new_pend = 0
    if need_flags:
        pend_w = lay[L_PEND] + (1 - t % 2) * (lay[L_S] - lay[L_V]) + noff
        pend = ist[pend_w:pend_w + n]
        for j in range(n):
            pend[n_new_pend] = j
            n_new_pend += flag[j] != zero
    ist[lay[L_PENDN] + (1 - t % 2) * n_ops + op] = n_new_pend
    ist[lay[L_RTN] + iops[op, C_RSOFF] + t % iops[op, C_DEPTH]] = 0
    ist[lay[L_RANY] + iops[op, C_RSOFF] + t % iops[op, C_DEPTH]] = 0
    ist[lay[L_FULL] + op] = t
    cnt[op, 1] += n
    return nout_ev


@njit(cache=True, inline="always")
def _neurons(iops, fops, op, Bv, beta, gain, lay, fs, ist, t, eo_i, eo_v, out, rec, do_rec, cnt):  # pragma: no cover
    """Update the neurons of stage ``op`` that received input at ``t`` (all of them for a bias or a
    dense readout) plus the flagged ones; write spikes at ``(eo_i, eo_v)``, return their number."""
    n_ops = lay[L_NOPS]
    n_tot = lay[L_S] - lay[L_V]
    o_v, o_s, o_last, o_ust = lay[L_V], lay[L_S], lay[L_LAST], lay[L_UST]
    n = iops[op, C_NOUT]
    depth = iops[op, C_DEPTH]
    slot = t % depth
    rbase = lay[L_RING] + iops[op, C_ROFF] + slot * n
    tch = lay[L_RTCH] + iops[op, C_ROFF] + slot * n
    rany = lay[L_RANY] + iops[op, C_RSOFF] + slot
    rtn = lay[L_RTN] + iops[op, C_RSOFF] + slot
    outm = iops[op, C_OUT]
    last = iops[op, C_LAST]
    boff = iops[op, C_BOFF]
    noff = iops[op, C_NOFF]
    poff = iops[op, C_POFF]
    reset = iops[op, C_RESET]
    deferred = iops[op, C_DEFER]
    recoff = iops[op, C_RECOFF]
    vth, vreset, vrest = fops[op, F_VTH], fops[op, F_VRESET], fops[op, F_VREST]
    zero, one = fops[op, F_ZERO], fops[op, F_ONE]
    vrest_zero = vrest == zero
    all_mode = iops[op, C_ALL] == 1 or ist[rany] == 1
    has_neu = noff >= 0
    if all_mode and has_neu and ist[lay[L_FULL] + op] == t - 1:
        return _neurons_all(iops, fops, op, Bv, beta, gain, lay, fs, ist, t, eo_i, eo_v, out, rec, do_rec, cnt)
    n_first = n if all_mode else ist[rtn]
    par = t % 2
    pend_r = lay[L_PEND] + par * n_tot + (noff if has_neu else 0)  # flagged for this step
    pend_w = lay[L_PEND] + (1 - par) * n_tot + (noff if has_neu else 0)  # flagged for the next
    n_pend = ist[lay[L_PENDN] + par * n_ops + op] if (has_neu and not all_mode) else 0
    n_new_pend = 0
    nout_ev = 0
    nupd = 0
    ndec = 0
    nviol = 0
    for k in range(n_first + n_pend):
        if k < n_first:
            j = k if all_mode else ist[tch + k]
        else:
            j = ist[pend_r + k - n_first]
        x = fs[rbase + j]
        fs[rbase + j] = zero
        if boff >= 0:
            x = x + Bv[boff + j]
        if not has_neu:
            out[t, j] = x  # a synapse ends the network: its current is the output
            continue
        q = noff + j
        if ist[o_ust + q] == t:
            continue  # touched and flagged: already updated
        ist[o_ust + q] = t
        b = beta[poff + j]
        gn = gain[poff + j]
        vv = fs[o_v + q]
        ss = fs[o_s + q]
        lag = t - max(ist[o_last + q], ist[lay[L_FULL] + op]) - 1  # last update of this neuron
        if lag > 0:  # lazy decay over the steps without input
            vv, ss, nd, nb = _replay(vv, ss, lag, b, vth, vreset, vrest, vrest_zero, reset, deferred, one, zero)
            ndec += nd
            nviol += nb
        # the step itself, in the order of spike.neurons.lif.lif_step
        lk = _leak(vv, b, vrest, vrest_zero)
        if deferred:
            h = _rst(lk, ss, reset, vth, vreset) + gn * x
            sn = one if h - vth >= zero else zero
            vv = h
        else:
            h = lk + gn * x
            sn = one if h - vth >= zero else zero
            vv = _rst(h, sn, reset, vth, vreset)
        ss = sn
        fs[o_v + q] = vv
        fs[o_s + q] = ss
        ist[o_last + q] = t
        nupd += 1
        if outm == _OUT_MEMBRANE:
            if last:
                out[t, j] = vv
        elif sn != zero:
            if last:
                out[t, j] = one
            else:
                ist[eo_i + nout_ev] = j
                fs[eo_v + nout_ev] = one
                nout_ev += 1
            if do_rec:
                rec[t, recoff + j] = 1
        # flag the neuron if its next input-free step reaches threshold
        lk = _leak(vv, b, vrest, vrest_zero)
        h = _rst(lk, ss, reset, vth, vreset) if deferred else lk
        if h - vth >= zero:
            ist[pend_w + n_new_pend] = j
            n_new_pend += 1
    if has_neu:
        ist[lay[L_PENDN] + (1 - par) * n_ops + op] = n_new_pend
        if all_mode:
            ist[lay[L_FULL] + op] = t  # every neuron is now up to date
    ist[rtn] = 0
    ist[rany] = 0
    cnt[op, 1] += nupd
    cnt[op, 2] += ndec
    cnt[op, 3] += nviol
    return nout_ev


@njit(cache=True)
def run_range(iops, fops, W, Bv, Dl, beta, gain, lay, fs, ist, ev_ptr, ev_idx, ev_val, t0, t1, t_in_end,
              thr, use_stop, out, cum, rec, do_rec, cnt):  # pragma: no cover - numba
    """Advance one sample from step ``t0`` to ``t1`` (exclusive), events of step t in
    ``ev_idx/ev_val[ev_ptr[t - t0]:ev_ptr[t - t0 + 1]]``. Layers with ``C_PAD = p`` run while
    ``t < t_in_end + p``. Writes ``out[t]``, ``cum``, ``rec[t]``, ``cnt[op] += (synops, updates, decays,
    violations)``. Returns ``(first step not processed, whether the stop rule fired)``; the rule may
    fire on the last step of the range (``t1``), so the step alone does not tell."""
    n_ops = lay[L_NOPS]
    n_out = out.shape[1]
    for t in range(t0, t1):
        ne = 0
        if t < t_in_end:  # input events of step t into buffer 0
            a = ev_ptr[t - t0]
            for k in range(a, ev_ptr[t - t0 + 1]):
                ist[lay[L_EVI0] + ne] = ev_idx[k]
                fs[lay[L_EVV0] + ne] = ev_val[k]
                ne += 1
        cb = 0
        for op in range(n_ops):
            if t >= t_in_end + iops[op, C_PAD]:
                ne = 0  # this layer has ended (a later TimePad extends only the layers after it)
                continue
            ei = lay[L_EVI0] if cb == 0 else lay[L_EVI1]
            ev = lay[L_EVV0] if cb == 0 else lay[L_EVV1]
            eo_i = lay[L_EVI1] if cb == 0 else lay[L_EVI0]
            eo_v = lay[L_EVV1] if cb == 0 else lay[L_EVV0]
            if iops[op, C_KIND] != _STAGE:
                ne = _pool(iops, fops, op, lay, fs, ist, ei, ev, ne, eo_i, eo_v)
            else:
                cnt[op, 4] += _mac_synops(iops, fops, op, Dl, fs, ist, ei, ev, ne)
                cnt[op, 0] += _scatter(iops, fops, op, W, Dl, lay, fs, ist, ei, ev, ne, t)
                if iops[op, C_MODEL] == _M_LIF:
                    ne = _neurons(iops, fops, op, Bv, beta, gain, lay, fs, ist, t, eo_i, eo_v, out, rec, do_rec, cnt)
                else:
                    ne = neurons_coupled(iops, fops, op, Bv, beta, lay, fs, ist, t, eo_i, eo_v, out, rec, do_rec, cnt)
            cb = 1 - cb
        # readout and stop rule
        top1 = -np.inf
        top2 = -np.inf
        for c in range(n_out):
            cum[c] += out[t, c]
            v64 = cum[c]
            if v64 > top1:
                top2 = top1
                top1 = v64
            elif v64 > top2:
                top2 = v64
        if use_stop and top1 - top2 > thr[t]:
            return t + 1, True
    return t1, False


@njit(cache=True)
def settle(iops, fops, beta, lay, fs, ist, t_end, t_in_end):  # pragma: no cover - numba
    """Replay the input-free steps of every neuron up to its layer's last step (< t_end), so that
    the stored ``v, s`` are the state after the last step. Returns the number of violations."""
    viol = 0
    for op in range(lay[L_NOPS]):
        noff = iops[op, C_NOFF]
        if iops[op, C_KIND] != _STAGE or noff < 0 or iops[op, C_MODEL] != _M_LIF:
            continue  # the two-variable models are updated every step: nothing to replay
        stop = min(t_end, t_in_end + iops[op, C_PAD]) - 1
        zero, one = fops[op, F_ZERO], fops[op, F_ONE]
        vth, vreset, vrest = fops[op, F_VTH], fops[op, F_VRESET], fops[op, F_VREST]
        poff = iops[op, C_POFF]
        full = ist[lay[L_FULL] + op]
        for j in range(iops[op, C_NOUT]):
            q = noff + j
            lag = stop - max(ist[lay[L_LAST] + q], full)
            if lag <= 0:
                continue
            vv, ss, _, nb = _replay(fs[lay[L_V] + q], fs[lay[L_S] + q], lag, beta[poff + j], vth, vreset, vrest,
                                    vrest == zero, iops[op, C_RESET], iops[op, C_DEFER], one, zero)
            viol += nb
            fs[lay[L_V] + q] = vv
            fs[lay[L_S] + q] = ss
            ist[lay[L_LAST] + q] = stop
    return viol


@njit(cache=True)
def run_sample(iops, fops, W, Bv, Dl, beta, gain, vinit, lay, ptrs, ev_idx, ev_val, sample_ev_off, bi,
               t_first, n_in_steps, thr, use_stop, out, steps, rec, do_rec, cnt, vfinal, sfinal,
               afinal):  # pragma: no cover
    """Sample ``bi`` from rest: events ``ev_*[sample_ev_off[bi]:sample_ev_off[bi + 1]]`` indexed by
    ``ptrs[bi] [T + 1]``; writes ``out[bi] [T_total, C]``, ``steps[bi]``, ``cnt[bi]`` (and the
    records / final states ``v, s`` and the second variable of CUBA / adLIF neurons when ``do_rec``)."""
    fs = np.empty(lay[L_FSIZE], fops.dtype)
    ist = np.empty(lay[L_ISIZE], np.int64)
    init_state(lay, vinit, fs, ist)
    cum = np.zeros(out.shape[2], np.float64)
    eo = sample_ev_off[bi]
    eo2 = sample_ev_off[bi + 1]
    done, _ = run_range(iops, fops, W, Bv, Dl, beta, gain, lay, fs, ist, ptrs[bi], ev_idx[eo:eo2],
                        ev_val[eo:eo2], t_first, out.shape[1], n_in_steps, thr, use_stop, out[bi], cum,
                        rec[bi], do_rec, cnt[bi])
    steps[bi] = done
    if do_rec:
        cnt[bi, 0, 3] += settle(iops, fops, beta, lay, fs, ist, done, n_in_steps)
        for q in range(len(vinit)):
            vfinal[bi, q] = fs[lay[L_V] + q]
            sfinal[bi, q] = fs[lay[L_S] + q]
            afinal[bi, q] = fs[lay[L_AUX] + q]


@njit(cache=True, parallel=True)
def run_batch(iops, fops, W, Bv, Dl, beta, gain, vinit, lay, ptrs, ev_idx, ev_val, sample_ev_off, t_first,
              n_in_steps, thr, use_stop, out, steps, rec, do_rec, cnt, vfinal, sfinal, afinal):  # pragma: no cover
    """Every sample from rest, in parallel over samples (``prange``)."""
    for bi in prange(out.shape[0]):
        run_sample(iops, fops, W, Bv, Dl, beta, gain, vinit, lay, ptrs, ev_idx, ev_val, sample_ev_off, bi,
                   t_first, n_in_steps, thr, use_stop, out, steps, rec, do_rec, cnt, vfinal, sfinal, afinal)

