"""SLTT / SLTT-K against an explicit oracle: BPTT through the reference LIF step with the state
detached between steps (the temporal gradient path removed), same weights, same input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spike.core.config import ConfigError, config_from_dict
from spike.neurons import IF, LI, LIF, UltraDLIF, UltraLIF
from spike.neurons import ultralif as U
from spike.neurons.lif import LIFState, discretize, init_state, lif_step
from spike.neurons.scan import scan
from spike.synapses import BatchNorm1d, Flatten, Linear, MeanMembrane, Sequential, SharedDropout
from spike.synapses.delays import DelayedLinear
from spike.train.losses import get_loss
from spike.train.recipe import get_strategy
from spike.train.sltt import SLTT, SLTTError, choose_steps, detach_state, sltt_backward
from spike.train.strategy import BPTT

T, B, N_IN = 12, 5, 10


def _detached_step(x, state, p):
    return lif_step(x, LIFState(state.v.detach(), state.s.detach()), p)


def reference_detached(model: Sequential, x, y, loss_fn, steps=None):
    """Whole-sequence autograd with the temporal path cut: the oracle for SLTT's gradient."""
    h = x
    for layer in model:
        if isinstance(layer, LIF):
            p = discretize(layer.params())
            s, _, v = scan(_detached_step, h, init_state(h[0].detach(), p), p, record=True)
            h = v if isinstance(layer, LI) else s
        elif isinstance(layer, (UltraLIF, UltraDLIF)):  # the pure step, state detached before every step
            step = U.ultradlif_step if isinstance(layer, UltraDLIF) else U.ultralif_step
            q = layer.params()
            h, _, _ = scan(lambda xt, st, pp: step(xt, U.UltraState(st.v.detach(), st.s.detach()), pp), h,
                           U.init_state(h[0].detach()), q)
        elif isinstance(layer, DelayedLinear):  # one step at a time, input history detached
            outs, st = [], None
            for xt in h.unbind(0):
                o, st, _ = layer(xt.unsqueeze(0), detach_state(st))
                outs.append(o)
            h = torch.cat(outs)
        else:
            h = layer(h)
    sel = range(h.shape[0]) if steps is None else steps
    loss = sum(loss_fn(h[t:t + 1], y) for t in sel) / len(sel)
    loss.backward()
    return h.detach()


def _net(neuron_kw: dict, backend: str = "reference", dtype=torch.float64) -> Sequential:
    torch.manual_seed(1)
    hid = 16
    kw = dict(neuron_kw)
    cls = kw.pop("cls", LIF)
    first = cls(backend=backend, **kw) if cls is IF else cls(tau=5.0, backend=backend, **kw)
    return Sequential(Linear(N_IN, hid), first, Linear(hid, hid), LIF(tau=3.0, backend=backend),
                      Linear(hid, 4), LI(tau=4.0, backend=backend)).to(dtype)


def _data(dtype=torch.float64):
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(T, B, N_IN, generator=g, dtype=dtype) < 0.4).to(dtype) * 2.0
    y = torch.randint(0, 4, (B,), generator=g)
    return x, y


def _grads(model):
    return [p.grad.clone() for p in model.parameters()]


def _max_diff(a, b):
    return max(float((u - v).abs().max()) for u, v in zip(a, b))


NEURONS = [
    dict(),
    dict(reset="to_value"),
    dict(reset_timing="deferred"),
    dict(detach_reset=True),
    dict(learn_tau=True, shape=16),
    dict(recurrent=True, shape=16),
    dict(cls=IF),
    dict(discretization="euler", decay_input=True),
]


@pytest.mark.parametrize("backend", ["reference", "auto"])
@pytest.mark.parametrize("neuron", NEURONS, ids=lambda d: ",".join(f"{k}={getattr(v, '__name__', v)}"
                                                                   for k, v in d.items()) or "lif")
