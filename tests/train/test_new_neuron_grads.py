"""SLTT / SLTT-K gradients for networks of CubaLIF and SE-adLIF against an explicit oracle.

SLTT (spike.train.sltt) drops the temporal gradient path: for a neuron without a fused spatial kernel
it steps the layer one step at a time with its whole state detached before every step. The oracle here
is independent of that code: one whole-sequence autograd pass through the *reference* step functions
(:func:`spike.neurons.cuba.cuba_step`, :func:`spike.neurons.adlif.adlif_step`) with every state field
detached before each step, and through :func:`spike.neurons.lif.lif_step` likewise for the LI readout,
the construction that tests/train/test_sltt.py uses for LIF. Every parameter (synaptic weights,
learnable time constants, learnable ``a``/``b``) must get the oracle's gradient, on the reference and
on the numba backend (named: ``auto`` prefers the reference for SLTT's one-step calls), for several chunk sizes and for SLTT-K's chosen steps.

A consequence the tests pin down: SE-adLIF's adaptation parameters (``tau_w``, ``a``, ``b``) act on
the output only through ``w_{t-1}`` of the next step, i.e. through the temporal path that SLTT cuts, so
under SLTT they get exactly zero gradient (BPTT does train them).
"""

from __future__ import annotations

import math

import pytest
import torch

from spike.neurons import LI, LIF, AdLIF, CubaLIF
from spike.neurons import adlif as A
from spike.neurons import cuba as C
from spike.neurons.lif import LIFState, init_state, lif_step
from spike.neurons.lif import discretize as lif_discretize
from spike.neurons.scan import scan
from spike.synapses import Linear, Sequential
from spike.train.losses import get_loss
from spike.train.sltt import sltt_backward

T, B, N_IN, HID = 12, 5, 10, 16


def _detached(step, state_cls):
    """``step`` applied to the state with every field detached: the temporal path removed."""
    return lambda x, st, p: step(x, state_cls(*(t.detach() for t in st)), p)


def oracle(model: Sequential, x, y, loss_fn, steps=None):
    """Whole-sequence autograd through the reference steps, state detached before every step."""
    h = x
    for layer in model:
        if isinstance(layer, CubaLIF):
            p = C.discretize(layer.params())
            h, _, _ = scan(_detached(C.cuba_step, C.CubaState), h, C.init_state(h[0].detach()), p)
        elif isinstance(layer, AdLIF):
            p = A.discretize(layer.params())
            h, _, _ = scan(_detached(A.adlif_step, A.AdLIFState), h, A.init_state(h[0].detach()), p)
        elif isinstance(layer, LIF):
            p = lif_discretize(layer.params())
            s, _, v = scan(_detached(lif_step, LIFState), h, init_state(h[0].detach(), p), p, record=True)
            h = v if isinstance(layer, LI) else s
        else:
            h = layer(h)
    sel = range(h.shape[0]) if steps is None else steps
    (sum(loss_fn(h[t:t + 1], y) for t in sel) / len(sel)).backward()
    return h.detach()


def _net(cls, kw: dict, backend: str, dtype=torch.float64) -> Sequential:
    torch.manual_seed(1)
    neuron = cls(backend=backend, shape=HID, **kw)
    with torch.no_grad():  # per-neuron learnable parameters that differ from neuron to neuron
        for name in ("log_tau", "log_tau_syn", "log_tau_w", "a_raw", "b_raw"):
            if getattr(neuron, name, None) is not None:
                getattr(neuron, name).add_(0.2 * torch.randn(HID))
    return Sequential(Linear(N_IN, HID), neuron, Linear(HID, 4), LI(tau=4.0, backend=backend)).to(dtype)


def _data(dtype=torch.float64):
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(T, B, N_IN, generator=g, dtype=dtype) < 0.5).to(dtype) * 2.5
    return x, torch.randint(0, 4, (B,), generator=g)


def _grads(model):
    return {n: torch.zeros_like(p) if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}


#: parameters that act only through the adaptation w_t, which reaches the output only through the next
#: step's (detached) state: SLTT gives them no gradient at all (nor does the oracle)
ADAPTATION_ONLY = ("log_tau_w", "a_raw", "b_raw")


def _max_diff(a, b):
    return max(float((a[n] - b[n]).abs().max()) for n in a)


