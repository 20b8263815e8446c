"""Input/output for `spike`: raw event-camera file readers (numpy; parsers imported lazily).

Example:
    >>> from spike.io import read_events
    >>> events, sensor_size = read_events("recording.aedat4")  # doctest: +SKIP
"""

from spike.io.readers import (
    FORMATS,
    EventFileError,
    Recording,
    decode_40bit,
    decode_evt3,
    detect_format,
    read_aedat4,
    read_bs1,
    read_dat,
    read_events,
    read_evt2,
    read_evt3,
    read_nmnist,
    read_npy,
)

__all__ = [
    "FORMATS",
    "EventFileError",
    "Recording",
    "decode_40bit",
    "decode_evt3",
    "detect_format",
    "read_aedat4",
    "read_bs1",
    "read_dat",
    "read_events",
    "read_evt2",
    "read_evt3",
    "read_nmnist",
    "read_npy",
]
