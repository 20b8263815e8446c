"""Our reference LIF equals snnTorch, SpikingJelly and Norse under the mapping in ``spike.neurons.lif``.

Mappings (beta is the per-step decay, θ the threshold):

* snnTorch ``Leaky(beta=b, threshold=θ, reset_mechanism="subtract"|"zero")`` ==
  ``LIF(tau=-dt/ln b, reset="subtract"|"to_value", v_reset=0, reset_timing="deferred")``.
  snnTorch detaches its reset signal, so gradients match ours with ``detach_reset=True``.
* SpikingJelly ``LIFNode(tau=τ, decay_input=d, v_reset=r)`` == ``LIF(tau=τ·dt, discretization="euler",
  decay_input=d, reset_timing="immediate")`` with ``reset="to_value", v_reset=r, v_rest=r`` or
  ``reset="subtract", v_rest=0`` for ``r=None``.
* Norse ``LIFBoxCell(LIFBoxParameters(tau_mem_inv=1/τ, v_leak=l, v_th=θ, v_reset=r), dt)`` integrates
  ``v += dt/τ (l - v + i)`` = ``l + (1 - dt/τ)(v - l) + (dt/τ) i``, fires on ``v - θ > 0`` and sets
  ``v = (1-z) v + z r`` at once, starting from ``v = l``. That is ``LIF(tau=τ, dt, discretization="euler",
  decay_input=True, v_rest=l, v_th=θ, reset="to_value", v_reset=r, reset_timing="immediate")``;
  Norse's ``method="triangle", alpha=a`` surrogate is ``a·max(0, 1-|x|)`` = our ``Triangle(1)`` for a=1.

Peers threshold with ``>`` (snnTorch, Norse) or ``>=`` (SpikingJelly, us); that only matters for a
membrane exactly at threshold, which random float inputs never hit.
"""

from __future__ import annotations

import math

import pytest
import torch

from spike.neurons import LIF
from spike.surrogate import ATan, Sigmoid, Triangle

pytestmark = pytest.mark.peers

T, B, N = 50, 4, 32
REF = "reference"


def _peer(module: str):
    """Import a peer or skip; SpikingJelly/Norse may raise RuntimeError/OSError rather than ImportError."""
    try:
        return __import__(module, fromlist=["_"])
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"{module} unavailable: {type(e).__name__}: {e}")


def _inputs(scale: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, B, N, generator=g) * scale


def _weights(seed: int = 1) -> torch.Tensor:
    return torch.randn(T, B, N, generator=torch.Generator().manual_seed(seed))


def _assert_same(spikes, v, ours, min_rate=0.1):
    rate = ours.spikes.mean().item()
    assert min_rate < rate < 0.9, f"firing rate {rate} does not exercise the reset"
    assert torch.equal(spikes.float(), ours.spikes)
    torch.testing.assert_close(v, ours.v, rtol=0, atol=1e-6)


# --- snnTorch ----------------------------------------------------------------------------------------

def _snntorch_run(x, beta, threshold, mech, spike_grad=None):
    snn = _peer("snntorch")
    kw = {} if spike_grad is None else {"spike_grad": spike_grad}
    leaky = snn.Leaky(beta=beta, threshold=threshold, reset_mechanism=mech, **kw)
    mem = torch.zeros_like(x[0])
    spk, mems = [], []
    for t in range(x.shape[0]):
        s, mem = leaky(x[t], mem)
        spk.append(s)
        mems.append(mem)
    return torch.stack(spk), torch.stack(mems)


@pytest.mark.parametrize("beta,threshold,scale", [(0.9, 1.0, 0.8), (0.5, 0.7, 1.2)])
@pytest.mark.parametrize("mech,reset", [("subtract", "subtract"), ("zero", "to_value")])
def test_snntorch_leaky(mech, reset, beta, threshold, scale):
    x = _inputs(scale)
    spk, mem = _snntorch_run(x, beta, threshold, mech)
    ours = LIF(tau=-1.0 / math.log(beta), dt=1.0, v_th=threshold, reset=reset, v_reset=0.0,
               reset_timing="deferred", backend=REF)(x, record=True)
    _assert_same(spk, mem, ours)


@pytest.mark.parametrize("mech,reset", [("subtract", "subtract"), ("zero", "to_value")])
def test_snntorch_leaky_gradients(mech, reset):
    snn_sg = _peer("snntorch.surrogate")
    x0, w = _inputs(0.8), _weights()
    x_peer, x_ours = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    spk, mem = _snntorch_run(x_peer, 0.9, 1.0, mech, spike_grad=snn_sg.atan(alpha=2.0))
    ours = LIF(tau=-1.0 / math.log(0.9), v_th=1.0, reset=reset, reset_timing="deferred", detach_reset=True,
               surrogate=ATan(2.0), backend=REF)(x_ours, record=True)
    ((spk + 0.1 * mem) * w).sum().backward()
    ((ours.spikes + 0.1 * ours.v) * w).sum().backward()
    assert x_ours.grad.abs().max() > 0.1
    torch.testing.assert_close(x_ours.grad, x_peer.grad, rtol=1e-5, atol=1e-5)


# --- SpikingJelly ------------------------------------------------------------------------------------

