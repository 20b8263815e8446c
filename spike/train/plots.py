"""Figures users look at: training curves and spike rasters (matplotlib, Agg backend, no screen)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_training_curves", "plot_raster"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Loss and accuracy per epoch (train and test) side by side."""
    plt = _plt()
    path = Path(path)
    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for key, ax in (("loss", a1), ("accuracy", a2)):
        for split, style in (("train", "-o"), ("test", "-s")):
            vals = [h.get(f"{split}_{key}") for h in history]
            if any(v is not None for v in vals):
                ax.plot(ep, vals, style, ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_raster(layers: dict[str, np.ndarray], path: str | Path, dt: float = 1.0, unit: str = "step",
                title: str = "", max_neurons: int = 400) -> Path:
    """One raster panel per layer; ``layers`` maps a name to spikes ``[T, N]`` (one sample)."""
    plt = _plt()
    path = Path(path)
    n = len(layers)
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.6 + 1.4 * n), sharex=True, squeeze=False)
    for ax, (name, s) in zip(axes[:, 0], layers.items()):
        s = np.asarray(s).reshape(s.shape[0], -1)  # [T, N]
        if s.shape[1] > max_neurons:  # show the most active neurons, in index order
            s = s[:, np.sort(np.argsort(-(s > 0).sum(0), kind="stable")[:max_neurons])]
        t_idx, n_idx = np.nonzero(s > 0)
        ax.scatter(t_idx * dt, n_idx, s=2, marker="|", color="k")
        ax.set_ylabel(f"{name}\nneuron")
        ax.set_ylim(-0.5, s.shape[1] - 0.5)
        ax.set_title(f"{name}: {int((s > 0).sum())} spikes, rate {float((s > 0).mean()):.3f}/step", fontsize=8)
    axes[-1, 0].set_xlabel(f"time ({unit})")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
