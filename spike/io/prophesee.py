"""Prophesee files: EVT 2.0 / 3.0 ``.raw`` and ``.dat`` (read by our decoders, written by faery).

Specs: https://docs.prophesee.ai/stable/data/encoding_formats/evt2.html, ``.../evt3.html`` and
``.../dat.html``. Time loops (EVT3's 24-bit, EVT2's 34-bit and DAT's 32-bit clocks) are unwrapped
only on a backward step of half the clock range or more, as Prophesee's own decoder (openeb) does
for EVT3; any smaller backward step is kept as it is, so the reader reports it (or sorts it with
``sort=True``) instead of inventing hours of recording.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from spike.io._common import (
    Recording,
    _empty,
    _fail,
    _finish,
    _path,
    _read_bytes,
    _third_party,
)

__all__ = ["decode_dat", "decode_evt2", "decode_evt3", "read_dat", "read_evt2", "read_evt3"]

_HEADER_LINE = re.compile(rb"^%[\x20-\x7e\t]*\r?$")  # printable ASCII only: data never matches
_MAX_HEADER = 1 << 16
_MAX_SIDE = 1 << 14  # DAT stores 14-bit coordinates; nothing Prophesee makes is larger

# Prophesee sensors whose .raw header names the plugin but not the geometry.
_PLUGIN_GEOMETRY = (("gen41", (1280, 720)), ("imx636", (1280, 720)), ("gen4", (1280, 720)),
                    ("gen31", (640, 480)), ("gen3", (640, 480)), ("genx320", (320, 320)))


# ---------------------------------------------------------------------------------------------
# header


def _read_prophesee_header(path: Path, data: bytes | None = None) -> tuple[dict[str, str], int]:
    """Parse the ``% key value`` lines at the top of a .raw/.dat file.

    The header ends at ``% end``, at the first line that does not start with ``%`` or at the
    first line holding anything but printable ASCII (binary data that happens to start with
    ``%``, byte 0x25).

    Returns:
        ``(fields, offset)``: lower-cased keys mapped to values, and the byte offset of the data.
    """
    if data is None:
        data = _read_bytes(path, _MAX_HEADER)
    fields: dict[str, str] = {}
    pos = 0
    while data[pos:pos + 1] == b"%":
        end = data.find(b"\n", pos)
        if end < 0:
            break
        line = data[pos:end]
        if not _HEADER_LINE.match(line):
            break
        pos = end + 1
        text = line[1:].decode("ascii").strip()
        if text == "end":
            break
        key, _, value = text.partition(" ")
        fields.setdefault(key.lower(), value.strip())
    return fields, pos


def _side(path: Path, key: str, value: str) -> int:
    if not re.fullmatch(r"\s*\d{1,9}\s*", value):
        raise _fail(path, f"bad header field '{key}': {value!r} is not a whole number")
    v = int(value)
    if not 1 <= v <= _MAX_SIDE:
        raise _fail(path, f"bad header field '{key}': {v} is outside 1..{_MAX_SIDE}")
    return v


def _prophesee_geometry(path: Path, fields: dict[str, str]) -> tuple[int, int, int] | None:
    """Sensor size from ``% geometry WxH``, ``% Width``/``% Height`` or ``% format
    ...;width=;height=`` (all present must agree), else from the plugin name, else ``None``."""
    found: dict[str, tuple[int, int]] = {}
    if "geometry" in fields:
        m = re.fullmatch(r"\s*(\S+?)\s*x\s*(\S+)\s*", fields["geometry"])
        if not m:
            raise _fail(path, f"bad header field 'geometry': {fields['geometry']!r} is not WxH")
        found["geometry"] = (_side(path, "geometry", m[1]), _side(path, "geometry", m[2]))
    if "width" in fields or "height" in fields:
        if "width" not in fields or "height" not in fields:
            raise _fail(path, "the header has only one of 'Width' and 'Height'")
        found["Width/Height"] = (_side(path, "Width", fields["width"]),
                                 _side(path, "Height", fields["height"]))
    fmt = fields.get("format", "")
    opts = dict(kv.split("=", 1) for kv in fmt.lower().split(";") if "=" in kv)
    if "width" in opts or "height" in opts:
        if "width" not in opts or "height" not in opts:
            raise _fail(path, f"bad header field 'format': {fmt!r} has only one of width, height")
        found["format"] = (_side(path, "format width", opts["width"]),
                           _side(path, "format height", opts["height"]))
    if len(set(found.values())) > 1:
        raise _fail(path, f"the header gives different sensor sizes: {found}")
    if found:
        w, h = next(iter(found.values()))
        return (w, h, 2)
    plugin = fields.get("plugin_name", "").lower()
    for key, (w, h) in _PLUGIN_GEOMETRY:
        if key in plugin:
            return (w, h, 2)
    return None


def _t0(path: Path, fields: dict[str, str]) -> int:
    """The ``% t0`` offset faery writes (times in the file count from it); 0 when absent."""
    value = fields.get("t0")
    if value is None:
        return 0
    if not re.fullmatch(r"\d{1,19}", value) or int(value) >= 2**62:
        raise _fail(path, f"bad header field 't0': {value!r} is not a time in microseconds")
    return int(value)


def _prophesee_version(fields: dict[str, str]) -> str:
    """``'2'``/``'3'`` (or what else the header says) from ``% evt`` or ``% format``; '' if none."""
    version = fields.get("evt", "") or fields.get("format", "").lower().replace("evt", "")
    version = version.split(";")[0].strip()
    return {"2.0": "2", "3.0": "3"}.get(version, version)


# ---------------------------------------------------------------------------------------------
# decoders


_B0 = (2**63 - 1, -2**63, 2**63 - 1, -2**63, 2**63 - 1, -2**63, -1, -2**63)  # empty bounds


def _evt2(words: np.ndarray):
    """``(events, bounds)`` of EVT 2.0 words: one slot per word, then the head is kept."""
    from spike.io._kernels import evt2_kernel

    b = np.empty(8, np.int64)
    ev = _empty(len(words))
    n = evt2_kernel(words, ev["x"], ev["y"], ev["t"], ev["p"], True, b)
    return (ev[:n] if n > len(ev) // 2 else ev[:n].copy()), b


def _evt3(words: np.ndarray):
    """``(events, bounds)`` of EVT 3.0 words, in one pass (a larger array if it fills up)."""
    from spike.io._kernels import evt3_kernel

    state = np.zeros(9, np.int64)
    state[7] = -1  # no VECT_BASE_X yet
    b = np.array(_B0, np.int64)
    ev = _empty(max(4096, len(words) // 2))  # real streams: 0.26 events per word
    n = 0
    while True:
        n = evt3_kernel(words, state, ev["x"], ev["y"], ev["t"], ev["p"], n, b)
        if state[0] >= len(words):
            break
        bigger = _empty(2 * len(ev))
        bigger[:n] = ev[:n]
        ev = bigger
    return (ev[:n] if n > len(ev) // 4 else ev[:n].copy()), b


def _split(ev: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.ascontiguousarray(ev[f]) for f in ("x", "y", "t", "p"))  # type: ignore


def decode_evt3(words: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode EVT 3.0 words into ``(x, y, t, p)`` int64 arrays in stream order.

    Each 16-bit word has a 4-bit type: ADDR_Y (0) sets y; ADDR_X (2) is one event at x with
    polarity; VECT_BASE_X (3) sets the base x and polarity of the following VECT_12 (4) /
    VECT_8 (5) words, whose set bits ``i`` are events at ``base + i`` (base then advances by
    12 / 8); TIME_LOW (6) sets the low 12 bits of the time; TIME_HIGH (8) sets the high 12 bits
    and, when it changes, clears the low bits (as openeb does; the next TIME_LOW follows at
    once in real streams). A TIME_HIGH drop of 2048 or more is a loop of the 24-bit clock
    (+2**24 us), as in openeb; a smaller drop is kept, so it shows as a backward time step.
    Words before the first TIME_HIGH are skipped (as openeb does), events before the first
    ADDR_Y and vectors before the first VECT_BASE_X are dropped, an exposure-measurement
    ADDR_Y (type 1) stops events until the next ADDR_Y, and other types are ignored.

    The time is as the spec defines it: faery 0.7.1 instead clamps every backward TIME_LOW step
    to the previous time (on ``expelliarmus/evt3_sample.raw`` 1455 events then differ by up to
    11 us), and clamps vector x to the width.

    Args:
        words: 1-D ``uint16`` array of the data words (header removed).

    Returns:
        ``(x, y, t, p)`` int64 arrays in stream order.
    """
    return _split(_evt3(np.ascontiguousarray(words, dtype=np.uint16))[0])


