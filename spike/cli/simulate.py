"""``spike simulate``: videos to DVS events (:mod:`spike.sim`), audio to cochlea spikes.

* ``spike simulate VIDEO OUT [--preset dvs128|davis346|dvxplorer|evk4] [--noise clean|noisy]
  [--threshold C] [--sigma S] [--cutoff-hz F] [--leak-hz R] [--shot-hz R] [--refractory-us T]
  [--upsample U] [--fps F] [--chunk N] [--seed S]``: VIDEO is a video file (decoded by PyAV,
  frame times from the container), a folder of images or a ``.npy`` array ``[N, H, W(, 3)]``
  (both at ``--fps``, default 30). Frames become BT.709 luma, are cropped and resampled to the
  preset's sensor (native size without ``--preset``) and are simulated chunk by chunk
  (:class:`spike.sim.VideoSimulator`); each chunk's events are appended to OUT with
  :class:`spike.io.writers.EventWriter` (AEDAT4, EVT2/3 ``.raw``, ``.dat``, HDF5, ``.npz`` by
  extension), atomically, so memory does not grow with the video's length.
* ``spike simulate AUDIO OUT --cochlea``: :func:`spike.sim.cochlea.audio_to_shd`.

The last stdout line is one JSON object (events, rate, ON fraction, sensor, duration, ...).
"""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["add_parsers", "cmd_simulate"]

_OUT_EXTENSIONS = (".aedat4", ".raw", ".dat", ".h5", ".hdf5", ".npz")


def add_parsers(sub) -> None:
    """Register ``simulate`` on the ``spike`` sub-parsers."""
    from spike.sim.presets import NOISE_PRESETS, SENSOR_PRESETS

    p = sub.add_parser("simulate", help="simulate a DVS on a video (or a cochlea on audio with --cochlea)")
    p.add_argument("input", metavar="VIDEO", help="video file, folder of images, .npy frames (or audio)")
    p.add_argument("out", metavar="OUT", help=f"events file ({', '.join(_OUT_EXTENSIONS)})")
    p.add_argument("--preset", choices=sorted(SENSOR_PRESETS), default=None,
                   help="sensor whose resolution the frames are resampled to (default: native size)")
    p.add_argument("--noise", choices=sorted(NOISE_PRESETS), default="clean",
                   help="pixel-model preset (v2e's clean / noisy); the options below override it")
    p.add_argument("--threshold", type=float, default=None, help="ON and OFF contrast threshold")
    p.add_argument("--pos-thres", type=float, default=None)
    p.add_argument("--neg-thres", type=float, default=None)
    p.add_argument("--sigma", type=float, default=None, help="std of the per-pixel thresholds")
    p.add_argument("--cutoff-hz", type=float, default=None, help="photoreceptor bandwidth (0: off)")
    p.add_argument("--leak-hz", type=float, default=None, help="leak event rate per pixel")
    p.add_argument("--shot-hz", type=float, default=None, help="shot noise rate per pixel")
    p.add_argument("--refractory-us", type=int, default=None)
    p.add_argument("--upsample", type=float, default=0.25,
                   help="low-pass sub-steps: at most this fraction of a threshold per sub-step (0: off)")
    p.add_argument("--fps", type=float, default=None, help="frame rate of image folders and .npy input (30)")
    p.add_argument("--chunk", type=int, default=64, help="frames simulated at a time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cochlea", action="store_true",
                   help="INPUT is audio (a file, or a folder of class folders): simulate a cochlea, write SHD HDF5")
    p.add_argument("--labels", default=None, metavar="CSV",
                   help="with --cochlea: 'file,label' rows (default: the class folders' sorted names)")


def _cochlea(args) -> dict:
    try:
        from spike.sim.cochlea import audio_to_shd
    except ImportError as e:
        raise ValueError(f"{args.input}: --cochlea needs spike.sim.cochlea, which is not available "
                         f"in this installation ({e})") from None
    src, out = Path(args.input), Path(args.out)
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise ValueError(f"{out}: --cochlea writes the SHD layout (HDF5): the output must end in .h5 or .hdf5")
    if not src.exists():
        raise ValueError(f"{src}: no such file or folder")
    if src.is_dir():  # a data set: audio files in class folders (or one folder), labels from a CSV or the folders
        inputs = sorted(f for f in src.rglob("*") if f.is_file() and f.suffix.lower() in _AUDIO_EXTENSIONS)
        if not inputs:
            raise ValueError(f"{src}: no audio files ({', '.join(_AUDIO_EXTENSIONS)}) in this folder")
    else:
        inputs = [src]
    labels = _read_labels(Path(args.labels)) if args.labels else None
    return audio_to_shd(inputs, out, labels=labels, seed=args.seed)


_AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif")


def _read_labels(path: Path) -> dict[str, int]:
    """``file,label`` rows (a header row is allowed) -> ``{file: label}``."""
    import csv

    if not path.is_file():
        raise ValueError(f"{path}: no such labels file")
    out: dict[str, int] = {}
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 2:
                raise ValueError(f"{path}:{i + 1}: expected 'file,label', got {row!r}")
            try:
                out[row[0].strip()] = int(row[1])
            except ValueError:
                if i == 0:
                    continue  # a header row
                raise ValueError(f"{path}:{i + 1}: the label must be an integer, got {row[1]!r}") from None
    if not out:
        raise ValueError(f"{path}: no 'file,label' rows")
    return out


def cmd_simulate(args) -> dict:
    """Run ``spike simulate``; returns the summary printed as the last JSON line."""
    if args.cochlea:
        return _cochlea(args)
    import numpy as np

    from spike.io.writers import EventWriter
    from spike.sim.pixel import VideoSimulator
    from spike.sim.presets import noise_config, sensor_resolution
    from spike.sim.video import open_video

    out = Path(args.out)
    if out.suffix.lower() not in _OUT_EXTENSIONS:
        raise ValueError(f"{out}: no event writer for the extension {out.suffix!r}; use one of "
                         f"{', '.join(_OUT_EXTENSIONS)}")
    if not out.parent.is_dir():
        raise ValueError(f"{out}: the folder {str(out.parent)!r} does not exist")
    if args.chunk < 1:
        raise ValueError(f"--chunk must be >= 1, got {args.chunk}")
    pos = args.pos_thres if args.pos_thres is not None else args.threshold
    neg = args.neg_thres if args.neg_thres is not None else args.threshold
    config = noise_config(args.noise, pos_thres=pos, neg_thres=neg, sigma_thres=args.sigma,
                          cutoff_hz=args.cutoff_hz, leak_rate_hz=args.leak_hz,
                          shot_noise_rate_hz=args.shot_hz, refractory_us=args.refractory_us)
    size = sensor_resolution(args.preset) if args.preset else None
    src = open_video(args.input, fps=args.fps)
    sim = VideoSimulator(config, seed=args.seed, upsample=args.upsample)
    meta = {"source": str(args.input), "preset": args.preset, "noise": args.noise, "seed": args.seed}
    n = n_on = 0
    write_s = 0.0
    writer = None
    start = time.perf_counter()
    try:  # each chunk's events go straight to the file: memory does not grow with the video
        for frames, t_us in src.chunks(args.chunk, size):
            ev = sim.feed(np.clip(frames / 255.0, 0.0, 1.0), t_us)
            if writer is None:
                writer = EventWriter(out, sim.sensor_size, metadata=meta)
            t0 = time.perf_counter()
            writer.write(ev)
            write_s += time.perf_counter() - t0
            n += len(ev)
            n_on += int((ev["p"] == 1).sum())
        if sim.n_frames < 2:
            raise ValueError(f"{args.input}: need at least 2 frames, got {sim.n_frames}")
        t0 = time.perf_counter()
        writer.close()
        write_s += time.perf_counter() - t0
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    wall = time.perf_counter() - start
    sensor = sim.sensor_size
    duration_s = (sim.t_last - sim.t_first) * 1e-6
    return {"events": n, "on": n_on, "off": n - n_on, "on_fraction": n_on / n if n else None,
            "rate_hz": n / duration_s, "rate_per_pixel_hz": n / duration_s / (sensor[0] * sensor[1]),
            "sensor": list(sensor), "duration_s": duration_s, "frames": sim.n_frames,
            "input": str(args.input), "input_size": [src.width, src.height], "reader": src.reader,
            "out": str(out), "preset": args.preset, "noise": args.noise, "config": vars(config),
            "sim_wall_s": wall, "sim_events_per_s": n / wall if wall > 0 else None,
            "write_s": write_s}
