"""Sensor and noise presets of the DVS simulator.

Sensors (pixel arrays, ``(W, H)``): ``dvs128`` (iniVation DVS128, 128 x 128), ``davis346``
(iniVation DAVIS346, 346 x 260), ``dvxplorer`` (iniVation DVXplorer, 640 x 480) and ``evk4``
(Prophesee EVK4 / Sony IMX636, 1280 x 720). A sensor preset sets only the resolution.

Noise (the pixel model, :class:`~spike.sim.esim.DVSConfig`): v2e's ``--dvs_params`` presets
(Hu, Liu & Delbruck 2021):

=========  =====  =====  ==========  ===========  ============  ===========
preset     C+/C-  sigma  cutoff_hz   leak_rate    leak_jitter   shot_noise
=========  =====  =====  ==========  ===========  ============  ===========
clean      0.2    0.02   0 (off)     0            0             0
noisy      0.2    0.05   30 Hz       0.1 Hz       0.1           5 Hz
=========  =====  =====  ==========  ===========  ============  ===========
"""

from __future__ import annotations

from spike.sim.esim import DVSConfig, SimulationError

__all__ = ["NOISE_PRESETS", "SENSOR_PRESETS", "noise_config", "sensor_resolution"]

SENSOR_PRESETS: dict[str, tuple[int, int]] = {
    "dvs128": (128, 128),
    "davis346": (346, 260),
    "dvxplorer": (640, 480),
    "evk4": (1280, 720),
}
"""Sensor name -> ``(W, H)``."""

NOISE_PRESETS: dict[str, dict[str, float]] = {
    "clean": {"pos_thres": 0.2, "neg_thres": 0.2, "sigma_thres": 0.02, "cutoff_hz": 0.0,
              "leak_rate_hz": 0.0, "leak_jitter": 0.0, "shot_noise_rate_hz": 0.0,
              "refractory_us": 0},
    "noisy": {"pos_thres": 0.2, "neg_thres": 0.2, "sigma_thres": 0.05, "cutoff_hz": 30.0,
              "leak_rate_hz": 0.1, "leak_jitter": 0.1, "shot_noise_rate_hz": 5.0,
              "refractory_us": 0},
}
"""Noise preset name -> :class:`~spike.sim.esim.DVSConfig` fields (v2e's values)."""


def sensor_resolution(name: str) -> tuple[int, int]:
    """``(W, H)`` of a sensor preset.

    Raises:
        SimulationError: unknown name (the message lists the presets).
    """
    if name not in SENSOR_PRESETS:
        raise SimulationError(f"unknown sensor preset {name!r}; expected one of "
                              f"{sorted(SENSOR_PRESETS)}")
    return SENSOR_PRESETS[name]


def noise_config(name: str = "clean", **overrides: float | None) -> DVSConfig:
    """The :class:`~spike.sim.esim.DVSConfig` of a noise preset, with fields overridden.

    Args:
        name: ``"clean"`` or ``"noisy"``.
        **overrides: ``DVSConfig`` fields; ``None`` values are ignored.

    Raises:
        SimulationError: unknown preset or field, or an invalid value.
    """
    if name not in NOISE_PRESETS:
        raise SimulationError(f"unknown noise preset {name!r}; expected one of "
                              f"{sorted(NOISE_PRESETS)}")
    fields = dict(NOISE_PRESETS[name])
    for k, v in overrides.items():
        if k not in DVSConfig.__dataclass_fields__:
            raise SimulationError(f"unknown DVSConfig field {k!r}")
        if v is not None:
            fields[k] = v
    return DVSConfig(**fields)
