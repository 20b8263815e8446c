"""From a :class:`~spike.core.config.Config` to a trained, evaluated, plotted run (what ``spike train`` does)."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import time
from pathlib import Path

import torch

from spike.core.config import (Config, ConfigError, check_device, config_from_dict, config_to_dict,
                               validate_config)
from spike.data.builders import DataBundle, build_data, make_loaders, split_validation
from spike.models import build_model
from spike.train.losses import get_loss
from spike.train.strategy import BPTT
from spike.train.trainer import (CheckpointError, Trainer, load_checkpoint, load_model_state, seed_everything,
                                 write_json)

__all__ = ["resolve_device", "build_optimizer", "build_scheduler", "get_strategy", "build_model_for", "METHODS",
           "train_from_config", "config_differences", "RESUME_MAY_DIFFER",
           "evaluate_checkpoint", "EvalRun", "load_for_eval", "stored_config", "train_seeds"]

log = logging.getLogger("spike")


def resolve_device(name: str, what: str = "device") -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` if available.

    Raises:
        ConfigError: ``<what> = "<name>": ...`` for a malformed or unavailable device.
    """
    check_device(name, what)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{what} = {name!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"{what} = {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"{what} = {name!r}: MPS is not available on this machine")
    return dev


def _device_of(device: str | None, cfg: Config, source: str = "[run] device") -> torch.device:
    """The ``--device`` argument when given, else the config's ``[run] device``, each named in errors."""
    return resolve_device(device, "--device") if device else resolve_device(cfg.run.device, source)


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The configured optimiser; with ``[train] lr_positions >= 0`` and delayed layers in the model, two
    parameter groups: ``"weights"`` (everything else, ``lr``) and ``"positions"`` (``lr_positions``, no
    weight decay), as in Hammouamri et al. 2024."""
    t = cfg.train
    params = [p for p in model.parameters() if p.requires_grad]
    groups = _delay_param_groups(cfg, model)
    if groups is not None:
        params = groups  # type: ignore[assignment]
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    raise ConfigError(f"[train] optimizer must be adam, adamw or sgd, got {t.optimizer!r}")


def _delay_param_groups(cfg: Config, model: torch.nn.Module) -> list[dict] | None:
    from spike.synapses.delays import split_delay_parameters

    t = cfg.train
    if t.lr_positions < 0:
        return None
    others, positions = split_delay_parameters(model)
    if not positions:
        return None
    return [{"params": others, "name": "weights"},
            {"params": positions, "lr": t.lr_positions, "weight_decay": 0.0, "name": "positions"}]


def _lr_factor(kind: str, step: int, steps_per_epoch: int, epochs: int) -> float:
    """LR multiplier at batch ``step`` for one parameter group (closed forms of the torch schedulers:
    per-epoch cosine and step, per-batch one-cycle without momentum cycling)."""
    epoch = step // max(1, steps_per_epoch)
    if kind == "none":
        return 1.0
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch, epochs) / epochs))
    if kind == "step":
        return 0.3 ** (epoch // max(1, epochs // 3))
    if kind == "onecycle":  # torch OneCycleLR defaults: pct_start 0.3, div 25, final div 1e4, cos
        total = epochs * steps_per_epoch
        lo, hi = 1.0 / 25.0, 1.0
        end1 = 0.3 * total - 1
        if step <= end1:
            pct, a, b = step / max(end1, 1e-12), lo, hi
        else:
            pct, a, b = (step - end1) / max(total - 1 - end1, 1e-12), hi, lo / 1e4
        return b + (a - b) / 2.0 * (math.cos(math.pi * min(pct, 1.0)) + 1.0)
    raise ConfigError(f"[train] scheduler must be cosine, onecycle, step or none, got {kind!r}")


def _grouped_scheduler(cfg: Config, optimizer, steps_per_epoch: int):
    t = cfg.train
    kinds = []
    for g in optimizer.param_groups:
        kind = t.scheduler_positions if g.get("name") == "positions" else t.scheduler
        kinds.append(t.scheduler if kind == "same" else kind)
    for k in kinds:
        _lr_factor(k, 0, steps_per_epoch, t.epochs)  # validate names early
    lambdas = [functools.partial(_lr_factor, k, steps_per_epoch=steps_per_epoch, epochs=t.epochs) for k in kinds]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas), "batch"


def build_scheduler(cfg: Config, optimizer, steps_per_epoch: int):
    """Returns ``(scheduler or None, interval)``."""
    t = cfg.train
    if any(g.get("name") == "positions" for g in optimizer.param_groups):
        return _grouped_scheduler(cfg, optimizer, steps_per_epoch)  # one schedule per group, per batch
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


MIX_METHODS = ("bptt", "sltt", "sltt_k")  # strategies whose only use of the labels is loss_fn(out, y)


def check_mix(cfg: Config) -> None:
    """``[data] mix`` needs a strategy that sees the labels only through the loss (the label mix is loss-side)."""
    if cfg.data.mix == "none":
        return
    if cfg.train.method not in MIX_METHODS:
        raise ConfigError(f"[data] mix = {cfg.data.mix!r} mixes labels through the loss, which method = "
                          f"{cfg.train.method!r} does not train on (it uses the labels in its own local "
                          f"objectives); use method = one of {list(MIX_METHODS)} or mix = 'none'")
    if cfg.train.rcs_weight > 0:
        raise ConfigError(f"[data] mix = {cfg.data.mix!r} cannot be combined with [train] rcs_weight > 0: the "
                          f"cutoff regulariser needs one label per sample")


def batch_mix_of(cfg: Config):
    """The trainer's ``batch_mix(x, y, rng) -> MixedBatch`` for ``[data] mix``, or None."""
    if cfg.data.mix == "none":
        return None
    from functools import partial

    from spike.data.augment import cutmix

    return partial(cutmix, alpha=cfg.data.mix_alpha, label_mix="area" if cfg.data.mix == "cutmix" else "events")


def get_strategy(cfg: Config):
    check_mix(cfg)
    if cfg.train.memory != "none" and cfg.train.method != "bptt":
        raise ConfigError(f"[train] memory = {cfg.train.memory!r} applies to method = 'bptt' only, "
                          f"got method = {cfg.train.method!r}")
    if (cfg.train.memory.startswith("checkpoint") or ":" in cfg.train.memory) and cfg.train.rcs_weight > 0:
        raise ConfigError(f"[train] memory = {cfg.train.memory!r} runs the model in time chunks, which do not record "
                          f"the layers that rcs_weight > 0 (cutoff regulariser) needs; use memory = 'packed' or "
                          f"'mesa8' (which then runs whole)")
    if cfg.train.rcs_weight < 0:
        raise ConfigError(f"[train] rcs_weight must be >= 0, got {cfg.train.rcs_weight}")
    if cfg.train.rcs_weight > 0 and cfg.train.method != "bptt":
        raise ConfigError(f"[train] rcs_weight > 0 (cutoff regulariser) is implemented for method='bptt' only, "
                          f"got method={cfg.train.method!r}")
    if cfg.train.method == "bptt":
        if cfg.train.rcs_weight > 0:
            from spike.train.regularizers import CutoffRegularizer

            return BPTT(regularizer=CutoffRegularizer(cfg.train.rcs_weight, cfg.train.loss), memory=cfg.train.memory)
        return BPTT(memory=cfg.train.memory)
    if cfg.train.method in ("sltt", "sltt_k"):
        return _sltt_strategy(cfg)
    if cfg.train.method in ("forward_forward", "mono_forward"):
        return _forward_strategy(cfg)
    if cfg.train.method == "noprop":
        from spike.train.noprop import NoProp

        t = cfg.train
        return NoProp(steps=t.noprop_steps, eta=t.noprop_eta, embed_dim=t.noprop_embed_dim,
                      inference=t.noprop_inference)
    raise ConfigError(f"[train] method {cfg.train.method!r} is not available; known: {list(METHODS)}")


METHODS = ("bptt", "sltt", "sltt_k", "forward_forward", "mono_forward", "noprop")


def _sltt_strategy(cfg: Config):
    from spike.train.sltt import SLTT, SLTTError, check_loss

    t = cfg.train
    try:
        check_loss(t.loss)
        if t.method == "sltt_k":
            if t.sltt_k < 1:
                raise SLTTError(f"[train] method = 'sltt_k' needs sltt_k >= 1 (time steps back-propagated per "
                                f"batch, at most T = [data] n_time_bins), got sltt_k = {t.sltt_k}")
            return SLTT(k=t.sltt_k, chunk=t.sltt_chunk)
        if t.sltt_k != 0:
            raise SLTTError(f"[train] sltt_k = {t.sltt_k} is only used by method = 'sltt_k' (method is 'sltt')")
        return SLTT(chunk=t.sltt_chunk)
    except SLTTError as e:
        raise ConfigError(str(e)) from None


def _forward_strategy(cfg: Config):
    from spike.train.forward_forward import ForwardForward, MonoForward

    t = cfg.train
    if t.method == "forward_forward":
        inference = "goodness" if t.ff_inference == "auto" else t.ff_inference
        return ForwardForward(theta=t.ff_theta, goodness_scale=t.ff_goodness_scale, label_scale=t.ff_label_scale,
                              label_embedding=t.ff_label_embedding, inference=inference, negatives=t.ff_negatives)
    return MonoForward(inference="last" if t.ff_inference == "auto" else t.ff_inference)


def build_model_for(cfg: Config, input_shape: tuple[int, ...], n_classes: int, strategy=None) -> torch.nn.Module:
    """The configured model, or the one the strategy trains (forward-forward and Mono-Forward build their own)."""
    strategy = strategy if strategy is not None else get_strategy(cfg)
    build = getattr(strategy, "build_model", None)
    if build is not None:
        return build(cfg.model, input_shape, n_classes)
    return build_model(cfg.model, input_shape, n_classes)


def delay_callbacks(cfg: Config, model: torch.nn.Module) -> list:
    """The sigma schedule and position clamping when ``model`` has delayed layers, else nothing."""
    from spike.synapses.delays import delay_layers
    from spike.train.callbacks import ClampDelayPositions, SigmaSchedule

    if not delay_layers(model):
        return []
    t, m = cfg.train, cfg.model
    try:
        sched = SigmaSchedule.for_training(t.epochs, t.delay_sigma_decay, t.delay_sigma_floor,
                                           m.delay_sigma_init if m.delay_sigma_init > 0 else None)
    except ValueError as e:
        raise ConfigError(f"[train] delay sigma schedule: {e}") from None
    return [sched, ClampDelayPositions()]


def run_dir(cfg: Config) -> Path:
    return Path(cfg.run.out_dir) / cfg.run.name


#: Config keys that may differ between a run and its ``--resume``: where the run and its data live,
#: how it is shown and how often it is saved. Every other key changes what is computed.
RESUME_MAY_DIFFER = frozenset({"run.name", "run.out_dir", "run.device", "run.progress", "run.plots",
                               "data.root", "data.cache", "data.num_workers", "data.eval_batch_size",
                               "train.checkpoint_every"})


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(old: Config, new: Config, ignore=RESUME_MAY_DIFFER) -> list[str]:
    """``["train.lr: 0.001 -> 0.002", ...]``: the keys (outside ``ignore``) whose values differ."""
    a, b = _flat(config_to_dict(old)), _flat(config_to_dict(new))
    out = []
    for key in sorted(set(a) | set(b)):
        if key in ignore or a.get(key, "<unset>") == b.get(key, "<unset>"):
            continue
        out.append(f"{key}: {json.dumps(a.get(key, '<unset>'))} -> {json.dumps(b.get(key, '<unset>'))}")
    return out


def stored_config(ckpt: dict, path: str | Path) -> Config:
    """The validated config a checkpoint was trained with (``path`` names it in errors)."""
    if not isinstance(ckpt.get("config"), dict):
        raise CheckpointError(f"{path}: no stored config (not written by spike train)")
    return config_from_dict(ckpt["config"], source=f"{path} (stored config)")


def _resume_state(cfg: Config, path: Path, dev: torch.device, force: bool) -> tuple[dict, list, list[str]]:
    """Load ``path`` for ``--resume`` and compare its stored config with ``cfg``.

    Returns ``(checkpoint, config history, differences)``; the history gains an entry (the stored
    config, the epoch reached and the differences) when ``force`` accepts a changed config.

    Raises:
        ConfigError: the configs differ in a key outside :data:`RESUME_MAY_DIFFER` and not ``force``.
    """
    ckpt = load_checkpoint(path, map_location=dev)
    stored = stored_config(ckpt, path)
    diffs = config_differences(stored, cfg)
    history = list(ckpt.get("config_history") or [])
    if diffs and not force:
        shown = "; ".join(diffs[:12]) + (f"; and {len(diffs) - 12} more" if len(diffs) > 12 else "")
        raise ConfigError(f"--resume: the config differs from the one stored in {path}: {shown} "
                          f"(resume with the stored values, or pass --force to continue with the new ones; "
                          f"both are then recorded)")
    if diffs:
        log.warning("--force: resuming %s with a changed config: %s", path, "; ".join(diffs))
        history.append({"config": config_to_dict(stored), "until_epoch": int(ckpt.get("epoch", 0)),
                        "changes": diffs})
    return ckpt, history, diffs


def train_from_config(cfg: Config, *, device: str | None = None, resume: bool = False,
                      out_dir: str | Path | None = None, force: bool = False) -> dict:
    """Train, evaluate and plot as configured; returns the final metrics (also in ``metrics.json``).

    Args:
        cfg: the (validated) configuration.
        device: overrides ``[run] device``.
        resume: continue from the run folder's ``last.pt``; its stored config must match ``cfg``
            (except :data:`RESUME_MAY_DIFFER`).
        out_dir: the run folder (default ``[run] out_dir / name``).
        force: with ``resume``, continue even if the configs differ; the checkpoint keeps the old
            config in ``config_history`` and ``metrics.json`` lists the changes.
    """
    from spike.train import distributed

    t_start = time.perf_counter()
    validate_config(cfg)
    if force and not resume:
        raise ConfigError("--force only applies with --resume (it accepts a config that differs from the stored one)")
    dev = _device_of(device, cfg)
    strategy = get_strategy(cfg)
    try:
        get_loss(cfg.train.loss)  # fail early on a bad loss name
    except ValueError as e:
        raise ConfigError(f"[train] loss = {cfg.train.loss!r}: {e}") from None
    dist_info = distributed.setup(dev)  # torchrun: join the process group (None in a single process)
    try:
        result = _train(cfg, strategy, dist_info.device if dist_info else dev, dist_info, resume, out_dir, t_start,
                        force)
    except BaseException:
        if dist_info is not None:
            distributed.teardown(dist_info, sync=False)  # the other ranks may never reach a barrier
        raise
    if dist_info is not None:
        distributed.teardown(dist_info)
    return result


def _train(cfg: Config, strategy, dev: torch.device, dist_info, resume: bool, out_dir, t_start: float,
           force: bool = False) -> dict:
    from spike.train import distributed

    is_main = dist_info is None or dist_info.is_main
    out = Path(out_dir) if out_dir is not None else run_dir(cfg)
    ckpt, config_history, changes = _resume_state(cfg, out / "last.pt", dev, force) if resume else (None, [], [])
    seed_everything(cfg.run.seed, cfg.train.deterministic)
    data = build_data(cfg.data, cfg.run.seed)
    data, val = split_validation(data, cfg.data.val_fraction, cfg.run.seed)  # [data] val_fraction: never trained on
    select = _selection_of(cfg, val)
    if cfg.data.augment:  # training samples only, after the cache and the validation split (spike.data.augment)
        from spike.data.augment import AugmentedDataset

        data = dataclasses.replace(data, train=AugmentedDataset(data.train, cfg.data.augment, cfg.run.seed))
    data_cfg = cfg.data
    if dist_info is not None:  # [data] batch_size is the global batch
        try:
            local = distributed.local_batch_size(cfg.data.batch_size, dist_info.world)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        data_cfg = dataclasses.replace(cfg.data, batch_size=local)
    train_loader, test_loader = make_loaders(data, data_cfg, cfg.run.seed, distributed=dist_info is not None)
    check_steps = getattr(strategy, "check_time_steps", None)
    if check_steps is not None:
        try:
            check_steps(data.n_time_bins)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    model = build_model_for(cfg, data.input_shape, data.n_classes, strategy).to(dev)
    optimizer = build_optimizer(cfg, model)
    scheduler, interval = build_scheduler(cfg, optimizer, len(train_loader))
    callbacks = delay_callbacks(cfg, model) + ([data.train] if cfg.data.augment else [])  # sets its epoch
    model = distributed.wrap(model, dist_info)  # DistributedDataParallel under torchrun
    extra = {"config": config_to_dict(cfg), "data": _data_meta(data)}
    if config_history:
        extra["config_history"] = config_history
    trainer = Trainer(model, optimizer, get_loss(cfg.train.loss), loss_name=cfg.train.loss, scheduler=scheduler,
                      callbacks=callbacks,
                      scheduler_interval=interval, strategy=strategy, out_dir=out, epochs=cfg.train.epochs,
                      seed=cfg.run.seed, grad_clip=cfg.train.grad_clip, device=dev, progress=cfg.run.progress,
                      checkpoint_every=cfg.train.checkpoint_every,
                      extra_state=extra, is_main=is_main, select=select, patience=cfg.train.patience,
                      test_each_epoch=val is None or cfg.train.report_max_test,
                      batch_mix=batch_mix_of(cfg), mix_prob=cfg.data.mix_prob)
    if ckpt is not None:
        trainer.restore(ckpt, out / "last.pt")
        ckpt = None  # free the loaded tensors
    val_loader = None
    if val is not None:
        from torch.utils.data import DataLoader

        from spike.data.builders import time_first_collate

        val_loader = DataLoader(val, batch_size=cfg.data.eval_batch_size, shuffle=False,
                                collate_fn=time_first_collate, num_workers=cfg.data.num_workers)
    final = trainer.fit(train_loader, test_loader, val_loader=val_loader)
    metrics = {"test_accuracy": final.get("test_accuracy"), "test_loss": final.get("test_loss"),
               "train_accuracy": final.get("train_accuracy"), "epochs": len(trainer.history),
               "wall_time_s": None, "device": str(dev), "run_dir": str(out), "config": cfg.run.name,
               "seed": cfg.run.seed, "split": _split_record(cfg, data, val)}
    if select == "last":
        metrics["selected_by"] = "last epoch" + ("" if val is not None else " (no validation set)")
        if val is not None and not cfg.train.report_max_test:  # test was not run per epoch: once, on the last
            test = trainer.evaluate(test_loader)
            metrics.update(test_accuracy=test["test_accuracy"], test_loss=test["test_loss"])
    else:
        epoch = trainer.load_selected()  # test is evaluated once, on the selected model
        test = trainer.evaluate(test_loader)
        best = [h for h in trainer.history if int(h["epoch"]) == epoch][0]
        metrics.update(test_accuracy=test["test_accuracy"], test_loss=test["test_loss"],
                       train_accuracy=best.get("train_accuracy"), selected_by=select, selected_epoch=epoch,
                       best_val_accuracy=best.get("val_accuracy"), best_val_loss=best.get("val_loss"),
                       selected_checkpoint=str(out / "best.pt"))
        if trainer.selection["stopped_early_at"] is not None:
            metrics["stopped_early_at_epoch"] = trainer.selection["stopped_early_at"]
        if cfg.train.report_max_test:  # for comparison with papers that report it; never used to select
            metrics["max_test_accuracy_over_epochs"] = max(h["test_accuracy"] for h in trainer.history)
    metrics["wall_time_s"] = round(time.perf_counter() - t_start, 2)
    if dist_info is not None:
        metrics["world_size"] = dist_info.world
    if changes:
        metrics["config_changes"] = changes  # --resume --force: what differs from the stored config
    if config_history:
        metrics["config_history"] = [{k: v for k, v in h.items() if k != "config"} for h in config_history]
    if is_main:  # only rank 0 writes files
        if cfg.run.plots:
            metrics["plots"] = save_plots(trainer, data, test_loader, out, dev)
        write_json(out / "metrics.json", metrics)
    return metrics


def train_seeds(cfg: Config, seeds=None, *, device: str | None = None, resume: bool = False,
                out_dir: str | Path | None = None, force: bool = False) -> dict:
    """Train the recipe once per seed (``seeds``, default ``[run] seeds``) and summarise the selected models.

    Run ``k`` goes to ``<run folder>/seed_<k>`` with ``[run] seed = k`` (which also seeds the validation
    split); ``summary.json`` there and the returned dict hold every run's metrics and the mean and the
    sample standard deviation (``ddof = 1``) of their test accuracy.
    """
    import numpy as np

    seeds = list(cfg.run.seeds if seeds is None else seeds)
    if not seeds:
        raise ConfigError("train_seeds: no seeds (give --seeds or [run] seeds)")
    if len(set(seeds)) != len(seeds) or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ConfigError(f"seeds must be distinct integers >= 0, got {seeds}")
    base = Path(out_dir) if out_dir is not None else run_dir(cfg)
    runs = []
    for s in seeds:
        c = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seed=int(s), seeds=()))
        runs.append(train_from_config(c, device=device, resume=resume, out_dir=base / f"seed_{s}", force=force))
    acc = np.array([r["test_accuracy"] for r in runs], dtype=np.float64)
    summary = {"config": cfg.run.name, "seeds": seeds, "n_runs": len(runs), "test_accuracies": acc.tolist(),
               "test_accuracy_mean": float(acc.mean()),
               "test_accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
               "selected_by": sorted({r.get("selected_by", "") for r in runs}), "run_dir": str(base),
               "runs": [r["run_dir"] for r in runs]}
    vals = [r.get("best_val_accuracy") for r in runs]
    if all(v is not None for v in vals):
        summary["best_val_accuracy_mean"] = float(np.mean(vals))
    write_json(base / "summary.json", summary)
    return summary


