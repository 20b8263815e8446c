"""``[train] memory`` modes (spike.train.memory): packed is bit-exact, checkpoint exact to rounding,
mesa8 close (cosine), the forward pass unchanged, bad modes one clear error, and a config run works."""

from __future__ import annotations

import json
import math

import pytest
import torch

from spike.core.config import ConfigError, config_from_dict
from spike.neurons import LI, LIF
from spike.synapses import AvgPool2d, BatchNorm1d, Conv2d, Flatten, Linear, MeanMembrane, Sequential, SharedDropout
from spike.train import memory as M
from spike.train.losses import get_loss
from spike.train.strategy import BPTT, model_output

CHECKPOINT_RTOL = 1e-4  # checkpoint: |g - g_ref| <= 1e-4 * max|g_ref| for every parameter


def _net(kind: str, backend: str):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    if kind == "mlp":
        model = Sequential(Linear(60, 64), LIF(tau=5.0, backend=backend), Linear(64, 64), LIF(tau=5.0, backend=backend),
                           Linear(64, 5), LI(tau=5.0, backend=backend))
        x = (torch.rand(12, 32, 60, generator=g) < 0.2).float()
    else:
        model = Sequential(Conv2d(2, 8, 3, padding=1), LIF(tau=5.0, backend=backend), AvgPool2d(2),
                           Conv2d(8, 8, 3, padding=1), LIF(tau=5.0, backend=backend), AvgPool2d(2), Flatten(),
                           Linear(8 * 4 * 4, 5), LI(tau=5.0, backend=backend))
        x = (torch.rand(10, 4, 2, 16, 16, generator=g) < 0.2).float()
    with torch.no_grad():  # larger weights: a few spikes in every layer
        for p in model.parameters():
            p.mul_(3.0)
    y = torch.randint(0, 5, (x.shape[1],), generator=g)
    return model, x, y


def _grads(model, x, y, mode: str, stats: dict | None = None):
    model.zero_grad(set_to_none=True)
    with M.saved_tensor_hooks(mode, stats):
        out = M.memory_forward(model, x, mode, model_output)
        loss = get_loss("per_step")(out, y)
    loss.backward()
    return out.detach(), [p.grad.detach().clone() for p in model.parameters()]


def _cosine(a, b) -> float:
    fa = torch.cat([t.flatten() for t in a]).double()
    fb = torch.cat([t.flatten() for t in b]).double()
    return float(torch.nn.functional.cosine_similarity(fa, fb, 0))


@pytest.mark.parametrize("backend", ["reference", "numba"])
@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_packed_gradients_are_bit_identical(kind, backend):
    model, x, y = _net(kind, backend)
    out0, g0 = _grads(model, x, y, "none")
    stats: dict = {}
    out, g = _grads(model, x, y, "packed", stats)
    assert torch.equal(out0, out)
    for (name, _), a, b in zip(model.named_parameters(), g0, g):
        assert a.abs().sum() > 0, name  # the test would not see a wrong gradient that is all zeros
        assert torch.equal(a, b), name
    bits = stats["bits"]  # spikes were stored at 1 bit per element
    assert bits[0] >= 1 and bits[2] * 30 < bits[1]


@pytest.mark.parametrize("backend", ["reference", "numba"])
@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_checkpoint_gradients_match_to_rounding(kind, backend):
    model, x, y = _net(kind, backend)
    out0, g0 = _grads(model, x, y, "none")
    for mode in ("checkpoint", "checkpoint:4"):
        out, g = _grads(model, x, y, mode)
        torch.testing.assert_close(out, out0, rtol=1e-5, atol=1e-6)
        for (name, _), a, b in zip(model.named_parameters(), g0, g):
            assert (a - b).abs().max() <= CHECKPOINT_RTOL * a.abs().max(), (mode, name)


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_mesa8_forward_exact_gradient_close(kind):
    model, x, y = _net(kind, "numba")
    out0, g0 = _grads(model, x, y, "none")
    stats: dict = {}
    out, g = _grads(model, x, y, "mesa8", stats)
    assert torch.equal(out0, out)
    assert stats["q8"][0] >= 1 and stats["q8"][2] * 3.9 < stats["q8"][1]  # float tensors were quantised
    assert not all(torch.equal(a, b) for a, b in zip(g0, g))  # ... so the gradient is not exact
    assert _cosine(g0, g) >= 0.999


