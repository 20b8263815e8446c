"""The SHD cochlea pipeline: audio -> 700 channels of bushy-cell spikes (numpy + numba, no torch).

Stages (Cramer, Stradmann, Schemmel & Zenke 2020, doi:10.1109/TNNLS.2020.3044364, section III):

1. RMS normalisation to ``rms_level`` (0.3), then a Hanning ramp over each half of the signal
   (``hanning(2 (N // 2))``: rising over the first ``N // 2`` samples, falling over the last);
2. the hydrodynamic basilar membrane (:mod:`.basilar`), ``n_channels`` places from base to apex
   (channel 0 best frequency 22.5 kHz, channel 699 100 Hz), output at ``fs // 2``;
3. a Meddis inner hair cell per channel (:func:`.neural.meddis`);
4. ``n_fibres`` refractory auditory-nerve fibres per channel (:func:`.neural.fibre_counts`);
5. one bushy-cell LIF per channel (:func:`.neural.bushy`), whose spikes are the output.

The channels are processed in chunks (memory stays near ``chunk_bytes``); every random draw comes
from ``seed`` and the channel and fibre number, so the output depends on nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from spike.core.events import EVENT_DTYPE
from spike.sim.cochlea import basilar, neural

__all__ = ["CochleaConfig", "CochleaError", "cochlea", "cochlea_spikes", "min_sample_rate", "preprocess", "resample"]

MIN_SAMPLE_RATE = 2000.0
"""No audio below this is accepted at all; the model itself needs more (:func:`min_sample_rate`)."""


class CochleaError(ValueError):
    """Audio or parameters the cochlea model cannot process."""


@dataclass(frozen=True)
class CochleaConfig:
    """All model constants; the defaults are the ones that made SHD."""

    rms_level: float = 0.3
    basilar: basilar.BasilarParams = field(default_factory=basilar.BasilarParams)
    hair: neural.HairCellParams = field(default_factory=neural.HairCellParams)
    bushy: neural.BushyParams = field(default_factory=neural.BushyParams)
    chunk_bytes: int = 64 * 2**20  # complex spectrum of one channel chunk


def min_sample_rate(config: CochleaConfig | None = None) -> float:
    """Lowest usable audio rate: the hair cell's forward Euler step needs ``(l + r) dt < 1`` at ``fs // 2``.

    18162 Hz with the SHD constants. The discretisation also makes the output depend somewhat on
    the rate; SHD used 48 kHz, so resample other audio to it (``resample_to=48000``) for
    SHD-comparable spikes.
    """
    hair = (config or CochleaConfig()).hair
    return 2.0 * (math.floor(hair.l + hair.r) + 1)



def resample(audio: np.ndarray, sample_rate: float, target: float, *, name: str = "audio") -> np.ndarray:
    """``audio`` resampled from ``sample_rate`` to ``target`` Hz (polyphase, ``scipy.signal.resample_poly``)."""
    from fractions import Fraction

    from scipy import signal

    fs, tg = _check_rate(sample_rate, name), _check_rate(target, name)
    ratio = Fraction(tg / fs).limit_denominator(1000)
    x = np.asarray(audio, np.float64)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1 or len(x) < 4:
        raise CochleaError(f"{name}: expected mono audio of shape [N] with N >= 4, got shape {x.shape}")
    return signal.resample_poly(x, ratio.numerator, ratio.denominator)

def _check_rate(sample_rate, name: str) -> float:
    try:
        fs = float(sample_rate)
    except (TypeError, ValueError):
        raise CochleaError(f"{name}: sample_rate must be a number in Hz, got {sample_rate!r}") from None
    if not math.isfinite(fs) or fs < MIN_SAMPLE_RATE:
        raise CochleaError(f"{name}: sample_rate must be a finite rate >= {MIN_SAMPLE_RATE:g} Hz, got {sample_rate!r}")
    return fs


def preprocess(audio: np.ndarray, sample_rate: float, rms_level: float = 0.3, *, name: str = "audio") -> np.ndarray:
    """Validated float64 copy of mono ``audio [N]``, RMS-normalised and Hanning-ramped.

    All-zero audio stays zero (its RMS is undefined); the input is not modified.
    """
    _check_rate(sample_rate, name)
    x = np.asarray(audio)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise CochleaError(f"{name}: expected mono audio of shape [N], got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise CochleaError(f"{name}: expected real samples, got dtype {x.dtype}")
    if len(x) < 4:
        raise CochleaError(f"{name}: needs at least 4 samples, got {len(x)}")
    x = x.astype(np.float64)  # copy
    if not np.isfinite(x).all():
        raise CochleaError(f"{name}: {int((~np.isfinite(x)).sum())} samples are NaN or infinite")
    rms = math.sqrt(float(np.mean(x**2)))
    x *= rms_level / rms if rms > 0 else 0.0
    half = len(x) // 2
    ramp = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(half) / (2 * half - 1))  # first half of hanning(2 half)
    x[:half] *= ramp
    x[len(x) - half:] *= ramp[::-1]
    return x


def cochlea_spikes(audio: np.ndarray, sample_rate: float, *, n_channels: int = 700, n_fibres: int = 40,
                   seed: int = 0, config: CochleaConfig | None = None, resample_to: float | None = None,
                   name: str = "audio") -> tuple[np.ndarray, np.ndarray, float]:
    """``(sample index, channel, rate)`` of all bushy-cell spikes, sorted by time then channel.

    Spike ``k`` is at ``sample[k] / rate`` seconds; ``rate = fs // 2`` (the membrane rate) where
    ``fs`` is ``resample_to`` if given, else ``sample_rate``.
    """
    cfg = config or CochleaConfig()
    if resample_to is not None:
        audio, sample_rate = resample(audio, sample_rate, resample_to, name=name), float(resample_to)
    fs = _check_rate(sample_rate, name)
    if fs < min_sample_rate(cfg):
        raise CochleaError(f"{name}: sample_rate {sample_rate!r} Hz is too low for the model's discretisation "
                           f"(needs >= {min_sample_rate(cfg):g} Hz; SHD used 48 kHz): pass resample_to=48000")
    if not (isinstance(n_channels, (int, np.integer)) and n_channels >= 1):
        raise CochleaError(f"{name}: n_channels must be a positive int, got {n_channels!r}")
    if not (isinstance(n_fibres, (int, np.integer)) and n_fibres >= 1):
        raise CochleaError(f"{name}: n_fibres must be a positive int, got {n_fibres!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CochleaError(f"{name}: seed must be a non-negative int, got {seed!r}")
    x = preprocess(audio, sample_rate, cfg.rms_level, name=name)
    c_all = basilar.places(int(n_channels), cfg.basilar)
    n_bins = len(x) // 2 + 1
    chunk = int(max(1, min(n_channels, cfg.chunk_bytes // (16 * n_bins))))
    import numba

    workers = numba.get_num_threads()
    samples, chans = [], []
    for c0 in range(0, n_channels, chunk):
        vel, rate = basilar.membrane(x, fs, c_all[c0:c0 + chunk], cfg.basilar, workers=workers)  # [c, M]
        prob = neural.meddis(vel, rate, cfg.hair)  # [c, M]
        del vel
        counts = neural.fibre_counts(prob, rate, int(n_fibres), int(seed), cfg.bushy.refractory, c0)
        out = neural.bushy(counts, rate, int(n_fibres), cfg.bushy)  # [c, M] bool
        ch, t = np.nonzero(out)
        samples.append(t)
        chans.append(ch + c0)
    t = np.concatenate(samples).astype(np.int64)
    ch = np.concatenate(chans).astype(np.int64)
    order = np.lexsort((ch, t))
    return t[order], ch[order], float(rate)


def cochlea(audio: np.ndarray, sample_rate: float, *, n_channels: int = 700, n_fibres: int = 40, seed: int = 0,
            config: CochleaConfig | None = None, resample_to: float | None = None) -> np.ndarray:
    """Spikes of the SHD cochlea model for mono ``audio`` at ``sample_rate`` Hz.

    Args:
        audio: samples ``[N]`` (any scale: the model normalises the RMS).
        sample_rate: Hz, at least :func:`min_sample_rate` (18162 Hz; SHD's recordings are 48 kHz).
        n_channels: basilar-membrane places, base (high frequency, channel 0) to apex.
        n_fibres: auditory-nerve fibres converging on each channel's bushy cell.
        seed: every random draw derives from it, the channel and the fibre number.
        config: model constants (:class:`CochleaConfig`).
        resample_to: resample the audio to this rate first (e.g. 48000 for 16 kHz speech).

    Returns:
        Events with :data:`spike.core.events.EVENT_DTYPE`: ``x`` = channel, ``t`` in microseconds
        (spike sample ``k`` at ``round(k * 1e6 / (fs // 2))``), ``y = p = 0``; sorted by
        ``t`` then ``x``; ``sensor_size = (n_channels, 1, 1)``.

    Example:
        >>> ev = cochlea(np.sin(2 * np.pi * 1000 * np.arange(4800) / 48000), 48000)  # doctest: +SKIP
    """
    t, ch, rate = cochlea_spikes(audio, sample_rate, n_channels=n_channels, n_fibres=n_fibres, seed=seed,
                                 config=config, resample_to=resample_to)
    ev = np.zeros(len(t), EVENT_DTYPE)
    ev["x"] = ch
    ev["t"] = np.rint(t * (1e6 / rate)).astype(np.int64)
    return ev
