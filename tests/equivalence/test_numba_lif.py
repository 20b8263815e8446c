"""The fused numba LIF backend against the reference ``spike.neurons.lif.multi_step``.

Spikes must be bit-identical, membranes equal to 1e-6 (float32) / 1e-12 (float64), and gradients
(input, initial state, learnable tau) equal to 1e-5 / 1e-10 relative to the reference's scale.
"""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("numba")

from spike.backends import numba_lif as NB  # noqa: E402
from spike.core.registry import BackendError, resolve  # noqa: E402
from spike.neurons import LIF  # noqa: E402
from spike.neurons import lif as F  # noqa: E402
from spike.neurons.scan import scan  # noqa: E402
from spike.surrogate import ATan, FastSigmoid, Sigmoid, Triangle  # noqa: E402

SURROGATES = {"atan": ATan(1.7), "sigmoid": Sigmoid(3.0), "fast_sigmoid": FastSigmoid(9.0),
              "triangle": Triangle(0.8)}
TOL = {torch.float32: (1e-6, 1e-5), torch.float64: (1e-12, 1e-10)}  # (membrane atol, gradient rel.)
SHAPES = [(9, 3, 7), (1, 1, 5), (4, 2, 3, 2, 3)]  # [T, B, N] odd sizes, T=1/B=1, [T, B, C, H, W]


def _inputs(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=dtype) * 1.2 + 0.45).requires_grad_()
    v0 = (torch.randn(shape[1:], generator=g, dtype=dtype) * 0.5).requires_grad_()
    s0 = (torch.rand(shape[1:], generator=g) < 0.4).to(dtype).requires_grad_()
    ws = [torch.randn(shape, generator=g, dtype=dtype) for _ in range(2)]
    wf = [torch.randn(shape[1:], generator=g, dtype=dtype) for _ in range(2)]
    return x, v0, s0, ws, wf


def _loss(spikes, state, trace, ws, wf):
    """Uses every output, so every backward path (spikes, trace, final v and s) is exercised."""
    return ((spikes * ws[0]).sum() + (trace * ws[1]).sum() + (state.v * wf[0]).sum()
            + (state.s * wf[1]).sum())