def _selection_of(cfg: Config, val) -> str:
    """The trainer's ``select`` for ``[train] select`` / ``patience`` given whether there is a validation set."""
    sel, patience = cfg.train.select, cfg.train.patience
    if val is None:
        if sel in ("val_accuracy", "val_loss"):
            raise ConfigError(f"[train] select = {sel!r} needs a validation set: set [data] val_fraction > 0")
        if patience:
            raise ConfigError(f"[train] patience = {patience} (early stopping) needs a validation set: set [data] "
                              f"val_fraction > 0")
        if cfg.train.report_max_test:
            raise ConfigError("[train] report_max_test needs a validation set to select on ([data] val_fraction > 0); "
                              "without one, test accuracy is already reported every epoch")
        return "last"
    if sel == "last" and patience:
        raise ConfigError(f"[train] patience = {patience} needs select = 'val_accuracy' or 'val_loss', not 'last'")
    return "val_accuracy" if sel == "auto" else sel


def _split_record(cfg: Config, data: DataBundle, val) -> dict:
    """Sizes of train / validation / test and how validation was made (with a digest of its indices)."""
    import hashlib

    rec = {"train": len(data.train), "val": 0 if val is None else len(val), "test": len(data.test),
           "val_fraction": cfg.data.val_fraction, "split_seed": cfg.run.seed}
    idx = getattr(val, "indices", None)
    if idx is not None:
        rec["val_indices_sha256"] = hashlib.sha256(",".join(map(str, idx)).encode()).hexdigest()
        rec["val_source"] = f"seeded fraction of the training set (np.random.default_rng({cfg.run.seed}))"
    elif val is not None:
        rec["val_source"] = "the data set's own validation split"
    return rec


