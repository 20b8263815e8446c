"""Event-camera simulation (numpy + numba, no torch): ESIM/v2e frame-to-event conversion and
the N-MNIST-like saccade digits used by the quickstart."""

from spike.sim.digits import DigitsEvents, digits_events, load_digits_events, render_saccades
from spike.sim.esim import DVSConfig, SimulationError, lin_log, sensor_size_of, simulate

__all__ = [
    "DVSConfig",
    "DigitsEvents",
    "SimulationError",
    "digits_events",
    "lin_log",
    "load_digits_events",
    "render_saccades",
    "sensor_size_of",
    "simulate",
]
