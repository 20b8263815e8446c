"""Video input for the DVS simulator: files, image folders and ``.npy`` arrays as luminance.

* **Video files** (mp4, mov, avi, mkv, webm, gif, ...) are decoded with PyAV (``av``, FFmpeg's
  libraries, shipped in its wheels), one frame at a time; frame times come from the
  container's presentation timestamps (``pts * time_base`` seconds, rounded to whole
  microseconds), so variable frame rates are kept.
* **A folder of images** (png, jpg, bmp, tif) in name order, read with Pillow, at ``fps``.
* **A** ``.npy`` **array** ``[N, H, W]`` or ``[N, H, W, 3]`` (uint8, or float in [0, 1]),
  memory-mapped, at ``fps``.

Colour is reduced to ITU-R BT.709 luma :math:`Y' = 0.2126 R' + 0.7152 G' + 0.0722 B'` on the
stored (gamma-encoded) values, without linearisation, as v2e feeds code values to its lin-log
photoreceptor. Frames are centre-cropped to the sensor's aspect ratio and resampled with an
antialiased triangle (bilinear) filter.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from spike.sim.esim import SimulationError

__all__ = ["LUMA_BT709", "VideoError", "VideoSource", "luminance", "open_video", "resize_frames"]

LUMA_BT709 = (0.2126, 0.7152, 0.0722)
"""ITU-R BT.709 luma weights of R', G', B'."""

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class VideoError(SimulationError):
    """A video, image folder or frame array that cannot be read (message names the file)."""


def luminance(frames: np.ndarray, name: str = "frames") -> np.ndarray:
    """Grey intensities in 0-255 units (float64 ``[N, H, W]``) of grey or RGB frames.

    Args:
        frames: ``[N, H, W]`` or ``[N, H, W, 3]``, uint8 (0-255) or float in [0, 1].
        name: what to call the array in error messages.

    Raises:
        SimulationError: another rank or dtype, NaN, or float values outside [0, 1].
    """
    a = np.asarray(frames)
    if a.ndim == 4 and a.shape[3] == 3:
        rgb = True
    elif a.ndim == 3:
        rgb = False
    else:
        raise SimulationError(f"{name} must have shape [N, H, W] or [N, H, W, 3], got shape "
                              f"{a.shape}")
    if a.dtype == np.uint8:
        f = a.astype(np.float64)
    elif np.issubdtype(a.dtype, np.floating):
        f = a.astype(np.float64)
        if f.size and not np.isfinite(f).all():
            bad = np.argwhere(~np.isfinite(f))[0]
            raise SimulationError(f"{name} contain NaN or inf (first at {tuple(int(i) for i in bad)})")
        if f.size and (f.min() < 0.0 or f.max() > 1.0):
            raise SimulationError(f"float {name} must lie in [0, 1], got range [{f.min()}, "
                                  f"{f.max()}]")
        f = f * 255.0
    else:
        raise SimulationError(f"{name} must be uint8 (0-255) or float (0-1), got dtype {a.dtype}")
    if rgb:
        r, g, b = LUMA_BT709
        f = r * f[..., 0] + g * f[..., 1] + b * f[..., 2]
    return f


