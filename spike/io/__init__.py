"""Input/output for `spike`: event-camera file readers and writers (decoders imported lazily).

Example:
    >>> from spike.io import read_events, write_events
    >>> events, sensor_size = read_events("recording.aedat4")  # doctest: +SKIP
    >>> write_events("recording.npz", events, sensor_size)  # doctest: +SKIP
"""

from spike.io import readers as _readers
from spike.io import writers as _writers
from spike.io.readers import *  # noqa: F401,F403  (the public names are readers.__all__)
from spike.io.writers import WRITE_FORMATS, EventWriter, write_events  # noqa: F401

__all__ = list(_readers.__all__) + list(_writers.__all__)
