"""The figures a paper reader sees: raster.png, training_curves.png, anytime.png.

The tests read the returned matplotlib figures: panel titles name the layer type and position, say
which neurons are drawn, carry whole-layer rates and the input's real event count, the readout
shows the prediction, accuracy reads in %, and no text leaves the figure.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")

from spike.inference.anytime import AnytimeReport, SweepPoint, anytime_figure, plot_anytime  # noqa: E402
from spike.neurons import LI, LIF  # noqa: E402
from spike.synapses import Flatten, Linear, Sequential  # noqa: E402
from spike.train.plots import (RasterData, RasterLayer, RasterReadout, layer_stats, plot_raster,  # noqa: E402
                               plot_training_curves, raster_figure, shown_neurons, training_curves_figure)
from spike.train.raster import collect_raster  # noqa: E402


def _panels(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _titles(fig) -> list[str]:
    return [ax.get_title(loc="left") + ax.get_title() for ax in _panels(fig)]


def _texts_outside(fig) -> list[str]:
    """What is drawn outside the figure (1 px tolerance): the axes (with their tick labels, titles and
    legends), figure legends and the suptitle, each by its tight bounding box."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    fb = fig.bbox
    parts = [(ax.get_title(loc="left") or ax.get_title() or ax.get_label(), ax) for ax in fig.axes]
    parts += [("legend", leg) for leg in fig.legends] + [(t.get_text(), t) for t in fig.texts]  # with suptitle
    bad = []
    for name, artist in parts:
        bb = artist.get_tightbbox(r) if hasattr(artist, "get_tightbbox") else artist.get_window_extent(r)
        if bb is not None and (bb.x0 < fb.x0 - 1 or bb.y0 < fb.y0 - 1 or bb.x1 > fb.x1 + 1 or bb.y1 > fb.y1 + 1):
            bad.append(name)
    return bad


def _close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def _data(layer_values, x=None, dt_ms=None, readout=None):
    x = np.zeros((layer_values.shape[0], 8)) if x is None else x
    return RasterData(x, (x.shape[1],), (RasterLayer("LIF (layer 2)", layer_values, (layer_values.shape[1],)),),
                      readout, dt_ms, "sample 0")


# --- raster: whole-layer numbers ---------------------------------------------------------------------
def test_rates_are_over_the_whole_layer_not_the_shown_subset():
    t, n, active = 10, 300, 100
    s = np.zeros((t, n))
    s[:, :active] = 1.0  # 100 of 300 neurons fire every step: whole-layer rate 1/3 per step
    fig = raster_figure(_data(s, dt_ms=2.0), max_neurons=128)
    title = _titles(fig)[1]
    st = layer_stats(s, 2.0)
    assert st["rate_per_step"] == pytest.approx(active / n)
    assert f"{active / n:.3g} spikes/step" in title and f"{1000 * active / n / 2.0:.3g} Hz" in title
    assert f"{active / 128:.3g}" not in title  # the mean over the 128 drawn neurons is not reported
    assert f"{int(s.sum()):,} spikes" in title and f"{n - active} never fire" in title
    _close(fig)


def test_subset_is_said_only_when_the_layer_is_larger_than_shown():
    rng = np.random.default_rng(0)
    big = (rng.random((20, 300)) < 0.2).astype(float)
    fig = raster_figure(_data(big), max_neurons=64)
    assert "showing the 64 most active of 300" in _titles(fig)[1]
    ax = _panels(fig)[1]
    assert ax.get_ylim()[1] == pytest.approx(63.5)  # exactly 64 rows drawn
    _close(fig)
    fig = raster_figure(_data(big[:, :64]), max_neurons=64)
    assert "showing" not in _titles(fig)[1]
    _close(fig)


def test_shown_neurons_are_the_most_active_in_index_order():
    s = np.zeros((5, 6))
    s[:, 4] = 1
    s[:3, 1] = 1
    s[:1, 5] = 1
    idx, words = shown_neurons(s, 2)
    assert idx.tolist() == [1, 4] and "2 most active of 6" in words


def test_input_count_is_the_sum_of_binned_events_not_the_nonzero_bins():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, (12, 500)).astype(float)  # many bins hold 2 or 3 events
    fig = raster_figure(_data(np.zeros((12, 4)), x=x), max_neurons=100)
    head = _titles(fig)[0]
    assert int(x.sum()) != int((x > 0).sum())
    assert f"{int(x.sum()):,} events" in head and f"{int((x > 0).sum()):,} non-empty bins" in head
    assert "showing the 100 most active of 500" in head
    _close(fig)