def test_sltt_gradient_equals_detached_bptt(neuron, backend):
    model = _net(neuron, backend)
    x, y = _data()
    loss_fn = get_loss("per_step")
    model.zero_grad()
    out_ref = reference_detached(model, x, y, loss_fn)
    g_ref = _grads(model)
    assert sum(float(g.abs().sum()) for g in g_ref) > 0
    for chunk in (1, 5, T):
        model.zero_grad()
        loss, out = sltt_backward(model, x, y, loss_fn, chunk=chunk)
        assert _max_diff(_grads(model), g_ref) < 1e-6, chunk
        assert torch.equal(out, out_ref)  # forward values unchanged by the detaching
        assert math.isclose(loss, float(loss_fn(out_ref, y)), rel_tol=1e-9)


def _float32_sltt_vs_oracle(model, chunk: int) -> float:
    """Largest gradient difference between SLTT and the detached oracle for a float32 model."""
    x, y = _data(torch.float32)
    loss_fn = get_loss("per_step")
    model.zero_grad()
    reference_detached(model, x, y, loss_fn)
    g_ref = _grads(model)
    model.zero_grad()
    sltt_backward(model, x, y, loss_fn, chunk=chunk)
    return _max_diff(_grads(model), g_ref)


def test_sltt_float32_numba_matches_oracle():
    assert _float32_sltt_vs_oracle(_net({}, "auto", torch.float32), chunk=4) < 1e-6


@pytest.mark.parametrize("neuron", [dict(), dict(reset_timing="deferred"), dict(learn_tau=True, shape=16)],
                         ids=["lif", "deferred", "learn_tau"])
def test_sltt_triton_interpreted_matches_oracle(monkeypatch, neuron):
    """The Triton backend's spatial kernel (Triton's CPU interpreter) through the SLTT trainer."""
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert _float32_sltt_vs_oracle(_net(neuron, "triton", torch.float32), chunk=5) < 1e-5


def test_sltt_differs_from_bptt():
    """The oracle is not vacuous: full BPTT (temporal path kept) gives another gradient."""
    model = _net({}, "reference")
    x, y = _data()
    loss_fn = get_loss("per_step")
    model.zero_grad()
    loss_fn(model(x).out, y).backward()
    g_bptt = _grads(model)
    model.zero_grad()
    sltt_backward(model, x, y, loss_fn)
    assert _max_diff(_grads(model), g_bptt) > 1e-3


def test_sltt_k_equal_t_is_sltt():
    model = _net({}, "auto")
    x, y = _data()
    loss_fn = get_loss("per_step")
    model.zero_grad()
    sltt_backward(model, x, y, loss_fn)
    g_sltt = _grads(model)
    model.zero_grad()
    sltt_backward(model, x, y, loss_fn, k=T)
    assert _max_diff(_grads(model), g_sltt) < 1e-12


@pytest.mark.parametrize("chunk", [1, 4])
def test_sltt_k_only_chosen_steps_contribute(chunk):
    model = _net({}, "reference")
    x, y = _data()
    loss_fn = get_loss("per_step")
    steps = [2, 7, 8]
    model.zero_grad()
    reference_detached(model, x, y, loss_fn, steps=steps)
    g_ref = _grads(model)
    model.zero_grad()
    sltt_backward(model, x, y, loss_fn, steps=steps, chunk=chunk)
    assert _max_diff(_grads(model), g_ref) < 1e-6
    # changing the input only after the last chosen step leaves the gradient unchanged
    x2 = x.clone()
    x2[9:] = 5.0 - x2[9:]
    model.zero_grad()
    sltt_backward(model, x2, y, loss_fn, steps=steps, chunk=chunk)
    assert _max_diff(_grads(model), g_ref) < 1e-12


def test_sltt_k_draws_k_distinct_steps():
    g = torch.Generator().manual_seed(0)
    for k in (1, 3, T):
        s = choose_steps(T, k, g)
        assert len(s) == k == len(set(s)) and s == sorted(s) and 0 <= s[0] and s[-1] < T
    draws = {tuple(choose_steps(T, 2, g)) for _ in range(50)}
    assert len(draws) > 10  # random, not always the same steps


