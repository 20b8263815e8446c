"""Simulator throughput: video -> DVS events (``bench_video``) and audio -> cochlea spikes against
the lauscher package (``bench_cochlea`` in ``bench/sim_cochlea.py``).

    python bench/sim.py            # 346 x 260, 90 frames (3 s at 30 fps), best of 3; cochlea vs lauscher
    python bench/sim.py --quick    # 30 frames, best of 2; cochlea against lauscher's cached outputs only
    python bench/sim.py --no-cochlea

The video part renders a synthetic 346 x 260 (DAVIS346) RGB video of textured discs moving
across a gradient, 30 fps, and times, in the same run and on the same frames:

* ``plain``: the previous path, :func:`spike.sim.simulate` on the grey frames in one call
  (no low-pass, no noise: ``DVSConfig()``);
* ``stream_clean``: :class:`spike.sim.VideoSimulator` on the RGB frames in 16-frame chunks with
  the ``clean`` preset (luma conversion included);
* ``stream_noisy``: the same with the ``noisy`` preset (30 Hz photoreceptor low-pass with
  sub-steps, leak and shot noise);
* ``v2e`` (when its ``v2ecore`` imports, see :func:`_v2e_emulator`): v2e's ``EventEmulator``
  on the CPU, frame by frame, with the ``clean`` preset's thresholds; one timed run. Reports its
  events/s, wall time against ``stream_clean`` and the event-count ratio, ON fractions and
  per-pixel count correlation against ``stream_clean``; ``{"available": false, "reason"}``
  otherwise.

Events/s is simulated events per second of wall time (after a warm-up call that compiles the
kernels); ``*_vs_plain`` are wall-time ratios against ``plain`` (> 1: slower). The last stdout
line is one JSON object with ``"bench": "sim"``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from spike.sim import DVSConfig, VideoSimulator, noise_config, simulate
from spike.sim.video import LUMA_BT709


def synthetic_video(n: int, w: int = 346, h: int = 260, fps: float = 30.0, seed: int = 0):
    """uint8 RGB frames ``[n, h, w, 3]`` of moving textured discs and their times (us)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = 40 + 60 * xx / w
    discs = [(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(15, 45), rng.uniform(-12, 12),
              rng.uniform(-8, 8), rng.uniform(0.3, 1.0, 3)) for _ in range(8)]
    frames = np.empty((n, h, w, 3), np.uint8)
    for k in range(n):
        img = np.repeat(base[..., None], 3, -1)
        for cx, cy, r, vx, vy, col in discs:
            x0, y0 = (cx + vx * k) % w, (cy + vy * k) % h
            d = np.hypot(xx - x0, yy - y0)
            inside = np.clip(r - d + 0.5, 0, 1)[..., None]  # anti-aliased rim
            tex = 120 + 80 * np.sin((xx - x0) / 4.0)[..., None] * col
            img = img * (1 - inside) + tex * inside
        frames[k] = np.clip(img, 0, 255)
    return frames, np.round(np.arange(n) * 1e6 / fps).astype(np.int64)


def _best(fn, reps: int) -> tuple[float, int]:
    best, n = float("inf"), 0
    for _ in range(reps):
        t0 = time.perf_counter()
        n = len(fn())
        best = min(best, time.perf_counter() - t0)
    return best, n


def _stream(frames, ts, cfg, chunk=16, seed=0):
    sim = VideoSimulator(cfg, seed=seed)
    return np.concatenate([sim.feed(frames[i:i + chunk], ts[i:i + chunk])
                           for i in range(0, len(frames), chunk)])


def bench_video(n_frames: int = 90, reps: int = 3) -> dict:
    """Events/s of the video simulator on a 346 x 260 synthetic video (see the module doc)."""
    rgb, ts = synthetic_video(n_frames)
    r, g, b = LUMA_BT709
    grey = np.clip(np.round(r * rgb[..., 0] + g * rgb[..., 1] + b * rgb[..., 2]), 0, 255
                   ).astype(np.uint8)
    cases = {
        "plain": lambda: simulate(grey, ts, DVSConfig(), seed=0),
        "stream_clean": lambda: _stream(rgb, ts, noise_config("clean")),
        "stream_noisy": lambda: _stream(rgb, ts, noise_config("noisy")),
    }
    small = (rgb[:3], ts[:3])
    simulate(grey[:3], ts[:3], DVSConfig())  # compile
    _stream(*small, noise_config("noisy"))
    out = {"sensor": [346, 260], "frames": n_frames, "video_s": (ts[-1] - ts[0]) * 1e-6}
    for name, fn in cases.items():
        wall, n = _best(fn, reps)
        out[name] = {"events": n, "wall_s": round(wall, 4), "events_per_s": round(n / wall),
                     "frames_per_s": round((n_frames - 1) / wall, 1)}
    for name in ("stream_clean", "stream_noisy"):
        out[f"{name}_vs_plain"] = round(out[name]["wall_s"] / out["plain"]["wall_s"], 3)
    return out


_V2E_GUI_ONLY = ("screeninfo", "easygui", "engineering_notation", "dv_processing")


