"""From a trained checkpoint to predictions on recordings: the library side of ``spike export``/``stream``.

* :func:`export_checkpoint` / :func:`load_deployable`: a checkpoint's event-driven network
  (:mod:`spike.events.network`) with the binning its training data used (:class:`Binning`), or the
  same read back from the ``.npz`` :func:`spike.inference.export.save_event_network` writes.
* :func:`bin_recording`: a recording binned exactly as the training data (the data set's own binning
  code, so the counts are those the model was trained and evaluated on).
* :func:`stream_recording`: one recording fed window by window to an
  :class:`~spike.events.network.EventStream` (optionally paced by the wall clock: ``realtime``), with
  the prediction, the step it stopped at, synaptic operations and energy;
  :func:`run_recordings`: many recordings as one batch, in parallel over samples
  (:func:`spike.events.network.run`; identical results, tested).

Binning is that of the whole recording (N-MNIST-style binning clips late events into the last bin,
so a bin is final only when the recording is); windows then deliver its bins in time order, as a live
sensor would. Energy is the synaptic energy of the executed steps: an operation triggered by an input
value of +-1 (a spike, a bin with one event) is an accumulate, one triggered by any other value (a bin
with several events, an average-pooled value) a multiply-accumulate -- the per-element rule of
:class:`spike.energy.EnergyMeter`, whose AC and MAC counts on the dense path equal these (tested).
``neuron_updates`` counts the updates the event path performs (fewer than a dense model's
neurons x steps, which ``spike energy`` counts).

Example:
    >>> from spike.inference.deploy import Binning, bin_recording, load_deployable, stream_recording
    >>> net, meta = load_deployable("runs/nmnist_small/last.pt")          # or "model.npz"
    >>> ev, sensor = spike.io.read_events("sample.bin")
    >>> r = stream_recording(net, meta, bin_recording(ev, sensor, Binning.from_dict(meta["binning"])))
    >>> r["prediction"], r["steps"], r["synops"], r["energy_uj"]
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["Binning", "binning_of", "bin_recording", "export_checkpoint", "load_checkpoint_model", "load_deployable",
           "stream_recording",
           "run_recordings", "window_bins_for"]


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
    def for_sensor(cls, sensor_size: tuple[int, int, int], n_time_bins: int, duration_us: int,
                   size_hw: tuple[int, int] | None = None) -> "Binning":
        """A camera's own binning (no data set): ``n_time_bins`` bins of ``duration_us / n_time_bins``
        from each recording's first event, pixels downsampled to ``size_hw = (H', W')`` (default: none)."""
        w, h, p = (int(v) for v in sensor_size)
        hw = (h, w) if size_hw is None else (int(size_hw[0]), int(size_hw[1]))
        if not (n_time_bins >= 1 and duration_us > 0 and 1 <= hw[0] <= h and 1 <= hw[1] <= w):
            raise ValueError(f"Binning.for_sensor: need n_time_bins >= 1, duration_us > 0 and 1 <= size_hw <= "
                             f"(H, W) = ({h}, {w}); got {n_time_bins}, {duration_us}, {hw}")
        return cls("sensor", int(n_time_bins), (w, h, p), (p, *hw), int(duration_us), hw,
                   duration_us / n_time_bins)

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
        from spike.data.datasets import SPECS, frame_size_hw

        native = tuple(SPECS[name].sensor_size)
        size_hw = frame_size_hw(name, cfg.data.options.get("size"))
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
        from spike.sim.digits import bin_fixed

        frames = bin_fixed(events, want, t, binning.duration_us)  # [T, 2, H, W]
    else:
        from spike.data.datasets import bin_sample

        frames = bin_sample(events, want, binning.size_hw, t, binning.duration_us, name=name)  # [T, P, H', W']
    frames = np.asarray(frames, np.float32)
    if frames.shape[1:] != tuple(binning.input_shape):
        raise ValueError(f"{name}: binned to {frames.shape[1:]} but the model expects {tuple(binning.input_shape)}")
    return frames


# -- model loading ------------------------------------------------------------------------------------
def load_checkpoint_model(path: Path):
    """``(model, cfg, data_meta, fingerprint)`` from a checkpoint (no data set needed)."""
    from spike.train.recipe import build_model_for, stored_config
    from spike.train.trainer import CheckpointError, load_checkpoint, load_model_state
    from spike.inference.export import model_fingerprint

    ckpt = load_checkpoint(path)
    cfg = stored_config(ckpt, path)
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
    model, cfg, dmeta, fp = load_checkpoint_model(p)
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