def _data_meta(data: DataBundle) -> dict:
    return {"name": data.name, "input_shape": list(data.input_shape), "n_classes": data.n_classes,
            "n_time_bins": data.n_time_bins, "dt_us": data.dt_us}


def save_plots(trainer: Trainer, data: DataBundle, test_loader, out: Path, dev) -> list[str]:
    from spike.train.raster import save_run_plots  # training_curves.png and raster.png

    return save_run_plots(trainer, data, test_loader, out, dev)


def evaluate_checkpoint(path: str | Path, *, device: str | None = None) -> dict:
    """Rebuild model and data from a checkpoint's stored config and evaluate on the test split."""
    ckpt = load_checkpoint(path)
    cfg = stored_config(ckpt, path)
    dev = _device_of(device, cfg, f"{path} (stored config): [run] device")
    data = build_data(cfg.data, cfg.run.seed)
    _, test_loader = make_loaders(data, cfg.data, cfg.run.seed)
    model = build_model_for(cfg, data.input_shape, data.n_classes).to(dev)
    load_model_state(model, ckpt["model"], path)
    trainer = Trainer(model, build_optimizer(cfg, model), get_loss(cfg.train.loss), loss_name=cfg.train.loss,
                      device=dev, progress=False, epochs=max(1, cfg.train.epochs))
    t0 = time.perf_counter()
    m = trainer.evaluate(test_loader)
    result = {"test_accuracy": m["test_accuracy"], "test_loss": m["test_loss"], "n_test": len(data.test),
              "epoch": int(ckpt["epoch"]), "checkpoint": str(path), "eval_time_s": round(time.perf_counter() - t0, 3)}
    p = Path(path)
    write_json((p if p.is_dir() else p.parent) / "eval.json", result)
    return result


