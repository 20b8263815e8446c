"""Anytime inference (Top-K gap cutoff): calibration maths, exactness vs full-length inference,
online (step-by-step, shrinking batch) vs offline, bad input, the RCS regulariser and the CLI."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spike.inference.anytime import (AnytimeError, Cutoff, anytime_forward, anytime_sweep, calibrate_thresholds,
                                     check_epsilon, cumulative_thresholds, offline_anytime, prefix_scores,
                                     settled, topk_gap)
from spike.neurons import LI, LIF
from spike.synapses import Linear, Sequential
from spike.train.losses import scores

REPO = Path(__file__).resolve().parents[2]


def tiny_net(seed: int = 0, n_in: int = 12, hidden: int = 24, n_out: int = 5, backend: str = "reference"
             ) -> Sequential:
    """Dense-matmul Linear layers by default: every step is computed the same way whatever the batch,
    so step-by-step and full forward agree bit for bit (``"auto"`` may pick a sparse kernel per call)."""
    torch.manual_seed(seed)
    net = Sequential(Linear(n_in, hidden, backend=backend), LIF(tau=5.0), Linear(hidden, n_out, backend=backend),
                     LI(tau=3.0))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    return net.eval()


def spikes(t: int, b: int, n: int, seed: int, p: float = 0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(t, b, n, generator=g) < p).float()


# -- calibration maths --------------------------------------------------------------------------------
def test_calibration_by_hand():
    # step 0: gaps 3 (settled), 2 (not), 1 (settled); step 1 (last): everything settled
    gaps = np.array([[3.0, 2.0, 1.0], [1.0, 1.0, 1.0]])
    preds = np.array([[0, 1, 2], [0, 0, 2]])  # final = [0, 0, 2]; sample 1 changes its mind
    emp = dict(correction="none")
    b0 = calibrate_thresholds(gaps, preds, 0.0, **emp)
    assert b0[0] == 2.0  # only {gap 3} may pass: beta = 2 (pass set {g > 2})
    assert b0[1] == 0.0  # all settled at the last step: everything with g > 0 passes
    assert calibrate_thresholds(gaps, preds, 1 / 3, **emp)[0] == 0.0  # all pass: 1 unsettled <= 3 / 3
    assert calibrate_thresholds(gaps, preds, 0.3, **emp)[0] == 2.0  # {3, 2}: 1 > 0.6; all: 1 > 0.9
    # "correct" with labels [1, 0, 2]: only sample 2 is right at step 0 (gap 1, the smallest) -> never;
    # at the last step samples 1, 2 are right but all gaps tie at 1.0 (1 of 3 unsettled) -> never
    lab = np.array([1, 0, 2])
    assert calibrate_thresholds(gaps, preds, 0.0, lab, "correct", **emp).tolist() == [math.inf, math.inf]
    assert calibrate_thresholds(gaps, preds, 0.34, lab, "correct", **emp)[1] == 0.0
    # conformal: one extra unsettled sample; eps = 0 never stops, eps = 0.5: all three (1 + 1 <= 0.5 * 4)
    assert calibrate_thresholds(gaps, preds, 0.0).tolist() == [math.inf, math.inf]
    assert calibrate_thresholds(gaps, preds, 0.5)[0] == 0.0
    assert calibrate_thresholds(gaps, preds, 0.4)[0] == math.inf  # {3}: 1 > 0.8; all: 2 > 1.6


def test_settled_means_unchanged_from_t_on():
    preds = np.array([[1, 0], [2, 0], [1, 0]])
    assert settled(preds, preds[-1]).tolist() == [[False, True], [False, True], [True, True]]


def test_ties_are_never_split_and_no_evidence_means_never():
    gaps = np.array([[1.0, 1.0, 0.5], [0.0, 0.0, 0.0]])
    preds = np.array([[0, 1, 0], [0, 0, 0]])  # sample 1 (gap 1.0, tied with sample 0) is not settled
    # {g > 0.5} holds both tied samples (1 of 2 unsettled), {g > 0} all three: no beta qualifies, and an
    # empty pass set is no evidence -> never stop at step 0; all-zero gaps can never pass either
    assert calibrate_thresholds(gaps, preds, 0.0, correction="none").tolist() == [math.inf, math.inf]
    assert calibrate_thresholds(gaps, preds, 0.5, correction="none")[0] == 0.0


def test_sequential_calibration_only_counts_samples_still_running():
    # step 0 stops the easy sample 0 (gap 5); at step 1 the unsettled sample 1 has the larger gap of the rest
    gaps = np.array([[5.0, 0.0, 0.0], [9.0, 2.0, 1.0], [1.0, 1.0, 1.0]])
    preds = np.array([[0, 0, 2], [0, 1, 2], [0, 0, 2]])
    seq = calibrate_thresholds(gaps, preds, 0.0, correction="none")
    ind = calibrate_thresholds(gaps, preds, 0.0, correction="none", sequential=False)
    assert seq[0] == ind[0] == 0.0
    assert seq[1] == math.inf  # running {1, 2}: the top gap is unsettled
    assert ind[1] == 2.0  # the already stopped sample 0 (gap 9) makes "g > 2" look safe
    assert calibrate_thresholds(gaps, preds, 0.5, correction="none")[1] == 0.0  # running {1, 2}: 1 <= 1
    assert calibrate_thresholds(gaps, preds, 0.34, correction="none")[1] == math.inf  # 1 > 0.68
    assert calibrate_thresholds(gaps, preds, 0.34, correction="none", sequential=False)[1] == 0.0  # 1 <= 1.02


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 30), st.integers(2, 4), st.integers(0, 10_000),
       st.sampled_from([0.0, 0.01, 0.1, 0.3, 1.0]), st.sampled_from(["none", "conformal"]))
def test_calibration_guarantee_on_calibration_data(t, n, c, seed, eps, correction):
    """Among the calibration samples that stop at step t < T - 1, the unsettled count u of k obeys
    u + c <= eps (k + c); beta_t is the smallest such threshold; with eps = 0 (no correction) every
    calibration sample's anytime prediction is its final one."""
    rng = np.random.default_rng(seed)
    gaps = np.round(rng.random((t, n)) * 4, 1)  # coarse grid: many ties
    preds = rng.integers(0, c, (t, n))
    beta = calibrate_thresholds(gaps, preds, eps, correction=correction)
    ok = settled(preds, preds[-1])
    cc = 1.0 if correction == "conformal" else 0.0
    assert beta.shape == (t,) and (beta >= 0).all()
    stop = Cutoff(tuple(beta)).stop_steps(gaps)
    running = np.ones(n, bool)
    for k in range(t):
        passing = running & (gaps[k] > beta[k])
        if np.isfinite(beta[k]):
            assert passing.any()
            assert (~ok[k][passing]).sum() + cc <= eps * (passing.sum() + cc) + 1e-9
            assert (stop[passing] == k).all()
            for cand in np.unique(np.concatenate([gaps[k][running], [0.0]])):  # nothing lower qualifies
                if cand < beta[k]:
                    p = running & (gaps[k] > cand)
                    assert (~ok[k][p]).sum() + cc > eps * (p.sum() + cc) + 1e-9
        running &= ~passing
    if eps == 0.0 and correction == "none":
        assert (preds[stop, np.arange(n)] == preds[-1]).all()
    if eps == 0.0 and correction == "conformal":
        assert np.isinf(beta).all()


