"""Inner hair cells, auditory-nerve fibres and bushy cells of the SHD cochlea model.

Every stage runs per channel on ``[C, T]`` arrays at the membrane sample rate ``fs`` (``dt = 1/fs``);
channels are independent, so the numba kernels run them in parallel. Each stage has a numpy
reference (a Python loop over time, vectorised over channels) that the fast path is tested against.

**Meddis hair cell** (Meddis 1986, doi:10.1121/1.393460; 1988, doi:10.1121/1.396050), forward Euler
on the free transmitter ``q``, cleft contents ``c`` and reprocessing store ``w``, driven by the
membrane velocity ``s``:

.. math::
    k = g\\,dt\\,\\frac{s + A}{s + A + B}\\ (0 \\text{ if } s + A \\le 0),\\quad
    q' = q + y\\,dt\\,(M - q)_{q < M} - k q + x\\,dt\\,w,\\quad
    c' = c + k q - (l + r)\\,dt\\,c,\\quad w' = w + r\\,dt\\,c - x\\,dt\\,w,

each clipped at 0, starting from the resting steady state; the release probability per sample is
``p = h dt c``.

**Auditory-nerve fibres**: ``n_fibres`` per channel, each a Bernoulli spike source with probability
``p[t]`` per sample whose spikes closer than the refractory period ``R`` (samples) to the fibre's
previous kept spike are dropped. The fast path draws the same process spike by spike: the next
kept spike after ``t`` is the first ``j >= t`` with ``H[j + 1] - H[t] > E``, ``E ~ Exp(1)``,
``H`` the cumulative hazard ``sum -log(1 - p)``, found by bisection, then ``t = j + ceil(R)``; so
the cost is per spike, not per sample and fibre. Random numbers come from SplitMix64 streams keyed
by ``(seed, channel, fibre)``: results do not depend on the thread count or the channel chunking.

**Bushy cell**: one leaky integrate-and-fire neuron per channel summing its fibres through an
exponential synapse (``tau_syn``), membrane ``tau_mem``, threshold 1, reset to 0, refractory
``tau_refrac``; the discretisation of the SHD pipeline (Cramer et al. 2020,
doi:10.1109/TNNLS.2020.3044364):

.. math::
    I_t = I_{t-1} e^{-dt/\\tau_{syn}} + S_t,\\qquad
    v_t = \\min(1,\\ v_{t-1} e^{-dt/\\tau_{mem}} + w\\,dt\\,I_t),

where ``S_t`` is the number of fibre spikes at ``t`` and ``w = weight / n_fibres``; when
``v_{t-1} >= 1`` the cell spikes at ``t - 1`` and ``v`` is held at 0 (no integration) for
``ceil(tau_refrac fs)`` samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

__all__ = ["BushyParams", "HairCellParams", "bushy", "bushy_reference", "fibre_counts", "fibre_spikes",
           "fibres_reference", "meddis", "meddis_reference"]


@dataclass(frozen=True)
class HairCellParams:
    """Meddis transmitter-pool constants (per second), as used for SHD."""

    y: float = 5.05  # replenishment rate
    g: float = 2000.0  # permeability gain
    l: float = 2500.0  # cleft loss rate  # noqa: E741
    r: float = 6580.0  # reuptake rate
    x: float = 66.3  # reprocessing rate
    a: float = 5.0  # permeability offset
    b: float = 300.0  # permeability half-saturation
    h: float = 50000.0  # firing-rate gain
    m: float = 1.0  # maximal free transmitter


@dataclass(frozen=True)
class BushyParams:
    """Bushy-cell LIF constants; ``refractory`` is also the fibres' refractory period (s)."""

    tau_mem: float = 1e-3
    tau_syn: float = 5e-4
    refractory: float = 1e-3
    weight: float = 13e3  # total synaptic weight, shared among the fibres


def _rest(p: HairCellParams) -> tuple[float, float, float]:
    kt = p.g * p.a / (p.a + p.b)
    c = p.m * p.y * kt / (p.l * kt + p.y * (p.l + p.r))
    return c * (p.l + p.r) / kt, c, c * p.r / p.x  # q, c, w


@njit(cache=True, parallel=True)
def _meddis_kernel(s, dt, q0, c0, w0, y, g, l, r, x, a, b, h, m, out):  # noqa: E741
    n_c, n_t = s.shape
    for i in prange(n_c):
        q, c, w = q0, c0, w0
        for t in range(n_t):
            v = s[i, t] + a
            k = g * dt * v / (v + b) if v > 0 else 0.0
            rep = y * dt * (m - q) if q < m else 0.0
            ej = k * q
            back = x * dt * w
            q_new = q + rep - ej + back
            c_new = c + ej - (l + r) * dt * c
            w_new = w + r * dt * c - back
            q = q_new if q_new > 0 else 0.0
            c = c_new if c_new > 0 else 0.0
            w = w_new if w_new > 0 else 0.0
            out[i, t] = c * h * dt


