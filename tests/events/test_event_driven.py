"""Event-driven CPU inference (spike.events.network) against the dense torch path (the oracle).

Exactness (see the module docstring of spike.events.network): spikes of every layer, final membranes
and the readout are compared bit for bit when the synaptic sums are exact (dyadic weights, any order
of summation gives the same float) and in float64; arbitrary float32 weights are compared with a
stated tolerance (a last-bit difference of an input current may flip a neuron sitting at threshold).
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from spike.events import network as N
from spike.inference.export import ExportError, export_event_network
from spike.neurons import IF, LI, LIF
from spike.synapses import AvgPool2d, BatchNorm1d, Conv2d, Flatten, Linear, MaxPool2d, Sequential, SharedDropout
from spike.synapses.delays import DelayedLinear, TimePad
from event_net_helpers import dyadic_, rand_input, to_samples  # noqa: E402  (tests/events)

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------




def compare(model: nn.Module, x: torch.Tensor, input_shape, exact: bool = True, **run_kw):
    """Run both paths; assert every spiking layer, the final states and the readout agree."""
    model = model.eval()
    with torch.no_grad():
        ref = model(x, record=True)
    net = export_event_network(model, input_shape)
    res = N.run(net, to_samples(x), x.shape[0], record=True, **run_kw)
    names = dict(model.named_children())
    assert set(net.spiking_names) <= set(ref.records)
    for name in net.spiking_names:
        dense = ref.records[name][0].numpy()
        assert res.spikes[name].shape == dense.shape
        np.testing.assert_array_equal(res.spikes[name], dense, err_msg=f"spikes of layer {name}")
        state = ref.state[list(names).index(name)]
        if exact:
            np.testing.assert_array_equal(res.v_final[name], state.v.numpy(), err_msg=f"final v of {name}")
            np.testing.assert_array_equal(res.s_final[name], state.s.numpy(), err_msg=f"final s of {name}")
    if exact:
        np.testing.assert_array_equal(res.out, ref.out.numpy())
    else:
        np.testing.assert_allclose(res.out, ref.out.numpy(), rtol=0, atol=1e-5)
    return ref, res, net


# ------------------------------------------------------------------------------------------------
# random networks vs the dense path
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reset,timing,bias", list(itertools.product(
    ["subtract", "to_value", "none"], ["immediate", "deferred"], [False, True])))
def test_mlp_layerwise_exact(reset, timing, bias):
    gen = torch.Generator().manual_seed(1)
    kw = dict(reset=reset, reset_timing=timing, backend="reference")
    model = Sequential(Linear(20, 30, bias=bias), LIF(tau=4.0, **kw), SharedDropout(0.3),
                       Linear(30, 15, bias=bias), LIF(tau=3.0, **kw),
                       Linear(15, 5, bias=bias), LI(tau=5.0, backend="reference"))
    dyadic_(model, gen)
    x = rand_input(gen, 40, 3, (20,))
    ref, res, _ = compare(model, x, 20)
    assert all(ref.records[n][0].sum() > 20 for n in ("1", "4"))  # the test has spikes to compare


def test_neuron_variants_exact():
    """IF, v_rest != 0, decay_input, learnable per-neuron tau, euler, LIF directly on the input,
    a spiking readout, the fused numba LIF backend of the dense path; sparse last layer."""
    gen = torch.Generator().manual_seed(2)
    lif_tau = LIF(tau=5.0, learn_tau=True, shape=(24,), reset="to_value", v_reset=-0.25)
    with torch.no_grad():
        lif_tau.log_tau.copy_(torch.log(1.5 + 10 * torch.rand(24, generator=gen)))
    model = Sequential(LIF(tau=2.0, v_th=1.5, reset_timing="deferred"),  # input counts are the current
                       Linear(16, 24, bias=False), lif_tau,
                       Linear(24, 20, bias=False), IF(reset="subtract"),
                       Linear(20, 18, bias=False), LIF(tau=3.0, v_rest=-0.25, decay_input=True, v_th=0.5),
                       Linear(18, 12, bias=False), LIF(tau=4.0, discretization="euler", reset_timing="deferred"),
                       Linear(12, 6, bias=False), LIF(tau=6.0))
    dyadic_(model, gen, bits=4)
    x = rand_input(gen, 50, 3, (16,), p=0.25)
    ref, res, _ = compare(model, x, 16)
    assert sum(int(ref.records[n][0].sum()) for n in ref.records) > 300


def test_subtract_reset_refires_without_input():
    """A neuron charged above 2*v_th must fire on the next step although it gets no input there:
    the flagging of input-free threshold crossings (not only touched neurons are checked)."""
    model = Sequential(Linear(1, 1, bias=False), LIF(tau=20.0, reset="subtract"), Linear(1, 2, bias=False),
                       LI(tau=5.0))
    with torch.no_grad():
        model[0].weight.fill_(5.0)
        model[2].weight.copy_(torch.tensor([[1.0], [-1.0]]))
    x = torch.zeros(12, 1, 1)
    x[0] = 1.0
    ref, res, _ = compare(model, x, 1)
    assert res.spikes["1"][:, 0, 0].tolist()[:5] == [1, 1, 1, 1, 0]  # 5 -> 4*b -> ...: four spikes from one event
    assert res.updates[0, 0] == 4  # the input step + the three flagged steps, nothing else


def test_delays_and_timepad_exact():
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    model = Sequential(DelayedLinear(12, 16, max_delay=6, bias=True), LIF(tau=3.0),
                       TimePad(4), DelayedLinear(16, 8, max_delay=3), LIF(tau=5.0, reset_timing="deferred"),
                       Linear(8, 4), LI(tau=4.0))
    dyadic_(model, gen)
    model.eval()
    assert any((m.delays() > 0).any() for m in model.modules() if isinstance(m, DelayedLinear))
    x = rand_input(gen, 30, 3, (12,), p=0.2)
    ref, res, net = compare(model, x, 12)
    assert res.out.shape[0] == 34 and net.pad_total == 4
    # the stream runs the TimePad tail on finish()
    tb, ch, cnt = to_samples(x)[1]
    s = N.EventStream(net)
    s.feed(tb, ch, cnt)
    streamed = s.finish(30)
    np.testing.assert_array_equal(streamed.out[:, 0], res.out[:, 1])
    np.testing.assert_array_equal(streamed.synops[0], res.synops[1])


def test_conv_pool_exact():
    gen = torch.Generator().manual_seed(4)
    model = Sequential(Conv2d(2, 6, 3, padding=1), LIF(tau=3.0), MaxPool2d(2),
                       Conv2d(6, 8, 3, stride=2, padding=(1, 0), groups=2, bias=False), LIF(tau=4.0),
                       AvgPool2d(2), Conv2d(8, 4, 1, dilation=1, padding="same"), IF(),
                       Flatten(), Linear(4, 5), LI(tau=5.0))
    dyadic_(model, gen)
    x = rand_input(gen, 25, 2, (2, 12, 10), p=0.15)
    ref, res, _ = compare(model, x, (2, 12, 10))
    assert all(ref.records[n][0].sum() > 10 for n in ("1", "4"))


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_conv_dilation_same_padding_exact():
    gen = torch.Generator().manual_seed(5)
    model = Sequential(Conv2d(1, 3, (3, 2), dilation=(2, 1), padding="same"), LIF(tau=2.0),
                       Conv2d(3, 4, 3, stride=(2, 3)), LIF(tau=2.0), Flatten(), Linear(4 * 4 * 2, 3))
    dyadic_(model, gen)
    x = rand_input(gen, 20, 2, (1, 9, 8), p=0.3)
    compare(model, x, (1, 9, 8))


def prune_(model: nn.Module, gen: torch.Generator, fraction: float) -> None:
    """Zero a random ``fraction`` of every synaptic weight tensor (magnitude-free pruning)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, DelayedLinear)):
                m.weight[torch.rand(m.weight.shape, generator=gen) < fraction] = 0.0


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.9])
def test_pruned_models_exact_and_zero_weights_are_no_synapses(fraction):
    """With pruned weights spikes stay bit-identical, and every layer kind (conv, delayed dense, dense)
    counts one synaptic operation per event and *non-zero* weight it reaches: pruning saves work."""
    gen = torch.Generator().manual_seed(12)
    torch.manual_seed(12)
    model = Sequential(Conv2d(2, 6, 3, padding=1), LIF(tau=3.0), MaxPool2d(2), Flatten(),
                       DelayedLinear(6 * 4 * 4, 20, max_delay=3), LIF(tau=4.0), Linear(20, 5), LI(tau=5.0))
    dyadic_(model, gen, span=48)
    prune_(model, gen, fraction)
    x = rand_input(gen, 25, 3, (2, 8, 8), p=0.25)
    ref, res, net = compare(model, x, (2, 8, 8))
    assert res.spikes["1"].sum() > 50 and res.spikes["5"].sum() > 10  # there is something to count
    f = nn.functional
    conv_w = (model[0].weight != 0).double()  # [6, 2, 3, 3]
    conv_ops = f.conv2d((x != 0).double().flatten(0, 1), conv_w, padding=1).reshape(25, 3, -1).sum((0, 2))
    pooled = f.max_pool2d(torch.from_numpy(res.spikes["1"]).double().flatten(0, 1), 2).reshape(25, 3, -1)
    delayed_ops = (pooled @ (model[4].weight != 0).double().sum(0)).sum(0)  # [B]
    spk5 = torch.from_numpy(res.spikes["5"]).double()  # [T, B, 20]
    dense_ops = (spk5 @ (model[6].weight != 0).double().sum(0)).sum(0)
    for i, want in enumerate((conv_ops, delayed_ops, dense_ops)):
        np.testing.assert_array_equal(res.synops[:, i], want.numpy().astype(np.int64), err_msg=res.layers[i])
    unpruned = f.conv2d((x != 0).double().flatten(0, 1), torch.ones_like(conv_w), padding=1)  # all taps
    assert (res.synops[:, 0] < unpruned.reshape(25, 3, -1).sum((0, 2)).numpy()).all()


