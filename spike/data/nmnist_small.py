"""The 1,000 + 100 real N-MNIST samples shipped with SLAYER's tests (``NMNISTsmall``).

Layout (``root``): ``1.bs2 ... 1000.bs2`` (N-MNIST train samples 1-1000), ``60001.bs2 ... 60100.bs2``
(test samples 1-100), ``train1K.txt`` and ``test100.txt`` (``#sample #class`` lines). ``.bs2`` is the
original N-MNIST 40-bit event layout, decoded with tonic's ``read_mnist_file``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spike.core.events import EVENT_DTYPE, validate_events

__all__ = ["SENSOR_SIZE", "DURATION_US", "read_split", "bin_events"]

SENSOR_SIZE = (34, 34, 2)
DURATION_US = 340_000  # three ~100 ms saccades; the longest sample ends at 336 ms


class DatasetNotFound(FileNotFoundError):
    """The NMNISTsmall files are not under ``root``; the message (one line) says what is expected."""


def _expect(root: Path) -> str:
    return (f"expected the NMNISTsmall folder at {root}: files train1K.txt, test100.txt, 1.bs2 ... 1000.bs2 and "
            f"60001.bs2 ... 60100.bs2 (from SLAYER's repository, test/test_files/NMNISTsmall)")


def read_split(root: str | Path, split: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Events and labels of ``split`` (``"train"``: 1,000 samples, ``"test"``: 100)."""
    import tonic.io

    root = Path(root)
    listing = root / {"train": "train1K.txt", "test": "test100.txt"}[split]
    if not listing.is_file():
        raise DatasetNotFound(_expect(root))
    rows = np.loadtxt(listing, dtype=np.int64, comments="#", ndmin=2)
    events, labels = [], []
    for sample, label in rows:
        f = root / f"{sample}.bs2"
        if not f.is_file():
            raise DatasetNotFound(f"missing {f}; " + _expect(root))
        raw = f.read_bytes()
        if len(raw) % 5:
            raise ValueError(f"{f}: size {len(raw)} is not a multiple of 5 bytes (40-bit N-MNIST events): truncated?")
        ev = tonic.io.read_mnist_file(str(f), dtype=EVENT_DTYPE)
        validate_events(ev, SENSOR_SIZE, name=str(f))
        events.append(ev)
        labels.append(label)
    return events, np.asarray(labels, dtype=np.int64)


def bin_events(events: list[np.ndarray], n_bins: int, duration_us: int = DURATION_US) -> np.ndarray:
    """Count events per ``(bin, p, y, x)``: ``[N, T, 2, 34, 34]`` float32; bin = ``t * T // duration`` clipped."""
    w, h, npol = SENSOR_SIZE
    out = np.zeros((len(events), n_bins, npol, h, w), dtype=np.float32)
    for i, ev in enumerate(events):
        b = np.clip(ev["t"] * n_bins // duration_us, 0, n_bins - 1)
        flat = ((b * npol + ev["p"]) * h + ev["y"]) * w + ev["x"]  # index into [T, P, H, W]
        out[i] = np.bincount(flat, minlength=n_bins * npol * h * w).reshape(n_bins, npol, h, w)
    return out
