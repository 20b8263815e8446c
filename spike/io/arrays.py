"""Array files: ``.npy`` (a structured array, no sensor size), and the two formats that
:func:`spike.io.write_events` writes with the sensor size and metadata, ``.npz`` and HDF5.

Layout of ``.npz`` (``numpy.load`` reads it, ``allow_pickle=False``) and HDF5 (``h5py`` reads it,
no filter plugin: datasets are uncompressed and contiguous):

==============  ===========================  ==================================================
npz key         HDF5 object                  content
==============  ===========================  ==================================================
``x``, ``y``    ``/events/x``, ``/events/y``  1-D ``uint16`` (``int64`` if a value needs it)
``t``           ``/events/t``                 1-D ``int64``, microseconds
``p``           ``/events/p``                 1-D ``int8``
``sensor_size`` attribute ``sensor_size``     ``int64`` ``[W, H, P]``
``metadata``    attribute ``metadata``        JSON text: ``{"format": "spike.events",
                                              "version": 1, "t_unit": "us", ...}`` plus the
                                              caller's ``metadata``
==============  ===========================  ==================================================

HDF5 attributes sit on the root group. ``.npz`` files holding one structured ``events`` array
(``np.savez(f, events=ev)``) read too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from spike.io._common import (
    EventFileError,
    Recording,
    _fail,
    _finish,
    _path,
    _read_bytes,
    _to_events,
)

__all__ = ["read_hdf5", "read_metadata", "read_npy", "read_npz"]

LAYOUT_VERSION = 1


def _columns(path: Path, get, names) -> np.ndarray:
    """Events from named 1-D columns (``get(name)``); ``y`` may be missing (becomes 0)."""
    missing = [f for f in ("x", "t", "p") if f not in names]
    if missing:
        raise _fail(path, f"wrong fields: expected x, (y,) t, p; missing {missing} "
                          f"(has {sorted(names)})")
    cols = {}
    n = None
    for f in ("x", "y", "t", "p"):
        if f not in names:
            continue
        v = np.asarray(get(f))
        if v.ndim != 1:
            raise _fail(path, f"field {f!r} has shape {v.shape}, expected 1-D")
        if n is not None and len(v) != n:
            raise _fail(path, f"fields have different lengths ({n} and {len(v)} for {f!r})")
        n = len(v)
        if v.dtype.kind == "b":
            v = v.astype(np.int64)
        if v.dtype.kind == "f":
            if not np.all(np.isfinite(v)) or not np.all(v == np.round(v)) or (
                    len(v) and np.abs(v).max() >= 2**62):
                raise _fail(path, f"wrong dtype: field {f!r} has dtype {v.dtype} with values "
                                  f"that are not whole numbers; expected integer values")
        elif v.dtype.kind == "u" and v.dtype.itemsize == 8 and len(v) and v.max() >= 2**63:
            raise _fail(path, f"field {f!r} holds values beyond int64")
        elif v.dtype.kind not in "iu":
            raise _fail(path, f"wrong dtype: field {f!r} has dtype {v.dtype}, "
                              f"expected integer values")
        cols[f] = v
    if "y" not in cols:
        cols["y"] = np.zeros(n or 0, np.int64)
    return _to_events(cols["x"], cols["y"], cols["t"], cols["p"])


def _npy_header(path: Path, fh) -> tuple[tuple[int, ...], np.dtype]:
    """Parse and check a ``.npy`` header without trusting it (``numpy.lib.format`` raises a zoo of
    exceptions on damaged headers: ValueError, SyntaxError, tokenize.TokenError, ...)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"unsupported .npy format version {version}")
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(fh)
    except Exception as e:  # noqa: BLE001 - any failure to parse is a damaged header
        raise _fail(path, f"not a readable .npy file (bad header: {type(e).__name__}: "
                          f"{str(e).strip()[:200]})") from None
    if dtype.hasobject:
        raise _fail(path, "the .npy array holds Python objects; only numeric fields are read")
    return shape, dtype


