"""Neuron models: pure step functions (``lif``) and thin module shells (``modules``)."""

from spike.neurons.lif import LIFDiscrete, LIFParams, LIFState, discretize, lif_step
from spike.neurons.modules import IF, LI, LIF, NeuronOutput
from spike.neurons.ultra_modules import UltraDLIF, UltraLIF

__all__ = ["LIF", "IF", "LI", "UltraLIF", "UltraDLIF", "NeuronOutput", "LIFParams", "LIFDiscrete", "LIFState", "discretize",
           "lif_step"]
