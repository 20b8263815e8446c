"""Energy estimation as an observer: count synaptic operations (AC/MAC), neuron updates and spikes with
forward hooks (:class:`EnergyMeter`), then price them with cited per-operation costs (:mod:`.profiles`)."""

from spike.energy.counter import (RULES, EnergyError, EnergyMeter, EnergyReport, EnergyWarning, LayerCounts,
                                  measure)
from spike.energy.profiles import PROFILES, DeviceProfile, get_profile

__all__ = ["EnergyMeter", "EnergyReport", "LayerCounts", "EnergyError", "EnergyWarning", "RULES", "measure",
           "DeviceProfile", "PROFILES", "get_profile"]
