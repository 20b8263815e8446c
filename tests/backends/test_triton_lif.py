"""Triton fused LIF kernels vs the reference path.

On the CPU the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``) at small sizes, so CI checks
the kernel logic on every change; the same comparisons run on CUDA (marked ``gpu``) at larger sizes.
"""

import math

import pytest
import torch

pytest.importorskip("triton")

from spike.core.registry import BackendError, resolve  # noqa: E402
from spike.neurons import LIF  # noqa: E402
from spike.neurons import lif as F  # noqa: E402
from spike.surrogate import ATan, FastSigmoid, Sigmoid, Triangle  # noqa: E402

SURROGATES = [ATan(), Sigmoid(), FastSigmoid(), Triangle(0.7)]


@pytest.fixture
def interpret(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def _run(backend, x, p, state=None):
    mod = resolve("lif", backend, p, x)
    return mod.multi_step(x, state, p, record=True)


def _loss(out, t):
    s, st, v = out
    w = torch.linspace(0.5, 1.5, t, dtype=torch.float32).view(t, *([1] * (s.dim() - 1)))
    return (s * w).sum() + (v.float() ** 2).mean() + st.v.float().sum() + 0.3 * st.s.float().sum()


def _compare(x, p, state=None, rtol=1e-5, atol=1e-6):
    x_ref = x.detach().float().requires_grad_()
    x_tri = x.detach().clone().requires_grad_()
    ref = _run("reference", x_ref, p, state)
    tri = _run("triton", x_tri, p, state)
    assert torch.equal(tri[0].float(), ref[0]), "spikes differ"
    torch.testing.assert_close(tri[2].float(), ref[2], rtol=0, atol=atol)
    torch.testing.assert_close(tri[1].v.float(), ref[1].v, rtol=0, atol=atol)
    assert torch.equal(tri[1].s.float(), ref[1].s)
    t = x.shape[0]
    (g_ref,) = torch.autograd.grad(_loss(ref, t), x_ref)
    (g_tri,) = torch.autograd.grad(_loss(tri, t), x_tri)
    torch.testing.assert_close(g_tri.float(), g_ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("timing", ["immediate", "deferred"])
@pytest.mark.parametrize("reset", ["subtract", "to_value", "none"])
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("sur", SURROGATES, ids=lambda s: s.name)
def test_interpreted_kernels_match_reference(interpret, timing, reset, detach, sur):
    torch.manual_seed(hash((timing, reset, detach, sur.name)) % 2**31)
    p = F.discretize(F.LIFParams(tau=4.0, reset=reset, reset_timing=timing, detach_reset=detach, surrogate=sur,
                                 v_reset=-0.1, v_rest=0.05))
    x = torch.randn(6, 3, 37) * 0.7 + 0.4  # N=37: not a multiple of the block
    _compare(x, p)


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 4, 5), (5, 2, 3, 4, 3)])
def test_interpreted_odd_shapes_and_t1(interpret, shape):
    torch.manual_seed(1)
    p = F.discretize(F.LIFParams(tau=2.0, discretization="euler", decay_input=True))
    _compare(torch.rand(*shape) * 3, p)


