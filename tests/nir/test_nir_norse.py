"""spike <-> Norse through NIR (``norse.torch.from_nir`` / ``norse.torch.to_nir``), Norse 1.1.0.

Norse integrates with forward Euler over its ``dt`` and input gain ``dt/tau`` (``LIFBoxCell``:
``v += dt/tau (v_leak - v + x)``; resets to 0 at once, fires when ``v > v_th``). So the exact setting is
``LIF(tau, dt, discretization="euler", decay_input=True, reset="to_value", v_reset=0,
reset_timing="immediate")``, exported as NIR ``LIF`` with ``r = 1`` and read by
``norse.torch.from_nir(graph, dt=dt)``. Norse reads a ``CubaLIF`` node as ``w_in * x -> LIBox(tau_syn)
-> r * . -> LIFBox(tau_mem)``, so spike's euler ``CubaLIF`` (``w_in = tau_syn/dt``, ``r = tau_mem/dt``)
is reproduced too. What Norse cannot express is pinned below (it ignores ``r`` and ``v_reset``).

Norse's exporter writes ``tau = dt / tau_mem_inv``: only with ``to_nir(..., dt=1.0)`` is that ``tau`` a
time (seconds); the graph then imports into spike with ``from_nir(graph, dt, discretization="euler")``
at Norse's simulation ``dt``.
"""

import logging

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.peers

nir = pytest.importorskip("nir")
pytest.importorskip("nirtorch")
nt = pytest.importorskip("norse.torch")

from spike.neurons import LIF  # noqa: E402
from spike.neurons.cuba import CubaLIF  # noqa: E402
from spike.nir import from_nir, to_nir  # noqa: E402
from spike.synapses import Linear, Sequential  # noqa: E402

DT, TAU = 1e-3, 5e-3  # Norse's default dt; tau = 5 steps


def _norse_run(m, x):
    state, outs = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):  # Norse cells step one [B, ...] slice, state passed explicitly
            o, state = m(x[t], state)
            outs.append(o)
    return torch.stack(outs)


def _input(t=60, b=4, n=6, seed=1):
    return (torch.rand(t, b, n, generator=torch.Generator().manual_seed(seed)) < 0.5).float() * 20.0


def _mlp(decay_input=True, v_reset=0.0):
    torch.manual_seed(0)
    kw = dict(tau=TAU, dt=DT, discretization="euler", decay_input=decay_input, reset="to_value", v_reset=v_reset)
    net = Sequential(Linear(6, 10), LIF(**kw), Linear(10, 4), LIF(**kw)).eval()
    with torch.no_grad():
        net[2].weight.mul_(15.0)
    return net


def _ours(net, x):
    with torch.no_grad():
        return net(x).out


def test_norse_reads_our_euler_lif_with_identical_spikes():
    net = _mlp()
    x = _input()
    ours = _ours(net, x)
    theirs = _norse_run(nt.from_nir(to_nir(net, DT, strict=True), dt=DT), x)
    assert ours.sum() >= 10
    assert torch.equal(ours, theirs)


def test_norse_reads_our_euler_cubalif_with_identical_spikes():
    torch.manual_seed(0)
    kw = dict(dt=DT, discretization="euler", reset="to_value")
    net = Sequential(Linear(6, 10), CubaLIF(tau=TAU, tau_syn=2 * DT, **kw), Linear(10, 4),
                     CubaLIF(tau=4 * DT, tau_syn=3 * DT, **kw)).eval()
    with torch.no_grad():
        net[2].weight.mul_(2.0)
    x = _input(b=3) / 20.0
    ours = _ours(net, x)
    theirs = _norse_run(nt.from_nir(to_nir(net, DT, strict=True), dt=DT), x)
    assert ours.sum() >= 10
    assert torch.equal(ours, theirs)


def test_norse_ignores_r_and_v_reset_pinned(caplog):
    """Norse builds ``LIFBox`` with gain dt/tau whatever ``r`` says, and its own ``v_reset = 0``."""
    x = _input()
    gain1 = _mlp(decay_input=False)  # r = tau/dt: our gain 1
    with caplog.at_level(logging.WARNING):
        theirs = _norse_run(nt.from_nir(to_nir(gain1, DT, strict=True), dt=DT), x)
    assert "r" in caplog.text  # Norse warns that r diverges from 1 ...
    assert torch.equal(theirs, _ours(_mlp(decay_input=True), x))  # ... and runs the r = 1 neuron
    assert not torch.equal(theirs, _ours(gain1, x))
    m = nt.from_nir(to_nir(_mlp(v_reset=-0.5), DT, strict=True), dt=DT)
    cells = [c for c in m.modules() if isinstance(c, nt.LIFBoxCell)]
    assert len(cells) == 2 and all(float(c.p.v_reset) == 0.0 for c in cells)


