"""CUBA-LIF (spike.neurons.cuba): snnTorch Synaptic equivalence, hand traces, causality, state, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from spike.neurons import LIF, CubaLIF, CubaState
from spike.neurons.cuba import CubaParams, discretize
from spike.surrogate import ATan, Sigmoid, Triangle


def _seq(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype).reshape(-1, 1, 1)


# --- snnTorch Synaptic -------------------------------------------------------------------------------

def _synaptic_run(x, alpha, beta, threshold, mech, spike_grad=None):
    try:
        import snntorch as snn
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"snntorch unavailable: {e}")
    kw = {} if spike_grad is None else {"spike_grad": spike_grad}
    lay = snn.Synaptic(alpha=alpha, beta=beta, threshold=threshold, reset_mechanism=mech, **kw)
    syn, mem = torch.zeros_like(x[0]), torch.zeros_like(x[0])
    spk, mems, syns = [], [], []
    for t in range(x.shape[0]):
        s, syn, mem = lay(x[t], syn, mem)
        spk.append(s)
        mems.append(mem)
        syns.append(syn)
    return torch.stack(spk), torch.stack(mems), torch.stack(syns)


def _ours_for_snntorch(alpha, beta, threshold, reset, **kw):
    return CubaLIF(tau=-1.0 / math.log(beta), tau_syn=-1.0 / math.log(alpha), dt=1.0, v_th=threshold, reset=reset,
                   v_reset=0.0, reset_timing="deferred", **kw)


@pytest.mark.parametrize("alpha,beta,threshold,scale", [(0.8, 0.9, 1.0, 0.35), (0.5, 0.7, 0.6, 0.5)])
@pytest.mark.parametrize("mech,reset", [("subtract", "subtract"), ("zero", "to_value")])
def test_equals_snntorch_synaptic(mech, reset, alpha, beta, threshold, scale):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(60, 4, 16, generator=g) * scale
    spk, mem, syn = _synaptic_run(x, alpha, beta, threshold, mech)
    ours = _ours_for_snntorch(alpha, beta, threshold, reset)(x, record=True)
    rate = ours.spikes.mean().item()
    assert 0.05 < rate < 0.9, f"firing rate {rate} does not exercise the reset"
    assert torch.equal(spk.float(), ours.spikes)
    torch.testing.assert_close(mem, ours.v, rtol=0, atol=1e-6)
    torch.testing.assert_close(syn[-1], ours.state.i, rtol=0, atol=1e-6)


@pytest.mark.parametrize("mech,reset", [("subtract", "subtract"), ("zero", "to_value")])
def test_gradients_equal_snntorch_synaptic_with_detached_reset(mech, reset):
    try:
        from snntorch import surrogate as sg
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"snntorch unavailable: {e}")
    g = torch.Generator().manual_seed(1)
    x0, w = torch.rand(40, 3, 8, generator=g) * 0.4, torch.randn(40, 3, 8, generator=g)
    xa, xb = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    spk, mem, _ = _synaptic_run(xa, 0.8, 0.9, 1.0, mech, spike_grad=sg.atan(alpha=2.0))
    ours = _ours_for_snntorch(0.8, 0.9, 1.0, reset, detach_reset=True, surrogate=ATan(2.0))(xb, record=True)
    ((spk + 0.1 * mem) * w).sum().backward()
    ((ours.spikes + 0.1 * ours.v) * w).sum().backward()
    assert xb.grad.abs().max() > 0.1
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-5, atol=1e-5)


# --- hand traces and limits -------------------------------------------------------------------------

def _hand(x, alpha, beta, th, reset, timing):
    """The module equations with plain floats."""
    v = i = s_prev = 0.0
    spikes, vs = [], []
    for xt in x:
        i = alpha * i + xt
        h = beta * v + i
        if timing == "deferred":
            if s_prev:
                h = h - th if reset == "subtract" else 0.0
            s = float(h >= th)
            v = h
        else:
            s = float(h >= th)
            v = (h - s * th) if reset == "subtract" else h * (1 - s)
        s_prev = s
        spikes.append(s)
        vs.append(v)
    return spikes, vs


@pytest.mark.parametrize("timing", ["immediate", "deferred"])
@pytest.mark.parametrize("reset", ["subtract", "to_value"])
def test_hand_trace(reset, timing):
    x = [0.5, 0.25, 0.0, 0.75, 0.0, 0.0, 1.5, 0.0]
    alpha, beta = 0.5, 0.75
    spikes, vs = _hand(x, alpha, beta, 1.0, reset, timing)
    assert 2 <= sum(spikes) <= 5
    out = CubaLIF(tau=-1 / math.log(beta), tau_syn=-1 / math.log(alpha), reset=reset, reset_timing=timing)(
        _seq(x), record=True)
    assert out.spikes.flatten().tolist() == spikes
    assert out.v.flatten().tolist() == pytest.approx(vs, abs=1e-12)


def test_vanishing_synaptic_time_constant_is_plain_lif():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(30, 3, 5, generator=g) * 0.8
    for timing in ("immediate", "deferred"):
        cuba = CubaLIF(tau=4.0, tau_syn=1e-3, reset_timing=timing)(x, record=True)  # alpha = exp(-1000) = 0
        lif = LIF(tau=4.0, reset_timing=timing, backend="reference")(x, record=True)
        assert cuba.spikes.sum() > 10
        assert torch.equal(cuba.spikes, lif.spikes)
        torch.testing.assert_close(cuba.v, lif.v, rtol=0, atol=1e-6)  # deferred sums in another order


def test_synaptic_current_is_filtered_input():
    """The current is the alpha-filtered input whatever the membrane does: i_T = sum alpha^(T-t) x_t."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(25, 2, 4, generator=g, dtype=torch.float64)
    out = CubaLIF(tau=5.0, tau_syn=3.0)(x)
    alpha = math.exp(-1 / 3.0)
    want = sum(alpha ** (24 - t) * x[t] for t in range(25))
    assert out.spikes.sum() > 0
    torch.testing.assert_close(out.state.i, want, rtol=0, atol=1e-12)


