"""Write event arrays to AEDAT4, EVT2, EVT3, DAT, HDF5 and ``.npz`` files, atomically.

========  ===========  =====================================================================
format    extension    encoder, and what the file keeps
========  ===========  =====================================================================
aedat4    ``.aedat4``  faery (LZ4). x, y, p, absolute t (us); W, H.
evt3      ``.raw``     faery. x, y, p, t (us, from a ``% t0`` header line); W, H (<= 2048).
evt2      ``.raw``     faery, ``format="evt2"``. As EVT3.
dat       ``.dat``     faery (DAT v2, CD). As EVT3; W, H <= 16384.
hdf5      ``.h5``      h5py, the layout in :mod:`spike.io.arrays`. Everything, P and metadata too.
npz       ``.npz``     numpy. Everything, as HDF5.
========  ===========  =====================================================================

The camera formats store two polarities (OFF = ``p <= 0``, ON = ``p > 0``) and non-negative
times; ``.npz`` and HDF5 keep ``p`` and ``t`` as they are. Every file is written to a temporary
name in the target folder and renamed into place only when complete, so a failure (bad input,
full disk, an encoder error, Ctrl-C) leaves nothing behind and never a half-written file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from spike.core.atomic import atomic_path
from spike.core.events import EventError, validate_events
from spike.io._common import EventFileError, _check_size, _fail

__all__ = ["WRITE_FORMATS", "write_events"]

WRITE_FORMATS = ("aedat4", "evt2", "evt3", "dat", "hdf5", "npz")
"""Format names accepted by :func:`write_events`."""

_WRITE_EXTENSIONS = {".aedat4": "aedat4", ".raw": "evt3", ".dat": "dat", ".h5": "hdf5",
                     ".hdf5": "hdf5", ".npz": "npz"}
_CAMERA = ("aedat4", "evt2", "evt3", "dat")
_MAX_XY = {"aedat4": 1 << 16, "evt2": 1 << 11, "evt3": 1 << 11, "dat": 1 << 14}


def _atomic(path: Path):
    """:func:`spike.core.atomic.atomic_path` with this module's error type."""
    return atomic_path(path, EventFileError)


def _as_events(events, name: str) -> np.ndarray:
    if not isinstance(events, np.ndarray) or events.dtype.names is None:
        raise EventError(f"{name}: expected a structured numpy array with fields x, y, t, p, "
                         f"got {type(events).__name__}")
    for f in ("x", "y", "t", "p"):
        if f not in events.dtype.names:
            raise EventError(f"{name}: missing event field {f!r}; dtype is {events.dtype}")
        kind = events.dtype[f].kind
        if kind not in "iub":
            raise EventError(f"{name}: field {f!r} has dtype {events.dtype[f]}; the writers "
                             f"store integers (round t to microseconds first)")
        if kind == "u" and events.dtype[f].itemsize == 8 and len(events) and \
                events[f].max() >= 2**63:
            raise EventError(f"{name}: field {f!r} holds values beyond int64")
    if events.ndim != 1:
        raise EventError(f"{name}: expected a 1-D event array, got shape {events.shape}")
    out = np.empty(len(events), dtype=[(f, np.int64) for f in ("x", "y", "t", "p")])
    for f in ("x", "y", "t", "p"):
        out[f] = events[f]
    return out


def write_events(path: str | os.PathLike, events: np.ndarray, sensor_size,
                 format: str | None = None, *, metadata: dict | None = None) -> Path:
    """Write ``events`` to ``path`` in one of :data:`WRITE_FORMATS`, atomically.

    Args:
        path: the file to write (replaced if it exists).
        events: structured array with integer fields ``x, y, t, p`` (``t`` in us), sorted by
            time, inside ``sensor_size``.
        sensor_size: ``(W, H, P)``.
        format: one of :data:`WRITE_FORMATS`; from the extension when ``None`` (``.raw`` is
            EVT3, pass ``format="evt2"`` for EVT 2.0).
        metadata: JSON-serialisable dict stored in ``.npz`` / HDF5 files (ignored by the camera
            formats, which have no place for it).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        EventError: ``events`` is not a valid event array (message names ``events``).
        EventFileError: the format cannot hold these events, or writing failed; nothing is
            left at ``path`` (an existing file there is untouched).

    Example:
        >>> write_events("out.npz", events, (346, 260, 2))  # doctest: +SKIP
        >>> read_events("out.npz").sensor_size  # doctest: +SKIP
        (346, 260, 2)
    """
    path = Path(path)
    if format is None:
        format = _WRITE_EXTENSIONS.get(path.suffix.lower())
        if format is None:
            raise _fail(path, f"cannot tell the format from the extension {path.suffix!r}; pass "
                              f"format= one of {WRITE_FORMATS}")
    if format not in WRITE_FORMATS:
        raise _fail(path, f"unknown format {format!r}; expected one of {WRITE_FORMATS}")
    if path.is_dir():
        raise _fail(path, "is a directory")
    if not path.parent.is_dir():
        raise _fail(path, f"the folder {str(path.parent)!r} does not exist")
    size = _check_size("sensor_size", sensor_size)
    ev = _as_events(events, "events")
    try:
        validate_events(ev, size, check_sorted=True, name="events")
    except EventError as e:
        raise EventError(f"{e}; cannot write {path}") from None
    if format in _CAMERA:
        _check_camera(path, ev, size, format)
    if metadata is not None and format in ("npz", "hdf5"):
        import json

        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as e:
            raise _fail(path, f"metadata must be JSON-serialisable ({e})") from None
        if not isinstance(metadata, dict):
            raise _fail(path, f"metadata must be a dict, got {type(metadata).__name__}")
    with _atomic(path) as tmp:
        _write(format, tmp, path, ev, size, metadata)
    return path


def _check_camera(path: Path, ev: np.ndarray, size, format: str) -> None:
    lim = _MAX_XY[format]
    if size[0] > lim or size[1] > lim:
        raise _fail(path, f"{format.upper()} stores coordinates below {lim}; sensor_size "
                          f"{tuple(size)} does not fit")
    if size[2] not in (1, 2):
        raise _fail(path, f"{format.upper()} stores 2 polarities; sensor_size has P={size[2]}")
    if len(ev) and ev["t"][0] < 0:
        raise _fail(path, f"{format.upper()} stores non-negative times; t starts at {ev['t'][0]}")
    if format == "dat" and len(ev) > 1 and np.any(np.diff(ev["t"]) >= 2**31):
        raise _fail(path, "DAT's 32-bit clock cannot hold a gap of 2**31 us (36 min) or more "
                          "between events")


def _write(format: str, tmp: Path, path: Path, ev: np.ndarray, size, metadata) -> None:
    if format in ("evt2", "evt3"):
        from spike.io.prophesee import _write_evt

        _write_evt(tmp, path, ev, size, format)
    elif format == "dat":
        from spike.io.prophesee import _write_dat

        _write_dat(tmp, path, ev, size)
    elif format == "aedat4":
        from spike.io.aedat4 import _write_aedat4

        _write_aedat4(tmp, path, ev, size)
    elif format == "npz":
        from spike.io.arrays import _write_npz

        try:
            _write_npz(tmp, path, ev, size, metadata)
        except OSError as e:  # disk full, ...
            raise _fail(path, f"writing failed: {e}") from None
    else:
        from spike.io.arrays import _write_hdf5

        try:
            _write_hdf5(tmp, path, ev, size, metadata)
        except Exception as e:  # noqa: BLE001 - h5py's errors (disk full, ...)
            raise _fail(path, f"writing HDF5 failed: {e}") from None

