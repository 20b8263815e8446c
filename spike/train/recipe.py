"""From a :class:`~spike.core.config.Config` to a trained, evaluated, plotted run (what ``spike train`` does)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from spike.core.config import Config, ConfigError, config_from_dict, config_to_dict
from spike.data.builders import DataBundle, build_data, make_loaders
from spike.models import build_model
from spike.train.losses import get_loss
from spike.train.strategy import BPTT
from spike.train.trainer import Trainer, load_checkpoint, seed_everything, write_json

__all__ = ["resolve_device", "build_optimizer", "build_scheduler", "get_strategy", "train_from_config",
           "evaluate_checkpoint"]

log = logging.getLogger("spike")


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return dev


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    params = [p for p in model.parameters() if p.requires_grad]
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    raise ConfigError(f"[train] optimizer must be adam, adamw or sgd, got {t.optimizer!r}")


def build_scheduler(cfg: Config, optimizer, steps_per_epoch: int):
    """Returns ``(scheduler or None, interval)``."""
    t = cfg.train
    if t.scheduler == "none":
        return None, "epoch"
    if t.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t.epochs), "epoch"
    if t.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, t.epochs // 3), gamma=0.3), "epoch"
    if t.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=t.lr, total_steps=t.epochs * steps_per_epoch), \
            "batch"
    raise ConfigError(f"[train] scheduler must be cosine, onecycle, step or none, got {t.scheduler!r}")


def get_strategy(cfg: Config):
    if cfg.train.method == "bptt":
        return BPTT()
    raise ConfigError(f"[train] method {cfg.train.method!r} is not available; known: ['bptt']")


def run_dir(cfg: Config) -> Path:
    return Path(cfg.run.out_dir) / cfg.run.name


def train_from_config(cfg: Config, *, device: str | None = None, resume: bool = False,
                      out_dir: str | Path | None = None) -> dict:
    """Train, evaluate and plot as configured; returns the final metrics (also in ``metrics.json``)."""
    t_start = time.perf_counter()
    dev = resolve_device(device or cfg.run.device)
    seed_everything(cfg.run.seed, cfg.train.deterministic)
    get_loss(cfg.train.loss)  # fail early on a bad loss name
    strategy = get_strategy(cfg)
    data = build_data(cfg.data, cfg.run.seed)
    train_loader, test_loader = make_loaders(data, cfg.data, cfg.run.seed)
    model = build_model(cfg.model, data.input_shape, data.n_classes).to(dev)
    optimizer = build_optimizer(cfg, model)
    scheduler, interval = build_scheduler(cfg, optimizer, len(train_loader))
    out = Path(out_dir) if out_dir is not None else run_dir(cfg)
    trainer = Trainer(model, optimizer, get_loss(cfg.train.loss), loss_name=cfg.train.loss, scheduler=scheduler,
                      scheduler_interval=interval, strategy=strategy, out_dir=out, epochs=cfg.train.epochs,
                      seed=cfg.run.seed, grad_clip=cfg.train.grad_clip, device=dev, progress=cfg.run.progress,
                      checkpoint_every=cfg.train.checkpoint_every,
                      extra_state={"config": config_to_dict(cfg), "data": _data_meta(data)})
    final = trainer.fit(train_loader, test_loader, resume=resume)
    metrics = {"test_accuracy": final.get("test_accuracy"), "test_loss": final.get("test_loss"),
               "train_accuracy": final.get("train_accuracy"), "epochs": len(trainer.history),
               "wall_time_s": round(time.perf_counter() - t_start, 2), "device": str(dev),
               "run_dir": str(out), "config": cfg.run.name}
    if cfg.run.plots:
        metrics["plots"] = save_plots(trainer, data, test_loader, out, dev)
    write_json(out / "metrics.json", metrics)
    return metrics


def _data_meta(data: DataBundle) -> dict:
    return {"name": data.name, "input_shape": list(data.input_shape), "n_classes": data.n_classes,
            "n_time_bins": data.n_time_bins, "dt_us": data.dt_us}


@torch.no_grad()
def save_plots(trainer: Trainer, data: DataBundle, test_loader, out: Path, dev) -> list[str]:
    from spike.train.plots import plot_raster, plot_training_curves

    paths = [str(plot_training_curves(trainer.history, out / "training_curves.png", title=str(out.name)))]
    x, y = next(iter(test_loader))
    model = trainer.model
    model.eval()
    res = model(x[:, :1].to(dev), record=True)
    layers = {"input": x[:, 0].reshape(x.shape[0], -1).cpu().numpy()}
    for name, (spk, _v) in (res.records or {}).items():
        if spk is not None and bool(((spk == 0) | (spk == 1)).all()):
            layers[f"layer {name}"] = spk[:, 0].reshape(spk.shape[0], -1).cpu().numpy()
    dt = data.dt_us / 1000.0 if data.dt_us else 1.0
    paths.append(str(plot_raster(layers, out / "raster.png", dt=dt, unit="ms" if data.dt_us else "step",
                                 title=f"test sample 0 (label {int(y[0])})")))
    return paths


def evaluate_checkpoint(path: str | Path, *, device: str | None = None) -> dict:
    """Rebuild model and data from a checkpoint's stored config and evaluate on the test split."""
    ckpt = load_checkpoint(path)
    cfg = config_from_dict(ckpt["config"], source=str(path))
    dev = resolve_device(device or cfg.run.device)
    data = build_data(cfg.data, cfg.run.seed)
    _, test_loader = make_loaders(data, cfg.data, cfg.run.seed)
    model = build_model(cfg.model, data.input_shape, data.n_classes).to(dev)
    model.load_state_dict(ckpt["model"])
    trainer = Trainer(model, build_optimizer(cfg, model), get_loss(cfg.train.loss), loss_name=cfg.train.loss,
                      device=dev, progress=False, epochs=max(1, cfg.train.epochs))
    t0 = time.perf_counter()
    m = trainer.evaluate(test_loader)
    result = {"test_accuracy": m["test_accuracy"], "test_loss": m["test_loss"], "n_test": len(data.test),
              "epoch": int(ckpt["epoch"]), "checkpoint": str(path), "eval_time_s": round(time.perf_counter() - t0, 3)}
    p = Path(path)
    write_json((p if p.is_dir() else p.parent) / "eval.json", result)
    return result
