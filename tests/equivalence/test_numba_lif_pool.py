"""The fused LIF + AvgPool2d step (spike.backends.numba_lif_pool) against the two layers run one after
the other: pooled outputs, final states and every gradient bit for bit, and the cases it leaves to
the two layers."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("numba")

from spike.backends import numba_lif_pool as NLP  # noqa: E402
from spike.neurons import IF, LIF  # noqa: E402
from spike.neurons.lif import LIFState  # noqa: E402
from spike.surrogate import ATan, FastSigmoid, Sigmoid, Triangle  # noqa: E402
from spike.synapses import AvgPool2d, Conv2d, Flatten, Linear, Sequential  # noqa: E402


def _nets(neuron_kw: dict, pool_kw: dict, dtype=torch.float32, shape=(2, 12, 12), neuron=LIF):
    c, h, w = shape
    out = []
    for pool_backend in ("auto", "reference"):  # auto: fused where supported; reference: never fused
        torch.manual_seed(0)
        pool = AvgPool2d(**pool_kw, backend=pool_backend)
        n_flat = torch.nn.AvgPool2d(**pool_kw)(torch.zeros(1, 4, h, w)).numel()
        net = Sequential(Conv2d(c, 4, 3, padding=1), neuron(**neuron_kw), pool, Flatten(),
                         Linear(n_flat, 3)).to(dtype)
        out.append(net)
    return out


def _run(net, x, state=None):
    xi = x.clone().requires_grad_(True)
    y = net(xi, state)
    loss = (y.out ** 2).sum() + (y.state[1].v * 0.3).sum()
    loss.backward()
    grads = [p.grad.clone() for p in net.parameters()]
    return y, xi.grad, grads


def _same(a, b):
    ya, gxa, gpa = a
    yb, gxb, gpb = b
    assert torch.equal(ya.out, yb.out)
    assert torch.equal(ya.state[1].v, yb.state[1].v) and torch.equal(ya.state[1].s, yb.state[1].s)
    assert torch.equal(gxa, gxb)
    for p, q in zip(gpa, gpb):
        assert torch.equal(p, q)


def _x(T=9, B=3, shape=(2, 12, 12), dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, *shape, generator=g) < 0.3).to(dtype) * 2.5


@pytest.fixture
def fused_calls(monkeypatch):
    calls = []
    real = NLP.lif_avgpool
    monkeypatch.setattr(NLP, "lif_avgpool", lambda *a: calls.append(1) or real(*a))
    return calls


@pytest.mark.parametrize("surrogate", [ATan(2.0), Sigmoid(4.0), FastSigmoid(10.0), Triangle(1.0)],
                         ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("reset", ["subtract", "to_value", "none"])
def test_fused_equals_two_layers(surrogate, reset, fused_calls):
    fused, plain = _nets(dict(tau=4.0, v_th=0.8, reset=reset, surrogate=surrogate), dict(kernel_size=2))
    x = _x()
    a = _run(fused, x)
    assert len(fused_calls) == 1  # the pair ran fused
    _same(a, _run(plain, x))
    assert len(fused_calls) == 1  # ... and the reference pool never does


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("pool_kw", [dict(kernel_size=(2, 3)), dict(kernel_size=3), dict(kernel_size=2, divisor_override=1),
                                     dict(kernel_size=4, stride=4)], ids=str)
def test_other_windows_and_dtypes(pool_kw, dtype, fused_calls):
    fused, plain = _nets(dict(tau=3.0), pool_kw, dtype=dtype)
    x = _x(dtype=dtype)
    _same(_run(fused, x), _run(plain, x))
    assert len(fused_calls) == 1


def test_initial_state_gets_its_gradient_and_if_neurons(fused_calls):
    for neuron, kw in ((LIF, dict(tau=5.0, decay_input=True)), (IF, dict(v_th=1.2))):
        fused, plain = _nets(kw, dict(kernel_size=2), neuron=neuron)
        x = _x(T=6)
        g = torch.Generator().manual_seed(4)
        v0 = torch.randn(3, 4, 12, 12, generator=g)
        outs, gv = [], []
        for net in (fused, plain):
            v = v0.clone().requires_grad_(True)
            state = (None, LIFState(v, torch.zeros_like(v)), None, None, None)
            outs.append(_run(net, x, state))
            gv.append(v.grad)
        _same(*outs)
        assert torch.equal(gv[0], gv[1]) and gv[0].abs().sum() > 0
    assert len(fused_calls) == 2


def test_large_layer_split_over_threads_and_second_backward(fused_calls):
    fused, plain = _nets(dict(tau=6.0), dict(kernel_size=2), shape=(2, 32, 32))
    x = _x(T=12, B=8, shape=(2, 32, 32))
    _same(_run(fused, x), _run(plain, x))
    xi = x.clone().requires_grad_(True)
    y = fused(xi)
    (g1,) = torch.autograd.grad(y.out.sum(), xi, retain_graph=True)
    (g2,) = torch.autograd.grad(y.out.sum(), xi)  # the first backward wrote over h: recomputed
    assert torch.equal(g1, g2)


def test_no_grad_inference(fused_calls):
    fused, plain = _nets(dict(tau=4.0), dict(kernel_size=2))
    x = _x()
    with torch.no_grad():
        a, b = fused(x), plain(x)
    assert torch.equal(a.out, b.out) and torch.equal(a.state[1].v, b.state[1].v)
    assert len(fused_calls) == 1


@pytest.mark.parametrize("case", ["record", "hook", "learn_tau", "deferred", "reference_lif", "padding"])
def test_left_to_the_two_layers(case, fused_calls):
    neuron_kw = dict(tau=4.0)
    pool_kw = dict(kernel_size=2)
    if case == "learn_tau":
        neuron_kw["learn_tau"] = True
    if case == "deferred":
        neuron_kw["reset_timing"] = "deferred"
    if case == "reference_lif":
        neuron_kw["backend"] = "reference"
    if case == "padding":
        pool_kw = dict(kernel_size=3, stride=2, padding=1)
    fused, plain = _nets(neuron_kw, pool_kw)
    x = _x()
    seen = []
    if case == "hook":
        fused[1].register_forward_hook(lambda m, i, o: seen.append(o.spikes.shape))
    if case == "record":
        a, b = fused(x, record=True), plain(x, record=True)
        assert torch.equal(a.records["1"][0], b.records["1"][0])
        assert torch.equal(a.out, b.out)
    else:
        _same(_run(fused, x), _run(plain, x))
    assert not fused_calls
    if case == "hook":
        assert seen == [torch.Size([9, 3, 4, 12, 12])]  # the hook saw the LIF's own output


def test_supports_names_the_reason():
    fused, _ = _nets(dict(tau=4.0), dict(kernel_size=2))
    x = torch.zeros(3, 2, 4, 12, 12)
    assert NLP.supports((fused[1], fused[2], None), x) is None
    h = fused[2].register_forward_pre_hook(lambda m, i: None)
    assert "hooks" in NLP.supports((fused[1], fused[2], None), x)
    h.remove()
    assert "tile" in NLP.supports((fused[1], AvgPool2d(3, stride=1, padding=1), None), x)


@pytest.mark.parametrize("mode", ["packed", "mesa8"])
def test_memory_modes_keep_bits_and_match_the_two_layers(mode, fused_calls):
    """Under the packed / mesa8 hooks the pair keeps the input and spike bits (no membrane) and
    recomputes the membranes in backward, as the LIF kernel does there: gradients equal the two
    layers' under the same hooks bit for bit, and the caller's input is never written over."""
    from spike.train.memory import saved_tensor_hooks

    fused, plain = _nets(dict(tau=5.0), dict(kernel_size=2), shape=(2, 16, 16))
    x = _x(T=20, B=4, shape=(2, 16, 16))
    outs = []
    for net in (fused, plain):
        xi = x.clone().requires_grad_(True)
        with saved_tensor_hooks(mode):
            y = net(xi)
        ((y.out ** 2).sum() + y.state[1].v.sum()).backward()
        assert torch.equal(xi.detach(), x)
        outs.append((y.out, xi.grad, [p.grad for p in net.parameters()]))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    for p, q in zip(outs[0][2], outs[1][2]):
        assert torch.equal(p, q)
    assert len(fused_calls) == 1
    if mode == "packed":  # lossless: also the plain-BPTT gradient
        xi = x.clone().requires_grad_(True)
        y = fused(xi)
        ((y.out ** 2).sum() + y.state[1].v.sum()).backward()
        assert torch.equal(xi.grad, outs[0][1])