def decode_evt2(words: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode EVT 2.0 words into ``(x, y, t, p)`` int64 arrays in stream order.

    CD_OFF (0) / CD_ON (1) words carry x (bits 21..11), y (10..0) and the low 6 bits of time
    (27..22); TIME_HIGH (8) carries time bits 33..6. Events before the first TIME_HIGH are
    dropped; a TIME_HIGH drop of half its range (2**27) or more is a loop of the 34-bit clock,
    a smaller one is kept as a backward step. Other types (triggers, OTHERS, CONTINUED) are
    skipped.
    """
    return _split(_evt2(np.ascontiguousarray(words, dtype=np.uint32))[0])


def _dat(body, version: int):
    """``(events, bounds)`` of DAT events (the numba kernel of :func:`decode_dat`)."""
    from spike.io._kernels import dat_kernel

    raw = np.frombuffer(body, dtype="<u4")  # [t0, data0, t1, data1, ...]
    ev = _empty(len(raw) // 2)
    b = np.empty(8, np.int64)
    dat_kernel(raw, version, ev["x"], ev["y"], ev["t"], ev["p"], b)
    return ev, b


def decode_dat(body: bytes | np.ndarray, version: int = 2) -> np.ndarray:
    """Decode the 8-byte events of a DAT file (after the header and the type/size bytes).

    Each event is a little-endian 32-bit time (us) then a 32-bit word: version 2 has x in bits
    0..13, y in 14..27, polarity in 28..31; version 1 has x in 0..8, y in 9..16, polarity in
    17..20. The 32-bit time is unwrapped only at backward steps of more than 2**31 us (a loop
    of the clock; expelliarmus 1.1 unwraps any decrease, so one zeroed event adds 71 minutes).

    Returns:
        Structured array with :data:`~spike.core.events.EVENT_DTYPE`, in file order.
    """
    if len(body) % 8:
        raise ValueError(f"DAT events are 8 bytes: {len(body)} bytes is not a multiple of 8")
    return _dat(body, version)[0]


# ---------------------------------------------------------------------------------------------
# readers


def _add_t0(ev: np.ndarray, t0: int) -> np.ndarray:
    if t0:
        ev["t"] += t0
    return ev


def read_evt2(path: str | os.PathLike, *, sensor_size=None, sort: bool = False) -> Recording:
    """Read CD events from a Prophesee EVT 2.0 ``.raw`` file (decoded by :func:`decode_evt2`).

    Sensor size comes from the header (``% geometry``, ``% format ...;width=;height=``), else from
    the plugin name (``gen3`` -> 640x480, ``gen41``/``imx636`` -> 1280x720), else it is inferred
    from the data. A ``% t0`` header line (written by faery) is added to every time. A file
    without a header reads too (``read_events(path, format="evt2")``).
    """
    path = _path(path)
    data = _read_bytes(path)
    fields, offset = _read_prophesee_header(path, data[:_MAX_HEADER])
    version = _prophesee_version(fields)
    if version not in ("", "2"):
        raise _fail(path, f"the header says EVT {version}, not EVT 2.0")
    size, t0 = _prophesee_geometry(path, fields), _t0(path, fields)
    nbytes = len(data) - offset
    if nbytes % 4:
        raise _fail(path, f"truncated EVT2 stream: {nbytes} data bytes is not a whole number "
                          f"of 4-byte words")
    ev, b = _evt2(np.frombuffer(data, dtype="<u4", offset=offset))
    return _finish(path, _add_t0(ev, t0), size, sensor_size, sort, b)


def read_evt3(path: str | os.PathLike, *, sensor_size=None, sort: bool = False) -> Recording:
    """Read CD events from a Prophesee EVT 3.0 ``.raw`` file (decoded by :func:`decode_evt3`).

    Sensor size and ``% t0`` as in :func:`read_evt2`.
    """
    path = _path(path)
    data = _read_bytes(path)
    fields, offset = _read_prophesee_header(path, data[:_MAX_HEADER])
    version = _prophesee_version(fields)
    if version not in ("", "3"):
        raise _fail(path, f"the header says EVT {version}, not EVT 3.0")
    size, t0 = _prophesee_geometry(path, fields), _t0(path, fields)
    nbytes = len(data) - offset
    if nbytes % 2:
        raise _fail(path, f"truncated EVT3 stream: {nbytes} data bytes is not a whole number "
                          f"of 2-byte words")
    ev, b = _evt3(np.frombuffer(data, dtype="<u2", offset=offset))
    return _finish(path, _add_t0(ev, t0), size, sensor_size, sort, b)


def read_dat(path: str | os.PathLike, *, sensor_size=None, sort: bool = False) -> Recording:
    """Read CD (type 12) or 2-D TD (type 0) events from a Prophesee/ATIS ``.dat`` file.

    Layout: ``%`` header lines, one byte event type, one byte event size (8), then 8-byte events
    (:func:`decode_dat`; ``% Version 1`` selects the old 9/8-bit layout). Sensor size comes from
    ``% Width``/``% Height`` (or ``% geometry``); N-CARS-style files have neither and the size is
    inferred from the data. A ``% T0`` line (written by faery) is added to every time.
    """
    path = _path(path)
    data = _read_bytes(path)
    fields, offset = _read_prophesee_header(path, data[:_MAX_HEADER])
    if "evt" in fields:
        raise _fail(path, f"the header says EVT {fields['evt']}: this is a .raw file, not DAT")
    version = fields.get("version", "2").strip()
    if version not in ("1", "2"):
        raise _fail(path, f"unsupported DAT version {version!r} (supported: 1, 2)")
    size, t0 = _prophesee_geometry(path, fields), _t0(path, fields)
    if len(data) == offset:  # header only (faery writes no type/size bytes without events)
        return _finish(path, _empty(0), size, sensor_size, sort)
    if len(data) < offset + 2:
        raise _fail(path, "truncated DAT file: no event type/size bytes after the header")
    ev_type, ev_size = data[offset], data[offset + 1]
    if ev_size != 8 or ev_type not in (0, 12):
        raise _fail(path, f"unsupported DAT event type {ev_type} of size {ev_size} "
                          f"(expected type 0 or 12, size 8)")
    nbytes = len(data) - offset - 2
    if nbytes % 8:
        raise _fail(path, f"truncated DAT file: {nbytes} data bytes is not a whole number of "
                          f"8-byte events")
    ev, b = _dat(memoryview(data)[offset + 2:], int(version))
    return _finish(path, _add_t0(ev, t0), size, sensor_size, sort, b)


# ---------------------------------------------------------------------------------------------
# writers (faery's encoders; called by spike.io.writers.write_events on a temporary path)


def _faery_events(events: np.ndarray) -> np.ndarray:
    import faery

    out = np.empty(len(events), dtype=faery.EVENTS_DTYPE)
    out["t"], out["x"], out["y"] = events["t"], events["x"], events["y"]
    out["on"] = events["p"] > 0
    return out


def _write_evt(tmp: Path, path, events: np.ndarray, size, version: str) -> None:
    with _third_party(path, f"faery's {version.upper()} encoder failed", printed="warn"):
        from faery.extension import evt

        with evt.Encoder(path=str(tmp), version=version, zero_t0=True,
                         dimensions=(size[0], size[1]), enforce_monotonic=True) as enc:
            if len(events):
                enc.write({"events": _faery_events(events)})


def _write_dat(tmp: Path, path, events: np.ndarray, size) -> None:
    with _third_party(path, "faery's DAT encoder failed", printed="warn"):
        from faery.extension import dat

        packed = np.empty(len(events), dtype=[("t", "<u8"), ("x", "<u2"), ("y", "<u2"),
                                              ("payload", "u1")])
        packed["t"], packed["x"], packed["y"] = events["t"], events["x"], events["y"]
        packed["payload"] = events["p"] > 0
        with dat.Encoder(path=str(tmp), version="dat2", event_type="cd", zero_t0=True,
                         dimensions=(size[0], size[1])) as enc:
            if len(events):
                enc.write(packed)
