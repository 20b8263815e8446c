"""Graphs written by snnTorch's ``export_to_nir`` (snnTorch 1.0.0) imported into spike.

snnTorch writes ``Leaky(beta)`` as ``LIF(tau = dt/(1-beta), r = tau/dt)`` and ``Synaptic(alpha, beta)`` as
``CubaLIF(tau_syn = dt/(1-alpha), tau_mem = dt/(1-beta), w_in = tau_syn/dt, r = tau_mem/dt)`` with its fixed
``dt = 1e-4``: forward Euler with gain 1. So ``from_nir(graph, dt=1e-4, discretization="euler")``
reproduces snnTorch's spikes for ``reset_mechanism="zero", reset_delay=False`` (NIR's reset to
``v_reset = 0`` at once). snnTorch's default (``"subtract"``, ``reset_delay=True``) is not written into
the graph: pinned below. With nir 1.0.8 snnTorch's own type inference needs per-neuron ``beta`` /
``threshold`` tensors and ``ignore_dims=[0]`` (then its ``Flatten`` is written with ``start_dim=0``).
"""

import pytest
import torch

pytestmark = pytest.mark.peers

nir = pytest.importorskip("nir")
pytest.importorskip("nirtorch")
snn = pytest.importorskip("snntorch")
snn_export = pytest.importorskip("snntorch.export_nir")
snn_utils = pytest.importorskip("snntorch.utils")

from spike.neurons import LIF  # noqa: E402
from spike.neurons.cuba import CubaLIF  # noqa: E402
from spike.nir import from_nir  # noqa: E402

DT = 1e-4  # snnTorch's fixed export dt


def _full(shape, v):
    return torch.full(shape if isinstance(shape, tuple) else (shape,), v)


def _snn_run(net, x):
    snn_utils.reset(net)
    outs = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            o = net(x[t])
            outs.append(o[0] if isinstance(o, tuple) else o)
    return torch.stack(outs)


def _mlp(reset="zero", delay=False):
    torch.manual_seed(0)
    kw = dict(init_hidden=True, reset_mechanism=reset, reset_delay=delay)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 10),
                              snn.Leaky(beta=_full(10, 0.8), threshold=_full(10, 1.0), **kw), torch.nn.Linear(10, 4),
                              snn.Synaptic(alpha=_full(4, 0.7), beta=_full(4, 0.8), threshold=_full(4, 1.0),
                                           output=True, **kw))
    with torch.no_grad():
        net[1].weight.mul_(3.0)
        net[3].weight.mul_(3.0)
    return net


def _spike_run(graph, x):
    net = from_nir(graph, DT, discretization="euler")
    with torch.no_grad():
        return net, net(x).out


def test_snntorch_mlp_export_with_synaptic_imports_with_identical_spikes():
    net = _mlp()
    x = (torch.rand(50, 3, 3, 4, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    theirs = _snn_run(net, x)
    g = snn_export.export_to_nir(net, torch.zeros(1, 3, 4), ignore_dims=[0])
    ours_net, ours = _spike_run(g, x)
    assert [type(m).__name__ for m in ours_net] == ["Flatten", "Linear", "LIF", "Linear", "CubaLIF"]
    assert isinstance(ours_net[4], CubaLIF) and ours_net[4].params().discretization == "euler"
    assert theirs.sum() >= 20
    assert torch.equal(ours, theirs)


def test_snntorch_conv_export_imports_with_identical_spikes():
    torch.manual_seed(0)
    kw = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=(1, 1)),
                              snn.Leaky(beta=_full((4, 8, 8), 0.8), threshold=_full((4, 8, 8), 1.0), **kw),
                              torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64, 3),
                              snn.Leaky(beta=_full(3, 0.8), threshold=_full(3, 1.0), output=True, **kw))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[4].weight.mul_(8.0)
    x = (torch.rand(40, 2, 2, 8, 8, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    theirs = _snn_run(net, x)
    g = snn_export.export_to_nir(net, torch.zeros(1, 2, 8, 8), ignore_dims=[0])
    _, ours = _spike_run(g, x)
    assert theirs.sum() >= 20
    assert torch.equal(ours, theirs)


def test_snntorch_default_subtract_delayed_reset_is_not_in_the_graph_pinned():
    """snnTorch's default neuron exports as the same NIR node: spike imports NIR's reset, not snnTorch's."""
    x = (torch.rand(50, 3, 3, 4, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    default = _mlp("subtract", True)
    g = snn_export.export_to_nir(default, torch.zeros(1, 3, 4), ignore_dims=[0])
    net, ours = _spike_run(g, x)
    assert isinstance(net[2], LIF) and net[2].params().reset == "to_value"
    assert net[2].params().reset_timing == "immediate"
    assert not torch.equal(ours, _snn_run(default, x))  # snnTorch's own spikes differ ...
    assert torch.equal(ours, _snn_run(_mlp("zero", False), x))  # ... the graph is the zero/immediate neuron's