def test_interpreted_initial_state_gradients(interpret):
    torch.manual_seed(2)
    for timing in ("immediate", "deferred"):
        p = F.discretize(F.LIFParams(tau=3.0, reset="to_value", reset_timing=timing))
        x = torch.rand(5, 2, 7) * 1.2
        v_init, s_init = torch.rand(2, 7) * 1.5, (torch.rand(2, 7) > 0.5).float()
        grads = {}
        for backend in ("reference", "triton"):
            v0 = v_init.clone().requires_grad_()
            s0 = s_init.clone().requires_grad_()
            out = _run(backend, x, p, F.LIFState(v0, s0))
            grads[backend] = torch.autograd.grad(_loss(out, 5), (v0, s0), allow_unused=True)
        for a, b in zip(grads["reference"], grads["triton"]):
            a = torch.zeros(2, 7) if a is None else a
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("timing", ["immediate", "deferred"])
@pytest.mark.parametrize("reset", ["subtract", "to_value"])
@pytest.mark.parametrize("detach", [False, True])
def test_interpreted_spatial_matches_detached_reference(interpret, timing, reset, detach):
    """``multi_step_spatial`` (SLTT) == the reference with the state detached before every step: same
    values, same input and tau gradients, no gradient to the initial state."""
    from spike.backends import triton_lif as TL
    from spike.neurons.scan import scan

    def detached(x, state, p, record):
        return scan(lambda xt, st, q: F.lif_step(xt, F.LIFState(st.v.detach(), st.s.detach()), q), x, state, p,
                    record)

    torch.manual_seed(6)
    x0 = torch.randn(7, 2, 11) * 0.8 + 0.5
    v_init = (torch.rand(2, 11) * 1.2).requires_grad_()
    outs, grads = [], []
    for run in (detached, TL.multi_step_spatial, TL.multi_step):
        tau = torch.tensor(3.0, requires_grad=True)
        p = F.discretize(F.LIFParams(tau=tau, reset=reset, reset_timing=timing, detach_reset=detach,
                                     v_reset=-0.1, decay_input=True))
        x = x0.clone().requires_grad_()
        out = run(x, F.LIFState(v_init, torch.zeros(2, 11)), p, True)
        outs.append(out)
        grads.append(torch.autograd.grad(_loss(out, 7), (x, tau, v_init), allow_unused=True))
    (ref, spa, full), (g_ref, g_spa, g_full) = outs, grads
    assert torch.equal(spa[0], ref[0])
    torch.testing.assert_close(spa[2], ref[2], rtol=0, atol=1e-6)
    torch.testing.assert_close(g_spa[0], g_ref[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_spa[1], g_ref[1], rtol=1e-5, atol=1e-5)
    assert g_ref[2] is None and g_spa[2] is None and g_full[2] is not None
    assert float((g_full[0] - g_ref[0]).abs().max()) > 1e-3  # the cut is not vacuous


@pytest.mark.parametrize("per_neuron", [False, True])
@pytest.mark.parametrize("decay_input", [False, True])
def test_interpreted_learnable_tau_gradient(interpret, per_neuron, decay_input):
    torch.manual_seed(3)
    x = torch.rand(8, 3, 6) * 1.5
    grads = {}
    for backend in ("reference", "triton"):
        torch.manual_seed(4)
        lif = LIF(tau=3.0, learn_tau=True, shape=6 if per_neuron else None, decay_input=decay_input,
                  backend=backend)
        out = lif(x, record=True)
        loss = out.spikes.sum() + (out.v ** 2).sum()
        (grads[backend],) = torch.autograd.grad(loss, lif.log_tau)
    assert grads["reference"].abs().sum() > 0
    torch.testing.assert_close(grads["triton"], grads["reference"], rtol=1e-5, atol=1e-6)


def test_interpreted_bfloat16_computes_in_float32(interpret):
    torch.manual_seed(5)
    p = F.discretize(F.LIFParams(tau=4.0))
    x = (torch.rand(6, 2, 9) * 1.5).to(torch.bfloat16)
    tri = _run("triton", x, p)
    ref = _run("reference", x.float(), p)  # reference in float32 on the same (bf16-valued) input
    assert tri[0].dtype == torch.bfloat16
    assert torch.equal(tri[0].float(), ref[0])


def test_unsupported_configurations_raise(interpret):
    lif = LIF(recurrent=True, shape=4, backend="triton")
    with pytest.raises(BackendError, match="recurrent"):
        lif(torch.rand(3, 2, 4))
    p = F.discretize(F.LIFParams())
    with pytest.raises(BackendError, match="float64"):
        resolve("lif", "triton", p, torch.rand(2, 1, 3, dtype=torch.float64))


def test_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendError, match="CUDA"):
        LIF(backend="triton")(torch.rand(3, 2, 4))
    # "auto" on the CPU never picks triton
    assert resolve("lif", "auto", F.discretize(F.LIFParams()), torch.rand(3, 2, 4)).__name__ != "spike.backends.triton_lif"


# ---------------------------------------------------------------------------- on a CUDA GPU -----
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("timing", ["immediate", "deferred"])
@pytest.mark.parametrize("reset", ["subtract", "to_value", "none"])
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("sur", SURROGATES, ids=lambda s: s.name)
@pytest.mark.parametrize("size", [(1, 4, 1000), (50, 16, 4099), (200, 3, 257)])
def test_cuda_kernels_match_reference(timing, reset, detach, sur, size):
    torch.manual_seed(0)
    p = F.discretize(F.LIFParams(tau=4.0, reset=reset, reset_timing=timing, detach_reset=detach, surrogate=sur,
                                 v_reset=-0.1, v_rest=0.05, decay_input=True))
    x = (torch.randn(*size) * 0.7 + 0.4).cuda()
    _compare(x, p, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@cuda
def test_cuda_auto_selects_triton():
    x = torch.rand(4, 2, 8, device="cuda")
    assert resolve("lif", "auto", F.discretize(F.LIFParams()), x).__name__ == "spike.backends.triton_lif"