def test_non_count_input_is_not_called_events():
    x = np.full((4, 3), 0.25)
    fig = raster_figure(_data(np.zeros((4, 2)), x=x))
    assert "events" not in _titles(fig)[0] and "not event counts" in _titles(fig)[0]
    _close(fig)


def test_time_axis_is_in_ms_when_dt_is_known_else_in_steps():
    s = np.eye(6)
    fig = raster_figure(_data(s, dt_ms=15.0))
    assert fig.axes[0].get_xlabel().startswith("time (ms")
    assert fig.axes[0].get_xlim() == pytest.approx((0.0, 90.0))
    _close(fig)
    fig = raster_figure(_data(s))
    assert fig.axes[0].get_xlabel() == "time (steps)" and "Hz" not in _titles(fig)[1]
    _close(fig)


def test_readout_panel_names_prediction_and_label_and_stays_inside(tmp_path):
    v = np.cumsum(np.random.default_rng(2).normal(size=(10, 5)), 0)
    pred = int(v.mean(0).argmax())
    wrong = (pred + 1) % 5
    ro = RasterReadout("LI (layer 4)", v, pred, wrong, "highest mean membrane")
    fig = raster_figure(_data(np.eye(10)[:, :8], dt_ms=1.0, readout=ro))
    title = _titles(fig)[-1]
    assert f"predicted {pred} (highest mean membrane)" in title and f"true label {wrong}: wrong" in title
    labels = [t.get_text() for t in _panels(fig)[-1].get_legend().get_texts()]
    assert f"class {pred}: predicted" in labels and f"class {wrong}: true label" in labels
    assert f"true label {wrong}, predicted {pred}" in fig.get_suptitle()
    assert _texts_outside(fig) == []
    _close(fig)
    assert plot_raster(_data(np.eye(10)[:, :8], readout=ro), tmp_path / "r.png").stat().st_size > 10_000


# --- raster: collected from a real model ----------------------------------------------------------------
def test_collect_raster_names_layers_by_type_and_position():
    torch.manual_seed(0)
    net = Sequential(Flatten(), Linear(2 * 3 * 3, 40), LIF(tau=5.0, backend="reference"), Linear(40, 4),
                     LI(tau=5.0, backend="reference"))
    x = torch.poisson(torch.full((15, 3, 2, 3, 3), 1.5))  # binned counts, many > 1
    y = torch.tensor([2, 0, 1])
    net.train()
    d = collect_raster(net, x, y, loss_name="mean_membrane", dt_ms=10.0, sample=1)
    assert net.training  # the mode is restored
    assert [layer.name for layer in d.layers] == ["LIF (layer 2)"] and d.layers[0].values.shape == (15, 40)
    assert d.readout.name == "LI (layer 4)" and d.readout.values.shape == (15, 4)
    with torch.no_grad():
        net.eval()
        mean = net(x[:, 1:2]).out.mean(0)[0]  # [C]: what the mean_membrane loss predicts from
    assert d.readout.predicted == int(mean.argmax()) and d.readout.label == 0
    np.testing.assert_allclose(d.readout.scores, mean.double().numpy(), rtol=1e-6)
    assert d.input.sum() == pytest.approx(float(x[:, 1].sum())) and d.input_shape == (2, 3, 3)
    fig = raster_figure(d, max_neurons=16)
    titles = _titles(fig)
    assert titles[1].startswith("LIF (layer 2): 40 neurons") and "layer 13" not in " ".join(titles)
    assert f"{int(x[:, 1].sum()):,} events" in titles[0]
    assert _texts_outside(fig) == []
    _close(fig)


def test_soft_spikes_are_shown_as_values_and_synapse_currents_are_left_out():
    from spike.neurons import UltraLIF
    from spike.synapses.delays import DelayedLinear

    torch.manual_seed(0)
    net = Sequential(Flatten(), DelayedLinear(6, 12, max_delay=2), UltraLIF(), Linear(12, 3), LI(tau=5.0))
    d = collect_raster(net, torch.rand(6, 1, 6), torch.tensor([1]), loss_name="mean_membrane")
    assert [layer.name for layer in d.layers] == ["UltraLIF (layer 2)"]  # no DelayedLinear panel
    fig = raster_figure(d)
    assert "soft spikes" in _titles(fig)[1] and "Hz" not in _titles(fig)[1]
    _close(fig)


