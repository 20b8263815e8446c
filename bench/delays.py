"""Peak memory and time of the DCLS delayed layer vs a plain Linear at the same sizes.

    python bench/delays.py                       # 700 -> 256, max_delay 25, T 100, B 32 and 128
    python bench/delays.py --batch 256 --reps 3

Both layers are called through their pure functions (``F.linear`` and
:func:`spike.synapses.delays.delayed_linear`), so the modules' shared input validation is not counted; the
input requires grad, as inside a network. Peak memory = the largest total size of tensors created during one
forward + backward that are alive at the same time (parameters and the input are excluded; their sizes
are listed). It is measured by a
``TorchDispatchMode`` observer that records every op's output storage and a finaliser on each storage
(so tensors kept alive only by autograd count until backward frees them); on CUDA it is
``torch.cuda.max_memory_allocated`` minus the memory in use before the call. Buffers an op allocates
internally without returning them (e.g. a convolution's im2col/workspace) are visible only in the CUDA
number.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch.nn.functional as F  # noqa: E402

from spike.synapses.delays import DelayedLinear, delayed_linear  # noqa: E402

MiB = 2**20


class PeakMemory(TorchDispatchMode):
    """Observer: peak bytes of live tensor storages created inside the block."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = self.peak = 0

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in torch.utils._pytree.tree_leaves((args, kwargs))
                  if isinstance(a, torch.Tensor)}  # views and in-place results are not new memory
        for o in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(o, torch.Tensor) and o.device.type == "cpu":
                st = o.untyped_storage()
                key = st.data_ptr()
                if key and key not in self.live and key not in inputs:
                    self.live[key] = st.nbytes()
                    self.current += st.nbytes()
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(st, self._free, key)
        return out


def measure(fn, train: bool, reps: int, device: torch.device) -> dict:
    """Peak memory and median time of ``fn()`` (forward, plus backward when ``train``)."""

    def step():
        with torch.set_grad_enabled(train):
            y = fn()
            if train:
                y.square().mean().backward()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        with PeakMemory() as pm:
            step()
        peak = pm.peak
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {"peak_MiB": round(peak / MiB, 2), "time_ms": round(1000 * statistics.median(times), 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--c-in", type=int, default=700)
    ap.add_argument("--c-out", type=int, default=256)
    ap.add_argument("--max-delay", type=int, default=25)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    d, k = args.max_delay, args.max_delay + 1
    kernel_mib = args.c_out * args.c_in * k * 4 / MiB
    print(f"# {args.c_in} -> {args.c_out}, max_delay {d} ({k} taps), T {args.steps}, {dev}, "
          f"{torch.get_num_threads()} threads; one [C_out, C_in, K] float32 kernel = {kernel_mib:.2f} MiB")
    layer = DelayedLinear(args.c_in, args.c_out, d).to(dev)  # kaiming weights, uniform positions
    w = layer.weight.detach().clone().requires_grad_()
    pos = layer.pos.detach().clone().requires_grad_()
    rows = []
    for b in args.batch:
        x = (torch.rand(args.steps, b, args.c_in, device=dev) < 0.1).float().requires_grad_()  # spikes
        in_mib = x.numel() * 4 / MiB
        out_mib = args.steps * b * args.c_out * 4 / MiB
        cases = (
            ("Linear (fwd+bwd)", True, lambda: F.linear(x, w)),
            ("DelayedLinear Gaussian (fwd+bwd)", True, lambda: delayed_linear(x, w, pos, d / 2, d)[0]),
            ("Linear (eval fwd)", False, lambda: F.linear(x, w)),
            ("DelayedLinear rounded (eval fwd)", False, lambda: delayed_linear(x, w, pos, 0.0, d, hard=True)[0]),
        )
        for name, train, fn in cases:
            r = measure(fn, train, args.reps, dev)
            w.grad = pos.grad = x.grad = None
            rows.append({"case": name, "batch": b, **r, "input_MiB": round(in_mib, 2),
                         "output_MiB": round(out_mib, 2)})
            print(f"B={b:4d}  {name:34s} peak {r['peak_MiB']:8.2f} MiB   {r['time_ms']:8.1f} ms   "
                  f"(input {in_mib:.2f} MiB, output {out_mib:.2f} MiB)")
    print(json.dumps({"kernel_MiB": round(kernel_mib, 2), "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
