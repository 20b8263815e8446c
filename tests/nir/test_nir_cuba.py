"""CubaLIF <-> NIR CubaLIF (and CubaLI, AdLIF), batch-first graphs, and imported graphs on the event path."""

import math

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")

from spike.neurons import LIF, LI  # noqa: E402
from spike.neurons.adlif import AdLIF  # noqa: E402
from spike.neurons.cuba import CubaLIF  # noqa: E402
from spike.nir import NIRExportError, NIRImportError, from_nir, to_nir  # noqa: E402
from spike.synapses import Flatten, Linear, Sequential  # noqa: E402


def _cuba_net(dt):
    torch.manual_seed(0)
    net = Sequential(Linear(6, 12), CubaLIF(tau=5 * dt, tau_syn=3 * dt, dt=dt, v_th=0.9),
                     Linear(12, 8, bias=False),
                     CubaLIF(tau=4 * dt, tau_syn=2 * dt, dt=dt, reset="to_value", v_reset=-0.1,
                             discretization="euler"),
                     Linear(8, 3), CubaLIF(tau=3 * dt, tau_syn=6 * dt, dt=dt, reset_timing="deferred"))
    with torch.no_grad():
        for m in net:
            if isinstance(m, Linear):
                m.weight.mul_(3.0)
    return net.eval()


