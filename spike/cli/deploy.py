"""``spike export`` and ``spike stream``: the command-line side of :mod:`spike.inference.deploy`.

* ``spike export CHECKPOINT OUT.npz``: the event-driven network of a checkpoint as an ``.npz``
  (:func:`spike.inference.export.save_event_network`) with the binning the model was trained on.
  ``spike export CHECKPOINT OUT.nir``: the model as a NIR graph (:func:`spike.nir.to_nir`, at the
  config's ``[model] dt``; ``spike import`` reads it back).
* ``spike stream CHECKPOINT_OR_NPZ RECORDING [--anytime CUTOFF.json] [--window-ms W] [--realtime]``:
  every file :func:`spike.io.read_events` reads (a directory: each recording in it, run as one batch
  in parallel over samples unless windows or ``--realtime`` ask for streaming), binned exactly as the
  training data, reported per window and per file (prediction, steps run or the stop step, synaptic
  operations, energy; with ``--realtime`` the windows are paced by their timestamps and the latency
  of each is reported). The last stdout line is one JSON object.
"""

from __future__ import annotations

import sys
from pathlib import Path

from spike.inference.deploy import (Binning, bin_recording, export_checkpoint, load_deployable, run_recordings,
                                    stream_recording, window_bins_for)

__all__ = ["add_parsers", "cmd_export", "cmd_stream"]


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
    p = sub.add_parser("export", help="write a checkpoint's event-driven network as an .npz, or the model as .nir")
    p.add_argument("checkpoint")
    p.add_argument("out", metavar="OUT.npz|OUT.nir")
    p = sub.add_parser("stream", help="event-driven inference on recordings (a file or a directory)")
    p.add_argument("model", metavar="CHECKPOINT_OR_NPZ")
    p.add_argument("recording")
    p.add_argument("--anytime", default=None, metavar="CUTOFF.json",
                   help="stop early with this cutoff (from spike eval --anytime: cutoff.json in the run folder)")
    p.add_argument("--window-ms", type=float, default=None,
                   help="feed the stream in windows of W ms (default: the whole recording at once)")
    p.add_argument("--realtime", action="store_true",
                   help="pace the windows by the recording's timestamps (default window: one bin) and report the "
                        "latency of each")
    p.add_argument("--profile", default="cmos45_fp32", help="energy profile (spike.energy.PROFILES)")


def cmd_export(args) -> dict:
    from spike.inference.export import save_event_network

    out = Path(args.out)
    if out.suffix == ".nir":
        return _export_nir(args.checkpoint, out)
    if out.suffix != ".npz":
        raise ValueError(f"{out}: the output must end in .npz (event network) or .nir (NIR graph)")
    net, meta = export_checkpoint(args.checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_event_network(out, net, meta)
    return {"npz": str(out), "layers": [f"{type(layer).__name__} {layer.name}" for layer in net.layers],
            "binning": meta["binning"], "fingerprint": meta["fingerprint"]}


def _export_nir(checkpoint, out: Path) -> dict:
    """``spike export CHECKPOINT OUT.nir``: the checkpoint's model as a NIR graph, written atomically."""
    import os

    import nir

    from spike.inference.deploy import load_checkpoint_model
    from spike.nir import to_nir

    p = Path(checkpoint)
    p = p / "last.pt" if p.is_dir() else p
    model, cfg, dmeta, fp = load_checkpoint_model(p)
    graph = to_nir(model, float(cfg.model.dt), input_shape=tuple(dmeta["input_shape"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        nir.write(str(tmp), graph)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"nir": str(out), "dt": float(cfg.model.dt), "nodes": list(graph.nodes), "fingerprint": fp,
            "input_shape": list(dmeta["input_shape"]), "n_classes": int(dmeta["n_classes"])}


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
    window_bins = window_bins_for(binning, args.window_ms, args.realtime)
    files = _recordings(Path(args.recording))
    recs = []
    for f in files:
        ev, sensor = read_events(f)
        recs.append((f, bin_recording(ev, sensor, binning, name=str(f))))
    results = []
    if window_bins is None and len(recs) > 1:  # a batch: in parallel over samples
        for (f, _), r in zip(recs, run_recordings(net, meta, [fr for _, fr in recs], cutoff=cutoff,
                                                   profile=args.profile)):
            results.append({"file": str(f), **r})
    else:
        for f, frames in recs:
            def show(w, f=f):
                lat = f" latency {w['latency_ms']:.3f} ms" if "latency_ms" in w else ""
                print(f"{f.name} window {w['window']} bins {w['bins'][0]}-{w['bins'][1]}: prediction "
                      f"{w['prediction']} steps {w['steps']}{' (stopped)' if w['stopped'] else ''} synops "
                      f"{w['synops']} energy {w['energy_uj']:.4g} uJ{lat}", file=sys.stderr)

            r = stream_recording(net, meta, frames, cutoff=cutoff, window_bins=window_bins, profile=args.profile,
                                 on_window=show, realtime=args.realtime)
            results.append({"file": str(f), **r})
    n = len(results)
    return {"recordings": results, "n": n, "profile": args.profile, "anytime": args.anytime,
            "mean_steps": sum(r["steps"] for r in results) / n,
            "mean_synops": sum(r["synops"] for r in results) / n,
            "mean_energy_uj": sum(r["energy_uj"] for r in results) / n, "model": str(args.model),
            "realtime": bool(args.realtime)}
