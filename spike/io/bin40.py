"""Header-less 5-byte formats: Orchard's 40-bit ATIS events (N-MNIST ``.bin``, SLAYER ``.bs2``) and
SLAYER's 1-D ``.bs1``. Both are decoded with numpy; neither stores the sensor size."""

from __future__ import annotations

import os

import numpy as np

from spike.io._common import Recording, _fail, _finish, _path, _read_bytes, _to_events

__all__ = ["decode_40bit", "read_bs1", "read_nmnist"]


def decode_40bit(data: bytes | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode Orchard's 40-bit ATIS events (N-MNIST, N-Caltech101 ``.bin``; SLAYER ``.bs2``).

    Byte layout per event: ``x`` (8 bit), ``y`` (8 bit), ``p`` (bit 7 of byte 2), ``t`` (23 bit,
    us, big-endian over bytes 2-4). A word with ``y == 240`` is a time-overflow marker, not an
    event: it adds 2**13 us to every later event, exactly as Orchard's reference reader
    (``Read_Ndataset.m``) and ``tonic.io.read_mnist_file`` do.

    Args:
        data: the file contents; its length must be a multiple of 5.

    Returns:
        ``(x, y, t, p)`` int64 arrays in file order.
    """
    b = np.frombuffer(data, dtype=np.uint8).reshape(-1, 5)  # (n_words, 5), a view
    t = (b[:, 2] & 0x7F).astype(np.int64) << 16
    t |= b[:, 3].astype(np.int64) << 8
    t |= b[:, 4]
    x, y, p = b[:, 0], b[:, 1], b[:, 2] >> 7
    overflow = y == 240
    if overflow.any():
        t += np.cumsum(overflow, dtype=np.int64) << 13
        keep = ~overflow
        x, y, t, p = x[keep], y[keep], t[keep], p[keep]
    return x.astype(np.int64), y.astype(np.int64), t, p.astype(np.int64)


def read_nmnist(path: str | os.PathLike, *, sensor_size=None, sort: bool = False) -> Recording:
    """Read the 40-bit ATIS format of N-MNIST / N-Caltech101 ``.bin`` and SLAYER ``.bs2`` files.

    Decoded by :func:`decode_40bit` (identical output to ``tonic.io.read_mnist_file`` on 1111
    real files, without importing tonic, which imports torch). The format has no header: the
    sensor size is inferred from the data (``(max x + 1, max y + 1, 2)``) unless given (N-MNIST
    is ``(34, 34, 2)``, SLAYER's DVS Gesture ``.bs2`` ``(128, 128, 2)``).
    """
    path = _path(path)
    data = _read_bytes(path)
    if len(data) % 5:
        raise _fail(path, f"truncated 40-bit event file: {len(data)} bytes is not a multiple of 5")
    events = _to_events(*decode_40bit(data))
    return _finish(path, events, None, sensor_size, sort)


def read_bs1(path: str | os.PathLike, *, sensor_size=None, sort: bool = False) -> Recording:
    """Read SLAYER's 1-D spike format ``.bs1`` (e.g. N-TIDIGITS, cochlea channels).

    Each event is 5 bytes: neuron id (16 bit, big-endian), polarity (1 bit), time (23 bit, us).
    The neuron id becomes ``x`` and ``y = 0``; the sensor size is inferred as
    ``(max id + 1, 1, 2)`` unless given.
    """
    path = _path(path)
    raw = np.frombuffer(_read_bytes(path), dtype=np.uint8)
    if raw.size % 5:
        raise _fail(path, f"truncated .bs1 file: {raw.size} bytes is not a multiple of 5")
    b = raw.reshape(-1, 5).astype(np.int64)  # (n_events, 5)
    x = (b[:, 0] << 8) | b[:, 1]
    p = b[:, 2] >> 7
    t = ((b[:, 2] & 0x7F) << 16) | (b[:, 3] << 8) | b[:, 4]
    events = _to_events(x, np.zeros_like(x), t, p)
    header = (int(x.max()) + 1, 1, 2) if len(events) else None
    return _finish(path, events, header, sensor_size, sort)