def _resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` antialiased linear-interpolation weights (rows sum to 1)."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centers = (np.arange(n_out) + 0.5) * scale  # output centres in input coordinates
    pos = np.arange(n_in) + 0.5
    wgt = np.maximum(0.0, 1.0 - np.abs(pos[None, :] - centers[:, None]) / support)
    return wgt / wgt.sum(1, keepdims=True)


def _crop_box(h: int, w: int, out_w: int, out_h: int) -> tuple[int, int, int, int]:
    """Centre crop ``(y0, y1, x0, x1)`` of an ``h x w`` image to the aspect ``out_w : out_h``."""
    if w * out_h > h * out_w:  # too wide
        cw = max(1, round(h * out_w / out_h))
        x0 = (w - cw) // 2
        return 0, h, x0, x0 + cw
    ch = max(1, round(w * out_h / out_w))
    y0 = (h - ch) // 2
    return y0, y0 + ch, 0, w


class _Resizer:
    """Cached crop + resample of ``[N, h, w]`` frames to ``(W, H)``."""

    def __init__(self, h: int, w: int, size: tuple[int, int] | None) -> None:
        self.size = (w, h) if size is None else (int(size[0]), int(size[1]))
        out_w, out_h = self.size
        self.identity = (out_w, out_h) == (w, h)
        self.box = _crop_box(h, w, out_w, out_h)
        y0, y1, x0, x1 = self.box
        self.ry = _resample_matrix(y1 - y0, out_h)  # [H, h']
        self.rx = _resample_matrix(x1 - x0, out_w)  # [W, w']

    def __call__(self, f: np.ndarray) -> np.ndarray:
        if self.identity:
            return f
        y0, y1, x0, x1 = self.box
        f = f[:, y0:y1, x0:x1]
        return np.einsum("Hh,nhw,Ww->nHW", self.ry, f, self.rx, optimize=True)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop ``[N, h, w]`` frames to the aspect of ``size = (W, H)`` and resample to it.

    Uses an antialiased triangle filter (bilinear when enlarging, averaging over the footprint
    when shrinking); a frame already ``W x H`` is returned unchanged.
    """
    f = np.asarray(frames, dtype=np.float64)
    if f.ndim != 3:
        raise SimulationError(f"frames must have shape [N, H, W], got shape {f.shape}")
    return _Resizer(f.shape[1], f.shape[2], size)(f)


class VideoSource:
    """Frames of a video file, an image folder or a ``.npy`` array, read in chunks.

    Attributes:
        path: the input.
        kind: ``"video"``, ``"images"`` or ``"npy"``.
        reader: what decodes it (``"pyav <version>"``, ``"pillow"``, ``"numpy"``).
        width, height: native frame size.
        n_frames: number of frames if known in advance (video containers may not say).
    """

    def __init__(self, path: Path, kind: str, reader: str, width: int, height: int,
                 n_frames: int | None, frames_fn, fps: float | None) -> None:
        self.path, self.kind, self.reader = path, kind, reader
        self.width, self.height, self.n_frames = width, height, n_frames
        self.fps = fps
        self._frames_fn = frames_fn

    def chunks(self, chunk_frames: int = 64, size: tuple[int, int] | None = None
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(frames, t_us)``: ``[n, H, W]`` float64 intensities (0-255) and int64 times.

        Args:
            chunk_frames: frames per chunk (memory is one chunk, whatever the video length).
            size: ``(W, H)`` to crop and resample to; native size if None.

        Raises:
            VideoError: the input cannot be decoded, holds no frames, changes frame size, or
                has non-increasing timestamps (the message names the file).
        """
        if int(chunk_frames) < 1:
            raise SimulationError(f"chunk_frames must be >= 1, got {chunk_frames}")
        resize = _Resizer(self.height, self.width, size)
        buf, times = [], []
        last_t = None
        count = 0
        for frame, t_us in self._frames_fn():
            if frame.shape[:2] != (self.height, self.width):
                raise VideoError(f"{self.path}: frame {count} is {frame.shape[1]}x"
                                 f"{frame.shape[0]}, the first was {self.width}x{self.height}")
            if last_t is not None and t_us <= last_t:
                raise VideoError(f"{self.path}: frame {count} has time {t_us} us, not after the "
                                 f"previous frame's {last_t} us")
            last_t = t_us
            buf.append(frame)
            times.append(t_us)
            count += 1
            if len(buf) == chunk_frames:
                yield self._finish(buf, times, resize)
                buf, times = [], []
        if buf:
            yield self._finish(buf, times, resize)
        if count == 0:
            raise VideoError(f"{self.path}: no frames")

    def _finish(self, buf, times, resize):
        try:
            lum = luminance(np.stack(buf), name=f"{self.path} frames")
        except VideoError:
            raise
        except SimulationError as e:
            raise VideoError(f"{self.path}: {e}") from None
        return resize(lum), np.asarray(times, dtype=np.int64)


def _frame_times(n: int, fps: float) -> list[int]:
    return [int(round(i * 1e6 / fps)) for i in range(n)]


def _open_npy(path: Path, fps: float) -> VideoSource:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise VideoError(f"{path}: not a readable .npy array ({e})") from None
    if not (arr.ndim == 3 or (arr.ndim == 4 and arr.shape[3] == 3)):
        raise VideoError(f"{path}: expected frames [N, H, W] or [N, H, W, 3], got shape "
                         f"{arr.shape}")
    if arr.shape[0] == 0:
        raise VideoError(f"{path}: no frames (shape {arr.shape})")

    def frames():
        for i, t in enumerate(_frame_times(arr.shape[0], fps)):
            yield np.asarray(arr[i]), t

    return VideoSource(path, "npy", "numpy", int(arr.shape[2]), int(arr.shape[1]),
                       int(arr.shape[0]), frames, fps)


def _open_images(path: Path, fps: float) -> VideoSource:
    from PIL import Image, UnidentifiedImageError

    files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in
                   IMAGE_EXTENSIONS)
    if not files:
        raise VideoError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")

    def load(f: Path) -> np.ndarray:
        try:
            with Image.open(f) as im:
                return np.asarray(im.convert("L" if im.mode in ("L", "I", "I;16", "1") else "RGB"))
        except (OSError, UnidentifiedImageError) as e:
            raise VideoError(f"{f}: cannot read this image ({e})") from None

    first = load(files[0])

    def frames():
        for f, t in zip(files, _frame_times(len(files), fps)):
            yield load(f), t

    return VideoSource(path, "images", "pillow", int(first.shape[1]), int(first.shape[0]),
                       len(files), frames, fps)


def _open_av(path: Path) -> VideoSource:
    try:
        import av
    except ImportError:  # pragma: no cover - av is a dependency
        raise VideoError(f"{path}: reading video files needs PyAV (pip install av)") from None
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise VideoError(f"{path}: no video stream in this file")
            s = c.streams.video[0]
            width, height = int(s.codec_context.width), int(s.codec_context.height)
            n = int(s.frames) or None
            rate = s.average_rate
    except av.error.FFmpegError as e:
        raise VideoError(f"{path}: cannot decode this video ({e})") from None
    fps = float(rate) if rate else None

    def frames():
        try:
            with av.open(str(path)) as c:
                s = c.streams.video[0]
                tb = s.time_base
                for i, fr in enumerate(c.decode(s)):
                    if fr.pts is not None and tb is not None:
                        t = int(round(Fraction(fr.pts) * tb * 1_000_000))
                    elif fps:
                        t = int(round(i * 1e6 / fps))
                    else:
                        raise VideoError(f"{path}: frame {i} has no timestamp and the stream no "
                                         f"frame rate")
                    yield fr.to_ndarray(format="rgb24"), t
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: cannot decode this video ({e})") from None

    return VideoSource(path, "video", f"pyav {av.__version__}", width, height, n, frames, fps)


def open_video(path: str | Path, *, fps: float | None = None) -> VideoSource:
    """Open a video file, an image folder or a ``.npy`` frame array.

    Args:
        path: the input.
        fps: frame rate of image folders and ``.npy`` arrays (default 30); video files take
            their times from the container and ignore it.

    Raises:
        VideoError: missing input, or a file that cannot be read as frames (names the file).
    """
    path = Path(path)
    if fps is not None and not (fps > 0 and np.isfinite(fps)):
        raise VideoError(f"{path}: fps must be a positive number, got {fps}")
    rate = 30.0 if fps is None else float(fps)
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder")
    if path.is_dir():
        return _open_images(path, rate)
    if path.suffix.lower() == ".npy":
        return _open_npy(path, rate)
    return _open_av(path)
