"""Peak memory and time per BPTT training step under each ``[train] memory`` mode (spike.train.memory).

Networks as in ``bench/sltt.py`` (float32, Adam, per-step cross-entropy, default backends: numba
LIF and sparse Linear on the CPU):

* ``conv``: 2×32×32 → Conv3×3(16) + LIF + AvgPool2 → Conv3×3(32) + LIF + AvgPool2 → Linear(10) + LI,
  ``B = 16``, 5% input events;
* ``mlp``: 700 → 256 → 256 → 20 (Linear + LIF twice, Linear + LI readout), ``B = 64``, 5% input spikes.

Modes: ``none`` (plain BPTT), ``packed``, ``packed:10`` (packed, forward in chunks of 10 steps; JSON
keys ``packed_chunk10_...``), ``checkpoint`` (chunks of ``ceil(sqrt(T))`` steps), ``mesa8`` (forward in
chunks of ``ceil(sqrt(T))`` steps);
plus, on the ``conv`` net, SpikingJelly's version of it (multi-step ``LIFNode``s, same tau, reset, surrogate,
batch and input) plainly (``spikingjelly``) and under its ``memopt`` level 1 (``spikingjelly-memopt1``:
``memopt.pipeline.optimize_memory``, selective checkpointing and spike compression; levels 2-4 need CUDA),
where SpikingJelly is installed (``--no-spikingjelly`` skips it; JSON keys ``*_vs_spikingjelly_memopt1_*``
give ours against it); and, on the ``mlp`` batch at the reference T, ``noprop`` (``method = "noprop"``: NoProp-DT, 10 denoise
blocks of 700-256-256, each trained from its own local loss; ``--no-noprop`` skips it).

Memory is measured exactly as in ``bench/sltt.py``: what one training step adds on top of the model,
optimiser state and input batch, as the peak resident set size during the step minus the resident size
just before it, in a fresh process with ``MALLOC_MMAP_THRESHOLD_=65536`` (RSS follows live memory) and
the kernel's high-water mark reset before each step (``/proc/self/clear_refs``); on CUDA
``max_memory_allocated`` minus ``memory_allocated``. Time: median of ``--steps`` interleaved rounds
(one step of every mode per round, rotating order) in another process with default ``malloc``.

Gradients (at the largest T of the T = 100 reference, same weights and batch): ``packed`` must equal
plain BPTT bit for bit for every parameter; ``checkpoint``: largest difference relative to each
gradient's largest element (also ``packed:10``); ``mesa8``: cosine of the concatenated parameter gradient to the exact one.

Usage::

    python bench/memory.py            # T = 25, 50, 100 (a few minutes on 2 cores)
    python bench/memory.py --quick    # T = 25 only, 2 timed rounds
    python bench/memory.py --t 25 50 100 200
    python bench/memory.py --t 100 --nets conv   # the conv net at T = 100 only
    python bench/memory.py --t 100 --where       # also: in which layer each mode peaks

Ends with one JSON line (``"bench": "memory"``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODES = ("none", "packed", "packed:10", "checkpoint", "mesa8")


def _key(mode: str) -> str:
    """A mode as a JSON key prefix: ``"packed:10"`` -> ``"packed_chunk10"``, ``"spikingjelly-memopt1"`` ->
    ``"spikingjelly_memopt1"``."""
    return mode.replace(":", "_chunk").replace("-", "_")
BATCH = {"conv": 16, "mlp": 64}
sys.path.insert(0, str(Path(__file__).resolve().parent))
from sltt import _HWM, _can_reset_hwm, _status_kb, worker_env  # noqa: E402,F401  (one way to measure memory)
from sltt import _build as _build_sltt  # noqa: E402


SJ_MODES = ("spikingjelly", "spikingjelly-memopt1")  # conv net only, where SpikingJelly is installed


def _sj_available() -> bool:
    try:
        import spikingjelly.activation_based.memopt.pipeline  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not measured"
        return False
    return True


def _build_sj(n_steps: int, batch: int, memopt: bool):
    """The conv net in SpikingJelly (multi-step ``LIFNode``s with the same tau = 10, no input decay,
    subtract reset, ATan; Linear readout per step), on bench/sltt.py's input; ``memopt``: wrapped by
    ``memopt.pipeline.optimize_memory(level=1)`` (selective checkpointing and spike compression; levels
    2-4 need CUDA)."""
    import torch
    from spikingjelly.activation_based import functional, layer, neuron, surrogate
    from torch import nn

    def lif():
        return neuron.LIFNode(tau=10.0, decay_input=False, v_reset=None, surrogate_function=surrogate.ATan(),
                              step_mode="m")

    _, _, _, x, y = _build_sltt("conv", "bptt", n_steps, batch, torch.device("cpu"))
    torch.manual_seed(0)
    model = nn.Sequential(layer.Conv2d(2, 16, 3, padding=1), lif(), layer.AvgPool2d(2),
                          layer.Conv2d(16, 32, 3, padding=1), lif(), layer.AvgPool2d(2), layer.Flatten(),
                          layer.Linear(32 * 8 * 8, 10))
    functional.set_step_mode(model, "m")
    if memopt:
        from spikingjelly.activation_based.memopt import pipeline

        model = pipeline.optimize_memory(model, (neuron.LIFNode, layer.Conv2d), lambda m: m(x), level=1)
    functional.reset_net(model)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3), x, y


class _SJStep:
    """``train_step`` as the BPTT strategy's, for a SpikingJelly net (its state reset before the step)."""

    def train_step(self, model, x, y, loss_fn, optimizer, grad_clip):
        from spikingjelly.activation_based import functional

        functional.reset_net(model)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()  # out: [T, B, 10]
        optimizer.step()


