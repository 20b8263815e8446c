"""Shared physics checks of the neuron tests."""

import pytest
import torch


def _check_recurrent(rec, plain, x, w_excite: float) -> None:
    """A recurrent layer's weight gets a gradient; with ``w_rec = 0`` it equals the plain layer exactly
    (spikes and membrane); a uniformly excitatory ``w_rec`` makes the population fire more."""
    rec(x).spikes.sum().backward()
    assert rec.w_rec.grad is not None and rec.w_rec.grad.abs().sum() > 0
    with torch.no_grad():
        rec.w_rec.zero_()
    a, b = rec(x, record=True), plain(x, record=True)
    assert torch.equal(a.spikes, b.spikes) and torch.equal(a.v, b.v)
    with torch.no_grad():
        rec.w_rec.fill_(w_excite)
    assert rec(x).spikes.sum() > b.spikes.sum()


@pytest.fixture
def check_recurrent():
    return _check_recurrent
