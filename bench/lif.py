"""CPU benchmark: multi-step LIF (forward + backward) and a small SNN train step, `spike` vs peers.

Peers, each used the way its documentation shows:

* snnTorch ``snn.Leaky``: a Python loop over ``x.unbind(0)``; in the network, the ``Linear`` layers run
  inside the time loop too (the snnTorch tutorial pattern).
* SpikingJelly ``neuron.LIFNode(step_mode="m")`` (``backend="torch"`` where the installed version still
  takes that argument; 2.x picks its CPU path itself), ``functional.reset_net`` before every repetition,
  multi-step ``layer.Linear`` in the network.
* Norse ``LIFBoxCell`` (its plain LIF without a synaptic current; Norse has no multi-step plain LIF
  module) looped over time; ``nn.Linear`` applied to the whole ``[T, B, F]`` sequence in the network.
  Norse's only compiled path is ``torch.compile`` of that loop (``--norse-compile``: compile time is
  measured separately and excluded; off by default, it takes minutes on a loaded 2-core machine).
* Spyx (JAX; ``bench/install_bench_peers.sh`` puts it in its own venv): ``spyx.nn.LIF`` run by
  ``spyx.nn.run`` (``jax.lax.scan``), everything under one ``jax.jit``, Adam from optax; it runs in a
  subprocess (``bench/spyx_peer.py``) driven round by round with the others. Its reset-free
  ``AssociativeLIF`` (``jax.lax.associative_scan``) is shown for information, outside the ratios.

Ours in the network rows is ``spike.synapses.Sequential`` of spike's layers (what ``build_model``
returns), against the same network from ``torch.nn`` layers plus bare backend calls (no checks).
Which surrogate and reset each implementation uses is printed and stored under ``"models"``.

Every implementation gets the same input, the same dense output gradient (LIF alone) or the same
data, loss and Adam step (network). Repetitions are interleaved round-robin, so a change in machine
load hits all implementations alike, and the median is reported.

Usage::

    python bench/lif.py            # full run (about 3 min on 2 idle cores)
    python bench/lif.py --quick    # fewer repetitions, smaller sizes (smoke test)
    SPIKE_SPYX_VENV=/path/to/venv python bench/lif.py   # Spyx venv elsewhere than /tmp/spyxenv

The last stdout line is one JSON object (``"bench": "lif"``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
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
CONV = dict(T=20, B=16, C=2, H=32, W=32, c1=16, c2=32, n_out=10, p_in=0.05)  # DVS-Gesture-like shape
BARE_KERNELS = "spike numba, bare kernel calls (sparse fc1, no checks)"
INFO = "[info] "  # rows with this prefix are not the same model: shown, never the "fastest peer"

#: surrogate and reset of every implementation (all: beta = 0.9 per step, threshold 1, subtract reset)
MODELS = {
    "spike": "ATan surrogate (alpha=2), immediate subtract reset",
    "snntorch": "atan surrogate (alpha=2), deferred subtract reset (spike from the previous membrane)",
    "spikingjelly": "ATan surrogate (alpha=2), immediate subtract reset (v_reset=None, tau=10, decay_input=False)",
    "norse": "SuperSpike surrogate (alpha=100, LIFBox default), immediate reset to 0",
    "spyx": "arctan surrogate (k=2), deferred subtract reset; AssociativeLIF: no reset",
}

Step = Callable[[], "float | None"]  # a step may return its own time (the Spyx subprocess does)


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
    # v = (1 - 1/tau) v + x with tau = 10 (beta = 0.9, no input decay), subtract reset (v_reset=None)
    kw = dict(tau=1.0 / (1.0 - BETA), decay_input=False, v_reset=None, surrogate_function=surrogate.ATan(),
              step_mode="m")
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


class Spyx:
    """The Spyx subprocess (``bench/spyx_peer.py`` in the Spyx venv); ``None`` rows when absent."""

    def __init__(self) -> None:
        self.proc = None
        self.versions = None
        venv = Path(os.environ.get("SPIKE_SPYX_VENV", "/tmp/spyxenv"))
        py = venv / "bin" / "python"
        if not py.exists():
            print(f"# skipping spyx: no venv at {venv} (bash bench/install_bench_peers.sh)")
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        self.proc = subprocess.Popen([str(py), str(Path(__file__).with_name("spyx_peer.py"))],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        first = self.proc.stdout.readline()
        try:
            self.versions = json.loads(first)
        except json.JSONDecodeError:
            print(f"# skipping spyx: the worker did not start ({first.strip()!r})")
            self.proc = None

    def _ask(self, cmd: dict) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def step(self, key: str, kind: str, **args) -> Step | None:
        """Build and compile one Spyx step; the returned callable runs it and returns its seconds."""
        if self.proc is None:
            return None
        r = self._ask({"setup": key, "kind": kind, "args": args})
        if not r["ok"]:
            print(f"# skipping spyx {kind}: {r['error']}")
            return None
        print(f"# spyx {kind} {args}: jit compile + first call {r['compile_s']:.1f} s (not timed)")
        self.compile_s = {**getattr(self, "compile_s", {}), key: round(r["compile_s"], 2)}
        return lambda: self._ask({"time": key})["s"]

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def _compiled(fn: Callable, label: str, compile_times: dict) -> Callable:
    """``torch.compile(fn)``; the first call (the compile) is timed here and excluded from the rows."""
    c = torch.compile(fn)
    state = {"first": True}

    def call(*a):
        if state["first"]:
            t0 = time.perf_counter()
            out = c(*a)
            compile_times[label] = round(time.perf_counter() - t0, 1)
            state["first"] = False
            return out
        return c(*a)
    return call


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
        if peers.get("norse_compile") is not None:
            loop_c = _compiled(lambda z: _loop(cell, z * 10.0), f"lif T{T} B{B} N{N}", peers["norse_compile"])

            def norse_c_step():
                x.grad = None
                loop_c(x).backward(grad)
            steps["norse LIFBoxCell, torch.compile"] = norse_c_step
    spyx = peers.get("spyx")
    if spyx is not None:
        for name, kind in (("spyx LIF (jit, lax.scan)", "lif"), (INFO + "spyx AssociativeLIF (reset-free)", "assoc")):
            f = spyx.step(f"{kind}_{T}_{B}_{N}", kind, T=T, B=B, N=N)
            if f is not None:
                steps[name] = f
    return steps


# ------------------------------------------------------------------------------------- network
class SpikeNet(nn.Module):
    """700 -> 256 -> 256 -> 20 as ``spike.synapses.Sequential(Linear, LIF, Linear, LIF, Linear)`` (the
    user path: input checked once, at the first layer), readout averaged over time."""

    def __init__(self, backend: str):
        super().__init__()
        from spike.synapses import Linear, Sequential
        h, n_in, n_out = NET["hidden"], NET["n_in"], NET["n_out"]
        lin = "reference" if backend == "reference" else "auto"
        self.seq = Sequential(Linear(n_in, h, backend=lin), LIF(tau=TAU, backend=backend),
                              Linear(h, h, backend=lin), LIF(tau=TAU, backend=backend),
                              Linear(h, n_out, backend=lin))

    def forward(self, x):  # x: [T, B, 700]
        return self.seq(x).out.mean(0)  # [B, 20]


class BareNet(nn.Module):
    """The same network with ``nn.Linear`` and direct calls of the numba backend: no input checks.

    ``sparse_fc1``: the first layer calls the sparse-input kernel directly. The wrapper overhead is
    ``SpikeNet("numba")`` over whichever of the two bare nets uses the kernels ``Linear(backend="auto")``
    picks (``_auto_fc1_is_sparse``; since the quiet-machine measurement the matmul, at 700 inputs).
    """

    def __init__(self, sparse_fc1: bool = False):
        super().__init__()
        self.sparse_fc1 = sparse_fc1
        from spike.backends import numba_lif
        h, n_in, n_out = NET["hidden"], NET["n_in"], NET["n_out"]
        self.fc1, self.fc2, self.fc3 = nn.Linear(n_in, h), nn.Linear(h, h), nn.Linear(h, n_out)
        self.p = F.discretize(F.LIFParams(tau=TAU))
        self.lif = numba_lif.multi_step

    def forward(self, x):  # x: [T, B, 700]
        if self.sparse_fc1:
            from spike.backends import numba_linear
            h1 = numba_linear.linear(x, self.fc1.weight, self.fc1.bias)
        else:
            h1 = self.fc1(x)
        s1 = self.lif(h1, None, self.p)[0]  # [T, B, 256]
        s2 = self.lif(self.fc2(s1), None, self.p)[0]  # [T, B, 256]
        return self.fc3(s2).mean(0)  # [B, 20]


def train_step(params, forward: Callable[[torch.Tensor], torch.Tensor], x, y, loss_fn,
               before: Callable[[], None] | None = None) -> Step:
    """One timed training step: ``before()`` (a peer's state reset), loss of ``forward(x)``, backward,
    Adam (``ADAM_KW``), the same for every implementation."""
    opt = torch.optim.Adam(params, lr=1e-3, **ADAM_KW)

    def step():
        if before is not None:
            before()
        opt.zero_grad(set_to_none=True)
        loss_fn(forward(x), y).backward()
        opt.step()
    return step


def _auto_fc1_is_sparse(net: dict) -> bool:
    """Whether ``Linear(backend="auto")`` gives the first layer the sparse-input kernel on the bench input."""
    from spike.core.registry import resolve
    from spike.synapses import Linear

    x = (torch.rand(net["T"], net["B"], net["n_in"], generator=torch.Generator().manual_seed(0))
         < net["p_in"]).float()
    layer = Linear(net["n_in"], net["hidden"])
    return resolve("linear", "auto", layer, x).__name__ == "spike.backends.numba_linear"


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
        return train_step(net.parameters(), forward, x, y, loss_fn, before)

    for backend in ("numba", "reference"):
        torch.manual_seed(2)
        model = SpikeNet(backend)
        steps[f"spike {backend}"] = trainer(model, model)
        steps[f"spike {backend}"].model = model  # type: ignore[attr-defined]  (hidden densities, floor)
    torch.manual_seed(2)
    bare = BareNet()
    steps["spike numba, nn.Linear + backend call (no input checks)"] = trainer(bare, bare)
    torch.manual_seed(2)
    bare_sp = BareNet(sparse_fc1=True)
    steps[BARE_KERNELS] = trainer(bare_sp, bare_sp)

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
        if peers.get("norse_compile") is not None:
            torch.manual_seed(2)
            nc = nn.ModuleDict(dict(fc1=nn.Linear(n_in, h), fc2=nn.Linear(h, h), fc3=nn.Linear(h, n_out),
                                    lif1=_norse_cell(norse), lif2=_norse_cell(norse)))

            def norse_c(xs):
                s1 = _loop(nc.lif1, nc.fc1(xs) * 10.0)
                s2 = _loop(nc.lif2, nc.fc2(s1) * 10.0)
                return nc.fc3(s2).mean(0)
            steps["norse, torch.compile"] = trainer(nc, _compiled(norse_c, "net", peers["norse_compile"]))
    if peers.get("spyx") is not None:
        f = peers["spyx"].step(f"net_{T}_{B}", "net", T=T, B=B, n_in=n_in, hidden=h, n_out=n_out, p_in=net["p_in"])
        if f is not None:
            steps["spyx (jit, lax.scan, optax Adam)"] = f
    return steps


# ---------------------------------------------------------------------------------- conv network
def conv_steps(peers: dict, c: dict) -> dict[str, Step]:
    """2x32x32 -> Conv3x3(16) + LIF + AvgPool2 -> Conv3x3(32) + LIF + AvgPool2 -> Linear(10), CE on
    the time-averaged readout, Adam; ``c["p_in"]`` input events."""
    from spike.backends import numba_lif
    from spike.synapses import AvgPool2d, Conv2d, Flatten, Linear, Sequential

    T, B, C, H, W, c1, c2, n_out = (c[k] for k in ("T", "B", "C", "H", "W", "c1", "c2", "n_out"))
    n_flat = c2 * (H // 4) * (W // 4)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(T, B, C, H, W, generator=g) < c["p_in"]).float()
    y = torch.randint(0, n_out, (B,), generator=g)
    loss_fn = nn.CrossEntropyLoss()
    steps: dict[str, Step] = {}

    def trainer(params, forward, before=None) -> Step:
        return train_step(params, forward, x, y, loss_fn, before)

    for backend in ("numba", "reference"):
        torch.manual_seed(2)
        lin = "reference" if backend == "reference" else "auto"
        net = Sequential(Conv2d(C, c1, 3, padding=1), LIF(tau=TAU, backend=backend), AvgPool2d(2),
                         Conv2d(c1, c2, 3, padding=1), LIF(tau=TAU, backend=backend), AvgPool2d(2),
                         Flatten(), Linear(n_flat, n_out, backend=lin))
        steps[f"spike {backend}"] = trainer(net.parameters(), lambda xs, net=net: net(xs).out.mean(0))
    torch.manual_seed(2)
    bare = nn.ModuleDict(dict(conv1=nn.Conv2d(C, c1, 3, padding=1), conv2=nn.Conv2d(c1, c2, 3, padding=1),
                              fc=nn.Linear(n_flat, n_out)))
    p = F.discretize(F.LIFParams(tau=TAU))

    def bare_forward(xs):
        z = bare.conv1(xs.flatten(0, 1))  # [T*B, c1, H, W]
        z = numba_lif.multi_step(z.view(T, B, *z.shape[1:]), None, p)[0]
        z = bare.conv2(nn.functional.avg_pool2d(z.flatten(0, 1), 2))
        z = numba_lif.multi_step(z.view(T, B, *z.shape[1:]), None, p)[0]
        z = nn.functional.avg_pool2d(z.flatten(0, 1), 2).view(T, B, -1)
        return bare.fc(z).mean(0)
    steps["spike numba, nn layers + backend call (no input checks)"] = trainer(bare.parameters(), bare_forward)

    def torch_layers():
        torch.manual_seed(2)
        return nn.ModuleDict(dict(conv1=nn.Conv2d(C, c1, 3, padding=1), conv2=nn.Conv2d(c1, c2, 3, padding=1),
                                  fc=nn.Linear(n_flat, n_out)))
    if peers.get("snntorch"):
        snn, surrogate = peers["snntorch"]
        m = torch_layers()
        l1, l2 = snn.Leaky(beta=BETA, spike_grad=surrogate.atan()), snn.Leaky(beta=BETA, spike_grad=surrogate.atan())

        def snn_forward(xs):
            mem1, mem2, out = l1.init_leaky(), l2.init_leaky(), []
            for xt in xs.unbind(0):
                s1, mem1 = l1(m.conv1(xt), mem1)
                s2, mem2 = l2(m.conv2(nn.functional.avg_pool2d(s1, 2)), mem2)
                out.append(m.fc(nn.functional.avg_pool2d(s2, 2).flatten(1)))
            return torch.stack(out).mean(0)
        steps["snntorch"] = trainer(m.parameters(), snn_forward)
    if peers.get("spikingjelly"):
        neuron, functional, layer, surrogate = peers["spikingjelly"]
        torch.manual_seed(2)
        sj = nn.Sequential(layer.Conv2d(C, c1, 3, padding=1), _sj_lif(neuron, surrogate), layer.AvgPool2d(2),
                           layer.Conv2d(c1, c2, 3, padding=1), _sj_lif(neuron, surrogate), layer.AvgPool2d(2),
                           layer.Flatten(), layer.Linear(n_flat, n_out))
        functional.set_step_mode(sj, "m")
        steps["spikingjelly"] = trainer(sj.parameters(), lambda xs: sj(xs).mean(0), lambda: functional.reset_net(sj))
    if peers.get("norse"):
        norse = peers["norse"]
        m = torch_layers()
        k1, k2 = _norse_cell(norse), _norse_cell(norse)

        def norse_forward(xs):
            z = m.conv1(xs.flatten(0, 1))
            z = _loop(k1, z.view(T, B, *z.shape[1:]) * 10.0)
            z = m.conv2(nn.functional.avg_pool2d(z.flatten(0, 1), 2))
            z = _loop(k2, z.view(T, B, *z.shape[1:]) * 10.0)
            return m.fc(nn.functional.avg_pool2d(z.flatten(0, 1), 2).view(T, B, -1)).mean(0)
        steps["norse"] = trainer(m.parameters(), norse_forward)
    if peers.get("spyx") is not None:
        f = peers["spyx"].step(f"conv_{T}_{B}", "conv", **c)
        if f is not None:
            steps["spyx (jit, lax.scan, optax Adam)"] = f
    return steps


# --------------------------------------------------------------------------------------- floor
def step_floor(net: dict, d_h1: float, d_h2: float) -> dict:
    """A lower bound on the 700-256-256-20 train step on this machine, from rates measured now.

    FLOPs: every matmul of forward and backward, the sparse ones (an input's non-zeros only: layer 1's
    forward and weight gradient at ``p_in``, layers 2/3 at the hidden densities) counted at the
    *dense* sgemm rate measured here (the sparse kernels cannot beat it), the input gradients dense.
    Bytes: the LIF passes (forward reads x, writes spikes and membrane; backward reads the spike
    gradient and membrane, writes dx: 6 float32 ``[T, B, H]`` streams per layer) at the measured
    copy bandwidth. Adam (~250 k parameters) and the loss are left out (< 1 %).
    """
    T, B, n_in, h, n_out, p_in = (net[k] for k in ("T", "B", "n_in", "hidden", "n_out", "p_in"))
    R = T * B
    a, b = torch.randn(R, h), torch.randn(h, h)
    big = torch.ones(64 * 2**20 // 4)
    dst = torch.zeros_like(big)  # touched once: no page faults in the timed copies
    gemm, copy = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        gemm.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        dst.copy_(big)
        copy.append(time.perf_counter() - t0)
    gflops = 2 * R * h * h / min(gemm) / 1e9
    gbps = 2 * big.numel() * 4 / min(copy) / 1e9  # read + write
    dense = 2 * R * (n_in * h * 2 + h * h * 3 + h * n_out * 3)  # fwd + dW (+ dx for layers 2, 3)
    sparse = 2 * R * (p_in * n_in * h * 2 + d_h1 * h * h * 2 + h * h + d_h2 * h * n_out * 2 + h * n_out)
    lif_bytes = 2 * 6 * R * h * 4
    return {"sgemm_gflops": round(gflops, 1), "copy_gbps": round(gbps, 1), "hidden_density": [round(d_h1, 4), round(d_h2, 4)],
            "gflop_dense": round(dense / 1e9, 3), "gflop_sparse": round(sparse / 1e9, 3), "lif_mb": round(lif_bytes / 2**20, 1),
            "floor_dense_ms": round((dense / gflops / 1e9 + lif_bytes / gbps / 1e9) * 1e3, 2),
            "floor_sparse_ms": round((sparse / gflops / 1e9 + lif_bytes / gbps / 1e9) * 1e3, 2)}


def hidden_densities(model: "SpikeNet", net: dict) -> tuple[float, float]:
    """Spike densities of the two hidden layers of ``model`` (after the timed steps: activity grows
    from ~0 at initialisation during the first Adam steps) on the bench input."""
    m = model.seq
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(net["T"], net["B"], net["n_in"], generator=g) < net["p_in"]).float()
    with torch.no_grad():
        s1 = m[1](m[0](x)).spikes
        s2 = m[3](m[2](s1)).spikes
    return float(s1.mean()), float(s2.mean())


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
            r = f()
            dt = r if isinstance(r, float) else time.perf_counter() - t0
            times[name].append(dt)
            spent[name] += dt
    return {k: statistics.median(v) for k, v in times.items()}, {k: len(v) for k, v in times.items()}


def _is_peer(name: str) -> bool:
    return not name.startswith(("spike", INFO))


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
    ap.add_argument("--norse-compile", action="store_true",
                    help="also time Norse under torch.compile (compile time reported, excluded)")
    ap.add_argument("--no-spyx", action="store_true", help="skip the Spyx subprocess")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    t_start = time.perf_counter()
    peers: dict = {name: _try_import(name) for name in ("snntorch", "spikingjelly", "norse")}
    compile_times: dict = {}
    peers["norse_compile"] = compile_times if args.norse_compile and peers["norse"] else None
    peers["spyx"] = None if args.no_spyx else Spyx()
    if peers["spyx"] is not None and peers["spyx"].proc is None:
        peers["spyx"] = None
    for name, what in MODELS.items():
        print(f"# {name}: {what}")
    if not args.norse_compile:
        print("# norse torch.compile: not timed (--norse-compile; compile time excluded when it is)")
    omp = os.environ.get("OMP_WAIT_POLICY", "unset")
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"peers: {[k for k, v in peers.items() if v is not None]}, load average {load0:.1f}, OMP_WAIT_POLICY={omp}, "
          f"Adam {ADAM_KW or 'default'}")

    sizes = [(20, 4, 256), (50, 4, 1024)] if args.quick else LIF_SIZES
    reps, budget = (3, 5.0) if args.quick else (5, 12.0)
    result: dict = {"bench": "lif", "models": MODELS}
    for T, B, N in sizes:
        med, n = run_interleaved(lif_steps(T, B, N, peers), reps, budget, warmup=2)
        ratio, fastest = report(f"LIF forward+backward, T={T} B={B} N={N} (median)", med, n)
        key = f"T{T}_B{B}_N{N}"
        result[f"lif_{key}_ms"] = {k: round(v * 1e3, 2) for k, v in med.items()}
        result[f"lif_{key}_ratio"] = ratio
        result[f"lif_{key}_fastest_peer"] = fastest
    result["lif_ratio_vs_fastest_peer"] = result[f"lif_{key}_ratio"]  # the larger size
    result["lif_ratio_backend_call_vs_fastest_peer"] = _ratio(med, "spike numba, backend call (no input check)",
                                                              fastest)

    net = dict(NET, T=20, B=8) if args.quick else NET
    nsteps = net_steps(peers, net)
    med, n = run_interleaved(nsteps, reps, 2 * budget, warmup=2)
    ratio, fastest = report(f"Train step 700-256-256-20, T={net['T']} B={net['B']}, {net['p_in']:.0%} input "
                            f"spikes, CE on time-averaged readout, Adam{' (fused)' if ADAM_KW else ''}", med, n)
    result["net_ms"] = {k: round(v * 1e3, 2) for k, v in med.items()}
    result["net_ratio_vs_fastest_peer"] = ratio
    result["net_fastest_peer"] = fastest
    result["net_ratio_no_input_checks_vs_fastest_peer"] = _ratio(
        med, "spike numba, nn.Linear + backend call (no input checks)", fastest)
    # same kernels with and without the wrappers: the bare net whose first layer is what Linear(auto) picks
    same = BARE_KERNELS if _auto_fc1_is_sparse(net) else "spike numba, nn.Linear + backend call (no input checks)"
    result["net_wrapper_overhead"] = _ratio(med, "spike numba", same)
    result["net_wrapper_baseline"] = same
    result["net_ratio_bare_kernels_vs_fastest_peer"] = _ratio(med, BARE_KERNELS, fastest)
    floor = step_floor(net, *hidden_densities(nsteps["spike numba"].model, net))
    result["net_floor"] = floor
    result["net_ratio_vs_floor_sparse"] = round(med["spike numba"] * 1e3 / floor["floor_sparse_ms"], 2)
    print(f"floor (rates measured now: sgemm {floor['sgemm_gflops']} GFLOP/s, copy {floor['copy_gbps']} GB/s): "
          f"{floor['floor_sparse_ms']} ms with sparse-input matmuls, {floor['floor_dense_ms']} ms all dense; "
          f"ours {med['spike numba'] * 1e3:.1f} ms = {result['net_ratio_vs_floor_sparse']}x the sparse floor")

    conv = dict(CONV, T=5, B=4) if args.quick else CONV
    med, n = run_interleaved(conv_steps(peers, conv), reps, 2 * budget, warmup=2)
    ratio, fastest = report(f"Conv train step 2x32x32 -> conv16 -> conv32 -> linear10, T={conv['T']} B={conv['B']}, "
                            f"{conv['p_in']:.0%} input events, Adam", med, n)
    result["conv_net_ms"] = {k: round(v * 1e3, 2) for k, v in med.items()}
    result["conv_net_ratio_vs_fastest_peer"] = ratio
    result["conv_net_fastest_peer"] = fastest
    result["conv_net_wrapper_overhead"] = _ratio(med, "spike numba",
                                                 "spike numba, nn layers + backend call (no input checks)")
    if peers["spyx"] is not None:
        result["spyx_compile_s"] = getattr(peers["spyx"], "compile_s", {})
        result["spyx_versions"] = peers["spyx"].versions
        peers["spyx"].close()
    if compile_times:
        result["norse_torch_compile_s"] = compile_times
    result.update(threads=torch.get_num_threads(), omp_wait_policy=omp, load_avg_start=round(load0, 2),
                  load_avg_end=round(os.getloadavg()[0], 2), seconds=round(time.perf_counter() - t_start, 1))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