NEURONS = [
    (CubaLIF, dict(tau=5.0, tau_syn=3.0)),
    (CubaLIF, dict(tau=5.0, tau_syn=3.0, learn_tau=True, reset_timing="deferred")),
    (CubaLIF, dict(tau=5.0, tau_syn=3.0, learn_tau=True, reset="to_value", detach_reset=True)),
    (AdLIF, dict(tau=2.0, tau_w=30.0, v_th=0.4)),
    (AdLIF, dict(tau=2.0, tau_w=30.0, v_th=0.4, learn_tau=True, learn_ab=True)),
    (AdLIF, dict(tau=2.0, tau_w=30.0, v_th=0.4, learn_tau=True, learn_ab=True, reset="subtract", detach_reset=True)),
]
IDS = [f"{c.__name__}-" + (",".join(f"{k}={v}" for k, v in kw.items() if k not in ("tau", "tau_syn", "tau_w"))
                           or "plain") for c, kw in NEURONS]


@pytest.mark.parametrize("backend", ["reference", "numba"])
@pytest.mark.parametrize("cls,kw", NEURONS, ids=IDS)
def test_sltt_gradient_equals_detached_oracle(cls, kw, backend):
    model = _net(cls, kw, backend)
    x, y = _data()
    loss_fn = get_loss("per_step")
    model.zero_grad()
    out_ref = oracle(model, x, y, loss_fn)
    g_ref = _grads(model)
    rate = float(model[:2](x).out.detach().mean())  # the neuron layer's firing rate
    assert 0.05 < rate < 0.95, rate
    dead = [n for n, g in g_ref.items() if not g.any()]
    assert dead == [n for n in g_ref if n.endswith(ADAPTATION_ONLY)], dead  # everything else is reached
    for chunk in (1, 5, T):
        model.zero_grad()
        loss, out = sltt_backward(model, x, y, loss_fn, chunk=chunk)
        assert _max_diff(_grads(model), g_ref) < 1e-9, chunk
        assert torch.equal(out, out_ref)  # forward values unchanged by the detaching
        assert math.isclose(loss, float(loss_fn(out_ref, y)), rel_tol=1e-9)


@pytest.mark.parametrize("cls,kw", [NEURONS[1], NEURONS[4]], ids=[IDS[1], IDS[4]])
def test_sltt_k_gradient_equals_oracle_on_the_chosen_steps(cls, kw):
    model = _net(cls, kw, "numba")
    x, y = _data()
    loss_fn = get_loss("per_step")
    steps = [1, 6, 7, 10]
    model.zero_grad()
    oracle(model, x, y, loss_fn, steps=steps)
    g_ref = _grads(model)
    model.zero_grad()
    sltt_backward(model, x, y, loss_fn, steps=steps, chunk=3)
    assert _max_diff(_grads(model), g_ref) < 1e-9


@pytest.mark.parametrize("cls,kw", [NEURONS[1], NEURONS[4]], ids=[IDS[1], IDS[4]])
def test_float32_numba_sltt_matches_oracle(cls, kw):
    model = _net(cls, kw, "numba", torch.float32)
    x, y = _data(torch.float32)
    loss_fn = get_loss("per_step")
    model.zero_grad()
    oracle(model, x, y, loss_fn)
    g_ref = _grads(model)
    model.zero_grad()
    sltt_backward(model, x, y, loss_fn, chunk=4)
    scale = max(float(g.abs().max()) for g in g_ref.values())
    assert _max_diff(_grads(model), g_ref) < 1e-5 * scale


@pytest.mark.parametrize("cls,kw", [NEURONS[1], NEURONS[4]], ids=[IDS[1], IDS[4]])
def test_oracle_is_not_bptt(cls, kw):
    """The oracle is not vacuous: full BPTT (temporal path kept) gives another gradient."""
    model = _net(cls, kw, "reference")
    x, y = _data()
    loss_fn = get_loss("per_step")
    model.zero_grad()
    loss_fn(model(x).out, y).backward()
    g_bptt = _grads(model)
    model.zero_grad()
    oracle(model, x, y, loss_fn)
    assert _max_diff(_grads(model), g_bptt) > 1e-4
    if cls is AdLIF:  # BPTT trains the adaptation that SLTT cannot reach
        assert all(float(g_bptt[n].abs().sum()) > 0 for n in g_bptt if n.endswith(ADAPTATION_ONLY))
