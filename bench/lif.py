"""CPU benchmark: multi-step LIF (forward + backward) and a small SNN train step, `spike` vs peers.

Peers, each used the way its documentation shows:

* snnTorch ``snn.Leaky``: a Python loop over ``x.unbind(0)``; in the network, the ``Linear`` layers run
  inside the time loop too (the snnTorch tutorial pattern).
* SpikingJelly ``neuron.LIFNode(step_mode="m")`` (``backend="torch"`` where the installed version still
  takes that argument; 2.x picks its CPU path itself), ``functional.reset_net`` before every repetition,
  multi-step ``layer.Linear`` in the network.
* Norse ``LIFBoxCell`` (its plain LIF without a synaptic current; Norse has no multi-step plain LIF
  module) looped over time; ``nn.Linear`` applied to the whole ``[T, B, F]`` sequence in the network.

Every implementation gets the same input, the same dense output gradient (LIF alone) or the same
data, loss and Adam step (network). Repetitions are interleaved round-robin, so a change in machine
load hits all implementations alike, and the median is reported.

Usage::

    python bench/lif.py            # full run (about 3 min on 2 idle cores)
    python bench/lif.py --quick    # fewer repetitions, smaller sizes (smoke test)

The last stdout line is one JSON object (``"bench": "lif"``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable


def _calm_openmp_on_busy_machine() -> None:
    """Re-run with ``OMP_WAIT_POLICY=PASSIVE`` when the machine is busy (before torch is imported).

    Idle OpenMP threads spin by default; with more runnable threads than cores every parallel torch op
    then waits for a descheduled thread (measured: 15 ms for a 200k-element ``x.sum()`` at load 10 on
    2 cores, 0.04 ms passive). That swamps what the benchmark measures, for every implementation alike.
    ``--omp default`` keeps the environment untouched.
    """
    args = " ".join(sys.argv[1:])
    if "OMP_WAIT_POLICY" in os.environ or "--omp default" in args or "--omp=default" in args:
        return
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        print(f"# load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: re-running with "
              "OMP_WAIT_POLICY=PASSIVE (all implementations); --omp default to keep spinning threads",
              flush=True)
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})


if __name__ == "__main__":
    _calm_openmp_on_busy_machine()

import torch  # noqa: E402
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from spike.neurons import LIF  # noqa: E402
from spike.neurons import lif as F  # noqa: E402

BETA = 0.9  # per-step decay shared by all implementations
TAU = -1.0 / math.log(BETA)  # spike: tau with dt=1 and exp discretisation gives beta=0.9
LIF_SIZES = [(100, 32, 1024), (500, 16, 4096)]  # (T, B, N)
NET = dict(T=100, B=64, n_in=700, hidden=256, n_out=20, p_in=0.05)

Step = Callable[[], None]


def _adam_kw() -> dict:
    """``fused=True`` where this torch has the fused CPU Adam (one kernel instead of ~10 ops per tensor)."""
    try:
        torch.optim.Adam([nn.Parameter(torch.zeros(1))], fused=True)
        return {"fused": True}
    except (RuntimeError, TypeError, ValueError):
        return {}


ADAM_KW = _adam_kw()  # the same optimizer for every implementation


# ----------------------------------------------------------------------------------------- peers
def _try_import(name: str):
    try:
        if name == "snntorch":
            import snntorch as snn
            from snntorch import surrogate
            return snn, surrogate
        if name == "spikingjelly":
            from spikingjelly.activation_based import functional, layer, neuron, surrogate
            return neuron, functional, layer, surrogate
        if name == "norse":
            import norse.torch as norse
            return norse
    except Exception as e:  # noqa: BLE001 - any import failure means: skip this peer
        print(f"# skipping {name}: import failed ({type(e).__name__}: {e})")
        return None
    raise ValueError(name)


def _sj_lif(neuron, surrogate):
    kw = dict(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m")
    try:
        return neuron.LIFNode(backend="torch", **kw)
    except TypeError:  # SpikingJelly >= 2.0 dropped `backend` and chooses its CPU kernel itself
        return neuron.LIFNode(**kw)


def _norse_cell(norse):
    p = norse.LIFBoxParameters(tau_mem_inv=torch.as_tensor((1.0 - BETA) / 1e-3))  # dt=1e-3: decay 0.9
    return norse.LIFBoxCell(p)


def _loop(cell, x: torch.Tensor) -> torch.Tensor:
    """Norse-style time loop: ``cell(x_t, state) -> (z_t, state)``."""
    state, out = None, []
    for xt in x.unbind(0):
        z, state = cell(xt, state)
        out.append(z)
    return torch.stack(out)


# ----------------------------------------------------------------------------------- LIF alone
def lif_steps(T: int, B: int, N: int, peers: dict) -> dict[str, Step]:
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(T, B, N, generator=g) * 0.6 + 0.25).requires_grad_()
    grad = torch.randn(T, B, N, generator=g)  # the same dense upstream gradient for everyone
    steps: dict[str, Step] = {}

    def ours(backend: str) -> Step:
        lif = LIF(tau=TAU, backend=backend)

        def step():
            x.grad = None
            lif(x).spikes.backward(grad)
        return step

    steps["spike numba"] = ours("numba")
    steps["spike reference"] = ours("reference")
    p = F.discretize(F.LIFParams(tau=TAU))
    from spike.backends import numba_lif

    def kernel_only():
        x.grad = None
        numba_lif.multi_step(x, None, p)[0].backward(grad)
    steps["spike numba, backend call (no input check)"] = kernel_only

    if peers.get("snntorch"):
        snn, surrogate = peers["snntorch"]
        leaky = snn.Leaky(beta=BETA, spike_grad=surrogate.atan())

        def snntorch_step():
            x.grad = None
            mem, out = leaky.init_leaky(), []
            for xt in x.unbind(0):
                spk, mem = leaky(xt, mem)
                out.append(spk)
            torch.stack(out).backward(grad)
        steps["snntorch Leaky"] = snntorch_step
    if peers.get("spikingjelly"):
        neuron, functional, _, surrogate = peers["spikingjelly"]
        node = _sj_lif(neuron, surrogate)

        def sj_step():
            x.grad = None
            functional.reset_net(node)
            node(x).backward(grad)
        steps["spikingjelly LIFNode(m)"] = sj_step
    if peers.get("norse"):
        cell = _norse_cell(peers["norse"])

        def norse_step():
            x.grad = None
            _loop(cell, x * 10.0).backward(grad)  # LIFBox scales the input by dt/tau = 0.1
        steps["norse LIFBoxCell"] = norse_step
    return steps


# ------------------------------------------------------------------------------------- network
class SpikeNet(nn.Module):
    """700 -> 256 -> 256 -> 20 with spike's layers: (Linear + LIF) x 2, Linear readout averaged over time."""

    def __init__(self, backend: str):
        super().__init__()
        from spike.synapses import Linear  # nn.Linear over [T, B, F] (T folded into the batch) + input check
        h, n_in, n_out = NET["hidden"], NET["n_in"], NET["n_out"]
        self.fc1, self.fc2, self.fc3 = Linear(n_in, h), Linear(h, h), Linear(h, n_out)
        self.lif1, self.lif2 = LIF(tau=TAU, backend=backend), LIF(tau=TAU, backend=backend)

    def forward(self, x):  # x: [T, B, 700]
        s1 = self.lif1(self.fc1(x)).spikes  # [T, B, 256]
        s2 = self.lif2(self.fc2(s1)).spikes  # [T, B, 256]
        return self.fc3(s2).mean(0)  # [B, 20]


