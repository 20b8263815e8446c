"""What every event-file reader and writer shares: the error types, the result type, path checks,
the final validation, and the guard that turns a third-party decoder's panic or output into
:class:`EventFileError`."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from spike.core.events import EVENT_DTYPE, EventError, validate_events


class EventFileError(EventError):
    """An event file that cannot be read or written; the message starts with the file path."""


class EventFileNotFoundError(FileNotFoundError, EventFileError):
    """The event file does not exist (both a :class:`FileNotFoundError` and an
    :class:`EventFileError`)."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


class Recording(NamedTuple):
    """Decoded events plus the sensor they came from; unpacks as ``events, sensor_size``."""

    events: np.ndarray
    """Structured array with :data:`~spike.core.events.EVENT_DTYPE`."""
    sensor_size: tuple[int, int, int]
    """``(W, H, P)``: from the header where the format stores it, else inferred (see readers)."""


def _fail(path, problem: str) -> EventFileError:
    return EventFileError(f"{path}: {problem}")


def _path(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`Path` to an existing regular file (not opened: a FIFO blocks)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise EventFileNotFoundError(2, "event file not found", str(p)) from None
    except OSError as e:  # permission denied on a parent, name too long, loop of links
        raise _fail(p, f"cannot open: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(p, "is a directory, not an event file")
    if not stat.S_ISREG(st.st_mode):
        raise _fail(p, "is not a regular file (a FIFO, socket or device); copy it to a file first")
    return p


def _read_bytes(path: Path, limit: int | None = None) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read() if limit is None else fh.read(limit)
    except OSError as e:
        raise _fail(path, f"cannot read: {e.strerror or e}") from None


def _empty(n: int) -> np.ndarray:
    return np.empty(n, dtype=EVENT_DTYPE)


def _to_events(x, y, t, p) -> np.ndarray:
    ev = _empty(len(t))
    ev["x"], ev["y"], ev["t"], ev["p"] = x, y, t, p
    return ev


def _check_size(path, size, what: str = "sensor_size") -> tuple[int, int, int]:
    """``size`` as three positive ints, or :class:`EventFileError` naming ``path``."""
    try:
        out = tuple(int(s) for s in size)
        ok = len(out) == 3 and all(s == v for s, v in zip(out, size))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok or min(out) < 1:  # type: ignore[possibly-undefined]
        raise _fail(path, f"{what} must be three positive integers (W, H, P), got {size!r}")
    return out  # type: ignore[return-value]


def _infer_size(path, events: np.ndarray) -> tuple[int, int, int]:
    """Smallest sensor holding every event (a lower bound on the real sensor)."""
    if len(events) == 0:
        raise _fail(path, "no events and no sensor size in the file: cannot infer the sensor; "
                          "pass sensor_size=(W, H, P)")
    lo = min(int(events["x"].min()), int(events["y"].min()))
    if lo < 0:
        raise _fail(path, f"negative coordinate {lo}: events must lie on a sensor starting at 0")
    return (int(events["x"].max()) + 1, int(events["y"].max()) + 1, 2)


_FAST_CHECK = 1 << 16  # events; below this validate_events is fast enough (< 1 ms)


def _bounds(events: np.ndarray) -> np.ndarray | None:
    """``[x_min, x_max, y_min, y_max, p_min, p_max, first backward step or -1]`` in one numba
    pass (``validate_events`` takes seven strided numpy passes: 14 ms -> 1 ms on 0.5 M events);
    ``None`` when not worth it."""
    if len(events) < _FAST_CHECK or events.dtype != EVENT_DTYPE:
        return None
    from spike.io._kernels import bounds_kernel

    b = np.empty(8, np.int64)
    bounds_kernel(events["x"], events["y"], events["t"], events["p"], b)
    return b


def _within(b: np.ndarray, size) -> bool:
    """True if events with bounds ``b`` certainly pass ``validate_events(events, size)``."""
    xmin, xmax, ymin, ymax, pmin, pmax, bad = b[:7].tolist()
    if xmax < xmin:  # no events
        return True
    w, h, pol = size
    p_ok = (pmin >= 0 and pmax < pol) or (pol == 2 and pmin >= -1 and pmax <= 1)
    return bad < 0 and xmin >= 0 and xmax < w and ymin >= 0 and ymax < h and p_ok


def _finish(path: Path, events: np.ndarray, header_size, sensor_size, sort: bool,
            bounds: np.ndarray | None = None) -> Recording:
    """Pick the sensor size, optionally sort, and validate; every error names ``path``.

    ``sensor_size`` (the caller's) wins over ``header_size`` (the file's); with neither the size
    is inferred from the data. ``bounds`` (from a decoding kernel, see :mod:`spike.io._kernels`)
    lets a clean result skip ``validate_events``, which still makes every error message.
    """
    if sensor_size is not None:
        size = _check_size(path, sensor_size)
    elif header_size is not None:
        size = _check_size(path, header_size, "the sensor size in the file")
    else:
        size = _infer_size(path, events)
    if bounds is None:
        bounds = _bounds(events)
    if sort and len(events) > 1:
        t = events["t"]
        if (bounds[6] >= 0) if bounds is not None else np.any(t[1:] < t[:-1]):
            events = events[np.argsort(t, kind="stable")]
            if bounds is not None:
                bounds = bounds.copy()
                bounds[6] = -1  # sorted now; x, y, p bounds are unchanged
    if bounds is not None and _within(bounds, size):
        return Recording(events, size)
    try:
        validate_events(events, size, check_sorted=True, name=str(path))
    except EventError as e:
        msg = str(e)
        if "not sorted" in msg:
            msg += "; pass sort=True to stable-sort by time"
        raise EventFileError(msg) from None
    return Recording(events, size)


# ---------------------------------------------------------------------------------------------
# third-party decoders and encoders


def _is_panic(e: BaseException) -> bool:
    """A Rust panic surfaced by pyo3 (``pyo3_runtime.PanicException``, a BaseException)."""
    return type(e).__name__ == "PanicException"


class _Captured:
    text = ""


@contextlib.contextmanager
def _captured_output() -> Iterator[_Captured]:
    """Send file descriptors 1 and 2 to a temporary file while a native library runs.

    A Rust panic prints its message (and, with ``RUST_BACKTRACE``, a backtrace) on stderr, and C
    decoders print on stdout; neither must reach the user's terminal. Other threads' output in
    that window is captured too (the calls are short).
    """
    box = _Captured()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        tmp = tempfile.TemporaryFile()
    except (OSError, ValueError):  # pragma: no cover - no usable temp dir or closed streams
        yield box
        return
    saved: list[tuple[int, int]] = []
    try:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
            except OSError:  # pragma: no cover - that descriptor is closed
                continue
            os.dup2(tmp.fileno(), fd)
        yield box
    finally:
        for fd, old in saved:
            os.dup2(old, fd)
            os.close(old)
        tmp.seek(0)
        box.text = tmp.read(1 << 16).decode("utf-8", "replace").strip()
        tmp.close()


@contextlib.contextmanager
def _third_party(path, what: str, printed: str = "error") -> Iterator[None]:
    """Run third-party code on ``path``: any exception it raises, a pyo3 panic included, becomes one
    :class:`EventFileError` naming the file, and so does anything it prints (a decoder that
    talks has met something it did not expect; with ``printed="warn"``, used for encoders, it
    is re-issued as a warning naming the file). ``KeyboardInterrupt`` and ``SystemExit`` pass
    through."""
    problem = None
    with _captured_output() as out:
        try:
            yield
        except EventFileError:
            raise
        except Exception as e:  # the decoder's own error types (RuntimeError, OSError, ...)
            problem = f"{what}: {_first_line(e)}"
        except BaseException as e:
            if not _is_panic(e):
                raise
            problem = f"{what}: Rust panic: {_first_line(e)}"
    if problem is not None:
        raise _fail(path, problem) from None
    if out.text and printed == "error":
        raise _fail(path, f"{what}: the decoder printed {out.text[:300]!r}")
    if out.text:
        who = what.removesuffix(" failed")
        warnings.warn(f"{path}: {who} printed: {out.text[:500]}", RuntimeWarning, stacklevel=3)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]
