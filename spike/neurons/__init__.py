"""Neuron models: pure step functions (``lif``, ``cuba``, ``adlif``) and thin module shells (``modules``)."""

from spike.neurons.lif import LIFDiscrete, LIFParams, LIFState, discretize, lif_step
from spike.neurons.modules import IF, LI, LIF, NeuronOutput
from spike.neurons.ultra_modules import UltraDLIF, UltraLIF
from spike.neurons.cuba import CubaLIF, CubaParams, CubaState, cuba_step
from spike.neurons.adlif import AdLIF, AdLIFParams, AdLIFState, adlif_step

__all__ = ["LIF", "IF", "LI", "UltraLIF", "UltraDLIF", "NeuronOutput", "LIFParams", "LIFDiscrete", "LIFState", "discretize",
           "lif_step", "CubaLIF", "CubaParams", "CubaState", "cuba_step", "AdLIF", "AdLIFParams", "AdLIFState",
           "adlif_step"]
