"""Energy estimation: hand-counted operations, AC/MAC per input value (independent of chunking, batching
and mode), NeuroBench equality (its per-call rule and ours), event-driven vs dense counts (also pruned),
models the meter does not know (snnTorch per step, foreign stateful modules), observer behaviour,
per-sample attribution, energy formula, chart, CLI."""

import contextlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spike.energy import PROFILES, EnergyError, EnergyMeter, EnergyWarning, get_profile, measure
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


# -- AC vs MAC per input value ---------------------------------------------------------------------------------
def partly_binary(seed: int, t: int = 8, b: int = 4, n: int = 20) -> torch.Tensor:
    """Spikes ``[T, B, n]`` where steps 2-3 are count-valued ({0, 2}) for every sample and step 5 for
    sample 0 only: some calls are binary, some are not, some are both."""
    x = spikes((t, b, n), seed)
    x[2:4] *= 2.0
    x[5, 0] *= 3.0
    return x


def hand_ac_mac(x: torch.Tensor, weight: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: synapses reached by inputs equal to +-1 (AC) and by other non-zero inputs (MAC)."""
    fan = (weight != 0).double().sum(0)  # [F_in]
    unit = (x.abs() == 1).double()
    other = ((x != 0) & (x.abs() != 1)).double()
    return (unit @ fan).sum(0).numpy(), (other @ fan).sum(0).numpy()  # [B]


def test_ac_mac_per_value_do_not_depend_on_chunking_batching_or_mode():
    """The same sample gets the same AC / MAC counts fed whole, step by step (anytime path, one or three
    steps per call), or batched with a count-valued sample -- and they are the hand counts."""
    from spike.inference.anytime import Cutoff, anytime_forward

    net, x = mlp(prune=0.2), partly_binary(1)
    want_ac, want_mac = hand_ac_mac(x, net[0].weight)
    assert want_ac.min() > 0 and want_mac.min() > 0  # every sample is partly binary
    whole = measure(net, [(x, None)]).layer("0")
    runs = {"whole": whole}
    for chunk in (1, 3):
        with EnergyMeter(net) as m:
            anytime_forward(net, x, Cutoff.never(8), chunk=chunk, meter=m)
        runs[f"steps of {chunk}"] = m.report().layer("0")
    for name, lc in runs.items():
        np.testing.assert_array_equal(lc.ac, want_ac, err_msg=name)
        np.testing.assert_array_equal(lc.mac, want_mac, err_msg=name)
        assert lc.input == "mixed", name
    counts = torch.randint(0, 4, (8, 1, 20)).float()  # a count-valued sample in the same batch
    batched = measure(net, [(torch.cat([x[:, :1], counts], 1), None)]).layer("0")
    assert (batched.ac[0], batched.mac[0]) == (want_ac[0], want_mac[0])
    alone = measure(net, [(x[:, :1] * (x[:, :1].abs() == 1), None)]).layer("0")  # the binary part alone
    assert alone.mac[0] == 0 and alone.ac[0] == want_ac[0] and alone.input == "spikes"
    # and the energy is the same whichever way the sample is fed
    step = measure(net, [(x[t:t + 1], None) for t in range(8)]).layer("0")  # time-first chunks as new samples
    assert (step.ac.sum(), step.mac.sum()) == (whole.ac.sum(), whole.mac.sum())


def test_neurobench_rule_decides_per_call():
    """``rule="neurobench"``: a call is all ACs if every input is in {-1, 0, 1}, else all MACs, so
    chunking and batching change the counts (what NeuroBench reports) while the total stays."""
    net, x = mlp(), partly_binary(2)
    with EnergyMeter(net, rule="neurobench") as m:
        net(x)
    whole = m.report().layer("0")
    assert whole.ac.sum() == 0 and whole.input == "real"  # one call, some values are 2: all MACs
    with EnergyMeter(net, rule="neurobench") as m:
        rows = m.new_samples(4)
        state = None
        for t in range(8):
            with m.attribute(rows):
                state = net(x[t:t + 1], state).state
    per_step = m.report().layer("0")
    ac, mac = hand_ac_mac(x, net[0].weight)
    assert per_step.ac.sum() > 0 and per_step.input == "mixed"
    np.testing.assert_array_equal(per_step.ac + per_step.mac, ac + mac)
    np.testing.assert_array_equal(whole.mac, ac + mac)
    assert per_step.mac.sum() > mac.sum()  # step 5 is all MAC for every sample: sample 0 made it so
    with pytest.raises(EnergyError, match="unknown rule"):
        EnergyMeter(net, rule="per_call")


# -- NeuroBench -----------------------------------------------------------------------------------------------
def _neurobench_synops(nbm, x: torch.Tensor, batch: int, *meters: EnergyMeter) -> dict:
    """NeuroBench's ``SynapticOperations`` of ``nbm(x)``, observed by ``meters`` while it runs (and only
    then: NeuroBench copies the layers, hooks included, to count)."""
    from neurobench.metrics.workload import SynapticOperations

    nbm.register_hooks()
    with contextlib.ExitStack() as stack:
        for m in meters:
            stack.enter_context(m)
        preds = nbm(x)
    res = SynapticOperations()(nbm, preds, (torch.zeros(batch), None))  # data[0].size(0) = batch
    nbm.cleanup_hooks()
    return res


@pytest.mark.peers
@pytest.mark.parametrize("which", ["mlp", "mlp_pruned", "conv"])
def test_neurobench_rule_equals_neurobench_on_whole_sequences(which):
    """One call per layer (``TorchModel``) on inputs where some steps are binary and some are not:
    ``rule="neurobench"`` reproduces NeuroBench; the per-value rule splits the same total."""
    nb_models = pytest.importorskip("neurobench.models")
    if which == "conv":
        net, x = convnet(), torch.rand(5, 3, 2, 8, 8) * (torch.rand(5, 3, 2, 8, 8) < 0.4)  # real, sparse
        x[:, :, 1] = (x[:, :, 1] > 0).float()
        x[1:3] = (x[1:3] > 0).float()  # steps 1-2 binary
    else:
        net, x = mlp(prune=0.3 if which == "mlp_pruned" else 0.0), partly_binary(1, t=7, b=6)
    meters = {rule: EnergyMeter(net, rule=rule) for rule in ("neurobench", "element")}
    res = _neurobench_synops(nb_models.TorchModel(net), x, x.shape[1], *meters.values())  # one call, time-first
    ours = {rule: m.report().summary() for rule, m in meters.items()}
    nb = ours["neurobench"]
    assert nb["mac"] == pytest.approx(res["Effective_MACs"], rel=0, abs=1e-9)
    assert nb["ac"] == pytest.approx(res["Effective_ACs"], rel=0, abs=1e-9)
    assert nb["dense_synops"] == pytest.approx(res["Dense"], rel=0, abs=1e-9)
    el = ours["element"]
    assert el["ac"] + el["mac"] == pytest.approx(nb["ac"] + nb["mac"], rel=1e-12)
    assert el["mac"] < nb["mac"]  # the binary steps of the first layer are accumulates


def snntorch_net(seed: int = 0, n_in: int = 20) -> nn.Module:
    """The NeuroBench snnTorch layout: hidden states inside (``init_hidden``), one call per step."""
    snn = pytest.importorskip("snntorch")
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(n_in, 16), snn.Leaky(beta=0.8, init_hidden=True), nn.Linear(16, 4),
                        snn.Leaky(beta=0.8, init_hidden=True, output=True))
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[0].weight[:, :3] = 0.0  # pruned inputs
    return net.eval()


@pytest.mark.peers
@pytest.mark.parametrize("partly", [False, True])
def test_both_rules_against_neurobench_one_call_per_step(partly):
    """NeuroBench's ``SNNTorchModel`` calls the net once per step. With every step wholly binary or
    wholly count-valued both rules equal NeuroBench; with a step binary for some samples only, the
    neurobench rule still equals it and the per-value rule counts that step's binary inputs as ACs."""
    nb_models = pytest.importorskip("neurobench.models")
    net, x = snntorch_net(), partly_binary(3)
    if not partly:
        x[5] = (x[5] != 0).float()  # step 5 binary again for everyone
    el, nb = EnergyMeter(net, per_step=8), EnergyMeter(net, per_step=8, rule="neurobench")
    res = _neurobench_synops(nb_models.SNNTorchModel(net), x.transpose(0, 1), 4, el, nb)  # [B, T, ...]
    el, nb = el.report().summary(), nb.report().summary()
    assert nb["ac"] == pytest.approx(res["Effective_ACs"], rel=0, abs=1e-9)
    assert nb["mac"] == pytest.approx(res["Effective_MACs"], rel=0, abs=1e-9)
    assert el["dense_synops"] == nb["dense_synops"] == pytest.approx(res["Dense"], rel=0, abs=1e-9)
    assert el["n_samples"] == 4 and el["mean_steps"] == 8
    if partly:
        assert el["mac"] < nb["mac"] and el["ac"] + el["mac"] == pytest.approx(nb["ac"] + nb["mac"])
    else:
        assert (el["ac"], el["mac"]) == pytest.approx((res["Effective_ACs"], res["Effective_MACs"]), abs=1e-9)
    assert el["mac"] > 0 and el["ac"] > 0


