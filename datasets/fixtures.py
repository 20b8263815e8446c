"""Tiny, format-exact dataset fixtures that tonic's own dataset classes load without a network.

Each ``write_*`` function writes the on-disk layout that ``tonic.datasets.<Name>`` (tonic 1.7)
expects *after* download and extraction, under ``root/<Name>/``, and returns the samples it
wrote exactly as tonic will return them. Run ``python datasets/fixtures.py OUTDIR`` to write all
of them. Only numpy and h5py are needed (no torch, no tonic, no `spike`).

How tonic decides not to download: ``Dataset.__init__`` calls ``self._check_exists()``, which
for these classes is ``_is_file_present() and _folder_contains_at_least_n_files_of_type(n, ext)``.

* ``_is_file_present`` only checks that the *archive* ``root/<Name>/<filename>`` exists; it never
  hashes it. The fixtures therefore write an empty placeholder archive.
* The second check counts extracted files with ``glob("**/*<ext>")`` under
  ``root/<Name>/<folder_name>``: SHD/SSC need 1 ``.h5``, DVSGesture 100 ``.npy`` per split,
  NMNIST 10000 ``.bin`` per split (CIFAR10DVS 1000 ``.aedat4``, NCALTECH101 8709 ``.bin``).

The SHD, SSC and DVS Gesture fixtures pass that check unmodified (DVS Gesture writes 110 tiny
samples per split). Writing 10000 N-MNIST files is not a tiny fixture, so load N-MNIST inside
:func:`tonic_offline`, which relaxes only the file count (to 1) and makes ``download`` raise
instead of touching the network. This is the same switch tonic's own test-suite uses
(``patch.object(DATASET_CLASS, "_check_exists", return_value=True)``), kept narrower.

Example:
    >>> written = write_shd("/tmp/data")                       # doctest: +SKIP
    >>> import tonic
    >>> events, label = tonic.datasets.SHD("/tmp/data", train=True)[0]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import numpy as np

EVENT_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
"""tonic's event dtype (same as ``spike.core.events.EVENT_DTYPE``; kept here so the script is
standalone)."""

SHD_KEYS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
            "null", "eins", "zwei", "drei", "vier", "fuenf", "sechs", "sieben", "acht", "neun")
SSC_KEYS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "zero", "one",
            "two", "three", "four", "five", "six", "seven", "eight", "nine", "backward", "bed",
            "bird", "cat", "dog", "follow", "forward", "happy", "house", "learn", "marvin",
            "sheila", "tree", "visual", "wow")
GESTURE_LIGHTINGS = ("fluorescent", "fluorescent_led", "lab", "led", "natural")


class Sample(NamedTuple):
    """One written sample: events as tonic returns them (fields x, y, t, p) and the label."""

    events: np.ndarray
    target: int


def _events(x, y, t, p) -> np.ndarray:
    ev = np.empty(len(t), dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = x, y, t, p
    return ev


def _placeholder(path: Path) -> None:
    """An empty archive: tonic's ``_is_file_present`` only checks that it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


# --------------------------------------------------------------------------------------------
# N-MNIST 40-bit encoding


