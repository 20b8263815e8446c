"""The threshold comparison, pinned: spike fires when ``v >= v_th`` (``spike.surrogate``: ``H(x) = 1[x >= 0]``);
snnTorch and Norse fire only when ``v > v_th``. The two agree except when a membrane lands exactly on the
threshold, which happens with exactly representable weights and inputs (binary inputs, integer weights).
These tests build that case through NIR, so a change of either side's comparison shows up here.
"""

import pytest
import torch

pytestmark = pytest.mark.peers

pytest.importorskip("nir")
pytest.importorskip("nirtorch")

from spike.neurons import LIF  # noqa: E402
from spike.nir import to_nir  # noqa: E402
from spike.synapses import Linear, Sequential  # noqa: E402


def _one_synapse(**lif):
    """``x -> 1.0 * x -> LIF``: one input pulse drives the membrane to exactly ``v_th = 1``."""
    net = Sequential(Linear(1, 1, bias=False), LIF(v_th=1.0, reset="to_value", discretization="euler", **lif))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    return net.eval()


def _pulse(t=4):
    x = torch.zeros(t, 1, 1)
    x[0] = 1.0
    return x




def test_snntorch_fires_on_strict_crossing_only():
    si = pytest.importorskip("snntorch.import_nir")
    su = pytest.importorskip("snntorch.utils")
    dt, tau = 1e-4, 5e-4  # snnTorch's fixed dt; r = tau/dt gives input gain 1: v_1 = 1.0 exactly
    net, x = _one_synapse(tau=tau, dt=dt, decay_input=False), _pulse()
    with torch.no_grad():
        ours = net(x).out.flatten()
        sn = si.import_from_nir(to_nir(net, dt, strict=True))
        su.reset(sn)
        theirs = torch.stack([sn(x[t])[0] for t in range(x.shape[0])]).flatten()
    assert ours.tolist() == [1.0, 0.0, 0.0, 0.0]  # v = v_th fires here (>=) ...
    assert theirs.tolist() == [0.0, 0.0, 0.0, 0.0]  # ... and not in snnTorch (>)
    # a hair above the threshold both fire: the difference is the comparison, nothing else
    with torch.no_grad():
        net[0].weight.fill_(1.0 + 1e-6)
        sn = si.import_from_nir(to_nir(net, dt, strict=True))
        su.reset(sn)
        assert net(x).out.flatten()[0] == 1.0 and sn(x[0])[0].item() == 1.0


def test_norse_fires_on_strict_crossing_only():
    nt = pytest.importorskip("norse.torch")
    dt, tau = 1e-3, 4e-3  # Norse: v += dt/tau (x - v); 0.25 * 4 = 1.0 exactly
    net, x = _one_synapse(tau=tau, dt=dt, decay_input=True), _pulse() * 4.0
    with torch.no_grad():
        ours = net(x).out.flatten()
        m = nt.from_nir(to_nir(net, dt, strict=True), dt=dt)
        state, outs = None, []
        for t in range(x.shape[0]):
            o, state = m(x[t], state)
            outs.append(o)
            if t == 0:  # Norse's membrane after the pulse: exactly on the threshold
                v = [c.v for cells in state.state.values() for c in cells if hasattr(c, "v")]
                assert [float(a) for a in v] == [1.0]
    assert ours.tolist()[0] == 1.0
    assert torch.stack(outs).flatten().tolist()[0] == 0.0
