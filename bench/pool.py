"""Average pooling over tiling windows: spike's numba kernel (spike.backends.numba_pool) vs torch's
``avg_pool2d``, forward and forward + backward, on the shapes of the conv nets in ``bench/lif.py``.

    python bench/pool.py [--quick] [--threads N]

Both paths get the same input (binary spikes at 10 %, as a LIF layer emits) and the same incoming
gradient; the two are timed in alternating rounds (median of ``--reps``) and checked bit-identical
(outputs and input gradients). torch's path is ``nn.functional.avg_pool2d`` with its own autograd;
ours is the backend op ``spike.backends.numba_pool.avg_pool2d`` on the same tensor (what
``AvgPool2d`` calls inside a model, where the input's NaN/Inf check ran once at the model's input; a
bare ``AvgPool2d`` outside a model checks its own input first, a full read).

Ends with one JSON line: ``{"bench": "pool", "rows": [...], "fwd_ratio_max": ..., "fwd_bwd_ratio_max": ...,
"identical": 1}`` (ratios ours / torch, below 1: ours faster).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

try:
    import spike  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch import nn

from spike.backends import numba_pool

sys.path.insert(0, str(Path(__file__).resolve().parent))
from linear import _time  # noqa: E402 - alternating rounds, median ms (the same timing as bench/linear.py)

SHAPES = (  # [T, B, C, H, W], kernel
    ((20, 16, 16, 32, 32), 2),  # bench/lif.py's conv net, after conv 1
    ((20, 16, 32, 16, 16), 2),  # ... after conv 2
    ((16, 16, 2, 128, 128), 4),  # a DVS-Gesture-sized input downsampled 4x
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, few reps (smoke test)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    reps = 3 if args.quick else args.reps
    t0 = time.perf_counter()
    rows, identical = [], True
    print(f"{'shape [T, B, C, H, W]':>26} {'k':>2} {'torch fwd':>10} {'ours fwd':>9} {'ratio':>6} "
          f"{'torch f+b':>10} {'ours f+b':>9} {'ratio':>6}  (ms, median of {reps})")
    for shape, k in SHAPES:
        if args.quick:
            shape = (2, 2, *shape[2:])
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(*shape, generator=g) < 0.1).float()  # [T, B, C, H, W] spikes
        xf = x.flatten(0, 1)  # [T*B, C, H, W]
        pool_args = ((k, k), (k, k), (0, 0), False, True, None)
        assert numba_pool.supports(pool_args, xf) is None
        gy = torch.randn(*shape[:3], shape[3] // k, shape[4] // k, generator=g)  # [T, B, C, H', W']
        gyf = gy.flatten(0, 1)
        xr, xo = xf.clone().requires_grad_(True), xf.clone().requires_grad_(True)

        def torch_fwd():
            with torch.no_grad():
                return nn.functional.avg_pool2d(xf, k)

        def ours_fwd():
            with torch.no_grad():
                return numba_pool.avg_pool2d(xf, pool_args)

        def torch_fb():
            xr.grad = None
            nn.functional.avg_pool2d(xr, k).backward(gyf)
            return xr.grad

        def ours_fb():
            xo.grad = None
            numba_pool.avg_pool2d(xo, pool_args).backward(gyf)
            return xo.grad

        same = torch.equal(ours_fwd(), torch_fwd()) and torch.equal(ours_fb(), torch_fb())
        identical &= same
        tf, of, tb, ob = _time([torch_fwd, ours_fwd, torch_fb, ours_fb], reps)
        row = dict(shape=list(shape), kernel=k, torch_fwd_ms=round(tf, 3), ours_fwd_ms=round(of, 3),
                   fwd_ratio=round(of / tf, 3), torch_fwd_bwd_ms=round(tb, 3), ours_fwd_bwd_ms=round(ob, 3),
                   fwd_bwd_ratio=round(ob / tb, 3), identical=int(same))
        rows.append(row)
        print(f"{str(list(shape)):>26} {k:>2} {tf:10.3f} {of:9.3f} {of / tf:6.2f} {tb:10.3f} {ob:9.3f} {ob / tb:6.2f}",
              flush=True)
    print(json.dumps({"bench": "pool", "rows": rows, "fwd_ratio_max": max(r["fwd_ratio"] for r in rows),
                      "fwd_bwd_ratio_max": max(r["fwd_bwd_ratio"] for r in rows), "identical": int(identical),
                      "threads": torch.get_num_threads(), "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