# -- event-driven path ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("anytime,prune", [(False, 0.0), (True, 0.0), (False, 0.2), (False, 0.5), (True, 0.5)])
def test_event_driven_counts_equal_dense_counts(anytime, prune):
    """Per sample and per layer, the synaptic operations the event simulator performs equal the dense
    path's effective ACs + MACs (also for an anytime run, counting only executed steps, and for pruned
    models: a zero weight is no synapse on either path, so pruning shows its saving)."""
    export = pytest.importorskip("spike.inference.export", reason="event-driven export not available yet")
    from spike.events import network as evn
    from spike.inference.anytime import Cutoff, anytime_forward, cumulative_thresholds

    net = mlp(3, prune=prune).double()
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
        np.testing.assert_array_equal(res.mac_synops[:, i], lc.mac)  # the per-element AC/MAC split too
    assert res.mac_synops[:, 1:].sum() == 0 and (anytime or res.mac_synops[:, 0].sum() > 0)  # counts in, spikes after
    if anytime:
        assert dense_run.mean_steps < 10
    if prune:  # fewer operations than the same input through all weights
        lc = syn[0]
        full = (x != 0).double().sum(0) @ torch.full((20,), 16.0, dtype=torch.float64)  # [B]
        assert (lc.ac + lc.mac < full.numpy() * (1 - prune / 2)).all()