def _sj_run(x, tau, decay_input, v_reset, v_th=1.0, **kw):
    neuron = _peer("spikingjelly.activation_based.neuron")
    node = neuron.LIFNode(tau=tau, decay_input=decay_input, v_threshold=v_th, v_reset=v_reset,
                          step_mode="m", store_v_seq=True, **kw)
    return node(x), node.v_seq


def _ours_sj(tau, decay_input, v_reset, v_th=1.0, **kw):
    reset = dict(reset="subtract", v_rest=0.0) if v_reset is None else \
        dict(reset="to_value", v_reset=v_reset, v_rest=v_reset)
    return LIF(tau=tau * 1.0, dt=1.0, discretization="euler", decay_input=decay_input, v_th=v_th,
               reset_timing="immediate", backend=REF, **reset, **kw)


@pytest.mark.parametrize("v_reset", [None, 0.0, -0.3, 0.4], ids=["soft", "hard0", "hard-0.3", "hard0.4"])
@pytest.mark.parametrize("decay_input", [True, False])
def test_spikingjelly_lifnode(decay_input, v_reset):
    tau = 2.5
    x = _inputs(3.0 if decay_input else 0.9)
    spikes, v_seq = _sj_run(x, tau, decay_input, v_reset)
    ours = _ours_sj(tau, decay_input, v_reset)(x, record=True)
    _assert_same(spikes, v_seq, ours)


@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("v_reset", [None, 0.0])
def test_spikingjelly_lifnode_gradients(v_reset, detach_reset):
    sj_sg = _peer("spikingjelly.activation_based.surrogate")
    x0, w = _inputs(3.0), _weights()
    x_peer, x_ours = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    spikes, v_seq = _sj_run(x_peer, 2.5, True, v_reset, surrogate_function=sj_sg.Sigmoid(alpha=4.0),
                            detach_reset=detach_reset)
    ours = _ours_sj(2.5, True, v_reset, surrogate=Sigmoid(4.0), detach_reset=detach_reset)(x_ours, record=True)
    ((spikes + 0.1 * v_seq) * w).sum().backward()
    ((ours.spikes + 0.1 * ours.v) * w).sum().backward()
    assert x_ours.grad.abs().max() > 0.1
    torch.testing.assert_close(x_ours.grad, x_peer.grad, rtol=1e-5, atol=1e-5)


# --- the peers disagree with each other -------------------------------------------------------------

def test_snntorch_and_spikingjelly_disagree_on_subtract_reset():
    """Same leak (beta = 1 - 1/tau), same input, both "subtract": snnTorch subtracts θ one step late
    (after the decay), SpikingJelly subtracts at once (so θ decays too). Their spikes differ; each
    equals our LIF with the matching ``reset_timing``."""
    tau, x = 10.0, _inputs(0.5)
    beta = 1.0 - 1.0 / tau
    snn_spk, snn_mem = _snntorch_run(x, beta, 1.0, "subtract")
    sj_spk, sj_v = _sj_run(x, tau, False, None)
    agreement = (snn_spk == sj_spk).float().mean().item()
    assert 0.5 < agreement < 0.99
    deferred = LIF(tau=tau, discretization="euler", reset_timing="deferred", backend=REF)(x, record=True)
    immediate = LIF(tau=tau, discretization="euler", reset_timing="immediate", backend=REF)(x, record=True)
    _assert_same(snn_spk, snn_mem, deferred)
    _assert_same(sj_spk, sj_v, immediate)
    assert (deferred.spikes == immediate.spikes).float().mean().item() == agreement


# --- Norse -------------------------------------------------------------------------------------------

def _norse_run(x, tau, dt, v_leak, v_th, v_reset, alpha=1.0):
    nt = _peer("norse.torch")
    cell_cls = getattr(nt, "LIFBoxFeedForwardCell", None) or getattr(nt, "LIFBoxCell", None)
    if cell_cls is None:
        pytest.skip("norse has no LIFBox cell")
    p = nt.LIFBoxParameters(tau_mem_inv=torch.as_tensor(1.0 / tau), v_leak=torch.as_tensor(v_leak),
                            v_th=torch.as_tensor(v_th), v_reset=torch.as_tensor(v_reset),
                            method="triangle", alpha=alpha)
    cell = cell_cls(p, dt=dt)
    state, zs, vs = None, [], []
    for t in range(x.shape[0]):
        z, state = cell(x[t], state)
        zs.append(z)
        vs.append(state.v)
    return torch.stack(zs), torch.stack(vs)


@pytest.mark.parametrize("v_leak,v_reset", [(0.0, 0.0), (0.2, -0.1)])
def test_norse_lifbox(v_leak, v_reset):
    tau, dt = 5e-3, 1e-3
    x0, w = _inputs(8.0), _weights()
    x_peer, x_ours = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    z, v = _norse_run(x_peer, tau, dt, v_leak, 1.0, v_reset)
    ours = LIF(tau=tau, dt=dt, discretization="euler", decay_input=True, v_rest=v_leak, v_th=1.0,
               reset="to_value", v_reset=v_reset, reset_timing="immediate", surrogate=Triangle(1.0),
               backend=REF)(x_ours, record=True)
    _assert_same(z, v, ours)
    ((z + 0.1 * v) * w).sum().backward()
    ((ours.spikes + 0.1 * ours.v) * w).sum().backward()
    assert x_ours.grad.abs().max() > 0.01
    torch.testing.assert_close(x_ours.grad, x_peer.grad, rtol=1e-5, atol=1e-6)
