"""CUBA-LIF and SE-adLIF on the event path (spike.events.network) against the dense torch reference.

The oracle is the dense ``Sequential`` in ``eval()`` mode with the reference step functions
(:func:`spike.neurons.cuba.cuba_step`, :func:`spike.neurons.adlif.adlif_step`). These layers are
updated every step with the reference's operations in its order and dtype, so spikes of every layer,
both final state variables and the readout are compared bit for bit when the synaptic sums are exact
(dyadic weights) and in float64 with arbitrary weights (as the LIF tests of test_event_driven.py).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from spike.energy import EnergyMeter
from spike.events import network as N
from spike.inference.export import ExportError, export_event_network, load_event_network, save_event_network
from spike.neurons import LI, LIF
from spike.neurons.adlif import AdLIF
from spike.neurons.cuba import CubaLIF
from spike.synapses import AvgPool2d, Conv2d, Flatten, Linear, Sequential, SharedDropout
from spike.synapses.delays import DelayedLinear, TimePad
from event_net_helpers import dyadic_, to_samples  # noqa: E402  (tests/events)
from event_net_helpers import rand_input as _rand_input  # noqa: E402

TWO_VAR = (CubaLIF, AdLIF)


def rand_input(gen: torch.Generator, t: int, b: int, shape, p: float = 0.15, max_count: int = 3) -> torch.Tensor:
    """:func:`event_net_helpers.rand_input` at a default activity of 15 %."""
    return _rand_input(gen, t, b, shape, p, max_count)


def compare(model: nn.Module, x: torch.Tensor, input_shape, min_spikes: int = 20, exact_states: bool = True):
    """Both paths: every spiking layer, the final ``v, s`` and second variable (``i`` / ``w``), the readout
    are equal bit for bit (``exact_states=False``: spikes bit for bit, states and readout to 1e-12 relative:
    with arbitrary weights the dense matrix product sums in another order, ~1e-16 relative apart).
    Returns ``(dense output, RunResult, net)``."""
    eq = np.testing.assert_array_equal if exact_states else \
        (lambda a, b, err_msg="": np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=err_msg))
    model = model.eval()
    with torch.no_grad():
        ref = model(x, record=True)
    net = export_event_network(model, input_shape)
    res = N.run(net, to_samples(x), x.shape[0], record=True)
    names = list(dict(model.named_children()))
    assert set(net.spiking_names) <= set(ref.records)
    for name in net.spiking_names:
        dense = ref.records[name][0].numpy()
        np.testing.assert_array_equal(res.spikes[name], dense, err_msg=f"spikes of layer {name}")
        state = ref.state[names.index(name)]
        eq(res.v_final[name], state.v.numpy(), err_msg=f"final v of {name}")
        np.testing.assert_array_equal(res.s_final[name], state.s.numpy(), err_msg=f"final s of {name}")
        if isinstance(model[names.index(name)], TWO_VAR):
            eq(res.aux_final[name], state[1].numpy(), err_msg=f"final i/w of {name}")
            assert dense.sum() >= min_spikes, f"layer {name} barely fires: the comparison could not fail"
    eq(res.out, ref.out.numpy())
    return ref, res, net


def _cuba(**kw):
    return CubaLIF(**{"backend": "reference", **kw})


def _adlif(**kw):
    return AdLIF(**{"backend": "reference", **kw})


# ------------------------------------------------------------------------------------------------
# exactness: MLPs, conv net, learnable per-neuron parameters, float64, trained weights
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reset,timing,bias", list(itertools.product(
    ["subtract", "to_value", "none"], ["immediate", "deferred"], [False, True])))
def test_cuba_mlp_exact(reset, timing, bias):
    gen = torch.Generator().manual_seed(1)
    kw = dict(reset=reset, reset_timing=timing, v_reset=-0.125)
    model = Sequential(Linear(20, 30, bias=bias), _cuba(tau=4.0, tau_syn=3.0, **kw), SharedDropout(0.3),
                       Linear(30, 15, bias=bias), _cuba(tau=3.0, tau_syn=2.0, discretization="euler", **kw),
                       Linear(15, 6, bias=bias), _cuba(tau=5.0, tau_syn=5.0, v_th=0.5, **kw))
    dyadic_(model, gen, bits=6)
    compare(model, rand_input(gen, 40, 3, (20,)), 20)


@pytest.mark.parametrize("reset,bias", list(itertools.product(["to_value", "subtract", "none"], [False, True])))
def test_adlif_mlp_exact(reset, bias):
    gen = torch.Generator().manual_seed(2)
    model = Sequential(Linear(20, 30, bias=bias), _adlif(tau=3.0, tau_w=20.0, a=0.4, b=1.5, reset=reset),
                       Linear(30, 15, bias=bias),
                       _adlif(tau=2.0, tau_w=10.0, a=0.9, b=0.3, q=2.0, v_th=0.5, v_reset=-0.25, reset=reset,
                              discretization="euler"),
                       Linear(15, 5, bias=bias), LI(tau=5.0, backend="reference"))
    dyadic_(model, gen, bits=3)
    compare(model, rand_input(gen, 50, 3, (20,), p=0.3), 20)


def test_learnable_per_neuron_parameters_exact():
    """Per-neuron tau/tau_syn (CubaLIF), tau/tau_w and a/b (AdLIF), a scalar learnable tau, arrays
    in float32: ``1 - alpha`` is computed in float32 like torch does for a tensor."""
    gen = torch.Generator().manual_seed(3)
    cuba = _cuba(learn_tau=True, shape=(24,), reset="to_value")
    ad = _adlif(learn_tau=True, learn_ab=True, shape=(18,), a=0.5, b=1.0)
    cuba_scalar = _cuba(tau=6.0, tau_syn=2.0, learn_tau=True)
    with torch.no_grad():
        cuba.log_tau.copy_(torch.log(1.5 + 8 * torch.rand(24, generator=gen)))
        cuba.log_tau_syn.copy_(torch.log(1.2 + 6 * torch.rand(24, generator=gen)))
        ad.log_tau.copy_(torch.log(1.5 + 8 * torch.rand(18, generator=gen)))
        ad.log_tau_w.copy_(torch.log(5 + 50 * torch.rand(18, generator=gen)))
        ad.a_raw.copy_(torch.randn(18, generator=gen))
        ad.b_raw.copy_(torch.randn(18, generator=gen))
    model = Sequential(Linear(16, 24, bias=False), cuba, Linear(24, 18, bias=False), ad,
                       Linear(18, 8, bias=False), cuba_scalar)
    dyadic_(model, gen, bits=4)
    ref, res, _ = compare(model, rand_input(gen, 60, 3, (16,), p=0.25), 16)
    assert res.aux_final["3"].std() > 0  # the adaptation varies per neuron


def test_cuba_directly_on_the_input_and_delays_and_timepad_exact():
    """A CubaLIF layer fed by the input events (identity synapse), a delayed synapse (ring buffer) and a
    TimePad tail (the current keeps charging the membrane after the input ends)."""
    gen = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    model = Sequential(_cuba(tau=3.0, tau_syn=2.0, v_th=1.5), DelayedLinear(12, 16, max_delay=4),
                       _adlif(tau=3.0, tau_w=15.0, a=0.2, b=0.5), TimePad(6), Linear(16, 5),
                       _cuba(tau=8.0, tau_syn=8.0, v_th=0.25))
    dyadic_(model, gen, bits=3)
    assert (model[1].delays() > 0).any()
    ref, res, _ = compare(model, rand_input(gen, 30, 2, (12,), p=0.3), 12)
    assert res.out.shape[0] == 36 and res.out[30:].sum() > 0  # the tail fires


def test_cuba_conv_net_exact():
    gen = torch.Generator().manual_seed(5)
    model = Sequential(Conv2d(2, 4, 3, padding=1), _cuba(tau=3.0, tau_syn=2.0), AvgPool2d(2),
                       Conv2d(4, 6, 3, stride=2, bias=False), _cuba(tau=4.0, tau_syn=3.0, reset_timing="deferred"),
                       Flatten(), Linear(6 * 2 * 2, 4), _adlif(tau=3.0, tau_w=10.0, v_th=0.25))
    dyadic_(model, gen, bits=3)
    compare(model, rand_input(gen, 25, 2, (2, 10, 10), p=0.2), (2, 10, 10), min_spikes=5)


@pytest.mark.parametrize("neuron", ["cuba", "adlif"])
def test_float64_arbitrary_weights_exact_also_against_the_fused_backend(neuron):
    """float64, normal weights: spikes exact against the reference; the dense path's default backend (the
    fused numba kernel on CPU) gives the same spikes."""
    torch.manual_seed(6)
    gain = (3.0, 2.0) if neuron == "cuba" else (8.0, 8.0)
    make = (lambda **k: CubaLIF(tau=4.0, tau_syn=2.0, **k)) if neuron == "cuba" else \
        (lambda **k: AdLIF(tau=3.0, tau_w=25.0, a=0.3, b=0.8, **k))
    model = Sequential(Linear(24, 40), make(backend="reference"), Linear(40, 30), make(backend="reference"),
                       Linear(30, 10), LI(tau=5.0)).double()
    with torch.no_grad():
        model[0].weight.mul_(gain[0])
        model[2].weight.mul_(gain[1])
    x = rand_input(torch.Generator().manual_seed(7), 40, 4, (24,), p=0.25).double()
    ref, res, _ = compare(model, x, 24, exact_states=False)
    fused = Sequential(*[type(m)(**{**_kwargs(m), "backend": "auto"}) if isinstance(m, TWO_VAR) else m
                         for m in model]).double().eval()
    with torch.no_grad():
        out = fused(x, record=True)
    for name in ("1", "3"):
        np.testing.assert_array_equal(res.spikes[name], out.records[name][0].numpy())
    np.testing.assert_allclose(res.out, out.out.numpy(), rtol=1e-12, atol=1e-12)


def _kwargs(m: nn.Module) -> dict:
    p = m._template
    if isinstance(m, CubaLIF):
        return dict(tau=p.tau, tau_syn=p.tau_syn, dt=p.dt, reset=p.reset, reset_timing=p.reset_timing)
    return dict(tau=p.tau, tau_w=p.tau_w, dt=p.dt, a=p.a, b=p.b, q=p.q, reset=p.reset)


def test_briefly_trained_model_still_matches():
    """A few Adam steps (weights, per-neuron taus, a/b) in float64: the trained model gives the same
    spikes; with its weights then put on a dyadic grid (quantised), in float32, everything is bit-exact
    with the trained per-neuron taus and a/b."""
    torch.manual_seed(8)
    model = Sequential(Linear(16, 32), _cuba(learn_tau=True, shape=(32,), detach_reset=True), Linear(32, 24),
                       _adlif(learn_tau=True, learn_ab=True, shape=(24,), tau=4.0, tau_w=30.0),
                       Linear(24, 4), LI(tau=5.0)).double()
    gen = torch.Generator().manual_seed(9)
    x = rand_input(gen, 30, 8, (16,), p=0.3).double()
    y = torch.randint(0, 4, (8,), generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    for _ in range(5):
        loss = nn.functional.cross_entropy(model(x).out.mean(0), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # every parameter moved
    compare(model, x, 16, exact_states=False)
    model = model.float()
    with torch.no_grad():  # quantise the trained weights onto the grid k / 64
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.round(m.weight * 64) / 64)
                m.bias.copy_(torch.round(m.bias * 64) / 64)
    compare(model, x.float(), 16)


# ------------------------------------------------------------------------------------------------
# entry points: stream in any chunking, stop rule, counts, the .npz file
# ------------------------------------------------------------------------------------------------


def _mixed_net(seed: int = 10):
    gen = torch.Generator().manual_seed(seed)
    model = Sequential(Linear(16, 20), _cuba(tau=3.0, tau_syn=2.0), Linear(20, 12, bias=False),
                       _adlif(tau=3.0, tau_w=12.0, a=0.3, b=0.6, v_th=0.5), Linear(12, 4, bias=False),
                       _cuba(tau=6.0, tau_syn=4.0, v_th=0.5)).eval()
    dyadic_(model, gen, bits=4)
    return model, export_event_network(model, 16), gen


@pytest.mark.parametrize("k", [1, 2, 3, 7, 30])
def test_stream_equals_batch_in_any_chunking(k):
    model, net, gen = _mixed_net()
    x = rand_input(gen, 30, 1, (16,), p=0.3)
    sample = to_samples(x)[0]
    full = N.run(net, [sample], 30)
    assert full.out.sum() > 5
    tb, ch, cnt = sample
    for advance in (True, False):
        s = N.EventStream(net)
        for c0 in range(0, 30, k):
            m = (tb >= c0) & (tb < c0 + k)
            done = s.feed(tb[m], ch[m], cnt[m])
            np.testing.assert_array_equal(s.output(), full.out[:done, 0])  # the output so far, any moment
            if advance:
                s.advance(min(c0 + k, 30))
        res = s.finish(30)
        np.testing.assert_array_equal(res.out, full.out)
        np.testing.assert_array_equal(res.synops, full.synops)
        np.testing.assert_array_equal(res.updates, full.updates)
        np.testing.assert_array_equal(res.mac_synops, full.mac_synops)


def test_stream_and_batch_stop_at_the_same_step():
    model, net, gen = _mixed_net(seed=11)
    x = rand_input(gen, 30, 4, (16,), p=0.4)
    samples = to_samples(x)
    free = N.run(net, samples, 30)
    cum = np.cumsum(free.out.astype(np.float64), axis=0)  # [T, B, C]
    srt = np.sort(cum, axis=-1)
    gap = srt[..., -1] - srt[..., -2]  # [T, B]
    beta = np.full(30, np.quantile(gap[8:], 0.4))
    beta[:3] = np.inf
    rule = N.StopRule(beta)
    ref = N.run(net, samples, 30, stop_rule=rule)
    expect = [next((t + 1 for t in range(30) if gap[t, b] > beta[t]), 30) for b in range(4)]
    assert ref.steps.tolist() == expect and min(expect) < 30
    for b in range(4):
        np.testing.assert_array_equal(ref.out[:expect[b], b], free.out[:expect[b], b])
        for k in (1, 4, 30):
            tb, ch, cnt = samples[b]
            s = N.EventStream(net, stop_rule=rule)
            for c0 in range(0, 30, k):
                m = (tb >= c0) & (tb < c0 + k)
                s.feed(tb[m], ch[m], cnt[m])
            res = s.finish(30)
            assert res.steps.tolist() == [expect[b]], (b, k)
            np.testing.assert_array_equal(res.out[:, 0], ref.out[:expect[b], b])
            np.testing.assert_array_equal(res.synops[0], ref.synops[b])


def test_counts_equal_the_energy_meter():
    """Synaptic operations per layer (AC + MAC and the MAC part) and neuron updates equal the meter's on
    the dense path; the two-variable layers update every neuron every step."""
    model, net, gen = _mixed_net(seed=12)
    x = rand_input(gen, 20, 5, (16,), p=0.3)  # counts 1..3: multiply-accumulates at the input
    with EnergyMeter(model) as m, torch.no_grad():
        model(x)
    rep = m.report()
    res = N.run(net, to_samples(x), 20)
    syn = [lc for lc in rep.layers if lc.kind == "synapse"]
    neu = [lc for lc in rep.layers if lc.kind == "neuron"]
    assert [lc.name for lc in neu] == list(res.layers) == ["1", "3", "5"]
    for i, (ls, ln) in enumerate(zip(syn, neu)):
        np.testing.assert_array_equal(res.synops[:, i], ls.ac + ls.mac)
        np.testing.assert_array_equal(res.mac_synops[:, i], ls.mac)
        np.testing.assert_array_equal(res.updates[:, i], ln.updates)
    assert res.mac_synops[:, 0].sum() > 0 and res.synops[:, 1:].sum() > 0  # both kinds are exercised
    assert (res.updates == 20 * np.array([20, 12, 4])).all() and res.decays.sum() == 0


def test_npz_round_trip_and_old_files_load(tmp_path):
    model = Sequential(Linear(16, 20), _cuba(learn_tau=True, shape=(20,)), Linear(20, 12),
                       _adlif(learn_ab=True, shape=(12,)), Linear(12, 4), _cuba(reset_timing="deferred"))
    dyadic_(model, torch.Generator().manual_seed(13), bits=4)
    net = export_event_network(model.eval(), 16)
    path = save_event_network(tmp_path / "net.npz", net, {"note": "x"})
    net2, meta = load_event_network(path)
    assert meta["note"] == "x" and [type(a) for a in net2.layers] == [type(a) for a in net.layers]
    assert isinstance(net2.layers[1].alpha, np.ndarray) and isinstance(net2.layers[5].alpha, float)
    x = rand_input(torch.Generator().manual_seed(14), 25, 3, (16,), p=0.3)
    a, b = N.run(net, to_samples(x), 25, record=True), N.run(net2, to_samples(x), 25, record=True)
    np.testing.assert_array_equal(a.out, b.out)
    for k in a.spikes:
        np.testing.assert_array_equal(a.spikes[k], b.spikes[k])
    # a LIF-only file of the unchanged format still loads (the new kinds did not change the format)
    old = Sequential(Linear(16, 8), LIF(tau=3.0), Linear(8, 3), LI(tau=4.0)).eval()
    p_old = save_event_network(tmp_path / "old.npz", export_event_network(old, 16))
    with np.load(p_old) as z:
        assert '"format": "spike-event-network-v1"' in str(z["meta"])
    assert [type(a).__name__ for a in load_event_network(p_old)[0].layers] == ["Dense", "Neurons"] * 2


# ------------------------------------------------------------------------------------------------
# NIR: CubaLIF graphs with a CubaLI readout
# ------------------------------------------------------------------------------------------------


def test_nir_cuba_graph_runs_event_driven_with_the_dense_spikes():
    nir = pytest.importorskip("nir")
    from spike.nir import from_nir

    rng = np.random.default_rng(15)
    dt, n = 1.0, (12, 16, 10, 3)

    def dy(shape, span=24):  # dyadic weights: exact sums in float32
        return (rng.integers(-span, span + 1, shape) / 16).astype(np.float32)

    def cuba(m, tau_syn, tau_mem, **kw):
        f = dict(tau_syn=np.full(m, tau_syn), tau_mem=np.full(m, tau_mem),
                 r=np.full(m, 1 / (1 - np.exp(-dt / tau_mem))), v_leak=np.zeros(m),
                 w_in=np.full(m, 1 / (1 - np.exp(-dt / tau_syn))))
        f.update(kw)
        return f

    nodes = {"input": nir.Input(np.array([n[0]])),
             "fc1": nir.Affine(weight=dy((n[1], n[0])), bias=dy(n[1], 4)),
             "c1": nir.CubaLIF(**cuba(n[1], 2.0, 4.0, v_threshold=np.ones(n[1]), v_reset=np.zeros(n[1]))),
             "fc2": nir.Linear(weight=dy((n[2], n[1]))),
             "c2": nir.CubaLIF(**cuba(n[2], 3.0, 3.0, v_threshold=np.full(n[2], 0.5), v_reset=np.zeros(n[2]))),
             "fc3": nir.Linear(weight=dy((n[3], n[2]))),
             "ro": nir.CubaLI(**cuba(n[3], 2.0, 5.0, v_leak=np.full(n[3], 0.25))),
             "output": nir.Output(np.array([n[3]]))}
    order = list(nodes)
    g = nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])), type_check=False)
    model = from_nir(g, dt).eval()
    assert [type(m).__name__ for m in model] == ["Linear", "CubaLIF", "Linear", "CubaLIF", "Linear", "LI", "LI"]
    x = rand_input(torch.Generator().manual_seed(16), 40, 4, (n[0],), p=0.3)
    with torch.no_grad():
        dense = model(x, record=True)
    net = export_event_network(model, n[0])
    assert type(net.layers[-1]).__name__ == "CubaNeurons" and net.layers[-1].output == "membrane"
    res = N.run(net, to_samples(x), 40, record=True)
    for k in ("1", "3"):
        assert dense.records[k][0].sum() > 10, k
        np.testing.assert_array_equal(res.spikes[k], dense.records[k][0].numpy(), err_msg=k)
    np.testing.assert_array_equal(res.out, dense.out.numpy())  # the fused LI -> LI readout, bit for bit
    np.testing.assert_array_equal(res.aux_final["6"], dense.state[5].v.numpy())  # the first LI is the current
    s = N.EventStream(net)
    tb, ch, cnt = to_samples(x)[2]
    s.feed(tb, ch, cnt)
    np.testing.assert_array_equal(s.finish(40).out[:, 0], res.out[:, 2])


# ------------------------------------------------------------------------------------------------
# what the event path cannot express raises, naming the layer
# ------------------------------------------------------------------------------------------------


def test_unsupported_options_raise_naming_the_layer():
    with pytest.raises(ExportError, match=r"'1' \(CubaLIF\).*recurrent"):
        export_event_network(Sequential(Linear(4, 4), CubaLIF(recurrent=True, shape=4)), 4)
    with pytest.raises(ExportError, match=r"'3' \(AdLIF\).*recurrent"):
        export_event_network(Sequential(Linear(4, 4), LIF(), Linear(4, 4), AdLIF(recurrent=True, shape=4)), 4)
    with pytest.raises(ExportError, match=r"'1' \(AdLIF\).*built for shape"):
        export_event_network(Sequential(Linear(4, 5), AdLIF(shape=4, learn_ab=True)), 4)
    with pytest.raises(ExportError, match=r"'1' \(LI\).*CUBA-LI.*v_rest"):
        export_event_network(Sequential(Linear(4, 4), LI(v_rest=0.5), LI()), 4)
    with pytest.raises(ExportError, match=r"'1' \(LI\).*CUBA-LI.*gain"):
        export_event_network(Sequential(Linear(4, 4), LI(), LI(decay_input=True)), 4)
    with pytest.raises(ExportError, match="membrane"):  # a CUBA-LI readout is last, like an LI
        export_event_network(Sequential(Linear(4, 4), LI(), LI(), Linear(4, 2), CubaLIF()), 4)
    with pytest.raises(N.EventNetworkError, match="emits spikes"):
        N.AdLIFNeurons((3,), output="membrane")
    with pytest.raises(N.EventNetworkError, match=r"c: qa must be finite"):
        N.AdLIFNeurons((3,), qa=np.ones(2), name="c")