def _close_grad(got, ref, rel, what):
    if ref is None:
        assert got is None or bool((got == 0).all()), f"{what}: reference has no gradient"
        return
    assert got is not None, f"{what}: numba returned no gradient"
    scale = max(float(ref.abs().max()), 1.0)
    torch.testing.assert_close(got, ref, rtol=rel, atol=rel * scale, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("surrogate", list(SURROGATES))
@pytest.mark.parametrize("detach", [False, True], ids=["grad_reset", "detach_reset"])
@pytest.mark.parametrize("timing", F.RESET_TIMINGS)
@pytest.mark.parametrize("reset", F.RESETS)
def test_matches_reference(reset, timing, detach, surrogate, dtype):
    case = F.RESETS.index(reset) * 4 + F.RESET_TIMINGS.index(timing) * 2 + int(detach)
    v_rest = 0.0 if case % 2 else -0.15
    tau = torch.tensor(4.0, dtype=dtype, requires_grad=True)  # learnable scalar tau (beta, gain tensors)
    params = F.LIFParams(tau=tau, v_th=0.9, v_reset=-0.3, v_rest=v_rest, reset=reset, reset_timing=timing,
                         detach_reset=detach, surrogate=SURROGATES[surrogate], decay_input=bool(case % 3))
    atol, rel = TOL[dtype]
    for k, shape in enumerate(SHAPES):
        x, v0, s0, ws, wf = _inputs(shape, dtype, seed=case * 10 + k)
        results = []
        for impl in (F, NB):
            p = F.discretize(params)  # a fresh graph tau -> beta, gain per implementation
            spikes, state, trace = impl.multi_step(x, F.LIFState(v0, s0), p, record=True)
            grads = torch.autograd.grad(_loss(spikes, state, trace, ws, wf), [x, v0, s0, tau],
                                        allow_unused=True)
            results.append((spikes, state, trace, grads))
        (s_ref, st_ref, tr_ref, g_ref), (s_nb, st_nb, tr_nb, g_nb) = results
        assert s_nb.dtype == dtype and s_nb.shape == x.shape
        assert torch.equal(s_nb, s_ref), f"spikes differ for shape {shape}"
        assert 0 < float(s_ref.detach().mean()) < 1 or shape[0] == 1, "inputs should make some neurons fire"
        torch.testing.assert_close(tr_nb, tr_ref, rtol=0, atol=atol)
        torch.testing.assert_close(st_nb.v, st_ref.v, rtol=0, atol=atol)
        assert torch.equal(st_nb.s, st_ref.s)
        for name, gn, gr in zip(("x", "v0", "s0", "tau"), g_nb, g_ref):
            _close_grad(gn, gr, rel, f"grad {name}, shape {shape}")


def _detached_multi_step(x, state, p, record):
    """The SLTT oracle: the reference step with the state entering every step detached."""
    return scan(lambda xt, st, q: F.lif_step(xt, F.LIFState(st.v.detach(), st.s.detach()), q), x, state, p, record)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("surrogate", ["atan", "triangle"])
@pytest.mark.parametrize("detach", [False, True], ids=["grad_reset", "detach_reset"])
@pytest.mark.parametrize("timing", F.RESET_TIMINGS)
@pytest.mark.parametrize("reset", F.RESETS)
def test_spatial_matches_detached_reference(reset, timing, detach, surrogate, dtype):
    """``multi_step_spatial`` (SLTT): same forward as ``multi_step``; gradients (x, learnable tau) equal
    to the reference run with the temporal path cut before every step, none to the initial state."""
    case = F.RESETS.index(reset) * 4 + F.RESET_TIMINGS.index(timing) * 2 + int(detach)
    tau = torch.tensor(4.0, dtype=dtype, requires_grad=True)
    params = F.LIFParams(tau=tau, v_th=0.9, v_reset=-0.3, v_rest=0.0 if case % 2 else -0.15, reset=reset,
                         reset_timing=timing, detach_reset=detach, surrogate=SURROGATES[surrogate],
                         decay_input=bool(case % 3))
    atol, rel = TOL[dtype]
    for k, shape in enumerate(SHAPES):
        x, v0, s0, ws, wf = _inputs(shape, dtype, seed=100 + case * 10 + k)
        results = []
        for run in (_detached_multi_step, NB.multi_step_spatial, NB.multi_step):
            p = F.discretize(params)
            spikes, state, trace = run(x, F.LIFState(v0, s0), p, True)
            grads = torch.autograd.grad(_loss(spikes, state, trace, ws, wf), [x, tau, v0], allow_unused=True)
            results.append((spikes, trace, grads))
        (s_ref, tr_ref, g_ref), (s_sp, tr_sp, g_sp), (s_full, _, g_full) = results
        assert torch.equal(s_sp, s_ref) and torch.equal(s_full, s_ref)
        torch.testing.assert_close(tr_sp, tr_ref, rtol=0, atol=atol)
        _close_grad(g_sp[0], g_ref[0], rel, f"grad x, shape {shape}")
        _close_grad(g_sp[1], g_ref[1], rel, f"grad tau, shape {shape}")
        assert g_sp[2] is None and g_ref[2] is None  # the initial state is cut off as well
        if shape[0] > 1:  # the cut matters: full BPTT gives another input gradient
            assert float((g_full[0] - g_ref[0]).abs().max()) > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("timing", F.RESET_TIMINGS)
@pytest.mark.parametrize("decay_input", [False, True])
def test_module_learnable_tau_per_neuron(timing, decay_input, dtype):
    """``LIF(backend="numba")`` vs ``LIF(backend="reference")`` with per-neuron learnable tau."""
    shape = (3, 2, 3)  # [C, H, W]
    kw = dict(tau=6.0, v_th=1.1, v_rest=0.05, reset="to_value", v_reset=-0.1, reset_timing=timing,
              surrogate="sigmoid", decay_input=decay_input, learn_tau=True, shape=shape)
    mods = [LIF(backend=b, **kw).to(dtype) for b in ("reference", "numba")]
    for m in mods:
        with torch.no_grad():
            m.log_tau.copy_(torch.linspace(1.0, 2.5, 18, dtype=dtype).view(shape))
    x, v0, s0, ws, wf = _inputs((11, 2, *shape), dtype, seed=7)
    x = x.detach() * (3.0 if decay_input else 1.0)
    outs, grads = [], []
    for m in mods:
        xi = x.clone().requires_grad_()
        out = m(xi, F.LIFState(v0.detach(), s0.detach()), record=True)
        _loss(out.spikes, out.state, out.v, ws, wf).backward()
        outs.append(out)
        grads.append((xi.grad, m.log_tau.grad))
    atol, rel = TOL[dtype]
    assert torch.equal(outs[1].spikes, outs[0].spikes)
    torch.testing.assert_close(outs[1].v, outs[0].v, rtol=0, atol=atol)
    _close_grad(grads[1][0], grads[0][0], rel, "grad x")
    _close_grad(grads[1][1], grads[0][1], rel, "grad log_tau")
    assert grads[0][1].shape == shape and bool((grads[0][1] != 0).any())


def test_module_scalar_tau_float64_input_float32_tau():
    """A float32 scalar log_tau with float64 input promotes exactly like the reference."""
    mods = [LIF(tau=3.0, learn_tau=True, backend=b) for b in ("reference", "numba")]
    x = torch.randn(13, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) + 0.5
    res = []
    for m in mods:
        xi = x.clone().requires_grad_()
        out = m(xi)
        (out.spikes.sum() + out.state.v.pow(2).sum()).backward()
        res.append((out.spikes, out.state.v, xi.grad, m.log_tau.grad))
    assert res[1][0].dtype == torch.float64 and torch.equal(res[1][0], res[0][0])
    torch.testing.assert_close(res[1][1], res[0][1], rtol=0, atol=1e-12)
    _close_grad(res[1][2], res[0][2], 1e-10, "grad x")
    _close_grad(res[1][3], res[0][3], 1e-5, "grad log_tau (float32 parameter)")


@pytest.mark.parametrize("which", ["final_state_only", "spike_sum_only", "trace_only"])
def test_partial_losses(which):
    """Gradients that reach only some outputs (None or stride-0 grads for the others)."""
    x0 = torch.randn(8, 3, 10, generator=torch.Generator().manual_seed(11)) + 0.6
    p = F.discretize(F.LIFParams(tau=5.0, reset_timing="deferred", surrogate=Triangle(1.0)))
    grads = []
    for impl in (F, NB):
        x = x0.clone().requires_grad_()
        spikes, state, trace = impl.multi_step(x, None, p, record=which == "trace_only")
        if which == "final_state_only":
            loss = (state.v * torch.arange(30.0).view(3, 10)).sum() + state.s.sum()
        elif which == "spike_sum_only":
            loss = spikes.sum()
        else:
            loss = trace.sum()
        loss.backward()
        grads.append(x.grad)
    assert bool((grads[0] != 0).any())
    _close_grad(grads[1], grads[0], 1e-5, "grad x")


def test_second_backward_with_retain_graph():
    """Two backward passes over one graph (nothing saved is overwritten by the first) agree."""
    x = (torch.randn(12, 2, 9, generator=torch.Generator().manual_seed(2)) + 0.5).requires_grad_()
    p = F.discretize(F.LIFParams(tau=4.0, surrogate=Sigmoid()))
    w = torch.randn(12, 2, 9, generator=torch.Generator().manual_seed(3))
    spikes, state, _ = NB.multi_step(x, None, p)
    loss = (spikes * w).sum() + state.v.sum()
    g1 = torch.autograd.grad(loss, x, retain_graph=True)[0]
    g2 = torch.autograd.grad(loss, x)[0]
    s_ref, st_ref, _ = F.multi_step(x, None, p)
    g_ref = torch.autograd.grad((s_ref * w).sum() + st_ref.v.sum(), x)[0]
    assert torch.equal(g1, g2)
    _close_grad(g1, g_ref, 1e-5, "grad x")


def test_threaded_path_matches_reference():
    """Inputs with T * M >= 2**20 are split over threads; chunk edges must not change results."""
    T, B, N = 65, 3, 5461  # T * M = 1_064_895, M not a multiple of the chunk size
    x = (torch.randn(T, B, N, generator=torch.Generator().manual_seed(4)) * 0.7 + 0.3).requires_grad_()
    w = torch.randn(T, B, N, generator=torch.Generator().manual_seed(5))
    p = F.discretize(F.LIFParams(tau=3.0, reset_timing="deferred", reset="to_value"))
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    try:
        assert NB._config(p, x.dtype, T, B * N)[4] >= 2
        res = []
        for impl in (F, NB):
            spikes, state, _ = impl.multi_step(x, None, p)
            res.append((spikes, state.v, torch.autograd.grad((spikes * w).sum() + state.v.sum(), x)[0]))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(res[1][0], res[0][0])
    torch.testing.assert_close(res[1][1], res[0][1], rtol=0, atol=1e-6)
    _close_grad(res[1][2], res[0][2], 1e-5, "grad x")


def test_no_grad_and_non_contiguous_input():
    x = torch.randn(10, 6, 4, generator=torch.Generator().manual_seed(5)).transpose(1, 2) + 0.5
    assert not x.is_contiguous()
    p = F.discretize(F.LIFParams(tau=2.0, v_rest=0.2, reset="to_value"))
    with torch.no_grad():
        ref = F.multi_step(x, None, p, record=True)
        got = NB.multi_step(x, None, p, record=True)
    assert torch.equal(got[0], ref[0]) and got[0].shape == x.shape
    torch.testing.assert_close(got[2], ref[2], rtol=0, atol=1e-6)
    assert got[2] is not None and got[1].v.shape == (4, 6)


def test_spike_exactly_at_threshold():
    """``H(0) = 1``: a membrane that lands exactly on the threshold fires, as in the reference."""
    x = torch.tensor([[[0.5, 0.25, 0.0]], [[0.5, 0.25, 1.0]]])  # [T=2, B=1, N=3]
    p = F.discretize(F.LIFParams(tau=math.inf))  # IF: h = v + x, exact in binary
    s_ref = F.multi_step(x, None, p)[0]
    s_nb = NB.multi_step(x, None, p)[0]
    assert s_nb[:, 0].tolist() == [[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]]
    assert torch.equal(s_nb, s_ref)


def test_recurrent_raises_backend_error():
    lif = LIF(shape=5, recurrent=True, backend="numba")
    with pytest.raises(BackendError, match="recurrent"):
        lif(torch.rand(3, 2, 5))


def test_auto_picks_numba_on_cpu_and_falls_back_for_recurrent():
    x = torch.rand(3, 2, 5)
    p = F.discretize(F.LIFParams(tau=5.0))
    assert resolve("lif", "auto", p, x) is NB
    p_rec = F.discretize(F.LIFParams(tau=5.0, w_rec=torch.zeros(5, 5)))
    assert resolve("lif", "auto", p_rec, x) is F


def test_supports_reasons():
    x = torch.rand(3, 2, 5)
    p = F.discretize(F.LIFParams(tau=5.0))
    assert NB.supports(p, x) is None
    assert "dtype" in NB.supports(p, x.half())
    bad_beta = p._replace(beta=torch.full((4,), 0.9))
    assert "broadcast" in NB.supports(bad_beta, x)
    batch_beta = p._replace(beta=torch.full((2, 5), 0.9))  # would broadcast over the batch too
    assert "broadcast" in NB.supports(batch_beta, x)
    promoting = p._replace(beta=torch.full((5,), 0.9, dtype=torch.float64))
    assert "promote" in NB.supports(promoting, x)
    with pytest.raises(BackendError, match="state"):
        NB.multi_step(x, F.LIFState(torch.zeros(2, 5, dtype=torch.float64), torch.zeros(2, 5)), p)


def _saved_by_lif(x, p, lean=False):
    """Every tensor the numba LIF saves for backward (recorded by a pack hook), after one forward;
    ``lean``: as under spike.train.memory's packed / mesa8 hooks (``private_restores``)."""
    import contextlib

    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            (NB.private_restores() if lean else contextlib.nullcontext()):
        spikes, state, _ = NB.multi_step(x, None, p)
    return saved, spikes


def test_plain_bptt_saves_input_and_membrane():
    """Plain BPTT (the fast path): the input x itself and the pre-reset membrane, in a [T+1, M] buffer
    whose spare row lets the backward write dL/dx there (one float [T, M] buffer beyond x)."""
    T, B, N = 7, 3, 13
    x = (torch.randn(T, B, N, generator=torch.Generator().manual_seed(8)) + 0.6).requires_grad_()
    p = F.discretize(F.LIFParams(tau=4.0))
    saved, spikes = _saved_by_lif(x, p)
    floats = [t for t in saved if t.is_floating_point() and t.numel() > B * N]
    assert len(floats) == 2 and floats[0].data_ptr() == x.data_ptr(), [tuple(t.shape) for t in floats]
    h = floats[1]
    assert tuple(h.shape) == (T, B * N) and h.untyped_storage().nbytes() == (T + 1) * B * N * 4
    assert not [t for t in saved if t.dtype == torch.uint8]
    ref = F.multi_step(x.detach(), None, p, record=True)[2]  # the reference's post-reset membrane
    s = spikes.reshape(T, -1)
    torch.testing.assert_close(h * (1 - s) + s * (h - 1.0), ref.reshape(T, -1))  # h, reset by subtraction


@pytest.mark.parametrize("learn_gain", [False, True], ids=["fixed", "learnable_tau"])
def test_memory_modes_save_input_and_spike_bits_only(learn_gain):
    """Under the memory hooks backward keeps the input x itself (no copy), the spikes as bits and [M]
    vectors; no membrane or other float [T, M] buffer, with or without a learnable tau."""
    T, B, N = 7, 3, 13  # M = 39: not a multiple of 8
    x = (torch.randn(T, B, N, generator=torch.Generator().manual_seed(8)) + 0.6).requires_grad_()
    tau = torch.tensor(4.0, requires_grad=True) if learn_gain else 4.0
    p = F.discretize(F.LIFParams(tau=tau))
    saved, spikes = _saved_by_lif(x, p, lean=True)
    floats = [t for t in saved if t.is_floating_point() and t.numel() > B * N]  # more than one step's worth
    assert len(floats) == 1 and floats[0].data_ptr() == x.data_ptr(), [tuple(t.shape) for t in floats]
    bits = [t for t in saved if t.dtype == torch.uint8]
    assert len(bits) == 1 and tuple(bits[0].shape) == (T, (B * N + 7) // 8)
    m = torch.arange(B * N)
    unpacked = ((bits[0][:, m // 8] >> (m % 8)) & 1).to(spikes.dtype)
    assert torch.equal(unpacked, spikes.reshape(T, -1)) and bool(spikes.any())
    assert sum(t.numel() for t in saved) <= T * B * N + T * ((B * N + 7) // 8) + 8 * B * N


@pytest.mark.parametrize("mode", ["packed", "mesa8"])
def test_memory_hooks_keep_input_and_match(mode):
    """Under spike.train.memory's hooks dL/dx may be written over the restored copy of x, never over
    x itself: x is unchanged, packed gradients are bit-identical to plain ones, mesa8 close."""
    from spike.train.memory import saved_tensor_hooks

    T, B, N = 30, 4, 300  # T * B * N over MIN_NUMEL: the hooks pack the saved x
    g = torch.Generator().manual_seed(9)
    x0 = torch.randn(T, B, N, generator=g) * 0.8 + 0.4
    w = torch.randn(T, B, N, generator=g)
    p = F.discretize(F.LIFParams(tau=5.0, surrogate=ATan(2.0)))
    grads = []
    for hooks in ("none", mode):
        x = x0.clone().requires_grad_()
        with saved_tensor_hooks(hooks):
            spikes, state, _ = NB.multi_step(x, None, p)
        ((spikes * w).sum() + state.v.sum()).backward()
        assert torch.equal(x.detach(), x0), "backward overwrote the input"
        grads.append(x.grad)
    if mode == "packed":
        assert torch.equal(grads[1], grads[0])
    else:
        cos = float(torch.nn.functional.cosine_similarity(grads[1].flatten(), grads[0].flatten(), 0))
        assert 0.99 < cos < 1.0


def test_foreign_hooks_returning_a_stored_copy_are_not_overwritten():
    """A hook whose unpack hands back one stored copy (not spike.train.memory's fresh buffers) must
    see it intact on a second backward."""
    x = (torch.randn(9, 2, 11, generator=torch.Generator().manual_seed(10)) + 0.5).requires_grad_()
    w = torch.randn(9, 2, 11, generator=torch.Generator().manual_seed(11))
    p = F.discretize(F.LIFParams(tau=3.0))
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t.clone(), lambda t: t):
        spikes, state, _ = NB.multi_step(x, None, p)
    loss = (spikes * w).sum() + state.v.sum()
    g1 = torch.autograd.grad(loss, x, retain_graph=True)[0]
    g2 = torch.autograd.grad(loss, x)[0]
    assert torch.equal(g1, g2)


def _packed_grad_and_buffers(consumer, monkeypatch):
    """x.grad after ``consumer(spikes, x)`` under ``packed`` (x kept as it is, so dL/dx cannot go over a
    restore) and whether the LIF backward allocated a [T, M] buffer."""
    from spike.train.memory import saved_tensor_hooks

    T, B, N = 20, 3, 400
    x = (torch.randn(T, B, N, generator=torch.Generator().manual_seed(12)) * 0.8 + 0.4).requires_grad_()
    p = F.discretize(F.LIFParams(tau=5.0, surrogate=ATan(2.0)))
    big: list = []
    real = NB._empty
    monkeypatch.setattr(NB, "_empty", lambda shape, dtype: big.append(tuple(shape)) or real(shape, dtype))
    with saved_tensor_hooks("packed"):
        spikes, _, _ = NB.multi_step(x, None, p)
    big.clear()
    consumer(spikes, x)
    return x.grad, (T, B * N) in big


def _plain_grad(consumer):
    x = (torch.randn(20, 3, 400, generator=torch.Generator().manual_seed(12)) * 0.8 + 0.4).requires_grad_()
    spikes, _, _ = NB.multi_step(x, None, F.discretize(F.LIFParams(tau=5.0, surrogate=ATan(2.0))))
    consumer(spikes, x)
    return x.grad


def test_packed_writes_dl_dx_over_an_incoming_gradient_nobody_else_holds(monkeypatch):
    """Under packed the LIF's x is the caller's tensor, so dL/dx goes over dL/dspikes when autograd handed
    the backward the only reference to it (a fresh buffer from the consumer, or a view of one): no new
    [T, M] buffer, and plain BPTT's gradient."""
    w = torch.randn(20, 3, 400, generator=torch.Generator().manual_seed(13))

    def fresh(s, x):
        (s * w).pow(2).sum().backward()

    def view(s, x):  # the consumer reshapes, as the layers do: the gradient arrives as a view of its buffer
        (s.flatten(0, 1) * w.flatten(0, 1)).pow(2).sum().backward()

    ref = _plain_grad(fresh)
    assert ref.abs().sum() > 0
    for consumer in (fresh, view):
        g, allocated = _packed_grad_and_buffers(consumer, monkeypatch)
        assert not allocated, consumer.__name__
        assert torch.equal(g, ref), consumer.__name__


def test_packed_never_writes_over_a_gradient_someone_else_holds(monkeypatch):
    """A gradient a hook stored, one the caller passed to autograd.grad, or one another consumer's
    pending backward still reads is left intact (dL/dx gets its own buffer), and the result is plain BPTT's."""
    w = torch.randn(20, 3, 400, generator=torch.Generator().manual_seed(14))
    stored: list = []

    def hooked(s, x):
        s.register_hook(lambda gr: stored.append(gr))
        (s * w).pow(2).sum().backward()
        stored.append(stored[-1].clone())

    g, allocated = _packed_grad_and_buffers(hooked, monkeypatch)
    assert allocated and torch.equal(stored[0], stored[1])
    assert torch.equal(g, _plain_grad(lambda s, x: (s * w).pow(2).sum().backward()))

    def given(s, x):
        gr = w.clone()
        torch.autograd.grad(s, x, gr)
        assert torch.equal(gr, w)

    _, allocated = _packed_grad_and_buffers(given, monkeypatch)
    assert allocated

    y = torch.randn(20, 3, 400, generator=torch.Generator().manual_seed(15), requires_grad=True)
    y3 = [None]

    def shared(s, x):  # y's branch was recorded before the LIF, so it runs after it, on the same gradient
        z = s + y3[0]
        (z * z).sum().backward()

    y3[0] = y * 3.0
    _plain_grad(shared)
    gy_ref, y.grad = y.grad.clone(), None
    y3[0] = y * 3.0
    _, allocated = _packed_grad_and_buffers(shared, monkeypatch)
    assert allocated and torch.equal(y.grad, gy_ref)


@pytest.mark.parametrize("sg_kind", [0, 1, 2, 3])
@pytest.mark.parametrize("reset", [(0.0, 1.0), (1.0, -0.3), (0.0, 0.0)])  # subtract / to a value / none: (ra, rb)
def test_one_pass_backward_equals_the_general_reverse_pass(sg_kind, reset):
    """The immediate-reset backward that the usual training step takes (one pass per step) gives the
    general reverse pass's dL/dx and carries bit for bit, for every surrogate kind and reset."""
    import numpy as np

    from spike.backends import _numba_lif_kernels as K
    T, M = 7, 300
    rng = np.random.default_rng(sg_kind)
    x = rng.standard_normal((T, M)).astype(np.float32)
    h = (rng.standard_normal((T, M)) * 0.8 + 0.9).astype(np.float32)  # spikes where h >= 1
    gs = rng.standard_normal((T, M)).astype(np.float32)
    gtr = rng.standard_normal((T, M)).astype(np.float32)
    cst = np.zeros(10, np.float32)
    cst[K._VTH], cst[K._ONE], cst[K._RA], cst[K._RB], cst[K._KD] = 1.0, 1.0, reset[0], reset[1], 1.0
    cst[K._SG1], cst[K._SG2] = 1.7, 2.3
    beta = rng.uniform(0.5, 0.99, M).astype(np.float32)
    gain = rng.uniform(0.5, 1.5, M).astype(np.float32)
    z = np.zeros(M, np.float32)
    gvT = rng.standard_normal(M).astype(np.float32)
    gsT = rng.standard_normal(M).astype(np.float32)
    outs = []
    for need_gb in (0, 1):  # need_gb = 1 takes the general pass
        gx = np.full((T, M), np.nan, np.float32)
        gv0, gs0, gb, gg = (np.full(M, np.nan, np.float32) for _ in range(4))
        K._bwd_chunks_h(x, h, z, z, beta, gain, cst, sg_kind, 0, 1, 1, 1, need_gb, 0, 64, 0, -(-M // 64),
                        gs, gtr, gvT, gsT, gx, gv0, gs0, gb, gg)
        outs.append((gx, gv0, gs0))
    for a, b in zip(*outs):
        assert np.array_equal(a, b)
    assert np.isfinite(outs[0][0]).all() and np.abs(outs[0][0]).max() > 0
