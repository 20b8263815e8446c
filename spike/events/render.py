"""Pictures of a recording: frame grids, animations, event rates and spike rasters (no torch).

* :func:`plot_frame_grid` -- PNG (or PDF/SVG) grid of accumulated windows, ON/OFF coloured, each
  panel titled with its time range in ms, axes in sensor pixels.
* :func:`animate` -- MP4 or GIF of consecutive windows, frames made with numpy (a palette lookup)
  and encoded by faery's MP4/x264 encoder (streamed, constant memory) or Pillow's GIF writer
  (exact palette, no quantisation); both are already dependencies (faery, matplotlib's Pillow).
* :func:`plot_event_rate` -- ON and OFF events per second over time.
* :func:`plot_raster` -- spikes of a 1-D sensor (SHD, N-TIDIGITS: ``sensor_size = (C, 1, P)``),
  channel against time.
* :func:`render_window` -- one window as an ``[H, W, 3]`` uint8 image (what the others draw).

Memory stays bounded on any recording: windows are index ranges of the time-sorted events
(``searchsorted`` on ``t``, as :func:`spike.events.slice_indices`) and only the window being drawn
is binned, so a 1280x720 recording of 1.2 M events never becomes one ``[T, P, H, W]`` array.
Matplotlib is used through :class:`matplotlib.figure.Figure` and its Agg canvas, so a notebook's
backend is never changed. Every file is written to a temporary name beside the target and renamed
into place when complete: a failure leaves nothing behind.

Times shown are relative to the first event (``t`` in microseconds in the data).
"""

from __future__ import annotations

import contextlib
import functools
import os
import math
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from spike.core.atomic import atomic_path
from spike.core.events import validate_events
from spike.events.denoise import denoise as _denoise

__all__ = [
    "OFF_COLOR",
    "ON_COLOR",
    "Animation",
    "animate",
    "event_rate",
    "plot_event_rate",
    "plot_frame_grid",
    "plot_raster",
    "render_window",
]

BACKGROUND = (0, 0, 0)
ON_COLOR = (255, 176, 0)
"""ON events (``p > 0``): amber."""
OFF_COLOR = (30, 144, 255)
"""OFF events (``p <= 0`` on a two-polarity sensor): blue (distinguishable with colour blindness)."""
MONO_COLOR = (235, 235, 235)
"""Events of a one-polarity sensor."""
_LEVELS = 8
_IMAGE_FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
_MAX_FRAMES = 20_000
_GIF_MAX_SIDE = 640
_GIF_MAX_BYTES = 2**30
_UNIT_LABEL = {"us": "\u00b5s", "ms": "ms", "s": "s"}


class Animation(NamedTuple):
    """What :func:`animate` wrote."""

    path: Path
    n_frames: int
    width: int
    """Frame width in pixels (``ceil(W / pool) * scale``, plus one for an odd MP4 width)."""
    height: int
    fps: float
    window_us: float


# -- checks and windows ----------------------------------------------------------------------------
def _sensor(sensor_size) -> tuple[int, int, int]:
    try:
        w, h, p = (int(s) for s in sensor_size)
    except (TypeError, ValueError):
        raise ValueError(f"sensor_size must be (W, H, P), got {sensor_size!r}") from None
    if w < 1 or h < 1 or p not in (1, 2):
        raise ValueError(f"sensor_size must be (W, H, P) with W, H >= 1 and P in (1, 2), got {sensor_size!r}")
    return w, h, p


def _prepare(events, sensor_size, denoise_us, name: str):
    size = _sensor(sensor_size)
    validate_events(events, size, check_sorted=True, name=name)
    if "y" not in events.dtype.names:
        raise ValueError(f"{name}: events need a y field for images (use plot_raster for 1-D data)")
    if denoise_us is not None:
        events = _denoise(events, size, denoise_us)
    if len(events) == 0:
        raise ValueError(f"{name}: no events to draw" + (" after denoising" if denoise_us is not None else ""))
    return events, size


