"""What ``spike train`` plots at the end of a run: one test sample through the model, recorded.

:func:`collect_raster` runs a model on one sample with ``record=True`` and turns the records into a
:class:`~spike.train.plots.RasterData` (numpy, whole layers); :func:`save_run_plots` writes
``training_curves.png`` and ``raster.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from spike.train.losses import scores
from spike.train.plots import RasterData, RasterLayer, RasterReadout, plot_raster, plot_training_curves

__all__ = ["PREDICTION_RULES", "collect_raster", "save_run_plots"]

#: How each loss turns the output sequence into a prediction (see :func:`spike.train.losses.scores`).
PREDICTION_RULES = {"count": "most output spikes", "mean_membrane": "highest mean membrane",
                    "max_membrane": "highest peak membrane", "sum_softmax": "highest summed softmax",
                    "per_step": "highest mean output"}


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", None)  # DistributedDataParallel
    return inner if isinstance(inner, nn.Module) else model


def _label(modules: dict[str, nn.Module], name: str) -> tuple[str, nn.Module | None]:
    """``"LIF (layer 2)"`` for ``model[2]``; the record's own name when it is not a submodule."""
    mod = modules.get(name)
    if mod is None:
        return name, None
    where = f"layer {name}" if name.isdigit() else name
    return f"{type(mod).__name__} ({where})", mod


def _threshold(mod: nn.Module | None) -> float | None:
    params = getattr(mod, "params", None)
    if params is None:
        return None
    try:
        p = params()
    except Exception:  # a module whose params() needs arguments: no threshold line
        return None
    if getattr(p, "reset", None) == "none":  # a leaky integrator never fires
        return None
    v_th = getattr(p, "v_th", None)
    return float(v_th) if v_th is not None else None


def _np(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


@torch.no_grad()
def collect_raster(model: nn.Module, x: Tensor, y: Tensor | None = None, *, loss_name: str = "mean_membrane",
                   dt_ms: float | None = None, sample: int = 0, sample_name: str = "") -> RasterData:
    """Run ``model`` on sample ``sample`` of ``x [T, B, ...]`` (eval mode) and collect what the raster shows.

    Neuron layers are the recorded layers with a membrane or binary spikes (synapses such as
    ``DelayedLinear`` record currents without a membrane and are left out); the readout is the
    recorded layer whose output is the model's output, and the prediction is the argmax of
    :func:`~spike.train.losses.scores` for ``loss_name``, as in training.

    Args:
        model: a model returning ``SeqOutput(out, state, records)`` when called with ``record=True``.
        x: a batch ``[T, B, ...]``; only sample ``sample`` is run.
        y: the labels ``[B]`` (optional).
        loss_name: the training loss (decides how the prediction is read).
        dt_ms: bin length in ms, if known.
        sample: which sample of the batch.
        sample_name: how the title names it (default ``"sample {sample}"``).
    """
    was_training = model.training
    model.eval()
    try:
        xs = x[:, sample:sample + 1]  # [T, 1, ...]
        res = model(xs, record=True)
    finally:
        model.train(was_training)
    out = res.out if hasattr(res, "out") else res[0]
    records = dict(getattr(res, "records", None) or {})
    modules = dict(_unwrap(model).named_modules())
    sc = scores(loss_name, out)[0]  # [C]
    pred = int(sc.argmax())
    label = int(y[sample]) if y is not None else None
    ro_name = next((k for k in reversed(list(records)) if records[k][0] is out), None)
    layers = []
    for name, (spk, v) in records.items():
        if name == ro_name or spk is None:
            continue
        s = spk[:, 0].reshape(spk.shape[0], -1)  # [T, 1, ...] -> [T, N]
        if v is None and not bool(((s == 0) | (s == 1)).all()):
            continue  # a synapse's currents, not spikes
        layers.append(RasterLayer(_label(modules, name)[0], _np(s), tuple(spk.shape[2:])))
    if ro_name is not None:
        spk, v = records[ro_name]
        name, mod = _label(modules, ro_name)
        trace = v if v is not None else spk
        values, quantity, v_th = _np(trace[:, 0].reshape(trace.shape[0], -1)), "membrane", _threshold(mod)
    else:  # an output that is not a recorded layer (e.g. forward-forward class scores [1, B, C])
        name, values, quantity, v_th = "network output", _np(out[:, 0].reshape(out.shape[0], -1)), "class score", None
    rule = PREDICTION_RULES.get(loss_name, f"argmax of {loss_name}") if ro_name is not None else "highest class score"
    readout = RasterReadout(name, values, pred, label, rule, quantity, v_th, _np(sc))
    return RasterData(_np(x[:, sample].reshape(x.shape[0], -1)), tuple(x.shape[2:]), tuple(layers), readout,
                      dt_ms, sample_name or f"sample {sample}")


def save_run_plots(trainer, data, test_loader, out: Path, dev: torch.device | str) -> list[str]:
    """``training_curves.png`` from ``trainer.history`` and ``raster.png`` of test sample 0."""
    loss_name = getattr(trainer, "loss_name", "mean_membrane")
    paths = [str(plot_training_curves(trainer.history, out / "training_curves.png", title=str(out.name),
                                      loss_name=loss_name))]
    x, y = next(iter(test_loader))
    dt_ms = data.dt_us / 1000.0 if data.dt_us else None
    raster = collect_raster(trainer.model, x[:, :1].to(dev), y[:1], loss_name=loss_name, dt_ms=dt_ms,
                            sample_name="test sample 0")
    paths.append(str(plot_raster(raster, out / "raster.png")))
    return paths