def test_larger_epsilon_never_raises_thresholds():
    rng = np.random.default_rng(3)
    gaps, preds = rng.random((8, 200)), rng.integers(0, 3, (8, 200))
    preds[-3:] = preds[-1]
    prev = None
    for eps in (0.0, 0.05, 0.2, 0.5, 1.0):
        b = calibrate_thresholds(gaps, preds, eps, sequential=False)
        if prev is not None:
            assert (b <= prev).all()
        prev = b
    assert (prev == 0.0).all()  # eps = 1: everything may stop at once


# -- bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("eps", [-0.1, 1.5, float("nan"), True, "0.1", None])
def test_bad_epsilon_is_a_clear_error(eps):
    with pytest.raises(AnytimeError, match="epsilon"):
        check_epsilon(eps)
    with pytest.raises(AnytimeError, match="epsilon"):
        calibrate_thresholds(np.ones((2, 3)), np.zeros((2, 3), int), eps)


def test_bad_thresholds_are_clear_errors():
    with pytest.raises(AnytimeError, match=">= 0"):
        Cutoff((0.5, -1.0))
    with pytest.raises(AnytimeError, match="NaN"):
        Cutoff((float("nan"),))
    with pytest.raises(AnytimeError, match="target"):
        Cutoff((1.0,), target="label")
    with pytest.raises(AnytimeError, match="3 thresholds but the input has 4"):
        anytime_forward(tiny_net(), spikes(4, 2, 12, 0), Cutoff.constant(1.0, 3))
    with pytest.raises(AnytimeError, match="labels"):
        calibrate_thresholds(np.ones((2, 3)), np.zeros((2, 3), int), 0.1, target="correct")
    with pytest.raises(AnytimeError, match="chunk"):
        anytime_forward(tiny_net(), spikes(3, 2, 12, 0), Cutoff.never(3), chunk=0)


