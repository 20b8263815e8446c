"""Input/output for `spike`: raw event-camera file readers (numpy; parsers imported lazily).

Example:
    >>> from spike.io import read_events
    >>> events, sensor_size = read_events("recording.aedat4")  # doctest: +SKIP
"""

from spike.io import readers as _readers
from spike.io.readers import *  # noqa: F401,F403  (the public names are readers.__all__)

__all__ = list(_readers.__all__)
