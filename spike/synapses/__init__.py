"""Layers over time: stateless ops applied to ``[T, B, ...]``, time-shared dropout, readouts, and
the :class:`Sequential` container that threads neuron state through a network."""

from spike.synapses.delays import DelayedLinear
from spike.synapses.layers import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d,
                                   SharedDropout, TimeDistributed)
from spike.synapses.readout import MaxMembrane, MeanMembrane, SpikeCount, max_membrane, mean_membrane, spike_count
from spike.synapses.sequential import SeqOutput, Sequential

__all__ = ["DelayedLinear", "TimeDistributed", "Linear", "Conv2d", "BatchNorm1d", "BatchNorm2d", "AvgPool2d", "MaxPool2d",
           "Flatten", "SharedDropout", "SpikeCount", "MeanMembrane", "MaxMembrane", "spike_count",
           "mean_membrane", "max_membrane", "Sequential", "SeqOutput"]
