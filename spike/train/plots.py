"""Figures users look at: training curves and spike rasters (matplotlib ``Figure`` objects, no pyplot).

Each figure has a ``*_figure`` function that returns the matplotlib ``Figure`` (for tests and
notebooks) and a ``plot_*`` function that saves it and closes it. Numbers printed on a figure are
computed here from the whole arrays passed in (every neuron of a layer, every time step), never
from the subset of neurons drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RasterLayer", "RasterReadout", "RasterData", "layer_stats", "shown_neurons", "raster_figure",
           "plot_raster", "training_curves_figure", "plot_training_curves"]


def _plt():
    from spike.core.figures import figures

    return figures()


# -- training curves --------------------------------------------------------------------------------
def training_curves_figure(history: list[dict], title: str = "", loss_name: str = "") -> Any:
    """Loss and accuracy (in %) per epoch (train, validation, and test where it was evaluated every epoch),
    side by side; returns the ``Figure``."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
    for key, ax, scale in (("loss", a1, 1.0), ("accuracy", a2, 100.0)):
        for split, style in (("train", "-o"), ("val", "-^"), ("test", "-s")):
            vals = [h.get(f"{split}_{key}") for h in history]
            if any(v is not None for v in vals):
                ax.plot(ep, [np.nan if v is None else scale * v for v in vals], style, ms=4, label=split)
        ax.set_xlabel("epoch")
        if 0 < len(ep) <= 12:  # a tick per epoch (the locator puts fractional ticks on a 1-epoch range)
            ax.set_xticks(ep)
            ax.set_xlim(min(ep) - 0.5, max(ep) + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend()
    a1.set_ylabel(f"loss ({loss_name})" if loss_name else "loss")
    a2.set_ylabel("accuracy (%)")
    if title:
        fig.suptitle(title)
    return fig


def plot_training_curves(history: list[dict], path: str | Path, title: str = "", loss_name: str = "") -> Path:
    """Save :func:`training_curves_figure` to ``path``."""
    return _save(training_curves_figure(history, title, loss_name), path)


# -- raster -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RasterLayer:
    """One neuron layer of one sample.

    Attributes:
        name: what the panel calls it, e.g. ``"LIF (layer 2)"`` (type and position in the model).
        values: spikes ``[T, N]`` of every neuron (binary, or soft spikes in ``[0, 1]``).
        shape: the layer's feature shape (``N = prod(shape)``), shown in the label.
    """

    name: str
    values: np.ndarray
    shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class RasterReadout:
    """The output units of one sample and the class the network predicts from them.

    Attributes:
        name: e.g. ``"LI (layer 4)"``.
        values: ``[T, C]`` membrane of the output units (or ``[1, C]`` class scores).
        predicted: the predicted class.
        label: the true class (``None`` if unknown).
        rule: how the prediction is read from the output, e.g. ``"highest mean membrane"``.
        quantity: ``"membrane"`` (traces over time) or ``"class score"`` (one value per class).
        v_th: firing threshold of a spiking readout (drawn as a line), else ``None``.
        scores: ``[C]`` the per-class values the prediction is the argmax of (printed for the
            predicted and the true class), or ``None``.
    """

    name: str
    values: np.ndarray
    predicted: int
    label: int | None = None
    rule: str = ""
    quantity: str = "membrane"
    v_th: float | None = None
    scores: np.ndarray | None = None


@dataclass(frozen=True)
class RasterData:
    """Everything :func:`raster_figure` draws for one sample.

    Attributes:
        input: the binned input ``[T, N_in]`` (event counts per bin and channel).
        input_shape: the input's feature shape (e.g. ``(2, 34, 34)``).
        layers: the spiking layers, input side first.
        readout: the output units and the prediction, or ``None``.
        dt_ms: bin length in ms (``None``: time is in steps and rates in spikes/step).
        sample: how the sample is named in the title.
    """

    input: np.ndarray
    input_shape: tuple[int, ...]
    layers: tuple[RasterLayer, ...] = ()
    readout: RasterReadout | None = None
    dt_ms: float | None = None
    sample: str = "sample 0"


def layer_stats(values: np.ndarray, dt_ms: float | None = None) -> dict:
    """Whole-layer numbers of ``values [T, N]``: total, mean per neuron and step, Hz, silent neurons."""
    v = np.asarray(values, dtype=np.float64).reshape(values.shape[0], -1)  # [T, N]
    t, n = v.shape
    total = float(v.sum())
    per_step = total / (t * n) if t * n else 0.0
    return {"n": n, "steps": t, "total": total, "rate_per_step": per_step,
            "rate_hz": per_step * 1000.0 / dt_ms if dt_ms else None,
            "silent": int((v.sum(0) == 0).sum()), "nonzero_bins": int((v != 0).sum())}


def shown_neurons(values: np.ndarray, max_neurons: int) -> tuple[np.ndarray, str]:
    """Which columns of ``values [T, N]`` a panel draws, and the words that say so.

    All of them when ``N <= max_neurons``; else the ``max_neurons`` most active (largest sum over
    time, ties to the lower index), kept in index order.
    """
    n = values.shape[1]
    if n <= max_neurons:
        return np.arange(n), ""
    activity = np.asarray(values, dtype=np.float64).sum(0)  # [N]
    idx = np.sort(np.argsort(-activity, kind="stable")[:max_neurons])
    return idx, f"showing the {max_neurons} most active of {n}, in index order"


def _shape_words(shape: tuple[int, ...], n: int, unit: str) -> str:
    if len(shape) > 1:
        return f"{' × '.join(map(str, shape))} = {n} {unit}"
    return f"{n} {unit}"


def _rate_words(st: dict, what: str) -> str:
    per_step = f"{st['rate_per_step']:.3g} {what}/step"
    if st["rate_hz"] is None:
        return per_step
    return f"{st['rate_hz']:.3g} Hz ({per_step})"


def _time_axis(t: int, dt_ms: float | None) -> tuple[np.ndarray, float, str]:
    """Bin centres ``[T]``, the bin width and the axis label."""
    dt = dt_ms if dt_ms else 1.0
    label = f"time (ms; bins of {dt_ms:g} ms)" if dt_ms else "time (steps)"
    return (np.arange(t) + 0.5) * dt, dt, label


def _is_counts(v: np.ndarray) -> bool:
    return bool((v >= 0).all() and np.array_equal(v, np.round(v)))


def _input_panel(fig, ax, data: RasterData, max_neurons: int) -> None:
    x = np.asarray(data.input, dtype=np.float64).reshape(data.input.shape[0], -1)  # [T, N_in]
    t, n = x.shape
    st = layer_stats(x, data.dt_ms)
    idx, subset = shown_neurons(x, max_neurons)
    _, dt, _ = _time_axis(t, data.dt_ms)
    im = ax.imshow(x[:, idx].T, aspect="auto", origin="lower", interpolation="nearest", cmap="Greys",
                   vmin=0.0, extent=(0.0, t * dt, -0.5, len(idx) - 0.5))
    counts = _is_counts(x)
    fig.colorbar(im, ax=ax, pad=0.01, label="events per bin" if counts else "input value")
    chans = _shape_words(tuple(data.input_shape), n, "channels")
    if counts:
        head = (f"input ({chans}): {int(round(st['total'])):,} events (sum of the binned counts) "
                f"in {st['nonzero_bins']:,} non-empty bins; {_rate_words(st, 'events')} per channel")
    else:
        head = f"input ({chans}): sum {st['total']:.4g} (not event counts: values are not whole numbers)"
    ax.set_title(head + (f"\n{subset}" if subset else ""), fontsize=8, loc="left")
    ax.set_ylabel("input channel\n(k-th shown)" if subset else "input channel")


def _layer_panel(fig, ax, layer: RasterLayer, dt_ms: float | None, max_neurons: int) -> None:
    v = np.asarray(layer.values, dtype=np.float64).reshape(layer.values.shape[0], -1)  # [T, N]
    t, n = v.shape
    st = layer_stats(v, dt_ms)
    idx, subset = shown_neurons(v, max_neurons)
    centres, dt, _ = _time_axis(t, dt_ms)
    binary = bool(np.isin(v, (0.0, 1.0)).all())
    size = _shape_words(tuple(layer.shape), n, "neurons")
    if binary:
        ti, ni = np.nonzero(v[:, idx] > 0)
        ax.scatter(centres[ti], ni, s=4, marker="|", color="k", linewidths=0.8)
        ax.set_xlim(0.0, t * dt)
        head = (f"{layer.name}: {size}; {int(st['total']):,} spikes, mean rate {_rate_words(st, 'spikes')} "
                f"over all {n} neurons; {st['silent']} never fire")
    else:  # soft spikes (UltraLIF): show their value
        im = ax.imshow(v[:, idx].T, aspect="auto", origin="lower", interpolation="nearest", cmap="Greys",
                       vmin=0.0, vmax=max(1.0, float(v.max())), extent=(0.0, t * dt, -0.5, len(idx) - 0.5))
        fig.colorbar(im, ax=ax, pad=0.01, label="soft spike s")
        head = (f"{layer.name}: {size}; soft spikes s in [0, 1], mean s = {st['rate_per_step']:.3g} "
                f"over all {n} neurons")
    ax.set_ylim(-0.5, len(idx) - 0.5)
    ax.set_title(head + (f"\n{subset}" if subset else ""), fontsize=8, loc="left")
    ax.set_ylabel("neuron\n(k-th shown)" if subset else "neuron index")


def _readout_words(r: RasterReadout) -> str:
    truth = ""
    if r.label is not None:
        truth = f", true label {r.label}: " + ("correct" if r.label == r.predicted else "wrong")
    rule = r.rule
    if r.scores is not None:
        sc = np.asarray(r.scores, dtype=np.float64).reshape(-1)  # [C]
        rule += f"{': ' if rule else ''}{sc[r.predicted]:.3g}"
        if r.label is not None and r.label != r.predicted and 0 <= r.label < sc.size:
            rule += f" vs {sc[r.label]:.3g} for class {r.label}"
    rule = f" ({rule})" if rule else ""
    c = r.values.shape[-1]
    return f"readout {r.name}: {r.quantity} of the {c} output units; predicted {r.predicted}{rule}{truth}"


def _readout_panel(ax, r: RasterReadout, dt_ms: float | None) -> None:
    v = np.asarray(r.values, dtype=np.float64).reshape(r.values.shape[0], -1)  # [T, C]
    t, c = v.shape
    same = r.label is not None and r.label == r.predicted
    hi = {r.predicted: ("C0", "-", f"class {r.predicted}: predicted" + (" = true label" if same else ""))}
    if r.label is not None and not same and 0 <= r.label < c:
        hi[r.label] = ("C3", "--", f"class {r.label}: true label")
    if r.quantity == "membrane" and t > 1:
        centres, dt, _ = _time_axis(t, dt_ms)
        others = [k for k in range(c) if k not in hi]
        for j, k in enumerate(others):
            ax.plot(centres, v[:, k], color="0.6", lw=0.8, label="other classes" if j == 0 else None)
        for k, (col, ls, lab) in hi.items():
            ax.plot(centres, v[:, k], color=col, ls=ls, lw=2.0, label=lab)
        if r.v_th is not None:
            ax.axhline(r.v_th, color="k", lw=0.8, ls=":", label=f"threshold {r.v_th:g}")
        ax.set_xlim(0.0, t * dt)
        ax.set_ylabel("membrane (a.u.)")
    else:  # one score per class (e.g. forward-forward goodness)
        cols = [hi[k][0] if k in hi else "0.6" for k in range(c)]
        ax.bar(np.arange(c), v[-1], color=cols)
        ax.set_xticks(np.arange(c))
        ax.set_xlabel("class")
        ax.set_ylabel(r.quantity)
        for k, (col, _ls, lab) in hi.items():
            ax.bar([k], [v[-1, k]], color=col, label=lab)
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    ax.set_title(_readout_words(r), fontsize=8, loc="left")
    ax.grid(alpha=0.3)


def raster_figure(data: RasterData, max_neurons: int = 256, title: str = "") -> Any:
    """The input, every spiking layer and the readout of one sample; returns the ``Figure``.

    Panel titles carry whole-layer numbers (see :func:`layer_stats`) and say which neurons are drawn
    when a layer has more than ``max_neurons``.
    """
    plt = _plt()
    ro = data.readout
    ro_in_time = ro is not None and ro.quantity == "membrane" and ro.values.shape[0] > 1
    time_panels = 1 + len(data.layers) + int(ro_in_time)
    n = 1 + len(data.layers) + (ro is not None)
    fig = plt.figure(figsize=(10, 1.2 + 2.0 * n), layout="constrained")
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    for ax in axes[1:time_panels]:
        ax.sharex(axes[0])
    _input_panel(fig, axes[0], data, max_neurons)
    for ax, layer in zip(axes[1:], data.layers):
        _layer_panel(fig, ax, layer, data.dt_ms, max_neurons)
    if ro is not None:
        _readout_panel(axes[-1], ro, data.dt_ms)
    t_label = _time_axis(data.input.shape[0], data.dt_ms)[2]
    for ax in axes[:time_panels]:
        ax.set_xlabel(t_label, fontsize=8)
    head = title or data.sample
    if ro is not None:
        head += (f": true label {ro.label}, predicted {ro.predicted}" if ro.label is not None
                 else f": predicted {ro.predicted}")
    names = [layer.name for layer in data.layers] + ([ro.name] if ro is not None else [])
    where = "layer k = model[k] (position in the Sequential); " if any("(layer " in m for m in names) else ""
    fig.suptitle(f"{head}\n{where}rates are over every neuron of a layer and every time step", fontsize=9)
    return fig


def plot_raster(data: RasterData, path: str | Path, max_neurons: int = 256, title: str = "") -> Path:
    """Save :func:`raster_figure` to ``path``."""
    return _save(raster_figure(data, max_neurons, title), path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    try:
        fig.savefig(path, dpi=120)
    finally:
        _plt().close(fig)
    return path
