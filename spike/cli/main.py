"""``spike`` console script.

* ``spike train CONFIG [--device D] [--resume [--force]] [--set section.key=value ...] [--seeds S ...]``
* ``spike eval CHECKPOINT [--device D] [--anytime [--epsilon E] [--sweep E ...]]``
* ``spike energy CONFIG_OR_CHECKPOINT [--profile P] [--memory] [--anytime EPSILON]``
* ``spike export CHECKPOINT OUT.npz`` / ``spike stream CHECKPOINT_OR_NPZ RECORDING [--anytime CUTOFF.json]``
  (:mod:`spike.cli.deploy`)
* ``spike export CHECKPOINT OUT.nir`` / ``spike import MODEL.nir OUT.pt --config CONFIG.toml`` (:mod:`spike.cli.nir`)
* ``spike events info|convert|render|bin ...`` (:mod:`spike.cli.events`)
* ``spike simulate VIDEO_OR_AUDIO OUT [--preset P] [--noise N] [--cochlea]`` (:mod:`spike.cli.simulate`)
* ``spike info``

``train`` and ``eval`` print their final metrics as one JSON object on the last line of output.
A user error (a bad config value, a missing data set or checkpoint, a corrupted checkpoint, a
``--resume`` whose config differs from the stored one) is one line ``spike <command>: error: ...``
on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys

__all__ = ["main"]


def _parse_value(text: str):
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _overrides(pairs: list[str]) -> dict:
    from spike.core.config import ConfigError

    out = {}
    for item in pairs or []:
        key, sep, val = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        out[key.strip()] = _parse_value(val.strip())
    return out


def cmd_train(args) -> dict:
    from spike.core.config import load_config
    from spike.train.recipe import train_from_config

    cfg = load_config(args.config, _overrides(args.set))
    seeds = args.seeds if args.seeds else list(cfg.run.seeds)
    if seeds:  # several runs: mean +- std of the selected models' test accuracy
        from spike.train.recipe import train_seeds

        return train_seeds(cfg, seeds, device=args.device, resume=args.resume, out_dir=args.out, force=args.force)
    return train_from_config(cfg, device=args.device, resume=args.resume, out_dir=args.out, force=args.force)


def cmd_eval(args) -> dict:
    from spike.train.recipe import evaluate_checkpoint

    if getattr(args, "anytime", False):
        from spike.inference.anytime import anytime_from_checkpoint

        result = anytime_from_checkpoint(args.checkpoint, epsilon=args.epsilon, sweep=args.sweep,
                                         calib_fraction=args.calib_fraction, target=args.target,
                                         correction=args.correction, sequential=not args.independent,
                                         device=args.device, out_dir=args.out, measure_wall=not args.no_wall,
                                         max_test=args.max_test, chunk=args.chunk,
                                         wall_repeats=args.wall_repeats)
        print(result.pop("table", ""), file=sys.stderr)
        return result
    return evaluate_checkpoint(args.checkpoint, device=args.device)


def cmd_energy(args) -> dict:
    """Count operations of a trained (or configured) model on its test split and estimate energy."""
    from pathlib import Path

    from torch.utils.data import DataLoader, Subset

    from spike.data.builders import time_first_collate
    from spike.energy import EnergyMeter, get_profile, measure
    from spike.train.recipe import load_for_eval

    profile = get_profile(args.profile)
    run = load_for_eval(args.path, device=args.device, holdout_fraction=args.calib_fraction)
    test = run.data.test
    if args.max_samples is not None:
        test = Subset(test, range(min(args.max_samples, len(test))))
    loader = DataLoader(test, batch_size=run.config.data.eval_batch_size, shuffle=False,
                        collate_fn=time_first_collate)
    extra: dict = {}
    if args.anytime is None:
        report = measure(run.model, loader, run.device)
    else:
        from spike.inference.anytime import anytime_forward, calibrate_cutoff

        if run.val is None:
            raise ValueError("--anytime needs held-out calibration samples: [data] val_fraction > 0 in the run, "
                             "or --calib-fraction > 0")
        calib = DataLoader(run.val, batch_size=run.config.data.eval_batch_size, shuffle=False,
                           collate_fn=time_first_collate)
        cut = calibrate_cutoff(run.model, calib, args.anytime, loss_name=run.config.train.loss,
                               device=run.device)
        correct = n = 0
        with EnergyMeter(run.model) as meter:
            for x, y in loader:
                r = anytime_forward(run.model, x.to(run.device), cut, run.config.train.loss, meter=meter)
                correct += int((r.pred.cpu() == y).sum())
                n += int(y.numel())
        report = meter.report()
        extra = {"anytime_epsilon": args.anytime, "anytime_accuracy": correct / max(n, 1),
                 "calibration_source": run.val_source}
    out = Path(args.out) if args.out else run.run_dir
    out.mkdir(parents=True, exist_ok=True)
    stem = "energy" if args.anytime is None else f"energy_anytime_{args.anytime:g}"
    report.to_json(out / f"{stem}.json", profile=profile, memory=args.memory)
    print(report.format_table(profile, args.memory), file=sys.stderr)
    result = {**report.summary(profile, args.memory), **extra, "weights": run.weights,
              "json": str(out / f"{stem}.json")}
    if not args.no_plot:
        result["plot"] = str(report.plot(out / f"{stem}.png", profile, args.memory, title=run.config.run.name,
                                         epsilon=args.anytime, accuracy=extra.get("anytime_accuracy")))
    return result


def info() -> dict:
    """Versions, devices and backends available on this machine."""
    import importlib

    versions = {"python": platform.python_version()}
    for mod in ("spike", "torch", "numpy", "numba", "tonic", "triton", "snntorch", "spikingjelly", "norse"):
        try:
            versions[mod] = getattr(importlib.import_module(mod), "__version__", "?")
        except Exception as e:  # peers may fail with RuntimeError/OSError, not only ImportError
            versions[mod] = f"unavailable ({type(e).__name__})"
    import torch

    from spike.core.registry import available

    devices = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    return {"versions": versions, "devices": devices, "threads": torch.get_num_threads(),
            "backends": {"lif": available("lif")}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spike", description="Spiking neural networks on event data.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log backend choices and details")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train from a TOML config")
    p.add_argument("config")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: [run] device, 'auto')")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run folder's last.pt (its stored config must match)")
    p.add_argument("--force", action="store_true",
                   help="with --resume: continue although the config differs (both configs are recorded)")
    p.add_argument("--out", default=None, help="run folder (default: [run] out_dir / name)")
    p.add_argument("--set", nargs="*", action="extend", metavar="SECTION.KEY=VALUE",
                   help="override config values (may be repeated)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="SEED",
                   help="train once per seed (run folders seed_<k>) and report mean +- std of the test accuracy "
                        "(default: [run] seeds)")
    p = sub.add_parser("eval", help="evaluate a checkpoint on its test split")
    p.add_argument("checkpoint")
    p.add_argument("--device", default=None)
    p.add_argument("--anytime", action="store_true",
                   help="anytime inference: calibrate per-step cutoffs on held-out data, sweep epsilon")
    p.add_argument("--epsilon", type=float, default=0.01, help="risk of the reported anytime point (default 0.01)")
    p.add_argument("--sweep", type=float, nargs="*", default=[0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2],
                   help="epsilons of the accuracy-vs-steps curve")
    p.add_argument("--calib-fraction", type=float, default=0.2,
                   help="part of the training set used for calibration when the run has no [data] val_fraction")
    p.add_argument("--target", choices=["final", "correct"], default="final",
                   help="calibrate on agreement with the full-length prediction or with the label")
    p.add_argument("--correction", choices=["conformal", "none"], default="conformal",
                   help="finite-sample correction of the calibration (none: plain empirical fraction)")
    p.add_argument("--independent", action="store_true",
                   help="calibrate every step on all samples (AOI-SNN code) instead of those still running")
    p.add_argument("--no-wall", action="store_true", help="skip the step-by-step wall-time runs")
    p.add_argument("--chunk", type=int, default=1, help="time steps per model call in the step-by-step runs")
    p.add_argument("--wall-repeats", type=int, default=1, help="report the best of N timed passes")
    p.add_argument("--max-test", type=int, default=None, help="use only the first N test samples")
    p.add_argument("--out", default=None, help="folder for anytime.json / anytime.png (default: the run folder)")
    p = sub.add_parser("energy", help="count synaptic operations and estimate energy of a checkpoint or config")
    p.add_argument("path", metavar="CONFIG_OR_CHECKPOINT")
    p.add_argument("--device", default=None)
    p.add_argument("--profile", default="cmos45_fp32", help="energy profile (spike.energy.PROFILES)")
    p.add_argument("--memory", action="store_true", help="add SRAM access energy (weight and state reads)")
    p.add_argument("--max-samples", type=int, default=None, help="count on the first N test samples")
    p.add_argument("--anytime", type=float, default=None, metavar="EPSILON",
                   help="count an anytime run (cutoffs calibrated for EPSILON on held-out data)")
    p.add_argument("--calib-fraction", type=float, default=0.2)
    p.add_argument("--out", default=None, help="folder for energy.json / energy.png (default: the run folder)")
    p.add_argument("--no-plot", action="store_true")
    from spike.cli import deploy

    deploy.add_parsers(sub)
    from spike.cli import nir as nir_cli

    nir_cli.add_parsers(sub)
    from spike.cli import events as events_cli

    events_cli.add_parsers(sub)
    from spike.cli import simulate as simulate_cli

    simulate_cli.add_parsers(sub)
    sub.add_parser("info", help="versions, devices and backends")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")

    from spike.core.config import ConfigError
    from spike.core.registry import BackendError
    from spike.data import nmnist_small
    from spike.data.datasets import DatasetNotFound
    from spike.train.trainer import CheckpointError

    user_errors = (ConfigError, CheckpointError, BackendError, DatasetNotFound, nmnist_small.DatasetNotFound,
                   ValueError)

    try:
        if args.command == "train":
            result = cmd_train(args)
        elif args.command == "eval":
            result = cmd_eval(args)
        elif args.command == "energy":
            result = cmd_energy(args)
        elif args.command in ("export", "stream"):
            result = deploy.cmd_export(args) if args.command == "export" else deploy.cmd_stream(args)
        elif args.command == "import":
            result = nir_cli.cmd_import(args)
        elif args.command == "events":
            result = events_cli.cmd_events(args)
        elif args.command == "simulate":
            result = simulate_cli.cmd_simulate(args)
        else:
            result = info()
            for k, v in result.items():
                print(f"{k}: {v}")
    except user_errors as e:
        msg = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())  # always one line
        print(f"spike {args.command}: error: {msg or type(e).__name__}", file=sys.stderr)
        return 2
    # one write of the whole line: under torchrun every rank prints its line into the same pipe, and
    # print's separate write of the newline let two ranks' lines run together
    sys.stdout.write(json.dumps(result, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
