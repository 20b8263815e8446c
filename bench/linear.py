"""Sparse-input Linear (spike.backends.numba_linear) vs torch's dense matmul, forward + backward.

    python bench/linear.py [--quick] [--threads N]

For each layer shape ``rows x in -> out`` (rows = T * B) and input density (binary spikes, drawn at
that rate), one training-style call: ``y = linear(x, W, b)`` then ``y.backward(gy)`` (weight and bias
gradients; the input gradient too where the layer is not the first: a dense matmul either way). The two
paths are timed in alternating rounds (median of ``--reps``), and the result is the ratio
``sparse / matmul``: below 1 the kernel wins. ``Linear(backend="auto")`` takes the kernel where
``numba_linear.prefers`` says so; the table shows, per row, what it picked (``auto``), so a rule that
disagrees with the measurement shows up as an ``auto`` choice on the slower side.

Ends with one JSON line: ``{"bench": "linear", "rows": [...], "auto_took_slower_kernel": k,
"auto_declined_faster_kernel": m, ...}`` (the rule keeps a margin, so it declines some wins).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

try:
    import spike  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from spike.backends import numba_linear as NL
from spike.core.registry import resolve
from spike.synapses import Linear

SHAPES = (  # (rows, in, out, input gradient)
    (6400, 700, 256, False),  # bench/lif.py's MLP, first layer (T=100, B=64)
    (6400, 256, 256, True),  # ... its second layer
    (2000, 2312, 512, False),  # N-MNIST-sized first layer, T=20 x B=100
    (1280, 1024, 256, False),
    (1280, 512, 256, True),
)
DENSITIES = (0.02, 0.05, 0.08, 0.12)


def _time(fns, reps: int) -> list[float]:
    for fn in fns:
        fn()
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return [1e3 * float(np.median(t)) for t in times]


def measure(rows: int, n_in: int, n_out: int, grad_x: bool, density: float, reps: int) -> dict:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(rows, n_in, generator=g) < density).float().requires_grad_(grad_x)
    layer = Linear(n_in, n_out)
    w, b = layer.weight, layer.bias
    gy = torch.randn(rows, n_out, generator=g)

    def dense():
        w.grad = b.grad = x.grad = None
        torch.nn.functional.linear(x, w, b).backward(gy)

    def sparse():
        w.grad = b.grad = x.grad = None
        NL.linear(x, w, b).backward(gy)

    d, s = _time([dense, sparse], reps)
    auto = resolve("linear", "auto", layer, x.detach()).__name__ == "spike.backends.numba_linear"
    return dict(rows=rows, n_in=n_in, n_out=n_out, grad_x=grad_x, density=density, matmul_ms=round(d, 3),
                sparse_ms=round(s, 3), ratio=round(s / d, 3), auto="sparse" if auto else "matmul")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="two shapes, two densities, 3 reps")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--reps", type=int, default=12)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes, dens, reps = (SHAPES[:2], DENSITIES[:2], 3) if args.quick else (SHAPES, DENSITIES, args.reps)
    t0 = time.perf_counter()
    rows = []
    print(f"threads {torch.get_num_threads()}; sparse / matmul time (forward + backward), auto's choice")
    for r, k, o, gx in shapes:
        line = []
        for dn in dens:
            m = measure(r, k, o, gx, dn, reps)
            rows.append(m)
            line.append(f"{dn:4.0%}: {m['matmul_ms']:6.1f} / {m['sparse_ms']:6.1f} ms = {m['ratio']:.2f} ({m['auto']})")
        print(f"{r:5d} x {k:4d} -> {o:3d}{' +gx' if gx else '    '}  " + "  ".join(line), flush=True)
    slower = sum(1 for m in rows if m["auto"] == "sparse" and m["ratio"] >= 1.0)
    missed = sum(1 for m in rows if m["auto"] == "matmul" and m["ratio"] < 1.0)
    print(f"auto took the kernel where it was slower: {slower}; declined it where it was faster: {missed}")
    print(json.dumps({"bench": "linear", "threads": torch.get_num_threads(), "rows": rows,
                      "auto_took_slower_kernel": slower, "auto_declined_faster_kernel": missed,
                      "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
