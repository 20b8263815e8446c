"""UltraLIF / UltraDLIF: the soft-max bound, convergence to hard max-plus dynamics as eps -> 0, hand-computed
steps, gradients over a range of eps, the sparsity penalty, streaming, trainers and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from spike.neurons import ultralif as U
from spike.neurons.ultra_modules import UltraDLIF, UltraLIF, spike_rate_penalty

EPS_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 20.0)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------- soft maximum
@pytest.mark.parametrize("n", [2, 3, 5])
def test_lse_bound_and_convergence_to_max(n):
    xs = [torch.randn(1000, generator=_gen(i), dtype=torch.float64) * 3 for i in range(n)]
    hard = torch.stack(xs).amax(0)
    errs = []
    for eps in (10.0, 1.0, 0.1, 0.01, 1e-3):
        err = U.lse(*xs, eps=eps) - hard
        assert bool((err >= -1e-12).all()), "LSE must not undershoot the max"
        assert float(err.max()) <= eps * math.log(n) + 1e-12  # max <= LSE <= max + eps log n
        errs.append(float(err.max()))
    assert errs == sorted(errs, reverse=True) and errs[-1] < 1e-3 * math.log(n) + 1e-12
    tie = torch.full((4,), 0.7, dtype=torch.float64)
    assert torch.allclose(U.lse(*([tie] * n), eps=0.5), tie + 0.5 * math.log(n))  # the bound is tight


def test_lse_is_stable_and_ignores_minus_inf():
    big = torch.tensor([1e4, -1e4])
    assert torch.isfinite(U.lse(big, big.flip(0), eps=0.01)).all()
    x = torch.tensor([0.3, -2.0])
    assert torch.equal(U.lse(x, torch.full_like(x, -math.inf), eps=1.0), x)


def test_soft_spike_converges_to_heaviside():
    v = torch.tensor([-1.0, 0.5, 0.9, 1.1, 1.5, 3.0])  # threshold 1, |v - 1| >= 0.1
    hard = (v >= 1.0).float()
    for eps in (1.0, 0.1, 0.01, 0.001):
        err = (U.soft_spike(v, 1.0, eps) - hard).abs().max()
        assert float(err) <= 1 / (1 + math.exp(0.1 / eps)) + 1e-7  # sigma(-delta / eps)
    assert torch.equal(U.soft_spike(v, 1.0, 1e-3), hard)


# ------------------------------------------------------------------------------ hand-computed steps
def test_ultralif_step_by_hand():
    p = U.UltraParams(eps=1.0, log_tau=math.log(0.9), v_th=1.0)
    s, st = U.ultralif_step(torch.tensor([2.0]), U.init_state(torch.zeros(1)), p)
    v = math.log(0.9 + math.exp(2.0))  # LSE_1(0 + log 0.9, 2)
    spike = 1 / (1 + math.exp(-(v - 1.0)))
    assert float(s) == pytest.approx(spike, rel=1e-6)
    assert float(st.v) == pytest.approx(v * (1 - spike), rel=1e-6)
    s2, st2 = U.ultralif_step(torch.tensor([-1.0]), st, p)
    v2 = math.log(math.exp(float(st.v) + math.log(0.9)) + math.exp(-1.0))
    assert float(st2.v) == pytest.approx(v2 * (1 - 1 / (1 + math.exp(-(v2 - 1)))), rel=1e-6)


def test_ultradlif_step_by_hand_both_boundaries():
    v0 = torch.tensor([[0.0, 2.0, -1.0, 0.5]])
    x = torch.tensor([[0.1, -0.2, 0.3, 0.0]])
    eps = 0.5
    for boundary, nbrs in (("wrap", [(0.5, 2.0), (0.0, -1.0), (2.0, 0.5), (-1.0, 0.0)]),
                           ("none", [(None, 2.0), (0.0, -1.0), (2.0, 0.5), (-1.0, None)])):
        p = U.UltraParams(eps=eps, v_th=1.0, boundary=boundary)
        _, st = U.ultradlif_step(x, U.UltraState(v0, torch.zeros_like(v0)), p)
        for i, (left, right) in enumerate(nbrs):
            terms = [t for t in (left, float(v0[0, i]), right) if t is not None]
            v = eps * math.log(sum(math.exp(t / eps) for t in terms)) + float(x[0, i])
            assert float(st.v[0, i]) == pytest.approx(v * (1 - 1 / (1 + math.exp(-(v - 1) / eps))), rel=1e-5)


def _hard_ultralif(xs, log_tau, v_th):
    v, out = torch.zeros_like(xs[0]), []
    for x in xs:
        v = torch.maximum(v + log_tau, x)
        s = (v >= v_th).float()
        v = v * (1 - s)
        out.append(s)
    return torch.stack(out)


def test_ultralif_tends_to_hard_max_plus_lif_as_eps_vanishes():
    # inputs on a grid that keeps every membrane away from the threshold and from ties
    xs = torch.tensor([[0.2], [0.5], [1.5], [-0.3], [0.6], [2.0], [0.0], [0.3]]).repeat(1, 3)  # [T, N]
    hard = _hard_ultralif(xs, math.log(0.9), 1.0)
    for eps in (0.05, 0.01, 0.002):
        soft, _, _ = U.multi_step(xs[:, None], None, U.UltraParams(eps, math.log(0.9), 1.0))
        assert float((soft[:, 0] - hard).abs().max()) < 10 * eps + math.exp(-0.1 / eps) * 10
    soft, _, _ = U.multi_step(xs[:, None], None, U.UltraParams(1e-3, math.log(0.9), 1.0))
    assert torch.equal(soft[:, 0].round(), hard) and hard.sum() > 0


# --------------------------------------------------------------------------------------- gradients
def _grad_norms(neuron_cls, eps, **kw):
    torch.manual_seed(0)
    fc1, fc2 = torch.nn.Linear(20, 16), torch.nn.Linear(16, 4)
    neuron = neuron_cls(eps=eps, eps_range=(0.1, 20.0), learn_eps=False, **kw)
    x = torch.rand(5, 8, 20, generator=_gen(1)) * 2
    y = torch.randint(0, 4, (8,), generator=_gen(2))
    out = fc2(neuron(fc1(x)).spikes).mean(0)
    torch.nn.functional.cross_entropy(out, y).backward()
    return float(fc1.weight.grad.norm())


@pytest.mark.parametrize("cls,kw", [(UltraLIF, {}), (UltraDLIF, {"boundary": "wrap"}),
                                    (UltraDLIF, {"boundary": "none"})])
def test_gradients_finite_and_non_vanishing_over_eps(cls, kw):
    norms = [_grad_norms(cls, e, **kw) for e in EPS_GRID]
    print(f"\n{cls.__name__}{kw} first-layer grad norm over eps {EPS_GRID}: min {min(norms):.3e} "
          f"max {max(norms):.3e}")
    assert all(math.isfinite(n) for n in norms)
    assert min(norms) > 1e-4  # no vanishing gradient anywhere in [0.1, 20]
    assert max(norms) < 1e3


def test_learnable_eps_gets_gradient_and_stays_in_range():
    m = UltraLIF(eps=1.0, eps_range=(0.1, 20.0))
    m(torch.randn(4, 3, 5)).spikes.sum().backward()
    assert m.log_eps.grad is not None and math.isfinite(float(m.log_eps.grad)) and float(m.log_eps.grad) != 0
    with torch.no_grad():
        m.log_eps.fill_(10.0)
    assert float(m.eps.detach()) == 20.0
    with torch.no_grad():
        m.log_eps.fill_(-10.0)
    assert float(m.eps.detach()) == pytest.approx(0.1)


def test_learnable_tau_gets_gradient():
    m = UltraLIF(tau=0.8, learn_tau=True)
    m(torch.randn(6, 3, 5)).spikes.sum().backward()
    assert float(m.log_tau.grad.abs()) > 0


# --------------------------------------------------------------------------------- sparsity penalty
def test_penalty_gradient_equals_gradient_of_weighted_mean_rate():
    x = torch.randn(5, 4, 3, requires_grad=True)
    (g1,) = torch.autograd.grad((spike_rate_penalty(torch.sigmoid(x), 0.3) * 2).sum(), x)
    s = torch.sigmoid(x)
    (g2,) = torch.autograd.grad((s * 2).sum() + 0.3 * s.mean(), x)
    torch.testing.assert_close(g1, g2)
    assert spike_rate_penalty(s, 0.0) is s


def _train_rate(sparsity: float) -> float:
    torch.manual_seed(0)
    net = torch.nn.ModuleList([torch.nn.Linear(12, 16), UltraLIF(sparsity=sparsity), torch.nn.Linear(16, 3)])
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    x = torch.rand(2, 32, 12, generator=_gen(5)) * 2
    y = torch.randint(0, 3, (32,), generator=_gen(6))
    for _ in range(25):
        opt.zero_grad()
        out = net[2](net[1](net[0](x)).spikes).mean(0)
        torch.nn.functional.cross_entropy(out, y).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        return float(net[1](net[0](x)).spikes.mean())


def test_sparsity_penalty_lowers_firing_rate():
    free, sparse = _train_rate(0.0), _train_rate(5.0)
    print(f"\nmean soft firing rate after training: no penalty {free:.3f}, penalty 5.0 {sparse:.3f}")
    assert sparse < 0.7 * free


# --------------------------------------------------------------------- streaming, trainers, configs
@pytest.mark.parametrize("cls", [UltraLIF, UltraDLIF])
def test_chunks_equal_whole_sequence(cls):
    m = cls()
    x = torch.randn(9, 2, 6, generator=_gen(0))
    whole = m(x, record=True)
    a = m(x[:4])
    b = m(x[4:], a.state)
    torch.testing.assert_close(torch.cat([a.spikes, b.spikes]), whole.spikes)
    torch.testing.assert_close(b.state.v, whole.state.v)
    assert whole.v.shape == x.shape


@pytest.mark.parametrize("neuron", ["ultralif", "ultradlif"])
def test_trains_with_bptt_trainer_and_round_trips_checkpoint(neuron, tmp_path):
    from spike.core.config import ModelConfig
    from spike.models import build_model
    from spike.train import Trainer, get_loss, load_checkpoint

    m = ModelConfig(hidden=(16,), neuron=neuron, readout="spikes", sparsity_penalty=0.01)
    model = build_model(m, (2, 4, 4), 3)
    x = torch.rand(2, 24, 2, 4, 4, generator=_gen(0))
    y = torch.randint(0, 3, (24,), generator=_gen(1))
    data = [(x[:, i:i + 8], y[i:i + 8]) for i in range(0, 24, 8)]
    tr = Trainer(model, torch.optim.Adam(model.parameters(), lr=1e-2), get_loss("count"), loss_name="count",
                 out_dir=tmp_path, epochs=2, progress=False)
    before = float(model[2].eps.detach())
    tr.fit(data, data)
    assert float(model[2].eps.detach()) != before  # the temperature is learned
    ckpt = load_checkpoint(tmp_path / "last.pt")
    fresh = build_model(m, (2, 4, 4), 3)
    fresh.load_state_dict(ckpt["model"])
    model.eval()
    fresh.eval()
    torch.testing.assert_close(fresh(x).out, model(x).out)


@pytest.mark.parametrize("neuron", ["ultralif", "ultradlif"])
def test_sltt_runs_ultra_neurons(neuron):
    sltt = pytest.importorskip("spike.train.sltt")
    from spike.core.config import ModelConfig
    from spike.models import build_model
    from spike.train import get_loss

    net = build_model(ModelConfig(hidden=(8,), neuron=neuron), (6,), 3)
    x, y = torch.rand(5, 4, 6, generator=_gen(0)), torch.tensor([0, 1, 2, 1])
    res = sltt.SLTT().train_step(net, x, y, get_loss("per_step"), torch.optim.SGD(net.parameters(), lr=0.1), 0.0)
    assert math.isfinite(res.loss) and net[2].log_eps.grad is not None


def test_t1_configs_build_the_paper_network():
    from pathlib import Path

    from spike.core.config import load_config
    from spike.models import build_model

    root = Path(__file__).resolve().parents[2] / "configs"
    ultra = build_model(load_config(root / "ultralif_t1.toml").model, (2, 8, 8), 10)
    lif = build_model(load_config(root / "ultralif_t1_lif.toml").model, (2, 8, 8), 10)
    assert [type(m).__name__ for m in ultra] == ["Flatten", "Linear", "UltraLIF", "Linear", "UltraLIF"]
    assert [type(m).__name__ for m in lif] == ["Flatten", "Linear", "LIF", "Linear", "LIF"]
    assert ultra[1].out_features == lif[1].out_features == 64


# --------------------------------------------------------------------------------------- bad input
def test_bad_arguments_raise_clear_errors():
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="eps"):
            UltraLIF(eps=bad)
        with pytest.raises(ValueError, match="eps"):
            UltraDLIF(eps_range=(bad, 20.0))
    with pytest.raises(ValueError, match="eps"):
        UltraLIF(eps=30.0)  # outside the default range
    with pytest.raises(ValueError, match="eps range"):
        UltraLIF(eps_range=(5.0, 1.0))
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="tau"):
            UltraLIF(tau=bad)
    with pytest.raises(ValueError, match="boundary"):
        UltraDLIF(boundary="reflect")
    with pytest.raises(ValueError, match="sparsity"):
        UltraLIF(sparsity=-0.1)
    with pytest.raises(ValueError, match="state.v"):
        UltraLIF()(torch.rand(3, 2, 4), U.UltraState(torch.zeros(2, 5), torch.zeros(2, 5)))
    with pytest.raises(ValueError, match="time-first"):
        UltraLIF()(torch.rand(4))
    from spike.core.config import ConfigError, ModelConfig
    from spike.models import build_model

    with pytest.raises(ConfigError, match="eps"):
        build_model(ModelConfig(neuron="ultralif", ultra_eps=0.0), (4,), 2)
