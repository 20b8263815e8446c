"""Energy estimation: hand-counted operations, NeuroBench equality, event-driven vs dense counts,
observer behaviour (no mutation, hooks removed), per-sample attribution, energy formula, CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spike.energy import PROFILES, EnergyError, EnergyMeter, get_profile, measure
from spike.neurons import LI, LIF
from spike.synapses import AvgPool2d, Conv2d, Flatten, Linear, Sequential

REPO = Path(__file__).resolve().parents[2]


def mlp(seed: int = 0, n_in: int = 20, hidden: int = 16, n_out: int = 4, prune: float = 0.0) -> Sequential:
    torch.manual_seed(seed)
    net = Sequential(Linear(n_in, hidden), LIF(tau=5.0), Linear(hidden, hidden), LIF(tau=5.0),
                     Linear(hidden, n_out), LI(tau=5.0))
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[2].weight.mul_(3.0)
        if prune:
            g = torch.Generator().manual_seed(seed + 1)
            for i in (0, 2, 4):
                w = net[i].weight
                w[torch.rand(w.shape, generator=g) < prune] = 0.0
    return net.eval()


def convnet(seed: int = 0) -> Sequential:
    torch.manual_seed(seed)
    net = Sequential(Conv2d(2, 4, 3, padding=1), LIF(tau=5.0), Conv2d(4, 4, 3, stride=2, padding=1), LIF(tau=5.0),
                     AvgPool2d(2), Flatten(), Linear(4 * 2 * 2, 3), LI(tau=5.0))  # 8x8 -> 8x8 -> 4x4 -> 2x2
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[0].weight[0, 0, 0, 0] = 0.0  # a pruned tap
        net[2].weight.mul_(3.0)
    return net.eval()


def spikes(shape, seed: int, p: float = 0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).float()


# -- hand counts ---------------------------------------------------------------------------------------------
def test_hand_counted_linear_and_neurons():
    lin = Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]]))  # input 1 reaches nothing
    net = Sequential(lin, LIF(tau=2.0, v_th=1.5)).eval()
    x = torch.tensor([[[1.0, 1.0, 0.0]], [[0.0, 1.0, 1.0]]])  # [T=2, B=1, 3]
    with EnergyMeter(net) as m:
        out = net(x).out
    rep = m.report()
    syn, neu = rep.layer("0"), rep.layer("1")
    # t0: input 0 -> 1 non-zero weight; input 1 -> 0. t1: input 1 -> 0; input 2 -> 2. AC = 3, no MAC
    assert syn.ac.tolist() == [3.0] and syn.mac.tolist() == [0.0] and syn.input == "spikes"
    assert syn.dense.tolist() == [2 * 3 * 2.0] and syn.dense_step == 6.0
    assert neu.updates.tolist() == [2 * 2.0] and neu.neurons == 2
    assert neu.spikes.tolist() == [float(out.detach().sum())] and neu.spiking
    # real-valued input -> the same connections are MACs
    with EnergyMeter(net) as m:
        net(x * 0.5)
    assert m.report().layer("0").mac.tolist() == [3.0] and m.report().layer("0").ac.tolist() == [0.0]


def test_hand_counted_convolution_footprints():
    conv = Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    net = Sequential(conv, LIF()).eval()
    x = torch.zeros(1, 2, 1, 3, 3)
    x[0, 0, 0, 1, 1] = 1.0  # sample 0: centre pixel reaches all 9 outputs
    x[0, 1, 0, 0, 0] = 1.0  # sample 1: corner pixel reaches 4 outputs (padding is not a synapse)
    with EnergyMeter(net) as m:
        net(x)
    c = m.report().layer("0")
    assert c.ac.tolist() == [9.0, 4.0]
    assert c.dense.tolist() == [49.0, 49.0]  # 4 corners x 4 + 4 edges x 6 + centre 9 in-bounds taps


def test_energy_formula_written_out():
    p = get_profile("cmos45_fp32")
    assert (p.ac_pj, p.mac_pj) == (0.9, 4.6)  # Horowitz 2014: fp32 add 0.9 pJ, mult 3.7 pJ
    net, x = mlp(), torch.rand(6, 5, 20) * 2  # real-valued input: first layer MACs
    rep = measure(net, [(x, None)])
    ac, mac, upd, spk = (rep.total(k) for k in ("ac", "mac", "updates", "spikes"))
    assert mac.sum() > 0 and ac.sum() > 0
    e = 0.9 * ac + 4.6 * mac + 4.6 * upd + 0.9 * spk
    np.testing.assert_allclose(rep.energy_pj(p), e)
    np.testing.assert_allclose(rep.energy_pj(p, memory=True), e + 10.0 * (ac + mac + 2 * upd))
    s = rep.summary(p)
    assert s["ann_macs"] == 20 * 16 + 16 * 16 + 16 * 4
    assert s["ann_energy_pj"] == pytest.approx(4.6 * s["ann_macs"])
    assert set(PROFILES) >= {"cmos45_fp32", "cmos45_int8"}
    with pytest.raises(ValueError, match="unknown energy profile"):
        get_profile("tpu")


# -- NeuroBench -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["mlp", "mlp_pruned", "conv"])
def test_counts_equal_neurobench_synaptic_operations(which):
    nb_models = pytest.importorskip("neurobench.models")
    from neurobench.metrics.workload import SynapticOperations

    if which == "conv":
        net, x = convnet(), torch.rand(5, 3, 2, 8, 8) * (torch.rand(5, 3, 2, 8, 8) < 0.4)  # real, sparse
        x[:, :, 1] = (x[:, :, 1] > 0).float()
    else:
        net, x = mlp(prune=0.3 if which == "mlp_pruned" else 0.0), spikes((7, 6, 20), 1) * 2.0  # values {0, 2}
    with EnergyMeter(net) as m:
        net(x)
    ours = m.report().summary()
    nbm = nb_models.TorchModel(net)
    nbm.register_hooks()
    preds = nbm(x)
    res = SynapticOperations()(nbm, preds, (x.transpose(0, 1), None))  # data[0].size(0) = batch
    nbm.cleanup_hooks()
    assert ours["mac"] == pytest.approx(res["Effective_MACs"], rel=0, abs=1e-9)
    assert ours["ac"] == pytest.approx(res["Effective_ACs"], rel=0, abs=1e-9)
    assert ours["dense_synops"] == pytest.approx(res["Dense"], rel=0, abs=1e-9)
    assert ours["mac"] > 0 and ours["ac"] > 0


# -- event-driven path ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("anytime", [False, True])
def test_event_driven_counts_equal_dense_counts(anytime):
    """Per sample and per layer, the synaptic operations the event simulator performs equal the dense
    path's effective ACs + MACs (also for an anytime run, counting only executed steps)."""
    export = pytest.importorskip("spike.inference.export", reason="event-driven export not available yet")
    from spike.events import network as evn
    from spike.inference.anytime import Cutoff, anytime_forward, cumulative_thresholds

    net = mlp(3).double()
    x = spikes((10, 12, 20), 3).double()
    x[2, :, :5] *= 3.0  # a few multi-event bins: real-valued counts
    cut = Cutoff.constant(0.05, 10) if anytime else Cutoff.never(10)
    with EnergyMeter(net) as m:
        dense_run = anytime_forward(net, x, cut, meter=m)
    rep = m.report()
    enet = export.export_event_network(net, 20)
    samples = []
    for b in range(12):
        tb, ch = np.nonzero(x[:, b].numpy())
        samples.append(evn.BinnedEvents(tb.astype(np.int64), ch.astype(np.int64), x[tb, b, ch].numpy()))
    res = evn.run(enet, samples, 10, stop_rule=evn.StopRule(cumulative_thresholds(cut)) if anytime else None)
    assert np.array_equal(res.steps, dense_run.steps.numpy())
    syn = [lc for lc in rep.layers if lc.kind == "synapse"]
    assert len(syn) == len(res.layers)
    for i, lc in enumerate(syn):
        np.testing.assert_array_equal(res.synops[:, i], lc.ac + lc.mac)
    if anytime:
        assert dense_run.mean_steps < 10