def _ms(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 1 else f"{v:.3g}"


def _positive(value, what: str) -> float:
    if value is None or not (isinstance(value, (int, float, np.integer, np.floating)) and value > 0
                             and math.isfinite(value)):
        raise ValueError(f"{what} must be a positive number, got {value!r}")
    return float(value)


def _window_bounds(t: np.ndarray, w_start: np.ndarray, w_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index ranges of the half-open windows ``[w_start, w_end)``; a window reaching the last
    event is closed, so the last event is drawn."""
    lo = np.searchsorted(t, w_start, "left")
    hi = np.searchsorted(t, w_end, "left")
    last = w_end >= t[-1]
    hi[last] = np.searchsorted(t, w_end[last], "right")
    return lo.astype(np.int64), hi.astype(np.int64)


# -- one window as RGB -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _lut(n_pol: int) -> np.ndarray:
    """``[(L+1)**2, 3]`` colours by ``ON level * (L+1) + OFF level``; level 1 is clearly visible."""
    a = np.zeros(_LEVELS + 1)
    a[1:] = 0.4 + 0.6 * np.arange(_LEVELS) / (_LEVELS - 1)
    bg = np.asarray(BACKGROUND, float)
    on = np.asarray(ON_COLOR if n_pol == 2 else MONO_COLOR, float) - bg
    off = np.asarray(OFF_COLOR, float) - bg
    rgb = bg + a[:, None, None] * on + a[None, :, None] * off
    out = np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(-1, 3)
    out.flags.writeable = False
    return out


def _counts(events: np.ndarray, size, pool: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """ON and OFF counts ``[H', W']`` of ``events`` (``pool x pool`` pixel blocks summed)."""
    w, h, n_pol = size
    wp, hp = -(-w // pool), -(-h // pool)
    x = events["x"] // pool if pool > 1 else events["x"]
    y = events["y"] // pool if pool > 1 else events["y"]
    idx = np.asarray(y, np.int64) * wp + np.asarray(x, np.int64)
    if n_pol == 2:
        idx = idx + (np.asarray(events["p"]) > 0) * (wp * hp)  # OFF plane first, then ON
        c = np.bincount(idx, minlength=2 * wp * hp).reshape(2, hp, wp)
        return c[1], c[0]
    c = np.bincount(idx, minlength=wp * hp).reshape(hp, wp)
    return c, np.zeros_like(c)


def _levels(on: np.ndarray, off: np.ndarray, saturation: float | None) -> np.ndarray:
    """Palette index ``ON level * (L+1) + OFF level`` per pixel (uint8, < 81)."""
    if saturation is None:
        total = on + off
        nz = total[total > 0]
        saturation = max(1.0, float(np.percentile(nz, 99))) if nz.size else 1.0
    elif not saturation > 0:
        raise ValueError(f"saturation must be > 0 events, got {saturation!r}")
    # level = ceil(count * L / saturation), at most L: 1 for a single event, L at saturation
    step = saturation / _LEVELS
    lv_on = np.minimum(np.ceil(on / step), _LEVELS).astype(np.uint8)
    lv_off = np.minimum(np.ceil(off / step), _LEVELS).astype(np.uint8)
    return lv_on * np.uint8(_LEVELS + 1) + lv_off


def render_window(events: np.ndarray, sensor_size: tuple[int, int, int], *, saturation: float | None = None,
                  pool: int = 1) -> np.ndarray:
    """The events of one window as an image: ON amber, OFF blue, both mixed, black background.

    Args:
        events: the window's events (structured, fields ``x, y, p``).
        sensor_size: ``(W, H, P)``.
        saturation: count at which a pixel reaches full colour (default: the 99th percentile of
            the window's non-zero pixel counts); one event is always visible.
        pool: sum ``pool x pool`` pixel blocks first (keeps single events visible when drawn small).

    Returns:
        ``[ceil(H / pool), ceil(W / pool), 3]`` uint8 image (row 0 is ``y = 0``).
    """
    size = _sensor(sensor_size)
    validate_events(events, size, check_sorted=False, name="events")
    if "y" not in events.dtype.names:
        raise ValueError("events: need a y field for images (use plot_raster for 1-D data)")
    if int(pool) < 1:
        raise ValueError(f"pool must be a positive integer, got {pool!r}")
    return _render(events, size, saturation, int(pool))


def _render(events: np.ndarray, size, saturation, pool: int) -> np.ndarray:
    """:func:`render_window` of already validated events."""
    on, off = _counts(events, size, pool)
    return np.take(_lut(size[2]), _levels(on, off, saturation), axis=0)


# -- atomic output ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _atomic(path: Path, allowed: tuple[str, ...], what: str) -> Iterator[Path]:
    """Check ``path``; yield a temporary name beside it; rename onto ``path`` on success."""
    if path.suffix.lower() not in allowed:
        raise ValueError(f"{path}: {what} must end in one of {', '.join(allowed)}")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory")
    if not path.parent.is_dir():
        raise ValueError(f"{path}: the folder {str(path.parent)!r} does not exist")
    with atomic_path(path) as tmp:
        yield tmp


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fmt = path.suffix.lower().lstrip(".")
    with _atomic(path, _IMAGE_FORMATS, "a picture") as tmp:
        fig.savefig(tmp, format="jpeg" if fmt == "jpg" else fmt, dpi=fig.dpi)
    return path


def _check_image_path(path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in _IMAGE_FORMATS:
        raise ValueError(f"{path}: a picture must end in one of {', '.join(_IMAGE_FORMATS)}")
    return path


# -- frame grid ------------------------------------------------------------------------------------
def plot_frame_grid(events: np.ndarray, sensor_size: tuple[int, int, int], path: str | os.PathLike, *, n_frames: int = 8,
                    window_ms: float | None = None, cols: int | None = None, denoise_us: float | None = None,
                    saturation: float | None = None, panel_px: int = 320, title: str | None = None) -> Path:
    """Grid of ``n_frames`` accumulated windows, each titled with its time range in ms.

    Args:
        events: structured events (``t`` sorted, microseconds).
        sensor_size: ``(W, H, P)``.
        path: ``.png`` (or ``.pdf``, ``.svg``, ``.jpg``), written atomically.
        n_frames: number of panels.
        window_ms: panel width in ms; the panels' starts are spread evenly over the recording
            (snapshots). ``None``: ``n_frames`` consecutive windows that cover the whole recording.
        cols: panels per row (default: up to 4).
        denoise_us: run :func:`spike.events.denoise` with this filter time first.
        saturation: count for full colour (see :func:`render_window`).
        panel_px: about how many pixels a panel is wide; larger sensors are block-summed to it, so
            isolated events stay visible.
        title: figure title (default: event count and duration).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: bad arguments, no events, or an unwritable ``path`` (nothing is written).
    """
    from matplotlib.figure import Figure

    path = _check_image_path(path)
    if not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise ValueError(f"n_frames must be a positive integer, got {n_frames!r}")
    events, size = _prepare(events, sensor_size, denoise_us, "events")
    t = events["t"]
    t0, span = float(t[0]), float(t[-1] - t[0])
    if window_ms is None:  # consecutive windows covering [t0, t_last]
        width = span / n_frames if span > 0 else 1.0
        edges = t0 + np.arange(n_frames + 1) * width
        edges[-1] = max(edges[-1], float(t[-1]))
        starts, ends = edges[:-1], edges[1:]
    else:  # snapshots spread evenly
        width = _positive(window_ms, "window_ms") * 1000.0
        gap = max(span - width, 0.0)
        starts = t0 + (np.arange(n_frames) * gap / (n_frames - 1) if n_frames > 1 else np.zeros(1))
        ends = starts + width
    lo, hi = _window_bounds(t, starts, ends)
    w, h, _ = size
    pool = max(1, math.ceil(w / panel_px))
    cols = int(cols) if cols else min(4, n_frames)
    rows = -(-n_frames // cols)
    aspect = h / w
    fig = Figure(figsize=(3.2 * cols, 3.2 * aspect * rows + 0.9 + 0.25 * rows), dpi=110,
                 layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    for i, ax in enumerate(axes.flat):
        if i >= n_frames:
            ax.set_axis_off()
            continue
        img = _render(events[lo[i]:hi[i]], size, saturation, pool)
        ax.imshow(img, extent=(0, w, h, 0), interpolation="nearest")
        a, b = (starts[i] - t0) / 1000.0, (ends[i] - t0) / 1000.0
        ax.set_title(f"{_ms(a)}\u2013{_ms(b)} ms ({int(hi[i] - lo[i]):,} ev)", fontsize=9)
        if i % cols == 0:
            ax.set_ylabel("y (px)")
        if i >= n_frames - cols:
            ax.set_xlabel("x (px)")
    fig.suptitle(title or f"{len(events):,} events over {_ms(span / 1000)} ms, sensor {w}\u00d7{h}  "
                          f"(ON amber, OFF blue)", fontsize=10)
    return _save(fig, path)


# -- animation -------------------------------------------------------------------------------------
def _auto_scale(w: int, h: int) -> int:
    return max(1, math.ceil(256 / max(w, h)))


def animate(events: np.ndarray, sensor_size: tuple[int, int, int], path: str | os.PathLike, *, window_ms: float | None = None,
            fps: float | None = None, scale: int | None = None, pool: int | None = None,
            denoise_us: float | None = None, saturation: float | None = None,
            crf: float = 17.0) -> Animation:
    """MP4 or GIF of consecutive ``window_ms`` windows (frame ``i`` shows window ``i``).

    Args:
        events: structured events (``t`` sorted, microseconds).
        sensor_size: ``(W, H, P)``.
        path: ``.gif`` or ``.mp4``, written atomically.
        window_ms: time per frame (default: the recording split into 100 frames).
        fps: playback frame rate (default: real time, ``1000 / window_ms``, capped to 1..50;
            a GIF stores frame delays in 10 ms steps).
        scale: integer pixel upscaling (default: sensors smaller than 256 px are enlarged to about
            256 px).
        pool: sum ``pool x pool`` pixel blocks (downscaling; default 1 for MP4, and for GIF enough
            to make the frames at most 640 px wide: Pillow keeps every GIF frame in memory until
            the file is closed, one byte per pixel per frame, refused above 1 GiB).
        denoise_us: run :func:`spike.events.denoise` with this filter time first.
        saturation: count for full colour (see :func:`render_window`).
        crf: MP4 constant rate factor (lower is better; 17 is visually lossless).

    Returns:
        :class:`Animation` (path, frame count, frame size, fps, window in us).

    Raises:
        ValueError: bad arguments, no events, too many frames, or an unwritable ``path``.
    """
    path = Path(path)
    kind = path.suffix.lower()
    if kind not in (".gif", ".mp4"):
        raise ValueError(f"{path}: an animation must end in .gif or .mp4")
    events, size = _prepare(events, sensor_size, denoise_us, "events")
    t = events["t"]
    t0, span = float(t[0]), float(t[-1] - t[0])
    width = span / 100 if window_ms is None else _positive(window_ms, "window_ms") * 1000.0
    width = max(width, 1.0)
    n = max(1, math.ceil(span / width)) if span > 0 else 1
    if t0 + n * width < t[-1]:  # rounding: the last event still needs a window
        n += 1
    if n > _MAX_FRAMES:
        raise ValueError(f"window_ms={width / 1000:g} makes {n} frames over {span / 1e6:.4g} s "
                         f"(at most {_MAX_FRAMES}); use a longer window")
    if fps is None:
        fps = min(50.0, max(1.0, 1e6 / width))
    fps = _positive(fps, "fps")
    w, h, _ = size
    s = _auto_scale(w, h) if scale is None else int(scale)
    if s < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if pool is None:
        pool = max(1, math.ceil(max(w, h) / _GIF_MAX_SIDE)) if kind == ".gif" else 1
    if int(pool) < 1:
        raise ValueError(f"pool must be a positive integer, got {pool!r}")
    pool = int(pool)
    fw, fh = -(-w // pool) * s, -(-h // pool) * s
    if kind == ".gif" and n * fw * fh > _GIF_MAX_BYTES:
        raise ValueError(f"{path}: {n} GIF frames of {fw}x{fh} would need {n * fw * fh / 2**30:.1f} GiB "
                         f"in the GIF encoder; use .mp4 (streamed), a longer window or a larger pool")
    pad_w, pad_h = (fw % 2, fh % 2) if kind == ".mp4" else (0, 0)  # x264 needs even sides
    edges = t0 + np.arange(n + 1) * width
    lo, hi = _window_bounds(t, edges[:-1], edges[1:])
    def indexed():  # palette-index frames [fh, fw]
        for i in range(n):
            on, off = _counts(events[lo[i]:hi[i]], size, pool)
            idx = _levels(on, off, saturation)
            if s > 1:
                idx = np.repeat(np.repeat(idx, s, axis=0), s, axis=1)
            yield idx

    with _atomic(path, (".gif", ".mp4"), "an animation") as tmp:
        if kind == ".mp4":
            _write_mp4(tmp, indexed(), size[2], fw, fh, pad_w, pad_h, fps, crf)
        else:
            _write_gif(tmp, indexed(), size[2], fw, fh, fps)
    return Animation(path, n, fw + pad_w, fh + pad_h, float(fps), width)


def _write_mp4(tmp: Path, frames, n_pol: int, fw: int, fh: int, pad_w: int, pad_h: int, fps: float,
               crf: float) -> None:
    """H.264 through faery's encoder, one RGB frame at a time (constant memory)."""
    import faery

    lut = _lut(n_pol)
    rgb = np.zeros((fh + pad_h, fw + pad_w, 3), np.uint8)
    rgb[:] = BACKGROUND
    # faery 0.7.1 passes tune="animation" to x264 misspelt ('animaation'): use "none"
    with faery.mp4.Encoder(path=tmp, dimensions=(fw + pad_w, fh + pad_h), frame_rate=float(fps),
                           crf=float(crf), preset="ultrafast", tune="none", profile="high") as enc:
        for idx in frames:
            if pad_w or pad_h:
                rgb[:fh, :fw] = lut[idx]
            else:
                np.take(lut, idx, axis=0, out=rgb)
            enc.write(rgb)


def _write_gif(tmp: Path, frames, n_pol: int, fw: int, fh: int, fps: float) -> None:
    """GIF through Pillow with the exact palette of the levels (no quantisation).

    Pillow drops a frame identical to the previous one (adding its delay); a background pixel
    alternating between two black palette entries keeps every window a frame of its own.
    """
    from PIL import Image

    pal = np.zeros((256, 3), np.uint8)
    lut = _lut(n_pol)
    pal[: len(lut)] = lut
    pal[255] = BACKGROUND
    pal_bytes = pal.tobytes()

    def images():
        for i, idx in enumerate(frames):
            if i % 2 and idx[0, 0] == 0:
                idx = idx.copy()
                idx[0, 0] = 255
            im = Image.fromarray(np.ascontiguousarray(idx))  # mode L
            im.putpalette(pal_bytes)  # -> mode P, our palette
            yield im

    it = images()
    first = next(it)
    first.save(tmp, format="GIF", save_all=True, append_images=it, duration=max(10, round(1000 / fps)),
               loop=0, optimize=False)


# -- event rate ------------------------------------------------------------------------------------
def event_rate(events: np.ndarray, bin_ms: float = 10.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ON and OFF events per second in bins of ``bin_ms`` from the first event.

    Bins ``[t0 + i*b, t0 + (i+1)*b)``, the last one closed so it holds the last event.

    Returns:
        ``(edges_s [n+1], on_rate [n], off_rate [n])``: bin edges in seconds from the first event,
        rates in events/s (ON: ``p > 0``, OFF: ``p <= 0``).
    """
    width = _positive(bin_ms, "bin_ms") * 1000.0
    validate_events(events, None, name="events")
    if len(events) == 0:
        raise ValueError("events: no events")
    t = events["t"]
    t0 = float(t[0])
    n = max(1, math.ceil(float(t[-1] - t[0]) / width))
    if n > 10_000_000:
        raise ValueError(f"bin_ms={bin_ms} makes {n} bins; use a wider bin")
    starts = t0 + np.arange(n) * width
    on = np.asarray(events["p"]) > 0
    rates = []
    for tt in (t[on], t[~on]):
        idx = np.append(np.searchsorted(tt, starts, "left"), len(tt))
        rates.append(np.diff(idx) / (width / 1e6))
    return np.arange(n + 1) * width / 1e6, rates[0], rates[1]


def plot_event_rate(events: np.ndarray, path: str | os.PathLike, *, bin_ms: float = 10.0,
                    sensor_size: tuple[int, int, int] | None = None,
                    denoise_us: float | None = None, title: str | None = None) -> Path:
    """ON and OFF event rate (events/s) over time (s from the first event).

    Args:
        events: structured events (``t`` sorted, microseconds).
        path: ``.png`` (or ``.pdf``, ``.svg``, ``.jpg``), written atomically.
        bin_ms: bin width in ms.
        sensor_size: ``(W, H, P)``; needed only with ``denoise_us`` (a one-polarity sensor is
            drawn as one curve).
        denoise_us: run :func:`spike.events.denoise` with this filter time first.
        title: figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from matplotlib.figure import Figure

    path = _check_image_path(path)
    if denoise_us is not None:
        if sensor_size is None:
            raise ValueError("denoise_us needs sensor_size")
        events, _ = _prepare(events, sensor_size, denoise_us, "events")
    else:
        validate_events(events, None if sensor_size is None else _sensor(sensor_size), name="events")
        if len(events) == 0:
            raise ValueError("events: no events to draw")
    mono = sensor_size is not None and _sensor(sensor_size)[2] == 1
    edges, on_rate, off_rate = event_rate(events, bin_ms)
    t = events["t"]
    fig = Figure(figsize=(8, 3.6), dpi=110, layout="constrained")
    ax = fig.subplots()
    on = int(np.count_nonzero(events["p"] > 0))
    if mono:
        ax.stairs(on_rate + off_rate, edges, label=f"events ({len(t):,})", color="0.2", linewidth=1.3)
    else:
        ax.stairs(on_rate, edges, label=f"ON ({on:,})", color=np.asarray(ON_COLOR) / 255, linewidth=1.3)
        ax.stairs(off_rate, edges, label=f"OFF ({len(t) - on:,})", color=np.asarray(OFF_COLOR) / 255,
                  linewidth=1.3)
    x = edges
    span_s = float(t[-1] - t[0]) / 1e6
    ax.set_xlabel("time from first event (s)")
    ax.set_ylabel(f"event rate (events/s, {bin_ms:g} ms bins)")
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"{len(t):,} events, mean {len(t) / max(span_s, 1e-6):,.0f} events/s",
                 fontsize=10)
    return _save(fig, path)


# -- raster ----------------------------------------------------------------------------------------
def plot_raster(events: np.ndarray, path: str | os.PathLike, *, sensor_size: tuple[int, int, int] | None = None,
                time_unit: str = "ms",
                title: str | None = None, marker_size: float = 2.0) -> Path:
    """Spike raster of a 1-D sensor: channel (``x``) against time.

    Args:
        events: structured events with ``x`` (channel), ``t`` (us), ``p`` and optionally ``y``
            (must be 0: a 1-D sensor, e.g. SHD ``(700, 1, 1)`` or N-TIDIGITS ``(64, 1, 2)``).
        path: ``.png`` (or ``.pdf``, ``.svg``, ``.jpg``), written atomically.
        sensor_size: ``(C, 1, P)``; sets the channel axis (default: up to the largest channel).
        time_unit: ``"ms"``, ``"s"`` or ``"us"`` on the time axis (absolute times as stored).
        title: figure title.
        marker_size: dot size in points.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from matplotlib.figure import Figure

    path = _check_image_path(path)
    scale = {"us": 1.0, "ms": 1e3, "s": 1e6}.get(time_unit)
    if scale is None:
        raise ValueError(f"time_unit must be 'us', 'ms' or 's', got {time_unit!r}")
    size = None if sensor_size is None else _sensor(sensor_size)
    if size is not None and size[1] != 1:
        raise ValueError(f"plot_raster draws 1-D sensors (H = 1), got sensor_size {size}; use plot_frame_grid")
    validate_events(events, size, check_sorted=False, name="events")
    if len(events) == 0:
        raise ValueError("events: no events to draw")
    if "y" in events.dtype.names and np.any(events["y"] != 0):
        raise ValueError("events: y is not 0 everywhere; plot_raster draws 1-D sensors, use plot_frame_grid")
    n_ch = size[0] if size is not None else int(events["x"].max()) + 1
    fig = Figure(figsize=(8, 4.2), dpi=110, layout="constrained")
    ax = fig.subplots()
    t = np.asarray(events["t"], np.float64) / scale
    ch = np.asarray(events["x"])
    pol = np.asarray(events["p"])
    two = (size is None or size[2] == 2) and bool(np.any(pol <= 0)) and bool(np.any(pol > 0))
    if two:
        on = np.asarray(events["p"]) > 0
        for sel, label, c in ((on, "ON", ON_COLOR), (~on, "OFF", OFF_COLOR)):
            ax.scatter(t[sel], ch[sel], s=marker_size, marker="|", color=np.asarray(c) / 255,
                       label=f"{label} ({int(sel.sum()):,})", rasterized=len(t) > 20_000, linewidths=0.8)
        ax.legend(loc="upper right", fontsize=8, markerscale=4)
    else:
        ax.scatter(t, ch, s=marker_size, marker="|", color="0.1", rasterized=len(t) > 20_000, linewidths=0.8)
    ax.set_xlabel(f"time ({_UNIT_LABEL[time_unit]})")
    ax.set_ylabel("channel")
    ax.set_ylim(-0.5, n_ch - 0.5)
    ax.grid(alpha=0.25)
    ax.set_title(title or f"{len(t):,} spikes on {n_ch} channels", fontsize=10)
    return _save(fig, path)