def test_discretize_and_euler():
    d = discretize(CubaParams(tau=10.0, tau_syn=5.0, dt=1.0))
    assert d.alpha == math.exp(-0.2) and d.beta == math.exp(-0.1)
    d = discretize(CubaParams(tau=10.0, tau_syn=4.0, dt=2.0, discretization="euler"))
    assert d.alpha == 0.5 and d.beta == 0.8
    assert discretize(CubaParams(tau=math.inf, tau_syn=math.inf)).alpha == 1.0


# --- causality, state ---------------------------------------------------------------------------------

@pytest.mark.parametrize("timing", ["immediate", "deferred"])
@pytest.mark.parametrize("reset", ["subtract", "to_value"])
def test_causality(reset, timing):
    g = torch.Generator().manual_seed(4)
    x = torch.rand(20, 3, 6, generator=g, dtype=torch.float64) * 0.5
    neuron = CubaLIF(tau=4.0, tau_syn=3.0, reset=reset, reset_timing=timing)
    base = neuron(x, record=True)
    t0 = 9
    x2 = x.clone()
    x2[t0] += 5.0
    pert = neuron(x2, record=True)
    assert torch.equal(pert.spikes[:t0], base.spikes[:t0]) and torch.equal(pert.v[:t0], base.v[:t0])
    assert not torch.equal(pert.spikes[t0], base.spikes[t0])
    xr = x.clone().requires_grad_()
    out = neuron(xr, record=True)
    (out.v[t0].sum() + out.spikes[t0].sum()).backward()
    assert (xr.grad[t0 + 1:] == 0).all()
    if reset == "to_value" and timing == "deferred":  # a step after a spike is clamped, input included
        clamped = base.spikes[t0 - 1].bool()
        assert clamped.any() and (xr.grad[t0][clamped] == 0).all() and (xr.grad[t0][~clamped] != 0).all()
    else:
        assert (xr.grad[t0] != 0).all()


@pytest.mark.parametrize("kw", [dict(), dict(reset="to_value", v_reset=-0.2), dict(reset_timing="deferred"),
                                dict(recurrent=True, shape=6), dict(learn_tau=True, shape=6)],
                         ids=["subtract", "to_value", "deferred", "recurrent", "learn_tau"])
def test_two_chunks_equal_one_run(kw):
    torch.manual_seed(0)
    neuron = CubaLIF(tau=3.0, tau_syn=2.0, **kw)
    x = torch.rand(25, 4, 6, generator=torch.Generator().manual_seed(5)) * 0.6
    full = neuron(x, record=True)
    a = neuron(x[:11], record=True)
    b = neuron(x[11:], state=a.state, record=True)
    assert full.spikes.sum() > 10
    assert torch.equal(torch.cat([a.spikes, b.spikes]), full.spikes) and torch.equal(torch.cat([a.v, b.v]), full.v)
    assert all(torch.equal(p, q) for p, q in zip(b.state, full.state))


# --- gradients ----------------------------------------------------------------------------------------

def _fd(f, t, eps=1e-6):
    out = torch.zeros_like(t)
    for k in range(t.numel()):
        d = torch.zeros_like(t).flatten()
        d[k] = eps
        out.view(-1)[k] = (f(t + d.view_as(t)) - f(t - d.view_as(t))) / (2 * eps)
    return out


def test_learnable_taus_get_gradients_matching_finite_differences():
    g = torch.Generator().manual_seed(6)
    x = torch.rand(30, 2, 4, generator=g, dtype=torch.float64) * 0.02  # stays below threshold
    w = torch.randn(30, 2, 4, generator=g, dtype=torch.float64)
    neuron = CubaLIF(tau=5.0, tau_syn=3.0, learn_tau=True, shape=4, detach_reset=True).double()
    assert neuron.log_tau.shape == (4,) and neuron.log_tau_syn.shape == (4,)

    def loss(lt, lts):
        out = functional_call(neuron, {"log_tau": lt, "log_tau_syn": lts}, (x,), {"record": True})
        assert out.spikes.sum() == 0
        return (out.v * w).sum()

    lt, lts = neuron.log_tau.detach(), neuron.log_tau_syn.detach()
    loss(neuron.log_tau, neuron.log_tau_syn).backward()
    for p, fd in ((neuron.log_tau, _fd(lambda t: loss(t, lts), lt)), (neuron.log_tau_syn, _fd(lambda t: loss(lt, t), lts))):
        assert (p.grad != 0).all()
        torch.testing.assert_close(p.grad, fd, rtol=1e-6, atol=1e-9)