class BareNet(nn.Module):
    """The same network with ``nn.Linear`` and direct calls of the numba backend: no input checks."""

    def __init__(self):
        super().__init__()
        from spike.backends import numba_lif
        h, n_in, n_out = NET["hidden"], NET["n_in"], NET["n_out"]
        self.fc1, self.fc2, self.fc3 = nn.Linear(n_in, h), nn.Linear(h, h), nn.Linear(h, n_out)
        self.p = F.discretize(F.LIFParams(tau=TAU))
        self.lif = numba_lif.multi_step

    def forward(self, x):  # x: [T, B, 700]
        s1 = self.lif(self.fc1(x), None, self.p)[0]  # [T, B, 256]
        s2 = self.lif(self.fc2(s1), None, self.p)[0]  # [T, B, 256]
        return self.fc3(s2).mean(0)  # [B, 20]


def net_steps(peers: dict, net: dict) -> dict[str, Step]:
    T, B = net["T"], net["B"]
    n_in, h, n_out = net["n_in"], net["hidden"], net["n_out"]
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(T, B, n_in, generator=g) < net["p_in"]).float()
    y = torch.randint(0, n_out, (B,), generator=g)
    loss_fn = nn.CrossEntropyLoss()
    steps: dict[str, Step] = {}

    def trainer(net: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                before: Callable[[], None] | None = None) -> Step:
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, **ADAM_KW)

        def step():
            if before is not None:
                before()
            opt.zero_grad(set_to_none=True)
            loss_fn(forward(x), y).backward()
            opt.step()
        return step

    for backend in ("numba", "reference"):
        torch.manual_seed(2)
        net = SpikeNet(backend)
        steps[f"spike {backend}"] = trainer(net, net)
    torch.manual_seed(2)
    bare = BareNet()
    steps["spike numba, nn.Linear + backend call (no input checks)"] = trainer(bare, bare)

    if peers.get("snntorch"):
        snn, surrogate = peers["snntorch"]
        torch.manual_seed(2)
        sn = nn.ModuleDict(dict(fc1=nn.Linear(n_in, h), fc2=nn.Linear(h, h), fc3=nn.Linear(h, n_out),
                                lif1=snn.Leaky(beta=BETA, spike_grad=surrogate.atan()),
                                lif2=snn.Leaky(beta=BETA, spike_grad=surrogate.atan())))

        def snn_forward(xs):
            mem1, mem2, out = sn.lif1.init_leaky(), sn.lif2.init_leaky(), []
            for xt in xs.unbind(0):
                spk1, mem1 = sn.lif1(sn.fc1(xt), mem1)
                spk2, mem2 = sn.lif2(sn.fc2(spk1), mem2)
                out.append(sn.fc3(spk2))
            return torch.stack(out).mean(0)
        steps["snntorch"] = trainer(sn, snn_forward)
    if peers.get("spikingjelly"):
        neuron, functional, layer, surrogate = peers["spikingjelly"]
        torch.manual_seed(2)
        sj = nn.Sequential(layer.Linear(n_in, h), _sj_lif(neuron, surrogate), layer.Linear(h, h),
                           _sj_lif(neuron, surrogate), layer.Linear(h, n_out))
        functional.set_step_mode(sj, "m")
        steps["spikingjelly"] = trainer(sj, lambda xs: sj(xs).mean(0), lambda: functional.reset_net(sj))
    if peers.get("norse"):
        norse = peers["norse"]
        torch.manual_seed(2)
        nn_ = nn.ModuleDict(dict(fc1=nn.Linear(n_in, h), fc2=nn.Linear(h, h), fc3=nn.Linear(h, n_out),
                                 lif1=_norse_cell(norse), lif2=_norse_cell(norse)))

        def norse_forward(xs):
            s1 = _loop(nn_.lif1, nn_.fc1(xs) * 10.0)
            s2 = _loop(nn_.lif2, nn_.fc2(s1) * 10.0)
            return nn_.fc3(s2).mean(0)
        steps["norse"] = trainer(nn_, norse_forward)
    return steps