# -- exactness against full-length inference ------------------------------------------------------------
@pytest.mark.parametrize("loss", ["mean_membrane", "count", "max_membrane", "sum_softmax"])
@pytest.mark.parametrize("shrink", [True, False])
def test_infinite_thresholds_equal_full_length_exactly(loss, shrink):
    net, x = tiny_net(), spikes(10, 16, 12, 1)
    with torch.no_grad():
        full = scores(loss, net(x).out)
    r = anytime_forward(net, x, Cutoff.never(10), loss, shrink=shrink)
    assert torch.equal(r.pred, full.argmax(-1))
    assert torch.equal(r.scores, full)  # bit for bit
    auto = tiny_net(backend="auto")  # kernels chosen per call: equal to float rounding
    with torch.no_grad():
        full_auto = scores(loss, auto(x).out)
    ra = anytime_forward(auto, x, Cutoff.never(10), loss, shrink=shrink)
    assert torch.equal(ra.pred, full_auto.argmax(-1))
    torch.testing.assert_close(ra.scores, full_auto, rtol=1e-5, atol=1e-5)
    assert (r.stop_step == 9).all() and r.mean_steps == 10
    assert r.sample_steps == 10 * 16


def test_epsilon_zero_reproduces_full_predictions_on_calibration_data():
    net, x = tiny_net(), spikes(12, 64, 12, 2)
    with torch.no_grad():
        out = net(x).out
    s = prefix_scores(out)
    cut = Cutoff.calibrate(topk_gap(s), s.argmax(-1), 0.0, correction="none")
    r = anytime_forward(net, x, cut)
    assert torch.equal(r.pred, s[-1].argmax(-1))
    assert r.mean_steps < 12  # and it does stop early


@pytest.mark.parametrize("beta", [0.0, 0.05, 0.2, 1.0])
def test_online_equals_offline_and_stops_computing(beta):
    from spike.energy import EnergyMeter

    net, x = tiny_net(), spikes(10, 32, 12, 4)
    cut = Cutoff.constant(beta, 10)
    with torch.no_grad():
        off = offline_anytime(net(x).out, cut)
    with EnergyMeter(net) as meter:
        on = anytime_forward(net, x, cut, meter=meter)
    masked = anytime_forward(net, x, cut, shrink=False)
    chunked = anytime_forward(net, x, cut, chunk=3)
    for r in (on, masked, chunked):
        assert torch.equal(r.pred, off.pred) and torch.equal(r.stop_step, off.stop_step)
    assert on.sample_steps <= chunked.sample_steps <= on.sample_steps + 2 * 32
    # finished samples leave the batch: only their executed steps are computed and counted
    assert on.sample_steps == int(on.steps.sum())
    assert masked.sample_steps >= on.sample_steps
    rep = meter.report()
    assert np.array_equal(rep.steps, on.steps.numpy())
    assert np.array_equal(rep.layer("1").updates, on.steps.numpy() * 24.0)


def test_each_sample_stops_on_its_own():
    net, x = tiny_net(), spikes(10, 8, 12, 5)
    cut = Cutoff.constant(0.1, 10)
    batch = anytime_forward(net, x, cut)
    for i in range(8):
        one = anytime_forward(net, x[:, i:i + 1], cut)
        assert one.stop_step.item() == batch.stop_step[i].item() and one.pred.item() == batch.pred[i].item()
    assert len(set(batch.stop_step.tolist())) > 1  # the batch does not stop as a whole


