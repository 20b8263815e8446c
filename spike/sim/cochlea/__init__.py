"""The cochlea model that made the Spiking Heidelberg Digits (numpy + numba, no torch).

Cramer, Stradmann, Schemmel & Zenke 2020, "The Heidelberg spiking data sets for the systematic
evaluation of spiking neural networks", IEEE TNNLS, doi:10.1109/TNNLS.2020.3044364: audio ->
RMS normalisation and Hanning ramps -> hydrodynamic basilar membrane (Sieroka et al. 2006) ->
Meddis inner hair cells -> refractory auditory-nerve fibres -> one bushy-cell LIF per channel.
See docs/guide/cochlea.md. :func:`cochlea` returns events, :func:`audio_to_shd` writes SHD files.
"""

from spike.sim.cochlea.basilar import BasilarParams, characteristic_frequencies
from spike.sim.cochlea.model import (CochleaConfig, CochleaError, cochlea, cochlea_spikes, min_sample_rate, preprocess,
                                     resample)
from spike.sim.cochlea.neural import BushyParams, HairCellParams
from spike.sim.cochlea.shd import AudioFileError, AudioFileNotFoundError, audio_to_shd, file_seed, read_audio

__all__ = [
    "AudioFileError",
    "AudioFileNotFoundError",
    "BasilarParams",
    "BushyParams",
    "CochleaConfig",
    "CochleaError",
    "HairCellParams",
    "audio_to_shd",
    "characteristic_frequencies",
    "cochlea",
    "cochlea_spikes",
    "file_seed",
    "min_sample_rate",
    "preprocess",
    "read_audio",
    "resample",
]
