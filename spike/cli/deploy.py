"""``spike export`` and ``spike stream``: from a trained checkpoint to predictions on recordings.

* ``spike export CHECKPOINT OUT.npz``: the event-driven network (:mod:`spike.events.network`) of a
  checkpoint as an ``.npz`` (:func:`spike.inference.export.save_event_network`) with the binning the
  model was trained on (:class:`Binning`), read back by :func:`spike.inference.export.load_event_network`.
* ``spike stream CHECKPOINT_OR_NPZ RECORDING [--anytime CUTOFF.json] [--window-ms W]``: every file
  :func:`spike.io.read_events` reads (a directory: each recording in it) is binned exactly as the
  training data (the data set's own binning function, :func:`bin_recording`), fed window by window to
  an :class:`~spike.events.network.EventStream`, and reported per window and per file: prediction,
  steps run (the stop step with ``--anytime``), synaptic operations and their energy
  (:mod:`spike.energy` profile, one accumulate per synaptic operation).

Binning is that of the whole recording (N-MNIST-style binning clips late events into the last bin,
so a bin is final only when the recording is); the windows then deliver its bins in time order, as a
live sensor would. ``--realtime`` (pacing the windows by the wall clock) is not implemented.

Example:
    >>> from spike.cli.deploy import load_deployable, bin_recording, stream_recording
    >>> net, meta = load_deployable("runs/nmnist_small/last.pt")          # or "model.npz"
    >>> ev, sensor = spike.io.read_events("sample.bin")
    >>> r = stream_recording(net, meta, bin_recording(ev, sensor, Binning.from_dict(meta["binning"])))
    >>> r["prediction"], r["steps"], r["synops"], r["energy_uj"]
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["Binning", "binning_of", "bin_recording", "load_deployable", "stream_recording", "add_parsers",
           "cmd_export", "cmd_stream"]


@dataclass(frozen=True)
class Binning:
    """How a model's training data turned events into ``[T, P, H, W]`` counts.

    ``sensor_size`` is the recording's sensor ``(W, H, P)``; ``input_shape`` one model step
    ``(P, H', W')`` (``size_hw = (H', W')`` when the data set downsamples); ``duration_us`` the binned
    span (``None``: the recording's own span); ``dt_us`` one bin (``None`` if it depends on the span).
    """

    dataset: str
    n_time_bins: int
    sensor_size: tuple[int, int, int]
    input_shape: tuple[int, ...]
    duration_us: int | None = None
    size_hw: tuple[int, int] | None = None
    dt_us: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Binning":
        t = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**t)


_TONIC_VISION = ("nmnist", "dvs_gesture", "cifar10_dvs", "ncaltech101")


def binning_of(cfg, data_meta: dict) -> Binning:
    """The :class:`Binning` of a run's ``[data]`` config (and its checkpoint's ``data`` record).

    Raises:
        ValueError: a data set whose binning of raw recordings is not known here.
    """
    name, t = cfg.data.name, int(cfg.data.n_time_bins)
    shape = tuple(int(s) for s in data_meta["input_shape"])
    if name == "nmnist_small":
        from spike.data import nmnist_small as nm

        dur = int(cfg.data.options.get("duration_us", nm.DURATION_US))
        return Binning(name, t, tuple(nm.SENSOR_SIZE), shape, dur, None, dur / t)
    if name == "digits":
        from spike.sim.digits import DURATION_US

        p, h, w = shape
        return Binning(name, t, (w, h, p), shape, int(DURATION_US), None, DURATION_US / t)
    if name in _TONIC_VISION:
        from spike.data.datasets import _DEFAULT_SIZE, SPECS, _size

        native = tuple(SPECS[name].sensor_size)
        size = cfg.data.options.get("size")
        size_hw = _size(size if size is not None else _DEFAULT_SIZE[name], native, name)
        dur = cfg.data.options.get("duration_us")
        dur = None if dur is None else int(dur)
        return Binning(name, t, native, shape, dur, size_hw, None if dur is None else dur / t)
    raise ValueError(f"data set {name!r}: binning raw recordings is not supported (supported: nmnist_small, "
                     f"digits, {', '.join(_TONIC_VISION)})")


def bin_recording(events: np.ndarray, sensor_size: tuple[int, int, int], binning: Binning,
                  name: str = "recording") -> np.ndarray:
    """Counts ``[T, *input_shape]`` (float32) of one recording, with the data set's own binning code.

    Raises:
        ValueError: the recording's sensor does not match the model's (naming ``name``).
    """
    want = tuple(binning.sensor_size)
    got = tuple(int(s) for s in sensor_size)
    inferred = len(events) and got == (int(events["x"].max()) + 1, int(events["y"].max()) + 1, 2)
    fits = all(g <= w for g, w in zip(got, want))
    if got != want and not (inferred and fits):  # an inferred size is only a lower bound of the sensor
        raise ValueError(f"{name}: sensor (W, H, P) = {got} does not match the model's input sensor {want} "
                         f"(data set {binning.dataset!r})")
    t = binning.n_time_bins
    if binning.dataset == "nmnist_small":
        from spike.data import nmnist_small as nm

        frames = nm.bin_events([events], t, binning.duration_us)[0]  # [T, 2, 34, 34]
    elif binning.dataset == "digits":
        from spike.sim.digits import _bin_fixed

        frames = _bin_fixed(events, want, t, binning.duration_us)  # [T, 2, H, W]
    else:
        from spike.data.datasets import bin_sample

        frames = bin_sample(events, want, binning.size_hw, t, binning.duration_us, name=name)  # [T, P, H', W']
    frames = np.asarray(frames, np.float32)
    if frames.shape[1:] != tuple(binning.input_shape):
        raise ValueError(f"{name}: binned to {frames.shape[1:]} but the model expects {tuple(binning.input_shape)}")
    return frames


# -- model loading ------------------------------------------------------------------------------------
def _load_checkpoint_model(path: Path):
    """``(model, cfg, data_meta, fingerprint)`` from a checkpoint (no data set needed)."""
    from spike.train.recipe import _stored_config, build_model_for
    from spike.train.trainer import CheckpointError, load_checkpoint, load_model_state
    from spike.inference.export import model_fingerprint

    ckpt = load_checkpoint(path)
    cfg = _stored_config(ckpt, path)
    meta = ckpt.get("data")
    if not meta:
        raise CheckpointError(f"{path}: the checkpoint has no 'data' record (input shape, classes); re-save it "
                              f"with a newer spike")
    model = build_model_for(cfg, tuple(meta["input_shape"]), int(meta["n_classes"]))
    load_model_state(model, ckpt["model"], path)
    model.eval()
    return model, cfg, meta, model_fingerprint(model, int(cfg.data.n_time_bins))


def export_checkpoint(path: str | Path):
    """``(EventNetwork, meta)`` of a checkpoint; ``meta`` is what the ``.npz`` stores besides the layers."""
    from spike.inference.export import export_event_network

    p = Path(path)
    if p.is_dir():
        p = p / "last.pt"
    model, cfg, dmeta, fp = _load_checkpoint_model(p)
    binning = binning_of(cfg, dmeta)
    net = export_event_network(model, tuple(dmeta["input_shape"]))
    meta = {"binning": binning.to_dict(), "loss": cfg.train.loss, "n_classes": int(dmeta["n_classes"]),
            "fingerprint": fp, "checkpoint": str(p), "run": cfg.run.name}
    return net, meta


def load_deployable(path: str | Path):
    """``(EventNetwork, meta)`` from a checkpoint (exported now) or an ``.npz`` from ``spike export``."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{p}: no such checkpoint or .npz")
    if p.suffix == ".npz":
        from spike.inference.export import load_event_network

        return load_event_network(p)
    return export_checkpoint(p)


