"""``spike events``: look at, convert and bin event recordings.

* ``spike events info FILE``: format, sensor, event count, duration, rate, polarity balance and
  time range (read with :func:`spike.io.read_events`).
* ``spike events convert IN OUT [--format F]``: rewrite in the format of OUT's extension
  (:func:`spike.io.write_events`; ``.raw`` is EVT3, ``--format evt2`` for EVT 2.0).
* ``spike events render IN OUT [--window-ms W] [--denoise US] ...``: ``.png``/``.pdf``/``.svg``/``.jpg``
  a frame grid (a raster for 1-D sensors; ``--plot rate`` the event rate), ``.gif``/``.mp4`` an
  animation (:mod:`spike.events.render`).
* ``spike events bin IN OUT.npz --n-time-bins N | --time-window US | --event-count K``: frames
  ``[T, P, H, W]`` of :func:`spike.events.to_frame` in an ``.npz`` with ``frames``, ``sensor_size``
  and the binning arguments, written atomically.

Each prints one JSON line on stdout (human-readable notes go to stderr). A user error (missing or
unreadable file, unknown extension, conflicting options) is one line on stderr and exit code 2
(:func:`spike.cli.main.main`), and no output file is left behind.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["add_parsers", "cmd_events", "recording_info"]

_PICTURES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
_ANIMATIONS = (".gif", ".mp4")


def add_parsers(sub) -> None:
    """Register ``events`` (with ``info``, ``convert``, ``render``, ``bin``) on the ``spike`` sub-parsers."""
    p = sub.add_parser("events", help="look at, convert and bin event recordings")
    ev = p.add_subparsers(dest="events_command", required=True, metavar="{info,convert,render,bin}")
    q = ev.add_parser("info", help="format, sensor, count, duration, rate and polarity balance of a recording")
    q.add_argument("file")
    q = ev.add_parser("convert", help="rewrite a recording in the format of OUT's extension")
    q.add_argument("input", metavar="IN")
    q.add_argument("output", metavar="OUT")
    q.add_argument("--format", default=None, help="output format (default: from OUT's extension; "
                                                  "evt2 for EVT 2.0 .raw)")
    q = ev.add_parser("render", help="a picture (.png/.pdf/.svg/.jpg) or animation (.gif/.mp4) of a recording")
    q.add_argument("input", metavar="IN")
    q.add_argument("output", metavar="OUT")
    q.add_argument("--window-ms", type=float, default=None,
                   help="window per frame/panel in ms (default: animation 1/100 of the recording, "
                        "grid n-frames consecutive windows)")
    q.add_argument("--denoise", type=float, default=None, metavar="US",
                   help="background-activity filter time in us before drawing (spike.events.denoise)")
    q.add_argument("--plot", choices=["auto", "frames", "rate", "raster"], default="auto",
                   help="what a picture shows (auto: frames, or a raster for 1-D sensors)")
    q.add_argument("--n-frames", type=int, default=8, help="panels of a frame grid (default 8)")
    q.add_argument("--bin-ms", type=float, default=10.0, help="bin of an event-rate plot in ms (default 10)")
    q.add_argument("--fps", type=float, default=None, help="animation frame rate (default: real time, 1..50)")
    q.add_argument("--scale", type=int, default=None, help="animation: integer upscaling")
    q.add_argument("--pool", type=int, default=None, help="animation: sum pool x pool pixel blocks")
    q = ev.add_parser("bin", help="frames [T, P, H, W] (spike.events.to_frame) into an .npz")
    q.add_argument("input", metavar="IN")
    q.add_argument("output", metavar="OUT.npz")
    q.add_argument("--n-time-bins", type=int, default=None, metavar="N")
    q.add_argument("--time-window", type=float, default=None, metavar="US")
    q.add_argument("--event-count", type=int, default=None, metavar="K")
    q.add_argument("--max-gib", type=float, default=4.0,
                   help="refuse frames larger than this many GiB in memory (default 4)")


def cmd_events(args) -> dict:
    """Run ``spike events <command>``; returns its JSON result."""
    return {"info": _info, "convert": _convert, "render": _render, "bin": _bin}[args.events_command](args)


# -- info -----------------------------------------------------------------------------------------
def recording_info(events: np.ndarray, sensor_size) -> dict:
    """Count, duration, rate, polarity balance and time range of ``events`` (JSON-ready)."""
    n = len(events)
    t = events["t"]
    t0 = int(t[0]) if n else None
    t1 = int(t[-1]) if n else None
    dur = (t1 - t0) if n else 0
    on = int(np.count_nonzero(events["p"] > 0))
    return {"sensor_size": [int(s) for s in sensor_size], "events": n, "duration_us": dur,
            "duration_s": dur / 1e6, "rate_hz": (n / (dur / 1e6)) if dur > 0 else None,
            "on": on, "off": n - on, "on_fraction": (on / n) if n else None,
            "t_first_us": t0, "t_last_us": t1}


def _read(path: str):
    from spike.io import detect_format, read_events

    fmt = detect_format(path)
    ev, size = read_events(path, fmt)
    return ev, size, fmt


def _info(args) -> dict:
    ev, size, fmt = _read(args.file)
    r = {"file": str(args.file), "format": fmt, "bytes": Path(args.file).stat().st_size,
         **recording_info(ev, size)}
    rate = "-" if r["rate_hz"] is None else f"{r['rate_hz']:,.0f} ev/s"
    bal = "-" if r["on_fraction"] is None else f"{100 * r['on_fraction']:.1f}% ON"
    print(f"{args.file}: {fmt}, sensor {size[0]}x{size[1]}x{size[2]}, {r['events']:,} events over "
          f"{r['duration_s']:.6g} s ({rate}, {bal})", file=sys.stderr)
    return r


# -- convert --------------------------------------------------------------------------------------
def _convert(args) -> dict:
    from spike.io import detect_format, write_events

    ev, size, fmt = _read(args.input)
    out = write_events(args.output, ev, size, args.format,
                       metadata={"source": str(args.input), "source_format": fmt})
    return {"in": str(args.input), "out": str(out), "in_format": fmt, "out_format": detect_format(out),
            "events": len(ev), "sensor_size": [int(s) for s in size], "bytes": out.stat().st_size}


# -- render ---------------------------------------------------------------------------------------
def _check_positive(value, flag: str) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{flag} must be a positive number, got {value}")


def _render(args) -> dict:
    from spike.events import denoise
    from spike.events import render as R

    out = Path(args.output)
    ext = out.suffix.lower()
    if ext not in _PICTURES + _ANIMATIONS:
        raise ValueError(f"{out}: unknown output type {out.suffix!r}; use one of "
                         f"{', '.join(_PICTURES + _ANIMATIONS)}")
    for v, flag in ((args.window_ms, "--window-ms"), (args.denoise, "--denoise"), (args.fps, "--fps"),
                    (args.bin_ms, "--bin-ms")):
        _check_positive(v, flag)
    ev, size, fmt = _read(args.input)
    n_read = len(ev)
    if args.denoise is not None:
        ev = denoise(ev, size, args.denoise)
    if len(ev) == 0:
        raise ValueError(f"{args.input}: no events to draw" + (" after --denoise" if args.denoise else ""))
    start = time.perf_counter()
    res = {"in": str(args.input), "out": str(out), "format": fmt, "sensor_size": [int(s) for s in size],
           "events": n_read, "events_drawn": len(ev), "denoise_us": args.denoise}
    if ext in _ANIMATIONS:
        a = R.animate(ev, size, out, window_ms=args.window_ms, fps=args.fps, scale=args.scale, pool=args.pool)
        res.update(kind="animation", frames=a.n_frames, window_ms=a.window_us / 1000, fps=a.fps,
                   width=a.width, height=a.height)
    else:
        kind = args.plot
        if kind == "auto":
            kind = "raster" if size[1] == 1 else "frames"
        if kind == "frames":
            R.plot_frame_grid(ev, size, out, n_frames=args.n_frames, window_ms=args.window_ms)
            res.update(frames=args.n_frames, window_ms=args.window_ms)
        elif kind == "rate":
            R.plot_event_rate(ev, out, bin_ms=args.bin_ms, sensor_size=size)
            res.update(bin_ms=args.bin_ms)
        else:
            R.plot_raster(ev, out, sensor_size=size)
        res["kind"] = kind
    res.update(bytes=out.stat().st_size, seconds=round(time.perf_counter() - start, 3))
    return res


# -- bin ------------------------------------------------------------------------------------------
def _bin(args) -> dict:
    from spike.events import slice_indices, to_frame
    from spike.core.atomic import atomic_path

    out = Path(args.output)
    given = {k: v for k, v in (("n_time_bins", args.n_time_bins), ("time_window", args.time_window),
                               ("event_count", args.event_count)) if v is not None}
    if len(given) != 1:
        raise ValueError("give exactly one of --n-time-bins, --time-window, --event-count"
                         + (f" (got {', '.join('--' + k.replace('_', '-') for k in given)})" if given else ""))
    if out.suffix.lower() != ".npz":
        raise ValueError(f"{out}: the output must end in .npz")
    if out.is_dir() or not out.parent.is_dir():
        raise ValueError(f"{out}: " + ("is a directory" if out.is_dir() else
                                       f"the folder {str(out.parent)!r} does not exist"))
    (mode, value), = given.items()
    ev, size, fmt = _read(args.input)
    starts, _ = slice_indices(ev, **given)  # checks the arguments; T before any allocation
    w, h, p = size
    need = len(starts) * p * h * w * 4
    if need > args.max_gib * 2**30:
        raise ValueError(f"{len(starts)} frames of {p}x{h}x{w} would need {need / 2**30:.1f} GiB "
                         f"(--max-gib {args.max_gib:g}); use fewer or longer windows")
    frames = to_frame(ev, size, **given)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, frames=frames, sensor_size=np.asarray(size, np.int64),
                            mode=np.asarray(mode), **{mode: np.asarray(value)})
    return {"in": str(args.input), "out": str(out), "format": fmt, "sensor_size": [int(s) for s in size],
            "mode": mode, mode: value, "shape": list(frames.shape), "dtype": str(frames.dtype),
            "events": len(ev), "events_binned": int(frames.sum(dtype=np.int64)), "bytes": out.stat().st_size}
