"""NoProp-DT: block locality, the cosine schedule, per-block denoising on a toy task, config errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from spike.core.config import ConfigError, ModelConfig, config_from_dict, validate_config
from spike.train.losses import get_loss
from spike.train.noprop import (COSINE_S, NoProp, NoPropNet, block_loss, cosine_alpha_bar, head_loss,
                                noise_schedule, noprop_backward)
from spike.train.recipe import build_model_for, get_strategy

C, T, D = 4, 8, 24
MODEL = ModelConfig(kind="mlp", hidden=(32,), tau=5.0, dt=1.0, dropout=0.0)


def _toy(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class c fires features [6c, 6c+6) at rate 0.6, the rest at 0.05: ``x [T, n, D]``, ``y [n]``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % C
    rate = torch.full((n, D), 0.05)
    for i in range(n):
        rate[i, 6 * y[i]:6 * y[i] + 6] = 0.6
    return (torch.rand(T, n, D, generator=g) < rate).float(), y


def _net(steps: int = 3, **kw) -> NoPropNet:
    torch.manual_seed(0)
    return NoProp(steps=steps, **kw).build_model(MODEL, (D,), C)


def test_cosine_schedule_matches_the_formula():
    for steps in (1, 3, 10):
        ab = cosine_alpha_bar(steps)
        assert ab.shape == (steps + 1,)
        f = lambda tau: math.cos(math.pi / 2 * (tau + COSINE_S) / (1 + COSINE_S)) ** 2  # noqa: E731
        for t in range(steps + 1):
            assert abs(float(ab[t]) - f((steps + 1 - t) / (steps + 1)) / f(0.0)) < 1e-12
        assert float(ab[0]) < 1e-20 and 0.0 < float(ab[-1]) < 1.0  # z_0 is noise, z_T noisy but close to u_y
        s = noise_schedule(steps)
        assert bool((s.snr[1:] > s.snr[:-1]).all())  # SNR strictly increasing along the chain
        assert bool((s.weight > 0).all()) and torch.allclose(s.weight, s.snr[1:] - s.snr[:-1])
        assert torch.allclose(s.snr, ab / (1 - ab))


def test_inference_step_is_the_gaussian_posterior():
    """With a perfect denoiser (u_hat = u_y), z_{t-1} ~ q(z_{t-1}|y) is mapped to z_t ~ q(z_t|y):
    a_t + b_t sqrt(abar_{t-1}) = sqrt(abar_t) and b_t^2 (1 - abar_{t-1}) + c_t = 1 - abar_t."""
    s = noise_schedule(7)
    ab = s.alpha_bar
    assert torch.allclose(s.a + s.b * ab[:-1].sqrt(), ab[1:].sqrt(), atol=1e-12)
    assert torch.allclose(s.b ** 2 * (1 - ab[:-1]) + s.c, 1 - ab[1:], atol=1e-12)
    assert bool((s.c > 0).all()) and bool((s.a > 0).all())
    # empirically, too
    torch.manual_seed(0)
    u = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    t = 3
    z_prev = ab[t - 1].sqrt() * u + (1 - ab[t - 1]).sqrt() * torch.randn(200_000, 3, dtype=torch.float64)
    z = s.a[t - 1] * u + s.b[t - 1] * z_prev + s.c[t - 1].sqrt() * torch.randn_like(z_prev)
    assert torch.allclose(z.mean(0), ab[t].sqrt() * u, atol=0.01)
    assert torch.allclose(z.var(0), (1 - ab[t]).expand(3), atol=0.01)


def test_coefficients_are_the_papers_and_the_conditional_of_the_markov_chain():
    """Pins ``a_t, b_t, c_t`` to the paper's DT formulas (arXiv:2503.24322v1, between eqs. 6 and 7, in its
    notation ``abar_t = prod_{s=t}^T alpha_s`` so that ``alpha_{t-1} = abar_{t-1} / abar_t``) and, by an
    independent route, to the Gaussian conditional ``q(z_t | z_{t-1}, y)`` of the chain
    ``z_T ~ N(sqrt(abar_T) u, (1 - abar_T) I)``, ``z_{t-1} | z_t ~ N(sqrt(alpha_{t-1}) z_t, (1 - alpha_{t-1}) I)``
    (one dimension, conditioning the joint covariance). Also pins the loss weight ``SNR(t) - SNR(t-1)``
    with ``SNR = abar / (1 - abar)``."""
    import numpy as np

    for steps in (2, 6, 10):
        s = noise_schedule(steps)
        ab = [float(v) for v in cosine_alpha_bar(steps)]
        # the joint law of (z_0 .. z_T) given u (scalar u = 1): build it backwards from z_T
        mean = np.zeros(steps + 1)
        cov = np.zeros((steps + 1, steps + 1))
        mean[steps], cov[steps, steps] = math.sqrt(ab[steps]), 1.0 - ab[steps]
        for t in range(steps, 0, -1):  # z_{t-1} = sqrt(alpha_{t-1}) z_t + sqrt(1 - alpha_{t-1}) e
            al = ab[t - 1] / ab[t]
            mean[t - 1] = math.sqrt(al) * mean[t]
            cov[t - 1, :] = math.sqrt(al) * cov[t, :]
            cov[:, t - 1] = cov[t - 1, :]
            cov[t - 1, t - 1] = al * cov[t, t] + (1.0 - al)
        for t in range(1, steps + 1):
            al = ab[t - 1] / ab[t]
            # the paper's formulas
            a = math.sqrt(ab[t]) * (1 - al) / (1 - ab[t - 1])
            b = math.sqrt(al) * (1 - ab[t]) / (1 - ab[t - 1])
            c = (1 - ab[t]) * (1 - al) / (1 - ab[t - 1])
            assert abs(float(s.a[t - 1]) - a) < 1e-12 and abs(float(s.b[t - 1]) - b) < 1e-12
            assert abs(float(s.c[t - 1]) - c) < 1e-12
            # Gaussian conditioning of z_t on z_{t-1} (Markov: the rest of the chain adds nothing)
            assert abs(cov[t - 1, t - 1] - (1 - ab[t - 1])) < 1e-12  # marginal q(z_{t-1}|y) is consistent
            gain = cov[t, t - 1] / cov[t - 1, t - 1]
            assert abs(float(s.b[t - 1]) - gain) < 1e-12
            assert abs(float(s.a[t - 1]) - (mean[t] - gain * mean[t - 1])) < 1e-12  # the u coefficient
            assert abs(float(s.c[t - 1]) - (cov[t, t] - gain * cov[t, t - 1])) < 1e-12
            snr = lambda v: v / (1 - v)  # noqa: E731
            assert abs(float(s.weight[t - 1]) - (snr(ab[t]) - snr(ab[t - 1]))) < 1e-9 * snr(ab[t])


def test_no_gradient_crosses_blocks():
    """Block k's loss has a gradient in block k's parameters (and the shared embedding) only."""
    net = _net(steps=3)
    x, y = _toy(16)
    flat = net.flat_input(x)
    for k in range(1, 4):
        net.zero_grad(set_to_none=True)
        block_loss(net, k, flat, y).backward()
        for j, block in enumerate(net.blocks, start=1):
            grads = [p.grad for p in block.parameters()]
            if j == k:
                assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
            else:
                assert all(g is None or float(g.abs().sum()) == 0.0 for g in grads), (k, j)
        assert net.classifier.weight.grad is None
        assert net.embed.grad is not None
    net.zero_grad(set_to_none=True)
    ce, kl = head_loss(net, y)
    (ce + kl).backward()
    assert all(p.grad is None for p in net.blocks.parameters())


def test_block_gradients_do_not_depend_on_other_blocks():
    """Changing every other block's weights leaves block 1's accumulated gradient bit-identical."""
    import copy

    net = _net(steps=3)
    x, y = _toy(16)
    torch.manual_seed(1)
    noprop_backward(net, x, y)
    g1 = [p.grad.clone() for p in net.blocks[0].parameters()]
    other = copy.deepcopy(net)
    other.zero_grad(set_to_none=True)
    with torch.no_grad():
        for b in list(other.blocks)[1:]:
            for p in b.parameters():
                p.mul_(-3.0)
    torch.manual_seed(1)
    noprop_backward(other, x, y)
    for a, b in zip(g1, [p.grad for p in other.blocks[0].parameters()]):
        assert torch.equal(a, b)


def test_every_block_learns_to_denoise_a_separable_task():
    net = _net(steps=3)
    strategy = NoProp(steps=3)
    x, y = _toy(64, seed=1)
    flat = net.flat_input(x)
    noise = torch.randn(64, C, generator=torch.Generator().manual_seed(9))

    def per_block():
        with torch.no_grad():
            return [float(block_loss(net, t, flat, y, noise)) / float(net.schedule.weight[t - 1])
                    for t in range(1, 4)]

    before = per_block()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    torch.manual_seed(2)
    net.train()
    for i in range(60):
        sl = slice((i % 4) * 16, (i % 4 + 1) * 16)
        res = strategy.train_step(net, x[:, sl], y[sl], get_loss("mean_membrane"), opt, grad_clip=0.0)
        assert math.isfinite(res.loss) and res.out.shape == (1, 16, C)
    after = per_block()
    print("denoising MSE per block before/after:", before, after)
    assert all(a < 0.5 * b for a, b in zip(after, before)), (before, after)
    net.eval()
    xt, yt = _toy(64, seed=3)
    with torch.no_grad():
        out = net(xt).out  # inference = "mean"
        sampled = net(xt, inference="sample").out
        assert torch.equal(sampled, net(xt, inference="sample").out)  # seeded noise: deterministic evaluation
    acc = float((out[0].argmax(-1) == yt).float().mean())
    acc_s = float((sampled[0].argmax(-1) == yt).float().mean())
    print("chain accuracy mean / sample:", acc, acc_s)
    assert acc > 0.9, acc
    assert acc_s > 0.4, acc_s  # above chance (0.25); with T = 3 the sampled z_T is very noisy


def test_forward_shapes_and_records():
    net = _net(steps=2)
    net.eval()
    x, _ = _toy(3)
    res = net(x, record=True)
    assert res.out.shape == (1, 3, C)
    assert set(res.records) == {"block0", "block1"} and res.records["block0"][0].shape == (T, 3, 32)
    with pytest.raises(ValueError, match="features per step"):
        net(torch.rand(T, 3, D + 1))


def _cfg(**train):
    return config_from_dict({"train": {"method": "noprop", **train}, "model": {"kind": "mlp", "hidden": [16]}})


def test_config_and_errors():
    with pytest.raises(ConfigError, match=r"\[train\] noprop_steps = 0: must be an integer >= 1"):
        _cfg(noprop_steps=0)
    with pytest.raises(ConfigError, match="noprop_eta"):
        _cfg(noprop_eta=0.0)
    with pytest.raises(ConfigError, match="noprop_embed_dim"):
        _cfg(noprop_embed_dim=-1)
    with pytest.raises(ConfigError, match="noprop_steps"):
        cosine_alpha_bar(0)
    with pytest.raises(ConfigError, match="noprop_inference"):
        _cfg(noprop_inference="greedy")
    with pytest.raises(ConfigError, match="noprop_inference"):
        NoProp(inference="greedy")
    with pytest.raises(ConfigError, match="noprop_steps"):
        NoProp(steps=0)
    with pytest.raises(ConfigError, match="kind = 'mlp'"):
        build_model_for(config_from_dict({"train": {"method": "noprop"}, "model": {"kind": "conv"}}), (2, 8, 8), 10)
    with pytest.raises(ConfigError, match=">= 2 classes"):
        build_model_for(_cfg(), (6,), 1)
    s = get_strategy(_cfg(noprop_steps=4, noprop_eta=0.5, noprop_embed_dim=7))
    assert (s.steps, s.eta, s.embed_dim, s.name) == (4, 0.5, 7, "noprop")
    net = build_model_for(_cfg(noprop_steps=4, noprop_embed_dim=7), (12,), 10)
    assert isinstance(net, NoPropNet) and len(net.blocks) == 4 and net.embed.shape == (10, 7)
    assert net(torch.rand(3, 2, 12)).out.shape == (1, 2, 10)
    validate_config(_cfg())
    x, y = _toy(4)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="NoPropNet"):
        NoProp().train_step(torch.nn.Linear(2, 2), x, y, get_loss("mean_membrane"), opt, 0.0)


@pytest.mark.slow
def test_quickstart_noprop_reaches_85_percent(tmp_path):
    from spike.core.config import load_config
    from spike.train.recipe import train_from_config

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "configs" / "quickstart_noprop.toml", {"run.progress": False, "run.plots": False})
    m = train_from_config(cfg, out_dir=tmp_path)
    print(json.dumps(m))
    assert m["test_accuracy"] >= 0.85