def encode_40bit(events: np.ndarray) -> bytes:
    """Encode events in Orchard's 40-bit ATIS layout (N-MNIST ``.bin``, SLAYER ``.bs2``).

    Per event: byte 0 = x, byte 1 = y, byte 2 = p << 7 | t[22:16], byte 3 = t[15:8],
    byte 4 = t[7:0]; ``t`` in microseconds. ``y == 240`` is reserved (time-overflow marker).

    Raises:
        ValueError: a field does not fit its bits.
    """
    x, y, t, p = (np.asarray(events[f], dtype=np.int64) for f in ("x", "y", "t", "p"))
    for name, v, hi in (("x", x, 256), ("y", y, 256), ("t", t, 1 << 23), ("p", p, 2)):
        if len(v) and (v.min() < 0 or v.max() >= hi):
            raise ValueError(f"{name} must lie in [0, {hi}) for the 40-bit format")
    if np.any(y == 240):
        raise ValueError("y == 240 marks a time overflow in the 40-bit format")
    out = np.empty((len(t), 5), dtype=np.uint8)  # (n_events, 5)
    out[:, 0], out[:, 1] = x, y
    out[:, 2] = (p << 7) | (t >> 16)
    out[:, 3], out[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    return out.tobytes()


def random_events(rng: np.random.Generator, n: int, sensor_size: tuple[int, int, int],
                  duration_us: int) -> np.ndarray:
    """``n`` events uniformly over the sensor and ``[0, duration_us)``, sorted by time."""
    w, h, pol = sensor_size
    return _events(rng.integers(0, w, n), rng.integers(0, h, n),
                   np.sort(rng.integers(0, duration_us, n)), rng.integers(0, pol, n))


# --------------------------------------------------------------------------------------------
# SHD / SSC (HDF5)


def _write_hsd_file(path: Path, rng: np.random.Generator, n_samples: int, keys: tuple[str, ...],
                    meta_info: bool) -> list[Sample]:
    """One SHD/SSC partition in the published layout.

    Cramer et al. 2020, doi:10.1109/TNNLS.2020.3044364.

    ``spikes/times`` holds one float16 array of spike times in seconds per sample and
    ``spikes/units`` one uint16 array of channel ids (0..699); ``labels`` (uint16),
    ``extra/speaker`` (uint16), ``extra/keys`` (byte strings) and, for SHD,
    ``extra/meta_info/{gender,age,body_height}``. Values are synthetic.
    """
    import h5py

    samples = []
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (n_samples,), dtype=h5py.vlen_dtype(np.float16))
        units = f.create_dataset("spikes/units", (n_samples,), dtype=h5py.vlen_dtype(np.uint16))
        labels = rng.integers(0, len(keys), n_samples).astype(np.uint16)
        for i in range(n_samples):
            n = int(rng.integers(5, 40))
            ts = np.sort(rng.uniform(0.0, 1.0, n)).astype(np.float16)
            us = rng.integers(0, 700, n).astype(np.uint16)
            times[i], units[i] = ts, us
            # tonic: float16 seconds -> float64 * 1e6 -> int field (truncation); p = 1, no y.
            t_us = (ts.astype(np.float64) * 1e6).astype(np.int64)
            samples.append(Sample(_events(us, 0, t_us, 1), int(labels[i])))
        f.create_dataset("labels", data=labels)
        f.create_dataset("extra/speaker", data=rng.integers(0, 12, n_samples).astype(np.uint16))
        f.create_dataset("extra/keys", data=np.array([k.encode() for k in keys]))
        if meta_info:
            f.create_dataset("extra/meta_info/gender", data=np.array([b"female", b"male"] * 6))
            f.create_dataset("extra/meta_info/age", data=rng.integers(20, 60, 12).astype(np.uint16))
            f.create_dataset("extra/meta_info/body_height",
                             data=rng.integers(150, 200, 12).astype(np.uint16))
    return samples


def write_shd(root: str | Path, *, n_train: int = 4, n_test: int = 2,
              seed: int = 0) -> dict[str, list[Sample]]:
    """Write ``root/SHD/shd_{train,test}.h5`` (+ placeholder ``.h5.zip``) for tonic's ``SHD``.

    Returns:
        ``{"train": [...], "test": [...]}``, samples in tonic's index order.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "SHD"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        _placeholder(folder / f"shd_{split}.h5.zip")
        out[split] = _write_hsd_file(folder / f"shd_{split}.h5", rng, n, SHD_KEYS, True)
    return out


def write_ssc(root: str | Path, *, n_train: int = 3, n_valid: int = 2, n_test: int = 2,
              seed: int = 1) -> dict[str, list[Sample]]:
    """Write ``root/SSC/ssc_{train,valid,test}.h5`` (+ placeholders) for ``tonic.datasets.SSC``.

    Returns:
        ``{"train": [...], "valid": [...], "test": [...]}``, samples in tonic's index order.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "SSC"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        _placeholder(folder / f"ssc_{split}.h5.zip")
        out[split] = _write_hsd_file(folder / f"ssc_{split}.h5", rng, n, SSC_KEYS, False)
    return out


# --------------------------------------------------------------------------------------------
# DVS Gesture (tonic's preprocessed .npy release)