def _norse_model():
    torch.manual_seed(3)
    m = nt.SequentialState(torch.nn.Linear(6, 10), nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(200.0))),
                           torch.nn.Linear(10, 4), nt.LIFBoxCell())
    with torch.no_grad():
        m[2].weight.mul_(15.0)
    return m


def test_norse_export_imports_into_spike_with_identical_spikes():
    m = _norse_model()
    x = _input()
    theirs = _norse_run(m, x)
    g = nt.to_nir(m, torch.zeros(1, 6), dt=1.0)  # tau = 1/tau_mem_inv: seconds
    assert tuple(g.nodes["input"].input_type["input"]) == (1, 6)  # batch-first Input (detected)
    net = from_nir(g, DT, discretization="euler")
    assert [type(layer).__name__ for layer in net] == ["Linear", "LIF", "Linear", "LIF"]
    assert net[1].params().decay_input and net[1].params().reset == "to_value"
    ours = _ours(net, x)
    assert theirs.sum() >= 10
    assert torch.equal(ours, theirs)


def test_norse_export_at_its_default_dt_writes_a_rescaled_tau_pinned():
    """``to_nir(dt=1e-3)`` writes ``tau = dt / tau_mem_inv = 1e-5`` for a 10 ms neuron: not a time."""
    g = nt.to_nir(_norse_model(), torch.zeros(1, 6))
    assert float(g.nodes["3"].tau) == pytest.approx(DT * 1e-2)
    net = from_nir(g, DT, discretization="euler")
    with pytest.raises(ValueError, match="euler discretization needs tau >= dt"):  # tau = 0.01 dt
        net(_input(t=2))


def test_norse_lifcell_export_has_gains_spike_cannot_run_and_raises():
    """Norse's ``LIFCell`` exports as ``CubaLIF`` with ``r = w_in = 1``: its membrane gain dt/tau_mem
    is not spike's CubaLIF gain 1, so the import raises naming the field instead of rescaling."""
    m = nt.SequentialState(torch.nn.Linear(6, 4), nt.LIFCell())
    g = nt.to_nir(m, torch.zeros(1, 6), dt=1.0)
    assert isinstance(g.nodes["1"], nir.CubaLIF)
    with pytest.raises(ValueError, match=r"NIR node '1' \(CubaLIF\) field 'w_in'"):
        from_nir(g, DT, discretization="euler")


def test_norse_export_becomes_a_checkpoint_that_reproduces_norse(tmp_path):
    """``spike import`` of a Norse-exported graph (``decay_input`` neurons, ``[model] decay_input``): the
    checkpoint that ``spike eval`` / ``export`` / ``stream`` load reproduces Norse's spikes."""
    import argparse

    from spike.cli import nir as nir_cli
    from spike.inference.deploy import load_checkpoint_model

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[run]\nname = "n"\nout_dir = "{tmp_path}"\n[data]\nname = "digits"\nn_time_bins = 8\n'
                   '[model]\nkind = "mlp"\n')
    torch.manual_seed(5)
    m = nt.SequentialState(torch.nn.Linear(2 * 34 * 34, 12),  # Norse's exporter has no Flatten: flat input
                           nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(200.0))),
                           torch.nn.Linear(12, 10), nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(200.0))))
    with torch.no_grad():
        m[0].weight.mul_(20.0)
        m[2].weight.mul_(30.0)
    x = (torch.rand(40, 3, 2, 34, 34, generator=torch.Generator().manual_seed(2)) < 0.05).float() * 20.0
    theirs = _norse_run(m, x.flatten(2))
    g = nt.to_nir(m, torch.zeros(1, 2 * 34 * 34), dt=1.0)
    for name, n in (("0", 12), ("1", 12), ("2", 10), ("3", 10)):  # Norse 1.1 stores torch tensors and 0-d
        node = g.nodes[name]  # neuron parameters, which nir.write refuses: numpy, one value per neuron
        for k, v in vars(node).items():
            if isinstance(v, (torch.Tensor, np.ndarray)):
                a = np.asarray(v, dtype=np.float32)
                setattr(node, k, a if a.ndim else np.full(n, a, np.float32))
    src = tmp_path / "norse.nir"
    nir.write(str(src), g)
    parser = argparse.ArgumentParser(prog="spike")
    nir_cli.add_parsers(parser.add_subparsers(dest="command"))
    ckpt = tmp_path / "norse.pt"
    res = nir_cli.cmd_import(parser.parse_args(["import", str(src), str(ckpt), "--config", str(cfg), "--dt",
                                                str(DT), "--discretization", "euler", "--input-shape", "2", "34", "34"]))
    assert res["neuron"] == "lif" and res["readout"] == "spikes"
    model, c, _, _ = load_checkpoint_model(ckpt)
    assert c.model.decay_input and c.model.discretization == "euler" and c.model.reset == "to_value"
    assert theirs.sum() >= 10 and theirs[:, :, :].sum() < theirs.numel()
    with torch.no_grad():
        assert torch.equal(model(x).out, theirs)
