"""Conv2d -> LIF -> AvgPool2d in time chunks (spike.backends.numba_conv_lif_pool): against the three
layers run one after the other, and across memory modes (``packed`` must give plain BPTT's gradients
bit for bit), with the chunk size made small so that short test sequences split into several chunks
(the last one shorter)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("numba")

from spike.backends import numba_conv_lif_pool as NCLP  # noqa: E402
from spike.core.registry import BackendError, resolve  # noqa: E402
from spike.neurons import IF, LIF  # noqa: E402
from spike.neurons.lif import LIFState  # noqa: E402
from spike.surrogate import ATan, Triangle  # noqa: E402
from spike.synapses import AvgPool2d, Conv2d, Flatten, Linear, Sequential  # noqa: E402
from spike.train.memory import saved_tensor_hooks  # noqa: E402

SHAPE = (2, 12, 12)


def _net(pool_backend="auto", neuron=LIF, neuron_kw=None, conv_kw=None, dtype=torch.float32, two_blocks=False):
    """``auto``: the block runs in chunks where supported; ``reference`` pooling: never fused."""
    torch.manual_seed(0)
    neuron_kw = neuron_kw or dict(tau=4.0, v_th=0.6)
    conv_kw = conv_kw or dict(padding=1)
    layers = [Conv2d(2, 4, 3, **conv_kw), neuron(**neuron_kw), AvgPool2d(2, backend=pool_backend)]
    x = torch.zeros(1, 2, *SHAPE[1:])
    h = torch.nn.AvgPool2d(2)(torch.nn.Conv2d(2, 4, 3, **conv_kw)(x[0]))
    if two_blocks:
        layers += [Conv2d(4, 6, 3, padding=1), neuron(**neuron_kw), AvgPool2d(2, backend=pool_backend)]
        h = torch.nn.AvgPool2d(2)(torch.nn.Conv2d(4, 6, 3, padding=1)(h))
    return Sequential(*layers, Flatten(), Linear(h.numel(), 3)).to(dtype)


def _x(T=10, B=3, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, *SHAPE, generator=g) < 0.3).to(dtype) * 2.0


@pytest.fixture
def chunks(monkeypatch):
    """At most 3 steps per chunk at the test shapes (B = 3, 4 x 12 x 12 float32 per sample: T = 10 runs
    as 3 + 3 + 3 + 1); counts the block's calls."""
    monkeypatch.setattr(NCLP, "CHUNK_BYTES", 3 * 3 * 4 * 12 * 12 * 4)
    calls = []
    real = NCLP.conv_lif_avgpool
    monkeypatch.setattr(NCLP, "conv_lif_avgpool", lambda *a: calls.append(1) or real(*a))
    return calls


def _run(net, x, state=None, mode=None, x_grad=True):
    xi = x.clone().requires_grad_(x_grad)
    with saved_tensor_hooks(mode) if mode else torch.enable_grad():
        y = net(xi, state)
    loss = (y.out ** 2).sum() + (y.state[1].v * 0.3).sum() + y.state[1].s.sum()
    loss.backward()
    return y, xi.grad, [p.grad.clone() for p in net.parameters()]


def _close(a, b, exact_params: bool):
    ya, gxa, gpa = a
    yb, gxb, gpb = b
    assert torch.equal(ya.out, yb.out)  # the convolution of a chunk equals that of the whole batch here
    assert torch.equal(ya.state[1].v, yb.state[1].v) and torch.equal(ya.state[1].s, yb.state[1].s)
    if gxa is not None:
        assert torch.equal(gxa, gxb)
    for p, q in zip(gpa, gpb):
        if exact_params:
            assert torch.equal(p, q)
        else:  # a sum over chunks against one reduction: float rounding of the largest element
            torch.testing.assert_close(p, q, rtol=0, atol=2e-5 * float(q.abs().max()))