def meddis(velocity: np.ndarray, rate: float, params: HairCellParams = HairCellParams()) -> np.ndarray:
    """Release probability per sample ``[C, T]`` of membrane velocity ``[C, T]`` at ``rate`` Hz (numba)."""
    s = np.ascontiguousarray(velocity, np.float64)
    out = np.empty_like(s)
    p = params
    _meddis_kernel(s, 1.0 / rate, *_rest(p), p.y, p.g, p.l, p.r, p.x, p.a, p.b, p.h, p.m, out)
    return out


def meddis_reference(velocity: np.ndarray, rate: float, params: HairCellParams = HairCellParams()) -> np.ndarray:
    """Numpy oracle of :func:`meddis` (loop over time, vectorised over channels)."""
    p, dt = params, 1.0 / rate
    s = np.asarray(velocity, np.float64)
    q0, c0, w0 = _rest(p)
    q, c, w = (np.full(s.shape[0], v) for v in (q0, c0, w0))
    out = np.empty_like(s)
    for t in range(s.shape[1]):
        v = s[:, t] + p.a
        with np.errstate(invalid="ignore", divide="ignore"):
            k = np.where(v > 0, p.g * dt * v / (v + p.b), 0.0)
        rep = np.where(q < p.m, p.y * dt * (p.m - q), 0.0)
        ej, back = k * q, p.x * dt * w
        q, c, w = (np.maximum(q + rep - ej + back, 0), np.maximum(c + ej - (p.l + p.r) * dt * c, 0),
                   np.maximum(w + p.r * dt * c - back, 0))
        out[:, t] = c * p.h * dt
    return out


# ----------------------------------------------------------------------------- fibres
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, inline="always")
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def _cum_hazard(p, out):
    acc = 0.0
    out[0] = 0.0
    for t in range(p.shape[0]):
        pt = p[t]
        if pt > 0.0:
            acc += -math.log1p(-min(pt, 1.0 - 1e-12))
        out[t + 1] = acc
    return out


@njit(cache=True)
def _fibre_train(hz, n_t, gap, state, buf):
    """Spike samples of one fibre into ``buf``; returns their number."""
    n = 0
    t = 0
    total = hz[n_t]
    while t < n_t:
        state = state + _GOLDEN
        u = np.float64(_mix(state) >> np.uint64(11)) * (1.0 / 9007199254740992.0)  # [0, 1)
        target = hz[t] - math.log1p(-u)
        if target >= total:
            break
        lo, hi = t, n_t - 1  # first j in [t, n_t) with hz[j + 1] > target
        while lo < hi:
            mid = (lo + hi) // 2
            if hz[mid + 1] > target:
                hi = mid
            else:
                lo = mid + 1
        buf[n] = lo
        n += 1
        t = lo + gap
    return n


@njit(cache=True)
def _fibre_key(key, channel, fibre):
    return _mix(key ^ _mix(np.uint64(channel) * np.uint64(1_000_003) + np.uint64(fibre) + _GOLDEN))


