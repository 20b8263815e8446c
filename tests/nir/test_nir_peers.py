"""Our NIR export read by snnTorch's importer (``snntorch.import_nir.import_from_nir``).

snnTorch's importer hard-codes ``dt = 1e-4`` and forward Euler (``beta = 1 - dt/tau``), builds
``Leaky(reset_mechanism="zero", reset_delay=False)`` (reset at once, to 0) and, when
``r*dt/tau != 1``, divides the threshold by that input scale instead of scaling the input.
So the exact setting is: our ``dt = 1e-4``, ``discretization="euler"``, ``reset="to_value"``,
``v_reset = v_rest = 0``, ``reset_timing="immediate"``, ``decay_input=False`` (``r = tau/dt``).
"""

import math

import pytest
import torch

pytestmark = pytest.mark.peers

nir = pytest.importorskip("nir")
pytest.importorskip("nirtorch")
snn_import = pytest.importorskip("snntorch.import_nir")
snn_utils = pytest.importorskip("snntorch.utils")

from spike.neurons import LIF  # noqa: E402
from spike.nir import to_nir  # noqa: E402
from spike.synapses import Linear, Sequential  # noqa: E402

DT, TAU = 1e-4, 5e-4  # snnTorch's fixed dt; tau = 5 steps


def _net(disc):
    torch.manual_seed(0)
    kw = dict(tau=TAU, dt=DT, reset="to_value", discretization=disc)
    return Sequential(Linear(6, 10), LIF(**kw), Linear(10, 4), LIF(**kw)).eval()


def _snntorch_run(graph, x):
    net = snn_import.import_from_nir(graph)
    snn_utils.reset(net)
    outs = []
    with torch.no_grad():
        for t in range(x.shape[0]):  # snnTorch steps one [B, ...] slice at a time
            o = net(x[t])
            outs.append(o[0] if isinstance(o, tuple) else o)
    return net, torch.stack(outs)  # [T, B, 4]


def test_snntorch_reads_our_euler_lif_mlp_with_identical_spikes():
    net = _net("euler")
    x = (torch.rand(40, 3, 6, generator=torch.Generator().manual_seed(1)) < 0.5).float() * 2.0
    with torch.no_grad():
        ours = net(x).out
    _, theirs = _snntorch_run(to_nir(net, DT, strict=True), x)
    assert ours.sum() > 0
    assert torch.equal(ours, theirs)


def test_snntorch_reads_exp_lif_as_a_different_neuron_pinned():
    """With the exact exponential, snnTorch still builds an Euler neuron: pin what it builds."""
    graph = to_nir(_net("exp"), DT, strict=True)
    sn, _ = _snntorch_run(graph, torch.zeros(1, 1, 6))
    leaky = [m for m in sn.modules() if type(m).__name__ == "Leaky"]
    assert len(leaky) == 2
    beta_ours = math.exp(-DT / TAU)  # 0.8187...
    w_scale = (1.0 / (1.0 - beta_ours)) * DT / TAU  # r * dt / tau = 1.1033...
    for m in leaky:
        beta = torch.as_tensor(m.beta, dtype=torch.float64).flatten()  # one per neuron
        assert torch.allclose(beta, torch.full_like(beta, 1.0 - DT / TAU), rtol=1e-6)  # 0.8, not 0.8187
        thr = torch.as_tensor(m.threshold, dtype=torch.float64).flatten()
        assert torch.allclose(thr, torch.full_like(thr, 1.0 / w_scale), rtol=1e-6)  # threshold moved, input kept
