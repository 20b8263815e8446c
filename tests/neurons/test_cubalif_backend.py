"""The fused numba CUBA-LIF backend (spike.backends.numba_cuba) against the reference scan.

Forward: spikes bit-identical, membrane/current to 1e-6 (float32). Backward: every gradient (input, both
learnable time constants, initial state) of a loss that touches spikes, the recorded membrane and the
final state, to 1e-9 relative in float64 and 1e-4 relative in float32 (summation order only).
"""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("numba")

from spike.backends import numba_cuba  # noqa: E402
from spike.core.registry import BackendError, resolve  # noqa: E402
from spike.neurons import CubaLIF, CubaState  # noqa: E402
from spike.neurons import cuba as C  # noqa: E402
from spike.neurons.modules import NeuronOutput  # noqa: E402
from spike.surrogate import ATan, FastSigmoid, Sigmoid, Surrogate, Triangle  # noqa: E402


def _pair(dtype=torch.float64, **kw):
    """The same layer (same parameters) once on the reference scan, once on numba."""
    torch.manual_seed(3)
    ref = CubaLIF(backend="reference", **kw).to(dtype)
    fast = CubaLIF(backend="numba", **kw).to(dtype)
    fast.load_state_dict(ref.state_dict())
    if ref.log_tau is not None:  # spread the per-neuron taus so each neuron has its own decay
        with torch.no_grad():
            for name in ("log_tau", "log_tau_syn"):
                noise = 0.3 * torch.randn(getattr(ref, name).shape, dtype=dtype)
                getattr(ref, name).add_(noise)
                getattr(fast, name).copy_(getattr(ref, name))
    return ref, fast


def _inputs(shape, dtype, scale, seed=0, state=False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(shape, generator=g, dtype=dtype) * scale).requires_grad_()
    st = None
    if state:
        step = shape[1:]
        st = CubaState(torch.rand(step, generator=g, dtype=dtype).requires_grad_(),
                       (0.3 * torch.rand(step, generator=g, dtype=dtype)).requires_grad_(),
                       (torch.rand(step, generator=g, dtype=dtype) < 0.5).to(dtype).requires_grad_())
    return x, st


def _loss(out, seed=1):
    """A loss reaching every output: spikes, recorded membrane and all three final state fields."""
    g = torch.Generator().manual_seed(seed)
    w = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in (out.spikes, out.v, *out.state)]
    return sum((wi * t).sum() for wi, t in zip(w, (out.spikes, out.v, *out.state)))


def _run(layer, x, st):
    out = layer(x, st, record=True)
    leaves = [x, *layer.parameters()] + (list(st) if st is not None else [])
    grads = torch.autograd.grad(_loss(out), leaves, allow_unused=True)
    return out, [torch.zeros_like(t) if g is None else g for g, t in zip(grads, leaves)]


def _assert_same(ref, fast, x, st, dtype):
    o_ref, g_ref = _run(ref, x, st)
    o_fast, g_fast = _run(fast, x, st)
    rate = float(o_ref.spikes.detach().mean())
    assert 0.03 < rate < 0.99, f"firing rate {rate} does not exercise spike and reset"
    assert torch.equal(o_ref.spikes, o_fast.spikes)
    for a, b in [(o_ref.v, o_fast.v), *zip(o_ref.state, o_fast.state)]:
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-12)
    rel = 1e-4 if dtype == torch.float32 else 1e-9
    for a, b in zip(g_ref, g_fast):
        scale = max(float(a.abs().max()), 1e-3)
        assert float((a - b).abs().max()) <= rel * scale, (float((a - b).abs().max()), scale)
    n_par = len(list(ref.parameters()))
    assert all(float(g.abs().max()) > 0 for g in g_ref[:1 + n_par])  # input and every parameter reached


CONFIGS = [
    dict(reset=r, reset_timing=t, detach_reset=d)
    for r in ("subtract", "to_value", "none") for t in ("immediate", "deferred") for d in (False, True)
] + [
    dict(discretization="euler", tau=4.0, tau_syn=3.0),
    dict(v_reset=-0.2, reset="to_value", reset_timing="deferred", v_th=0.8),
    dict(tau_syn=math.inf),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kw", CONFIGS, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_forward_and_gradients_equal_the_reference(kw, dtype):
    ref, fast = _pair(dtype, tau=kw.pop("tau", 6.0), tau_syn=kw.pop("tau_syn", 3.0), **kw)
    x, st = _inputs((30, 4, 7), dtype, 0.6, state=True)
    _assert_same(ref, fast, x, st, dtype)


@pytest.mark.parametrize("surrogate", [ATan(3.0), Sigmoid(5.0), FastSigmoid(10.0), Triangle(0.7)],
                         ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("timing", ["immediate", "deferred"])
def test_every_kernel_surrogate(surrogate, timing):
    ref, fast = _pair(torch.float64, tau=5.0, tau_syn=2.0, surrogate=surrogate, reset_timing=timing)
    x, st = _inputs((25, 3, 9), torch.float64, 0.7, state=True)
    _assert_same(ref, fast, x, st, torch.float64)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape,feat,timing", [
    ((40, 5, 8), 8, "immediate"), ((40, 5, 8), 8, "deferred"), ((20, 2, 3, 4, 4), (3, 4, 4), "immediate"),
    ((17, 3, 6), None, "deferred"), ((1, 4, 8), 8, "immediate"), ((1, 4, 8), 8, "deferred"),
], ids=["per-neuron", "per-neuron-deferred", "conv-shape", "scalar-tau", "T1", "T1-deferred"])
def test_learnable_taus_get_the_reference_gradient(shape, feat, timing, dtype):
    ref, fast = _pair(dtype, tau=5.0, tau_syn=3.0, learn_tau=True, shape=feat, reset_timing=timing)
    x, st = _inputs(shape, dtype, 0.8 if shape[0] > 1 else 2.0, state=True)
    _assert_same(ref, fast, x, st, dtype)