def test_sltt_with_delays_matches_detached_reference():
    torch.manual_seed(3)
    model = Sequential(DelayedLinear(N_IN, 12, max_delay=3), LIF(tau=5.0), Linear(12, 4), LI(tau=4.0)).double()
    x, y = _data()
    loss_fn = get_loss("per_step")
    model.zero_grad()
    reference_detached(model, x, y, loss_fn)
    g_ref = _grads(model)
    model.zero_grad()
    sltt_backward(model, x, y, loss_fn, chunk=5)
    assert _max_diff(_grads(model), g_ref) < 1e-6
    assert float(model[0].pos.grad.abs().sum()) > 0  # delay positions still learn


@pytest.mark.parametrize("cls", [UltraLIF, UltraDLIF])
def test_sltt_with_ultralif_matches_detached_reference(cls):
    """UltraLIF / UltraDLIF (learnable temperature) are stepped with their state detached: the gradient
    (incl. eps and tau) equals the oracle's, and differs from full BPTT's."""
    torch.manual_seed(5)
    model = Sequential(Linear(N_IN, 12), cls(learn_eps=True), Linear(12, 4), LI(tau=4.0)).double()
    x, y = _data()
    loss_fn = get_loss("per_step")
    model.zero_grad()
    reference_detached(model, x, y, loss_fn)
    g_ref = _grads(model)
    model.zero_grad()
    sltt_backward(model, x, y, loss_fn, chunk=4)
    assert _max_diff(_grads(model), g_ref) < 1e-6
    model.zero_grad()
    loss_fn(model(x).out, y).backward()
    assert _max_diff(_grads(model), g_ref) > 1e-4


def test_dropout_mask_shared_across_chunks_like_bptt():
    torch.manual_seed(4)
    model = Sequential(Linear(N_IN, 16), LIF(tau=5.0), SharedDropout(0.5), Linear(16, 4), LI(tau=4.0)).double()
    x, y = _data()
    torch.manual_seed(9)
    out_full = model(x).out
    torch.manual_seed(9)
    _, out = sltt_backward(model, x, y, get_loss("per_step"), chunk=3)
    assert torch.equal(out, out_full.detach())