def test_sweep_reports_full_and_anytime_points():
    net = tiny_net()
    calib = [(spikes(10, 32, 12, 10 + i), torch.randint(0, 5, (32,))) for i in range(2)]
    test = [(spikes(10, 32, 12, 20 + i), torch.randint(0, 5, (32,))) for i in range(2)]
    rep = anytime_sweep(net, calib, test, [0.0, 0.1, 1.0])
    assert rep.full_steps == 10 and rep.n_test == 64 and rep.n_calibration == 64
    p1 = rep.point(1.0)
    assert p1.mean_steps == pytest.approx(1.0, abs=0.2)  # eps = 1 stops (almost) everything at step 0
    steps = [rep.point(e).mean_steps for e in (0.0, 0.1, 1.0)]
    assert steps == sorted(steps, reverse=True)
    assert rep.point(0.0).speedup == pytest.approx(10 / rep.point(0.0).mean_steps)
    assert json.dumps(rep.to_dict())  # JSON-able
    assert all(p.online_mismatch == 0 for p in rep.points) and rep.extra["full_length_mismatch"] == 0


def test_cumulative_thresholds_match_the_event_stop_rule_units():
    cut = Cutoff((0.5, 0.25, math.inf))
    assert cumulative_thresholds(cut, "mean_membrane").tolist() == [0.5, 0.5, math.inf]
    assert cumulative_thresholds(cut, "count").tolist() == [0.5, 0.25, math.inf]
    with pytest.raises(AnytimeError):
        cumulative_thresholds(cut, "max_membrane")


def test_event_driven_path_stops_where_the_dense_path_does():
    """The event simulator's stop rule, fed our thresholds, stops every sample at the same step."""
    export = pytest.importorskip("spike.inference.export", reason="event-driven export not available yet")
    from spike.events import network as evn

    net, x = tiny_net().double(), spikes(10, 16, 12, 6).double()  # float64: event sums match to ~1e-16
    with torch.no_grad():
        s = prefix_scores(net(x).out)
    cut = Cutoff.calibrate(topk_gap(s), s.argmax(-1), 0.2)
    dense = anytime_forward(net, x, cut)
    assert dense.mean_steps < 10
    enet = export.export_event_network(net, 12)
    samples = []
    for b in range(16):
        tb, ch = np.nonzero(x[:, b].numpy())
        samples.append(evn.BinnedEvents(tb.astype(np.int64), ch.astype(np.int64), np.ones(tb.size)))
    res = evn.run(enet, samples, 10, stop_rule=evn.StopRule(cumulative_thresholds(cut)))
    assert np.array_equal(res.steps, dense.steps.numpy())
    pred = res.out.cumsum(0)[res.steps - 1, np.arange(16)].argmax(-1)  # cumulative output at the stop step
    assert np.array_equal(pred, dense.pred.numpy())


# -- the cutoff regulariser ---------------------------------------------------------------------------------
def test_rcs_is_zero_when_every_step_equals_the_late_mean_and_positive_otherwise():
    from spike.train.regularizers import CutoffRegularizer, rcs_layer_loss

    r = torch.rand(1, 4, 6).expand(8, 4, 6)  # constant over time
    assert rcs_layer_loss(r, torch.ones(4, dtype=torch.bool)).item() == pytest.approx(0.0, abs=1e-6)
    r2 = torch.rand(8, 4, 6)
    assert rcs_layer_loss(r2, torch.ones(4, dtype=torch.bool)).item() > 0.01
    assert rcs_layer_loss(r2, torch.zeros(4, dtype=torch.bool)).item() == 0.0  # no correct sample
    with pytest.raises(ValueError, match="rcs_weight"):
        CutoffRegularizer(-1.0)


def test_rcs_only_regularises_correct_samples_and_has_gradients():
    from spike.train.regularizers import CutoffRegularizer

    net, x = tiny_net(), spikes(10, 8, 12, 7)
    res = net(x, record=True)
    pred = scores("mean_membrane", res.out).argmax(-1)
    reg = CutoffRegularizer(1.0)
    wrong = (pred + 1) % 5
    assert reg(res.records, res.out, wrong).item() == 0.0
    loss = reg(res.records, res.out, pred)
    assert loss.item() > 0
    loss.backward()
    assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0


