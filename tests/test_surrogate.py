"""Surrogate gradients: exact step forward, surrogate backward, primitive/derivative pairs, peers."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from spike.surrogate import ATan, FastSigmoid, Sigmoid, Surrogate, Triangle, get_surrogate, spike_fn

ALL = [ATan(), ATan(alpha=5.0), Sigmoid(), Sigmoid(alpha=10.0), FastSigmoid(), FastSigmoid(slope=2.0),
       Triangle(), Triangle(width=0.3)]
IDS = [repr(s) for s in ALL]


def _peer(module: str):
    """Import a peer library or skip (SpikingJelly/Norse may raise non-ImportError on import)."""
    try:
        return __import__(module, fromlist=["_"])
    except Exception as e:  # noqa: BLE001 - any import failure means "peer unavailable"
        pytest.skip(f"{module} unavailable: {type(e).__name__}: {e}")


# --- forward ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("sg", ALL, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_is_exact_heaviside_including_zero(sg, dtype):
    x = torch.tensor([-1e30, -3.0, -1e-30, -0.0, 0.0, 1e-30, 0.5, 1e30], dtype=dtype)
    out = spike_fn(x, sg)
    assert out.dtype == dtype
    assert out.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # fires when it *reaches* threshold
    assert torch.equal(sg(x), out)  # __call__ is spike_fn


# --- backward --------------------------------------------------------------------------------------

@pytest.mark.parametrize("sg", ALL, ids=IDS)
def test_backward_is_upstream_times_surrogate_grad(sg):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 7, generator=g, dtype=torch.float64) * 0.7).requires_grad_()
    up = torch.randn(4, 7, generator=g, dtype=torch.float64)
    spike_fn(x, sg).backward(up)
    assert torch.equal(x.grad, up * sg.grad(x.detach()))


def test_grad_at_zero_hand_values():
    z = torch.zeros(1, dtype=torch.float64)
    assert ATan(alpha=2.0).grad(z).item() == 1.0  # alpha / 2
    assert ATan(alpha=3.0).grad(z).item() == 1.5
    assert Sigmoid(alpha=4.0).grad(z).item() == 1.0  # alpha * 1/2 * 1/2
    assert FastSigmoid(slope=25.0).grad(z).item() == 1.0
    assert Triangle(width=0.5).grad(z).item() == 2.0  # 1 / w
    # and away from zero
    x = torch.tensor([0.25, -0.25], dtype=torch.float64)
    assert Triangle(width=0.5).grad(x).tolist() == [1.0, 1.0]
    assert FastSigmoid(slope=4.0).grad(x).tolist() == [0.25, 0.25]  # 1/(1+1)^2
    atan = 1.0 / (1.0 + (0.5 * math.pi * 2.0 * 0.25) ** 2)
    assert ATan().grad(x).tolist() == pytest.approx([atan, atan], abs=1e-15)


@pytest.mark.parametrize("sg", ALL, ids=IDS)
def test_grad_is_derivative_of_primitive(sg):
    """Central finite differences of ``primitive`` equal ``grad`` (float64, off the Triangle kinks)."""
    pts = torch.tensor([-2.0, -0.9, -0.37, -0.11, -0.013, 0.007, 0.05, 0.21, 0.44, 0.8, 1.7],
                       dtype=torch.float64)
    if isinstance(sg, Triangle):
        kinks = torch.tensor([-sg.width, 0.0, sg.width], dtype=torch.float64)
        pts = pts[(pts[:, None] - kinks).abs().min(1).values > 1e-3]
    eps = 1e-6
    fd = (sg.primitive(pts + eps) - sg.primitive(pts - eps)) / (2 * eps)
    torch.testing.assert_close(sg.grad(pts), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("sg", [Sigmoid(), ATan(), Triangle(width=0.7)], ids=repr)
def test_primitive_is_a_smoothed_step(sg):
    """Primitive of a unit-area surrogate goes from 0 to 1 and is 1/2 at 0."""
    x = torch.tensor([-1e4, 0.0, 1e4], dtype=torch.float64)
    p = sg.primitive(x)
    assert p[1].item() == 0.5
    assert p[0].item() == pytest.approx(0.0, abs=1e-4)
    assert p[2].item() == pytest.approx(1.0, abs=1e-4)
    # total area of grad is 1 (trapezoid on a fine grid)
    grid = torch.linspace(-50, 50, 400_001, dtype=torch.float64)
    area = torch.trapezoid(sg.grad(grid), grid).item()
    assert area == pytest.approx(1.0, abs=2e-2 if isinstance(sg, ATan) else 1e-6)  # atan has heavy tails


@pytest.mark.parametrize("sg", ALL, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_for_extreme_inputs(sg, dtype):
    x = torch.tensor([1e4, -1e4, 1e30, -1e30, 0.0, -0.0, 1e-30, -1e-30, 1e-38, 3e38, -3e38],
                     dtype=dtype).requires_grad_()
    assert torch.isfinite(sg.primitive(x.detach())).all()
    g = sg.grad(x.detach())
    assert torch.isfinite(g).all() and (g >= 0).all()
    spike_fn(x, sg).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[:4].abs().max().item() < 1e-6  # far from threshold the surrogate vanishes


# --- construction ----------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [ATan, Sigmoid, FastSigmoid, Triangle])
@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), -float("inf")])
def test_invalid_parameter_raises(cls, bad):
    with pytest.raises(ValueError, match="positive finite"):
        cls(bad)


@pytest.mark.parametrize("sg", ALL, ids=IDS)
def test_frozen(sg):
    field = dataclasses.fields(sg)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(sg, field, 1.0)


@pytest.mark.parametrize("name,cls,field", [("atan", ATan, "alpha"), ("sigmoid", Sigmoid, "alpha"),
                                            ("fast_sigmoid", FastSigmoid, "slope"),
                                            ("triangle", Triangle, "width")])
def test_get_surrogate_by_name(name, cls, field):
    default = get_surrogate(name)
    assert type(default) is cls and default == cls()
    assert default.name == name and default.kernel_spec == (name, getattr(cls(), field))
    custom = get_surrogate(name, 0.75)
    assert getattr(custom, field) == 0.75 and custom.kernel_spec == (name, 0.75)
    assert isinstance(custom, Surrogate)


def test_get_surrogate_unknown_name():
    with pytest.raises(ValueError, match="unknown surrogate 'arctan'"):
        get_surrogate("arctan")
    with pytest.raises(ValueError, match="positive finite"):
        get_surrogate("atan", -2.0)


# --- peers -----------------------------------------------------------------------------------------

def _grad_of(fn, x):
    x = x.clone().requires_grad_()
    fn(x).sum().backward()
    return x.grad


X = torch.linspace(-3.0, 3.0, 601)


@pytest.mark.peers
@pytest.mark.parametrize("alpha", [2.0, 5.0])
def test_atan_matches_snntorch_and_spikingjelly(alpha):
    snn_sg = _peer("snntorch.surrogate")
    sj_sg = _peer("spikingjelly.activation_based.surrogate")
    ours = _grad_of(lambda x: spike_fn(x, ATan(alpha)), X)
    torch.testing.assert_close(_grad_of(snn_sg.atan(alpha=alpha), X), ours, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(_grad_of(sj_sg.ATan(alpha=alpha), X), ours, rtol=1e-6, atol=1e-7)


@pytest.mark.peers
def test_fast_sigmoid_matches_snntorch():
    snn_sg = _peer("snntorch.surrogate")
    ours = _grad_of(lambda x: spike_fn(x, FastSigmoid(slope=25.0)), X)
    torch.testing.assert_close(_grad_of(snn_sg.fast_sigmoid(slope=25), X), ours, rtol=1e-6, atol=1e-7)


@pytest.mark.peers
def test_sigmoid_matches_spikingjelly():
    sj_sg = _peer("spikingjelly.activation_based.surrogate")
    ours = _grad_of(lambda x: spike_fn(x, Sigmoid(alpha=4.0)), X)
    torch.testing.assert_close(_grad_of(sj_sg.Sigmoid(alpha=4.0), X), ours, rtol=1e-6, atol=1e-7)


@pytest.mark.peers
def test_heaviside_at_zero_vs_peers():
    """At exactly 0: we and SpikingJelly fire (x >= 0); snnTorch does not (x > 0). Measure-zero otherwise."""
    snn_sg = _peer("snntorch.surrogate")
    sj_sg = _peer("spikingjelly.activation_based.surrogate")
    x = torch.tensor([-1e-7, 0.0, 1e-7])
    assert spike_fn(x, ATan()).tolist() == [0.0, 1.0, 1.0]
    assert sj_sg.ATan()(x).tolist() == [0.0, 1.0, 1.0]
    assert snn_sg.atan()(x).tolist() == [0.0, 0.0, 1.0]