def _build(net: str, n_steps: int, batch: int, device, mode: str = "none"):
    """bench/sltt.py's nets, seeds and inputs (so the two benches measure the same steps); ``mode =
    "noprop"``: the NoProp-DT net (``spike.train.noprop``, 10 blocks of 700-256-256 as the trainer
    builds it for ``method = "noprop"``) on the same batch."""
    if mode in SJ_MODES:
        return _build_sj(n_steps, batch, memopt=mode.endswith("memopt1"))
    model, opt, _, x, y = _build_sltt(net, "bptt", n_steps, batch, device)
    if mode == "noprop":
        import torch

        from spike.core.config import ModelConfig

        torch.manual_seed(0)
        model = _strategy(mode).build_model(ModelConfig(kind="mlp", hidden=(256, 256), tau=10.0, dropout=0.0),
                                            (700,), 20).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return model, opt, x, y


def _strategy(mode: str):
    from spike.train.strategy import BPTT

    if mode in SJ_MODES:
        return _SJStep()
    if mode == "noprop":
        from spike.train.noprop import NoProp

        return NoProp()
    return BPTT(memory=mode)


def measure_mem(net: str, mode: str, n_steps: int, reset_hwm: bool) -> dict:
    import gc
    import resource

    import torch

    from spike.train.losses import get_loss

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, opt, x, y = _build(net, n_steps, BATCH[net], dev, mode)
    st, loss_fn = _strategy(mode), get_loss("per_step")

    def step():
        st.train_step(model, x, y, loss_fn, opt, 0.0)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: JIT, Adam state
    gc.collect()
    row: dict = {"net": net, "mode": mode, "T": n_steps, "B": BATCH[net]}
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        row["cuda_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    if reset_hwm:
        _HWM.write_text("5")
        base_kb = _status_kb("VmRSS")
        step()
        row["cpu_mb"] = (_status_kb("VmHWM") - base_kb) / 1024
    else:
        base_kb = _status_kb("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step()
        row["cpu_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kb) / 1024
    return row


def measure_where(net: str, mode: str, n_steps: int) -> dict:
    """Where one training step peaks: the RSS high-water mark is reset at every forward (pre-)hook of
    the model's top-level layers and before the backward of each layer's output node, so each
    segment's peak (MiB above the resident size before the step) belongs to one layer's forward or
    backward (or the gaps between them)."""
    import gc
    import warnings

    import torch

    from spike.train.losses import get_loss

    model, opt, x, y = _build(net, n_steps, BATCH[net], torch.device("cpu"), mode)
    st, loss_fn = _strategy(mode), get_loss("per_step")
    marks: list = []

    def mark(name: str) -> None:
        marks.append((name, _status_kb("VmHWM")))
        _HWM.write_text("5")

    names = [f"{i}:{type(m).__name__}" for i, m in enumerate(model)]
    for i, m in enumerate(model):
        # backward: a pre-hook on the autograd node that made layer i's output marks the end of the
        # backward of what comes after it (layer i+1). Node pre-hooks hold no reference to the
        # gradients, unlike module backward hooks, which would stop the LIF from reusing dL/dspikes.
        after = names[i + 1] if i + 1 < len(names) else "loss"

        def fwd(mod, inp, out, n=names[i], after=after):
            mark("forward " + n)
            t = out if isinstance(out, torch.Tensor) else getattr(out, "spikes", None)
            if isinstance(t, torch.Tensor) and t.grad_fn is not None:
                t.grad_fn.register_prehook(lambda *a: mark("backward " + after))

        m.register_forward_pre_hook(lambda *a, n=names[i]: mark("before forward " + n))
        m.register_forward_hook(fwd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st.train_step(model, x, y, loss_fn, opt, 0.0)  # warm-up
        gc.collect()
        marks.clear()
        base_kb = _status_kb("VmRSS")
        _HWM.write_text("5")
        st.train_step(model, x, y, loss_fn, opt, 0.0)
        mark(f"backward {names[0]} + optimiser step")
    peaks = sorted(((name, (kb - base_kb) / 1024) for name, kb in marks), key=lambda r: -r[1])
    return {"net": net, "mode": mode, "T": n_steps, "peaks": [[n, round(mb, 1)] for n, mb in peaks[:3]]}


def measure_times(net: str, n_steps: int, rounds: int, modes: tuple[str, ...] = MODES) -> list[dict]:
    import gc

    import torch

    from spike.train.losses import get_loss

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loss_fn = get_loss("per_step")
    setups = {m: (_build(net, n_steps, BATCH[net], dev, m), _strategy(m)) for m in modes}

    def step(m):
        (model, opt, x, y), st = setups[m]
        t0 = time.perf_counter()
        st.train_step(model, x, y, loss_fn, opt, 0.0)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for m in modes:
        step(m)
    times: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        for m in modes[r % len(modes):] + modes[:r % len(modes)]:
            gc.collect()
            times[m].append(step(m))
    return [{"net": net, "mode": m, "T": n_steps, "ms": 1000 * statistics.median(times[m])} for m in modes]


def measure_grads(net: str, n_steps: int) -> dict:
    """Gradients of every mode against plain BPTT on one batch (no optimiser step)."""
    import torch

    from spike.train.losses import get_loss
    from spike.train.memory import memory_forward, saved_tensor_hooks
    from spike.train.strategy import model_output

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, _, x, y = _build(net, n_steps, BATCH[net], dev)
    loss_fn = get_loss("per_step")
    res = {}
    for mode in MODES:
        model.zero_grad(set_to_none=True)
        stats: dict = {}
        with saved_tensor_hooks(mode, stats):
            out = memory_forward(model, x, mode, model_output)
            loss = loss_fn(out, y)
        loss.backward()
        res[mode] = (out.detach(), [p.grad.detach().clone() for p in model.parameters()], stats)
    out0, g0, _ = res["none"]
    flat0 = torch.cat([g.flatten() for g in g0]).double()
    row: dict = {"net": net, "T": n_steps}
    for mode in MODES[1:]:
        out, g, stats = res[mode]
        flat = torch.cat([t.flatten() for t in g]).double()
        k = _key(mode)
        row[f"{k}_forward_identical"] = int(torch.equal(out0, out))
        row[f"{k}_grad_identical"] = int(all(torch.equal(a, b) for a, b in zip(g0, g)))
        row[f"{k}_grad_max_rel"] = max(float((a - b).abs().max() / a.abs().max().clamp_min(1e-30))
                                       for a, b in zip(g0, g))
        row[f"{k}_grad_cosine"] = float(torch.nn.functional.cosine_similarity(flat0, flat, 0))
        if stats:
            row[f"{k}_saved"] = {k: [v[0], round(v[1] / 2**20, 1), round(v[2] / 2**20, 1)] for k, v in stats.items()}
    return row


def worker(spec: dict) -> None:
    import torch

    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    if spec["mode"] == "where":
        for net, mode, n_steps in spec["configs"]:
            print("ROW " + json.dumps(measure_where(net, mode, n_steps)), flush=True)
    elif spec["mode"] == "mem":
        reset = _can_reset_hwm()
        for net, mode, n_steps in spec["configs"]:
            print("ROW " + json.dumps(measure_mem(net, mode, n_steps, reset)), flush=True)
    elif spec["mode"] == "time":
        for net, n_steps, modes in spec["configs"]:
            for row in measure_times(net, n_steps, spec["rounds"], tuple(modes)):
                print("ROW " + json.dumps(row), flush=True)
    else:
        for net, n_steps in spec["configs"]:
            print("ROW " + json.dumps(measure_grads(net, n_steps)), flush=True)


def _run_worker(spec: dict, threads: int) -> list[dict]:
    env = worker_env(threads, "mem" if spec["mode"] == "where" else spec["mode"])
    r = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env, capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise RuntimeError(f"worker failed ({spec['mode']}):\n{r.stderr[-3000:]}")
    return [json.loads(line[4:]) for line in r.stdout.splitlines() if line.startswith("ROW ")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="T = 25 only, 2 timed rounds")
    ap.add_argument("--t", type=int, nargs="+", default=None, help="time steps (default 25 50 100)")
    ap.add_argument("--steps", type=int, default=5, help="timed rounds (median)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nets", nargs="+", default=["conv", "mlp"], choices=["conv", "mlp"])
    ap.add_argument("--no-noprop", action="store_true", help="skip the NoProp-DT row (mlp, T_ref)")
    ap.add_argument("--no-spikingjelly", action="store_true",
                    help="skip SpikingJelly's conv net, plain and under memopt level 1 (measured if installed)")
    ap.add_argument("--where", action="store_true",
                    help="also print where each mode's step peaks (per-layer high-water marks, T_ref; Linux only)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    t_list = tuple(args.t) if args.t else ((25,) if args.quick else (25, 50, 100))
    rounds = 2 if args.quick else args.steps
    t_ref = 100 if 100 in t_list else t_list[-1]
    t0 = time.perf_counter()
    rows: list[dict] = []
    grads = {}
    where: list[dict] = []
    isolate = not _can_reset_hwm()
    for net in args.nets:
        sj = SJ_MODES if net == "conv" and not args.no_spikingjelly and _sj_available() else ()
        modes_at = {t: MODES + sj + (("noprop",) if net == "mlp" and t == t_ref and not args.no_noprop else ())
                    for t in t_list}
        configs = [(net, m, t) for t in t_list for m in modes_at[t]]
        mem = []
        for group in ([[c] for c in configs] if isolate else [configs]):
            mem += _run_worker({"mode": "mem", "configs": group}, args.threads)
        timed = _run_worker({"mode": "time", "configs": [(net, t, modes_at[t]) for t in t_list], "rounds": rounds},
                            args.threads)
        ms = {(r["mode"], r["T"]): r["ms"] for r in timed}
        for r in mem:
            r["ms"] = ms[(r["mode"], r["T"])]
            rows.append(r)
        grads[net] = _run_worker({"mode": "grad", "configs": [(net, t_ref)]}, args.threads)[0]
        if args.where and not isolate:
            where += _run_worker({"mode": "where", "configs": [(net, m, t_ref) for m in ("none", "packed", "packed:10", "mesa8")]},
                                 args.threads)
    print(f"{'net':5s} {'mode':20s} {'T':>4s} {'CPU peak MB':>12s} {'x plain':>8s} {'ms/step':>9s} {'x plain':>8s}")

    def get(net, mode, t, key):
        return next(r[key] for r in rows if r["net"] == net and r["mode"] == mode and r["T"] == t)

    for r in rows:
        base_mb, base_ms = get(r["net"], "none", r["T"], "cpu_mb"), get(r["net"], "none", r["T"], "ms")
        print(f"{r['net']:5s} {r['mode']:20s} {r['T']:4d} {r['cpu_mb']:12.1f} {r['cpu_mb'] / base_mb:8.3f} "
              f"{r['ms']:9.1f} {r['ms'] / base_ms:8.3f}")
    for net, g in grads.items():
        print(f"gradients {net} T={g['T']}: " + json.dumps(g))
    for w in where:
        print(f"peak {w['net']} {w['mode']} T={w['T']}: " + "; ".join(f"{n} {mb:.1f} MB" for n, mb in w["peaks"]))
    result: dict = {"bench": "memory", "T_ref": t_ref, "threads": args.threads,
                    "packed_grad_identical": int(all(g["packed_grad_identical"] for g in grads.values())),
                    "forward_identical_all_modes": int(all(g[f"{_key(m)}_forward_identical"] for g in grads.values()
                                                           for m in MODES[1:])),
                    "mesa8_grad_cosine": round(min(g["mesa8_grad_cosine"] for g in grads.values()), 9),
                    "checkpoint_grad_max_rel": max(g["checkpoint_grad_max_rel"] for g in grads.values())}
    for net in args.nets:
        result[f"mesa8_grad_cosine_{net}"] = round(grads[net]["mesa8_grad_cosine"], 9)
        sj = SJ_MODES if net == "conv" and not args.no_spikingjelly and _sj_available() else ()
        for mode in MODES[1:] + sj + (("noprop",) if net == "mlp" and not args.no_noprop else ()):
            mem = get(net, mode, t_ref, "cpu_mb") / get(net, "none", t_ref, "cpu_mb")
            tim = get(net, mode, t_ref, "ms") / get(net, "none", t_ref, "ms")
            result[f"{_key(mode)}_mem_ratio_{net}_T{t_ref}"] = round(mem, 4)
            result[f"{_key(mode)}_time_ratio_{net}_T{t_ref}"] = round(tim, 4)
        if sj:  # ours against SpikingJelly's memopt on the same conv net, batch and input
            sj_mb = get(net, "spikingjelly-memopt1", t_ref, "cpu_mb")
            sj_ms = get(net, "spikingjelly-memopt1", t_ref, "ms")
            for mode in MODES:
                result[f"{_key(mode)}_mem_vs_spikingjelly_memopt1_{net}_T{t_ref}"] = round(
                    get(net, mode, t_ref, "cpu_mb") / sj_mb, 4)
                result[f"{_key(mode)}_time_vs_spikingjelly_memopt1_{net}_T{t_ref}"] = round(
                    get(net, mode, t_ref, "ms") / sj_ms, 4)
        result[f"plain_mb_{net}"] = round(get(net, "none", t_ref, "cpu_mb"), 1)
        result[f"plain_ms_{net}"] = round(get(net, "none", t_ref, "ms"), 1)
    for w in where:
        result[f"{w['mode']}_peak_at_{w['net']}"] = w["peaks"][0][0]
    print(f"({time.perf_counter() - t0:.0f} s)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