T, B, NI, H = 6, 2, 3, 5
MARGIN = 0.15


def _net(surrogate, reset, timing):
    neuron = CubaLIF(3.0, 2.0, learn_tau=True, shape=H, surrogate=surrogate, reset=reset, reset_timing=timing,
                     v_reset=-0.25).double()

    def f(x, w1, lt, lts):
        o = functional_call(neuron, {"log_tau": lt, "log_tau_syn": lts}, (x @ w1.T,), {"record": True})
        return torch.cat([o.spikes, o.v, o.state.i.unsqueeze(0)], 0)

    def charges(x, w1, lt, lts):  # every value compared with the threshold
        with torch.no_grad():
            o = functional_call(neuron, {"log_tau": lt, "log_tau_syn": lts}, (x @ w1.T,), {"record": True})
            if timing == "deferred":
                return o.v, o.spikes  # the stored membrane is the charge that was thresholded
            cur = torch.stack(list(_currents(x @ w1.T, torch.exp(-1 / torch.exp(lts)))))
            v_prev = torch.cat([torch.zeros_like(o.v[:1]), o.v[:-1]])
            return torch.exp(-1 / torch.exp(lt)) * v_prev + cur, o.spikes

    return f, charges


def _currents(x, alpha):
    i = torch.zeros_like(x[0])
    for xt in x:
        i = alpha * i + xt
        yield i


@pytest.mark.parametrize("timing", ["immediate", "deferred"])
@pytest.mark.parametrize("reset", ["subtract", "to_value"])
def test_gradcheck_away_from_threshold(reset, timing):
    """Spikes are locally constant when every charge is >= MARGIN from threshold; there Triangle(0.1) has a
    zero surrogate, so gradcheck covers every smooth path (input, both learnable taus, reset gating)."""
    f_tri, charges = _net(Triangle(width=0.1), reset, timing)
    lt = torch.log(torch.linspace(2.0, 6.0, H, dtype=torch.float64))
    lts = torch.log(torch.linspace(1.0, 4.0, H, dtype=torch.float64))
    for seed in range(500):
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(T, B, NI, generator=g, dtype=torch.float64) * 1.5
        w1 = torch.randn(H, NI, generator=g, dtype=torch.float64) * 0.6
        h, s = charges(x, w1, lt, lts)
        mixed = int(((s.amax(0) > 0) & (s.amin(0) == 0)).sum())
        if (h - 1.0).abs().min() > MARGIN and mixed >= 2:
            break
    else:  # pragma: no cover
        pytest.fail("no seed with all charges away from threshold")
    args = tuple(a.clone().requires_grad_() for a in (x, w1, lt, lts))
    assert torch.autograd.gradcheck(f_tri, args)
    f_wide, _ = _net(Sigmoid(alpha=4.0), reset, timing)  # a wide surrogate is not the true derivative
    assert not torch.autograd.gradcheck(f_wide, args, raise_exception=False)


def test_recurrent_weight_gets_gradient_and_zero_weight_is_feed_forward(check_recurrent):
    x = torch.rand(20, 3, 5, generator=torch.Generator().manual_seed(7)) * 0.5
    check_recurrent(CubaLIF(tau=3.0, tau_syn=2.0, recurrent=True, shape=5), CubaLIF(tau=3.0, tau_syn=2.0), x, 0.5)


# --- bad input ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,match", [
    (dict(reset="zero"), "reset must be one of"), (dict(reset_timing="late"), "reset_timing must be one of"),
    (dict(tau_syn=0.0), "tau_syn must be > 0"), (dict(tau=-1.0), "tau must be > 0"), (dict(dt=0.0), "dt must be"),
    (dict(v_th=float("nan")), "v_th must be finite"), (dict(recurrent=True), "recurrent=True needs shape"),
    (dict(backend="triton"), r"backend must be one of \('auto', 'reference', 'numba'\)"),
    (dict(backend="numba", recurrent=True, shape=3), "does not support recurrent=True"), (dict(tau=math.inf, learn_tau=True), "finite initial"),
])
def test_invalid_options_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        CubaLIF(**kw)


def test_bad_input_and_state_raise():
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        CubaLIF()(torch.zeros(4, 3))
    x = torch.zeros(5, 2, 3)
    x[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        CubaLIF()(x)
    bad = CubaState(torch.zeros(2, 3), torch.zeros(3, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"state\.i has shape \(3, 3\)"):
        CubaLIF()(torch.zeros(5, 2, 3), state=bad)
    with pytest.raises(ValueError, match="euler discretization needs tau_syn >= dt"):
        CubaLIF(tau_syn=0.5, discretization="euler")(torch.zeros(2, 1, 1))
