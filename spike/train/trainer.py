"""The trainer: a visible loop over epochs with evaluation, CSV/TensorBoard logs, atomic checkpoints
and exact resume.

Determinism: at the start of epoch ``e`` the global torch RNG and the train loader's generator are
seeded from ``(seed, e)``, so a run resumed from the checkpoint of epoch ``e`` replays epoch ``e+1``
exactly as the uninterrupted run does.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import pickle
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import Tensor, nn

from spike.train.losses import accuracy_count
from spike.train.strategy import BPTT, Strategy, model_output

__all__ = ["Trainer", "seed_everything", "save_checkpoint", "load_checkpoint", "CheckpointError",
           "CheckpointWarning", "payload_digest", "load_model_state", "atomic_write_text"]

CHECKPOINT_FORMAT = "spike-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A missing, unreadable, corrupted or incompatible checkpoint."""


class CheckpointWarning(UserWarning):
    """A checkpoint that loads but cannot be fully checked (written before digests were stored)."""


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**63 - 1)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and rename (never a half-written file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _feed(h, obj: Any, key: str) -> None:
    if isinstance(obj, Tensor):
        t = obj.detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        t = t.cpu().resolve_conj().resolve_neg().contiguous()
        h.update(f"T{key}|{t.dtype}|{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # the raw bytes, whatever the dtype
    elif isinstance(obj, dict):
        h.update(f"D{key}|{len(obj)}\0".encode())
        for k in sorted(obj, key=lambda k: (type(k).__name__, str(k))):
            _feed(h, obj[k], f"{key}/{k}")
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{key}|{len(obj)}\0".encode())
        for i, v in enumerate(obj):
            _feed(h, v, f"{key}/{i}")
    else:
        h.update(f"V{key}|{type(obj).__name__}|{obj!r}\0".encode())


def payload_digest(payload: dict) -> str:
    """``"sha256:<hex>"`` of a checkpoint payload (without its ``"digest"`` entry).

    Every tensor contributes its key path, dtype, shape and raw bytes; dicts are walked in sorted key
    order, so the digest depends only on the content, not on where the tensors live or how the file
    laid them out. Plain values (numbers, strings, ...) contribute their ``repr``.
    """
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "digest"}, "")
    return "sha256:" + h.hexdigest()


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """``torch.save`` to ``path`` atomically (write ``path.tmp``, then rename), with a digest of the
    payload (:func:`payload_digest`) that :func:`load_checkpoint` verifies."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    body = {"format": CHECKPOINT_FORMAT, **{k: v for k, v in payload.items() if k not in ("format", "digest")}}
    try:
        torch.save({**body, "digest": payload_digest(body)}, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``torch.load(weights_only=True)`` and verify its digest.

    Raises:
        CheckpointError: the file is missing, unreadable, not a spike checkpoint, or its content does
            not match the digest stored when it was written (corrupted). A checkpoint without a digest
            (older spike) loads with a :class:`CheckpointWarning`.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupted / truncated / not a torch file
        first = (str(e).strip().splitlines() or [""])[0]
        first = first if len(first) <= 160 else first[:157] + "..."
        if isinstance(e, pickle.UnpicklingError):  # torch's text is a page about weights_only
            first = "not a file of tensors and plain data that torch.load(weights_only=True) accepts"
        hint = "; that is a config: pass the run's last.pt (or its run folder)" if path.suffix == ".toml" else ""
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {first}{hint}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a spike checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
    stored = ckpt.get("digest")
    if stored is None:
        warnings.warn(f"{path}: checkpoint has no digest (written by an older spike); its weights cannot be "
                      f"checked for corruption", CheckpointWarning, stacklevel=2)
    elif (actual := payload_digest(ckpt)) != stored:
        raise CheckpointError(f"{path}: checkpoint is corrupted: the digest of its content is {actual[:19]}..., "
                              f"the one stored when it was written is {str(stored)[:19]}...; "
                              f"the file was damaged or changed after it was written")
    return ckpt


def _state_dict_problems(e: Exception, limit: int = 3) -> str:
    """torch's multi-line ``load_state_dict`` error as one line (the first ``limit`` problems)."""
    lines = [ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()] or [str(e).strip()]
    more = f"; and {len(lines) - limit} more" if len(lines) > limit else ""
    return "; ".join(lines[:limit]) + more