@pytest.mark.parametrize("quantize", [False, True])
def test_fast_pack_matches_reference(quantize):
    g = torch.Generator().manual_seed(3)
    spikes = (torch.rand(50, 97, generator=g) < 0.3).float()  # 97: a bit count not a multiple of 8
    tensors = [spikes, spikes.double(), torch.nn.functional.avg_pool1d(spikes[None], 2)[0].repeat(1, 2),
               torch.randn(40, 130, generator=g), torch.zeros(64, 64)]
    buf = torch.randn(41, 130, generator=g)
    tensors.append(buf[:40])  # a view into a slightly larger buffer (how the numba LIF saves h)
    for t in tensors:
        fast, ref = M.pack_tensor(t, quantize), M.pack_tensor(t, quantize, use_reference=True)
        assert type(fast) is type(ref)
        if isinstance(fast, torch.Tensor):
            assert fast is t and not quantize
            continue
        assert fast[0] == ref[0] and fast[1] == ref[1]
        a, b = M.unpack_tensor(fast), M.unpack_tensor(ref, use_reference=True)
        assert torch.equal(a, b) and a.dtype == t.dtype
        assert (a.shape, a.stride(), a.storage_offset()) == (t.shape, t.stride(), t.storage_offset())
        assert a.untyped_storage().nbytes() == t.untyped_storage().nbytes()
        if fast[0] in ("bits", "grid"):
            assert torch.equal(a, t)
        else:
            step = (t.max() - t.min()) / 255
            assert (a - t).abs().max() <= 0.5001 * step


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_mesa8_runs_in_time_chunks_with_the_temporal_gradient(kind, monkeypatch):
    """mesa8 calls the model chunk by chunk (ceil(sqrt(T)) steps, or N of 'mesa8:N'), the state entering
    each chunk carrying its gradient: the result is the whole-sequence mesa8's to rounding."""
    model, x, y = _net(kind, "numba")
    out0, g0 = _grads(model, x, y, "none")
    calls: list[int] = []
    real = type(model).forward
    monkeypatch.setattr(type(model), "forward", lambda self, xx, state=None: calls.append(xx.shape[0]) or
                        real(self, xx, state))
    for spec, sizes in (("mesa8", None), ("mesa8:3", [3] * (x.shape[0] // 3) + [x.shape[0] % 3] * (x.shape[0] % 3 > 0))):
        calls.clear()
        out, g = _grads(model, x, y, spec)
        n = math.ceil(math.sqrt(x.shape[0]))
        assert calls == (sizes or [n] * (x.shape[0] // n) + [x.shape[0] % n] * (x.shape[0] % n > 0)), spec
        torch.testing.assert_close(out, out0, rtol=1e-5, atol=1e-6)
        assert _cosine(g0, g) >= 0.999, spec
        assert all(a.abs().sum() > 0 for a in g)  # every layer got a gradient


def test_mesa8_whole_sequence_when_the_model_cannot_be_chunked():
    model = Sequential(Linear(6, 8), LIF(tau=5.0), Linear(8, 3), LI(tau=5.0), MeanMembrane())
    x = torch.rand(9, 2, 6)
    with pytest.warns(RuntimeWarning, match="MeanMembrane.*whole sequence"):
        out = M.memory_forward(model, x, "mesa8", model_output)
    assert out.shape == (2, 3)
    with pytest.raises(M.MemoryModeError, match="'mesa8:3'.*MeanMembrane"):
        M.memory_forward(model, x, "mesa8:3", model_output)


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_packed_in_chunks_matches_to_rounding(kind):
    model, x, y = _net(kind, "numba")
    out0, g0 = _grads(model, x, y, "none")
    out, g = _grads(model, x, y, "packed:4")
    torch.testing.assert_close(out, out0, rtol=1e-5, atol=1e-6)
    for (name, _), a, b in zip(model.named_parameters(), g0, g):
        assert (a - b).abs().max() <= CHECKPOINT_RTOL * a.abs().max(), name


@pytest.mark.parametrize("quantize", [False, True])
def test_restore_is_never_at_the_freed_saved_address(quantize):
    """A freed 36 MB tensor's address is handed out again by the next allocation of its size; the
    restore must not land there (the numba LIF would take it for the saved x itself)."""
    g = torch.Generator().manual_seed(4)
    for _ in range(3):
        t = torch.randn(9 * 2**20, generator=g) if quantize else (torch.rand(9 * 2**20, generator=g) < 0.3).float()
        addr, ref = t.data_ptr(), t.clone()
        rec = M.pack_tensor(t, quantize)
        del t
        out = M.unpack_tensor(rec)
        assert out.data_ptr() != addr
        assert quantize or torch.equal(out, ref)


def test_numba_lif_under_mesa8_writes_dl_dx_over_its_restore(monkeypatch):
    """The LIF's backward allocates no [T, M] buffer for dL/dx under mesa8, also when the address of
    the freed input comes back for the restore (the restore is private; dL/dx goes over it)."""
    from spike.backends import numba_lif

    n_steps, m = 36, 2**18  # [T, M] = 36 MiB: over glibc's largest mmap threshold, so freed and mapped again
    lif = LIF(tau=5.0, backend="numba")
    x_leaf = torch.randn(n_steps, 1, m, generator=torch.Generator().manual_seed(5)).requires_grad_(True)
    with M.saved_tensor_hooks("mesa8"):
        h = x_leaf * 2.0  # the LIF input: saved in 8 bits, then freed
        spikes = lif(h)[0]  # [T, 1, M]
    del h
    big: list = []
    real = numba_lif._empty
    monkeypatch.setattr(numba_lif, "_empty", lambda shape, dtype: big.append(shape) or real(shape, dtype))
    spikes.sum().backward()
    assert (n_steps, m) not in big
    assert x_leaf.grad is not None and x_leaf.grad.abs().sum() > 0


def test_negative_zero_and_off_grid_values_are_not_packed():
    t = torch.zeros(100, 100)
    t[3, 4] = -0.0
    assert M.pack_tensor(t) is t  # -0.0 would come back as +0.0
    u = (torch.rand(100, 100) < 0.5).float()
    u[-1, -1] = 0.3
    assert M.pack_tensor(u) is u  # the last element breaks the grid
    p = torch.nn.Parameter(torch.ones(100, 100))
    assert M.pack_tensor(p) is p
    for bad in (math.nan, math.inf, -math.inf):  # not grid values, and no finite 8-bit range
        v = torch.ones(100, 100)
        v[50, 50] = bad
        for quantize in (False, True):
            assert M.pack_tensor(v, quantize) is v
            assert M.pack_tensor(v, quantize, use_reference=True) is v


@pytest.mark.parametrize("spec", ["pakced", "packed+checkpoint", "checkpoint:0", "none:3", "mesa8:x", "", "NONE"])
def test_unknown_memory_mode_is_one_config_error(spec):
    with pytest.raises(ConfigError, match=r"\[train\] memory = "):
        config_from_dict({"train": {"memory": spec}})
    with pytest.raises(M.MemoryModeError):
        M.parse_memory(spec)


def test_valid_modes_parse():
    assert M.parse_memory("none") == ("none", 0)
    assert M.parse_memory("checkpoint:5") == ("checkpoint", 5)
    assert M.parse_memory("mesa8:3") == ("mesa8", 3)
    assert M.parse_memory("packed:7") == ("packed", 7)
    assert config_from_dict({"train": {"memory": "mesa8"}}).train.memory == "mesa8"


def test_checkpoint_refuses_models_it_would_change():
    model = Sequential(Linear(4, 8), BatchNorm1d(8), LIF(tau=5.0))
    with pytest.raises(M.MemoryModeError, match="BatchNorm1d"):
        M.chunked_forward(model, torch.rand(6, 2, 4))
    with pytest.raises(M.MemoryModeError, match="takes no state"):
        M.chunked_forward(torch.nn.Linear(4, 4), torch.rand(6, 2, 4))
    with pytest.raises(M.MemoryModeError, match="MeanMembrane"):
        M.chunked_forward(Sequential(Linear(4, 3), LI(tau=5.0), MeanMembrane()), torch.rand(6, 2, 4))
    with pytest.raises(M.MemoryModeError, match="SharedDropout"):
        M.chunked_forward(Sequential(Linear(4, 3), SharedDropout(0.5), LI(tau=5.0)), torch.rand(6, 2, 4))
    model = Sequential(Linear(4, 3), SharedDropout(0.5), LI(tau=5.0)).eval()  # eval: dropout is off, fine
    assert M.chunked_forward(model, torch.rand(6, 2, 4), 4).shape == (6, 2, 3)


def test_bptt_strategy_applies_the_mode():
    model, x, y = _net("mlp", "numba")
    loss_fn = get_loss("per_step")
    losses = {}
    for mode in ("none", "packed"):
        m, _, _ = _net("mlp", "numba")
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        BPTT(memory=mode).train_step(m, x, y, loss_fn, opt, 0.0)
        losses[mode] = [p.detach().clone() for p in m.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(losses["none"], losses["packed"]))
    with pytest.raises(M.MemoryModeError):
        BPTT(memory="bogus")


def test_chunked_modes_refuse_a_regularizer_and_mesa8_says_it_runs_whole():
    def reg(records, out, y):
        return out.sum() * 0.0

    for spec in ("checkpoint", "checkpoint:4", "mesa8:4", "packed:4"):
        with pytest.raises(M.MemoryModeError, match="regularizer"):
            BPTT(memory=spec, regularizer=reg)
    with pytest.warns(RuntimeWarning, match="whole sequence"):
        BPTT(memory="mesa8", regularizer=reg)
    BPTT(memory="packed", regularizer=reg)  # packed never chunks: nothing to say


def test_memory_mode_only_for_bptt():
    from spike.train.recipe import get_strategy

    cfg = config_from_dict({"train": {"method": "sltt", "memory": "packed"}})
    with pytest.raises(ConfigError, match="memory"):
        get_strategy(cfg)
    assert get_strategy(config_from_dict({"train": {"memory": "checkpoint:2"}})).memory == "checkpoint:2"
    for spec in ("checkpoint", "mesa8:5", "packed:5"):
        with pytest.raises(ConfigError, match="rcs_weight"):
            get_strategy(config_from_dict({"train": {"memory": spec, "rcs_weight": 0.1}}))
    assert get_strategy(config_from_dict({"train": {"memory": "packed", "rcs_weight": 0.1}})).memory == "packed"


def test_training_from_config_with_packed_memory(tmp_path, capsys, register_tiny, monkeypatch):
    from spike.cli.main import main

    register_tiny(side=4, n_train=16, n_test=8)
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "packed.toml"
    cfg.write_text('[run]\nname = "packed"\nprogress = false\nplots = false\n'
                   '[data]\nname = "tiny"\nn_time_bins = 4\nbatch_size = 8\n'
                   '[model]\nhidden = [16]\ntau = 2.0\n'
                   '[train]\nepochs = 1\nlr = 0.01\nmemory = "packed"\n')
    assert main(["train", str(cfg), "--out", str(tmp_path / "run")]) == 0, capsys.readouterr().err
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["epochs"] == 1 and 0.0 <= m["test_accuracy"] <= 1.0
