"""Lyapunov Noise Pruning: exponent estimator on known systems, sparsity, stability, heterogeneity, training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from spike.prune import (HRSNN, activity_prune, betweenness_centrality, effective_resistance, gamma_taus,
                         heterogeneity_edges, tau_search,
                         lnp_prune, lyapunov_spectrum, largest_lyapunov, mackey_glass, mackey_glass_rhs,
                         network_lyapunov, surrogate_jacobian, surrogate_step, synapse_budget)

PROBE = dict(n_steps=200, n_discard=60)


# --- Lyapunov estimator on systems with a known spectrum -------------------------------------------

def test_logistic_map_r4_exponent_is_ln2():
    lam = largest_lyapunov(lambda x, t: 4.0 * x * (1.0 - x), torch.tensor([0.3141], dtype=torch.float64), 20000,
                           jacobian=lambda x, t: (4.0 - 8.0 * x).reshape(1, 1), n_discard=100)
    assert lam == pytest.approx(math.log(2.0), abs=0.02)


def test_linear_map_spectrum_is_log_abs_eigenvalues():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(5, 5, generator=g, dtype=torch.float64)
    r, th = 0.8, 0.7  # a complex pair r e^{±i th}: two equal exponents log r
    d = torch.zeros(5, 5, dtype=torch.float64)
    d[0, 0], d[1, 1], d[2, 2] = 1.3, -0.5, 0.2
    d[3:, 3:] = r * torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    a = v @ d @ torch.linalg.inv(v)
    x0 = torch.ones(5, dtype=torch.float64)
    res = lyapunov_spectrum(lambda x, t: a @ (x / x.norm()), x0, 1500, jacobian=lambda x, t: a, n_discard=50)
    want = sorted([math.log(1.3), math.log(0.5), math.log(0.2), math.log(r), math.log(r)], reverse=True)
    assert res.exponents.tolist() == pytest.approx(want, abs=0.01)
    # autograd Jacobian gives the same (the map is linear before the harmless normalisation of x)
    res2 = lyapunov_spectrum(lambda x, t: a @ x, x0, 200, k=2, n_discard=30)
    assert res2.exponents.tolist() == pytest.approx(want[:2], abs=0.03)


def test_surrogate_jacobian_matches_autograd_and_per_neuron_sum():
    net = HRSNN(3, 12, 2, seed=3)
    w, beta = net.w_rec.detach().double(), torch.exp(-1.0 / net.taus.double())
    h = torch.randn(12, dtype=torch.float64) + 0.8
    x = torch.randn(12, dtype=torch.float64)
    auto = torch.autograd.functional.jacobian(lambda z: surrogate_step(z, x, beta, w, 1.0, 0.25), h)
    torch.testing.assert_close(surrogate_jacobian(h, beta, w, 1.0, 0.25), auto)
    res = network_lyapunov(net.w_rec, net.taus, **PROBE)
    assert float(res.per_neuron().sum()) == pytest.approx(float(res.exponents.sum()), rel=1e-9)
    assert torch.all(res.exponents[:-1] >= res.exponents[1:])


# --- network, heterogeneity, graph pieces ------------------------------------------------------------

def test_gamma_taus_have_the_gamma_moments():
    tau = gamma_taus(20000, tau_mean=10.0, tau_shape=4.0, tau_min=1e-6, seed=0).double()
    assert float(tau.mean()) == pytest.approx(10.0, rel=0.03)
    assert float(tau.var()) == pytest.approx(100.0 / 4.0, rel=0.08)  # k theta^2
    assert float(gamma_taus(500, tau_min=2.0).min()) >= 2.0


def test_effective_resistance_tree_and_foster():
    w = torch.zeros(4, 4)
    w[1, 0], w[2, 1], w[3, 2] = 2.0, 1.0, 4.0  # a directed path; undirected conductances 1, 0.5, 2
    r = effective_resistance(w)
    assert float(r[0, 3]) == pytest.approx(1 / 1.0 + 1 / 0.5 + 1 / 2.0)
    dense = torch.randn(10, 10, generator=torch.Generator().manual_seed(0))
    r = effective_resistance(dense)
    c = 0.5 * (dense.abs() + dense.abs().t()).double()
    c.fill_diagonal_(0)
    assert float((c * r).sum() / 2) == pytest.approx(9.0, rel=1e-6)  # Foster: N - 1


def test_betweenness_matches_networkx():
    nx = pytest.importorskip("networkx")
    g = torch.Generator().manual_seed(2)
    w = torch.randn(15, 15, generator=g) * (torch.rand(15, 15, generator=g) < 0.3)
    ours = betweenness_centrality(w)
    G = nx.DiGraph()
    G.add_nodes_from(range(15))
    for i, j in zip(*np.nonzero(w.numpy())):
        if i != j:
            G.add_edge(int(j), int(i), length=1.0 / abs(float(w[i, j])))
    ref = nx.betweenness_centrality(G, weight="length", normalized=False)
    assert ours.tolist() == pytest.approx([ref[i] for i in range(15)], abs=1e-9)


# --- pruning ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, float("nan"), "0.5x"])
def test_sparsity_outside_open_unit_interval_is_one_value_error(bad):
    with pytest.raises(ValueError, match="sparsity must be a number strictly between 0 and 1"):
        lnp_prune(HRSNN(2, 8, 2), bad)


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_pruning_reaches_the_synapse_count_and_training_keeps_it(sparsity):
    net = HRSNN(3, 40, 2, seed=1)
    pruned, rep = lnp_prune(net, sparsity, probe=PROBE)
    k = synapse_budget(40, sparsity)
    assert pruned.synapse_count() == k == rep.synapses == int((pruned.w_rec != 0).sum())
    assert 1 - k / 1600 == pytest.approx(sparsity, abs=1e-3)
    opt = torch.optim.Adam(pruned.parameters(), lr=1e-2)
    loss = pruned(torch.rand(20, 4, 3)).out.pow(2).mean()
    loss.backward()
    opt.step()
    assert int((pruned.w_rec != 0).sum()) <= k and torch.all(pruned.w_rec[pruned.mask == 0] == 0)


def test_neuron_pruning_keeps_count_and_heterogeneous_taus():
    net = HRSNN(3, 40, 2, seed=2)
    pruned, rep = lnp_prune(net, 0.8, neuron_fraction=0.25, probe=PROBE)
    assert pruned.n_hidden == rep.neurons == 30
    assert pruned.synapse_count() == synapse_budget(40, 0.8)
    # every kept neuron keeps its own tau: the pruned taus are a subset of the dense ones, still spread out
    dense = net.taus
    for t in pruned.taus:
        assert torch.isclose(dense, t).any()
    assert float(pruned.taus.std() / pruned.taus.mean()) > 0.2


def test_pruned_network_is_stable():
    net = HRSNN(3, 48, 2, seed=4, gain=1.5)
    pruned, rep = lnp_prune(net, 0.85, tol=0.02, probe=PROBE)
    lam = float(network_lyapunov(pruned.w_rec, pruned.taus, k=1, **PROBE).exponents[0])
    assert lam <= rep.lambda_dense + 0.02 + 1e-9
    # bounded activity of the spiking net under a long noisy drive
    x = 0.5 * torch.randn(400, 4, 3, generator=torch.Generator().manual_seed(0))
    out = pruned(x, record=True)
    spikes, v = out.records["rec"]
    assert torch.isfinite(out.out).all()
    rate = spikes[200:].detach().mean()
    assert 0.0 < float(rate) < 0.9
    with torch.no_grad():
        v = pruned.rec(pruned.inp(x), record=True).v
    assert torch.isfinite(v).all() and float(v.abs().max()) < 50.0


def test_stability_rescaling_pulls_the_exponent_back():
    # a strongly coupled net whose reweighted draw is less stable than the dense one: step 7 must act
    net = HRSNN(3, 48, 2, seed=4, gain=2.5)
    pruned, rep = lnp_prune(net, 0.5, tol=0.02, probe=PROBE)
    assert rep.lambda_sampled > rep.lambda_dense + 0.02  # the draw alone would break the bound
    assert 0.0 < rep.scale < 1.0
    lam = float(network_lyapunov(pruned.w_rec, pruned.taus, k=1, **PROBE).exponents[0])
    assert lam == pytest.approx(rep.lambda_final, abs=1e-6) and lam <= rep.lambda_dense + 0.02 + 1e-9


def test_recurrent_layer_cannot_be_exported_to_the_event_path():
    from spike.inference.export import ExportError, export_event_network

    pruned, _ = lnp_prune(HRSNN(3, 16, 2), 0.5, probe=PROBE)
    with pytest.raises(ExportError, match="'rec'.*recurrent"):
        export_event_network(pruned, 3)


# --- training the pruned network -------------------------------------------------------------------

def _train(net, x, y, loss_fn, steps, lr=1e-2):
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(net(x).out, y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def test_pruned_net_trains_on_tiny_classification():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(32) % 2
    rates = torch.where(y[:, None] == 0, torch.tensor([0.6, 0.6, 0.05, 0.05]), torch.tensor([0.05, 0.05, 0.6, 0.6]))
    x = (torch.rand(25, 32, 4, generator=g) < rates).float()
    pruned, _ = lnp_prune(HRSNN(4, 32, 2, seed=0, input_scale=3.0), 0.8, probe=PROBE)
    losses = _train(pruned, x, y, lambda out, t: torch.nn.functional.cross_entropy(out.mean(0), t), 40)
    assert losses[-1] < 0.6 * losses[0]
    acc = (pruned(x).out.mean(0).argmax(1) == y).float().mean()
    assert float(acc) > 0.9


def test_mackey_glass_generator_solves_the_delay_equation():
    tau, h, x0 = 17.0, 0.1, 1.2
    fine = mackey_glass(2000, tau=tau, h=h, sample_every=1, x0=x0)
    # exact on [0, tau]: the delayed value is the constant history
    c = 0.2 * x0 / (1 + x0 ** 10)
    t = np.arange(171) * h
    np.testing.assert_allclose(fine[:171], c / 0.1 + (x0 - c / 0.1) * np.exp(-0.1 * t), atol=1e-9)
    # afterwards the central difference satisfies the DDE to O(h^2)
    lag = int(tau / h)
    i = np.arange(lag + 1, 1999)
    lhs = (fine[i + 1] - fine[i - 1]) / (2 * h)
    rhs = mackey_glass_rhs(fine[i], fine[i - lag])
    assert np.abs(lhs - rhs).max() < 1e-3
    assert np.abs(lhs - rhs).max() < 0.01 * np.abs(rhs).max()
    series = mackey_glass(1500)
    assert 0.2 < series[300:].min() and series[300:].max() < 1.45 and series[300:].std() > 0.15
    with pytest.raises(ValueError, match="tau / h"):
        mackey_glass(10, tau=17.05, h=0.1)


def _mg_task(n_train=300, warm=200):
    s = torch.tensor(mackey_glass(warm + n_train + 1), dtype=torch.float32)[warm:]
    s = (s - s.mean()) / s.std()
    return s[:-1].reshape(-1, 1, 1), s[1:].reshape(-1, 1, 1)  # [T, B=1, 1] input, next-step target


def _mse(out, target):
    return (out[20:] - target[20:]).pow(2).mean()  # skip the first steps (state from rest)


def test_pruned_net_learns_mackey_glass_one_step_ahead():
    x, y = _mg_task()
    pruned, _ = lnp_prune(HRSNN(1, 48, 1, seed=0, input_scale=3.0), 0.8, probe=PROBE)
    losses = _train(pruned, x, y, _mse, 60, lr=2e-2)
    assert losses[-1] < 0.5 * losses[0]


def test_lnp_vs_activity_pruning_at_equal_synapse_count():
    """Reports numbers only (no target): LNP at init + training vs train dense -> activity prune -> fine-tune."""
    x, y = _mg_task()
    xt, yt = _mg_task(n_train=300, warm=600)
    epochs, fine = 40, 20
    torch.manual_seed(0)
    lnp, rep = lnp_prune(HRSNN(1, 48, 1, seed=0, input_scale=3.0), 0.8, probe=PROBE)
    _train(lnp, x, y, _mse, epochs + fine, lr=2e-2)
    torch.manual_seed(0)
    dense = HRSNN(1, 48, 1, seed=0, input_scale=3.0)
    _train(dense, x, y, _mse, epochs, lr=2e-2)
    with torch.no_grad():
        dense_test = float(_mse(dense(xt).out, yt))
    act = activity_prune(dense, lnp.synapse_count(), x)
    with torch.no_grad():
        act_before = float(_mse(act(xt).out, yt))
    _train(act, x, y, _mse, fine, lr=2e-2)
    assert act.synapse_count() == lnp.synapse_count()
    with torch.no_grad():
        res = dict(synapses=lnp.synapse_count(), lnp_neurons=lnp.n_hidden, act_neurons=act.n_hidden,
                   dense_test_mse=dense_test, lnp_test_mse=float(_mse(lnp(xt).out, yt)),
                   activity_test_mse_before_finetune=act_before, activity_test_mse=float(_mse(act(xt).out, yt)),
                   lambda_dense=rep.lambda_dense, lambda_lnp=rep.lambda_final)
    print(json.dumps(res))
    assert all(math.isfinite(v) for v in res.values())


# --- step 3 of the reviews' summary: edge addition by degree heterogeneity ---------------------------

def test_heterogeneity_edges_adds_exactly_m_high_contrast_synapses():
    g = torch.Generator().manual_seed(0)
    present = torch.rand(20, 20, generator=torch.Generator().manual_seed(1)) < 0.15
    present[:3] = True  # three hubs with full rows: a clear degree contrast to exploit
    added = heterogeneity_edges(present, 25, g)
    assert int(added.sum()) == 25 and not bool((added & present).any()) and not bool(added.diagonal().any())
    again = heterogeneity_edges(present, 25, torch.Generator().manual_seed(0))
    assert torch.equal(added, again)  # seeded
    deg = (present.sum(0) + present.sum(1)).double()
    contrast = (deg[:, None] - deg[None, :]).abs()
    free = ~present & ~torch.eye(20, dtype=torch.bool)
    assert float(contrast[added].mean()) > 1.5 * float(contrast[free].mean())
    # the first edge is the absent pair of largest degree contrast
    first = heterogeneity_edges(present, 1, g)
    assert float(contrast[first]) == float(contrast[free].max())
    with pytest.raises(ValueError, match="cannot add"):
        heterogeneity_edges(torch.ones(4, 4, dtype=torch.bool), 1, g)


@pytest.mark.parametrize("topup", ["heterogeneity", "probability"])
def test_both_topup_rules_refill_the_budget(topup):
    net = HRSNN(3, 32, 2, seed=3)
    pruned, rep = lnp_prune(net, 0.8, neuron_fraction=0.25, probe=PROBE, topup=topup)
    assert pruned.n_hidden == 24 and pruned.synapse_count() == synapse_budget(32, 0.8) == rep.synapses
    with pytest.raises(ValueError, match="topup must be one of"):
        lnp_prune(net, 0.8, topup="random")


# --- step 4: the timescale search (Bayesian optimisation, GP + expected improvement) -------------------

def _bowl(k, m):  # minimum 0 at k = 4, mean = 12 (inside the default box)
    return (math.log(k / 4.0)) ** 2 + (math.log(m / 12.0)) ** 2


@pytest.mark.parametrize("method", ["bayes", "random"])
def test_tau_search_returns_the_best_trial_and_is_seeded(method):
    res = tau_search(_bowl, n_trials=14, start=(2.0, 5.0), seed=3, method=method)
    assert len(res.trials) == 14 and res.trials[0][:2] == (2.0, 5.0) and res.method == method
    assert res.score == min(t[2] for t in res.trials) < _bowl(2.0, 5.0)
    assert all(1.0 <= k <= 10.0 and 3.0 <= m <= 30.0 for k, m, _ in res.trials[1:])
    assert tau_search(_bowl, n_trials=14, start=(2.0, 5.0), seed=3, method=method).trials == res.trials
    assert tau_search(_bowl, n_trials=6, seed=4, method=method).trials != \
        tau_search(_bowl, n_trials=6, seed=5, method=method).trials
    nan = tau_search(lambda k, m: float("nan") if k > 2 else 1.0, n_trials=7, start=(1.5, 5.0), method=method)
    assert nan.score == 1.0 and math.isinf(max(t[2] for t in nan.trials))


def test_bayesian_optimisation_finds_the_optimum_random_search_misses():
    """12 trials on a smooth bowl: the GP-EI search lands within a few % of the optimum in every seed;
    random search with the same budget does not come close (median over the same seeds)."""
    bayes = [tau_search(_bowl, n_trials=12, start=(2.0, 5.0), seed=s).score for s in range(5)]
    rand = [tau_search(_bowl, n_trials=12, start=(2.0, 5.0), seed=s, method="random").score for s in range(5)]
    assert max(bayes) < 0.01  # |log k/4|, |log m/12| < 0.1: within 10 % of both optimal parameters
    assert float(np.median(rand)) > 10 * float(np.median(bayes))
    # the candidates after the initial design concentrate near the optimum
    res = tau_search(_bowl, n_trials=12, start=(2.0, 5.0), seed=0)
    late = [abs(math.log(k / 4.0)) + abs(math.log(m / 12.0)) for k, m, _ in res.trials[6:]]
    assert float(np.median(late)) < 0.3


def test_tau_search_bad_arguments_raise():
    for bad in (dict(n_trials=0), dict(n_init=0), dict(method="grid"), dict(shape_range=(0.0, 2.0)),
                dict(mean_range=(5.0, 1.0))):
        with pytest.raises(ValueError):
            tau_search(_bowl, **bad)


def test_tau_search_on_a_validation_objective_of_pruned_nets():
    """The intended use: build, LNP-prune and train an HRSNN per candidate, score on held-out data."""
    x, y = _mg_task(n_train=200)
    xv, yv = _mg_task(n_train=200, warm=500)

    def objective(k, m):
        torch.manual_seed(0)
        pruned, _ = lnp_prune(HRSNN(1, 24, 1, seed=0, input_scale=3.0, tau_shape=k, tau_mean=m), 0.8,
                              probe=dict(n_steps=120, n_discard=40))
        _train(pruned, x, y, _mse, 12, lr=2e-2)
        with torch.no_grad():
            return float(_mse(pruned(xv).out, yv))

    res = tau_search(objective, n_trials=3, start=(3.0, 10.0), seed=0)
    assert res.score <= res.trials[0][2] and all(math.isfinite(t[2]) for t in res.trials)
    print(json.dumps(res.as_dict()))