# -- models the meter does not know --------------------------------------------------------------------------------
def test_snntorch_called_per_step_batch_first():
    """An snnTorch net called once per step with ``x [B, F]`` (``per_step=T``): synapses, neuron updates
    and spikes of the ``snn.Leaky`` layers are counted per sample, equal to the same net in a time loop."""
    net, x = snntorch_net(1), partly_binary(4)
    from snntorch import utils

    with EnergyMeter(net, per_step=8) as m, torch.no_grad():
        for rep in range(2):  # two sequences: 2 x 4 samples
            utils.reset(net)
            spk = [net(x[t])[0] for t in range(8)]
    rep = m.report()
    assert rep.n_samples == 8 and rep.steps.tolist() == [8.0] * 8 and not rep.not_counted
    ac, mac = hand_ac_mac(x, net[0].weight)
    np.testing.assert_array_equal(rep.layer("0").ac, np.tile(ac, 2))
    np.testing.assert_array_equal(rep.layer("0").mac, np.tile(mac, 2))
    lk1, lk3 = rep.layer("1"), rep.layer("3")
    assert lk1.kind == "neuron" and lk1.module == "Leaky" and lk1.spiking and lk1.neurons == 16
    np.testing.assert_array_equal(lk1.updates, [8.0 * 16] * 8)
    np.testing.assert_array_equal(lk3.spikes[4:], torch.stack(spk).sum((0, 2)).numpy())
    assert rep.summary()["firing_rate"] > 0

    class TimeLoop(nn.Module):  # the same net wrapped in a time loop: called time-first
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            utils.reset(self.inner)
            return torch.stack([self.inner(x[t])[0] for t in range(x.shape[0])])

    wrapped = TimeLoop(net)
    with EnergyMeter(wrapped) as m2, torch.no_grad():
        wrapped(x)
    rep2 = m2.report()
    for a, b in zip(rep2.layers, rep.layers):
        for k in ("ac", "mac", "dense", "updates", "spikes"):
            np.testing.assert_array_equal(getattr(a, k), getattr(b, k)[:4], err_msg=f"{a.name} {k}")
        assert (a.neurons, a.dense_step) == (b.neurons, b.dense_step)


def test_per_step_calls_need_per_step_and_a_steady_batch():
    net, x = snntorch_net(2), spikes((8, 3, 20), 5)
    with pytest.raises(EnergyError, match=r"per_step=T"):
        with EnergyMeter(net), torch.no_grad():
            net(x[0])  # [B, F] read as [T, B]: the hint names the option
    with pytest.raises(EnergyError, match="first step had 3"):
        with EnergyMeter(net, per_step=8) as m, torch.no_grad():
            net(x[0])
            net(x[1, :2])
    with pytest.raises(EnergyError, match="per_step"):
        EnergyMeter(net, per_step=0)


class ForeignLIF(nn.Module):
    """A neuron of no library the meter knows: its membrane is a plain tensor attribute."""

    def __init__(self):
        super().__init__()
        self.v = None

    def forward(self, x):
        self.v = x if self.v is None else 0.9 * self.v + x
        s = (self.v > 1).float()
        self.v = self.v - s
        return s