# --- training curves ----------------------------------------------------------------------------------------
def test_training_curves_show_accuracy_in_percent(tmp_path):
    hist = [{"epoch": 1, "train_loss": 0.9, "train_accuracy": 0.5, "test_loss": 0.7, "test_accuracy": 0.625},
            {"epoch": 2, "train_loss": 0.5, "train_accuracy": 0.75, "test_loss": 0.4, "test_accuracy": 0.875}]
    fig = training_curves_figure(hist, "run", "mean_membrane")
    acc = fig.axes[1]
    assert "%" in acc.get_ylabel()
    ys = {line.get_label(): list(line.get_ydata()) for line in acc.get_lines()}
    assert ys["test"] == [62.5, 87.5] and ys["train"] == [50.0, 75.0]
    assert [float(t) for t in fig.axes[0].get_xticks()] == [1.0, 2.0]  # whole epochs only
    assert _texts_outside(fig) == []
    _close(fig)
    assert plot_training_curves(hist[:1], tmp_path / "c.png").is_file()


# --- anytime ---------------------------------------------------------------------------------------------------
def _report(n=7, seed=0):
    rng = np.random.default_rng(seed)
    eps = [0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2][:n]
    pts = []
    for i, e in enumerate(eps):
        steps = 20.0 / (1 + 2 * i)
        pts.append(SweepPoint(e, 0.92 - 0.02 * i, steps, 20.0 / steps, 1.0 - 0.02 * i,
                              0.02 * steps + rng.normal(0, 0.05), (math.inf,) * 20))
    return AnytimeReport(0.92, 20, 360, 100, "final", tuple(pts), full_wall_time_s=0.45, dense_wall_time_s=0.14)


def test_anytime_wall_panel_does_not_join_points_and_reads_percent(tmp_path):
    rep = _report()
    fig = anytime_figure(rep, "quickstart: anytime inference (final)")
    steps_ax, wall_ax = fig.axes[:2]
    walls = sorted(p.wall_time_s for p in rep.points)
    for line in wall_ax.get_lines():  # only reference lines (horizontal or vertical), never the data
        xs, ys = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        assert len(xs) <= 2 and (np.ptp(xs) == 0 or np.ptp(ys) == 0)
    offs = np.concatenate([c.get_offsets() for c in wall_ax.collections])
    assert sorted(offs[:, 0].tolist()) == pytest.approx(sorted(walls + [0.45]))
    assert sorted(offs[:, 1].tolist()) == pytest.approx(sorted([100 * p.accuracy for p in rep.points] + [92.0]))
    for ax in (steps_ax, wall_ax):
        assert ax.get_ylabel() == "test accuracy (%)"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(lab.startswith("ε = 0.01:") and "%" in lab for lab in labels)
    assert _texts_outside(fig) == []
    _close(fig)
    assert plot_anytime(rep, tmp_path / "a.png").stat().st_size > 10_000


def test_anytime_without_wall_times_has_one_panel_inside_the_figure():
    rep = _report()
    rep = AnytimeReport(rep.full_accuracy, rep.full_steps, rep.n_test, rep.n_calibration, rep.target,
                        tuple(SweepPoint(**{**p.__dict__, "wall_time_s": None}) for p in rep.points))
    fig = anytime_figure(rep)
    assert len(fig.axes) == 1 and _texts_outside(fig) == []
    _close(fig)


def test_drawing_never_switches_the_users_backend(tmp_path):
    """A notebook's backend stays: figures are made without pyplot (run in a fresh interpreter)."""
    import subprocess
    import sys as _sys

    code = f"""
import sys, matplotlib
matplotlib.use("svg")
from spike.train.plots import plot_training_curves
hist = [{{"epoch": 1, "train_loss": 1.0, "test_accuracy": 0.5}}, {{"epoch": 2, "train_loss": 0.5, "test_accuracy": 0.7}}]
p = plot_training_curves(hist, {str(tmp_path / 'c.png')!r})
assert p.stat().st_size > 1000
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules
print("ok")
"""
    out = subprocess.run([_sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