# -- observer behaviour and attribution ---------------------------------------------------------------------------
def test_meter_never_mutates_the_model_and_removes_its_hooks():
    net, x = mlp(), spikes((6, 4, 20), 2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ref = net(x).out
    with EnergyMeter(net) as m:
        out = net(x).out
    assert torch.equal(out, ref)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    for mod in net.modules():
        assert not mod._forward_hooks and not mod._forward_pre_hooks
    n = m.report().n_samples
    net(x)  # after exit nothing is counted
    assert m.report().n_samples == n == 4
    with pytest.raises(EnergyError, match="outside a call"):
        with EnergyMeter(net):
            net[0](x)


def test_per_sample_counts_do_not_depend_on_the_batch():
    net, x = mlp(), spikes((6, 5, 20), 4)
    batch = measure(net, [(x, None)])
    one_by_one = measure(net, [(x[:, i:i + 1], None) for i in range(5)])
    for a, b in zip(batch.layers, one_by_one.layers):
        np.testing.assert_array_equal(a.ac, b.ac)
        np.testing.assert_array_equal(a.spikes, b.spikes)
    assert len(set(batch.total("ac").tolist())) > 1  # real per-sample differences
    assert batch.total("ac").sum() == pytest.approx(batch.summary()["ac"] * 5)


def test_report_table_json_and_chart(tmp_path):
    rep = measure(convnet(), [(spikes((4, 3, 2, 8, 8), 5), None)])
    d = json.loads(rep.to_json(tmp_path / "e.json", profile="cmos45_int8", memory=True))
    assert d["summary"]["profile"] == "cmos45_int8" and len(d["layers"]) == len(rep.layers)
    assert len(d["per_sample"]["energy_pj"]) == 3
    table = rep.format_table()
    assert "Conv2d" in table and "ANN/SNN" in table
    assert rep.plot(tmp_path / "e.png").stat().st_size > 1000
    s = rep.summary()
    assert 0 <= s["firing_rate"] <= 1 and 0 <= s["activation_sparsity"] <= 1


def test_cli_energy_prints_json_last(tmp_path, capsys):
    from spike.cli.main import main

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(f'[run]\nname = "tiny"\nout_dir = "{tmp_path}"\n[data]\nn_time_bins = 6\n'
                   f'[model]\nhidden = [16]\n')
    assert main(["energy", str(cfg), "--max-samples", "8", "--profile", "cmos45_fp16"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["n_samples"] == 8 and res["mean_steps"] == 6 and res["profile"] == "cmos45_fp16"
    assert "untrained" in res["weights"]
    assert Path(res["json"]).is_file() and Path(res["plot"]).is_file()
    assert main(["energy", str(cfg), "--profile", "nope"]) == 2


def test_delayed_linear_counts_as_a_synapse():
    delays = pytest.importorskip("spike.synapses.delays")
    torch.manual_seed(0)
    net = Sequential(delays.DelayedLinear(6, 5, max_delay=3), LIF(tau=5.0)).eval()
    x = spikes((8, 3, 6), 9)
    with EnergyMeter(net) as m:
        net(x)
    c = m.report().layer("0")
    assert c.kind == "synapse" and c.input == "spikes"
    nnz = (net[0].weight != 0).sum(0).double()  # reached synapses per input channel
    np.testing.assert_array_equal(c.ac, (x.double() @ nnz).sum(0).numpy())