@pytest.mark.parametrize("dt", [1.0, 0.25])
def test_cubalif_roundtrip_through_file_is_bit_identical(dt, tmp_path):
    net = _cuba_net(dt)
    path = tmp_path / "cuba.nir"
    nir.write(str(path), to_nir(net, dt))
    net2 = from_nir(nir.read(str(path)), dt)
    x = (torch.rand(40, 4, 6, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    with torch.no_grad():
        a, b = net(x, record=True), net2(x, record=True)
    assert list(a.records) == list(b.records) == ["1", "3", "5"]
    for k in a.records:
        assert a.records[k][0].sum() > 0, k  # every layer fires: the comparison can fail
        assert torch.equal(a.records[k][0], b.records[k][0]), k
    assert torch.equal(a.out, b.out)
    for m1, m2 in zip(net, net2):
        assert type(m1) is type(m2)
        if isinstance(m1, CubaLIF):
            assert m1._template == m2._template


def test_cubalif_fields_follow_the_documented_mapping():
    dt, tau, tau_syn = 0.5, 4.0, 2.0
    net = Sequential(Linear(3, 2), CubaLIF(tau=tau, tau_syn=tau_syn, dt=dt, v_th=0.7, v_reset=0.1,
                                           reset="to_value"),
                     Linear(2, 2), CubaLIF(tau=tau, tau_syn=tau_syn, dt=dt, discretization="euler"))
    g = to_nir(net, dt, strict=False)
    a, b = g.nodes["1"], g.nodes["3"]
    assert isinstance(a, nir.CubaLIF)
    np.testing.assert_array_equal(a.tau_mem, [tau, tau])
    np.testing.assert_array_equal(a.tau_syn, [tau_syn, tau_syn])
    np.testing.assert_array_equal(a.r, np.full(2, 1.0 / (1.0 - math.exp(-dt / tau))))
    np.testing.assert_array_equal(a.w_in, np.full(2, 1.0 / (1.0 - math.exp(-dt / tau_syn))))
    np.testing.assert_array_equal(a.v_leak, [0.0, 0.0])
    np.testing.assert_array_equal(a.v_threshold, [0.7, 0.7])
    np.testing.assert_array_equal(a.v_reset, [0.1, 0.1])
    np.testing.assert_array_equal(b.r, [tau / dt] * 2)  # euler: what snnTorch writes for Synaptic
    np.testing.assert_array_equal(b.w_in, [tau_syn / dt] * 2)
    assert b.metadata["spike.reset"] == "subtract"
    with pytest.raises(NIRExportError, match=r"layer 3 \(CubaLIF\).*subtract.*strict"):
        to_nir(net, dt, strict=True)


@pytest.mark.parametrize("layer, msg", [
    (lambda: CubaLIF(learn_tau=True), "learn_tau"),
    (lambda: CubaLIF(recurrent=True, shape=4), "recurrent"),
    (lambda: CubaLIF(dt=0.5), "dt=0.5"),
])
def test_unexportable_cubalif_raises_naming_it(layer, msg):
    with pytest.raises(NIRExportError, match=rf"layer 1 \(CubaLIF\).*{msg}"):
        to_nir(Sequential(Linear(4, 4), layer()), 1.0)


def test_adlif_has_no_nir_node_and_raises_naming_the_layer():
    net = Sequential(Linear(4, 4), LIF(), Linear(4, 4), AdLIF())
    with pytest.raises(NIRExportError, match=r"layer 3 \(AdLIF\).*no adaptive LIF node"):
        to_nir(net, 1.0)


def _cuba_node(n=3, **kw):
    f = dict(tau_syn=np.full(n, 2.0), tau_mem=np.full(n, 4.0), r=np.full(n, 1 / (1 - math.exp(-1 / 4))),
             v_leak=np.zeros(n), v_threshold=np.ones(n), w_in=np.full(n, 1 / (1 - math.exp(-1 / 2))))
    f.update(kw)
    return f


def _single(node, n=3):
    return nir.NIRGraph(nodes={"input": nir.Input(np.array([n])), "c": node, "output": nir.Output(np.array([n]))},
                        edges=[("input", "c"), ("c", "output")], type_check=False)


@pytest.mark.parametrize("field, value, msg", [
    ("w_in", np.full(3, 2.0), r"'c' \(CubaLIF\) field 'w_in'"),
    ("r", np.ones(3), r"'c' \(CubaLIF\) field 'r'"),
    ("v_leak", np.full(3, 0.2), r"'c' \(CubaLIF\).*v_leak=0.2"),
])
def test_cubalif_import_raises_for_gains_spike_cannot_run(field, value, msg):
    from_nir(_single(nir.CubaLIF(**_cuba_node())), 1.0)  # the unmodified node imports
    with pytest.raises(ValueError, match=msg):
        from_nir(_single(nir.CubaLIF(**_cuba_node(**{field: value}))), 1.0)


def test_cubali_imports_as_two_leaky_integrators_with_the_cuba_update():
    f = _cuba_node()
    del f["v_threshold"]
    f["v_leak"] = np.full(3, 0.3)
    net = from_nir(_single(nir.CubaLI(**f)), 1.0)
    assert [type(m) for m in net] == [LI, LI]
    x = torch.rand(20, 2, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = net(x).out
    a, b = math.exp(-1 / 2), math.exp(-1 / 4)  # the mapping's discrete update, written out
    i = torch.zeros(2, 3)
    v = torch.full((2, 3), 0.3)  # starts at rest (v_leak)
    want = []
    for t in range(20):
        i = a * i + x[t]
        v = 0.3 + b * (v - 0.3) + i
        want.append(v)
    torch.testing.assert_close(got, torch.stack(want), rtol=1e-6, atol=1e-6)


def test_batch_first_graph_with_flatten_start_dim_1_imports():
    """nirtorch with a [1, ...] sample writes batch-first Input/Output types and Flatten(start_dim=1)."""
    torch.manual_seed(0)
    w = np.random.default_rng(0).normal(size=(5, 12)).astype(np.float32)
    lif = nir.LIF(tau=np.full(5, 4.0), r=np.full(5, 1 / (1 - math.exp(-1 / 4))), v_leak=np.zeros(5),
                  v_threshold=np.ones(5), v_reset=np.zeros(5))
    nodes = {"input": nir.Input(np.array([1, 3, 4])),
             "flat": nir.Flatten(input_type={"input": np.array([1, 3, 4])}, start_dim=1, end_dim=-1),
             "fc": nir.Linear(weight=w), "lif": lif, "output": nir.Output(np.array([1, 5]))}
    g = nir.NIRGraph(nodes=nodes, edges=[("input", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "output")],
                     type_check=False)
    net = from_nir(g, 1.0)
    assert [type(m).__name__ for m in net] == ["Flatten", "Linear", "LIF"]
    ref = Sequential(Flatten(), Linear(12, 5, bias=False), LIF(tau=4.0, reset="to_value")).eval()
    with torch.no_grad():
        ref[1].weight.copy_(torch.from_numpy(w))
    x = (torch.rand(15, 2, 3, 4) < 0.5).float()
    with torch.no_grad():
        assert torch.equal(net(x).out, ref(x).out)
    with pytest.raises(NIRImportError, match=r"'flat' \(Flatten\).*start_dim=1"):
        from_nir(g, 1.0, batch_dim=False)


def test_imported_graph_runs_event_driven_with_the_dense_spikes():
    from spike.events import network as evn
    from spike.inference.export import export_event_network

    torch.manual_seed(2)
    src = Sequential(Linear(20, 16), LIF(tau=4.0, reset="to_value"), Linear(16, 8),
                     LIF(tau=3.0, reset="to_value", discretization="euler"), Linear(8, 3), LI(tau=5.0)).eval()
    with torch.no_grad():
        src[0].weight.mul_(2.0)
        src[2].weight.mul_(6.0)
    net = from_nir(to_nir(src, 1.0, strict=True), 1.0)
    x = (torch.rand(30, 5, 20, generator=torch.Generator().manual_seed(3)) < 0.3).float()
    with torch.no_grad():
        dense = net(x, record=True)
    enet = export_event_network(net, 20)
    samples = []
    for b in range(5):
        tb, ch = np.nonzero(x[:, b].numpy())
        samples.append(evn.BinnedEvents(tb.astype(np.int64), ch.astype(np.int64), x[tb, b, ch].numpy()))
    res = evn.run(enet, samples, 30, record=True)
    for k in ("1", "3"):
        assert dense.records[k][0].sum() > 0, k
        assert np.array_equal(res.spikes[k].astype(np.float32), dense.records[k][0].numpy()), k
    np.testing.assert_allclose(res.out, dense.out.numpy(), rtol=1e-5, atol=1e-5)
