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

:class:`EventWriter` writes the same files chunk by chunk (``spike simulate`` streams with it),
with memory that does not grow with the stream.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from spike.core.atomic import atomic_path
from spike.core.events import EventError, validate_events
from spike.io._common import EventFileError, _check_size, _fail, _third_party

__all__ = ["WRITE_FORMATS", "write_events", "EventWriter"]

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


def _target(path, format: str | None) -> tuple[Path, str]:
    """``(path, format)`` checked: a known format (from the extension when None), a writable folder."""
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
    return path, format


def _check_metadata(path: Path, format: str, metadata) -> None:
    if metadata is not None and format in ("npz", "hdf5"):
        import json

        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as e:
            raise _fail(path, f"metadata must be JSON-serialisable ({e})") from None
        if not isinstance(metadata, dict):
            raise _fail(path, f"metadata must be a dict, got {type(metadata).__name__}")


def write_events(path: str | os.PathLike, events: np.ndarray, sensor_size: tuple[int, int, int],
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
    path, format = _target(path, format)
    size = _check_size("sensor_size", sensor_size)
    ev = _as_events(events, "events")
    try:
        validate_events(ev, size, check_sorted=True, name="events")
    except EventError as e:
        raise EventError(f"{e}; cannot write {path}") from None
    if format in _CAMERA:
        _check_camera(path, ev, size, format)
    _check_metadata(path, format, metadata)
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



# --------------------------------------------------------------------------------------------
# incremental writing


class EventWriter:
    """Write an event stream chunk by chunk, atomically; memory does not grow with its length.

    ``EventWriter(path, sensor_size)`` opens a temporary file beside ``path``; :meth:`write`
    appends a chunk (sorted, and not before the previous chunk's last event); :meth:`close`
    finishes the file and renames it onto ``path``; :meth:`abort` (or an exception inside a
    ``with`` block) removes everything, leaving ``path`` as it was. The result equals
    :func:`write_events` of all chunks concatenated:

    * EVT2, EVT3, DAT: faery's encoders stream; the file is byte-identical to the one-shot file.
    * AEDAT4: faery's encoder stream, fed the same 65536-event packets as :func:`write_events`
      (buffered); byte-identical.
    * HDF5 and ``.npz``: their layouts need the length (and, for the compact dtypes, the
      ranges) up front, so the fields are spooled to temporary files beside ``path`` and
      assembled in blocks on :meth:`close`: memory stays flat, the disk briefly holds the
      events twice. HDF5 is byte-identical; in ``.npz`` every member is byte-identical and
      the zip headers differ at most in their timestamps (``np.savez`` stamps the clock).

    Args:
        path: the file to write (replaced on :meth:`close` if it exists).
        sensor_size: ``(W, H, P)``.
        format: as :func:`write_events`.
        metadata: as :func:`write_events`.

    Example:
        >>> with EventWriter("out.raw", (346, 260, 2)) as w:  # doctest: +SKIP
        ...     for chunk in chunks:
        ...         w.write(chunk)
    """

    _BLOCK = 1 << 16  # events per AEDAT4 packet and per copied block

    def __init__(self, path: str | os.PathLike, sensor_size: tuple[int, int, int], format: str | None = None, *,
                 metadata: dict | None = None) -> None:
        self.path, self.format = _target(path, format)
        self.sensor_size = _check_size("sensor_size", sensor_size)
        if self.format in _CAMERA:
            _check_camera(self.path, np.empty(0, _I64), self.sensor_size, self.format)
        _check_metadata(self.path, self.format, metadata)
        self.metadata = metadata
        self.count = 0
        self._last_t = None
        self._closed = False
        self._ctx = _atomic(self.path)
        self._tmp = self._ctx.__enter__()
        self._enc = None
        self._spool: dict[str, object] = {}
        self._buf: list[np.ndarray] = []
        try:
            self._open()
        except BaseException:
            self._cleanup(*_exc_info())
            raise

    # -- the encoders ---------------------------------------------------------------------

    def _open(self) -> None:
        f, size, tmp = self.format, self.sensor_size, str(self._tmp)
        if f in ("evt2", "evt3"):
            with _third_party(self.path, f"faery's {f.upper()} encoder failed", printed="warn"):
                from faery.extension import evt

                self._enc = evt.Encoder(path=tmp, version=f, zero_t0=True,
                                        dimensions=(size[0], size[1]), enforce_monotonic=True)
                self._enc.__enter__()
        elif f == "dat":
            with _third_party(self.path, "faery's DAT encoder failed", printed="warn"):
                from faery.extension import dat

                self._enc = dat.Encoder(path=tmp, version="dat2", event_type="cd", zero_t0=True,
                                        dimensions=(size[0], size[1]))
                self._enc.__enter__()
        elif f == "aedat4":
            self._enc = _Aedat4Stream(self._tmp, self.path, size)
        else:
            for k in ("x", "y", "t", "p"):
                sp = self._tmp.with_name(f"{self._tmp.name}.{k}")
                self._spool[k] = open(sp, "wb")
            self._lo = {k: None for k in ("x", "y", "p")}
            self._hi = {k: None for k in ("x", "y", "p")}

    def write(self, events: np.ndarray) -> None:
        """Append ``events`` (sorted by ``t``, none before the previous chunk's last event).

        Raises:
            EventError: not a valid event array (the message names ``path`` and the chunk).
            EventFileError: the format cannot hold these events, or writing failed; the
                writer is then aborted (nothing is left at ``path``).
        """
        if self._closed:
            raise _fail(self.path, "write() after close() or abort()")
        try:
            self._write(events)
        except BaseException:
            self.abort()
            raise

    def _write(self, events: np.ndarray) -> None:
        name = f"chunk at event {self.count}"
        ev = _as_events(events, name)
        try:
            validate_events(ev, self.sensor_size, check_sorted=True, name=name)
        except EventError as e:
            raise EventError(f"{e}; cannot write {self.path}") from None
        if not len(ev):
            return
        if self._last_t is not None and ev["t"][0] < self._last_t:
            raise EventError(f"{name}: starts at t={ev['t'][0]}, before the previous chunk's last "
                             f"event (t={self._last_t}); cannot write {self.path}")
        if self.format in _CAMERA:
            _check_camera(self.path, ev, self.sensor_size, self.format)
            if self.format == "dat" and self._last_t is not None and \
                    ev["t"][0] - self._last_t >= 2**31:
                raise _fail(self.path, "DAT's 32-bit clock cannot hold a gap of 2**31 us (36 min) "
                                       "or more between events")
        if self.format in ("evt2", "evt3"):
            from spike.io.prophesee import _faery_events

            with _third_party(self.path, f"faery's {self.format.upper()} encoder failed",
                              printed="warn"):
                self._enc.write({"events": _faery_events(ev)})
        elif self.format == "dat":
            packed = np.empty(len(ev), dtype=[("t", "<u8"), ("x", "<u2"), ("y", "<u2"),
                                              ("payload", "u1")])
            packed["t"], packed["x"], packed["y"] = ev["t"], ev["x"], ev["y"]
            packed["payload"] = ev["p"] > 0
            with _third_party(self.path, "faery's DAT encoder failed", printed="warn"):
                self._enc.write(packed)
        elif self.format == "aedat4":
            self._enc.write(ev)
        else:
            for k in ("x", "y", "p"):
                lo, hi = int(ev[k].min()), int(ev[k].max())
                self._lo[k] = lo if self._lo[k] is None else min(lo, self._lo[k])
                self._hi[k] = hi if self._hi[k] is None else max(hi, self._hi[k])
            try:
                for k in ("x", "y", "t", "p"):
                    self._spool[k].write(np.ascontiguousarray(ev[k]).tobytes())
            except OSError as e:
                raise _fail(self.path, f"writing failed: {e}") from None
        self.count += len(ev)
        self._last_t = int(ev["t"][-1])

    def close(self) -> Path:
        """Finish the file and rename it onto ``path``; returns ``path``."""
        if self._closed:
            raise _fail(self.path, "close() after close() or abort()")
        try:
            if self.format in ("evt2", "evt3", "dat"):
                with _third_party(self.path, f"faery's {self.format.upper()} encoder failed",
                                  printed="warn"):
                    enc, self._enc = self._enc, None
                    enc.__exit__(None, None, None)
            elif self.format == "aedat4":
                enc, self._enc = self._enc, None
                enc.close()
            else:
                self._assemble()
        except BaseException:
            self.abort()
            raise
        self._cleanup(None, None, None)
        return self.path

    def abort(self) -> None:
        """Remove the temporary files; ``path`` is left as it was. Idempotent."""
        if not self._closed:
            self._cleanup(*_exc_info(EventFileError(f"{self.path}: aborted")))

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, et, e, tb) -> None:
        if et is None:
            self.close()
        else:
            self.abort()

    # -- internals ------------------------------------------------------------------------

    def _cleanup(self, et, e, tb) -> None:
        self._closed = True
        import contextlib

        if self._enc is not None:  # aborted while an encoder is open: close it, then delete
            with contextlib.suppress(BaseException):
                if isinstance(self._enc, _Aedat4Stream):
                    self._enc.abort()
                else:
                    self._enc.__exit__(None, None, None)
            self._enc = None
        for fh in self._spool.values():
            fh.close()
            with contextlib.suppress(OSError):
                Path(fh.name).unlink()
        self._spool = {}
        if et is None:
            self._ctx.__exit__(None, None, None)  # renames the temporary onto path
        else:
            with contextlib.suppress(BaseException):
                self._ctx.__exit__(et, e, tb)  # removes the temporary (re-raises e: swallowed)
            with contextlib.suppress(OSError):
                self._tmp.unlink()

    def _dtypes(self) -> dict[str, np.dtype]:
        """The dtypes :func:`spike.io.arrays._compact` gives the whole stream."""
        n = self.count
        out = {}
        for k in ("x", "y"):
            out[k] = np.dtype(np.uint16) if n == 0 or (self._lo[k] >= 0 and self._hi[k] < 2**16) \
                else np.dtype(np.int64)
        out["t"] = np.dtype(np.int64)
        out["p"] = np.dtype(np.int8) if n == 0 or (self._lo["p"] >= -128 and self._hi["p"] < 128) \
            else np.dtype(np.int64)
        return out

    def _blocks(self, k: str, dtype: np.dtype):
        """The spooled field ``k`` in blocks, converted to ``dtype``."""
        fh = self._spool[k]
        fh.flush()
        src = np.memmap(fh.name, dtype=np.int64, mode="r") if self.count else np.empty(0, np.int64)
        step = self._BLOCK
        for i in range(0, self.count, step):
            yield np.ascontiguousarray(src[i:i + step]).astype(dtype)
        del src

    def _assemble(self) -> None:
        from spike.io.arrays import _full_metadata

        dtypes, n, size = self._dtypes(), self.count, self.sensor_size
        if self.format == "hdf5":
            import h5py

            try:
                with h5py.File(self._tmp, "w") as f:
                    f.attrs["sensor_size"] = np.asarray(size, np.int64)
                    f.attrs["metadata"] = _full_metadata(self.metadata)
                    g = f.create_group("events")
                    for k in ("x", "y", "t", "p"):
                        d = g.create_dataset(k, shape=(n,), dtype=dtypes[k])
                        i = 0
                        for b in self._blocks(k, dtypes[k]):
                            d[i:i + len(b)] = b
                            i += len(b)
            except Exception as e:  # noqa: BLE001 - h5py's errors (disk full, ...)
                raise _fail(self.path, f"writing HDF5 failed: {e}") from None
            return
        import zipfile

        from numpy.lib import format as npy

        try:
            with open(self._tmp, "wb") as fh, \
                    zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
                for k in ("x", "y", "t", "p"):
                    with z.open(f"{k}.npy", "w", force_zip64=True) as m:
                        npy.write_array_header_1_0(m, {"descr": npy.dtype_to_descr(dtypes[k]),
                                                       "fortran_order": False, "shape": (n,)})
                        for b in self._blocks(k, dtypes[k]):
                            m.write(b.tobytes())
                for k, v in (("sensor_size", np.asarray(size, np.int64)),
                             ("metadata", np.asarray(_full_metadata(self.metadata)))):
                    with z.open(f"{k}.npy", "w", force_zip64=True) as m:
                        npy.write_array(m, v, allow_pickle=False)
        except OSError as e:  # disk full, ...
            raise _fail(self.path, f"writing failed: {e}") from None


