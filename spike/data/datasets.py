"""Public event datasets through tonic, for configs: located, binned, cached and split.

``[data] name`` (``root`` is where the files are or go):

============  =================================  ==============================================
name          tonic class (folder under root)    splits
============  =================================  ==============================================
ssc           ``SSC`` (``SSC/``)                 official train / valid / test
dvs_gesture   ``DVSGesture`` (``DVSGesture/``)   official train (users 1-23) / test (24-29)
nmnist        ``NMNIST`` (``NMNIST/``)           official train (60000) / test (10000)
cifar10_dvs   ``CIFAR10DVS`` (``CIFAR10DVS/``)   none official: seeded per-class 80 / 10 / 10
ncaltech101   ``NCALTECH101`` (``NCALTECH101/``) none official: seeded per-class 80 / 10 / 10
============  =================================  ==============================================

(``shd`` is :func:`spike.data.builders._shd`; :func:`locate` knows its files too.)

What this adds to tonic:

* **Locating** (:func:`locate`): the extracted files are looked for in ``root/<Folder>/`` (tonic's
  layout) and then in ``root`` itself, so ``root`` may point at the dataset folder directly. The
  downloaded archives are not needed (tonic re-downloads when they are missing), and tonic's
  "at least N files" check is not applied. Archives tonic leaves unextracted (the ten CIFAR10-DVS
  class zips, N-Caltech101's ``Caltech101.zip``) are extracted. When the files are missing, tonic
  downloads them (``download = true``, the default); if that fails, or ``download = false``,
  :class:`DatasetNotFound` lists exactly which files are expected where.
* **Binning**: each sample is read by tonic's class and counted into frames ``[T, P, H, W]`` by
  :func:`spike.events.frames.to_frame` (``T = n_time_bins`` equal bins over the sample's span, or
  over ``[t_first, t_first + duration_us]``), after an optional spatial downsampling to ``size``:
  ``x' = floor(x * W' / W)``, ``y' = floor(y * H' / H)`` (counts of merged pixels add up).
  SSC uses :func:`spike.data.shd.bin_spikes` (``dt_ms`` bins from 0, ``channel_group`` channels summed).
* **Cache** (:mod:`spike.data.cache`): binned counts keyed by the dataset, the split, every binning
  parameter and a fingerprint of the source files (relative path, size, mtime), written atomically.
* **Fixed splits**, recorded as ``<cache>/<name>-splits-<key>.json`` (sample indices and relative
  file names in the canonical order, i.e. sorted by relative path; tonic's own order follows
  ``os.walk`` and differs between machines). A recorded split is reused as is.

Bad input (a truncated or unreadable file, events outside the sensor, unsorted timestamps) raises
one :class:`DatasetFormatError` naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from spike.core.config import ConfigError, DataConfig
from spike.core.events import EVENT_DTYPE, EventError, validate_events
from spike.data.builders import DataBundle

__all__ = ["DatasetNotFound", "DatasetFormatError", "DatasetSpec", "SPECS", "locate", "CountFrames",
           "stratified_split", "BUILDERS", "CachedLoadTiming", "time_cached_load", "frame_size_hw"]


class DatasetNotFound(FileNotFoundError):
    """The dataset's files are not on disk (and could not be downloaded); the message lists them."""


class DatasetFormatError(ValueError):
    """A dataset file that cannot be read or holds invalid events; the message names the file."""