def test_bptt_with_zero_weight_is_unchanged_and_config_enables_rcs():
    from spike.core.config import ConfigError, config_from_dict
    from spike.train.recipe import get_strategy
    from spike.train.regularizers import CutoffRegularizer
    from spike.train.strategy import BPTT

    assert get_strategy(config_from_dict({})) == BPTT()
    s = get_strategy(config_from_dict({"train": {"rcs_weight": 0.3, "loss": "count"}}))
    assert s.regularizer == CutoffRegularizer(0.3, "count")
    with pytest.raises(ConfigError, match="rcs_weight"):
        get_strategy(config_from_dict({"train": {"rcs_weight": -0.1}}))

    def step(strategy):
        net = tiny_net(1)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        x, y = spikes(6, 8, 12, 8), torch.arange(8) % 5
        torch.manual_seed(0)
        loss_fn = lambda o, t: torch.nn.functional.cross_entropy(o.mean(0), t)  # noqa: E731
        res = strategy.train_step(net, x, y, loss_fn, opt, 0.0)
        return res.loss, [p.detach().clone() for p in net.parameters()]

    l0, p0 = step(BPTT())
    l1, p1 = step(BPTT(regularizer=CutoffRegularizer(0.0)))
    assert l0 == l1 and all(torch.equal(a, b) for a, b in zip(p0, p1))
    l2, p2 = step(BPTT(regularizer=CutoffRegularizer(1.0)))
    assert l2 > l0 and not all(torch.equal(a, b) for a, b in zip(p0, p2))


# -- end to end -----------------------------------------------------------------------------------------------
def test_cli_eval_anytime_on_a_config(tmp_path, capsys):
    """``spike eval CONFIG --anytime`` (untrained weights, no training needed): JSON last, keys, plot."""
    from spike.cli.main import main

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(f'[run]\nname = "tiny"\nout_dir = "{tmp_path}"\n[data]\nn_time_bins = 6\nval_fraction = 0.1\n'
                   f'[model]\nhidden = [16]\n')
    assert main(["eval", str(cfg), "--anytime", "--epsilon", "0.2", "--sweep", "0.1", "--max-test", "64",
                 "--chunk", "2", "--out", str(tmp_path / "o")]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for k in ("full_accuracy", "anytime_accuracy", "mean_steps", "full_steps"):
        assert k in res
    assert res["full_steps"] == 6 and 1 <= res["mean_steps"] <= 6 and res["n_test"] == 64
    assert "validation split" in res["calibration_source"] and res["correction"] == "conformal"
    assert [p["epsilon"] for p in res["sweep"]] == [0.1, 0.2]
    assert (tmp_path / "o" / "anytime.png").is_file() and (tmp_path / "o" / "anytime.json").is_file()
    assert main(["eval", str(cfg), "--anytime", "--epsilon", "1.5"]) == 2
    assert "epsilon" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_eval_anytime_prints_json_last(tmp_path, capsys):
    from spike.cli.main import main

    rc = main(["train", str(REPO / "configs" / "quickstart.toml"), "--out", str(tmp_path),
               "--set", "train.epochs=1", "model.hidden=[32]", "data.n_time_bins=8", "run.plots=false",
               "data.val_fraction=0.2", "run.progress=false"])
    assert rc == 0
    capsys.readouterr()
    rc = main(["eval", str(tmp_path / "last.pt"), "--anytime", "--epsilon", "0.05", "--sweep", "0", "0.1",
               "--max-test", "96"])
    assert rc == 0
    out = capsys.readouterr()
    res = json.loads(out.out.strip().splitlines()[-1])
    for k in ("full_accuracy", "anytime_accuracy", "mean_steps", "full_steps"):
        assert k in res
    assert res["full_steps"] == 8 and 1 <= res["mean_steps"] <= 8
    assert "validation split" in res["calibration_source"]
    assert [p["epsilon"] for p in res["sweep"]] == [0.0, 0.05, 0.1]
    assert (tmp_path / "anytime.png").is_file() and (tmp_path / "anytime.json").is_file()
    assert main(["eval", str(tmp_path / "last.pt"), "--anytime", "--epsilon", "1.5"]) == 2
    assert "epsilon" in capsys.readouterr().err
