"""Small-scale evidence for the deep architectures (spike.archs): every kind trains with BPTT and SLTT, plus
the Max-Former paper's central ablation in miniature (Avg-Pool vs Max-Pool token mixing, IF vs LIF).

Each run is ``spike train``'s own path (:func:`spike.train.recipe.train_from_config`) on a config built
from ``configs/quickstart.toml`` (the event digits) or ``configs/nmnist_small.toml`` (the real N-MNIST
subset) with ``--set``-style overrides; the number reported is the test accuracy of the
validation-selected epoch (``select = "val_accuracy"``, 10 % of the training set held out), mean and
sample std (ddof = 1) over the seeds. The networks are tiny (about 20-30 k parameters, 4 time steps, a
few epochs): a smoke test that they learn, not a reproduction of any paper.

    nice -n 5 python bench/archs.py                      # digits: every row; then N-MNIST BPTT rows
    nice -n 5 python bench/archs.py --datasets digits --epochs 4 --seeds 0 1 2
    nice -n 5 python bench/archs.py --datasets nmnist_small --nmnist-methods sltt   # N-MNIST SLTT rows

Progress goes to stderr (one line per run, then a Markdown table); the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from spike.core.config import load_config  # noqa: E402
from spike.data import builders  # noqa: E402
from spike.train.recipe import train_from_config  # noqa: E402

CONFIGS = {"digits": ROOT / "configs" / "quickstart.toml", "nmnist_small": ROOT / "configs" / "nmnist_small.toml"}
NMNIST_ROOTS = (ROOT.parent / "shared" / "data" / "slayerPytorch" / "NMNISTsmall",
                Path("/work/shared/data/slayerPytorch/NMNISTsmall"))

#: tiny versions of each kind for 34 x 34 x 2 event frames (strided stems: 34 -> 9 before the first stage).
ARCHS = {
    "sew_resnet": {"layers": [1, 1, 1], "width": 8, "connect": "add", "stem": "imagenet"},
    "spiking_resnet": {"layers": [1, 1, 1], "width": 8, "stem": "imagenet"},
    "max_resnet": {"layers": [1, 1, 1], "width": 4, "stem": "imagenet"},
    "spikformer": {"dim": 32, "depth": 1, "heads": 2, "mlp_ratio": 2, "pools": 4},
    "max_former": {"dim": 32, "depths": [1, 1, 1], "mixers": ["identity", "dwc3", "ssa"], "heads": 2,
                   "mlp_ratio": 2, "stem": "imagenet"},
}


def _pool_former(pool: str) -> dict:
    """Max-Former with the same pool token mixer in every stage (the paper's Avg-Pool vs Max-Pool knob)."""
    return {**ARCHS["max_former"], "mixers": [pool, pool, pool]}


def rows(datasets: list[str], nmnist_methods: tuple[str, ...] = ("bptt",)) -> list[dict]:
    """The runs: (dataset, kind, arch options, neuron, method), grouped into table rows."""
    out = []
    for ds in datasets:
        methods = ("bptt", "sltt") if ds == "digits" else tuple(nmnist_methods)
        for kind, arch in ARCHS.items():
            for method in methods:
                out.append(dict(dataset=ds, group="kinds", kind=kind, arch=arch, neuron="lif", method=method))
        if ds != "digits":
            continue
        for pool in ("avgpool", "maxpool"):
            out.append(dict(dataset=ds, group="pool ablation", kind="max_former", arch=_pool_former(pool),
                            neuron="lif", method="bptt", mixer=pool))
        for kind in ("max_former", "sew_resnet"):
            out.append(dict(dataset=ds, group="IF vs LIF", kind=kind, arch=ARCHS[kind], neuron="if", method="bptt"))
    return out


def overrides(row: dict, seed: int, epochs: int, time_bins: int, out_dir: str) -> dict:
    """``--set``-style overrides turning the dataset's config into this row's run."""
    o = {
        "run.name": f"{row['kind']}_{row['method']}_{row['neuron']}_{seed}", "run.seed": seed,
        "run.out_dir": out_dir, "run.progress": False, "run.plots": False,
        "data.n_time_bins": time_bins, "data.batch_size": 64, "data.eval_batch_size": 256,
        "data.val_fraction": 0.1,
        "model.kind": row["kind"], "model.arch": dict(row["arch"]), "model.neuron": row["neuron"],
        # the papers' SpikingJelly neuron (the recipes' settings): tau 2, Euler, hard reset to 0
        "model.tau": 2.0, "model.dt": 1.0, "model.discretization": "euler", "model.reset": "to_value",
        "model.v_reset": 0.0, "model.detach_reset": True, "model.surrogate": "atan", "model.readout": "linear",
        "model.dropout": 0.0,
        "train.method": row["method"], "train.epochs": epochs, "train.lr": 2e-3, "train.optimizer": "adam",
        "train.scheduler": "cosine", "train.loss": "mean_membrane", "train.select": "val_accuracy",
    }
    if row["method"] == "sltt":  # all steps in one chunk: BatchNorm over the same T x B as BPTT, same gradient
        o["train.sltt_chunk"] = time_bins
    if row["dataset"] == "nmnist_small":
        root = next((p for p in NMNIST_ROOTS if p.is_dir()), None)
        o["data.root"] = str(root)
    return o


def _memoize_digits() -> None:
    """Build the digits events once per process (the builder is seed-independent: ``seed=0`` inside)."""
    inner = builders.DATASETS["digits"]
    cache: dict[str, object] = {}

    def digits(cfg, seed):
        key = repr(cfg)
        if key not in cache:
            cache[key] = inner(cfg, seed)
        return cache[key]

    builders.DATASETS["digits"] = digits


def label(row: dict) -> str:
    extra = f", mixers={row['mixer']}" if row.get("mixer") else ""
    return f"{row['kind']}{extra}, {row['neuron'].upper()}, {row['method'].upper()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["digits", "nmnist_small"], choices=sorted(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--time-bins", type=int, default=4)
    p.add_argument("--nmnist-methods", nargs="+", default=["bptt"], choices=["bptt", "sltt"],
                   help="training methods of the N-MNIST rows (the digits rows run both)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on shared cores)")
    p.add_argument("--budget-s", type=float, default=1500.0, help="skip the remaining rows after this much wall time")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    _memoize_digits()
    datasets = [d for d in args.datasets if d != "nmnist_small" or any(r.is_dir() for r in NMNIST_ROOTS)]
    skipped = [d for d in args.datasets if d not in datasets]
    if skipped:
        print(f"archs: {skipped} not found under {[str(r) for r in NMNIST_ROOTS]}; skipped", file=sys.stderr)
    t0 = time.perf_counter()
    results, not_run = [], []
    with tempfile.TemporaryDirectory(prefix="spike_bench_archs_") as tmp:
        for row in rows(datasets, tuple(args.nmnist_methods)):
            if time.perf_counter() - t0 > args.budget_s:
                not_run.append(f"{row['dataset']}: {label(row)}")
                continue
            accs, walls, params = [], [], None
            for seed in args.seeds:
                cfg = load_config(CONFIGS[row["dataset"]],
                                  overrides(row, seed, args.epochs, args.time_bins, tmp))
                m = train_from_config(cfg, device="cpu")
                accs.append(float(m["test_accuracy"]))
                walls.append(float(m["wall_time_s"]))
                if params is None:
                    ckpt = torch.load(m["selected_checkpoint"], map_location="cpu", weights_only=False)
                    params = sum(v.numel() for k, v in ckpt["model"].items()
                                 if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
                print(f"archs: {row['dataset']:12s} {label(row):45s} seed {seed}: test {accs[-1]:.3f} "
                      f"(val {m.get('best_val_accuracy', float('nan')):.3f} @ epoch {m.get('selected_epoch')}) "
                      f"{walls[-1]:.1f} s  [{time.perf_counter() - t0:.0f} s total]", file=sys.stderr, flush=True)
            results.append(dict(dataset=row["dataset"], group=row["group"], kind=row["kind"],
                                method=row["method"], neuron=row["neuron"], mixer=row.get("mixer"),
                                arch=row["arch"], params=params, test_acc=accs,
                                mean=round(statistics.mean(accs), 4),
                                std=round(statistics.stdev(accs), 4) if len(accs) > 1 else 0.0,
                                wall_s_per_run=round(statistics.mean(walls), 1)))
    print("\n| data | group | network | params | test accuracy (mean ± std) |\n|---|---|---|---|---|",
          file=sys.stderr)
    for r in results:
        print(f"| {r['dataset']} | {r['group']} | {label(r)} | {r['params']:,} | "
              f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f} % |", file=sys.stderr)
    print(json.dumps({"bench": "archs", "seeds": args.seeds, "epochs": args.epochs, "time_bins": args.time_bins,
                      "threads": args.threads, "total_wall_s": round(time.perf_counter() - t0, 1),
                      "not_run": not_run, "rows": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
