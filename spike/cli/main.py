"""``spike`` console script.

* ``spike train CONFIG [--device D] [--resume] [--set section.key=value ...]``
* ``spike eval CHECKPOINT [--device D]``
* ``spike info``

``train`` and ``eval`` print their final metrics as one JSON object on the last line of output.
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
    out = {}
    for item in pairs or []:
        key, sep, val = item.partition("=")
        if not sep:
            raise SystemExit(f"spike: --set expects section.key=value, got {item!r}")
        out[key.strip()] = _parse_value(val.strip())
    return out


def cmd_train(args) -> dict:
    from spike.core.config import load_config
    from spike.train.recipe import train_from_config

    cfg = load_config(args.config, _overrides(args.set))
    return train_from_config(cfg, device=args.device, resume=args.resume, out_dir=args.out)


def cmd_eval(args) -> dict:
    from spike.train.recipe import evaluate_checkpoint

    return evaluate_checkpoint(args.checkpoint, device=args.device)


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
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last.pt")
    p.add_argument("--out", default=None, help="run folder (default: [run] out_dir / name)")
    p.add_argument("--set", nargs="*", metavar="SECTION.KEY=VALUE", help="override config values")
    p = sub.add_parser("eval", help="evaluate a checkpoint on its test split")
    p.add_argument("checkpoint")
    p.add_argument("--device", default=None)
    sub.add_parser("info", help="versions, devices and backends")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")

    from spike.core.config import ConfigError
    from spike.core.registry import BackendError
    from spike.train.trainer import CheckpointError

    try:
        if args.command == "train":
            result = cmd_train(args)
        elif args.command == "eval":
            result = cmd_eval(args)
        else:
            result = info()
            for k, v in result.items():
                print(f"{k}: {v}")
    except (ConfigError, CheckpointError, BackendError, ValueError) as e:
        print(f"spike {args.command}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
