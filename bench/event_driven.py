"""Event-driven (spike.events.network, numba) vs dense torch CPU inference of the same network.

    python bench/event_driven.py [--quick]

Model: the N-MNIST-sized MLP ``Flatten -> Linear(2312, 512) -> LIF -> Linear(512, 10) -> LI`` with
T = 100 steps. Input: every (step, channel) entry is active with probability ``activity`` (count 1).
Dense path ("dense torch", what the speedups are against): ``Sequential`` in ``eval()`` under
``torch.no_grad()`` on the dense ``[T, B, 2, 34, 34]`` tensor, the Linear layers as torch matmuls
(``backend="reference"``) and the default (``auto``: fused numba) LIF. Also timed, in the same
rounds: spike's clock-driven default (``Linear(backend="auto")``, which takes the sparse-input numba
kernel for large layers at <= 2 % input density, see ``spike.synapses.layers``), reported as
``speedup_vs_auto`` / ``..._vs_clock_driven_auto``. Event path: :func:`spike.events.network.run`
on the same input as ``(t_bin, channel)`` lists (including its input preparation), after a numba
warm-up. Both produce the same readout (checked; the max difference is printed). The two paths are
timed in alternating blocks of calls, and the reported time is the minimum over repetitions (the medians are printed
too): on a shared machine the minimum is the least load-dependent estimate. ``--threads N`` (default 1)
sets both torch's intra-op threads and numba's threads (``prange`` over samples; a single sample runs
serially): the default is a per-core comparison, because on an oversubscribed machine a multi-threaded
GEMM waits at barriers for descheduled threads and its times become meaningless.

Streaming: the same network fed a synthetic recording (2 % of the (1 ms bin, channel) entries hold
one event at a random time inside its bin, T = 100 bins) through :class:`EventStream.feed_events`,
once in 1 ms chunks (each followed by ``advance`` to the chunk's end, as a real-time loop does) and
once event by event; the rate is events / (wall time of the whole sample: stream creation, every
call, ``finish``), the minimum over repetitions; the streamed readout is checked equal to ``run``.

Prints a table, saves ``bench/out/event_driven.png`` (time vs activity), and the last stdout line is
``{"bench": "event_driven", "speedup_at_2pct_batch1": ..., "crossover_activity": ...,
"stream_events_per_s": ..., ...}`` where the crossover is the batch-1 activity at which both take
the same time (log-log interpolation; ``null`` if the event path stays faster up to 100 %).
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

import numba
import torch

from spike.core.events import make_events
from spike.events import network as N
from spike.inference.export import export_event_network
from spike.neurons import LI, LIF
from spike.synapses import Flatten, Linear, Sequential

T = 100
SHAPE = (2, 34, 34)
N_IN = 2 * 34 * 34
ACTIVITIES = (0.005, 0.02, 0.10, 0.30)
EXTRA = (0.6, 1.0)  # measured only if needed to locate the crossover


def make_model(linear_backend: str = "reference") -> Sequential:
    """The benchmark MLP. ``linear_backend="reference"``: the synapses are torch matmuls (dense torch);
    ``"auto"``: spike's clock-driven default (see ``spike.synapses.layers``). Same weights either way."""
    torch.manual_seed(0)
    model = Sequential(Flatten(), Linear(N_IN, 512, backend=linear_backend), LIF(tau=10.0),
                       Linear(512, 10, backend=linear_backend), LI(tau=20.0))
    with torch.no_grad():
        model[1].weight.mul_(4.0)  # a few % of hidden activity at low input activity
    return model.eval()


def make_input(activity: float, batch: int, rng: np.random.Generator):
    on = rng.random((T, batch, N_IN)) < activity  # [T, B, n_in]
    x = torch.from_numpy(on.astype(np.float32)).reshape(T, batch, *SHAPE)  # [T, B, 2, 34, 34]
    samples = []
    for b in range(batch):
        t, c = np.nonzero(on[:, b])
        samples.append((t, c))
    return x, samples


def alternating_times(fns, reps: int, budget_s: float, block: int = 5) -> list[tuple[float, float]]:
    """Run the functions in alternating blocks of ``block`` calls (each block runs with its own warm
    caches, and every function sees the same spells of machine load); per function
    ``(min, median)`` seconds."""
    times: list[list[float]] = [[] for _ in fns]
    t_end = time.perf_counter() + budget_s
    while len(times[0]) < reps:
        for k, fn in enumerate(fns):
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        if time.perf_counter() > t_end:
            break
    return [(float(np.min(t)), float(np.median(t))) for t in times]


