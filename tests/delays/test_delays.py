"""Learnable delays (DCLS): oracle vs the ``dcls`` package, exact integer shifts, gradients vs finite
differences, causality, chunked == whole, memory, the sigma schedule, optimiser groups, the SHD recipe."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from spike.synapses import Sequential
from spike.synapses.delays import (DelayedLinear, DelayState, TimePad, check_max_delay, delay_kernel,
                                   delayed_linear, split_delay_parameters)
from spike.train.callbacks import ClampDelayPositions, SigmaSchedule

ROOT = Path(__file__).resolve().parents[2]


def _rand(seed: int, *shape, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _naive(x, kernel):
    """Reference: y_t = sum_d K[:, :, d] @ x_{t-d} with explicit loops (kernel indexed by delay)."""
    t = x.shape[0]
    y = torch.zeros(t, x.shape[1], kernel.shape[0], dtype=x.dtype)
    for s in range(t):
        for d in range(kernel.shape[-1]):
            if s - d >= 0:
                y[s] += x[s - d] @ kernel[:, :, d].t()
    return y


# --------------------------------------------------------------------------------------- oracle
@pytest.mark.peers
@pytest.mark.parametrize("sigma", [0.5, 1.7, 4.0])
def test_matches_dcls_package_forward_and_gradients(sigma):
    dcls = pytest.importorskip("DCLS.construct.modules")
    t, b, c_in, c_out, d = 30, 3, 7, 5, 8  # K = 9 (odd, as Dcls1d's centred positions need)
    k = d + 1
    w = (_rand(0, c_out, c_in) - 0.5).requires_grad_()
    p = (_rand(1, c_out, c_in) * d).requires_grad_()
    x = _rand(2, t, b, c_in)
    y, _ = delayed_linear(x, w, p, sigma, d)

    m = dcls.Dcls1d(c_in, c_out, kernel_count=1, dilated_kernel_size=k, bias=False, version="gauss")
    with torch.no_grad():
        m.weight.copy_(w.detach()[..., None])
        m.P.copy_(((k - 1) / 2 - p.detach())[None, ..., None])  # centred, reversed
        m.SIG.fill_(sigma - 0.27)  # their width is |SIG| + 0.27
    # SNN-delays padding: K-1 left (causal), (K-1)//2 right (extra steps); first T outputs are ours
    y_ref = m(F.pad(x.permute(1, 2, 0), (k - 1, (k - 1) // 2))).permute(2, 0, 1)
    assert y_ref.shape[0] == t + (k - 1) // 2
    torch.testing.assert_close(y, y_ref[:t], atol=1e-5, rtol=0)

    g = _rand(3, t, b, c_out)
    gw, gp = torch.autograd.grad((y * g).sum(), (w, p))
    gw_ref, gp_ref = torch.autograd.grad((y_ref[:t] * g).sum(), (m.weight, m.P))
    torch.testing.assert_close(gw, gw_ref[..., 0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gp, -gp_ref[0, ..., 0], atol=1e-5, rtol=1e-4)  # P = c - p


def test_matches_naive_loop_reference():
    w, p = _rand(0, 4, 3) - 0.5, _rand(1, 4, 3) * 6
    x = _rand(2, 12, 2, 3)
    y, _ = delayed_linear(x, w, p, 1.3, 6)
    torch.testing.assert_close(y, _naive(x, delay_kernel(w, p, 1.3, 6)), atol=1e-6, rtol=0)


def test_kernel_is_normalised_gaussian():
    w, p = torch.ones(2, 2), torch.tensor([[3.0, 5.5], [0.0, 10.0]])
    kern = delay_kernel(w, p, 2.0, 10)  # [2, 2, 11]
    torch.testing.assert_close(kern.sum(-1), torch.ones(2, 2), atol=1e-6, rtol=0)
    assert int(kern[0, 0].argmax()) == 3 and int(kern[1, 1].argmax()) == 10
    d = torch.arange(11.0)
    ref = torch.exp(-0.5 * ((d - 5.5) / 2.0) ** 2)
    torch.testing.assert_close(kern[0, 1], ref / ref.sum(), atol=1e-7, rtol=0)


# ------------------------------------------------------------------------------ exact integer delays
@pytest.mark.parametrize("sigma", [0.0, 0.05])
def test_integer_positions_shift_exactly(sigma):
    d = 7
    delays = torch.tensor([[0, 3], [7, 5]])
    w = torch.tensor([[1.0, 1.0], [1.0, -2.0]])
    x = _rand(0, 20, 3, 2)
    y, _ = delayed_linear(x, w, delays.float(), sigma, d)
    shift = lambda s, k: torch.cat([torch.zeros(k, *s.shape[1:]), s[: s.shape[0] - k]])  # noqa: E731
    assert torch.equal(y[..., 0], shift(x[..., 0], 0) + shift(x[..., 1], 3))
    assert torch.equal(y[..., 1], shift(x[..., 0], 7) - 2 * shift(x[..., 1], 5))


def test_eval_mode_rounds_positions_not_truncates():
    layer = DelayedLinear(1, 3, max_delay=6, sigma=2.0)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.pos.copy_(torch.tensor([[2.6], [2.4], [5.9]]))
    x = torch.zeros(10, 1, 1)
    x[0] = 1.0  # an impulse at t = 0
    layer.eval()
    y, _, _ = layer(x)
    assert y[:, 0].argmax(0).tolist() == [3, 2, 6]  # rounded, not 2, 2, 5
    assert torch.equal(y.sum(0), torch.ones(1, 3))  # one-hot: the impulse arrives whole
    assert layer.delays().flatten().tolist() == [3, 2, 6]
    layer.train()
    y_train, _, _ = layer(x)
    assert not torch.equal(y_train, y)  # training mode blurs with sigma = 2


# ------------------------------------------------------------------------------------- gradients
def test_position_gradients_nonzero_and_match_finite_differences():
    x = _rand(0, 14, 2, 4, dtype=torch.float64)
    w = (_rand(1, 3, 4, dtype=torch.float64) - 0.5).requires_grad_()
    p = (_rand(2, 3, 4, dtype=torch.float64) * 6).requires_grad_()
    assert torch.autograd.gradcheck(lambda w, p: delayed_linear(x, w, p, 1.5, 6)[0], (w, p), fast_mode=True)
    target = _rand(3, 14, 2, 3, dtype=torch.float64)

    def loss(pp):
        return ((delayed_linear(x, w.detach(), pp, 1.5, 6)[0] - target) ** 2).sum()

    (g,) = torch.autograd.grad(loss(p), p)
    assert bool((g.abs() > 1e-8).all())
    h = 1e-6
    for idx in [(0, 0), (1, 2), (2, 3)]:
        e = torch.zeros_like(p)
        e[idx] = h
        fd = (loss(p.detach() + e) - loss(p.detach() - e)) / (2 * h)
        assert float(g[idx]) == pytest.approx(float(fd), rel=1e-6, abs=1e-9)


def test_eval_mode_gives_weight_but_no_position_gradient():
    layer = DelayedLinear(3, 2, max_delay=4).eval()
    y, _, _ = layer(_rand(0, 8, 2, 3))
    y.sum().backward()
    assert layer.weight.grad is not None and bool(layer.weight.grad.abs().sum() > 0)
    assert layer.pos.grad is None


# ------------------------------------------------------------------------ causality and streaming
def test_causal():
    layer = DelayedLinear(3, 4, max_delay=5)
    x = _rand(0, 15, 2, 3)
    x2 = x.clone()
    x2[9:] += 1.0
    y, _, _ = layer(x)
    y2, _, _ = layer(x2)
    assert torch.equal(y[:9], y2[:9])
    assert not torch.equal(y[9:], y2[9:])


@pytest.mark.parametrize("train", [True, False])
def test_chunks_and_single_steps_equal_whole_sequence(train):
    layer = DelayedLinear(3, 4, max_delay=6, bias=True).train(train)
    x = _rand(0, 17, 2, 3)
    y_whole, s_whole, _ = layer(x)
    ys, state = [], None
    for chunk in (x[:2], x[2:3], x[3:11], x[11:]):  # chunks shorter and longer than max_delay
        y, state, _ = layer(chunk, state)
        ys.append(y)
    torch.testing.assert_close(torch.cat(ys), y_whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(state.buf, s_whole.buf)
    steps, state = [], None
    for t in range(x.shape[0]):
        y, state, _ = layer(x[t:t + 1], state)
        steps.append(y)
    torch.testing.assert_close(torch.cat(steps), y_whole, atol=1e-6, rtol=0)


def test_chunked_gradients_equal_whole():
    layer = DelayedLinear(3, 2, max_delay=5)
    x = _rand(0, 12, 2, 3)
    layer(x)[0].square().sum().backward()
    g_whole = layer.pos.grad.clone()
    layer.zero_grad()
    y1, s, _ = layer(x[:7])
    y2, _, _ = layer(x[7:], s)
    torch.cat([y1, y2]).square().sum().backward()
    torch.testing.assert_close(layer.pos.grad, g_whole, atol=1e-5, rtol=1e-5)


def test_sequential_threads_delay_state():
    from spike.neurons import LIF

    net = Sequential(DelayedLinear(3, 4, max_delay=4), LIF(tau=5.0, backend="reference"),
                     DelayedLinear(4, 2, max_delay=3))
    x = _rand(0, 10, 2, 3)
    whole = net(x)
    a = net(x[:6])
    b = net(x[6:], a.state)
    torch.testing.assert_close(torch.cat([a.out, b.out]), whole.out)
    assert isinstance(whole.state[0], DelayState) and whole.state[0].buf.shape == (4, 2, 3)


def test_timepad_appends_silence():
    x = _rand(0, 5, 2, 3)
    y = TimePad(3)(x)
    assert y.shape == (8, 2, 3) and torch.equal(y[:5], x) and not bool(y[5:].any())
    assert TimePad(0)(x) is x


# --------------------------------------------------------------------------------------- memory
class _BigAllocations(TorchDispatchMode):
    """Counts distinct new storages of op outputs with at least ``n`` elements."""

    def __init__(self, n):
        super().__init__()
        self.n, self.ptrs, self.ops = n, set(), []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in torch.utils._pytree.tree_leaves((args, kwargs))
                  if isinstance(a, torch.Tensor)}  # views and in-place results are not new memory
        for o in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(o, torch.Tensor) and o.numel() >= self.n and o.untyped_storage().data_ptr() not in inputs:
                self.ptrs.add(o.untyped_storage().data_ptr())
                self.ops.append(str(func))
        return out


def test_one_kernel_per_call_and_no_kernel_sized_saved_tensors(monkeypatch):
    import spike.synapses.delays as D

    c_in, c_out, d = 64, 48, 25
    k_numel = c_out * c_in * (d + 1)
    layer = DelayedLinear(c_in, c_out, max_delay=d)
    x = _rand(0, 10, 2, c_in)  # activations are far smaller than the kernel
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with _BigAllocations(k_numel) as mode, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y, _, _ = layer(x)
    assert len(mode.ptrs) == 1, "more than one [C_out, C_in, K] tensor built in forward"
    assert sum(n >= k_numel for n in saved) <= 1  # only the kernel (saved by conv1d for backward)
    monkeypatch.setattr(D, "_BACKWARD_CHUNK", k_numel // 8)  # as for big layers: several row blocks
    with _BigAllocations(k_numel // 4) as mode:
        y.sum().backward()
    assert len(mode.ptrs) == 1, mode.ops  # the kernel's gradient; the Gaussian is recomputed in blocks


def test_blocked_backward_equals_single_block(monkeypatch):
    import spike.synapses.delays as D

    w = (_rand(0, 9, 5) - 0.5).requires_grad_()
    p = (_rand(1, 9, 5) * 7).requires_grad_()
    x = _rand(2, 11, 2, 5)
    g1 = torch.autograd.grad(delayed_linear(x, w, p, 1.1, 7)[0].square().sum(), (w, p))
    monkeypatch.setattr(D, "_BACKWARD_CHUNK", 30)  # blocks of 1 row (and a ragged last block)
    g2 = torch.autograd.grad(delayed_linear(x, w, p, 1.1, 7)[0].square().sum(), (w, p))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


# ------------------------------------------------------------------------------------ bad input
def test_bad_arguments_raise_clear_errors():
    for bad in (-1, 10**6, 2.5, True):
        with pytest.raises(ValueError, match="max_delay"):
            check_max_delay(bad)
        with pytest.raises(ValueError, match="max_delay"):
            DelayedLinear(2, 2, max_delay=bad)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma"):
            DelayedLinear(2, 2, max_delay=3, sigma=bad)
        with pytest.raises(ValueError, match="sigma"):
            DelayedLinear(2, 2, max_delay=3).set_sigma(bad)
        with pytest.raises(ValueError, match="sigma"):
            delay_kernel(torch.ones(1, 1), torch.ones(1, 1), bad, 3)
    layer = DelayedLinear(3, 2, max_delay=4)
    with pytest.raises(ValueError, match=r"\[T, B, 3\]"):
        layer(torch.rand(5, 2, 4))
    with pytest.raises(ValueError, match="delay state"):
        layer(torch.rand(5, 2, 3), DelayState(torch.zeros(3, 2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        layer(torch.full((5, 2, 3), float("nan")))
    with pytest.raises(ValueError, match="decay_epochs"):
        SigmaSchedule(decay_epochs=-1)
    with pytest.raises(ValueError, match="sigma"):
        SigmaSchedule(decay_epochs=3, sigma_floor=-1.0)


def test_max_delay_zero_is_plain_linear():
    layer = DelayedLinear(3, 2, max_delay=0, bias=True)
    x = _rand(0, 6, 2, 3)
    y, state, _ = layer(x)
    torch.testing.assert_close(y, F.linear(x, layer.weight, layer.bias), atol=1e-6, rtol=0)
    assert state.buf.shape == (0, 2, 3)


# ------------------------------------------------------------------------------ schedule, clamping
def test_sigma_schedule_follows_paper_decay():
    s = SigmaSchedule.for_training(epochs=150)  # floor after a quarter: epoch 37
    assert s.decay_epochs == 37
    sig = [s.sigma_at(e, 25) for e in range(150)]
    assert sig[0] == pytest.approx(12.5) and sig[37] == pytest.approx(0.5) and sig[-1] == pytest.approx(0.5)
    assert all(a > b for a, b in zip(sig[:37], sig[1:38]))  # strictly decreasing until the floor
    ratios = [b / a for a, b in zip(sig[:37], sig[1:38])]
    assert max(ratios) - min(ratios) < 1e-9  # multiplicative per-epoch decay
    assert SigmaSchedule(decay_epochs=10, sigma_init=3.0).sigma_at(0, 25) == 3.0


def test_callbacks_set_sigma_and_clamp_positions():
    class T:  # the trainer as callbacks see it
        model = Sequential(DelayedLinear(2, 2, max_delay=10), DelayedLinear(2, 2, max_delay=4))

    SigmaSchedule(decay_epochs=4).on_epoch_start(T, 2)
    assert float(T.model[0].sigma) == pytest.approx(5.0 * (0.5 / 5.0) ** 0.5)
    assert float(T.model[1].sigma) == pytest.approx(2.0 * (0.5 / 2.0) ** 0.5)
    with torch.no_grad():
        T.model[0].pos.copy_(torch.tensor([[-3.0, 4.0], [12.0, 10.0]]))
    ClampDelayPositions().on_batch_end(T, 0, None)
    assert T.model[0].pos.tolist() == [[0.0, 4.0], [10.0, 10.0]]


def test_sigma_is_saved_in_state_dict():
    a = DelayedLinear(2, 2, max_delay=6)
    a.set_sigma(0.7)
    b = DelayedLinear(2, 2, max_delay=6)
    b.load_state_dict(a.state_dict())
    assert float(b.sigma) == pytest.approx(0.7)


# ----------------------------------------------------------------------- config, groups, recipe
def _shd_cfg(overrides=None):
    from spike.core.config import load_config

    return load_config(ROOT / "configs" / "shd_delays.toml", overrides)


def test_optimizer_has_weight_and_position_groups():
    from spike.models import build_model
    from spike.train.recipe import build_optimizer, build_scheduler

    cfg = _shd_cfg({"model.hidden": [8], "train.epochs": 4})
    model = build_model(cfg.model, (140,), 20)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Flatten", "TimePad", "DelayedLinear", "BatchNorm1d", "LIF", "SharedDropout", "TimePad",
                     "DelayedLinear", "LI"]
    opt = build_optimizer(cfg, model)
    names = [g["name"] for g in opt.param_groups]
    assert names == ["weights", "positions"]
    assert opt.param_groups[1]["lr"] == 0.1 and opt.param_groups[1]["weight_decay"] == 0.0
    assert opt.param_groups[0]["weight_decay"] == 1e-5
    _, positions = split_delay_parameters(model)
    assert {id(p) for p in opt.param_groups[1]["params"]} == {id(p) for p in positions}
    sched, interval = build_scheduler(cfg, opt, steps_per_epoch=10)
    assert interval == "batch"
    lrs = []
    for _ in range(40):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    w_lr, p_lr = zip(*lrs)
    assert w_lr[0] == pytest.approx(5e-3 / 25) and max(w_lr) == pytest.approx(5e-3, rel=1e-2)  # one-cycle
    assert p_lr[:10] == (0.1,) * 10 and p_lr[10] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 4)))
    # one group when lr_positions < 0
    assert len(build_optimizer(_shd_cfg({"train.lr_positions": -1.0}), model).param_groups) == 1


def test_bad_delay_config_is_a_config_error():
    from spike.core.config import ConfigError
    from spike.models import build_model

    with pytest.raises(ConfigError, match="max_delay"):
        build_model(_shd_cfg({"model.max_delay": -3}).model, (140,), 20)


def test_shd_delays_recipe_runs_end_to_end_on_fixture(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "datasets"))
    try:
        import fixtures
    finally:
        sys.path.pop(0)
    fixtures.write_shd(tmp_path / "data", n_train=4, n_test=2)
    from spike.cli.main import main

    out = tmp_path / "run"
    args = ["train", str(ROOT / "configs" / "shd_delays.toml"), "--out", str(out), "--set",
            f'data.root="{tmp_path / "data"}"', "train.epochs=2", "data.batch_size=2", "model.hidden=[32, 32]",
            "data.n_time_bins=40", "run.progress=false", "run.plots=false",
            "data.val_fraction=0.0"]  # the fixture has a single sample of some classes: no per-class split
    assert main(args) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["epochs"] == 2 and 0.0 <= metrics["test_accuracy"] <= 1.0
    ckpt = torch.load(out / "last.pt", weights_only=False)
    sigmas = [v for k, v in ckpt["model"].items() if k.endswith("sigma")]
    assert len(sigmas) == 3
    # epochs=2, decay over a quarter -> floor from epoch 0: the last epoch ran at sigma = 0.5
    assert all(float(s) == pytest.approx(0.5) for s in sigmas)
    pos = [v for k, v in ckpt["model"].items() if k.endswith(".pos")]
    assert all(bool((p >= 0).all() and (p <= 25).all()) for p in pos)
    # resume from the checkpoint and evaluate it through the CLI
    assert main(["eval", str(out / "last.pt")]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["test_accuracy"] == pytest.approx(metrics["test_accuracy"])


def test_sltt_trains_delays_without_time_padding_and_refuses_padding():
    sltt = pytest.importorskip("spike.train.sltt")
    from spike.core.config import ModelConfig
    from spike.models import build_model
    from spike.train import get_loss

    x, y = _rand(0, 6, 4, 10), torch.tensor([0, 1, 2, 0])
    net = build_model(ModelConfig(kind="delay_mlp", hidden=(8,), max_delay=3, delay_pad=0), (10,), 3)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    res = sltt.SLTT().train_step(net, x, y, get_loss("per_step"), opt, 0.0)
    assert math.isfinite(res.loss)
    assert all(bool(m.pos.grad.abs().sum() > 0) for m in net if isinstance(m, DelayedLinear))
    padded = build_model(ModelConfig(kind="delay_mlp", hidden=(8,), max_delay=3, delay_pad=2), (10,), 3)
    with pytest.raises(sltt.SLTTError, match="time axis"):
        sltt.SLTT().train_step(padded, x, y, get_loss("per_step"), opt, 0.0)