def _v2e_emulator():
    """v2e's ``EventEmulator`` class, or the reason it cannot be imported here.

    v2e is not on PyPI; point ``SPIKE_V2E_SRC`` at a checkout of github.com/SensorsINI/v2e (its
    ``v2ecore`` package needs torch and opencv: ``pip install opencv-python-headless``). The
    modules it imports only for windows, file dialogs, number printing and AEDAT4 output
    (:data:`_V2E_GUI_ONLY`) are replaced by empty stand-ins when missing; the emulator's
    arithmetic does not use them.
    """
    import importlib
    import os
    import types

    src = os.environ.get("SPIKE_V2E_SRC")
    if src and src not in sys.path:
        sys.path.insert(0, src)
    for name in _V2E_GUI_ONLY:
        try:
            importlib.import_module(name)
        except ImportError:
            stub = types.ModuleType(name)
            stub.get_monitors = lambda: []
            stub.EngNumber = lambda x, *a, **k: x
            sys.modules[name] = stub
    try:
        from v2ecore.emulator import EventEmulator
    except ImportError as e:
        return None, f"v2ecore not importable ({e}); set SPIKE_V2E_SRC to a v2e checkout"
    return EventEmulator, None


def bench_v2e(n_frames: int, ours: dict | None = None) -> dict:
    """v2e's emulator (CPU) on the same video with our ``clean`` preset's parameters.

    Its events/s in this run, the count ratio against ``stream_clean`` (same thresholds, both
    with independent per-pixel threshold draws), the ON fractions, and the Pearson correlation
    of the per-pixel event counts.
    """
    cls, why = _v2e_emulator()
    if cls is None:
        return {"available": False, "reason": why}
    rgb, ts = synthetic_video(n_frames)
    r, g, b = LUMA_BT709
    grey = r * rgb[..., 0].astype(np.float64) + g * rgb[..., 1] + b * rgb[..., 2]
    c = noise_config("clean")

    def run():
        emu = cls(pos_thres=c.pos_thres, neg_thres=c.neg_thres, sigma_thres=c.sigma_thres,
                  cutoff_hz=0.0, leak_rate_hz=0.0, shot_noise_rate_hz=0.0, refractory_period_s=0.0,
                  device="cpu", seed=0)
        out = [e for f, t in zip(grey, ts) if (e := emu.generate_events(f, t * 1e-6)) is not None]
        if hasattr(emu, "cleanup"):
            emu.cleanup()
        return np.concatenate(out) if out else np.zeros((0, 4))

    t0 = time.perf_counter()
    ev = run()
    wall = time.perf_counter() - t0
    mine = _stream(rgb, ts, c)
    cv = np.bincount(ev[:, 2].astype(np.int64) * 346 + ev[:, 1].astype(np.int64), minlength=346 * 260)
    co = np.bincount(mine["y"].astype(np.int64) * 346 + mine["x"], minlength=346 * 260)
    other = _stream(rgb, ts, c, seed=1)  # the floor: our model against itself, other threshold draws
    cs = np.bincount(other["y"].astype(np.int64) * 346 + other["x"], minlength=346 * 260)
    res = {"available": True, "events": int(len(ev)), "wall_s": round(wall, 3),
           "events_per_s": round(len(ev) / wall), "frames_per_s": round((n_frames - 1) / wall, 2),
           "count_ratio_vs_clean": round(len(ev) / max(1, len(mine)), 4),
           "on_fraction": round(float((ev[:, 3] > 0).mean()), 4) if len(ev) else None,
           "on_fraction_clean": round(float((mine["p"] == 1).mean()), 4) if len(mine) else None,
           "pixel_count_corr_vs_clean": round(float(np.corrcoef(cv, co)[0, 1]), 4),
           "pixel_count_corr_clean_self": round(float(np.corrcoef(cs, co)[0, 1]), 4),
           "count_ratio_clean_self": round(len(other) / max(1, len(mine)), 4)}
    if ours is not None:
        res["v2e_wall_vs_stream_clean"] = round(wall / ours["stream_clean"]["wall_s"], 2)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="30 frames, best of 2")
    ap.add_argument("--no-cochlea", action="store_true", help="leave out the cochlea vs lauscher part")
    ap.add_argument("--no-v2e", action="store_true", help="leave out the v2e row")
    args = ap.parse_args()
    video = bench_video(30, 2) if args.quick else bench_video()
    if not args.no_v2e:
        video["v2e"] = bench_v2e(video["frames"], video)
        v = video["v2e"]
        print(f"v2e          {v}", file=sys.stderr)
    for name in ("plain", "stream_clean", "stream_noisy"):
        v = video[name]
        print(f"{name:13s} {v['events']:9d} events  {v['wall_s']:.3f} s  "
              f"{v['events_per_s'] / 1e6:.2f} Mev/s  {v['frames_per_s']:.0f} frames/s")
    line = {"bench": "sim", "video": video}
    if not args.no_cochlea:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from sim_cochlea import bench_cochlea  # lauscher runs once per input, cached (minutes the first time)

        coch = bench_cochlea(quick=args.quick, run_lauscher=not args.quick)
        coch.pop("inputs", None)
        line.update(coch)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