def test_strategy_step_updates_and_reports_loss():
    model = _net({}, "auto", torch.float32)
    x, y = _data(torch.float32)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        full = model(x).out  # [T, B, 4] before the update
    res = SLTT(k=3, chunk=2).train_step(model, x, y, get_loss("per_step"), opt, grad_clip=1.0)
    assert res.out.shape == (1, B, 4) and math.isfinite(res.loss)  # time-reduced: nothing grows with T
    assert torch.allclose(res.out[0], full.mean(0), atol=1e-6)
    loss, mx = sltt_backward(model, x, y, get_loss("per_step"), chunk=5, reduce="max")
    with torch.no_grad():
        assert torch.allclose(mx[0], model(x).out.amax(0), atol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert SLTT().name == "sltt" and SLTT(k=2).name == "sltt_k"


def _peak_saved_bytes(monkeypatch, run) -> int:
    """Largest number of bytes autograd holds for backward between two ``backward()`` calls."""
    live, peak = [0], [0]

    def pack(t):
        live[0] += t.numel() * t.element_size()
        peak[0] = max(peak[0], live[0])
        return t

    orig = torch.Tensor.backward

    def backward(self, *a, **k):
        orig(self, *a, **k)
        live[0] = 0  # the graph (and what it saved) is freed

    monkeypatch.setattr(torch.Tensor, "backward", backward)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return peak[0]


def test_sltt_graph_does_not_grow_with_t(monkeypatch):
    """SLTT keeps one chunk's graph at a time: what autograd saves does not depend on T (BPTT's does)."""
    model = _net({}, "auto", torch.float32)
    loss_fn = get_loss("per_step")
    y = torch.zeros(B, dtype=torch.long)
    xs = {n: torch.rand(n, B, N_IN) for n in (8, 64)}
    sltt = {n: _peak_saved_bytes(monkeypatch, lambda: sltt_backward(model, xs[n], y, loss_fn, chunk=2))
            for n in xs}
    bptt = {n: _peak_saved_bytes(monkeypatch, lambda: loss_fn(model(xs[n]).out, y).backward()) for n in xs}
    assert sltt[8] == sltt[64] > 0
    assert bptt[64] > 6 * bptt[8]  # BPTT's saved tensors grow with T (x8 steps)
    # 2 steps against 64: the per-step share is 1/32; constant terms (parameters' views) leave < 1/8
    assert sltt[64] < bptt[64] / 8


def test_sltt_k_builds_graphs_only_for_chosen_steps(monkeypatch):
    """With chunk > 1, SLTT-K still holds the graph of single chosen steps only (others run without one)."""
    model = _net({}, "auto", torch.float32)
    loss_fn = get_loss("per_step")
    x, y = torch.rand(24, B, N_IN), torch.zeros(B, dtype=torch.long)
    one_step = _peak_saved_bytes(monkeypatch, lambda: sltt_backward(model, x, y, loss_fn, chunk=1))
    k_steps = _peak_saved_bytes(monkeypatch, lambda: sltt_backward(model, x, y, loss_fn, steps=[3, 11, 17], chunk=8))
    chunked = _peak_saved_bytes(monkeypatch, lambda: sltt_backward(model, x, y, loss_fn, chunk=8))
    assert k_steps == one_step and chunked > 3 * one_step  # an 8-step graph vs 1-step graphs


def test_bad_settings_raise_clear_errors():
    model = _net({}, "auto", torch.float32)
    x, y = _data(torch.float32)
    with pytest.raises(SLTTError, match="sltt_k"):
        sltt_backward(model, x, y, get_loss("per_step"), k=T + 1)
    with pytest.raises(SLTTError, match="sltt_k"):
        SLTT(k=0)
    with pytest.raises(SLTTError, match="sltt_chunk"):
        SLTT(chunk=0)
    with pytest.raises(SLTTError, match="sltt_k = 30 exceeds"):
        SLTT(k=30).check_time_steps(20)
    with pytest.raises(SLTTError, match="reduces over time"):
        sltt_backward(Sequential(Linear(N_IN, 4), LI(), MeanMembrane()), x, y, get_loss("per_step"))
    with pytest.raises(SLTTError, match="Sequential"):
        sltt_backward(nn.Linear(3, 3), x, y, get_loss("per_step"))


def _cfg(**train):
    return config_from_dict({"train": train})


def test_config_errors_name_the_setting():
    with pytest.raises(ConfigError, match="sltt_k >= 1"):
        get_strategy(_cfg(method="sltt_k", loss="per_step"))
    with pytest.raises(ConfigError, match="sltt_k >= 1"):
        get_strategy(_cfg(method="sltt_k", loss="per_step", sltt_k=-1))
    with pytest.raises(ConfigError, match="loss = 'count'"):
        get_strategy(_cfg(method="sltt", loss="count"))
    with pytest.raises(ConfigError, match=r'\[train\] method = "nope": must be one of .*sltt'):
        _cfg(method="nope")  # refused when the config is read, before any strategy is built
    with pytest.raises(ConfigError, match="sltt_chunk"):
        get_strategy(_cfg(method="sltt", loss="per_step", sltt_chunk=0))
    s = get_strategy(_cfg(method="sltt_k", loss="per_step", sltt_k=2, sltt_chunk=4))
    assert isinstance(s, SLTT) and s.k == 2 and s.chunk == 4
    assert isinstance(get_strategy(_cfg(method="sltt", loss="mean_membrane")), SLTT)  # per-step form
    assert isinstance(get_strategy(_cfg(method="bptt")), BPTT)


def test_batchnorm_runs_per_chunk():
    torch.manual_seed(5)
    model = Sequential(Flatten(), Linear(N_IN, 16), BatchNorm1d(16), LIF(tau=5.0), Linear(16, 4), LI()).double()
    x, y = _data()
    model.zero_grad()
    loss, out = sltt_backward(model, x, y, get_loss("per_step"), chunk=T)
    # with chunk = T the statistics are the whole sequence's, as in the plain forward
    assert torch.allclose(out, model(x).out.detach(), atol=1e-12)