def _stop_rule(net, meta: dict, cutoff, t_in: int):
    if cutoff is None:
        return None
    from spike.events.network import StopRule
    from spike.inference.anytime import cumulative_thresholds

    t_out = t_in + net.pad_total
    if cutoff.n_steps != t_out:
        raise ValueError(f"the cutoff has {cutoff.n_steps} thresholds but the model runs {t_out} steps")
    return StopRule(cumulative_thresholds(cutoff, meta.get("loss", "mean_membrane")))


def _sparse(frames: np.ndarray):
    """``(t_bin, channel, count)`` of ``frames [T, *input_shape]``, in (t, channel) order."""
    flat = frames.reshape(frames.shape[0], -1)  # [T, P*H*W]
    tb, ch = np.nonzero(flat)
    return tb, ch, flat[tb, ch]


def _energy_uj(synops: int, mac: int, prof) -> float:
    """Synaptic energy: an operation triggered by a +-1 input is an accumulate, any other a MAC."""
    return ((synops - mac) * prof.ac_pj + mac * prof.mac_pj) * 1e-6


def _counts(res, i: int, prof) -> dict:
    """The operation counts and energy of sample ``i`` of a :class:`RunResult`."""
    syn, mac = int(res.synops[i].sum()), int(res.mac_synops[i].sum())
    return {"synops": syn, "ac": syn - mac, "mac": mac, "neuron_updates": int(res.updates[i].sum()),
            "energy_uj": _energy_uj(syn, mac, prof),
            "synops_per_layer": dict(zip(res.layers, res.synops[i].tolist())),
            "mac_per_layer": dict(zip(res.layers, res.mac_synops[i].tolist()))}


