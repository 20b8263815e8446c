"""spike -> NIR -> file -> NIR -> spike is exact; what NIR cannot state raises, naming the layer/node."""

import math

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")

from spike.neurons import IF, LI, LIF  # noqa: E402
from spike.nir import NIRExportError, NIRImportError, from_nir, to_nir  # noqa: E402
from spike.nir.mapping import r_of  # noqa: E402
from spike.synapses import (AvgPool2d, BatchNorm1d, Conv2d, DelayedLinear, Flatten, Linear,  # noqa: E402
                            MaxPool2d, Sequential, SharedDropout)


def _mlp():
    return Sequential(Linear(6, 10), LIF(tau=5.0, v_th=0.8), Linear(10, 7, bias=False),
                      LIF(tau=3.0, reset="to_value", v_reset=-0.2, v_rest=0.1, discretization="euler"),
                      Linear(7, 3), LI(tau=4.0, decay_input=True)), (6,)


def _conv():
    return Sequential(Conv2d(2, 4, 3, padding=1), LIF(tau=2.0, reset_timing="deferred"), AvgPool2d(2),
                      Conv2d(4, 3, 3, bias=False), IF(v_th=1.5), AvgPool2d(2, divisor_override=1),
                      Flatten(), Linear(3, 4), LI(tau=2.0)), (2, 10, 10)


def _if():
    return Sequential(Linear(5, 6, bias=False), IF(reset="to_value", v_rest=0.3), Linear(6, 2), IF(),
                      Linear(2, 2), LIF(tau=2.0, reset="none")), (5,)


def _delay():
    torch.manual_seed(1)
    return Sequential(DelayedLinear(5, 8, max_delay=6, bias=True), LIF(tau=3.0),
                      DelayedLinear(8, 3, max_delay=3), LI(tau=3.0)), (5,)


def _run(net, x):
    with torch.no_grad():
        res = net(x, record=True)
    return res.out, res.records


@pytest.mark.parametrize("build", [_mlp, _conv, _if, _delay], ids=["mlp", "conv", "if", "delay"])
@pytest.mark.parametrize("dt", [1.0, 0.25])
def test_roundtrip_through_file_is_bit_identical(build, dt, tmp_path):
    torch.manual_seed(0)
    net, shape = build()
    for m in net:
        if hasattr(m, "_template"):
            from dataclasses import replace
            m._template = replace(m._template, dt=dt)
    net.eval()
    path = tmp_path / "model.nir"
    nir.write(str(path), to_nir(net, dt, input_shape=shape))
    net2 = from_nir(nir.read(str(path)), dt)
    x = (torch.rand(25, 3, *shape) < 0.4).float() * 1.7  # [T, B, ...] spiky input
    out1, rec1 = _run(net, x)
    out2, rec2 = _run(net2, x)
    assert torch.equal(out1, out2)
    assert list(rec1) == list(rec2)
    for k in rec1:  # spikes of every neuron layer (and LI membrane)
        assert torch.equal(rec1[k][0], rec2[k][0]), k
    assert any(r[0].sum() > 0 for r in rec1.values() if r[0].dtype.is_floating_point)  # not a silent net
    for a, b in zip(net, net2):
        assert type(a) is type(b)
        if hasattr(a, "_template"):
            assert a._template == b._template
        if isinstance(a, DelayedLinear):  # eval mode runs the rounded delays; positions read back rounded
            assert torch.equal(a.delays(), b.delays()) and torch.equal(a.sigma, b.sigma)
            assert a.max_delay == b.max_delay
        for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
            assert na == nb and (na == "pos" or torch.equal(pa, pb))


def test_delay_export_has_one_branch_per_distinct_delay():
    torch.manual_seed(3)
    d = DelayedLinear(6, 4, max_delay=9).eval()
    with torch.no_grad():
        d.pos.copy_(torch.randint(0, 3, (4, 6)).float() * 3)  # delays in {0, 3, 6}
    g = to_nir(Sequential(d), 0.5)
    delays = {n: v for n, v in g.nodes.items() if isinstance(v, nir.Delay)}
    lins = {n: v for n, v in g.nodes.items() if isinstance(v, nir.Linear)}
    distinct = torch.unique(d.delays()).tolist()
    assert len(delays) == len(lins) == len(distinct) == 3
    for k in distinct:
        np.testing.assert_array_equal(g.nodes[f"0.delay{k}"].delay, np.full(6, k * 0.5))
        mask = (d.delays() == k).numpy()
        w = g.nodes[f"0.w{k}"].weight
        np.testing.assert_array_equal(w[mask], d.weight.detach().numpy()[mask])
        assert not w[~mask].any()
        assert ("0.delay%d" % k, "0.w%d" % k) in g.edges and ("0.w%d" % k, "output") in g.edges
    back = from_nir(g, 0.5)[0]
    assert torch.equal(back.delays(), d.delays()) and torch.equal(back.weight, d.weight)
    assert back.max_delay == d.max_delay and not back.training


