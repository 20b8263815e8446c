"""Peak memory and time per training step: SLTT, SLTT-K (K = 1, 2) and BPTT against T, plus the
layer-local Forward-Forward and Mono-Forward at T = 100.

Networks (float32, Adam, per-step cross-entropy):

* ``mlp``: 700 → 256 → 256 → 20 (Linear + LIF twice, Linear + LI readout), ``B = 64``, 5% input spikes
  (SHD-sized);
* ``conv``: 2×32×32 → Conv3×3(16) + LIF + AvgPool2 → Conv3×3(32) + LIF + AvgPool2 → Linear(10) + LI,
  ``B = 16``, 5% input events (DVS-sized).

Methods: ``bptt`` (:class:`spike.train.strategy.BPTT`), ``sltt`` (``SLTT(chunk=1)``, the paper's
step-by-step algorithm), ``sltt_c10`` / ``sltt_c25`` (``SLTT(chunk=10 | 25)``: the same gradient, 10 or 25 steps per graph),
``sltt_k1`` / ``sltt_k2`` (``SLTT(k=K, chunk=10)``: a graph for the K chosen steps only, the other
steps run without one in chunks of up to 10), ``ff`` / ``mono`` (Forward-Forward with the label
appended, Mono-Forward; MLP, T = 100 only).

SLTT's time is also compared (MLP, T = 100, same interleaved run) with the BPTT it replaces in its
paper (Meng et al. 2023): ``bptt_ref`` is per-step autograd BPTT (spike's ``reference`` backends: a
Python loop of autograd ops over time, the paper's setting) and ``bptt_sj`` is SpikingJelly's BPTT of
the same network (multi-step ``layer.Linear`` + ``LIFNode(tau=10, decay_input=False, v_reset=None)``,
an LI readout as a ``LIFNode`` that never fires, ``functional.reset_net`` before each step; skipped
when SpikingJelly is not installed); ``bptt`` is spike's fused BPTT (numba kernels).

Threads: one (``torch.set_num_threads(1)``, ``NUMBA_NUM_THREADS=1``) for every method by default,
``--threads N`` to change it. On a shared 2-core machine a multi-threaded op waits for descheduled
threads (about 0.5 ms per small op at load 10, measured), which swamps the step-by-step methods.

Memory is what one training step adds on top of the model, the optimiser state and the input batch:

* CPU: peak resident set size during the step minus the resident size just before it. Each network
  runs in a fresh process with ``MALLOC_MMAP_THRESHOLD_=65536`` (large tensors come from ``mmap`` and
  go back to the system when freed, so RSS follows live memory); before each measured step the
  kernel's high-water mark is reset (``/proc/self/clear_refs``), so one process can measure many
  configurations. Without ``clear_refs`` (not Linux) every configuration gets its own process and
  ``ru_maxrss``.
* CUDA (when present): ``torch.cuda.max_memory_allocated()`` minus ``memory_allocated()`` before the step.

Time: median of ``--steps`` rounds after one warm-up step, in another process with the default
``malloc`` settings (the ``mmap`` threshold above turns every medium-sized tensor into system calls).
All methods of one ``(net, T)`` are built side by side and timed in interleaved rounds (one step of
each per round, rotating the order), so a busy spell on the machine does not land on one method.

Usage::

    python bench/sltt.py             # full table (a few minutes on 2 cores)
    python bench/sltt.py --quick     # T = 25, 50 only, 1 timed step (smoke test)

Prints a table, saves ``bench/out/sltt_memory.png`` (memory vs T) and ends with one JSON line
(``"bench": "sltt"``, the ratios for the 700-256-256-20 network).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
T_LIST = (25, 50, 100, 200)
METHODS = ("bptt", "sltt", "sltt_c10", "sltt_c25", "sltt_k1", "sltt_k2")
EXTRA_T100 = ("ff", "mono")
BASELINES_T100 = ("bptt_ref", "bptt_sj")  # per-step autograd BPTT (spike reference), SpikingJelly BPTT
_HWM = Path("/proc/self/clear_refs")


def _status_kb(key: str) -> int:
    m = re.search(rf"{key}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(m.group(1)) if m else 0


def _can_reset_hwm() -> bool:
    try:
        _HWM.write_text("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------
# worker: builds the nets and measures configurations (runs in a fresh process)
# --------------------------------------------------------------------------------------------------
def _build(net: str, method: str, n_steps: int, batch: int, device):
    import torch

    from spike.core.config import ModelConfig
    from spike.neurons import LI, LIF
    from spike.synapses import AvgPool2d, Conv2d, Flatten, Linear, Sequential
    from spike.train.forward_forward import ForwardForward, MonoForward
    from spike.train.sltt import SLTT
    from spike.train.strategy import BPTT

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    if net == "mlp":
        shape, n_cls = (700,), 20
    else:
        shape, n_cls = (2, 32, 32), 10
    strategies = {"bptt": BPTT(), "sltt": SLTT(chunk=1), "sltt_c10": SLTT(chunk=10), "sltt_c25": SLTT(chunk=25), "sltt_k1": SLTT(k=1, chunk=10),
                  "sltt_k2": SLTT(k=2, chunk=10), "ff": ForwardForward(), "mono": MonoForward()}
    if method in BASELINES_T100:
        strategies.update(bptt_ref=BPTT(), bptt_sj=_SJBPTT())
    st = strategies[method]
    if method == "bptt_ref":
        model = Sequential(Linear(700, 256, backend="reference"), LIF(tau=10.0, backend="reference"),
                           Linear(256, 256, backend="reference"), LIF(tau=10.0, backend="reference"),
                           Linear(256, 20, backend="reference"), LI(tau=10.0, backend="reference"))
    elif method == "bptt_sj":
        model = _sj_mlp()
    elif method in EXTRA_T100:
        m = ModelConfig(kind="mlp", hidden=(256, 256), tau=10.0, dropout=0.0)
        model = st.build_model(m, shape, n_cls)
    elif net == "mlp":
        model = Sequential(Linear(700, 256), LIF(tau=10.0), Linear(256, 256), LIF(tau=10.0), Linear(256, 20),
                           LI(tau=10.0))
    else:
        model = Sequential(Conv2d(2, 16, 3, padding=1), LIF(tau=10.0), AvgPool2d(2), Conv2d(16, 32, 3, padding=1),
                           LIF(tau=10.0), AvgPool2d(2), Flatten(), Linear(32 * 8 * 8, 10), LI(tau=10.0))
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = (torch.rand(n_steps, batch, *shape, generator=g) < 0.05).float().to(device)
    y = torch.randint(0, n_cls, (batch,), generator=g).to(device)
    return model, opt, st, x, y


def _sj_mlp():
    """SpikingJelly's multi-step 700-256-256-20 MLP with an LI readout (a LIFNode that never fires)."""
    import torch
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    def lif(**kw):
        return neuron.LIFNode(tau=10.0, decay_input=False, surrogate_function=surrogate.ATan(), step_mode="m", **kw)

    class LIReadout(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.node = lif(v_threshold=float("inf"), v_reset=0.0, store_v_seq=True)

        def forward(self, x):
            self.node(x)
            return self.node.v_seq  # [T, B, 20]: the membrane trace

    torch.manual_seed(0)
    net = torch.nn.Sequential(layer.Linear(700, 256), lif(v_reset=None), layer.Linear(256, 256), lif(v_reset=None),
                              layer.Linear(256, 20), LIReadout())
    functional.set_step_mode(net, "m")
    return net


class _SJBPTT:
    """SpikingJelly's training step: ``reset_net``, one multi-step forward, one backward, Adam."""

    name = "bptt_sj"

    def train_step(self, model, x, y, loss_fn, optimizer, grad_clip):
        from spikingjelly.activation_based import functional

        functional.reset_net(model)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss


def _have_spikingjelly() -> bool:
    try:
        import spikingjelly.activation_based  # noqa: F401
        return True
    except Exception:  # noqa: BLE001 - any import failure: skip that baseline
        return False


def measure(net: str, method: str, n_steps: int, batch: int, steps: int, mode: str, reset_hwm: bool) -> dict:
    """``mode="mem"``: peak memory of one step (after a warm-up step); ``"time"``: median step time."""
    import gc
    import resource

    import torch

    from spike.train.losses import get_loss

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, opt, st, x, y = _build(net, method, n_steps, batch, dev)
    loss_fn = get_loss("per_step")

    def step():
        st.train_step(model, x, y, loss_fn, opt, 0.0)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: JIT, Adam state
    gc.collect()
    row: dict = {"net": net, "method": method, "T": n_steps, "B": batch}
    if mode == "mem":
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
        else:  # fresh process per configuration: ru_maxrss over the step
            base_kb = _status_kb("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            step()
            row["cpu_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kb) / 1024
    else:
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        row["ms"] = 1000 * statistics.median(times)
    del model, opt, x
    gc.collect()
    return row


def measure_times(net: str, methods: list[str], n_steps: int, batch: int, rounds: int) -> list[dict]:
    """Median step time of every method at one ``(net, T)``, timed in interleaved rounds (each round
    times one step of every method, in a rotated order), so load changes and allocator state hit every
    method alike instead of whichever ran during a busy spell."""
    import gc

    import torch

    from spike.train.losses import get_loss

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loss_fn = get_loss("per_step")
    setups = {m: _build(net, m, n_steps, batch, dev) for m in methods}

    def step(m):
        model, opt, st, x, y = setups[m]
        t0 = time.perf_counter()
        st.train_step(model, x, y, loss_fn, opt, 0.0)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for m in methods:  # warm-up: JIT, Adam state
        step(m)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(rounds):
        order = methods[r % len(methods):] + methods[:r % len(methods)]
        for m in order:
            gc.collect()
            times[m].append(step(m))
    return [{"net": net, "method": m, "T": n_steps, "B": batch, "ms": 1000 * statistics.median(times[m])}
            for m in methods]


def worker(configs: list[tuple[str, str, int]], batch: dict, steps: int, mode: str) -> None:
    import torch

    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    if mode == "time":  # interleaved per (net, T)
        groups: dict[tuple[str, int], list[str]] = {}
        for net, method, n_steps in configs:
            groups.setdefault((net, n_steps), []).append(method)
        for (net, n_steps), methods in groups.items():
            for row in measure_times(net, methods, n_steps, batch[net], steps if n_steps < 200 else max(1, steps - 1)):
                print("ROW " + json.dumps(row), flush=True)
        return
    reset = _can_reset_hwm()
    for net, method, n_steps in configs:
        row = measure(net, method, n_steps, batch[net], steps, mode, reset)
        print("ROW " + json.dumps(row), flush=True)


# --------------------------------------------------------------------------------------------------
# orchestrator
# --------------------------------------------------------------------------------------------------
def worker_env(threads: int, mode: str) -> dict:
    """Environment of a measuring worker process (also used by bench/memory.py)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "BENCH_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    if mode == "mem":  # large blocks from mmap, returned when freed: RSS follows live memory
        env.update(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="131072")
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads on a busy machine (see bench/lif.py)
    return env


def _run_worker(configs, batch, steps, threads: int, mode: str) -> list[dict]:
    env = worker_env(threads, mode)
    arg = json.dumps({"configs": configs, "batch": batch, "steps": steps, "mode": mode})
    r = subprocess.run([sys.executable, __file__, "--worker", arg], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"worker failed for {configs[:1]}...:\n{r.stderr[-3000:]}")
    return [json.loads(line[4:]) for line in r.stdout.splitlines() if line.startswith("ROW ")]


def _print_row(row: dict) -> None:
    cuda = f"  {row['cuda_mb']:9.1f} MB" if "cuda_mb" in row else ""
    print(f"{row['net']:5s} {row['method']:9s} T={row['T']:4d}  {row['cpu_mb']:9.1f} MB{cuda}  {row['ms']:9.1f} ms",
          flush=True)


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = sorted({r["net"] for r in rows}, reverse=True)
    fig, axes = plt.subplots(1, len(nets), figsize=(5.5 * len(nets), 4), squeeze=False)
    for ax, net in zip(axes[0], nets):
        for method in METHODS:
            pts = sorted((r["T"], r["cpu_mb"]) for r in rows if r["net"] == net and r["method"] == method)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=method)
        ax.set(title=f"{net}: peak memory of one training step (CPU)", xlabel="time steps T",
               ylabel="MB above model + optimiser + input")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _default_chunk() -> int:
    from spike.train.sltt import SLTT

    return SLTT().chunk


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="T = 25, 50 only and one timed step")
    ap.add_argument("--steps", type=int, default=5, help="timed rounds per configuration (median)")
    ap.add_argument("--threads", type=int, default=1, help="torch and numba threads for every method")
    ap.add_argument("--plot", default=str(ROOT / "bench" / "out" / "sltt_memory.png"))
    ap.add_argument("--t100", action="store_true",
                    help="MLP at T = 100 only (SLTT vs the three BPTT baselines), no conv, no plot")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        worker([tuple(c) for c in spec["configs"]], spec["batch"], spec["steps"], spec["mode"])
        return
    t_list = (100,) if args.t100 else (25, 50) if args.quick else T_LIST
    steps = 1 if args.quick else args.steps
    batch = {"mlp": 64, "conv": 16}
    t0 = time.perf_counter()
    print(f"{'net':5s} {'method':9s} {'T':6s}  {'CPU peak':>12s}  {'time/step':>12s}")
    isolate = not _can_reset_hwm()
    rows: list[dict] = []
    baselines = tuple(m for m in BASELINES_T100 if m != "bptt_sj" or _have_spikingjelly())
    for net in ("mlp",) if args.t100 else ("mlp", "conv"):
        configs = [(net, m, t) for t in t_list for m in METHODS]
        if net == "mlp" and 100 in t_list:
            configs += [(net, m, 100) for m in EXTRA_T100 + baselines]
        mem = []  # memory and time in separate processes: the malloc settings for memory slow small allocations
        for group in ([[c] for c in configs] if isolate else [configs]):
            mem += _run_worker(group, batch, steps, args.threads, "mem")
        timed = _run_worker(configs, batch, steps, args.threads, "time")
        ms = {(r["method"], r["T"]): r["ms"] for r in timed}
        for m_row in mem:
            row = {**m_row, "ms": ms[(m_row["method"], m_row["T"])]}
            _print_row(row)
            rows.append(row)
    if not args.t100:
        _plot(rows, Path(args.plot))

    def get(method, n_steps, key, net="mlp"):
        return next(r[key] for r in rows if r["net"] == net and r["method"] == method and r["T"] == n_steps)

    t_ref = 100 if 100 in t_list else t_list[-1]
    t_hi, t_lo = t_list[-1], (50 if 50 in t_list else t_list[0])
    print(f"\nratios (mlp 700-256-256-20, B={batch['mlp']}, {args.threads} thread(s); sltt = chunk 1, "
          f"sltt_cN = chunk N):")
    result: dict = {"bench": "sltt"}
    for method in ("sltt", "sltt_c10", "sltt_c25"):
        sfx = "" if method == "sltt" else "_chunk" + method[6:]
        mem = get(method, t_ref, "cpu_mb") / get("bptt", t_ref, "cpu_mb")
        grow = get(method, t_hi, "cpu_mb") / get(method, t_lo, "cpu_mb")
        tim = get(method, t_ref, "ms") / get("bptt", t_ref, "ms")
        print(f"  {method:9s} memory vs BPTT at T={t_ref}: {mem:.3f}   memory T={t_hi} / T={t_lo}: {grow:.3f}   "
              f"time vs BPTT at T={t_ref}: {tim:.3f}")
        result[f"mem_ratio_sltt_vs_bptt_T{t_ref}{sfx}"] = round(mem, 4)
        result[f"sltt_mem_T{t_hi}_vs_T{t_lo}{sfx}"] = round(grow, 4)
        result[f"time_ratio_sltt_vs_bptt_T{t_ref}{sfx}"] = round(tim, 4)
    for method in ("sltt_k1", "sltt_k2") + (EXTRA_T100 if t_ref == 100 else ()):
        result[f"mem_ratio_{method}_vs_bptt_T{t_ref}"] = round(get(method, t_ref, "cpu_mb") /
                                                             get("bptt", t_ref, "cpu_mb"), 4)
        result[f"time_ratio_{method}_vs_bptt_T{t_ref}"] = round(get(method, t_ref, "ms") / get("bptt", t_ref, "ms"), 4)
    if t_ref == 100:  # SLTT (default chunk) against the BPTT of its paper, and the best chunk vs fused BPTT
        have = {r["method"] for r in rows if r["net"] == "mlp" and r["T"] == 100}
        default = "sltt_c" + str(_default_chunk()) if _default_chunk() != 1 else "sltt"
        for key, base in (("bptt_reference", "bptt_ref"), ("spikingjelly", "bptt_sj")):
            result[f"time_ratio_sltt_vs_{key}_T100"] = (round(get(default, 100, "ms") / get(base, 100, "ms"), 4)
                                                        if base in have and default in have else None)
        chunks = [m for m in ("sltt", "sltt_c10", "sltt_c25") if m in have]
        best = min(chunks, key=lambda m: get(m, 100, "ms"))
        result["time_ratio_sltt_best_chunk_vs_bptt_T100"] = round(get(best, 100, "ms") / get("bptt", 100, "ms"), 4)
        result["sltt_best_chunk_T100"] = 1 if best == "sltt" else int(best[6:])
        result["sltt_default_chunk"] = _default_chunk()
        result["ms_T100"] = {m: round(get(m, 100, "ms"), 2) for m in sorted(have)}
        result["mem_mb_T100"] = {m: round(get(m, 100, "cpu_mb"), 1) for m in sorted(have)}
        print(f"  SLTT (default chunk {_default_chunk()}) vs per-step autograd BPTT: "
              f"{result['time_ratio_sltt_vs_bptt_reference_T100']}, vs SpikingJelly BPTT: "
              f"{result['time_ratio_sltt_vs_spikingjelly_T100']}; best chunk ({result['sltt_best_chunk_T100']}) "
              f"vs fused BPTT: {result['time_ratio_sltt_best_chunk_vs_bptt_T100']}")
    if any(r["net"] == "conv" for r in rows):  # the conv SNN: larger activations per step
        for method in ("sltt", "sltt_c10", "sltt_c25", "sltt_k1"):
            mem = get(method, t_ref, "cpu_mb", "conv") / get("bptt", t_ref, "cpu_mb", "conv")
            tim = get(method, t_ref, "ms", "conv") / get("bptt", t_ref, "ms", "conv")
            result[f"conv_mem_ratio_{method}_vs_bptt_T{t_ref}"] = round(mem, 4)
            result[f"conv_time_ratio_{method}_vs_bptt_T{t_ref}"] = round(tim, 4)
        print(f"  conv: time vs BPTT at T={t_ref}: " + ", ".join(
            f"{m} {result[f'conv_time_ratio_{m}_vs_bptt_T{t_ref}']:.3f}" for m in ("sltt", "sltt_c10", "sltt_c25", "sltt_k1")))
    result["threads"] = args.threads
    print(f"plot: {'none (--t100)' if args.t100 else args.plot}   ({time.perf_counter() - t0:.0f} s)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
