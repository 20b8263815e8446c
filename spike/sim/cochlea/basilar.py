"""Hydrodynamic basilar-membrane model (Sieroka, Dosch & Rupp 2006, doi:10.1121/1.2204438).

The cochlea is a fluid-filled duct of height ``h`` and density ``rho``; the membrane at place ``c``
(cm from the base) has stiffness ``s(c) = c0 exp(-alpha c) - a``, mass ``m`` per area and damping
``r(c) = de sqrt(c0 m) exp(-alpha c / 2)``. Its membrane impedance is

.. math::
    \\xi(\\omega, c) = s(c) - m\\omega^2 - i\\omega r(c), \\qquad
    g(\\omega, c) = \\omega\\sqrt{\\rho / (h\\,\\xi)}.

The shallow-water (long-wave) pressure is a Hankel wave ``P = sqrt(G / g) H0(G)`` whose phase
integral ``G(omega, c)`` has the closed form of Sieroka et al. (their eq. 17, the WKB integral of
``g`` along the duct), and the membrane velocity per unit stapes drive is

.. math::
    V(\\omega, c) = \\frac{2\\omega}{\\xi(\\omega, c)} \\frac{P(\\omega, c)}{P(\\omega, 0)} Z(\\omega)

with the input impedance ``Z`` of the duct (Bessel functions of ``2 omega / alpha sqrt(2/(h c0))``).
The audio is filtered in the frequency domain, exactly as in the pipeline that made SHD: the
positive half of the spectrum (``N // 2 + 1`` bins, angular frequencies ``2 pi linspace(1, fs // 2,
N // 2 + 1)``) is multiplied by ``V`` and inverse-transformed over those bins only, so the
membrane signal has ``N // 2 + 1`` samples at ``fs // 2``; its real part is the velocity.

:func:`transfer_reference` evaluates ``V`` with numpy and ``scipy.special.hankel1`` (the oracle);
:func:`transfer` is the numba fast path (its own Hankel function: power series below
``|z| = 12``, Hankel's asymptotic expansion above), tested against it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, prange

__all__ = ["BasilarParams", "characteristic_frequencies", "frequency_grid", "membrane", "places",
           "resonance_frequencies", "transfer", "transfer_reference"]


@dataclass(frozen=True)
class BasilarParams:
    """Membrane and fluid constants (cgs units) of Sieroka et al. 2006 as used for SHD."""

    a: float = 3500.0  # stiffness offset
    alpha: float = 3.0  # 1/cm, stiffness decay along the membrane
    rho: float = 1.0  # fluid density
    length: float = 3.5  # cm, channels span places [0, length]
    c0: float = 1e9  # basal stiffness
    de: float = 0.15  # damping factor
    h: float = 0.1  # cm, duct height
    m: float = 0.05  # membrane mass per area

    @property
    def r0(self) -> float:
        return self.de * math.sqrt(self.c0 * self.m)


def places(n_channels: int, params: BasilarParams = BasilarParams()) -> np.ndarray:
    """Channel places ``c`` in cm (channel 0 at the base = highest frequency), shape ``[n_channels]``."""
    return np.linspace(0.0, params.length, n_channels)


def resonance_frequencies(n_channels: int = 700, params: BasilarParams = BasilarParams()) -> np.ndarray:
    """Undamped membrane resonance (Hz) per channel, ``sqrt(s(c) / m) / (2 pi)``: 22.5 kHz down to 110 Hz."""
    s = params.c0 * np.exp(-params.alpha * places(n_channels, params)) - params.a
    return np.sqrt(np.maximum(s, 0.0) / params.m) / (2 * np.pi)


def characteristic_frequencies(n_channels: int = 700, params: BasilarParams = BasilarParams(),
                               f_range: tuple[float, float] = (20.0, 30e3), n_grid: int = 1500) -> np.ndarray:
    """Characteristic frequency (Hz) per channel: where its ``|V(omega, c)|`` peaks (log grid, 0.5 %).

    A pure tone of frequency ``f`` drives hardest the channels whose CF is ``f``; the travelling
    wave peaks about 2 % of the membrane basal of the resonance (:func:`resonance_frequencies`).
    """
    return _cf(int(n_channels), params, (float(f_range[0]), float(f_range[1])), int(n_grid)).copy()


@functools.lru_cache(maxsize=8)
def _cf(n_channels: int, params: BasilarParams, f_range: tuple[float, float], n_grid: int) -> np.ndarray:
    f = np.geomspace(f_range[0], f_range[1], n_grid)
    mag = np.abs(transfer(2 * np.pi * f, places(n_channels, params), params))  # [C, F]
    return f[np.argmax(mag, axis=1)]


def frequency_grid(n_samples: int, sample_rate: float) -> tuple[np.ndarray, float]:
    """``(omega [N//2+1], membrane sample rate fs // 2)`` of the SHD pipeline's half-spectrum filter."""
    half = sample_rate // 2
    return 2 * np.pi * np.linspace(1.0, half, n_samples // 2 + 1), float(half)


def _common(omega: np.ndarray, p: BasilarParams):
    """Channel-independent factors: ``g(omega, 0)``, ``K(omega, 0)``, ``sqrt(a + m w^2)``, ``Z / P(omega, 0)``."""
    from scipy import special

    w = omega.astype(np.float64)
    am = p.a + p.m * w**2
    xi0 = p.c0 - am - 1j * w * p.r0
    g0 = w * np.sqrt(p.rho / (p.h * xi0))
    sq = np.sqrt(am)
    k0 = -np.sqrt(xi0) + 1j * (2 * am + 1j * w * p.r0) / (2 * sq)
    u = 2 * w / p.alpha * np.sqrt(2 / (p.h * p.c0))
    z = np.sqrt(2 * p.c0 / p.h) * (1j * special.j0(u) + special.y0(u)) / (special.j1(u) - 1j * special.y1(u))
    big_g0 = 2 * g0 / p.alpha
    p0 = np.sqrt(big_g0 / g0) * special.hankel1(0, big_g0)
    return g0, k0, sq, z / p0


def transfer_reference(omega: np.ndarray, c: np.ndarray, params: BasilarParams = BasilarParams()) -> np.ndarray:
    """``V(omega, c)`` with numpy + scipy (the oracle), shape ``[len(c), len(omega)]``, complex128."""
    from scipy import special

    p = params
    w = np.asarray(omega, np.float64)[None, :]  # [1, F]
    cc = np.asarray(c, np.float64)[:, None]  # [C, 1]
    g0, k0, sq, zp = (v[None, :] for v in _common(w[0], p))
    rc = p.r0 * np.exp(-p.alpha * cc / 2)
    xi = p.c0 * np.exp(-p.alpha * cc) - p.a - p.m * w**2 - 1j * w * rc  # [C, F]
    gc = w * np.sqrt(p.rho / (p.h * xi))
    kc = -np.sqrt(xi) + 1j * (2 * sq**2 + 1j * w * rc) / (2 * sq)
    big_g = 2 / p.alpha * (g0 - 1j * w * np.log(k0 / (np.exp(p.alpha * cc / 2) * kc)) / np.sqrt(p.h * sq**2))
    pc = np.sqrt(big_g / gc) * special.hankel1(0, big_g)
    return 2 * w / xi * pc * zp


_EULER = 0.5772156649015329


@njit(cache=True)
def hankel1_0(z: complex) -> complex:
    """``H0^(1)(z)`` for ``Re z >= 0``; relative error < 1e-8 where ``|H0(z)| > 1e-5``."""
    az = abs(z)
    if az >= 12.0:  # Hankel's expansion: sum_k i^k a_k / z^k, a_k = a_{k-1} * -(2k-1)^2 / (8k)
        inv = 1.0 / z
        iw = 1j * inv
        s = 1.0 + 0.0j
        term = 1.0 + 0.0j
        for k in range(1, 40):
            term = term * iw * (-((2 * k - 1) ** 2) / (8.0 * k))
            s += term
            if term.real * term.real + term.imag * term.imag < 1e-22:
                break
        return np.sqrt((2.0 / np.pi) * inv) * np.exp(1j * (z - np.pi / 4)) * s
    q = -z * z / 4.0  # power series of J0 and Y0
    tk = 1.0 + 0.0j
    j0 = 1.0 + 0.0j
    ysum = 0.0 + 0.0j
    hk = 0.0
    for k in range(1, 120):
        tk = tk * q * (1.0 / (k * k))
        hk += 1.0 / k
        j0 += tk
        ysum -= hk * tk
        if k > az and (tk.real * tk.real + tk.imag * tk.imag) * (1.0 + hk) ** 2 < 1e-34:
            break
    y0 = (2.0 / np.pi) * ((np.log(z / 2.0) + _EULER) * j0 + ysum)
    return j0 + 1j * y0


CUTOFF = 1e-15
"""Above its resonance a channel's ``|V|`` only falls; once it is below ``CUTOFF`` times its peak
the remaining (higher) frequencies are set to 0 instead of evaluated."""


@njit(cache=True, parallel=True)
def _transfer_kernel(w, cc, order, g0, k0, sq, zp, spec, a, alpha, rho, c0, r0, h, m, cut2, out):
    n_c, n_f = out.shape
    srh = math.sqrt(rho / h)
    for j in prange(n_c):
        i = order[j]
        c = cc[i]
        s = c0 * math.exp(-alpha * c) - a
        rc = r0 * math.exp(-alpha * c / 2)
        e = math.exp(alpha * c / 2)
        peak = 0.0
        for k in range(n_f):
            wk = w[k]
            mw2 = m * wk * wk
            xi = s - mw2 - 1j * wk * rc
            sxi = np.sqrt(xi)  # Im xi < 0, off the branch cut: sqrt(1 / xi) = 1 / sqrt(xi)
            gc = wk * srh / sxi
            kc = -sxi + 1j * (2 * sq[k] * sq[k] + 1j * wk * rc) / (2 * sq[k])
            big_g = 2 / alpha * (g0[k] - 1j * wk * np.log(k0[k] / (e * kc)) / math.sqrt(h) / sq[k])
            v = 2 * wk / xi * np.sqrt(big_g / gc) * hankel1_0(big_g) * zp[k]
            a2 = v.real * v.real + v.imag * v.imag
            if a2 > peak:
                peak = a2
            elif mw2 > s and a2 < cut2 * peak:
                for kk in range(k, n_f):
                    out[i, kk] = 0.0
                break
            out[i, k] = v * spec[k]


def transfer(omega: np.ndarray, c: np.ndarray, params: BasilarParams = BasilarParams(),
             spectrum: np.ndarray | None = None) -> np.ndarray:
    """``V(omega, c)`` (times ``spectrum`` when given), numba, shape ``[len(c), len(omega)]``."""
    p = params
    w = np.ascontiguousarray(omega, np.float64)
    g0, k0, sq, zp = _common(w, p)
    spec = np.ones(len(w), np.complex128) if spectrum is None else np.ascontiguousarray(spectrum, np.complex128)
    out = np.empty((len(c), len(w)), np.complex128)
    nt = numba.get_num_threads()  # deal channels round-robin: apical ones stop early, basal ones do not
    order = np.concatenate([np.arange(k, len(c), nt) for k in range(nt)]).astype(np.int64)
    _transfer_kernel(w, np.ascontiguousarray(c, np.float64), order, g0, k0, sq, zp, spec,
                     p.a, p.alpha, p.rho, p.c0, p.r0, p.h, p.m, CUTOFF**2, out)
    return out


def membrane(audio: np.ndarray, sample_rate: float, c: np.ndarray, params: BasilarParams = BasilarParams(),
             *, workers: int = 1) -> tuple[np.ndarray, float]:
    """Membrane velocity ``[len(c), N // 2 + 1]`` (float64) of preprocessed audio, and its rate ``fs // 2``."""
    from scipy import fft

    omega, rate = frequency_grid(len(audio), sample_rate)
    spec = np.fft.rfft(np.asarray(audio, np.float64))  # [N // 2 + 1]
    y = transfer(omega, c, params, spec)  # [C, M]
    m = y.shape[1]
    # Re(ifft(y)) = irfft of the Hermitian part (y_k + conj(y_{M-k})) / 2: half the work of a complex ifft
    mirror = np.conj(y[:, (m - np.arange(m // 2 + 1)) % m])  # [C, M // 2 + 1]
    herm = 0.5 * (y[:, : m // 2 + 1] + mirror)
    return fft.irfft(herm, n=m, axis=1, workers=workers), rate