# --------------------------------------------------------------------------------------------------
# what each dataset needs on disk
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    """One thing that must exist below the dataset folder.

    ``rel`` is a file (``pattern is None``) or a folder holding at least one file matching ``pattern``.
    ``shown`` is how messages write the expected files (relative to the dataset folder).
    """

    rel: str
    pattern: str | None
    shown: str


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives and how tonic gets it."""

    name: str
    tonic_class: str  # tonic.datasets.<tonic_class>; also the folder under root (tonic's save_to layout)
    needs: tuple[Need, ...]
    archives: tuple[str, ...]  # what tonic downloads into root/<folder>
    source: str  # where the archives come from
    download_kwargs: tuple[dict, ...]  # one tonic constructor call per archive
    inner_archives: tuple[tuple[str, str], ...] = ()  # (zip, folder) tonic may leave unextracted
    sensor_size: tuple[int, int, int] | None = None  # (W, H, P)
    n_classes: int | None = None
    readme: str = ""


_CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

SPECS: dict[str, DatasetSpec] = {
    "shd": DatasetSpec(
        "shd", "SHD", tuple(Need(f"shd_{s}.h5", None, f"shd_{s}.h5") for s in ("train", "test")),
        ("shd_train.h5.zip", "shd_test.h5.zip"), "https://zenkelab.org/datasets/",
        ({"train": True}, {"train": False}), sensor_size=(700, 1, 1), n_classes=20,
        readme="datasets/shd/README.md"),
    "ssc": DatasetSpec(
        "ssc", "SSC", tuple(Need(f"ssc_{s}.h5", None, f"ssc_{s}.h5") for s in ("train", "valid", "test")),
        ("ssc_train.h5.zip", "ssc_valid.h5.zip", "ssc_test.h5.zip"), "https://zenkelab.org/datasets/",
        ({"split": "train"}, {"split": "valid"}, {"split": "test"}), sensor_size=(700, 1, 1), n_classes=35,
        readme="datasets/ssc/README.md"),
    "dvs_gesture": DatasetSpec(
        "dvs_gesture", "DVSGesture",
        tuple(Need(d, "user*_*/*.npy", f"{d}/user<NN>_<lighting>/<label>.npy")
              for d in ("ibmGestureTrain", "ibmGestureTest")),
        ("ibmGestureTrain.tar.gz", "ibmGestureTest.tar.gz"), "figshare (tonic's preprocessed release)",
        ({"train": True}, {"train": False}), sensor_size=(128, 128, 2), n_classes=11,
        readme="datasets/dvs_gesture/README.md"),
    "nmnist": DatasetSpec(
        "nmnist", "NMNIST", tuple(Need(d, "[0-9]/*.bin", f"{d}/<digit>/<NNNNN>.bin") for d in ("Train", "Test")),
        ("train.zip", "test.zip"), "Mendeley Data 468j46mzdv", ({"train": True}, {"train": False}),
        sensor_size=(34, 34, 2), n_classes=10, readme="datasets/nmnist/README.md"),
    "cifar10_dvs": DatasetSpec(
        "cifar10_dvs", "CIFAR10DVS", tuple(Need(c, "*.aedat4", f"{c}/<name>.aedat4") for c in _CIFAR_CLASSES),
        ("CIFAR10DVS.zip",), "figshare 38023437 (tonic's AEDAT4 conversion)", ({},),
        inner_archives=tuple((f"{c}.zip", c) for c in _CIFAR_CLASSES), sensor_size=(128, 128, 2),
        n_classes=10, readme="datasets/cifar10_dvs/README.md"),
    "ncaltech101": DatasetSpec(
        "ncaltech101", "NCALTECH101", (Need("Caltech101", "*/*.bin", "Caltech101/<class>/image_<NNNN>.bin"),),
        ("N-Caltech101-archive.zip",), "Mendeley Data cy6cvx3ryv", ({},),
        inner_archives=(("Caltech101.zip", "Caltech101"),),
        # tonic shifts each recording to start at x = y = 0; 240 x 180 bounds every shifted recording
        # (SpikingJelly's NCaltech101 uses the same H = 180, W = 240)
        sensor_size=(240, 180, 2), n_classes=None, readme="datasets/ncaltech101/README.md"),
}


def _missing(spec: DatasetSpec, base: Path) -> list[tuple[Need, str]]:
    out = []
    for need in spec.needs:
        p = base / need.rel
        if need.pattern is None:
            if not p.is_file():
                out.append((need, f"missing file {p}"))
        elif not p.is_dir():
            out.append((need, f"missing folder {p}"))
        elif next(p.glob(need.pattern), None) is None:
            out.append((need, f"no file matching {need.pattern} in {p}"))
    return out


def _extract_inner(spec: DatasetSpec, base: Path) -> None:
    """Extract archives tonic left packed (``<class>.zip`` -> ``<class>/``)."""
    for archive, folder in spec.inner_archives:
        zpath, target = base / archive, base / folder
        if zpath.is_file() and not target.is_dir():
            from tonic.download_utils import extract_archive

            try:
                extract_archive(str(zpath), str(base))
            except Exception as e:  # a truncated download
                raise DatasetNotFound(f"{zpath}: cannot extract ({type(e).__name__}: {e}); delete it and "
                                      f"download again, or extract it into {base} yourself") from None


def _not_found(spec: DatasetSpec, root: Path, failure: BaseException | None, download: bool) -> DatasetNotFound:
    """One line: what is expected where, what is missing, and why nothing was downloaded."""
    base = root / spec.tonic_class
    missing = {id(n): why for n, why in _missing(spec, base)}
    expected = ", ".join(f"{base / need.shown} ({missing.get(id(need), 'present')})" for need in spec.needs)
    if failure is not None:
        why = f"download into {base} failed: {type(failure).__name__}: {failure}"
    elif not download:
        why = ("downloading is off ([data.options] download = false; set it to true to let tonic download "
               f"into {base})")
    else:
        why = "not downloaded"
    msg = (f"[data] root = {str(root)!r}: dataset {spec.name!r} not found: expected {expected} "
           f"(tonic's layout, or the same files directly under {root}); {why}; "
           f"archives {', '.join(spec.archives)} from {spec.source}, see {spec.readme}")
    return DatasetNotFound(" ".join(msg.split("\n")))


def locate(name: str, root: str | Path, *, download: bool = True) -> Path:
    """The folder holding dataset ``name``'s extracted files; downloads through tonic if absent.

    Looks in ``root/<Folder>`` (tonic's layout) and then in ``root`` (manual path: ``root`` is the
    dataset folder itself). Only the extracted files are checked, not the archives.

    Raises:
        DatasetNotFound: listing the expected files, what is missing, and why a download failed.
    """
    spec = SPECS[name]
    root = Path(root).expanduser()
    for base in (root / spec.tonic_class, root):
        _extract_inner(spec, base)
        if not _missing(spec, base):
            return base
    failure: BaseException | None = None
    if download:
        import tonic.datasets

        cls = getattr(tonic.datasets, spec.tonic_class)
        created = [d for d in (*reversed(root.parents), root, root / spec.tonic_class) if not d.exists()]
        try:
            root.mkdir(parents=True, exist_ok=True)
            for kwargs in spec.download_kwargs:
                cls(save_to=str(root), **kwargs)
        except Exception as e:  # no network, bad checksum, disk full, ...
            failure = e
            for d in reversed(created):  # leave no empty folders behind
                with contextlib.suppress(OSError):
                    d.rmdir()
        base = root / spec.tonic_class
        if failure is None:
            _extract_inner(spec, base)
            if not _missing(spec, base):
                return base
            failure = RuntimeError("tonic finished but the extracted files are not there")
    raise _not_found(spec, root, failure, download) from None


def _tonic_dataset(spec: DatasetSpec, base: Path, what: Path | None = None, **kwargs):
    """tonic's class reading from ``base`` without its download/file-count checks (we checked).

    ``what``: the file or folder to name when tonic fails (default ``base``).
    """
    import tonic.datasets

    cls = getattr(tonic.datasets, spec.tonic_class)

    def _check_exists(self) -> bool:  # tonic calls it right after setting location_on_system
        self.location_on_system = str(base)
        return True

    def _no_download(self) -> None:  # pragma: no cover - _check_exists is always True
        raise RuntimeError("unreachable: files were located before")

    located = type(cls.__name__, (cls,), {"_check_exists": _check_exists, "download": _no_download})
    try:
        return located(save_to=str(base.parent), **kwargs)
    except Exception as e:
        raise DatasetFormatError(f"{what or base}: tonic.datasets.{spec.tonic_class} cannot open it "
                                 f"({type(e).__name__}: {e}); truncated or corrupt download?") from None


# --------------------------------------------------------------------------------------------------
# datasets of cached counts, splits
# --------------------------------------------------------------------------------------------------


class CountFrames(Dataset):
    """Integer counts ``frames [N, T, ...]`` and ``labels [N]``, seen through ``indices``.

    Items are ``(float32 tensor [T, ...], int label)``; the counts stay in their compact integer
    dtype in memory and the splits of one cache entry share its arrays. ``n_events [N]`` (optional)
    is the number of events each recording had before binning.
    """

    def __init__(self, frames: np.ndarray, labels: np.ndarray, indices: np.ndarray | None = None,
                 n_events: np.ndarray | None = None):
        if len(frames) != len(labels) or (n_events is not None and len(n_events) != len(labels)):
            raise ValueError(f"{len(frames)} samples but {len(labels)} labels")
        self._frames, self._labels, self._n_events = frames, np.asarray(labels, dtype=np.int64), n_events
        self.indices = np.arange(len(labels)) if indices is None else np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        j = self.indices[i]
        return torch.from_numpy(self._frames[j].astype(np.float32)), int(self._labels[j])

    @property
    def labels(self) -> np.ndarray:
        return self._labels[self.indices]

    @property
    def frames(self) -> np.ndarray:
        """The counts of this split (a copy), ``[len(self), T, ...]``."""
        return self._frames[self.indices]

    @property
    def n_events(self) -> np.ndarray | None:
        return None if self._n_events is None else self._n_events[self.indices]


def stratified_split(labels: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Split sample indices per class with one seeded generator.

    Classes are visited in increasing label order; each class's indices are permuted by
    ``np.random.default_rng(seed)`` and cut into ``round(f * n_class)`` samples per named fraction (in
    the order given), the first name taking the rest. Returned indices are sorted.

    Example:
        >>> stratified_split(labels, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0)  # doctest: +SKIP
    """
    labels = np.asarray(labels)
    names = list(fractions)
    if not names or any(f < 0 for f in fractions.values()) or sum(fractions.values()) > 1 + 1e-9:
        raise ValueError(f"fractions must be >= 0 and sum to at most 1, got {fractions}")
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        perm = idx[rng.permutation(len(idx))]
        pos = 0
        for n in names[1:]:
            k = int(round(fractions[n] * len(idx)))
            k = min(k, len(idx) - pos)
            out[n].append(perm[pos:pos + k])
            pos += k
        out[names[0]].append(perm[pos:])
    return {n: np.sort(np.concatenate(v)).astype(np.int64) if v else np.zeros(0, np.int64)
            for n, v in out.items()}


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _recorded_split(cache_dir: Path | None, record_dir: Path, dataset: str, names: list[str], labels: np.ndarray,
                    fractions: dict[str, float], seed: int, classes: list[str]) -> tuple[dict[str, np.ndarray], Path]:
    """The split stored in ``record_dir`` for these samples and settings, computed and stored if absent.

    ``cache_dir is None`` (cache off): an existing record is used but nothing is written.
    """
    from spike.data.cache import cache_key

    source = hashlib.sha256("\n".join(f"{n}\t{y}" for n, y in zip(names, labels)).encode()).hexdigest()[:16]
    key = cache_key(dataset=dataset, kind="split", fractions=fractions, seed=seed, samples=source)
    path = record_dir / f"{dataset}-splits-{key}.json"
    if path.is_file():
        try:
            rec = json.loads(path.read_text())
            split = {k: np.asarray(v, dtype=np.int64) for k, v in rec["indices"].items()}
            if sorted(np.concatenate(list(split.values())).tolist()) == list(range(len(names))):
                return split, path
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable record: recompute and rewrite below
    split = stratified_split(labels, fractions, seed)
    if cache_dir is not None:
        rec = {"dataset": dataset, "seed": seed, "fractions": fractions, "n_samples": len(names),
               "samples_sha256": source, "order": "sorted relative path (HDF5: file order)",
               "method": "per class (increasing label), default_rng(seed).permutation, round(f * n_class)",
               "classes": classes, "indices": {k: v.tolist() for k, v in split.items()},
               "files": {k: [names[i] for i in v] for k, v in split.items()}}
        _atomic_write_text(path, json.dumps(rec, indent=0))
    return split, path