def write_dvs_gesture(root: str | Path, *, users: dict[str, tuple[int, ...]] | None = None,
                      lightings: tuple[str, ...] = GESTURE_LIGHTINGS, n_events: int = 32,
                      seed: int = 2) -> dict[str, dict[str, Sample]]:
    """Write tonic's preprocessed DVS Gesture layout for ``tonic.datasets.DVSGesture``.

    Layout: ``root/DVSGesture/ibmGesture{Train,Test}.tar.gz`` (placeholder) and
    ``root/DVSGesture/ibmGesture{Train,Test}/user<NN>_<lighting>/<label>.npy``, each an
    ``(N, 4)`` int64 array with columns ``x, y, p, t`` and ``t`` in *milliseconds* (tonic
    multiplies by 1000). One file per class 0..10 per user/lighting folder; the defaults
    (2 users x 5 lightings x 11 classes = 110 files per split) pass tonic's unmodified
    ``_check_exists`` (>= 100 ``.npy``).

    Returns:
        ``{"train": {relative_path: Sample}, "test": {...}}``; tonic's sample order follows
        ``os.walk`` and is not sorted, so match samples by ``dataset.data[i]``.
    """
    users = users or {"train": (1, 2), "test": (24, 25)}
    rng = np.random.default_rng(seed)
    folder = Path(root) / "DVSGesture"
    out: dict[str, dict[str, Sample]] = {}
    for split, split_users in users.items():
        sub = "ibmGestureTrain" if split == "train" else "ibmGestureTest"
        _placeholder(folder / f"{sub}.tar.gz")
        out[split] = {}
        for user in split_users:
            for lighting in lightings:
                d = folder / sub / f"user{user:02d}_{lighting}"
                d.mkdir(parents=True, exist_ok=True)
                for label in range(11):
                    ev = random_events(rng, n_events, (128, 128, 2), 6000)  # t in ms
                    cols = np.stack([ev["x"], ev["y"], ev["p"], ev["t"]], axis=1)  # (N, 4)
                    np.save(d / f"{label}.npy", cols.astype(np.int64))
                    shown = ev.copy()
                    shown["t"] = ev["t"] * 1000  # tonic returns microseconds
                    rel = str((d / f"{label}.npy").relative_to(root))
                    out[split][rel] = Sample(shown, label)
    return out


# --------------------------------------------------------------------------------------------
# N-MNIST (.bin)


def write_nmnist(root: str | Path, *, per_class: int = 2, n_events: int = 64,
                 seed: int = 3) -> dict[str, dict[str, Sample]]:
    """Write the extracted N-MNIST layout for ``tonic.datasets.NMNIST`` (Orchard et al. 2015).

    Layout: ``root/NMNIST/{train,test}.zip`` (placeholders) and
    ``root/NMNIST/{Train,Test}/<digit>/<NNNNN>.bin`` in the 40-bit format, 34x34 sensor, three
    100 ms "saccades" (t < 300 ms). Load inside :func:`tonic_offline` (tonic wants >= 10000 files).

    Returns:
        ``{"train": {relative_path: Sample}, "test": {...}}``.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "NMNIST"
    out: dict[str, dict[str, Sample]] = {}
    serial = 0
    for split, sub, archive in (("train", "Train", "train.zip"), ("test", "Test", "test.zip")):
        _placeholder(folder / archive)
        out[split] = {}
        for digit in range(10):
            d = folder / sub / str(digit)
            d.mkdir(parents=True, exist_ok=True)
            for _ in range(per_class):
                serial += 1
                ev = random_events(rng, n_events, (34, 34, 2), 300_000)
                path = d / f"{serial:05d}.bin"
                path.write_bytes(encode_40bit(ev))
                out[split][str(path.relative_to(root))] = Sample(ev, digit)
    return out


# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def tonic_offline(*classes: type, min_files: int = 1) -> Iterator[None]:
    """Within the block, the given tonic dataset classes never download.

    ``download`` raises ``RuntimeError`` (so a fixture missing files fails loudly instead of
    reaching for the network), and the extracted-file count in ``_check_exists`` is lowered to
    ``min_files``; the archive placeholder must still be present. Not thread-safe.
    """
    with contextlib.ExitStack() as stack:
        for cls in classes:
            count = cls._folder_contains_at_least_n_files_of_type

            def relaxed(self, n_files, file_type, _count=count):
                return _count(self, min(n_files, min_files), file_type)

            def no_download(self):
                raise RuntimeError(f"{type(self).__name__}: fixture incomplete, tonic tried to "
                                   f"download {getattr(self, 'url', '?')} into "
                                   f"{self.location_on_system}")

            stack.enter_context(mock.patch.object(cls, "_folder_contains_at_least_n_files_of_type",
                                                  relaxed))
            stack.enter_context(mock.patch.object(cls, "download", no_download))
        yield


def write_all(root: str | Path, seed: int = 0) -> dict[str, dict]:
    """Write every fixture under ``root``; returns ``{dataset: what write_<dataset> returned}``."""
    return {"SHD": write_shd(root, seed=seed), "SSC": write_ssc(root, seed=seed + 1),
            "DVSGesture": write_dvs_gesture(root, seed=seed + 2),
            "NMNIST": write_nmnist(root, seed=seed + 3)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python datasets/fixtures.py OUTDIR", file=sys.stderr)
        return 2
    root = Path(argv[0])
    written = write_all(root)
    for name, splits in written.items():
        sizes = ", ".join(f"{split}={len(s)}" for split, s in splits.items())
        print(f"{name:<11} {root / name}  ({sizes})")
    print("NMNIST needs datasets/fixtures.py:tonic_offline(tonic.datasets.NMNIST) to load.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
