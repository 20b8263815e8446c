"""The fused numba SE-adLIF backend (spike.backends.numba_adlif) against the reference scan.

Forward: spikes bit-identical, membrane/adaptation to 1e-6 (float32). Backward: every gradient (input,
learnable ``tau``/``tau_w``, learnable ``a``/``b``, initial state) of a loss that touches spikes, the
recorded membrane and the final state, to 1e-9 relative in float64 and 1e-4 relative in float32.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("numba")

from spike.backends import numba_adlif  # noqa: E402
from spike.core.registry import BackendError, resolve  # noqa: E402
from spike.neurons import AdLIF, AdLIFState  # noqa: E402
from spike.neurons import adlif as A  # noqa: E402
from spike.neurons.modules import NeuronOutput  # noqa: E402
from spike.surrogate import ATan, FastSigmoid, Sigmoid, Triangle  # noqa: E402

LEARN = ("log_tau", "log_tau_w", "a_raw", "b_raw")


def _pair(dtype=torch.float64, **kw):
    """The same layer (same parameters) once on the reference scan, once on numba."""
    torch.manual_seed(3)
    kw = {"tau": 5.0, "tau_w": 30.0, **kw}
    ref = AdLIF(backend="reference", **kw).to(dtype)
    fast = AdLIF(backend="numba", **kw).to(dtype)
    with torch.no_grad():  # spread learnable parameters so each neuron has its own values
        for name in LEARN:
            if getattr(ref, name, None) is not None:
                getattr(ref, name).add_(0.3 * torch.randn(getattr(ref, name).shape, dtype=dtype))
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def _inputs(shape, dtype, scale, seed=0, state=False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(shape, generator=g, dtype=dtype) * scale).requires_grad_()
    st = None
    if state:
        step = shape[1:]
        st = AdLIFState(torch.rand(step, generator=g, dtype=dtype).requires_grad_(),
                        (0.5 * torch.rand(step, generator=g, dtype=dtype)).requires_grad_(),
                        (torch.rand(step, generator=g, dtype=dtype) < 0.5).to(dtype).requires_grad_())
    return x, st


def _loss(out, seed=1):
    """A loss reaching every output: spikes, recorded membrane and all three final state fields."""
    g = torch.Generator().manual_seed(seed)
    parts = (out.spikes, out.v, *out.state)
    return sum((torch.randn(t.shape, generator=g, dtype=t.dtype) * t).sum() for t in parts)


def _run(layer, x, st):
    out = layer(x, st, record=True)
    leaves = [x, *layer.parameters()] + (list(st) if st is not None else [])
    grads = torch.autograd.grad(_loss(out), leaves, allow_unused=True)
    return out, [torch.zeros_like(t) if g is None else g for g, t in zip(grads, leaves)]


def _assert_same(ref, fast, x, st, dtype):
    o_ref, g_ref = _run(ref, x, st)
    o_fast, g_fast = _run(fast, x, st)
    rate = float(o_ref.spikes.detach().mean())
    assert 0.03 < rate < 0.97, f"firing rate {rate} does not exercise spike, reset and adaptation"
    assert torch.equal(o_ref.spikes, o_fast.spikes)
    for a, b in [(o_ref.v, o_fast.v), *zip(o_ref.state, o_fast.state)]:
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-12)
    rel = 1e-4 if dtype == torch.float32 else 1e-9
    for a, b in zip(g_ref, g_fast):
        scale = max(float(a.abs().max()), 1e-3)
        assert float((a - b).abs().max()) <= rel * scale, (float((a - b).abs().max()), scale)
    n_par = len(list(ref.parameters()))
    assert all(float(g.abs().max()) > 0 for g in g_ref[:1 + n_par])  # input and every parameter reached


CONFIGS = [dict(reset=r, detach_reset=d) for r in ("to_value", "subtract", "none") for d in (False, True)] + [
    dict(discretization="euler", tau=4.0, tau_w=20.0),
    dict(a=0.0, b=0.0), dict(a=2.5, b=0.3, q=2.0, v_reset=-0.3, v_th=0.7),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kw", CONFIGS, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_forward_and_gradients_equal_the_reference(kw, dtype):
    ref, fast = _pair(dtype, **kw)
    x, st = _inputs((40, 4, 7), dtype, 3.0, state=True)
    _assert_same(ref, fast, x, st, dtype)


@pytest.mark.parametrize("surrogate", [ATan(3.0), Sigmoid(5.0), FastSigmoid(10.0), Triangle(0.7)],
                         ids=lambda s: type(s).__name__)
def test_every_kernel_surrogate(surrogate):
    ref, fast = _pair(torch.float64, surrogate=surrogate, learn_ab=True, learn_tau=True, shape=9)
    x, st = _inputs((25, 3, 9), torch.float64, 3.0, state=True)
    _assert_same(ref, fast, x, st, torch.float64)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape,feat,learn", [
    ((40, 5, 8), 8, dict(learn_tau=True)), ((40, 5, 8), 8, dict(learn_ab=True)),
    ((40, 5, 8), 8, dict(learn_tau=True, learn_ab=True, reset="subtract")),
    ((20, 2, 3, 4, 4), (3, 4, 4), dict(learn_tau=True, learn_ab=True)),
    ((17, 3, 6), None, dict(learn_tau=True, learn_ab=True)), ((1, 4, 8), 8, dict(learn_tau=True, learn_ab=True)),
], ids=["tau", "ab", "tau-ab-subtract", "conv-shape", "scalar", "T1"])
def test_learnable_parameters_get_the_reference_gradient(shape, feat, learn, dtype):
    ref, fast = _pair(dtype, shape=feat, **learn)
    x, st = _inputs(shape, dtype, 3.0 if shape[0] > 1 else 15.0, state=True)
    _assert_same(ref, fast, x, st, dtype)


def test_split_run_equals_whole_run():
    _, fast = _pair(torch.float32, learn_ab=True, shape=16)
    x, _ = _inputs((30, 4, 16), torch.float32, 3.0)
    whole = fast(x.detach(), record=True)
    a = fast(x.detach()[:11], record=True)
    b = fast(x.detach()[11:], a.state, record=True)
    assert torch.equal(torch.cat([a.spikes, b.spikes]), whole.spikes)
    assert torch.equal(torch.cat([a.v, b.v]), whole.v)
    for u, v in zip(b.state, whole.state):
        assert torch.equal(u, v)
    # the gradient of a loss on the second half reaches the first half through the passed state, as in
    # one reference run
    ref, fast64 = _pair(torch.float64, learn_ab=True, shape=16)
    x64 = x.detach().to(torch.float64).requires_grad_()
    o = ref(x64, record=True)
    g_whole = torch.autograd.grad(_loss(NeuronOutput(o.spikes[11:], o.state, o.v[11:])), [x64, ref.a_raw])
    a = fast64(x64[:11])
    g_split = torch.autograd.grad(_loss(fast64(x64[11:], a.state, record=True)), [x64, fast64.a_raw])
    for u, v in zip(g_split, g_whole):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-12)
    assert float(g_split[0][:11].abs().sum()) > 0


def test_inference_path_and_second_backward():
    ref, fast = _pair(torch.float32, learn_tau=True, learn_ab=True, shape=8)
    x, _ = _inputs((20, 3, 8), torch.float32, 3.0)
    with torch.no_grad():
        a, b = ref(x, record=True), fast(x, record=True)
    assert torch.equal(a.spikes, b.spikes) and torch.allclose(a.v, b.v, rtol=0, atol=1e-6)
    out = fast(x, record=True)
    loss = _loss(out)
    g1 = torch.autograd.grad(loss, [x, fast.log_tau_w, fast.b_raw], retain_graph=True)
    g2 = torch.autograd.grad(loss, [x, fast.log_tau_w, fast.b_raw])  # dL/dx overwrote the saved w: recomputed
    for u, v in zip(g1, g2):
        assert torch.equal(u, v)
    fast(x).spikes.sum().backward()  # a gradient broadcast over time (stride 0) ...
    ref_x = x.detach().clone().requires_grad_()
    ref(ref_x).spikes.sum().backward()
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=1e-4, atol=1e-6)  # ... as in the reference
    assert float(x.grad.abs().sum()) > 0


def test_auto_picks_numba_on_cpu_and_reference_otherwise():
    x = torch.rand(5, 2, 4)
    p = A.discretize(AdLIF(learn_tau=True, learn_ab=True, shape=4).params())
    assert resolve("adlif", "auto", p, x) is numba_adlif
    assert resolve("adlif", "auto", A.discretize(AdLIF(recurrent=True, shape=4).params()), x) is A
    assert resolve("adlif", "auto", p, x.to(torch.float16)) is A
    assert resolve("adlif", "auto", p, x[:1]) is A  # one step: the reference step is cheaper
    assert resolve("adlif", "numba", p, x[:1]) is numba_adlif  # ... unless numba is named
    assert resolve("adlif", "reference", p, x) is A


def test_unsupported_configurations_raise_clearly():
    with pytest.raises(ValueError, match="backend='numba' does not support recurrent=True"):
        AdLIF(backend="numba", recurrent=True, shape=4)
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'reference', 'numba'\)"):
        AdLIF(backend="triton")
    with pytest.raises(BackendError, match="dtype torch.float16 is not supported"):
        AdLIF(backend="numba")(torch.rand(4, 2, 3).half())
    with pytest.raises(BackendError, match=r"qa of shape \(4,\) does not broadcast"):
        numba_adlif.multi_step(torch.rand(4, 2, 3), None, A.discretize(A.AdLIFParams(a=torch.rand(4))))
    with pytest.raises(BackendError, match="recurrent weights"):
        numba_adlif.multi_step(torch.rand(4, 2, 3), None, A.discretize(AdLIF(recurrent=True, shape=3).params()))
    with pytest.raises(BackendError, match=r"state\.w must be a CPU torch.float32 tensor"):
        numba_adlif.multi_step(torch.rand(4, 2, 3), AdLIFState(torch.zeros(2, 3), torch.zeros(3, 3),
                                                               torch.zeros(2, 3)), A.discretize(A.AdLIFParams()))
