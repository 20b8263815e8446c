"""The fast paths of :class:`spike.events.network.EventStream` against their references.

``feed_events`` bins integer event chunks in one numba call (validation + binning) and every
``feed`` / ``advance`` processes the completed bins in one numba call; the references are
:func:`spike.events.network.run` on the whole sample (outputs, stop step, counters) and the Python
checks of ``validate_events`` / ``bin_events`` (the same errors).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spike.core.events import EventError, make_events
from spike.events import network as N
from spike.inference.export import export_event_network
from spike.neurons import LI, LIF
from spike.synapses import Flatten, Linear, Sequential

SENSOR = (6, 5, 2)  # W, H, P
DT = 1000
T = 25


def _net(seed: int = 4):
    gen = torch.Generator().manual_seed(seed)
    model = Sequential(Flatten(), Linear(60, 24), LIF(tau=3.0), Linear(24, 4), LI(tau=5.0)).eval()
    with torch.no_grad():  # weights on a dyadic grid: every sum is exact
        for m in (model[1], model[3]):
            m.weight.copy_(torch.randint(-24, 25, m.weight.shape, generator=gen).float() / 16)
            m.bias.copy_(torch.randint(-4, 5, m.bias.shape, generator=gen).float() / 16)
    return export_event_network(model, (2, 5, 6))


def _events(seed: int, n: int = 400, t0: int = -1500, signed_p: bool = False):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(t0, T * DT, n))  # some before t_start = 0: dropped
    p = rng.integers(0, 2, n)
    if signed_p:
        p = 2 * p - 1  # {-1, 1}: OFF / ON
    return make_events(rng.integers(0, 6, n), rng.integers(0, 5, n), t, p)


def _stream(net, ev, cuts, rule=None, advance_every_bin=False):
    s = N.EventStream(net, stop_rule=rule, sensor_size=SENSOR, dt=DT)
    for part in np.split(np.arange(len(ev)), cuts):
        s.feed_events(ev[part])
        if advance_every_bin and len(part):
            s.advance(max(s.steps_done, int(ev["t"][part[-1]]) // DT))
    return s, s.finish(T)


@pytest.mark.parametrize("signed_p", [False, True])
def test_feed_events_equals_batch_in_every_chunking(signed_p):
    net = _net()
    ev = _events(1, signed_p=signed_p)
    ref = N.run(net, [ev], T, sensor_size=SENSOR, dt=DT)
    edges_1ms = np.searchsorted(ev["t"], np.arange(-DT, T * DT, DT))[1:]
    rng = np.random.default_rng(2)
    chunkings = {"one event": np.arange(1, len(ev)), "1 ms": edges_1ms, "whole": [],
                 "random": np.sort(rng.choice(np.arange(1, len(ev)), 20, replace=False))}
    for name, cuts in chunkings.items():
        for adv in (False, True):
            _, res = _stream(net, ev, cuts, advance_every_bin=adv)
            np.testing.assert_array_equal(res.out, ref.out, err_msg=name)
            np.testing.assert_array_equal(res.synops, ref.synops, err_msg=name)
            np.testing.assert_array_equal(res.updates, ref.updates, err_msg=name)


def test_feed_events_other_dtypes_and_1d_sensor():
    net = _net()
    ev = _events(3)
    ref = N.run(net, [ev], T, sensor_size=SENSOR, dt=DT)
    small = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", np.bool_)])
    ev2 = np.empty(len(ev), small)
    for f in ("t", "x", "y", "p"):
        ev2[f] = ev[f]
    _, res = _stream(net, ev2, np.arange(7, len(ev2), 7))
    np.testing.assert_array_equal(res.out, ref.out)
    # float fields and a float dt take the reference path: the same result
    evf = ev.astype([("x", np.int64), ("y", np.int64), ("t", np.float64), ("p", np.int64)])
    _, res = _stream(net, evf, np.arange(5, len(evf), 5))
    np.testing.assert_array_equal(res.out, ref.out)
    # a sensor without y (H = 1): channel = p * W + x
    gen = torch.Generator().manual_seed(5)
    model = Sequential(Linear(12, 8), LIF(tau=2.0), Linear(8, 3), LI()).eval()
    with torch.no_grad():
        for m in (model[0], model[2]):
            m.weight.copy_(torch.randint(-24, 25, m.weight.shape, generator=gen).float() / 8)
    net1 = export_event_network(model, 12)
    rng = np.random.default_rng(6)
    e1 = np.empty(300, [("x", np.int64), ("t", np.int64), ("p", np.int64)])
    e1["x"], e1["p"] = rng.integers(0, 6, 300), rng.integers(0, 2, 300)
    e1["t"] = np.sort(rng.integers(0, 30 * 100, 300))
    ref1 = N.run(net1, [e1], 30, sensor_size=(6, 1, 2), dt=100)
    s = N.EventStream(net1, sensor_size=(6, 1, 2), dt=100)
    for k in range(0, 300, 3):
        s.feed_events(e1[k:k + 3])
    np.testing.assert_array_equal(s.finish(30).out, ref1.out)


@pytest.mark.parametrize("rule", ["array", "scalar"])
def test_feed_events_stops_like_batch(rule):
    net = _net(seed=8)
    ev = _events(9, n=900)
    free = N.run(net, [ev], T, sensor_size=SENSOR, dt=DT)
    cum = np.cumsum(free.out[:, 0].astype(np.float64), axis=0)
    srt = np.sort(cum, axis=-1)
    gap = srt[:, -1] - srt[:, -2]
    th = float(np.quantile(gap[3:], 0.5))
    stop = N.StopRule(np.r_[np.full(3, np.inf), np.full(T - 3, th)] if rule == "array" else th)
    ref = N.run(net, [ev], T, sensor_size=SENSOR, dt=DT, stop_rule=stop)
    k_stop = int(ref.steps[0])
    assert 0 < k_stop < T
    for cuts in (np.arange(1, len(ev)), np.searchsorted(ev["t"], np.arange(0, T * DT, DT))[1:], []):
        s, res = _stream(net, ev, cuts, rule=stop)
        assert s.stopped and res.steps.tolist() == [k_stop]
        np.testing.assert_array_equal(res.out[:, 0], ref.out[:k_stop, 0])
        np.testing.assert_array_equal(res.synops, ref.synops)


def test_feed_events_errors_are_the_reference_errors_and_leave_the_stream_usable():
    net = _net()
    s = N.EventStream(net, sensor_size=SENSOR, dt=DT)
    s.feed_events(make_events([0, 1], [0, 1], [100, 2500], [0, 1]))
    assert s.steps_done == 2
    with pytest.raises(EventError, match="not sorted"):
        s.feed_events(make_events([0, 1], [0, 1], [3000, 2900], [0, 1]))
    with pytest.raises(EventError, match="x outside the sensor"):
        s.feed_events(make_events([6], [0], [3000], [0]))
    with pytest.raises(EventError, match="y outside the sensor"):
        s.feed_events(make_events([0], [-1], [3000], [0]))
    with pytest.raises(EventError, match="polarity"):
        s.feed_events(make_events([0], [0], [3000], [2]))
    with pytest.raises(N.EventNetworkError, match="out of time order: t=2400"):
        s.feed_events(make_events([0], [0], [2400], [0]))
    s.advance(5)
    with pytest.raises(N.EventNetworkError, match="out of time order: t_bin 3"):
        s.feed_events(make_events([0], [0], [3500], [0]))
    # nothing was half-done: the stream goes on and equals the batch run of what was accepted
    s.feed_events(make_events([2, 3], [1, 2], [5200, 7000], [1, 0]))
    acc = make_events([0, 1, 2, 3], [0, 1, 1, 2], [100, 2500, 5200, 7000], [0, 1, 1, 0])
    ref = N.run(net, [acc], 10, sensor_size=SENSOR, dt=DT)
    np.testing.assert_array_equal(s.finish(10).out, ref.out)
    with pytest.raises(N.EventNetworkError, match="finish"):
        s.feed_events(make_events([0], [0], [9000], [0]))


@pytest.mark.parametrize("counts", [False, True])
def test_wide_scatter_passes_equal_the_dense_path(counts):
    """Many events per step (the 8- and 4-row passes of the dense scatter, unit and non-unit counts)
    give the dense path's readout bit for bit, in the batch run and in the stream."""
    gen = torch.Generator().manual_seed(13)
    model = Sequential(Linear(64, 40), LIF(tau=3.0), Linear(40, 5), LI(tau=4.0)).eval()
    with torch.no_grad():
        for m in (model[0], model[2]):
            m.weight.copy_(torch.randint(-24, 25, m.weight.shape, generator=gen).float() / 64)
            m.bias.copy_(torch.randint(-8, 9, m.bias.shape, generator=gen).float() / 64)
    net = export_event_network(model, 64)
    on = torch.rand(30, 2, 64, generator=gen) < torch.linspace(0.02, 0.6, 30)[:, None, None]  # 1..38 per step
    x = on.float() * (torch.randint(1, 4, on.shape, generator=gen).float() if counts else 1.0)
    with torch.no_grad():
        ref = model(x).out.numpy()
    flat = x.numpy()
    samples = []
    for b in range(2):
        t, c = np.nonzero(flat[:, b])
        samples.append((t, c, flat[t, b, c]))
    res = N.run(net, samples, 30)
    np.testing.assert_array_equal(res.out, ref)
    s = N.EventStream(net)
    tb, ch, cnt = samples[1]
    for t0 in range(30):
        m = tb == t0
        s.feed(tb[m], ch[m], cnt[m])
        s.advance(t0 + 1)
    np.testing.assert_array_equal(s.finish(30).out[:, 0], ref[:, 1])
