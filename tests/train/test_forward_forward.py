"""Forward-Forward and Mono-Forward: layer locality, goodness separation, label embedding, errors."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from spike.core.config import ConfigError, ModelConfig, config_from_dict
from spike.train.forward_forward import (FFNet, ForwardForward, MonoForward, MonoNet, embed_label, ff_backward,
                                         goodness, mono_backward, negative_labels, normalise_rates)
from spike.train.losses import get_loss
from spike.train.recipe import build_model_for, get_strategy

C, T, D = 4, 8, 24
MODEL = ModelConfig(kind="mlp", hidden=(32, 32), tau=5.0, dt=1.0, dropout=0.0, readout_tau=5.0)


def _toy(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class c fires features [6c, 6c+6) at rate 0.6, the rest at 0.05: ``x [T, n, D]``, ``y [n]``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % C
    rate = torch.full((n, D), 0.05)
    for i in range(n):
        rate[i, 6 * y[i]:6 * y[i] + 6] = 0.6
    x = (torch.rand(T, n, D, generator=g) < rate).float()  # [T, n, D]
    return x, y


def _ff(**kw) -> FFNet:
    torch.manual_seed(0)
    return ForwardForward(**kw).build_model(MODEL, (D,), C)


def _mono(**kw) -> MonoNet:
    torch.manual_seed(0)
    return MonoForward(**kw).build_model(MODEL, (D,), C)


def _grads(params):
    return [p.grad.clone() if p.grad is not None else None for p in params]


def test_ff_no_gradient_between_layers():
    """Changing the upper layer changes its own gradient but not a bit of the lower layer's."""
    net = _ff()
    x, y = _toy(16)
    torch.manual_seed(1)
    ff_backward(net, x, y, theta=0.2)
    g1, g2 = _grads(net.blocks[0].parameters()), _grads(net.blocks[1].parameters())
    other = copy.deepcopy(net)
    other.zero_grad()
    with torch.no_grad():
        for p in other.blocks[1].parameters():
            p.mul_(-3.0)
    torch.manual_seed(1)
    ff_backward(other, x, y, theta=0.2)
    for a, b in zip(g1, _grads(other.blocks[0].parameters())):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(g2, _grads(other.blocks[1].parameters())))
    assert all(float(g.abs().sum()) > 0 for g in g1)


def test_mono_no_gradient_between_layers():
    net = _mono()
    x, y = _toy(16)
    mono_backward(net, x, y)
    lower = list(net.blocks[0].parameters()) + list(net.projections[0].parameters())
    g1 = _grads(lower)
    other = copy.deepcopy(net)
    other.zero_grad()
    with torch.no_grad():
        for p in list(other.blocks[1].parameters()) + list(other.projections[1].parameters()):
            p.mul_(-3.0)
    mono_backward(other, x, y)
    lower2 = list(other.blocks[0].parameters()) + list(other.projections[0].parameters())
    for a, b in zip(g1, _grads(lower2)):
        assert torch.equal(a, b)


def _train(strategy, net, steps: int = 60, lr: float = 3e-3):
    x, y = _toy(64, seed=1)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    torch.manual_seed(2)
    for i in range(steps):
        sl = slice((i % 4) * 16, (i % 4 + 1) * 16)
        res = strategy.train_step(net, x[:, sl], y[sl], get_loss("mean_membrane"), opt, grad_clip=0.0)
        assert math.isfinite(res.loss) and res.out.shape == (1, 16, C)
    return x, y


def test_ff_goodness_separates_positive_from_negative_after_training():
    strategy = ForwardForward()  # the shipped defaults (theta 4, goodness scale 20, label scale 20)
    net = _ff()
    x, y = _toy(64, seed=1)
    flat = net.flat_input(x)

    def gap():
        with torch.no_grad():
            torch.manual_seed(5)
            y_neg = negative_labels(y, C)
            pos = net.spikes_for(flat, y)
            neg = net.spikes_for(flat, y_neg)
        return [float(goodness(p, net.goodness_scale).mean() - goodness(n, net.goodness_scale).mean())
                for p, n in zip(pos, neg)]

    before = gap()
    net.train()
    _train(strategy, net)
    after = gap()
    print("goodness gap (positive - negative) per layer before/after:", before, after)
    assert all(a > 0.5 for a in after), after  # goodness units: kappa * mean squared rate
    assert all(a > b + 0.5 for a, b in zip(after, before)), (before, after)
    net.eval()
    xt, yt = _toy(64, seed=3)
    with torch.no_grad():
        acc_g = float((net(xt).out[0].argmax(-1) == yt).float().mean())
        acc_r = float((net(xt, inference="readout").out[0].argmax(-1) == yt).float().mean())
    assert acc_g > 0.8 and acc_r > 0.8, (acc_g, acc_r)


def test_mono_forward_learns_toy_task():
    net = _mono()
    _train(MonoForward(), net)
    net.eval()
    xt, yt = _toy(64, seed=3)
    with torch.no_grad():
        for mode in ("last", "sum"):
            assert float((net(xt, inference=mode).out[0].argmax(-1) == yt).float().mean()) > 0.8


def test_embed_label_modes():
    x = torch.rand(3, 2, 6)
    y = torch.tensor([1, 3])
    app = embed_label(x, y, 4, 2.0, "append")
    assert app.shape == (3, 2, 10) and torch.equal(app[..., :6], x)
    assert torch.equal(app[:, 0, 6:], torch.tensor([0.0, 2.0, 0.0, 0.0]).expand(3, 4))
    rep = embed_label(x, y, 4, 2.0, "replace")
    assert rep.shape == x.shape and torch.equal(rep[..., 4:], x[..., 4:])
    assert torch.equal(rep[:, 1, :4], torch.tensor([0.0, 0.0, 0.0, 2.0]).expand(3, 4))
    neutral = embed_label(x, None, 4, 2.0, "append")
    assert torch.allclose(neutral[..., 6:], torch.full((3, 2, 4), 0.5))
    assert torch.equal(x, x.clone())  # input untouched