@pytest.mark.parametrize("timing", ["immediate", "deferred"])
def test_split_run_equals_whole_run(timing):
    _, fast = _pair(torch.float32, tau=5.0, tau_syn=3.0, reset_timing=timing, reset="to_value")
    x, _ = _inputs((30, 4, 16), torch.float32, 0.6)
    whole = fast(x.detach(), record=True)
    a = fast(x.detach()[:11], record=True)
    b = fast(x.detach()[11:], a.state, record=True)
    assert torch.equal(torch.cat([a.spikes, b.spikes]), whole.spikes)
    assert torch.equal(torch.cat([a.v, b.v]), whole.v)
    for u, v in zip(b.state, whole.state):
        assert torch.equal(u, v)
    # the gradient of a loss on the second half reaches the first half through the passed state, as in
    # one reference run
    ref, _ = _pair(torch.float64, tau=5.0, tau_syn=3.0, reset_timing=timing, reset="to_value")
    fast64 = fast.to(torch.float64)
    x64 = x.detach().to(torch.float64).requires_grad_()
    o = ref(x64, record=True)
    g_whole = torch.autograd.grad(_loss(NeuronOutput(o.spikes[11:], o.state, o.v[11:])), x64)[0]
    a = fast64(x64[:11])
    g_split = torch.autograd.grad(_loss(fast64(x64[11:], a.state, record=True)), x64)[0]
    torch.testing.assert_close(g_split, g_whole, rtol=1e-9, atol=1e-12)
    assert float(g_split[:11].abs().sum()) > 0


def test_inference_path_and_second_backward():
    ref, fast = _pair(torch.float32, tau=5.0, tau_syn=3.0, learn_tau=True, shape=8)
    x, _ = _inputs((20, 3, 8), torch.float32, 0.6)
    with torch.no_grad():
        a, b = ref(x, record=True), fast(x, record=True)
    assert torch.equal(a.spikes, b.spikes) and torch.allclose(a.v, b.v, rtol=0, atol=1e-6)
    out = fast(x, record=True)
    loss = _loss(out)
    g1 = torch.autograd.grad(loss, [x, fast.log_tau], retain_graph=True)
    g2 = torch.autograd.grad(loss, [x, fast.log_tau])  # dL/dx overwrote the saved current: recomputed
    for u, v in zip(g1, g2):
        assert torch.equal(u, v)
    fast(x).spikes.sum().backward()  # a gradient broadcast over time (stride 0) ...
    ref_x = x.detach().clone().requires_grad_()
    ref(ref_x).spikes.sum().backward()
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=1e-4, atol=1e-6)  # ... as in the reference
    assert float(x.grad.abs().sum()) > 0


def test_auto_picks_numba_on_cpu_and_reference_otherwise():
    x = torch.rand(5, 2, 4)
    p = C.discretize(CubaLIF(learn_tau=True, shape=4).params())
    assert resolve("cuba", "auto", p, x) is numba_cuba
    rec = CubaLIF(recurrent=True, shape=4)
    assert resolve("cuba", "auto", C.discretize(rec.params()), x) is C
    assert resolve("cuba", "auto", p, x.to(torch.float16)) is C
    assert resolve("cuba", "auto", p, x[:1]) is C  # one step: the reference step is cheaper
    assert resolve("cuba", "numba", p, x[:1]) is numba_cuba  # ... unless numba is named
    assert resolve("cuba", "reference", p, x) is C


class _Odd(Surrogate):
    name = "odd"

    def primitive(self, x):
        return torch.sigmoid(x)

    def grad(self, x):
        s = torch.sigmoid(x)
        return s * (1 - s)


def test_unsupported_configurations_raise_clearly():
    with pytest.raises(ValueError, match="backend='numba' does not support recurrent=True"):
        CubaLIF(backend="numba", recurrent=True, shape=4)
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'reference', 'numba'\)"):
        CubaLIF(backend="triton")
    with pytest.raises(BackendError, match="surrogate .* has no kernel_spec"):
        CubaLIF(backend="numba", surrogate=_Odd())(torch.rand(4, 2, 3))
    with pytest.raises(BackendError, match="dtype torch.float16 is not supported"):
        CubaLIF(backend="numba")(torch.rand(4, 2, 3).half())
    with pytest.raises(BackendError, match="would promote"):
        CubaLIF(backend="numba", learn_tau=True, shape=3).double()(torch.rand(4, 2, 3))
    p = C.discretize(CubaLIF(recurrent=True, shape=3).params())
    with pytest.raises(BackendError, match="recurrent weights"):
        numba_cuba.multi_step(torch.rand(4, 2, 3), None, p)
    with pytest.raises(BackendError, match=r"state\.i must be a CPU torch.float32 tensor"):
        numba_cuba.multi_step(torch.rand(4, 2, 3), CubaState(torch.zeros(2, 3), torch.zeros(2, 3).double(),
                                                             torch.zeros(2, 3)), C.discretize(C.CubaParams()))