@njit(cache=True, parallel=True)
def _counts_kernel(p, n_fibres, gap, key, ch0, out):
    n_c, n_t = p.shape
    for i in prange(n_c):
        hz = _cum_hazard(p[i], np.empty(n_t + 1))
        buf = np.empty(n_t // gap + 2, np.int64)
        for f in range(n_fibres):
            n = _fibre_train(hz, n_t, gap, _fibre_key(key, ch0 + i, f), buf)
            for k in range(n):
                out[i, buf[k]] += 1


def _gap(rate: float, refractory: float) -> int:
    return max(1, math.ceil(refractory * rate - 1e-9))


def _key(seed: int) -> np.uint64:
    return np.random.SeedSequence(seed).generate_state(1, np.uint64)[0]


def fibre_counts(prob: np.ndarray, rate: float, n_fibres: int, seed: int, refractory: float = 1e-3,
                 channel_offset: int = 0) -> np.ndarray:
    """Fibre spikes per channel and sample ``[C, T]`` (int32); channel ``i`` is global ``channel_offset + i``."""
    p = np.ascontiguousarray(prob, np.float64)
    out = np.zeros(p.shape, np.int32)
    _counts_kernel(p, int(n_fibres), _gap(rate, refractory), _key(seed), int(channel_offset), out)
    return out


@njit(cache=True)
def _spikes_kernel(p, n_fibres, gap, key, ch0):
    n_c, n_t = p.shape
    chans, fibres, samples = [], [], []
    for i in range(n_c):
        hz = _cum_hazard(p[i], np.empty(n_t + 1))
        buf = np.empty(n_t // gap + 2, np.int64)
        for f in range(n_fibres):
            n = _fibre_train(hz, n_t, gap, _fibre_key(key, ch0 + i, f), buf)
            for k in range(n):
                chans.append(i)
                fibres.append(f)
                samples.append(buf[k])
    return np.array(chans, np.int64), np.array(fibres, np.int64), np.array(samples, np.int64)


def fibre_spikes(prob: np.ndarray, rate: float, n_fibres: int, seed: int, refractory: float = 1e-3,
                 channel_offset: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The individual fibre spikes behind :func:`fibre_counts`: ``(channel, fibre, sample)`` arrays."""
    p = np.ascontiguousarray(prob, np.float64)
    return _spikes_kernel(p, int(n_fibres), _gap(rate, refractory), _key(seed), int(channel_offset))


def fibres_reference(prob: np.ndarray, rate: float, n_fibres: int, rng: np.random.Generator,
                     refractory: float = 1e-3) -> np.ndarray:
    """Numpy oracle of :func:`fibre_counts` (same distribution, other random numbers): a uniform per
    sample and fibre, then spikes within the refractory period of the last kept one are dropped."""
    p = np.asarray(prob, np.float64)
    gap = _gap(rate, refractory)
    raw = rng.random((p.shape[0], n_fibres, p.shape[1])) < p[:, None, :]  # [C, F, T]
    last = np.full(raw.shape[:2], -gap)
    for t in range(p.shape[1]):
        keep = raw[:, :, t] & (t - last >= gap)
        raw[:, :, t] = keep
        last = np.where(keep, t, last)
    return raw.sum(axis=1).astype(np.int32)


# ----------------------------------------------------------------------------- bushy cells
@njit(cache=True, parallel=True)
def _bushy_kernel(counts, dsyn, dmem, gain, gap, out):
    n_c, n_t = counts.shape
    for i in prange(n_c):
        v = 0.0
        cur = 0.0
        refr = 0
        for t in range(n_t):
            if t > 0:
                cur *= dsyn
                if refr <= 0:
                    if v < 1.0:
                        v *= dmem
                    else:
                        out[i, t - 1] = True
                        refr = gap
                        v = 0.0
                else:
                    v = 0.0
            cur += counts[i, t]
            if refr <= 0:
                v += cur * gain
                if v > 1.0:
                    v = 1.0
            refr -= 1


def _bushy_consts(rate: float, n_fibres: int, p: BushyParams):
    dt = 1.0 / rate
    return math.exp(-dt / p.tau_syn), math.exp(-dt / p.tau_mem), p.weight / n_fibres * dt, _gap(rate, p.refractory)


def bushy(counts: np.ndarray, rate: float, n_fibres: int, params: BushyParams = BushyParams()) -> np.ndarray:
    """Bushy-cell spikes ``[C, T]`` (bool) from fibre spike counts ``[C, T]`` (numba)."""
    c = np.ascontiguousarray(counts, np.float64)
    out = np.zeros(c.shape, np.bool_)
    _bushy_kernel(c, *_bushy_consts(rate, n_fibres, params), out)
    return out


def bushy_reference(counts: np.ndarray, rate: float, n_fibres: int, params: BushyParams = BushyParams()) -> np.ndarray:
    """Numpy oracle of :func:`bushy` (loop over time, vectorised over channels)."""
    dsyn, dmem, gain, gap = _bushy_consts(rate, n_fibres, params)
    c = np.asarray(counts, np.float64)
    n_c, n_t = c.shape
    v, cur, refr = np.zeros(n_c), np.zeros(n_c), np.zeros(n_c, np.int64)
    out = np.zeros(c.shape, np.bool_)
    for t in range(n_t):
        if t > 0:
            cur = cur * dsyn
            free = refr <= 0
            fire = free & (v >= 1.0)
            out[:, t - 1] = fire
            refr = np.where(fire, gap, refr)
            v = np.where(free & ~fire, v * dmem, 0.0)
        cur = cur + c[:, t]
        free = refr <= 0
        v = np.where(free, np.minimum(v + cur * gain, 1.0), v)
        refr = refr - 1
    return out