@dataclasses.dataclass(frozen=True)
class EvalRun:
    """A model rebuilt for evaluation (:func:`load_for_eval`)."""

    config: Config
    model: torch.nn.Module
    data: DataBundle           # ``train`` without the held-out part
    val: object                # held-out samples (a Dataset) or None
    val_source: str            # where ``val`` comes from, in words
    device: torch.device
    run_dir: Path
    weights: str               # "checkpoint <path> (epoch e)" or "untrained (no checkpoint)"


def load_for_eval(path: str | Path, *, device: str | None = None, holdout_fraction: float = 0.0) -> EvalRun:
    """Rebuild model and data from a checkpoint (file or run folder) or a TOML config, in eval mode.

    A config loads its run folder's ``last.pt`` when there is one, else keeps the untrained weights.
    The held-out set is the run's ``[data] val_fraction`` split (never trained on) when it has one;
    otherwise, with ``holdout_fraction > 0``, a seeded part of the training set the model *was*
    trained on. The test split is never part of it.
    """
    from spike.core.config import load_config

    p = Path(path)
    ckpt = None
    if p.suffix == ".toml":
        cfg = load_config(p)
        if (run_dir(cfg) / "last.pt").is_file():
            ckpt, p = load_checkpoint(run_dir(cfg) / "last.pt"), run_dir(cfg) / "last.pt"
    else:
        ckpt = load_checkpoint(p)
        cfg = stored_config(ckpt, p)
    dev = _device_of(device, cfg, f"{p}: [run] device")
    data = build_data(cfg.data, cfg.run.seed)
    builder_val = data.val is not None
    data, val = split_validation(data, cfg.data.val_fraction, cfg.run.seed)
    source = ("the data set's validation split (never trained on)" if builder_val else
              f"validation split held out from training ([data] val_fraction={cfg.data.val_fraction})")
    if val is None and holdout_fraction > 0:
        _, val = split_validation(data, holdout_fraction, cfg.run.seed)
        source = (f"{holdout_fraction:g} of the training set (seen in training: thresholds are optimistic; "
                  f"train with [data] val_fraction > 0 for an unbiased calibration)")
    elif val is None:
        source = "none"
    model = build_model_for(cfg, data.input_shape, data.n_classes).to(dev)
    if ckpt is not None:
        load_model_state(model, ckpt["model"], p)
        weights = f"checkpoint {p} (epoch {int(ckpt['epoch'])})"
    else:
        weights = "untrained (no checkpoint in the run folder)"
    model.eval()
    folder = run_dir(cfg) if ckpt is None else (p if p.is_dir() else p.parent)
    return EvalRun(cfg, model, data, val, source, dev, folder, weights)