# -- streaming ----------------------------------------------------------------------------------------
def _scores(out: np.ndarray, loss: str) -> np.ndarray:
    """Readout scores of the prefix ``out [t, C]`` as training used them (``[C]``)."""
    import torch

    from spike.inference.anytime import prefix_scores

    if len(out) == 0:
        return np.zeros(out.shape[-1])
    return prefix_scores(torch.from_numpy(np.asarray(out, np.float64))[:, None], loss)[-1, 0].numpy()


def stream_recording(net, meta: dict, frames: np.ndarray, *, cutoff=None, window_bins: int | None = None,
                     profile: str = "cmos45_fp32", on_window=None) -> dict:
    """Feed ``frames [T, *input_shape]`` bin by bin (``window_bins`` per window) to an EventStream.

    Returns:
        ``prediction``, ``steps`` (steps run; ``stop_step = steps - 1``), ``stopped`` (the cutoff fired
        before the end), ``synops``, ``energy_uj`` (``synops * AC energy``), ``windows``.
    """
    from spike.energy import get_profile
    from spike.events.network import EventStream, StopRule

    loss = meta.get("loss", "mean_membrane")
    stop = None
    if cutoff is not None:
        from spike.inference.anytime import cumulative_thresholds

        t_out = frames.shape[0] + net.pad_total
        if cutoff.n_steps != t_out:
            raise ValueError(f"the cutoff has {cutoff.n_steps} thresholds but the model runs {t_out} steps")
        stop = StopRule(cumulative_thresholds(cutoff, loss))
    ac = get_profile(profile).ac_pj
    s = EventStream(net, stop_rule=stop)
    t_n = frames.shape[0]
    flat = frames.reshape(t_n, -1)  # [T, P*H*W]
    tb, ch = np.nonzero(flat)
    cnt = flat[tb, ch]
    w = t_n if not window_bins else max(1, int(window_bins))
    windows = 0
    for start in range(0, t_n, w):
        end = min(start + w, t_n)
        sel = slice(np.searchsorted(tb, start), np.searchsorted(tb, end))
        s.feed(tb[sel], ch[sel], cnt[sel])
        s.advance(end)
        windows += 1
        if on_window is not None and end < t_n:
            syn = int(s.counts()[0].sum())
            on_window({"window": windows - 1, "bins": [start, end], "steps": s.steps_done,
                       "prediction": int(np.argmax(_scores(s.output().reshape(s.steps_done, -1), loss))),
                       "stopped": s.stopped, "synops": syn, "energy_uj": syn * ac * 1e-6})
        if s.stopped:
            break
    res = s.finish(None if s.stopped else t_n)
    out = res.out[:, 0].reshape(res.out.shape[0], -1)  # [T_run, C]
    syn = int(res.synops.sum())
    r = {"prediction": int(np.argmax(_scores(out, loss))), "steps": int(res.steps[0]),
         "stopped": bool(s.stopped), "synops": syn, "energy_uj": syn * ac * 1e-6, "windows": windows,
         "synops_per_layer": dict(zip(res.layers, res.synops[0].tolist()))}
    if on_window is not None:
        on_window({"window": windows - 1, "bins": [min(start, t_n), t_n], **{k: r[k] for k in
                   ("steps", "prediction", "stopped", "synops", "energy_uj")}})
    return r