@pytest.mark.parametrize("surrogate", [ATan(2.0), Triangle(1.0)], ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("reset", ["subtract", "to_value"])
def test_chunks_equal_the_three_layers(surrogate, reset, chunks):
    kw = dict(tau=4.0, v_th=0.6, reset=reset, surrogate=surrogate)
    x = _x()
    a = _run(_net(neuron_kw=kw), x)
    assert len(chunks) == 1
    b = _run(_net("reference", neuron_kw=kw), x)
    _close(a, b, exact_params=False)
    assert any(float(p.abs().sum()) > 0 for p in a[2])


def test_a_long_sequence_on_its_own_is_the_pair_bit_for_bit(monkeypatch):
    """With the real chunk size the test sequence fits one chunk: the block declines (prefers) and the
    result is the separate layers' bit for bit, weight gradients included."""
    calls = []
    real = NCLP.conv_lif_avgpool
    monkeypatch.setattr(NCLP, "conv_lif_avgpool", lambda *a: calls.append(1) or real(*a))
    x = _x()
    _close(_run(_net(), x), _run(_net("reference"), x), exact_params=True)
    assert not calls
    net = _net()
    assert "one time chunk" in NCLP.prefers((net[0], net[1], net[2], None), x)


@pytest.mark.parametrize("mode", ["packed", "packed:4"])
def test_packed_gives_plain_bptts_gradients_bit_for_bit(mode, chunks):
    """``packed`` keeps the convolution's input as bits and recomputes the chunk's convolution and
    membranes; plain BPTT keeps the membranes: the same numbers, bit for bit, two blocks deep (the
    second block's input needs a gradient). ``packed:4`` also runs the model in chunks of 4 steps."""
    x = _x(T=11)
    plain = _run(_net(two_blocks=True), x)
    packed = _run(_net(two_blocks=True), x, mode=mode)
    if mode == "packed":
        _close(packed, plain, exact_params=True)
    assert len(chunks) >= 2


def test_mesa8_is_close_to_plain_bptt(chunks):
    x = _x(T=11)
    plain = _run(_net(two_blocks=True), x)
    mesa = _run(_net(two_blocks=True), x, mode="mesa8")
    assert torch.equal(plain[0].out, mesa[0].out)  # exact forward
    for p, q in zip(plain[2], mesa[2]):
        cos = torch.nn.functional.cosine_similarity(p.flatten(), q.flatten(), dim=0)
        assert cos > 0.99


def test_initial_state_and_if_neurons(chunks):
    for neuron, kw in ((LIF, dict(tau=5.0, decay_input=True)), (IF, dict(v_th=1.2))):
        x = _x(T=7)
        g = torch.Generator().manual_seed(4)
        v0 = torch.randn(3, 4, 12, 12, generator=g)
        outs, gv = [], []
        for backend in ("auto", "reference"):
            v = v0.clone().requires_grad_(True)
            state = (None, LIFState(v, torch.zeros_like(v)), None, None, None)
            outs.append(_run(_net(backend, neuron=neuron, neuron_kw=kw), x, state))
            gv.append(v.grad)
        _close(*outs, exact_params=False)
        assert torch.equal(gv[0], gv[1]) and gv[0].abs().sum() > 0
    assert len(chunks) == 2


def test_float64_strided_convolution_without_bias_and_no_grad(chunks):
    kw = dict(padding=2, stride=1, dilation=2, bias=False)
    x = _x(T=9, dtype=torch.float64)
    a = _run(_net(conv_kw=kw, dtype=torch.float64), x, x_grad=False)
    b = _run(_net("reference", conv_kw=kw, dtype=torch.float64), x, x_grad=False)
    _close(a, b, exact_params=False)
    with torch.no_grad():
        ya, yb = _net(conv_kw=kw, dtype=torch.float64)(x), _net("reference", conv_kw=kw, dtype=torch.float64)(x)
    assert torch.equal(ya.out, yb.out) and torch.equal(ya.state[1].v, yb.state[1].v)
    assert len(chunks) == 2


def test_second_backward_gives_the_same_gradients(chunks):
    for mode in (None, "packed"):
        net = _net()
        xi = _x().requires_grad_(True)
        with saved_tensor_hooks(mode) if mode else torch.enable_grad():
            y = net(xi)
        g1 = torch.autograd.grad(y.out.sum(), [xi, net[0].weight], retain_graph=True)
        g2 = torch.autograd.grad(y.out.sum(), [xi, net[0].weight])
        assert all(torch.equal(a, b) for a, b in zip(g1, g2))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("case", ["record", "conv_hook", "reflect", "same_even", "reference_lif"])
def test_left_to_the_separate_layers(case, chunks):
    conv_kw = dict(padding=1)
    neuron_kw = dict(tau=4.0, v_th=0.6)
    if case == "reflect":
        conv_kw = dict(padding=1, padding_mode="reflect")
    if case == "same_even":
        conv_kw = dict(padding="same", dilation=1)
    if case == "reference_lif":
        neuron_kw["backend"] = "reference"
    net = _net(conv_kw=conv_kw, neuron_kw=neuron_kw)
    if case == "same_even":  # a 2x2 kernel: torch pads one side more, which the block does not do
        net[0] = Conv2d(2, 4, 2, padding="same")
        net[-1] = Linear(4 * 6 * 6, 3)
    seen = []
    if case == "conv_hook":
        net[0].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    x = _x()
    if case == "record":
        net(x, record=True)
    else:
        _run(net, x)
    assert not chunks
    if case == "conv_hook":
        assert seen == [(10, 3, 4, 12, 12)]


def test_supports_and_named_backend_errors():
    net = _net()
    x = torch.zeros(5, 2, *SHAPE)
    params = (net[0], net[1], net[2], None)
    assert NCLP.supports(params, x) is None
    assert "Conv2d" in NCLP.supports((torch.nn.Conv2d(2, 4, 3), net[1], net[2], None), x)
    assert "[T, B, C_in, H, W]" in NCLP.supports(params, torch.zeros(5, 2, 3, 12, 12))
    assert "dtype" in NCLP.supports(params, x.double())
    assert "divisible" in NCLP.supports((net[0], net[1], AvgPool2d(5), None), x)
    with pytest.raises(BackendError, match="reflect"):
        resolve("conv_lif_avgpool", "numba", (Conv2d(2, 4, 3, padding=1, padding_mode="reflect"), net[1], net[2], None),
                x)


@pytest.mark.parametrize("mode", ["checkpoint:7", "packed:7", "mesa8:7"])
def test_time_chunked_memory_modes_run_the_block_inside_each_chunk(mode, chunks):
    """The memory modes that call the model on chunks of time steps (``spike.train.memory``) hand the
    block a shorter sequence and its state: still split into block chunks (7 steps: 3 + 3 + 1), and
    the gradients stay plain BPTT's to 1e-4 of the largest element (float rounding; under ``mesa8``
    also its 8-bit records, which stay within that here)."""
    from spike.train.memory import memory_forward

    x = _x(T=14)
    grads = []
    for m in ("none", mode):
        net = _net(two_blocks=True)
        out = memory_forward(net, x, m, lambda r: r.out)
        out.pow(2).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    assert len(chunks) >= 4  # both runs went through the block
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-4 * float(grads[0].abs().max()))