def read_npy(path: str | os.PathLike, *, sensor_size=None, sort: bool = False) -> Recording:
    """Read a structured event array saved with ``np.save`` (fields ``x, t, p``, optional ``y``).

    Fields must hold integers (or integer-valued floats); a missing ``y`` becomes 0. A ``.npy``
    file has no sensor size: it is inferred as ``(max x + 1, max y + 1, 2)`` unless given, so
    use :func:`spike.io.write_events` with ``.npz`` to keep it.
    """
    path = _path(path)
    with open(path, "rb") as fh:
        shape, dtype = _npy_header(path, fh)
        offset = fh.tell()
    size = os.path.getsize(path)
    count = int(np.prod(shape, dtype=np.float64)) if shape else 1
    if count * dtype.itemsize != size - offset:
        raise _fail(path, f"truncated or padded .npy file: the header promises {shape} x "
                          f"{dtype.itemsize} bytes, the file holds {size - offset} after it")
    if len(shape) != 1 or dtype.names is None:
        raise _fail(path, f"wrong dtype: expected a 1-D structured array with fields x, (y,) t, "
                          f"p; got shape {shape} dtype {dtype}")
    try:
        with open(path, "rb") as fh:
            arr = np.load(fh, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy's errors on a damaged body
        raise _fail(path, f"not a readable .npy file ({type(e).__name__}: {e})") from None
    events = _columns(path, lambda f: arr[f], arr.dtype.names)
    return _finish(path, events, None, sensor_size, sort)


def _parse_metadata(path: Path, text) -> dict:
    try:
        meta = json.loads(str(text))
    except ValueError as e:
        raise _fail(path, f"metadata is not JSON ({e})") from None
    if not isinstance(meta, dict):
        raise _fail(path, f"metadata must be a JSON object, got {type(meta).__name__}")
    return meta


def _npz_load(path: Path) -> tuple[np.ndarray, tuple | None, dict]:
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            names = set(z.files)
            if "events" in names:
                ev = z["events"]
                if ev.dtype.names is None:
                    raise _fail(path, f"'events' has dtype {ev.dtype}, expected a structured "
                                      f"array with fields x, (y,) t, p")
                events = _columns(path, lambda f: ev[f], ev.dtype.names)
            else:
                events = _columns(path, lambda f: z[f], names)
            size = tuple(z["sensor_size"].tolist()) if "sensor_size" in names else None
            meta = _parse_metadata(path, z["metadata"][()]) if "metadata" in names else {}
    except EventFileError:
        raise
    except Exception as e:  # noqa: BLE001 - zipfile, zlib and numpy errors on a damaged file
        raise _fail(path, f"not a readable .npz file ({type(e).__name__}: "
                          f"{str(e).strip()[:200]})") from None
    return events, size, meta


def read_npz(path: str | os.PathLike, *, sensor_size=None, sort: bool = False) -> Recording:
    """Read a ``.npz`` written by :func:`spike.io.write_events` (layout in this module's docstring).

    The sensor size stored in the file is returned (so a 346x260 recording stays 346x260); a
    ``.npz`` without ``sensor_size`` gets it inferred from the data.
    """
    path = _path(path)
    events, size, _ = _npz_load(path)
    return _finish(path, events, size, sensor_size, sort)


def _h5_load(path: Path, want_events: bool = True):
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - a core dependency
        raise _fail(path, "reading HDF5 needs h5py (a dependency of spike)") from e
    try:
        with h5py.File(path, "r") as f:
            group = f.get("events")
            if not isinstance(group, h5py.Group):
                raise _fail(path, "not a spike HDF5 event file: no /events group "
                                  "(expected /events/x, y, t, p)")
            names = set(group.keys())
            events = _columns(path, lambda k: group[k][()], names) if want_events else None
            size = f.attrs.get("sensor_size")
            size = None if size is None else tuple(np.asarray(size).tolist())
            meta = f.attrs.get("metadata")
            meta = {} if meta is None else _parse_metadata(
                path, meta.decode() if isinstance(meta, bytes) else meta)
    except EventFileError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py raises OSError, KeyError, ValueError, TypeError
        raise _fail(path, f"not a readable HDF5 event file ({type(e).__name__}: "
                          f"{str(e).strip()[:200]})") from None
    return events, size, meta


def read_hdf5(path: str | os.PathLike, *, sensor_size=None, sort: bool = False) -> Recording:
    """Read an HDF5 file written by :func:`spike.io.write_events` (layout: this module's doc)."""
    path = _path(path)
    if _read_bytes(path, 8) != b"\x89HDF\r\n\x1a\n":
        raise _fail(path, "not an HDF5 file (no HDF5 signature at the start)")
    events, size, _ = _h5_load(path)
    return _finish(path, events, size, sensor_size, sort)


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata dict that :func:`spike.io.write_events` stored in a ``.npz`` or HDF5 file."""
    path = _path(path)
    if _read_bytes(path, 8) == b"\x89HDF\r\n\x1a\n":
        return _h5_load(path, want_events=False)[2]
    return _npz_load(path)[2]


# ---------------------------------------------------------------------------------------------
# writers


def _compact(events: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for f in ("x", "y"):
        v = events[f]
        out[f] = v.astype(np.uint16) if len(v) == 0 or (v.min() >= 0 and v.max() < 2**16) else v
    out["t"] = events["t"].astype(np.int64)
    p = events["p"]
    out["p"] = p.astype(np.int8) if len(p) == 0 or (p.min() >= -128 and p.max() < 128) else p
    return out


def _full_metadata(metadata: dict | None) -> str:
    meta = {"format": "spike.events", "version": LAYOUT_VERSION, "t_unit": "us"}
    meta.update(metadata or {})
    return json.dumps(meta, sort_keys=True)


def _write_npz(tmp: Path, path, events: np.ndarray, size, metadata) -> None:
    with open(tmp, "wb") as fh:
        np.savez(fh, **_compact(events), sensor_size=np.asarray(size, np.int64),
                 metadata=np.asarray(_full_metadata(metadata)))


def _write_hdf5(tmp: Path, path, events: np.ndarray, size, metadata) -> None:
    import h5py

    with h5py.File(tmp, "w") as f:
        f.attrs["sensor_size"] = np.asarray(size, np.int64)
        f.attrs["metadata"] = _full_metadata(metadata)
        g = f.create_group("events")
        for k, v in _compact(events).items():
            g.create_dataset(k, data=v)