def _recordings(path: Path) -> list[Path]:
    if path.is_dir():
        from spike.io import detect_format

        files = []
        for f in sorted(path.iterdir()):
            if not f.is_file():
                continue
            try:
                detect_format(f)
            except ValueError:
                continue
            files.append(f)
        if not files:
            raise ValueError(f"{path}: no event recordings in this directory")
        return files
    if not path.exists():
        raise ValueError(f"{path}: no such recording")
    return [path]


# -- CLI ----------------------------------------------------------------------------------------------
def add_parsers(sub) -> None:
    """Register ``export`` and ``stream`` on the ``spike`` sub-parsers."""
    p = sub.add_parser("export", help="write a checkpoint's event-driven network as an .npz")
    p.add_argument("checkpoint")
    p.add_argument("out", metavar="OUT.npz")
    p = sub.add_parser("stream", help="event-driven inference on recordings (a file or a directory)")
    p.add_argument("model", metavar="CHECKPOINT_OR_NPZ")
    p.add_argument("recording")
    p.add_argument("--anytime", default=None, metavar="CUTOFF.json",
                   help="stop early with this cutoff (from spike eval --anytime: cutoff.json in the run folder)")
    p.add_argument("--window-ms", type=float, default=None,
                   help="feed the stream in windows of W ms (default: the whole recording at once)")
    p.add_argument("--profile", default="cmos45_fp32", help="energy profile (spike.energy.PROFILES)")


def cmd_export(args) -> dict:
    from spike.inference.export import save_event_network

    out = Path(args.out)
    if out.suffix != ".npz":
        raise ValueError(f"{out}: the output must end in .npz")
    net, meta = export_checkpoint(args.checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_event_network(out, net, meta)
    return {"npz": str(out), "layers": [f"{type(layer).__name__} {layer.name}" for layer in net.layers],
            "binning": meta["binning"], "fingerprint": meta["fingerprint"]}


def cmd_stream(args) -> dict:
    from spike.energy import get_profile
    from spike.inference.anytime import Cutoff
    from spike.io import read_events

    get_profile(args.profile)
    net, meta = load_deployable(args.model)
    if "binning" not in meta:
        raise ValueError(f"{args.model}: no binning recorded; export it with spike export")
    binning = Binning.from_dict(meta["binning"])
    cutoff = Cutoff.load(args.anytime, meta.get("fingerprint")) if args.anytime else None
    window_bins = None
    if args.window_ms is not None:
        if not args.window_ms > 0 or not math.isfinite(args.window_ms):
            raise ValueError(f"--window-ms must be a positive number, got {args.window_ms}")
        if binning.dt_us is None:
            raise ValueError(f"data set {binning.dataset!r} bins over each recording's own span: --window-ms needs "
                             f"[data.options] duration_us")
        window_bins = max(1, int(args.window_ms * 1000 // binning.dt_us))
    files = _recordings(Path(args.recording))
    results = []
    for f in files:
        ev, sensor = read_events(f)
        frames = bin_recording(ev, sensor, binning, name=str(f))

        def show(w, f=f):
            print(f"{f.name} window {w['window']} bins {w['bins'][0]}-{w['bins'][1]}: prediction {w['prediction']} "
                  f"steps {w['steps']}{' (stopped)' if w['stopped'] else ''} synops {w['synops']} "
                  f"energy {w['energy_uj']:.4g} uJ", file=sys.stderr)

        r = stream_recording(net, meta, frames, cutoff=cutoff, window_bins=window_bins, profile=args.profile,
                             on_window=show)
        results.append({"file": str(f), **r})
    n = len(results)
    return {"recordings": results, "n": n, "profile": args.profile, "anytime": args.anytime,
            "mean_steps": sum(r["steps"] for r in results) / n,
            "mean_synops": sum(r["synops"] for r in results) / n,
            "mean_energy_uj": sum(r["energy_uj"] for r in results) / n, "model": str(args.model)}
