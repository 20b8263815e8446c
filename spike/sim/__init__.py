"""Event-camera simulation (numpy + numba, no torch): ESIM/v2e frame-to-event conversion, the
streaming video simulator with sensor and noise presets, and the N-MNIST-like saccade digits
used by the quickstart."""

from spike.sim.digits import DigitsEvents, digits_events, load_digits_events, render_saccades
from spike.sim.esim import DVSConfig, SimulationError, lin_log, sensor_size_of, simulate
from spike.sim.pixel import VideoSimulator, simulate_video
from spike.sim.presets import NOISE_PRESETS, SENSOR_PRESETS, noise_config, sensor_resolution
from spike.sim.video import VideoError, luminance, open_video, resize_frames

__all__ = [
    "DVSConfig",
    "DigitsEvents",
    "NOISE_PRESETS",
    "SENSOR_PRESETS",
    "SimulationError",
    "VideoError",
    "VideoSimulator",
    "digits_events",
    "lin_log",
    "load_digits_events",
    "luminance",
    "noise_config",
    "open_video",
    "render_saccades",
    "resize_frames",
    "sensor_resolution",
    "sensor_size_of",
    "simulate",
    "simulate_video",
]