def test_empty_input_and_zero_steps():
    gen = torch.Generator().manual_seed(6)
    model = Sequential(Linear(10, 8), LIF(tau=3.0), Linear(8, 4, bias=False), LIF(tau=3.0), Linear(4, 3), LI())
    dyadic_(model, gen)
    with torch.no_grad():
        model[0].bias.fill_(0.375)  # a bias drives the first layer without any input event
    x = torch.zeros(30, 2, 10)
    ref, res, _ = compare(model, x, 10)
    assert ref.records["1"][0].sum() > 0  # it does spike
    net = export_event_network(model, 10)
    empty = N.run(net, [(np.zeros(0, np.int64), np.zeros(0, np.int64))], 0)
    assert empty.out.shape == (0, 1, 3) and empty.steps.tolist() == [0]
    assert N.run(net, [], 5).out.shape == (5, 0, 3)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), depth=st.integers(1, 3), reset=st.sampled_from(["subtract", "to_value", "none"]),
       deferred=st.booleans(), bias=st.booleans(), delay=st.integers(0, 4), neuron=st.sampled_from(["lif", "if"]),
       p=st.sampled_from([0.0, 0.02, 0.2]))
def test_random_architectures_exact(seed, depth, reset, deferred, bias, delay, neuron, p):
    """Random depth / widths / delays / neuron options / input density (incl. empty input)."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [int(v) for v in torch.randint(3, 25, (depth + 2,), generator=gen)]
    kw = dict(reset=reset, reset_timing="deferred" if deferred else "immediate")
    layers: list[nn.Module] = []
    for k in range(depth):
        if delay and k == 0:
            layers.append(DelayedLinear(sizes[k], sizes[k + 1], max_delay=delay, bias=bias))
        else:
            layers.append(Linear(sizes[k], sizes[k + 1], bias=bias))
        tau = 1.5 + 8 * float(torch.rand(1, generator=gen))
        layers.append(LIF(tau=tau, **kw) if neuron == "lif" else IF(**kw))
    layers += [Linear(sizes[depth], sizes[-1]), LI(tau=3.0)]
    model = Sequential(*layers)
    dyadic_(model, gen)
    x = rand_input(gen, 25, 2, (sizes[0],), p=p)
    compare(model, x, sizes[0])


def test_float64_arbitrary_weights_exact():
    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(7)
    model = Sequential(Linear(60, 40), LIF(tau=4.0), Linear(40, 30), LIF(tau=3.0, reset="to_value"),
                       Linear(30, 5), LI(tau=5.0)).double()
    with torch.no_grad():
        model[0].weight.mul_(4)
    x = rand_input(gen, 60, 4, (60,), p=0.1).double()
    ref, res, net = compare(model, x, 60)
    assert net.dtype == np.float64 and res.spikes["1"].sum() > 500


def test_float32_arbitrary_weights_tolerance():
    """Arbitrary float32 weights: the dense matmul adds in its own order, so an input current may
    differ in the last bit. Stated tolerance: at most 1e-3 of the spikes differ, and the readout
    agrees to 1e-5 wherever all spikes agree (here: everywhere)."""
    torch.manual_seed(8)
    gen = torch.Generator().manual_seed(8)
    model = Sequential(Linear(100, 80), LIF(tau=4.0), Linear(80, 50), LIF(tau=3.0), Linear(50, 5), LI()).eval()
    with torch.no_grad():
        model[0].weight.mul_(3)
    x = rand_input(gen, 60, 6, (100,), p=0.1)
    with torch.no_grad():
        ref = model(x, record=True)
    res = N.run(export_event_network(model, 100), to_samples(x), 60, record=True)
    total = sum(int(ref.records[n][0].sum()) for n in ("1", "3"))
    diff = sum(int((res.spikes[n] != ref.records[n][0].numpy()).sum()) for n in ("1", "3"))
    assert total > 1000 and diff <= 1e-3 * total
    same = [b for b in range(6) if all((res.spikes[n][:, b] == ref.records[n][0][:, b].numpy()).all()
                                       for n in ("1", "3"))]
    assert len(same) >= 5
    np.testing.assert_allclose(res.out[:, same], ref.out[:, same].numpy(), rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# inputs, streaming, stop rule, counters
# ------------------------------------------------------------------------------------------------


def _small_net(seed: int = 9, n_out: int = 4):
    gen = torch.Generator().manual_seed(seed)
    model = Sequential(Linear(16, 20, bias=False), LIF(tau=3.0), Linear(20, n_out, bias=False), LI(tau=4.0))
    dyadic_(model, gen, bits=3)
    return model.eval(), export_event_network(model, 16), gen


def test_duplicates_are_counts_and_order_does_not_matter():
    model, net, gen = _small_net()
    rng = np.random.default_rng(0)
    tb = rng.integers(0, 20, 200)
    ch = rng.integers(0, 16, 200)
    x = torch.from_numpy(N.to_dense((tb, ch), 20, 16))[:, None]  # [T, 1, 16]
    assert x.max() > 1  # repeated (bin, channel) pairs become counts
    perm = rng.permutation(200)
    a = N.run(net, [(tb, ch)], 20)
    b = N.run(net, [(tb[perm], ch[perm])], 20)
    with torch.no_grad():
        ref = model(x)
    np.testing.assert_array_equal(a.out, ref.out.numpy())
    np.testing.assert_array_equal(b.out, a.out)


def test_structured_events_binning_matches_to_frame():
    from spike.core.events import make_events
    from spike.events import to_frame

    rng = np.random.default_rng(1)
    n = 500
    ev = make_events(rng.integers(0, 6, n), rng.integers(0, 5, n), np.sort(rng.integers(1000, 21000, n)),
                     rng.integers(0, 2, n))
    b = N.bin_events(ev, (6, 5, 2), dt=1000, t_start=1000, n_steps=20)
    frames = to_frame(ev, (6, 5, 2), time_window=1000, start_time=1000, end_time=21000)[:20]  # [T, P, H, W]
    np.testing.assert_array_equal(N.to_dense(b, 20, 60), frames.reshape(20, -1))
    gen = torch.Generator().manual_seed(2)
    model = Sequential(Flatten(), Linear(60, 10), LIF(tau=3.0), Linear(10, 3), LI())
    dyadic_(model, gen)
    net = export_event_network(model, (2, 5, 6))
    res = N.run(net, [ev], 20, sensor_size=(6, 5, 2), dt=1000, t_start=1000)
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(frames.astype(np.float32))[:, None])  # [T, 1, P, H, W]
    np.testing.assert_array_equal(res.out, ref.out.numpy())


def test_stream_equals_batch_in_any_chunking():
    model, net, gen = _small_net()
    x = rand_input(gen, 30, 1, (16,), p=0.2)
    tb, ch, cnt = to_samples(x)[0]
    full = N.run(net, [(tb, ch, cnt)], 30)
    rng = np.random.default_rng(3)
    for trial in range(4):
        s = N.EventStream(net)
        cuts = np.sort(rng.choice(np.arange(1, len(tb)), size=5, replace=False))
        for part in np.split(np.arange(len(tb)), cuts):
            done = s.feed(tb[part], ch[part], cnt[part])
            assert done <= (tb[part[-1]] if len(part) else 30)  # the open bin is not processed yet
            np.testing.assert_array_equal(s.output(), full.out[:done, 0])  # output so far, any moment
        if trial % 2:
            assert s.advance(30) == 30  # time passes: the open bin and the silent tail are processed
            np.testing.assert_array_equal(s.output(), full.out[:, 0])
        res = s.finish(30)
        np.testing.assert_array_equal(res.out, full.out)
        np.testing.assert_array_equal(res.synops, full.synops)
        np.testing.assert_array_equal(res.updates, full.updates)


def _stream_in_chunks(net, sample, n_steps, k, stop_rule=None, advance=True):
    """Feed ``sample`` ``k`` bins at a time (``advance``: declare each chunk's bins complete)."""
    tb, ch, cnt = sample
    s = N.EventStream(net, stop_rule=stop_rule)
    for c0 in range(0, n_steps, k):
        m = (tb >= c0) & (tb < c0 + k)
        s.feed(tb[m], ch[m], cnt[m])
        if advance:
            s.advance(min(c0 + k, n_steps))
    return s


@pytest.mark.parametrize("where", ["middle", "last step", "never", "scalar"])
def test_stream_stops_like_batch_in_every_chunking(where):
    """Every chunking, from one bin per feed to the whole sample at once, stops at the step the batch
    run stops at (also a stop on the last step of a chunk or of the sample) with the same output."""
    model, net, gen = _small_net(seed=10)
    t_len = 20
    x = rand_input(gen, t_len, 1, (16,), p=0.3)
    sample = to_samples(x)[0]
    free = N.run(net, [sample], t_len)
    cum = np.cumsum(free.out[:, 0].astype(np.float64), axis=0)  # [T, C]
    srt = np.sort(cum, axis=-1)
    gap = srt[:, -1] - srt[:, -2]  # [T]
    if where == "middle":
        beta = np.full(t_len, np.inf)
        beta[4:] = gap[4:].min() - 0.5  # fires at step 4
        rule = N.StopRule(beta)
    elif where == "last step":
        beta = np.full(t_len, np.inf)
        beta[-1] = gap[-1] - 0.5
        rule = N.StopRule(beta)
    elif where == "never":
        rule = N.StopRule(np.full(t_len, np.inf))
    else:
        rule = N.StopRule(float(np.quantile(gap, 0.3)))
    ref = N.run(net, [sample], t_len, stop_rule=rule)
    k_stop = int(ref.steps[0])
    fired = where != "never"
    assert (k_stop == 5) if where == "middle" else (k_stop == t_len) if where in ("last step", "never") \
        else 0 < k_stop < t_len
    for k in range(1, t_len + 1):
        for advance in (True, False):
            s = _stream_in_chunks(net, sample, t_len, k, rule, advance)
            if advance:
                assert (s.steps_done, s.stopped) == (k_stop, fired), f"{k} bins per chunk"
            res = s.finish(t_len)
            assert s.stopped == fired and res.steps.tolist() == [k_stop], f"{k} bins per chunk, advance={advance}"
            np.testing.assert_array_equal(res.out[:, 0], ref.out[:k_stop, 0])
            np.testing.assert_array_equal(res.synops, ref.synops)
            np.testing.assert_array_equal(res.updates, ref.updates)


def test_stream_errors():
    _, net, _ = _small_net()
    s = N.EventStream(net)
    s.feed([3, 5], [0, 1])
    with pytest.raises(N.EventNetworkError, match="out of time order"):
        s.feed([4], [2])
    with pytest.raises(N.EventNetworkError, match="out of time order"):
        s.feed([7, 6], [2, 2])
    with pytest.raises(N.EventNetworkError, match="channel"):
        s.feed([8], [16])
    with pytest.raises(N.EventNetworkError, match="advance"):
        s.advance(4)
    with pytest.raises(N.EventNetworkError, match="sensor_size"):
        s.feed_events(np.zeros(0, dtype=[("x", int), ("y", int), ("t", int), ("p", int)]))
    s.finish(10)
    with pytest.raises(N.EventNetworkError, match="finish"):
        s.feed([11], [0])
    from spike.core.events import make_events

    s2 = N.EventStream(net, sensor_size=(4, 2, 2), dt=100)
    s2.feed_events(make_events([0, 1], [0, 1], [100, 250], [0, 1]))
    with pytest.raises(N.EventNetworkError, match="out of time order"):
        s2.feed_events(make_events([0], [0], [200], [0]))


def test_stop_rule_stops_and_saves_work():
    model, net, gen = _small_net(seed=10)
    x = rand_input(gen, 40, 6, (16,), p=0.3)
    samples = to_samples(x)
    full = N.run(net, samples, 40)
    cum = np.cumsum(full.out.astype(np.float64), axis=0)  # [T, B, C]
    srt = np.sort(cum, axis=-1)
    gap = srt[..., -1] - srt[..., -2]  # [T, B]
    beta = np.full(40, np.quantile(gap[10:], 0.5))
    beta[:5] = np.inf  # never stop before step 5
    expect = [next((t + 1 for t in range(40) if gap[t, b] > beta[t]), 40) for b in range(6)]
    assert min(expect) < 40  # some sample stops early
    res = N.run(net, samples, 40, stop_rule=N.StopRule(beta))
    assert res.steps.tolist() == expect
    for b, k in enumerate(expect):
        np.testing.assert_array_equal(res.out[:k, b], full.out[:k, b])
        assert not res.out[k:, b].any()
    assert (res.synops.sum(1) <= full.synops.sum(1)).all()
    assert res.synops.sum() < full.synops.sum()
    # the same on the stream
    s = N.EventStream(net, stop_rule=N.StopRule(beta))
    tb, ch, cnt = samples[int(np.argmin(expect))]
    s.feed(tb, ch, cnt)
    s.advance(40)
    assert s.stopped and s.steps_done == min(expect)
    assert s.finish(40).steps.tolist() == [min(expect)]
    with pytest.raises(N.EventNetworkError, match="thresholds"):
        N.run(net, samples, 40, stop_rule=N.StopRule(np.zeros(10)))


def test_operation_counts():
    model, net, gen = _small_net(seed=11)
    x = rand_input(gen, 25, 2, (16,), p=0.1)
    res = N.run(net, to_samples(x), 25, record=True)
    fan0 = (model[0].weight != 0).sum(0).numpy()  # [16] non-zero fan-out of every input channel
    fan2 = (model[2].weight != 0).sum(0).numpy()  # [20]
    assert fan0.min() < 20 or fan2.min() < 4  # the dyadic grid has zeros: they are not synapses
    entries = (x > 0).sum(dim=0).numpy()  # [B, 16] input (bin, channel) entries per channel
    hidden = res.spikes["1"].sum(axis=0)  # [B, 20] spikes per hidden neuron
    np.testing.assert_array_equal(res.synops[:, 0], entries @ fan0)
    np.testing.assert_array_equal(res.synops[:, 1], hidden.astype(np.int64) @ fan2)
    assert res.layers == ("1", "3")
    dense = N.dense_ops(net, 25)
    assert dense["1"] == (25 * 16 * 20, 25 * 20) and dense["3"] == (25 * 20 * 4, 25 * 4)
    assert (res.updates[:, 0] <= 25 * 20).all() and (res.updates[:, 1] == 25 * 4).all()  # LI readout: every step
    # a silent input costs nothing in the hidden layer (no bias): no update, no synop
    quiet = N.run(net, [(np.zeros(0, np.int64), np.zeros(0, np.int64))], 25)
    assert quiet.synops.sum() == 0 and quiet.updates[0, 0] == 0


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


def test_export_errors_name_the_layer():
    with pytest.raises(ExportError, match=r"'1'.*BatchNorm1d.*batch norm"):
        export_event_network(Sequential(Linear(4, 4), BatchNorm1d(4), LIF()), 4)
    with pytest.raises(ExportError, match=r"'1'.*recurrent"):
        export_event_network(Sequential(Linear(4, 4), LIF(recurrent=True, shape=4)), 4)
    with pytest.raises(ExportError, match=r"'2'.*ReLU"):
        export_event_network(Sequential(Linear(4, 4), LIF(), nn.ReLU()), 4)
    with pytest.raises(ExportError, match=r"'0'.*expects 5 features"):
        export_event_network(Sequential(Linear(5, 4), LIF()), 4)
    with pytest.raises(ExportError, match="followed by its neurons"):
        export_event_network(Sequential(Linear(4, 4), Linear(4, 4), LIF()), 4)
    with pytest.raises(ExportError, match="membrane"):
        export_event_network(Sequential(Linear(4, 4), LI(), Linear(4, 2), LIF()), 4)
    with pytest.raises(ExportError, match="padding"):
        export_event_network(Sequential(Conv2d(1, 2, 3), LIF(), AvgPool2d(2, padding=1)), (1, 8, 8))


def test_run_rejects_bad_samples():
    _, net, _ = _small_net()
    with pytest.raises(N.EventNetworkError, match=r"sample 1: entry 0 \(t_bin=0, channel=16\)"):
        N.run(net, [([0], [1]), ([0], [16])], 5)
    with pytest.raises(N.EventNetworkError, match="t_bin=5"):
        N.run(net, [([5], [1])], 5)
    with pytest.raises(N.EventNetworkError, match="equal length"):
        N.run(net, [([0, 1], [1])], 5)
    with pytest.raises(N.EventNetworkError, match="sensor_size and dt"):
        N.run(net, [np.zeros(3, dtype=[("x", int), ("y", int), ("t", int), ("p", int)])], 5)
    with pytest.raises(N.EventNetworkError, match="float"):
        N.Dense(np.zeros((2, 3), np.int32))


def test_events_package_never_imports_torch():
    import subprocess
    import sys

    code = ("import sys; import spike.events.network as m; "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


# ------------------------------------------------------------------------------------------------
# real N-MNIST samples with a trained model
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nmnist_root() -> Path:
    root = SHARED / "slayerPytorch" / "NMNISTsmall"
    if not (root / "train1K.txt").is_file():
        pytest.skip(f"real N-MNIST samples not found at {root}")
    return root


def _load_nmnist(root: Path, listing: str, n: int, dt: int, n_steps: int):
    from spike.io.readers import read_nmnist

    rows = np.loadtxt(root / listing, dtype=np.int64, comments="#", ndmin=2)[:n]
    samples, labels = [], []
    for sample, label in rows:
        ev = read_nmnist(root / f"{sample}.bs2", sensor_size=(34, 34, 2)).events
        samples.append(N.bin_events(ev, (34, 34, 2), dt, n_steps=n_steps))
        labels.append(int(label))
    return samples, np.asarray(labels)


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_nmnist_trained_model(nmnist_root):
    t_steps, dt = 30, 10_000  # 30 bins of 10 ms
    train, y_train = _load_nmnist(nmnist_root, "train1K.txt", 300, dt, t_steps)
    test, _ = _load_nmnist(nmnist_root, "test100.txt", 8, dt, t_steps)
    x_train = torch.from_numpy(np.stack([N.to_dense(s, t_steps, 2312) for s in train], 1))  # [T, N, 2312]
    x_train = x_train.reshape(t_steps, -1, 2, 34, 34)  # [T, N, P, H, W]
    torch.manual_seed(0)
    model = Sequential(Flatten(), Linear(2312, 64), LIF(tau=5.0), Linear(64, 10), LI(tau=10.0))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    yt = torch.from_numpy(y_train)
    for epoch in range(4):
        for idx in torch.randperm(len(train)).split(50):
            loss = nn.functional.cross_entropy(model(x_train[:, idx]).out.mean(0), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x_train).out.mean(0).argmax(1) == yt).float().mean().item()
    assert acc > 0.5  # it learned something: the comparison runs on a meaningful network
    x_test = torch.from_numpy(np.stack([N.to_dense(s, t_steps, 2312) for s in test], 1)).reshape(t_steps, -1, 2, 34, 34)
    # float64: bit-identical
    compare(copy.deepcopy(model).double(), x_test.double(), (2, 34, 34))
    # float32, weights quantised to multiples of 2**-10: every partial sum is exact -> bit-identical
    mq = copy.deepcopy(model)
    with torch.no_grad():
        for m in mq.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.round(m.weight * 1024) / 1024)
                m.bias.copy_(torch.round(m.bias * 1024) / 1024)
    with torch.no_grad():
        bound = float((x_test.reshape(t_steps, -1, 2312).abs() @ mq[1].weight.abs().t()).max()
                      + mq[1].bias.abs().max())
    assert bound * 1024 < 2 ** 24  # the premise: every partial sum fits the float32 mantissa
    ref, res, _ = compare(mq, x_test, (2, 34, 34))
    assert ref.records["2"][0].sum() > 100
    # float32 as trained: readout to 1e-5 where spikes agree
    with torch.no_grad():
        ref = model(x_test, record=True)
    res = N.run(export_event_network(model, (2, 34, 34)), test, t_steps, record=True)
    diff = int((res.spikes["2"] != ref.records["2"][0].numpy()).sum())
    print(f"N-MNIST: train acc {acc:.2f}, float32 spikes differing: {diff} of {int(ref.records['2'][0].sum())}")
    assert diff <= 1e-3 * int(ref.records["2"][0].sum())
    if diff == 0:
        np.testing.assert_allclose(res.out, ref.out.numpy(), rtol=0, atol=1e-5)