def window_bins_for(binning: "Binning", window_ms: float | None, realtime: bool = False) -> int | None:
    """Bins per window of ``window_ms`` (``None``: the whole recording; ``realtime`` alone: one bin).

    Raises:
        ValueError: a non-positive window, or a data set whose bins have no fixed duration.
    """
    import math

    if window_ms is None and not realtime:
        return None
    if binning.dt_us is None:
        raise ValueError(f"data set {binning.dataset!r} bins over each recording's own span, so a bin has no fixed "
                         f"duration: --window-ms / --realtime need [data.options] duration_us")
    if window_ms is None:
        return 1
    if not (isinstance(window_ms, (int, float)) and math.isfinite(window_ms) and window_ms > 0):
        raise ValueError(f"--window-ms must be a positive number, got {window_ms}")
    return max(1, int(window_ms * 1000 // binning.dt_us))


def stream_recording(net, meta: dict, frames: np.ndarray, *, cutoff=None, window_bins: int | None = None,
                     profile: str = "cmos45_fp32", on_window: Callable[[dict], None] | None = None,
                     realtime: bool = False, clock: Callable[[], float] = time.perf_counter,
                     sleep: Callable[[float], None] = time.sleep) -> dict:
    """Feed ``frames [T, *input_shape]`` to an EventStream, ``window_bins`` bins per window.

    With ``realtime`` the windows are paced by ``clock``: window ``[a, b)`` is processed once the wall
    time since the start reaches its end ``b * dt`` (``meta["binning"]["dt_us"]``), as a camera would
    deliver it, and its *latency* is the time from then until its result is ready.

    Returns:
        ``prediction``, ``steps`` (steps run; ``stop_step = steps - 1``), ``stopped`` (the cutoff fired
        before the end), ``synops`` (= ``ac + mac``), ``ac``, ``mac``, ``neuron_updates``, ``energy_uj``
        (``ac * E_AC + mac * E_MAC``), ``windows``, ``synops_per_layer``, ``mac_per_layer``; with
        ``realtime`` also ``latency_ms`` (mean, p50, max over windows) and
        ``kept_up`` (every window finished before the next one was due).
    """
    from spike.energy import get_profile
    from spike.events.network import EventStream

    loss = meta.get("loss", "mean_membrane")
    t_n = frames.shape[0]
    stop = _stop_rule(net, meta, cutoff, t_n)
    prof = get_profile(profile)
    dt_s = None
    if realtime:
        dt_us = (meta.get("binning") or {}).get("dt_us")
        if not dt_us:
            raise ValueError("realtime streaming needs a binning with a fixed bin duration (dt_us)")
        dt_s = float(dt_us) * 1e-6
        window_bins = window_bins or 1
    if realtime:  # compile (or load) the kernels before the clock starts: a camera does not wait for a JIT
        warm = EventStream(net, stop_rule=stop)
        warm.feed(np.zeros(1, np.int64), np.zeros(1, np.int64), np.ones(1, frames.dtype))
        warm.advance(1)
        warm.counts()
        _scores(warm.output().reshape(warm.steps_done, -1), loss)
    s = EventStream(net, stop_rule=stop)
    tb, ch, cnt = _sparse(frames)
    w = t_n if not window_bins else max(1, int(window_bins))
    windows, latencies, start = 0, [], 0
    t0 = clock()
    for start in range(0, t_n, w):
        end = min(start + w, t_n)
        due = None
        if realtime:
            due = t0 + end * dt_s
            wait = due - clock()
            if wait > 0:
                sleep(wait)
        lo, hi = np.searchsorted(tb, start), np.searchsorted(tb, end)
        s.feed(tb[lo:hi], ch[lo:hi], cnt[lo:hi])
        s.advance(end)
        windows += 1
        info = None
        if on_window is not None or realtime:
            syn, mac = int(s.counts()[0].sum()), int(s.mac_synops().sum())
            pred = int(np.argmax(_scores(s.output().reshape(s.steps_done, -1), loss))) if s.steps_done else -1
            info = {"window": windows - 1, "bins": [start, end], "steps": s.steps_done, "prediction": pred,
                    "stopped": s.stopped, "synops": syn, "energy_uj": _energy_uj(syn, mac, prof)}
            if realtime:
                latencies.append(max(0.0, clock() - due))
                info["latency_ms"] = latencies[-1] * 1e3
        if on_window is not None and (end < t_n or s.stopped):
            on_window(info)
        if s.stopped:
            break
    res = s.finish(None if s.stopped else t_n)
    out = res.out[:, 0].reshape(res.out.shape[0], -1)  # [T_run, C]
    r = {"prediction": int(np.argmax(_scores(out, loss))), "steps": int(res.steps[0]),
         "stopped": int(res.steps[0]) < t_n + net.pad_total, **_counts(res, 0, prof), "windows": windows}
    if on_window is not None and not s.stopped:
        on_window({"window": windows - 1, "bins": [min(start, t_n), t_n], **{k: r[k] for k in
                   ("steps", "prediction", "stopped", "synops", "energy_uj")},
                   **({"latency_ms": latencies[-1] * 1e3} if latencies else {})})
    if realtime:
        lat = np.asarray(latencies) * 1e3
        r["latency_ms"] = {"mean": float(lat.mean()), "p50": float(np.median(lat)), "max": float(lat.max())}
        r["kept_up"] = bool(lat.max() < w * dt_s * 1e3) if len(lat) else True
        r["window_ms"] = w * dt_s * 1e3
    return r


def run_recordings(net, meta: dict, frames: list[np.ndarray], *, cutoff=None,
                   profile: str = "cmos45_fp32") -> list[dict]:
    """Many recordings (each ``[T, *input_shape]``, equal ``T``) as one batch, in parallel over samples.

    Returns the same per-recording records as :func:`stream_recording` without windows (``windows = 1``).
    """
    from spike.energy import get_profile
    from spike.events.network import run

    if not frames:
        return []
    t_n = frames[0].shape[0]
    if any(f.shape != frames[0].shape for f in frames):
        raise ValueError(f"recordings binned to different shapes: {sorted({f.shape for f in frames})}")
    loss = meta.get("loss", "mean_membrane")
    res = run(net, [_sparse(f) for f in frames], t_n, stop_rule=_stop_rule(net, meta, cutoff, t_n))
    prof = get_profile(profile)
    t_total = t_n + net.pad_total
    out = res.out.reshape(t_total, len(frames), -1)  # [T, B, C]
    recs = []
    for i in range(len(frames)):
        k = int(res.steps[i])
        recs.append({"prediction": int(np.argmax(_scores(out[:k, i], loss))), "steps": k,
                     "stopped": k < t_total, **_counts(res, i, prof), "windows": 1})
    return recs