# --------------------------------------------------------------------------------------------------
# binning
# --------------------------------------------------------------------------------------------------


def _rel(path: str | Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def _fingerprint(paths: list[Path], base: Path) -> str:
    """Hash of (relative path, size, mtime) of every source file: a changed file is a new cache entry."""
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{_rel(p, base)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _scaled(events: np.ndarray, native: tuple[int, int, int], size_hw: tuple[int, int]) -> np.ndarray:
    """Events in EVENT_DTYPE with ``x -> floor(x * W' / W)``, ``y -> floor(y * H' / H)`` (new array)."""
    w, h, _ = native
    out = np.empty(len(events), dtype=EVENT_DTYPE)
    out["x"] = events["x"].astype(np.int64) * size_hw[1] // w
    out["y"] = events["y"].astype(np.int64) * size_hw[0] // h
    out["t"] = events["t"].astype(np.int64)
    out["p"] = events["p"].astype(np.int64)
    return out


def bin_sample(events: np.ndarray, native: tuple[int, int, int], size_hw: tuple[int, int], n_time_bins: int,
               duration_us: int | None = None, *, name: str = "events", dtype=np.uint16) -> np.ndarray:
    """Counts ``[T, P, H', W']`` of one recording, downsampled to ``size_hw = (H', W')``.

    Bins: ``T`` equal bins over ``[t_first, t_last]`` (last bin closed), or over
    ``[t_first, t_first + duration_us]`` (later events dropped) when ``duration_us`` is given.

    Raises:
        DatasetFormatError: naming ``name`` (events outside ``native``, unsorted timestamps).
        OverflowError: a count does not fit ``dtype``.
    """
    from spike.events.frames import to_frame

    ev = _scaled(events, native, size_hw)
    kw = {}
    if duration_us is not None:
        t0 = int(ev["t"][0]) if len(ev) else 0
        kw = {"start_time": t0, "end_time": t0 + int(duration_us)}
    try:
        return to_frame(ev, (size_hw[1], size_hw[0], native[2]), n_time_bins=n_time_bins, dtype=dtype, **kw)
    except EventError as e:
        try:  # name the problem in the recording's own coordinates
            plain = _scaled(events, native, (native[1], native[0]))
            validate_events(plain, native, name=name)
        except EventError as e2:
            raise DatasetFormatError(str(e2)) from None
        raise DatasetFormatError(f"{name}: {e}") from None


def _read_checked(spec: DatasetSpec, ds, i: int, path: str):
    """tonic's ``ds[i]`` with the file named in any failure (and 40-bit files checked for truncation)."""
    p = Path(path)
    if p.suffix == ".bin":
        size = p.stat().st_size
        if size % 5:
            raise DatasetFormatError(f"{p}: size {size} bytes is not a multiple of 5 (40-bit events): truncated?")
        if size == 0 and spec.name == "ncaltech101":
            raise DatasetFormatError(f"{p}: empty file (no events)")
    try:
        return ds[i]
    except Exception as e:
        raise DatasetFormatError(f"{p}: cannot read with tonic.datasets.{spec.tonic_class} "
                                 f"({type(e).__name__}: {e})") from None


@contextlib.contextmanager
def _numba_threads(n: int):
    """Run numba kernels on ``n`` threads in this thread (one small recording per call: threads only
    add synchronisation, 1000x slower on a busy machine)."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(n, before))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _bin_listing(spec: DatasetSpec, ds, order: np.ndarray, size_hw, n_time_bins: int, duration_us) -> dict:
    """Read ``ds[order[k]]`` for every k and bin it; counts in uint16 unless one overflows (then int32)."""
    with _numba_threads(1):
        return _bin_all(spec, ds, order, size_hw, n_time_bins, duration_us)


def _bin_all(spec: DatasetSpec, ds, order: np.ndarray, size_hw, n_time_bins: int, duration_us) -> dict:
    n = len(order)
    _, _, p = spec.sensor_size
    frames = np.zeros((n, n_time_bins, p, size_hw[0], size_hw[1]), np.uint16)  # [N, T, P, H, W]
    labels = np.zeros(n, np.int64)
    n_events = np.zeros(n, np.int64)
    for k, i in enumerate(order):
        path = ds.data[i]
        events, _ = _read_checked(spec, ds, int(i), path)
        n_events[k] = len(events)
        try:
            frames[k] = bin_sample(events, spec.sensor_size, size_hw, n_time_bins, duration_us, name=str(path),
                                   dtype=frames.dtype)
        except OverflowError:
            frames = frames.astype(np.int32)
            frames[k] = bin_sample(events, spec.sensor_size, size_hw, n_time_bins, duration_us, name=str(path),
                                   dtype=np.int32)
    return {"frames": frames, "n_events": n_events}


# --------------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------------


def _options(cfg: DataConfig, name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    unknown = set(cfg.options) - set(defaults)
    if unknown:
        raise ConfigError(f"[data.options] unknown key(s) {sorted(unknown)} for dataset {name!r}; "
                          f"known: {sorted(defaults)}")
    opts = {**defaults, **cfg.options}
    if not isinstance(opts["download"], bool):
        raise ConfigError(f"[data.options] download must be true or false, got {opts['download']!r}")
    if opts["cache_dir"] is not None and not isinstance(opts["cache_dir"], str):
        raise ConfigError(f"[data.options] cache_dir must be a path string, got {opts['cache_dir']!r}")
    return opts


def _size(value, native: tuple[int, int, int], name: str) -> tuple[int, int]:
    """``size = 32`` or ``[H, W]`` -> ``(H, W)``, no larger than the sensor."""
    hw = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    ok = (isinstance(hw, (list, tuple)) and len(hw) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in hw))
    if not ok:
        raise ConfigError(f"[data.options] size for {name!r} must be an integer or [H, W], got {value!r}")
    if hw[0] > native[1] or hw[1] > native[0]:
        raise ConfigError(f"[data.options] size {list(hw)} for {name!r} is larger than the sensor "
                          f"(H, W) = ({native[1]}, {native[0]}); only downsampling is supported")
    return int(hw[0]), int(hw[1])


def frame_size_hw(name: str, size=None) -> tuple[int, int]:
    """The ``(H, W)`` a tonic vision data set's frames are binned to (``size``: ``[data.options] size``).

    Raises:
        ConfigError: an invalid or upsampling ``size``; KeyError: not a tonic vision data set.
    """
    return _size(size if size is not None else _DEFAULT_SIZE[name], SPECS[name].sensor_size, name)


def _duration(value) -> int | None:
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"[data.options] duration_us must be a positive number of microseconds, got {value!r}")
    return int(value)


def _seed(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"[data.options] split_seed must be an integer, got {value!r}")
    return value


def _cache_dir(cfg: DataConfig, opts: dict) -> tuple[Path | None, Path]:
    """(cache folder or None when ``cache = false``, where split records are looked for)."""
    d = Path(opts["cache_dir"]).expanduser() if opts["cache_dir"] else Path(cfg.root).expanduser() / ".spike_cache"
    return (d if cfg.cache else None), d


# --------------------------------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------------------------------


_VISION_DEFAULTS = {"size": None, "duration_us": None, "split_seed": 0, "download": True, "cache_dir": None}
_DEFAULT_SIZE = {"dvs_gesture": (32, 32), "nmnist": (34, 34), "cifar10_dvs": (48, 48), "ncaltech101": (48, 64)}


def _read_hsd(path: Path, n_classes: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """``(times_s, units, labels)`` of an SHD/SSC partition, in one pass (tonic reopens the file per sample)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            for key in ("spikes/times", "spikes/units", "labels"):
                if key not in f:
                    raise DatasetFormatError(f"{path}: missing HDF5 dataset {key!r} (not an SHD/SSC file?)")
            times = [np.asarray(t, dtype=np.float64) for t in f["spikes/times"][:]]
            units = [np.asarray(u, dtype=np.int64) for u in f["spikes/units"][:]]
            labels = np.asarray(f["labels"][:], dtype=np.int64)
    except OSError as e:
        raise DatasetFormatError(f"{path}: cannot read as HDF5 ({e}); truncated download?") from None
    if not len(times) == len(units) == len(labels):
        raise DatasetFormatError(f"{path}: {len(times)} time arrays, {len(units)} unit arrays, {len(labels)} labels")
    for i, (t, u) in enumerate(zip(times, units)):
        if len(t) != len(u):
            raise DatasetFormatError(f"{path}: sample {i} has {len(t)} times but {len(u)} units")
        if len(u) and (u.min() < 0 or u.max() >= 700):
            raise DatasetFormatError(f"{path}: sample {i} has channel ids outside [0, 700)")
        if len(t) and not (np.isfinite(t).all() and t.min() >= 0):
            raise DatasetFormatError(f"{path}: sample {i} has negative or non-finite spike times")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetFormatError(f"{path}: labels outside [0, {n_classes})")
    return times, units, labels


def _ssc(cfg: DataConfig, seed: int) -> DataBundle:
    """SSC (Cramer et al. 2020, doi:10.1109/TNNLS.2020.3044364): official train / valid / test.

    ``[data.options]``: ``dt_ms`` (10), ``channel_group`` (5: 700 -> 140), ``download``, ``cache_dir``.
    Frames ``[n_time_bins, 700 // channel_group]`` as the ``shd`` dataset; ``valid`` is ``bundle.val``.
    """
    from spike.data import shd
    from spike.data.cache import load_or_build

    spec = SPECS["ssc"]
    opts = _options(cfg, "ssc", {"dt_ms": 10.0, "channel_group": 5, "download": True, "cache_dir": None})
    dt_ms, group = opts["dt_ms"], opts["channel_group"]
    if isinstance(dt_ms, bool) or not isinstance(dt_ms, (int, float)) or not dt_ms > 0 \
            or isinstance(group, bool) or not isinstance(group, int) or group < 1 or 700 % group:
        raise ConfigError(f"[data.options] ssc needs dt_ms > 0 and channel_group dividing 700, "
                          f"got {dt_ms!r}, {group!r}")
    if cfg.val_fraction:
        raise ConfigError("[data] val_fraction must be 0 for 'ssc': it has an official validation split "
                          "(bundle.val)")
    base = locate("ssc", cfg.root, download=opts["download"])
    cache_dir, _ = _cache_dir(cfg, opts)
    out = {}
    for split in ("train", "valid", "test"):
        # tonic checks that the file opens and has extra/keys
        ds = _tonic_dataset(spec, base, base / f"ssc_{split}.h5", split=split)
        path = Path(ds.location_on_system) / ds.data_filename

        def build(path=path):
            times, units, labels = _read_hsd(path, spec.n_classes)
            counts = shd.bin_spikes(times, units, cfg.n_time_bins, float(dt_ms), group)  # [N, T, C] float32
            return {"frames": counts.astype(np.uint16), "labels": labels,
                    "n_events": np.array([len(t) for t in times], np.int64)}

        params = {"dataset": "ssc", "split": split, "n_time_bins": cfg.n_time_bins, "dt_ms": float(dt_ms),
                  "channel_group": group, "source": _fingerprint([path], base), "binning": "bin_spikes-v1"}
        arr = load_or_build(cache_dir, params, build)
        out[split] = CountFrames(arr["frames"], arr["labels"], n_events=arr["n_events"])
    return DataBundle(out["train"], out["test"], input_shape=(700 // group,), n_classes=spec.n_classes,
                      n_time_bins=cfg.n_time_bins, name="ssc", sensor_size=spec.sensor_size,
                      dt_us=float(dt_ms) * 1000.0, val=out["valid"])


@dataclass(frozen=True)
class _Listing:
    ds: Any  # the tonic dataset
    order: np.ndarray  # canonical order: indices into ds sorted by relative path
    names: list[str]  # relative paths in canonical order
    labels: np.ndarray  # class index per sample, canonical order
    paths: list[Path]


def _listing(spec: DatasetSpec, base: Path, string_targets: bool = False, **kwargs) -> tuple[_Listing, list[str]]:
    """tonic's samples in canonical order, and the class names (folder names when ``string_targets``)."""
    ds = _tonic_dataset(spec, base, **kwargs)
    if len(ds.data) == 0:
        raise DatasetNotFound(f"{base}: tonic.datasets.{spec.tonic_class}({kwargs or ''}) found no samples")
    rel = [_rel(p, base) for p in ds.data]
    order = np.array(sorted(range(len(rel)), key=rel.__getitem__), dtype=np.int64)
    targets = [ds.targets[i] for i in order]
    if string_targets:  # N-Caltech101: the class folder name -> index in the sorted names
        classes = sorted(set(map(str, targets)))
        lookup = {c: k for k, c in enumerate(classes)}
        labels = np.array([lookup[str(t)] for t in targets], np.int64)
    else:
        labels = np.asarray(targets, dtype=np.int64)
        classes = [str(c) for c in getattr(ds, "classes", range(spec.n_classes or 0))]
    return _Listing(ds, order, [rel[i] for i in order], labels, [Path(ds.data[i]) for i in order]), classes


def _vision(name: str, extra_defaults: dict | None = None, official: bool = True) -> Callable:
    spec = SPECS[name]

    def build(cfg: DataConfig, seed: int) -> DataBundle:
        from spike.data.cache import load_or_build

        defaults = {**_VISION_DEFAULTS, **(extra_defaults or {})}
        if not official:
            defaults["split"] = [0.8, 0.1, 0.1]
        opts = _options(cfg, name, defaults)
        size_hw = _size(opts["size"] if opts["size"] is not None else _DEFAULT_SIZE[name], spec.sensor_size, name)
        duration = _duration(opts["duration_us"])
        split_seed = _seed(opts["split_seed"])
        tonic_kw = {k: opts[k] for k in (extra_defaults or {})}
        for k, v in tonic_kw.items():
            if not isinstance(v, bool):
                raise ConfigError(f"[data.options] {k} must be true or false, got {v!r}")
        if official:
            if not 0.0 <= cfg.val_fraction < 1.0:
                raise ConfigError(f"[data] val_fraction must be in [0, 1), got {cfg.val_fraction}")
        else:
            fr = opts["split"]
            if not (isinstance(fr, (list, tuple)) and len(fr) == 3 and all(
                    isinstance(f, (int, float)) and not isinstance(f, bool) and f >= 0 for f in fr)
                    and abs(sum(fr) - 1.0) < 1e-6 and fr[0] > 0):
                raise ConfigError(f"[data.options] split for {name!r} must be [train, val, test] fractions "
                                  f"summing to 1, got {fr!r}")
            if cfg.val_fraction:
                raise ConfigError(f"[data] val_fraction must be 0 for {name!r}: its validation part is set by "
                                  f"[data.options] split = [train, val, test] (default [0.8, 0.1, 0.1])")
        base = locate(name, cfg.root, download=opts["download"])
        cache_dir, record_dir = _cache_dir(cfg, opts)

        def cached(split: str, listing: _Listing) -> dict:
            params = {"dataset": name, "split": split, "n_time_bins": cfg.n_time_bins, "size": list(size_hw),
                      "duration_us": duration, **tonic_kw, "source": _fingerprint(listing.paths, base),
                      "n_samples": len(listing.names), "binning": "to_frame-scaled-v1"}

            def make():
                arr = _bin_listing(spec, listing.ds, listing.order, size_hw, cfg.n_time_bins, duration)
                return {**arr, "labels": listing.labels}

            return load_or_build(cache_dir, params, make)

        def frames(arr: dict, indices=None) -> CountFrames:
            return CountFrames(arr["frames"], arr["labels"], indices, n_events=arr["n_events"])

        if official:
            found = {s: _listing(spec, base, train=(s == "train"), **tonic_kw) for s in ("train", "test")}
            listings, classes = {s: v[0] for s, v in found.items()}, found["train"][1]
            arrays = {s: cached(s, listings[s]) for s in listings}
            train, test, val = frames(arrays["train"]), frames(arrays["test"]), None
            n_classes = spec.n_classes
            if cfg.val_fraction > 0:
                lt = listings["train"]
                split, _ = _recorded_split(cache_dir, record_dir, name, lt.names, lt.labels,
                                           {"train": 1.0 - cfg.val_fraction, "val": cfg.val_fraction},
                                           split_seed, classes)
                if len(split["val"]) == 0 or len(split["train"]) == 0:
                    raise ConfigError(f"[data] val_fraction={cfg.val_fraction} of {len(lt.names)} "
                                      f"{name} training samples leaves an empty split")
                train, val = frames(arrays["train"], split["train"]), frames(arrays["train"], split["val"])
        else:
            listing, classes = _listing(spec, base, string_targets=spec.n_classes is None)
            n_classes = spec.n_classes or len(classes)
            arr = cached("all", listing)
            fr = opts["split"]
            split, _ = _recorded_split(cache_dir, record_dir, name, listing.names, listing.labels,
                                       {"train": float(fr[0]), "val": float(fr[1]), "test": float(fr[2])},
                                       split_seed, classes)
            train, val, test = (frames(arr, split[k]) for k in ("train", "val", "test"))
            if len(val) == 0:
                val = None
        return DataBundle(train, test, input_shape=(spec.sensor_size[2], *size_hw), n_classes=n_classes,
                          n_time_bins=cfg.n_time_bins, name=name, sensor_size=spec.sensor_size,
                          dt_us=(duration / cfg.n_time_bins) if duration else None, val=val)

    build.__name__ = f"_{name}"
    build.__doc__ = (f"{name}: tonic.datasets.{spec.tonic_class}, binned to [T, P, H, W]; [data.options]: "
                     f"{sorted({**_VISION_DEFAULTS, **(extra_defaults or {})})}"
                     + ("" if official else " + split"))
    return build


BUILDERS: dict[str, Callable[[DataConfig, int], DataBundle]] = {
    "ssc": _ssc,
    "dvs_gesture": _vision("dvs_gesture"),
    "nmnist": _vision("nmnist", {"first_saccade_only": False, "stabilize": False}),
    "cifar10_dvs": _vision("cifar10_dvs", official=False),
    "ncaltech101": _vision("ncaltech101", official=False),
}
"""Config builders registered into :data:`spike.data.builders.DATASETS`."""


# --------------------------------------------------------------------------------------------------
# timing the cache
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedLoadTiming:
    """First load (cache miss: read + bin + write) vs second load (cache hit) of one dataset.

    ``*_build_s``: :func:`build_data`; ``*_epoch_s``: one pass over the training loader.
    """

    name: str
    first_build_s: float
    second_build_s: float
    first_epoch_s: float
    second_epoch_s: float
    n_train: int
    first_was_miss: bool
    identical: bool
    cache_bytes: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def first_s(self) -> float:
        return self.first_build_s + self.first_epoch_s

    @property
    def second_s(self) -> float:
        return self.second_build_s + self.second_epoch_s

    @property
    def speedup(self) -> float:
        return self.first_s / max(self.second_s, 1e-12)


def time_cached_load(cfg: DataConfig, seed: int = 0, *, cache_dir: str | Path | None = None) -> CachedLoadTiming:
    """Time loading ``cfg``'s dataset twice: the first load fills the cache, the second reads it.

    For the datasets of this module the cache goes to ``cache_dir`` (default: a fresh temporary
    folder, removed afterwards), so the first load is always a miss. Other datasets (``shd``,
    ``nmnist_small``) use their own ``root/.spike_cache``; ``first_was_miss`` says whether the first
    load wrote a new entry there.

    Example:
        >>> t = time_cached_load(DataConfig(name="dvs_gesture", root="data"))  # doctest: +SKIP
        >>> print(f"{t.first_s:.1f} s -> {t.second_s:.1f} s ({t.speedup:.0f}x)")  # doctest: +SKIP
    """
    from spike.data.builders import build_data, make_loaders

    def one(c: DataConfig):
        t0 = time.perf_counter()
        bundle = build_data(c, seed)
        t1 = time.perf_counter()
        train, _ = make_loaders(bundle, c, seed)
        checksum = 0.0
        for x, _ in train:
            checksum += float(x.sum())
        return bundle, t1 - t0, time.perf_counter() - t1, checksum

    def entries(d: Path) -> set[str]:
        return {p.name for p in d.glob("*.npz")} if d.is_dir() else set()

    with tempfile.TemporaryDirectory(prefix="spike-cache-") as tmp:
        if cfg.name in BUILDERS:
            d = Path(cache_dir) if cache_dir is not None else Path(tmp)
            c = replace(cfg, cache=True, options={**cfg.options, "cache_dir": str(d)})
        else:
            d = Path(cfg.root) / ".spike_cache"
            c = replace(cfg, cache=True)
        before = entries(d)
        b1, build1, epoch1, sum1 = one(c)
        after = entries(d)
        b2, build2, epoch2, sum2 = one(c)
        same = len(b1.train) == len(b2.train) and sum1 == sum2 and all(
            torch.equal(b1.train[i][0], b2.train[i][0]) for i in range(min(len(b1.train), 64)))
        size = sum((d / n).stat().st_size for n in after)
        return CachedLoadTiming(cfg.name, build1, build2, epoch1, epoch2, len(b1.train),
                                first_was_miss=bool(after - before),
                                identical=same, cache_bytes=size)