# -------------------------------------------------------------------------------------- timing
def run_interleaved(steps: dict[str, Step], reps: int, budget_s: float,
                    warmup: int = 1) -> tuple[dict[str, float], dict[str, int]]:
    """Median seconds per call and the number of timed calls.

    One call of each implementation per round, so drifting machine load hits all alike; an
    implementation whose calls have used ``budget_s`` stops after its first timed call.
    """
    times: dict[str, list[float]] = {k: [] for k in steps}
    spent = dict.fromkeys(steps, 0.0)
    for _ in range(warmup):
        for name, f in steps.items():
            t0 = time.perf_counter()
            f()
            spent[name] += time.perf_counter() - t0
    for _ in range(reps):
        for name, f in steps.items():
            if times[name] and spent[name] > budget_s:
                continue
            t0 = time.perf_counter()
            f()
            dt = time.perf_counter() - t0
            times[name].append(dt)
            spent[name] += dt
    return {k: statistics.median(v) for k, v in times.items()}, {k: len(v) for k, v in times.items()}


def _is_peer(name: str) -> bool:
    return not name.startswith("spike")


def _ratio(med: dict[str, float], ours: str, peer: str) -> float | None:
    return round(med[ours] / med[peer], 4) if peer in med else None


def report(title: str, med: dict[str, float], n: dict[str, int],
           ours: str = "spike numba") -> tuple[float | None, str]:
    peers = {k: v for k, v in med.items() if _is_peer(k)}
    fastest = min(peers, key=peers.get) if peers else None
    print(f"\n{title}")
    print(f"{'implementation':58s} {'ms':>9s} {'reps':>5s} {'x fastest peer':>15s}")
    for name, t in sorted(med.items(), key=lambda kv: kv[1]):
        rel = f"{t / peers[fastest]:.3f}" if fastest else "-"
        print(f"{name:58s} {t * 1e3:9.1f} {n[name]:5d} {rel:>15s}")
    ratio = round(med[ours] / peers[fastest], 4) if fastest else None
    print(f"ours ({ours}) / fastest peer ({fastest}): {ratio}")
    return ratio, fastest or "none"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few reps (smoke test)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    ap.add_argument("--omp", choices=("auto", "default"), default="auto",
                    help="auto: OMP_WAIT_POLICY=PASSIVE when the load exceeds the core count")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    t_start = time.perf_counter()
    peers = {name: _try_import(name) for name in ("snntorch", "spikingjelly", "norse")}
    omp = os.environ.get("OMP_WAIT_POLICY", "unset")
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"peers: {[k for k, v in peers.items() if v]}, load average {load0:.1f}, OMP_WAIT_POLICY={omp}, "
          f"Adam {ADAM_KW or 'default'}")

    sizes = [(20, 4, 256), (50, 4, 1024)] if args.quick else LIF_SIZES
    reps, budget = (3, 5.0) if args.quick else (5, 12.0)
    result: dict = {"bench": "lif"}
    for T, B, N in sizes:
        med, n = run_interleaved(lif_steps(T, B, N, peers), reps, budget)
        ratio, fastest = report(f"LIF forward+backward, T={T} B={B} N={N} (median)", med, n)
        key = f"T{T}_B{B}_N{N}"
        result[f"lif_{key}_ms"] = {k: round(v * 1e3, 2) for k, v in med.items()}
        result[f"lif_{key}_ratio"] = ratio
        result[f"lif_{key}_fastest_peer"] = fastest
    result["lif_ratio_vs_fastest_peer"] = result[f"lif_{key}_ratio"]  # the larger size
    result["lif_ratio_backend_call_vs_fastest_peer"] = _ratio(med, "spike numba, backend call (no input check)",
                                                              fastest)

    net = dict(NET, T=20, B=8) if args.quick else NET
    med, n = run_interleaved(net_steps(peers, net), reps, 2 * budget)
    ratio, fastest = report(f"Train step 700-256-256-20, T={net['T']} B={net['B']}, {net['p_in']:.0%} input "
                            f"spikes, CE on time-averaged readout, Adam{' (fused)' if ADAM_KW else ''}", med, n)
    result["net_ms"] = {k: round(v * 1e3, 2) for k, v in med.items()}
    result["net_ratio_vs_fastest_peer"] = ratio
    result["net_fastest_peer"] = fastest
    result["net_ratio_no_input_checks_vs_fastest_peer"] = _ratio(
        med, "spike numba, nn.Linear + backend call (no input checks)", fastest)
    result.update(threads=torch.get_num_threads(), omp_wait_policy=omp, load_avg_start=round(load0, 2),
                  load_avg_end=round(os.getloadavg()[0], 2), seconds=round(time.perf_counter() - t_start, 1))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