class BufferLIF(nn.Module):
    """Another foreign neuron: its membrane is a registered buffer, updated in place."""

    def __init__(self):
        super().__init__()
        self.register_buffer("v", torch.zeros(16))

    def forward(self, x):
        self.v.mul_(0.9).add_(x.mean(0))
        return (self.v > 1).float().expand_as(x)


class Scale(nn.Module):
    """Stateless and unknown (a constant buffer is no state): nothing to report."""

    def __init__(self):
        super().__init__()
        self.register_buffer("k", torch.full((16,), 2.0))

    def forward(self, x):
        return self.k * x


def test_stateful_modules_the_meter_cannot_interpret_are_named():
    """Never a silent zero: a foreign module that keeps tensors between calls, or a module of another
    SNN library, is named in a warning, in the report, its table and its summary."""
    torch.manual_seed(0)
    foreign = nn.Sequential(nn.Linear(20, 16), Scale(), ForeignLIF(), nn.Linear(16, 16), BufferLIF())
    with pytest.warns(EnergyWarning) as caught:
        with EnergyMeter(foreign, per_step=8) as m, torch.no_grad():
            for t in range(8):
                foreign(spikes((3, 20), t) * 3)
    msgs = sorted(str(w.message) for w in caught)
    assert len(msgs) == 2 and "module 2 (" in msgs[0] and "ForeignLIF): its neuron updates and spikes" in msgs[0]
    rep = m.report()
    assert [n.split(" ")[0] for n in rep.not_counted] == ["2", "4"]  # not the stateless Scale (1)
    assert "ForeignLIF" in rep.not_counted[0] and "BufferLIF" in rep.not_counted[1]
    assert "NOT COUNTED" in rep.format_table() and rep.summary()["not_counted"] == list(rep.not_counted)
    assert rep.layer("0").mac.sum() > 0  # what it can count, it counts

    library_neuron = type("LIFBoxCell", (nn.Module,), {"__module__": "norse.torch.module.lif_box",
                                                     "forward": lambda self, x: x})
    net = Sequential(Linear(20, 8), LIF(tau=5.0), library_neuron())
    with pytest.warns(EnergyWarning, match=r"norse LIFBoxCell"):
        with EnergyMeter(net) as m:  # named at once, even before a call
            pass
    assert m.report().not_counted == ("2 (norse LIFBoxCell)",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # spike's own layers and stock torch layers: no warning
        with EnergyMeter(convnet()) as m:
            convnet()(spikes((2, 1, 2, 8, 8), 1))
        assert not m.report().not_counted


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
    fig = rep.figure(title="tiny")
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "log"]  # later layers stay visible
    assert fig._suptitle.get_text() == "tiny — full length (4 steps) — 3 samples"
    fig = rep.figure(title="tiny", epsilon=0.05, accuracy=0.875)
    assert fig._suptitle.get_text() == "tiny — anytime (ε = 0.05, mean steps 4.00) — 3 samples — accuracy 87.5 %"
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


def test_event_driven_ac_mac_split_equals_meter_on_a_conv_net_with_pooling():
    """Counts (2, 3 events in a bin) at the input and average-pooled values before the linear layer are
    multiply-accumulates on both paths, per element; the stream reports the same split as the batch."""
    from spike.events import network as evn
    from spike.inference.export import export_event_network

    net = convnet(0).double()
    x = spikes((6, 3, 2, 8, 8), 4, p=0.4).double()
    x[1, :, 0] *= 2.0
    x[3, 1] *= 3.0
    with EnergyMeter(net) as m:
        net(x)
    rep = m.report()
    enet = export_event_network(net, (2, 8, 8))
    samples = []
    for b in range(3):
        flat = x[:, b].reshape(6, -1).numpy()  # [T, P*H*W]
        tb, ch = np.nonzero(flat)
        samples.append(evn.BinnedEvents(tb.astype(np.int64), ch.astype(np.int64), flat[tb, ch]))
    res = evn.run(enet, samples, 6)
    syn = [lc for lc in rep.layers if lc.kind == "synapse"]
    assert len(syn) == len(res.layers)
    for i, lc in enumerate(syn):
        np.testing.assert_array_equal(res.synops[:, i], lc.ac + lc.mac)
        np.testing.assert_array_equal(res.mac_synops[:, i], lc.mac)
    assert res.mac_synops[:, -1].sum() > 0  # the pooled values feeding the linear layer
    s = evn.EventStream(enet)
    s.feed(samples[1].t_bin, samples[1].channel, samples[1].count)
    r1 = s.finish(6)
    np.testing.assert_array_equal(r1.mac_synops[0], res.mac_synops[1])