@pytest.mark.parametrize("mode", ["append", "replace"])
def test_first_layer_current_equals_linear_on_embedded_input(mode):
    """The shared image drive + label drive is exactly one Linear over ``embed_label(normalise(x), y)``."""
    net = _ff(label_embedding=mode, label_scale=3.0).double()
    x, y = _toy(6)
    x = x.double()
    flat = net.flat_input(x)
    current = net.image_drive(flat) + net.label_drive(y, 6, flat)[None]
    w_img, w_lab, b = net.in_proj.weight, net.label_proj.weight, net.label_proj.bias
    w = torch.cat([w_img, w_lab], 1) if mode == "append" else torch.cat([w_lab, w_img], 1)
    emb = embed_label(normalise_rates(flat), y, C, 3.0, mode)
    assert torch.allclose(current, emb @ w.t() + b, atol=1e-10)


def test_normalisation_removes_goodness():
    x = (torch.rand(10, 3, 50) < 0.3).float()
    n1, n2 = normalise_rates(x), normalise_rates(4.0 * x)
    assert torch.allclose(n1, n2, atol=1e-6)
    rms = n1.mean(0).pow(2).mean(-1).sqrt()
    assert torch.allclose(rms, torch.ones(3), atol=1e-4)


def test_negative_labels_are_wrong_and_cover_all_other_classes():
    y = torch.arange(400) % 5
    g = torch.Generator().manual_seed(0)
    yn = negative_labels(y, 5, generator=g)
    assert bool((yn != y).all()) and yn.min() >= 0 and yn.max() < 5
    for c in range(5):
        assert set(yn[y == c].tolist()) == set(range(5)) - {c}
    probs = torch.zeros(400, 5)
    probs[:, 2] = 1.0  # the readout is sure it is class 2: hard negatives pick 2 unless it is the label
    probs[:, 0] = 1e-9
    hard = negative_labels(y, 5, probs, generator=g)
    assert bool((hard != y).all())
    assert bool((hard[y != 2] == 2).all())


def test_forward_returns_scores_and_records():
    net = _ff()
    net.eval()
    x, _ = _toy(3)
    res = net(x, record=True)
    assert res.out.shape == (1, 3, C)
    assert set(res.records) == {"block0", "block1"} and res.records["block0"][0].shape == (T, 3, 32)
    mono = _mono()
    assert mono(x).out.shape == (1, 3, C)


def _cfg(**train):
    return config_from_dict({"train": train, "model": {"kind": "mlp", "hidden": [16]}})


def test_ff_config_errors():
    with pytest.raises(ConfigError, match="kind = 'mlp'"):
        build_model_for(config_from_dict({"train": {"method": "forward_forward"}, "model": {"kind": "conv"}}),
                        (2, 8, 8), 10)
    with pytest.raises(ConfigError, match="ff_label_embedding = 'replace'.*only 6"):
        build_model_for(_cfg(method="forward_forward", ff_label_embedding="replace"), (6,), 10)
    with pytest.raises(ConfigError, match=">= 2 classes"):
        build_model_for(_cfg(method="forward_forward"), (6,), 1)
    with pytest.raises(ConfigError, match="ff_inference"):
        get_strategy(_cfg(method="forward_forward", ff_inference="last"))
    with pytest.raises(ConfigError, match="ff_inference"):
        get_strategy(_cfg(method="mono_forward", ff_inference="goodness"))
    with pytest.raises(ConfigError, match="ff_negatives"):
        get_strategy(_cfg(method="forward_forward", ff_negatives="sometimes"))
    with pytest.raises(ConfigError, match="ff_label_scale"):
        get_strategy(_cfg(method="forward_forward", ff_label_scale=0.0))
    with pytest.raises(ConfigError, match="ff_label_embedding"):
        get_strategy(_cfg(method="forward_forward", ff_label_embedding="prepend"))
    net = build_model_for(_cfg(method="forward_forward", ff_label_embedding="replace"), (12,), 10)
    assert isinstance(net, FFNet) and net.in_proj.in_features == 2 and net.label_proj.in_features == 10
    net = build_model_for(_cfg(method="forward_forward"), (12,), 10)
    assert net.in_proj.in_features == 12 and net(torch.rand(3, 2, 12)).out.shape == (1, 2, 10)
    conv = build_model_for(config_from_dict({"train": {"method": "mono_forward"},
                                             "model": {"kind": "conv", "hidden": [4]}}), (2, 8, 8), 3)
    assert isinstance(conv, MonoNet) and conv(torch.rand(2, 1, 2, 8, 8)).out.shape == (1, 1, 3)


def test_wrong_model_type_is_refused():
    x, y = _toy(4)
    opt = torch.optim.SGD(_mono().parameters(), lr=0.1)
    with pytest.raises(TypeError, match="FFNet"):
        ForwardForward().train_step(_mono(), x, y, get_loss("mean_membrane"), opt, 0.0)
    with pytest.raises(TypeError, match="MonoNet"):
        MonoForward().train_step(_ff(), x, y, get_loss("mean_membrane"), opt, 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["quickstart_ff.toml", "quickstart_mono.toml"])
def test_quickstart_forward_learning_reaches_85_percent(config, tmp_path):
    from spike.core.config import load_config
    from spike.train.recipe import train_from_config

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "configs" / config, {"run.progress": False, "run.plots": False})
    m = train_from_config(cfg, out_dir=tmp_path)
    print(json.dumps(m))
    assert m["test_accuracy"] >= 0.85