def load_model_state(model: nn.Module, state: dict, path: str | Path) -> None:
    """``model.load_state_dict(state)``; a mismatch is one :class:`CheckpointError` naming ``path``."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: the stored weights do not fit the configured model "
                              f"({_state_dict_problems(e)})") from None


class Trainer:
    """Train a model with a strategy (BPTT by default) and record everything needed to resume.

    Args:
        model: returns the ``[T, B, C]`` output sequence (or a NamedTuple whose first field is it).
        optimizer: a torch optimizer over ``model``'s parameters.
        loss_fn: ``loss_fn(out [T, B, C], y [B]) -> scalar``.
        loss_name: the loss's name, for accuracy (see :func:`spike.train.losses.scores`).
        scheduler: optional LR scheduler, stepped every epoch (or every batch if ``scheduler_interval="batch"``).
        strategy: a :class:`~spike.train.strategy.Strategy` (default :class:`~spike.train.strategy.BPTT`).
        out_dir: run folder for ``metrics.csv``, checkpoints and plots.
        epochs, seed, grad_clip, progress: as named.
        callbacks: objects with any of ``on_epoch_start(trainer, epoch)``,
            ``on_epoch_end(trainer, epoch, metrics)``, ``on_batch_end(trainer, step, result)``.
        extra_state: JSON-able payload stored in checkpoints (config, dataset meta).
        is_main: only the main process writes files (distributed training).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[[Tensor, Tensor], Tensor], *, loss_name: str = "mean_membrane",
                 scheduler: Any = None, scheduler_interval: str = "epoch", strategy: Strategy | None = None,
                 out_dir: str | Path = "runs/run", epochs: int = 10, seed: int = 0, grad_clip: float = 0.0,
                 device: str | torch.device = "cpu", progress: bool = True,
                 callbacks: Iterable[Any] = (), checkpoint_every: int = 1,
                 extra_state: dict | None = None, is_main: bool = True, select: str = "last", patience: int = 0,
                 test_each_epoch: bool = True, batch_mix: Callable[..., Any] | None = None, mix_prob: float = 1.0):
        if scheduler_interval not in ("epoch", "batch"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'batch', got {scheduler_interval!r}")
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be an integer >= 1 (epochs), got {checkpoint_every!r}")
        self.model, self.optimizer, self.loss_fn, self.loss_name = model, optimizer, loss_fn, loss_name
        self.scheduler, self.scheduler_interval = scheduler, scheduler_interval
        self.strategy = strategy or BPTT()
        self.out_dir, self.epochs, self.seed = Path(out_dir), epochs, seed
        self.grad_clip, self.device, self.progress = grad_clip, torch.device(device), progress
        self.callbacks = tuple(callbacks)
        self.checkpoint_every = checkpoint_every
        self.extra_state = dict(extra_state or {})
        self.is_main = is_main
        if select not in SELECT:
            raise ValueError(f"select must be one of {SELECT}, got {select!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an integer >= 0 (epochs), got {patience!r}")
        if patience and select == "last":
            raise ValueError("early stopping (patience > 0) needs a validation metric to select on")
        self.select, self.patience, self.test_each_epoch = select, patience, test_each_epoch
        if not 0.0 <= mix_prob <= 1.0:
            raise ValueError(f"mix_prob must be a probability in [0, 1], got {mix_prob!r}")
        self.batch_mix, self.mix_prob = batch_mix, mix_prob
        self.selection: dict[str, Any] = {"metric": select, "best": None, "best_loss": None, "best_epoch": None,
                                          "bad_epochs": 0, "stopped_early_at": None}
        self._best_state: dict | None = None
        self.history: list[dict[str, float]] = []
        self.start_epoch = 0
        self._tb = None

    # -- hooks -----------------------------------------------------------------------------------
    def call(self, hook: str, *args: Any) -> None:
        """Call ``hook`` on every callback that defines it."""
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, *args)

    # -- loops -----------------------------------------------------------------------------------
    def _to_device(self, batch) -> tuple[Tensor, Tensor]:
        x, y = batch
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _bar(self, it, total, desc):
        if not (self.progress and self.is_main):
            return it
        from tqdm.auto import tqdm

        return tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True, disable=None)  # off without a TTY

    def train_epoch(self, loader, epoch: int) -> dict[str, float]:
        self.model.train()
        total_loss, correct, n = 0.0, 0, 0
        bar = self._bar(loader, len(loader) if hasattr(loader, "__len__") else None, f"epoch {epoch + 1}")
        for step, batch in enumerate(bar):
            x, y = self._to_device(batch)
            loss_fn, mixed = self._mix(x, y, epoch, step)
            if mixed is not None:
                x = mixed.x
            res = self.strategy.train_step(self.model, x, y, loss_fn, self.optimizer, self.grad_clip)
            if not math.isfinite(res.loss):
                raise FloatingPointError(f"loss became {res.loss} at epoch {epoch + 1}, batch {step}")
            if self.scheduler is not None and self.scheduler_interval == "batch":
                self.scheduler.step()
            b = y.shape[0]
            total_loss += res.loss * b
            if mixed is None:
                correct += accuracy_count(self.loss_name, res.out, y)
            else:  # credit each prediction with the weight of the label it matches
                correct += (mixed.lam * accuracy_count(self.loss_name, res.out, mixed.y_a)
                            + (1.0 - mixed.lam) * accuracy_count(self.loss_name, res.out, mixed.y_b))
            n += b
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{res.loss:.3f}", acc=f"{correct / n:.3f}")
            self.call("on_batch_end", step, res)
        return {"train_loss": total_loss / max(n, 1), "train_accuracy": correct / max(n, 1)}

    def _mix(self, x: Tensor, y: Tensor, epoch: int, step: int):
        """``(loss_fn, MixedBatch | None)`` for one training batch: with ``batch_mix``, the batch is mixed
        with probability ``mix_prob`` using a generator seeded by ``(seed, epoch, step)`` (so resume and
        reruns mix identically), and the loss becomes ``lam * loss(out, y_a) + (1 - lam) * loss(out, y_b)``."""
        if self.batch_mix is None or self.mix_prob == 0.0:
            return self.loss_fn, None
        rng = np.random.default_rng([self.seed, epoch, step])
        if rng.random() >= self.mix_prob:
            return self.loss_fn, None
        mixed = self.batch_mix(x, y, rng)
        base = self.loss_fn

        def mixed_loss(out: Tensor, _y: Tensor) -> Tensor:
            return mixed.loss(base, out)

        mixed_loss.__name__ = getattr(base, "__name__", "loss")  # strategies dispatch on the loss's name
        return mixed_loss, mixed

    @torch.no_grad()
    def evaluate(self, loader, prefix: str = "test") -> dict[str, float]:
        """Loss and accuracy of the model on ``loader`` (eval mode, no gradients)."""
        self.model.eval()
        total_loss, correct, n = 0.0, 0, 0
        for batch in loader:
            x, y = self._to_device(batch)
            out = model_output(self.model(x))
            total_loss += float(self.loss_fn(out, y)) * y.shape[0]
            correct += accuracy_count(self.loss_name, out, y)
            n += y.shape[0]
        return {f"{prefix}_loss": total_loss / max(n, 1), f"{prefix}_accuracy": correct / max(n, 1)}

    def fit(self, train_loader, test_loader=None, resume: bool = False, val_loader=None) -> dict[str, float]:
        """Train for ``epochs`` epochs (continuing from ``out_dir/last.pt`` if ``resume``).

        With ``val_loader`` every epoch is evaluated on it (``val_loss``, ``val_accuracy``); with
        ``select = "val_accuracy" | "val_loss"`` the best epoch so far is kept (``best.pt`` and
        :attr:`selection`) and ``patience`` stops training after that many epochs without improvement.
        ``test_loader`` is evaluated every epoch only when ``test_each_epoch`` (the caller evaluates the
        selected model on test once, :meth:`load_selected`).
        """
        if self.select != "last" and val_loader is None:
            raise ValueError(f"select = {self.select!r} needs a validation set (val_loader)")
        if resume:
            self.resume(self.out_dir / "last.pt")
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        for epoch in range(self.start_epoch, self.epochs):
            if self.selection["stopped_early_at"] is not None:
                break
            s = _epoch_seed(self.seed, epoch)
            torch.manual_seed(s)
            gen = getattr(train_loader, "generator", None)
            if isinstance(gen, torch.Generator):
                gen.manual_seed(s)
            sampler = getattr(train_loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            self.call("on_epoch_start", epoch)
            t0 = time.perf_counter()
            metrics: dict[str, float] = {"epoch": epoch + 1}
            metrics.update(self.train_epoch(train_loader, epoch))
            metrics["epoch_time_s"] = time.perf_counter() - t0
            metrics["lr"] = float(self.optimizer.param_groups[0]["lr"])
            if self.scheduler is not None and self.scheduler_interval == "epoch":
                self.scheduler.step()
            if val_loader is not None:
                metrics.update(self.evaluate(val_loader, "val"))
            if test_loader is not None and self.test_each_epoch:
                metrics.update(self.evaluate(test_loader))
            self.history.append(metrics)
            self.call("on_epoch_end", epoch, metrics)
            self.start_epoch = epoch + 1
            improved = self._update_selection(metrics, epoch + 1)
            last = epoch + 1 == self.epochs or self.selection["stopped_early_at"] is not None
            if self.is_main:
                self._log(metrics)
                if self.progress:
                    print(_summary(metrics, self.epochs), file=sys.stderr, flush=True)
                    if self.selection["stopped_early_at"] is not None:
                        print(f"early stop: no better {self.select} for {self.patience} epochs (best: epoch "
                              f"{self.selection['best_epoch']})", file=sys.stderr, flush=True)
                if improved:
                    self.save(self.out_dir / "best.pt")
                if (epoch + 1) % self.checkpoint_every == 0 or last:
                    self.save(self.out_dir / "last.pt")
        if self._tb is not None:
            self._tb.close()
        return dict(self.history[-1]) if self.history else {}

    # -- model selection ---------------------------------------------------------------------------
    def _update_selection(self, metrics: dict, epoch: int) -> bool:
        """Record ``metrics[select]`` of ``epoch``; returns whether it is the best so far."""
        sel = self.selection
        if self.select == "last":
            return False
        value = float(metrics[self.select])
        best = sel["best"]
        if self.select == "val_accuracy":  # ties (common on small validation sets) go to the lower val_loss
            loss = float(metrics.get("val_loss", math.inf))
            better = best is None or value > best or (value == best and loss < sel.get("best_loss", math.inf))
        else:
            loss = value
            better = best is None or value < best
        if better:
            sel.update(best=value, best_loss=loss, best_epoch=epoch, bad_epochs=0)
            model = self.model.module if hasattr(self.model, "module") else self.model
            self._best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            sel["bad_epochs"] += 1
            if self.patience and sel["bad_epochs"] >= self.patience:
                sel["stopped_early_at"] = epoch
        return better

    def load_selected(self) -> int:
        """Put the selected epoch's weights into the model; returns that epoch (the last with ``select = "last"``)."""
        if self.select == "last" or self.selection["best_epoch"] is None:
            return self.start_epoch
        model = self.model.module if hasattr(self.model, "module") else self.model
        state = self._best_state
        if state is None:  # resumed: the best weights are on disk
            state = load_checkpoint(self.out_dir / "best.pt", map_location=self.device)["model"]
        model.load_state_dict(state)
        return int(self.selection["best_epoch"])

    # -- logging and checkpoints ------------------------------------------------------------------
    def _log(self, metrics: dict[str, float]) -> None:
        keys: list[str] = []
        for row in self.history:
            keys += [k for k in row if k not in keys]
        tmp = self.out_dir / "metrics.csv.tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.history)
        os.replace(tmp, self.out_dir / "metrics.csv")
        try:
            if self._tb is None:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

                self._tb = SummaryWriter(str(self.out_dir / "tb"))
            for k, v in metrics.items():
                if k != "epoch":
                    self._tb.add_scalar(k, v, int(metrics["epoch"]))
        except Exception:  # tensorboard not installed: the CSV is the record
            self._tb = False  # type: ignore[assignment]
        if self._tb is False:
            self._tb = None

    def state(self) -> dict:
        model = self.model.module if hasattr(self.model, "module") else self.model
        return {
            "epoch": self.start_epoch,
            "model": model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "history": self.history,
            "seed": self.seed,
            "strategy": self.strategy.name,
            "selection": dict(self.selection),
            **self.extra_state,
        }

    def save(self, path: str | Path) -> Path:
        return save_checkpoint(path, self.state())

    def resume(self, path: str | Path) -> None:
        """Restore model, optimizer, scheduler and history from a checkpoint and continue after it."""
        self.restore(load_checkpoint(path, map_location=self.device), path)

    def restore(self, ckpt: dict, path: str | Path = "<checkpoint>") -> None:
        """Restore from an already loaded (and verified) checkpoint ``ckpt``; ``path`` names it in errors."""
        model = self.model.module if hasattr(self.model, "module") else self.model
        for key in ("epoch", "model", "optimizer"):
            if key not in ckpt:
                raise CheckpointError(f"{path}: no {key!r} entry; not a checkpoint written by Trainer")
        load_model_state(model, ckpt["model"], path)
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.scheduler is not None and ckpt.get("scheduler") is not None:
                self.scheduler.load_state_dict(ckpt["scheduler"])
        except (ValueError, KeyError, RuntimeError) as e:
            raise CheckpointError(f"{path}: the stored optimizer/scheduler state does not fit the configured "
                                  f"one ({type(e).__name__}: {_state_dict_problems(e)})") from None
        self.history = list(ckpt.get("history", []))
        self.start_epoch = int(ckpt["epoch"])
        stored = ckpt.get("selection")
        if stored and stored.get("metric") == self.select:
            self.selection = dict(stored)
            self._best_state = None  # best.pt holds it


SELECT = ("last", "val_accuracy", "val_loss")


def _summary(m: dict, epochs: int) -> str:
    parts = [f"epoch {int(m['epoch'])}/{epochs}"]
    parts += [f"{k}={v:.4f}" for k, v in m.items() if k not in ("epoch", "lr", "epoch_time_s")]
    parts += [f"lr={m['lr']:.2e}", f"{m['epoch_time_s']:.1f}s"]
    return "  ".join(parts)


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