def test_lif_fields_follow_the_documented_mapping():
    dt, tau = 0.5, 4.0
    net = Sequential(Linear(3, 2), LIF(tau=tau, dt=dt, v_th=0.7, v_reset=-0.1, v_rest=0.2, reset="to_value"),
                     Linear(2, 2), LIF(tau=tau, dt=dt, decay_input=True, discretization="euler"))
    g = to_nir(net, dt)
    a, b = g.nodes["1"], g.nodes["3"]
    np.testing.assert_array_equal(a.tau, [tau, tau])
    np.testing.assert_array_equal(a.r, np.full(2, 1.0 / (1.0 - math.exp(-dt / tau))))
    np.testing.assert_array_equal(a.v_leak, [0.2, 0.2])
    np.testing.assert_array_equal(a.v_threshold, [0.7, 0.7])
    np.testing.assert_array_equal(a.v_reset, [-0.1, -0.1])
    np.testing.assert_array_equal(b.r, [1.0, 1.0])
    assert r_of(tau, dt, "euler", False) == tau / dt and r_of(math.inf, dt, "exp", False) == 1.0 / dt
    assert b.metadata["spike.discretization"] == "euler" and b.metadata["spike.reset"] == "subtract"


def test_import_at_another_dt_raises_instead_of_rescaling():
    g = to_nir(Sequential(Linear(3, 2), LIF(tau=4.0)), 1.0)
    with pytest.raises(ValueError, match=r"NIR node '1' \(LIF\).*input gain"):
        from_nir(g, 0.5)


def _ultra():
    from spike.neurons.ultra_modules import UltraLIF
    return UltraLIF()


@pytest.mark.parametrize("layer, kind, msg", [
    (lambda: DelayedLinear(4, 4, max_delay=3).train(), "DelayedLinear", "training mode"),
    (_ultra, "UltraLIF", "no exact NIR"),
    (lambda: LIF(tau=3.0, learn_tau=True), "LIF", "learn_tau"),
    (lambda: LIF(tau=3.0, recurrent=True, shape=4), "LIF", "recurrent"),
    (lambda: BatchNorm1d(4), "BatchNorm1d", "no exact NIR"),
    (lambda: SharedDropout(0.3).train(), "SharedDropout", "training mode"),
    (lambda: LIF(tau=3.0, dt=0.5), "LIF", "dt=0.5"),
])
def test_unrepresentable_layer_raises_naming_it(layer, kind, msg):
    net = Sequential(Linear(4, 4), layer())
    with pytest.raises(NIRExportError, match=rf"layer 1 \({kind}\).*{msg}"):
        to_nir(net, 1.0)


def test_maxpool_and_strict_reset_raise_naming_the_layer():
    with pytest.raises(NIRExportError, match=r"layer 2 \(MaxPool2d\)"):
        to_nir(Sequential(Conv2d(1, 2, 3), LIF(), MaxPool2d(2)), 1.0, input_shape=(1, 8, 8))
    net = Sequential(Linear(4, 4), LIF(reset="to_value"), Linear(4, 4), LIF(reset="subtract"))
    to_nir(net, 1.0, strict=False)
    with pytest.raises(NIRExportError, match=r"layer 3 \(LIF\).*subtract.*strict"):
        to_nir(net, 1.0, strict=True)


def test_eval_dropout_is_identity_and_not_exported():
    net = Sequential(Linear(4, 4), SharedDropout(0.5), LIF()).eval()
    g = to_nir(net, 1.0)
    assert ("0", "2") in g.edges and "1" not in g.nodes


def _graph(nodes, edges):
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _io(n_in, n_out):
    return {"input": nir.Input(np.array([n_in])), "output": nir.Output(np.array([n_out]))}


def test_unsupported_node_raises_naming_it():
    thr = nir.Threshold(threshold=np.ones(3))
    g = _graph({**_io(3, 3), "thr": thr}, [("input", "thr"), ("thr", "output")])
    with pytest.raises(NIRImportError, match=r"'thr' \(Threshold\) is not supported"):
        from_nir(g, 1.0)


def test_mismatched_shapes_raise_naming_the_nodes():
    g = _graph({**_io(4, 2), "a": nir.Linear(np.ones((5, 4), np.float32)), "b": nir.Linear(np.ones((2, 6), np.float32))},
               [("input", "a"), ("a", "b"), ("b", "output")])
    with pytest.raises(NIRImportError, match=r"'b' \(Linear\) expects input shape \(6,\).*'a' \(Linear\) gives \(5,\)"):
        from_nir(g, 1.0)


def test_cycle_and_dangling_edge_raise_naming_the_node():
    lif = nir.LIF(tau=np.ones(2) * 3, r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))
    g = _graph({**_io(2, 2), "lif": lif, "rec": nir.Linear(np.eye(2, dtype=np.float32))},
               [("input", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")])
    with pytest.raises(NIRImportError, match=r"cycle through node\(s\) \['lif', 'rec'\]"):
        from_nir(g, 1.0)
    g = _graph({**_io(2, 2), "lif": lif}, [("input", "lif"), ("lif", "ghost"), ("lif", "output")])
    with pytest.raises(NIRImportError, match="'ghost'"):
        from_nir(g, 1.0)


def test_non_integer_delay_and_foreign_r_raise_naming_the_node():
    g = _graph({**_io(2, 2), "d": nir.Delay(np.full(2, 1.5)), "w": nir.Linear(np.eye(2, dtype=np.float32))},
               [("input", "d"), ("d", "w"), ("w", "output")])
    with pytest.raises(NIRImportError, match=r"'d' \(Delay\).*whole number"):
        from_nir(g, 1.0)
    lif = nir.LIF(tau=np.full(2, 3.0), r=np.full(2, 2.0), v_leak=np.zeros(2), v_threshold=np.ones(2))
    with pytest.raises(ValueError, match=r"'lif' \(LIF\).*r=2\.0"):
        from_nir(_graph({**_io(2, 2), "lif": lif}, [("input", "lif"), ("lif", "output")]), 1.0)
