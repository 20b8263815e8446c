"""Readers for event-camera files, returning tonic's structured event array.

Every reader returns a :class:`Recording` ``(events, sensor_size)`` where ``events`` has
:data:`spike.core.events.EVENT_DTYPE` (``x, y, t, p`` as int64, ``t`` in integer microseconds,
``p`` in ``{0, 1}`` for camera files) and ``sensor_size = (W, H, P)``. :func:`read_events` picks
the format from the file's magic bytes, header and extension.

Guarantees. Every result satisfies the invariants: ``0 <= x < W``, ``0 <= y < H``,
``0 <= p < P``, ``t`` non-decreasing, the dtype above, and a sensor size from the file's header
(or a stated inference for formats without one). Anything else raises one
:class:`EventFileError` (a ``ValueError``) whose message starts with the file path: a missing
file (:class:`EventFileNotFoundError`, also a ``FileNotFoundError``), a directory or FIFO, an
unknown format, a damaged header, truncated or corrupted data, events outside the sensor,
backward time steps, and any error, panic or printed message of a third-party decoder.

Which decoder reads which format was chosen by measurement (``python bench/io.py [--mutations N]``;
the table with agreement, speed and behaviour on damaged files is in the user guide, *Event files and
transforms*): ``aedat`` for AEDAT4 (its header walked here first), ours (numba) for EVT3, EVT2 and
DAT (faery and expelliarmus mis-decode backward or wrapping timestamps), ours (numpy) for the 40-bit
N-MNIST format and ``.bs1``, ``numpy.load`` (header checked first, no pickle) and ``h5py`` for arrays.

Time is returned as stored in the file: AEDAT4 times are absolute (microseconds since the Unix
epoch), Prophesee and N-MNIST times count from the recording start (plus a ``% t0`` header
offset where faery wrote one).

Unsorted timestamps. Decoded correctly, none of the real EVT2/EVT3/DAT recordings here has a
backward step, so one usually means a corrupted file: readers raise by default, and
``sort=True`` stable-sorts by ``t`` instead (keeping file order among equal times).
"""

from __future__ import annotations

import os

from spike.io._common import (
    EventFileError,
    EventFileNotFoundError,
    Recording,
    _fail,
    _path,
    _read_bytes,
)
from spike.io.aedat4 import _AEDAT4_MAGIC, read_aedat4
from spike.io.arrays import read_hdf5, read_metadata, read_npy, read_npz
from spike.io.bin40 import decode_40bit, read_bs1, read_nmnist
from spike.io.prophesee import (
    _MAX_HEADER,
    _prophesee_version,
    _read_prophesee_header,
    decode_dat,
    decode_evt2,
    decode_evt3,
    read_dat,
    read_evt2,
    read_evt3,
)

__all__ = [
    "EventFileError",
    "EventFileNotFoundError",
    "FORMATS",
    "Recording",
    "decode_40bit",
    "decode_dat",
    "decode_evt2",
    "decode_evt3",
    "detect_format",
    "read_aedat4",
    "read_bs1",
    "read_dat",
    "read_events",
    "read_evt2",
    "read_evt3",
    "read_hdf5",
    "read_metadata",
    "read_nmnist",
    "read_npy",
    "read_npz",
]

FORMATS = ("aedat4", "evt2", "evt3", "dat", "nmnist", "bs1", "npy", "npz", "hdf5")
"""Format names accepted by :func:`read_events`."""

_EXTENSIONS = {".aedat4": "aedat4", ".dat": "dat", ".bin": "nmnist", ".bs2": "nmnist",
               ".bs1": "bs1", ".npy": "npy", ".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5"}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

_READERS = {"aedat4": read_aedat4, "evt2": read_evt2, "evt3": read_evt3, "dat": read_dat,
            "nmnist": read_nmnist, "bs1": read_bs1, "npy": read_npy, "npz": read_npz,
            "hdf5": read_hdf5}


def detect_format(path: str | os.PathLike) -> str:
    """Name the format of ``path`` (one of :data:`FORMATS`) from its magic bytes, header and
    extension.

    Magic bytes win over the extension (AEDAT4, HDF5, ``.npy``, ``.npz``); a ``%`` header with an
    ``evt``/``format`` line is EVT 2.0 or 3.0 whatever the extension (``.dat`` aside, whose header
    has none).
    """
    path = _path(path)
    suffix = path.suffix.lower()
    head = _read_bytes(path, _MAX_HEADER)
    if head.startswith(_AEDAT4_MAGIC):
        return "aedat4"
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04") and suffix in (".npz", ".zip"):
        return "npz"
    fields = _read_prophesee_header(path, head)[0] if head[:1] == b"%" else {}
    version = _prophesee_version(fields)
    if suffix == ".raw" or (version and suffix != ".dat"):
        if version == "2":
            return "evt2"
        if version == "3":
            return "evt3"
        if version:
            raise _fail(path, f"unsupported Prophesee encoding 'evt {version}' "
                              f"(supported: EVT 2.0, EVT 3.0)")
        raise _fail(path, "no '% evt' line in the header: cannot tell EVT2 from EVT3; "
                          "pass format='evt2' or 'evt3'")
    if suffix in _EXTENSIONS:
        fmt = _EXTENSIONS[suffix]
        if fmt == "aedat4":
            raise _fail(path, f"not an AEDAT 4.0 file (starts with {head[:12]!r})")
        if fmt in ("npy", "npz", "hdf5"):
            raise _fail(path, f"not a {suffix} file (starts with {head[:8]!r})")
        return fmt
    if fields:
        return "dat"
    raise _fail(path, f"unknown event file type {suffix!r}; pass format= one of {FORMATS}")


def read_events(path: str | os.PathLike, format: str | None = None, *,
                sensor_size: tuple[int, int, int] | None = None, sort: bool = False) -> Recording:
    """Read an event file into tonic's structured array.

    Args:
        path: the file.
        format: one of :data:`FORMATS`; detected from magic bytes, header and extension when
            ``None``.
        sensor_size: ``(W, H, P)`` to use (and validate against) instead of the header's or
            the inferred one.
        sort: stable-sort by time instead of raising on backward time steps.

    Returns:
        :class:`Recording` ``(events, sensor_size)``.

    Raises:
        EventFileNotFoundError: the file does not exist (a ``FileNotFoundError`` too).
        EventFileError: any other problem, with the file path at the start of the message.

    Example:
        >>> events, sensor_size = read_events("recording.raw")  # doctest: +SKIP
    """
    if format is None:
        format = detect_format(path)
    if format not in _READERS:
        raise EventFileError(f"{path}: unknown format {format!r}; expected one of {FORMATS}")
    return _READERS[format](path, sensor_size=sensor_size, sort=sort)