def measure(model, auto, net, activity: float, batch: int, rng, quick: bool) -> dict:
    x, samples = make_input(activity, batch, rng)
    with torch.no_grad():
        ref = model(x).out.numpy()
    res = N.run(net, samples, T)
    err = float(np.abs(res.out - ref).max())
    reps = 5 if quick else (40 if batch == 1 else 9)
    budget = 3.0 if quick else 12.0

    def dense():
        with torch.no_grad():
            model(x)

    def clock():
        with torch.no_grad():
            auto(x)

    (d_min, d_med), (a_min, a_med), (e_min, e_med) = alternating_times(
        [dense, clock, lambda: N.run(net, samples, T)], reps, budget, block=5 if batch == 1 else 1)
    rec = N.run(net, samples[:1], T, record=True)
    dense_macs = sum(m for m, _ in N.dense_ops(net, T).values())
    return dict(activity=activity, batch=batch, dense_ms=1e3 * d_min, event_ms=1e3 * e_min,
                auto_ms=1e3 * a_min, auto_median_ms=1e3 * a_med, speedup_vs_auto=a_min / e_min,
                dense_median_ms=1e3 * d_med, event_median_ms=1e3 * e_med, speedup=d_min / e_min,
                max_readout_diff=err, hidden_rate=float(rec.spikes["2"].mean()),
                synops_per_sample=float(res.synops.sum(1).mean()), dense_macs_per_sample=float(dense_macs))


def make_recording(activity: float, rng: np.random.Generator) -> np.ndarray:
    """A structured event array: each (1 ms bin, channel) entry holds one event w.p. ``activity``."""
    on = rng.random((T, N_IN)) < activity
    t_bin, ch = np.nonzero(on)
    t = t_bin * 1000 + rng.integers(0, 1000, len(t_bin))
    o = np.argsort(t, kind="stable")
    p, rest = np.divmod(ch[o], SHAPE[1] * SHAPE[2])
    y, x = np.divmod(rest, SHAPE[2])
    return make_events(x, y, t[o], p)


def measure_stream(net, activity: float, rng, quick: bool) -> dict:
    """Events per second of :class:`EventStream` fed 1 ms chunks / single events (see module doc)."""
    ev = make_recording(activity, rng)
    sensor = (SHAPE[2], SHAPE[1], SHAPE[0])
    ref = N.run(net, [ev], T, sensor_size=sensor, dt=1000)
    edges = np.searchsorted(ev["t"], np.arange(0, (T + 1) * 1000, 1000))  # chunk k: t in [k ms, k+1 ms)

    def by_ms():
        s = N.EventStream(net, sensor_size=sensor, dt=1000)
        for k in range(T):
            s.feed_events(ev[edges[k]:edges[k + 1]])
            s.advance(k + 1)
        return s.finish(T)

    def by_event():
        s = N.EventStream(net, sensor_size=sensor, dt=1000)
        for k in range(len(ev)):
            s.feed_events(ev[k:k + 1])
        return s.finish(T)

    for fn in (by_ms, by_event):
        res = fn()
        assert np.array_equal(res.out, ref.out) and np.array_equal(res.synops, ref.synops), fn.__name__
    reps = 3 if quick else 15
    (ms_min, _), (ev_min, _) = alternating_times([by_ms, by_event], reps, 3.0 if quick else 10.0, block=1)
    n = len(ev)
    return dict(events=n, chunks=T, ms_s=ms_min, ev_s=ev_min, events_per_s=n / ms_min,
                events_per_s_per_event=n / ev_min, us_per_chunk=1e6 * ms_min / T, us_per_event=1e6 * ev_min / n)


def crossover(rows: list[dict]) -> float | None:
    rows = sorted(rows, key=lambda r: r["activity"])
    for a, b in zip(rows, rows[1:]):
        if a["speedup"] >= 1.0 > b["speedup"]:
            la, lb = np.log(a["activity"]), np.log(b["activity"])
            sa, sb = np.log(a["speedup"]), np.log(b["speedup"])
            return float(np.exp(la + (0 - sa) * (lb - la) / (sb - sa)))
    if rows and rows[0]["speedup"] < 1.0:
        return float(rows[0]["activity"])
    return None