class _Aedat4Stream:
    """faery's AEDAT4 encoder with :func:`spike.io.aedat4._aedat4_description`, fed
    65536-event packets as that writer cuts them (the tests check the files are identical)."""

    def __init__(self, tmp: Path, path: Path, size) -> None:
        self.path, self.buf, self.n = path, [], 0
        with _third_party(path, "faery's AEDAT4 encoder failed", printed="warn"):
            from faery.extension import aedat as fa

            from spike.io.aedat4 import _aedat4_description

            self.enc = fa.Encoder(path=str(tmp), description=_aedat4_description(size), compression=fa.LZ4_DEFAULT)
            self.enc.__enter__()

    def write(self, ev: np.ndarray) -> None:
        from spike.io.prophesee import _faery_events

        self.buf.append(_faery_events(ev))
        self.n += len(ev)
        step = EventWriter._BLOCK
        if self.n >= step:
            packed = np.concatenate(self.buf)
            whole = len(packed) // step * step
            with _third_party(self.path, "faery's AEDAT4 encoder failed", printed="warn"):
                for i in range(0, whole, step):
                    self.enc.write(0, packed[i:i + step])
            self.buf = [packed[whole:]]
            self.n = len(packed) - whole

    def close(self) -> None:
        with _third_party(self.path, "faery's AEDAT4 encoder failed", printed="warn"):
            if self.n:
                self.enc.write(0, np.concatenate(self.buf))
            self.buf, self.n = [], 0
            enc, self.enc = self.enc, None
            enc.__exit__(None, None, None)

    def abort(self) -> None:
        if self.enc is not None:
            enc, self.enc = self.enc, None
            enc.__exit__(None, None, None)


_I64 = [(f, np.int64) for f in ("x", "y", "t", "p")]


def _exc_info(e: BaseException | None = None):
    import sys

    info = sys.exc_info()
    if info[0] is None and e is not None:
        return type(e), e, None
    return info
