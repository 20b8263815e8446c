"""Audio files -> an SHD-layout HDF5 file (Cramer et al. 2020, doi:10.1109/TNNLS.2020.3044364).

The layout is the published one, read by :func:`spike.data.shd.read_split` and
``tonic.datasets.SHD``: ``spikes/times`` (one float32 array of spike times in seconds per sample),
``spikes/units`` (one uint16 array of channel ids), ``labels`` (uint16), ``extra/keys`` (class
names, bytes, index = label) and ``extra/speaker`` (uint16; 0 here, the speaker is unknown), plus
``extra/files`` (the source file names, not in the published files) and the model settings as
attributes of the root group.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from spike.sim.cochlea.model import CochleaConfig, CochleaError, cochlea_spikes

__all__ = ["AudioFileError", "AudioFileNotFoundError", "audio_to_shd", "file_seed", "read_audio"]


class AudioFileError(CochleaError):
    """An audio file that cannot be read or is not usable (the message names the file)."""


class AudioFileNotFoundError(FileNotFoundError, AudioFileError):
    """An audio file that does not exist."""


def read_audio(path: str | Path) -> tuple[np.ndarray, float]:
    """``(samples [N] float64, sample rate)`` of a mono WAV/FLAC/OGG file (via ``soundfile``)."""
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise AudioFileNotFoundError(f"{path}: no such audio file")
    try:
        x, fs = soundfile.read(str(path), dtype="float64", always_2d=True)
    except (RuntimeError, TypeError, ValueError) as e:  # soundfile's errors are RuntimeErrors
        raise AudioFileError(f"{path}: cannot read as audio ({e})") from None
    if x.shape[1] != 1:
        raise AudioFileError(f"{path}: expected mono audio, got {x.shape[1]} channels")
    if x.shape[0] == 0:
        raise AudioFileError(f"{path}: contains no samples")
    return x[:, 0], float(fs)


def file_seed(seed: int, index: int) -> int:
    """The cochlea seed of the ``index``-th input file of :func:`audio_to_shd`."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint32)[0])


def _labels(paths: list[Path], labels: dict[str, int] | None) -> tuple[np.ndarray, list[str]]:
    if labels is None:  # parent folder names, sorted, -> 0, 1, ...
        names = sorted({p.parent.name for p in paths})
        index = {n: i for i, n in enumerate(names)}
        return np.array([index[p.parent.name] for p in paths], np.int64), names
    out = []
    for p in paths:
        for key in (str(p), p.name, p.stem):
            if key in labels:
                out.append(labels[key])
                break
        else:
            raise AudioFileError(f"{p}: no label for this file in `labels` (tried {str(p)!r}, {p.name!r}, {p.stem!r})")
    lab = np.asarray(out)
    if lab.dtype.kind not in "iu" or (len(lab) and (lab.min() < 0 or lab.max() > 65535)):
        raise CochleaError(f"labels must be ints in [0, 65535], got {sorted(set(out))[:5]}")
    lab = lab.astype(np.int64)
    return lab, [str(i) for i in range(int(lab.max()) + 1 if len(lab) else 0)]


def audio_to_shd(inputs: list[str | Path], out: str | Path, *, labels: dict[str, int] | None = None, seed: int = 0,
                 n_channels: int = 700, n_fibres: int = 40, config: CochleaConfig | None = None,
                 resample_to: float | None = None) -> dict:
    """Run :func:`spike.sim.cochlea.cochlea` on every audio file and write one SHD-layout HDF5 file.

    Args:
        inputs: mono audio files (WAV, FLAC, ... as ``soundfile`` reads them), one sample each.
        out: the HDF5 file, written atomically (a temporary file renamed into place).
        labels: class per file, looked up by full path, file name or stem; ``None``: the sorted
            parent-folder names are the classes (``extra/keys``), numbered from 0.
        seed: file ``i`` uses seed :func:`file_seed` ``(seed, i)``.
        n_channels, n_fibres, config, resample_to: as for :func:`spike.sim.cochlea.cochlea`.

    Returns:
        ``{"events", "files", "duration_s", "rate_hz", "out"}``: spikes written, number of files,
        total audio duration, spikes per second of audio (all channels together), the output path.
    """
    import h5py

    paths = [Path(p) for p in inputs]
    if not paths:
        raise CochleaError("audio_to_shd: `inputs` is empty")
    if n_channels > 65536:
        raise CochleaError(f"audio_to_shd: n_channels {n_channels} does not fit SHD's uint16 units")
    lab, keys = _labels(paths, labels)
    times, units, duration = [], [], 0.0
    for i, p in enumerate(paths):
        x, fs = read_audio(p)
        try:
            t, ch, rate = cochlea_spikes(x, fs, n_channels=n_channels, n_fibres=n_fibres, seed=file_seed(seed, i),
                                         config=config, resample_to=resample_to, name=str(p))
        except AudioFileError:
            raise
        except CochleaError as e:
            raise AudioFileError(str(e)) from None
        times.append((t / rate).astype(np.float32))
        units.append(ch.astype(np.uint16))
        duration += len(x) / fs
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            spk = f.create_group("spikes")
            dt = spk.create_dataset("times", (len(paths),), dtype=h5py.vlen_dtype(np.float32))
            du = spk.create_dataset("units", (len(paths),), dtype=h5py.vlen_dtype(np.uint16))
            for i, (t, u) in enumerate(zip(times, units)):
                dt[i], du[i] = t, u
            f.create_dataset("labels", data=lab.astype(np.uint16))
            extra = f.create_group("extra")
            extra.create_dataset("keys", data=np.array([k.encode() for k in keys], dtype=object),
                                 dtype=h5py.string_dtype("ascii" if all(k.isascii() for k in keys) else "utf-8"))
            extra.create_dataset("speaker", data=np.zeros(len(paths), np.uint16))
            extra.create_dataset("files", data=np.array([p.name.encode() for p in paths], dtype=object),
                                 dtype=h5py.string_dtype("utf-8"))
            f.attrs.update({"generator": "spike.sim.cochlea", "seed": int(seed), "n_channels": int(n_channels),
                            "n_fibres": int(n_fibres)})
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    n = int(sum(len(t) for t in times))
    return {"events": n, "files": len(paths), "duration_s": duration, "rate_hz": n / duration if duration else 0.0,
            "out": str(out)}