def plot(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        print("matplotlib not installed: no plot")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for batch, style in ((1, "-"), (32, "--")):
        rr = sorted((r for r in rows if r["batch"] == batch), key=lambda r: r["activity"])
        a = [100 * r["activity"] for r in rr]
        ax.plot(a, [r["dense_ms"] for r in rr], "o" + style, color="C0", label=f"dense torch, batch {batch}")
        ax.plot(a, [r["auto_ms"] for r in rr], "^" + style, color="C2",
                label=f"spike clock-driven (backend auto), batch {batch}")
        ax.plot(a, [r["event_ms"] for r in rr], "s" + style, color="C1", label=f"event-driven, batch {batch}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input activity (% of entries active per step)")
    ax.set_ylabel("time per batch (ms)")
    ax.set_title(f"2312-512-10 LIF MLP, T={T}, CPU ({torch.get_num_threads()} torch threads, "
                 f"{numba.get_num_threads()} numba threads)", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for both paths (torch intra-op and numba; default 1: a per-core "
                         "comparison, robust on a shared machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    print(f"threads: torch {torch.get_num_threads()}, numba {numba.get_num_threads()} "
          f"(numba threading layer setting: {numba.config.THREADING_LAYER})")
    rng = np.random.default_rng(0)
    model = make_model("reference")  # dense torch: torch matmuls (+ the fused LIF kernel)
    auto = make_model("auto")  # spike's clock-driven default (the sparse-input kernel where it pays off)
    net = export_event_network(model, SHAPE)
    t0 = time.perf_counter()
    for b in (1, 2):  # numba warm-up (compiles or loads the cache)
        _, s = make_input(0.02, b, rng)
        N.run(net, s, T)
    print(f"numba warm-up {time.perf_counter() - t0:.1f} s")
    rows = []
    print(f"{'activity':>8} {'batch':>5} {'dense ms':>9} {'event ms':>9} {'speedup':>8} {'(medians)':>17} "
          f"{'clock auto ms':>15} {'speedup':>8} "
          f"{'hidden':>7} {'synops/sample':>14} {'dense MACs':>11} {'max|diff|':>9}")
    for batch in (1, 32):
        acts = list(ACTIVITIES)
        k = 0
        while k < len(acts):
            r = measure(model, auto, net, acts[k], batch, rng, args.quick)
            rows.append(r)
            print(f"{100 * r['activity']:7.1f}% {batch:5d} {r['dense_ms']:9.2f} {r['event_ms']:9.2f} "
                  f"{r['speedup']:8.2f} {r['dense_median_ms']:8.2f}/{r['event_median_ms']:<8.2f} "
                  f"{r['auto_ms']:15.2f} {r['speedup_vs_auto']:8.2f} "
                  f"{r['hidden_rate']:7.3f} {r['synops_per_sample']:14.3g} "
                  f"{r['dense_macs_per_sample']:11.3g} {r['max_readout_diff']:9.1e}", flush=True)
            if k == len(acts) - 1 and r["speedup"] >= 1.0 and len(acts) < len(ACTIVITIES) + len(EXTRA):
                acts.append(EXTRA[len(acts) - len(ACTIVITIES)])
            k += 1
    b1 = [r for r in rows if r["batch"] == 1]
    b32 = [r for r in rows if r["batch"] == 32]
    cross1, cross32 = crossover(b1), crossover(b32)
    print(f"crossover activity: batch 1 {cross1}, batch 32 {cross32}")
    plot(rows, Path(__file__).resolve().parent / "out" / "event_driven.png")
    st = measure_stream(net, 0.02, rng, args.quick)
    print(f"stream (2 % activity, {st['events']} events, {st['chunks']} chunks of 1 ms): "
          f"{st['events_per_s']:.3g} events/s ({st['us_per_chunk']:.1f} us per chunk); event by event: "
          f"{st['events_per_s_per_event']:.3g} events/s ({st['us_per_event']:.2f} us per event)")
    r2 = next(r for r in b1 if r["activity"] == 0.02)
    s2 = r2["speedup"]
    print(json.dumps({"bench": "event_driven", "speedup_at_2pct_batch1": round(s2, 2),
                      "speedup_at_2pct_batch1_vs_clock_driven_auto": round(r2["speedup_vs_auto"], 2),
                      "dense_ms_2pct_batch1": round(r2["dense_ms"], 3), "event_ms_2pct_batch1": round(r2["event_ms"], 3),
                      "clock_auto_ms_2pct_batch1": round(r2["auto_ms"], 3),
                      "crossover_activity": None if cross1 is None else round(cross1, 4),
                      "crossover_activity_batch32": None if cross32 is None else round(cross32, 4),
                      "stream_events_per_s": round(st["events_per_s"]),
                      "stream_us_per_chunk_1ms": round(st["us_per_chunk"], 2),
                      "stream_events_per_s_event_by_event": round(st["events_per_s_per_event"]),
                      "stream_us_per_event": round(st["us_per_event"], 3),
                      "T": T, "model": "2312-512-10", "threads": args.threads,
                      "numba_threads": numba.get_num_threads()}))


if __name__ == "__main__":
    main()
