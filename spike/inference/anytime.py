r"""Anytime inference: stop each sample as soon as its readout is confident (Top-K gap cutoff).

Wu, Jin, Yu, Yi, Huang, "Optimising event-driven spiking neural network with regularisation and
cutoff" (AOI-SNN), Front. Neurosci. 19 (2025), doi:10.3389/fnins.2025.1522788, arXiv:2301.09522.

At step :math:`t` the readout's class scores of the prefix :math:`0..t` (the score the training loss
uses, e.g. the running mean membrane; :func:`prefix_scores`) give the gap between the two best classes

.. math::
    g_t = S_t^{(1)} - S_t^{(2)}, \qquad S_t = \mathrm{scores}(u_{0..t}).

A sample stops at the first :math:`t` with :math:`g_t > \beta_t` and predicts :math:`\arg\max S_t`;
a sample that never passes runs all :math:`T` steps (the full-length prediction). With every
:math:`\beta_t = \infty` anytime inference *is* full-length inference.

Calibration (:func:`calibrate_thresholds`) picks, step after step on held-out data (never the test
set), the smallest threshold whose stopping samples are settled often enough:

.. math::
    \beta_t = \min\{\beta \ge 0 : P_t(\beta) \ne \emptyset,\
              u_t(\beta) + c \le \varepsilon\,(|P_t(\beta)| + c)\},\qquad
    P_t(\beta) = \{i \in R_t : g_t(i) > \beta\}

(:math:`\infty` if no :math:`\beta` qualifies), where :math:`u_t(\beta)` counts the samples of
:math:`P_t(\beta)` that are not *settled* at :math:`t` — settled: the prediction at every step
:math:`s \ge t` equals the final prediction (``target="final"``) or the label (``target="correct"``).
:math:`R_t` are the samples still running at :math:`t` (``sequential=True``: those that stop at
:math:`t` are exactly :math:`P_t(\beta_t)`, so at most a fraction :math:`\varepsilon` of all early stops
is unsettled; ``sequential=False`` uses every sample at every step, as the AOI-SNN code does).
``correction="none"`` (:math:`c = 0`) is the plain empirical rule "at least :math:`1-\varepsilon` of
the samples that pass are settled"; the default ``"conformal"`` (:math:`c = 1`) counts one more,
unsettled, sample — the finite-sample correction of conformal risk control (Angelopoulos et al. 2022,
arXiv:2208.02814) — which keeps the empirical rule from fitting :math:`\beta_t` to the largest
unsettled gap of a small calibration set (on the digits it halves the test accuracy loss; see the
README). With :math:`c = 1`, :math:`\varepsilon = 0` gives :math:`\beta_t = \infty`.
:math:`\varepsilon \in [0, 1]` is the user's knob.

Two executions give the same predictions and stop steps:

* :func:`offline_anytime` — from the full output sequence (fast sweeps over :math:`\varepsilon`);
* :func:`anytime_forward` — really step by step; finished samples are dropped from the batch
  (``shrink=True``) or masked (``shrink=False``), so their time steps are not computed. Pass an
  :class:`spike.energy.EnergyMeter` to count only the steps executed.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from spike.train.losses import scores as readout_scores

__all__ = ["AnytimeError", "TARGETS", "CORRECTIONS", "Cutoff", "AnytimeResult", "SweepPoint", "AnytimeReport",
           "check_epsilon", "prefix_scores", "topk_gap", "settled", "calibrate_thresholds", "calibrate_cutoff",
           "cumulative_thresholds",
           "offline_anytime", "anytime_forward", "collect_outputs", "anytime_sweep", "plot_anytime",
           "anytime_from_checkpoint", "DEFAULT_SWEEP"]

TARGETS = ("final", "correct")
DEFAULT_SWEEP = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


class AnytimeError(ValueError):
    """Bad anytime-inference input: epsilon outside [0, 1], a negative or NaN threshold, shape mismatch."""


def check_epsilon(epsilon: Any) -> float:
    """``epsilon`` as a float in ``[0, 1]``; anything else is an :class:`AnytimeError`."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, Real) or math.isnan(float(epsilon)):
        raise AnytimeError(f"epsilon must be a number in [0, 1], got {epsilon!r}")
    eps = float(epsilon)
    if not 0.0 <= eps <= 1.0:
        raise AnytimeError(f"epsilon must be in [0, 1] (the tolerated fraction of early stops that are "
                           f"not yet settled), got {eps}")
    return eps


# -- scores and gaps --------------------------------------------------------------------------------
def prefix_scores(out: Tensor, loss_name: str = "mean_membrane") -> Tensor:
    """Readout scores of every prefix, ``[T, B, C] -> [T, B, C]`` with ``[t] = scores(out[:t+1])``.

    Uses :func:`spike.train.losses.scores` on each prefix, so ``[-1]`` is bit-for-bit the full-length score.
    """
    if not isinstance(out, Tensor) or out.dim() != 3:
        raise AnytimeError(f"output sequence must be [T, B, C], got "
                           f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}")
    return torch.stack([readout_scores(loss_name, out[: t + 1]) for t in range(out.shape[0])])  # [T, B, C]


def topk_gap(s: Tensor) -> Tensor:
    """Top-1 minus top-2 score along the last axis, ``[..., C] -> [...]`` (always ``>= 0``)."""
    if s.shape[-1] < 2:
        raise AnytimeError(f"the Top-K gap needs at least 2 classes, got {s.shape[-1]}")
    top = s.topk(2, dim=-1).values  # [..., 2]
    return top[..., 0] - top[..., 1]


def settled(preds: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``[T, N]`` bool: the prediction equals ``reference`` at step ``t`` and at every later step."""
    preds = np.asarray(preds)
    ok = preds == np.asarray(reference)[None, :]  # [T, N]
    return np.flip(np.logical_and.accumulate(np.flip(ok, 0), axis=0), 0)


def _smallest_threshold(g: np.ndarray, ok: np.ndarray, epsilon: float, c: float = 0.0) -> float:
    """Smallest ``beta >= 0`` with a non-empty pass set ``{g > beta}`` of ``k`` samples, ``u`` of them
    unsettled, and ``u + c <= eps * (k + c)``; ``inf`` if none."""
    order = np.argsort(-g, kind="stable")
    gs, oks = g[order], ok[order]  # gaps descending
    n = gs.size
    if n == 0:
        return math.inf
    k = np.arange(1, n + 1)
    nxt = np.append(gs[1:], -np.inf)  # the (k+1)-th largest gap
    beta_k = np.maximum(nxt, 0.0)  # smallest beta >= 0 admitting the top k
    exact = gs > beta_k  # {g > beta_k} is exactly the top k (no tie is split, beta >= 0 reachable)
    unsettled = k - np.cumsum(oks)
    good = unsettled + c <= epsilon * (k + c) + 1e-9
    cand = np.nonzero(exact & good)[0]
    return float(beta_k[cand[-1]]) if cand.size else math.inf


CORRECTIONS = {"none": 0.0, "conformal": 1.0}


def calibrate_thresholds(gaps: np.ndarray | Tensor, preds: np.ndarray | Tensor, epsilon: float,
                         labels: np.ndarray | Tensor | None = None, target: str = "final", *,
                         sequential: bool = True, correction: str = "conformal") -> np.ndarray:
    r"""Per-step thresholds :math:`\beta_t` for risk ``epsilon`` (see the module docstring).

    Args:
        gaps: ``[T, N]`` Top-K gaps of held-out samples (:func:`topk_gap` of :func:`prefix_scores`).
        preds: ``[T, N]`` predictions at every step.
        epsilon: tolerated fraction of not-yet-settled samples among those that stop, in ``[0, 1]``.
        labels: ``[N]`` labels, needed for ``target="correct"``.
        target: ``"final"`` (settled on the full-length prediction) or ``"correct"`` (on the label).
        sequential: calibrate step ``t`` on the samples still running at ``t`` (default) or on all.
        correction: ``"conformal"`` (one extra unsettled sample, default) or ``"none"`` (empirical).

    Returns:
        ``[T]`` float64 thresholds ``>= 0``; ``inf`` where no threshold qualifies.
    """
    eps = check_epsilon(epsilon)
    if target not in TARGETS:
        raise AnytimeError(f"target must be one of {TARGETS}, got {target!r}")
    if correction not in CORRECTIONS:
        raise AnytimeError(f"correction must be one of {sorted(CORRECTIONS)}, got {correction!r}")
    g = _np(gaps).astype(np.float64)
    p = _np(preds)
    if g.ndim != 2 or g.shape != p.shape:
        raise AnytimeError(f"gaps and preds must both be [T, N], got {g.shape} and {p.shape}")
    if np.isnan(g).any() or (g < 0).any():
        raise AnytimeError("gaps must be finite or +inf and >= 0 (top-1 minus top-2)")
    if target == "correct":
        if labels is None:
            raise AnytimeError("target='correct' needs the labels of the calibration samples")
        ref = _np(labels)
        if ref.shape != (p.shape[1],):
            raise AnytimeError(f"labels must be [N={p.shape[1]}], got {ref.shape}")
    else:
        ref = p[-1]
    ok = settled(p, ref)  # [T, N]
    c = CORRECTIONS[correction]
    running = np.ones(g.shape[1], dtype=bool)
    beta = np.full(g.shape[0], math.inf)
    for t in range(g.shape[0]):
        m = running if sequential else slice(None)
        beta[t] = _smallest_threshold(g[t][m], ok[t][m], eps, c)
        running &= ~(g[t] > beta[t])
    return beta


def _np(a: np.ndarray | Tensor) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)


# -- the cutoff policy ------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Cutoff:
    r"""Per-step thresholds :math:`\beta_t` of the Top-K gap (one per time step, ``>= 0``, ``inf`` = never stop).

    Example:
        >>> c = Cutoff((math.inf, 0.5, 0.2))
        >>> c.stop_steps(np.array([[9.0, 0.1], [0.6, 0.1], [0.0, 0.3]])).tolist()
        [1, 2]
    """

    beta: tuple[float, ...]
    epsilon: float | None = None
    target: str = "final"
    correction: str | None = None

    def __post_init__(self) -> None:
        b = np.asarray(self.beta, dtype=np.float64).reshape(-1)
        if b.size == 0:
            raise AnytimeError("a cutoff needs one threshold per time step, got none")
        if np.isnan(b).any():
            raise AnytimeError(f"thresholds must not be NaN, got {b.tolist()}")
        if (b < 0).any():
            raise AnytimeError(f"thresholds beta_t must be >= 0 (the Top-K gap is never negative), got "
                               f"{b[b < 0].tolist()} at step(s) {np.nonzero(b < 0)[0].tolist()}")
        if self.epsilon is not None:
            object.__setattr__(self, "epsilon", check_epsilon(self.epsilon))
        if self.target not in TARGETS:
            raise AnytimeError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.correction is not None and self.correction not in CORRECTIONS:
            raise AnytimeError(f"correction must be one of {sorted(CORRECTIONS)}, got {self.correction!r}")
        object.__setattr__(self, "beta", tuple(float(v) for v in b))

    @property
    def n_steps(self) -> int:
        return len(self.beta)

    def as_array(self) -> np.ndarray:
        return np.asarray(self.beta, dtype=np.float64)

    @classmethod
    def never(cls, n_steps: int) -> "Cutoff":
        """All thresholds infinite: every sample runs all ``n_steps`` (full-length inference)."""
        return cls((math.inf,) * int(n_steps))

    @classmethod
    def constant(cls, beta: float, n_steps: int) -> "Cutoff":
        return cls((float(beta),) * int(n_steps))

    @classmethod
    def calibrate(cls, gaps, preds, epsilon: float, labels=None, target: str = "final", *,
                  sequential: bool = True, correction: str = "conformal") -> "Cutoff":
        """:func:`calibrate_thresholds` wrapped as a :class:`Cutoff`."""
        beta = calibrate_thresholds(gaps, preds, epsilon, labels=labels, target=target, sequential=sequential,
                                    correction=correction)
        return cls(tuple(beta), epsilon=epsilon, target=target, correction=correction)

    def _check_steps(self, t: int) -> None:
        if t != self.n_steps:
            raise AnytimeError(f"the cutoff has {self.n_steps} thresholds but the input has {t} time steps")

    def stop_steps(self, gaps: np.ndarray | Tensor) -> np.ndarray:
        """First step with ``gap_t > beta_t`` per sample (0-based; ``T - 1`` if none), ``[T, N] -> [N]``."""
        g = _np(gaps).astype(np.float64)
        self._check_steps(g.shape[0])
        passed = g > self.as_array()[:, None]  # [T, N]
        passed[-1] = True
        return passed.argmax(0)

    def to_dict(self) -> dict:
        return {"beta": [None if math.isinf(b) else b for b in self.beta], "epsilon": self.epsilon,
                "target": self.target, "correction": self.correction}

    def save(self, path: str | Path, fingerprint: str | None = None) -> Path:
        """Write the cutoff as JSON (``beta``: ``null`` = ``inf``; floats round-trip exactly).

        Args:
            path: the ``.json`` file (written atomically).
            fingerprint: the model it was calibrated for (:func:`spike.inference.export.model_fingerprint`);
                :meth:`load` refuses the file for any other model.
        """
        import json

        from spike.train.trainer import atomic_write_text

        path = Path(path)
        doc = {"format": "spike-cutoff-v1", **self.to_dict(), "n_steps": self.n_steps, "fingerprint": fingerprint}
        atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path, fingerprint: str | None = None) -> "Cutoff":
        """Read a file written by :meth:`save`; with ``fingerprint``, refuse a cutoff of another model.

        Raises:
            AnytimeError: unreadable file, wrong format, or calibrated for another model (naming the file).
        """
        import json

        try:
            doc = json.loads(Path(path).read_text())
            beta = tuple(math.inf if b is None else float(b) for b in doc["beta"])
            if doc.get("format") != "spike-cutoff-v1":
                raise ValueError(f"format {doc.get('format')!r} is not 'spike-cutoff-v1'")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise AnytimeError(f"{path}: not a cutoff file: {type(e).__name__}: {e}") from None
        stored = doc.get("fingerprint")
        if fingerprint is not None and stored != fingerprint:
            raise AnytimeError(f"{path}: this cutoff was calibrated for another model (fingerprint "
                               f"{str(stored)[:19]}..., the model's is {fingerprint[:19]}...); recalibrate "
                               f"with spike eval --anytime")
        return cls(beta, epsilon=doc.get("epsilon"), target=doc.get("target", "final"),
                   correction=doc.get("correction"))


# -- execution --------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class AnytimeResult:
    """Per-sample outcome of anytime inference on one batch.

    ``stop_step`` is 0-based; ``steps = stop_step + 1`` time steps were used for the prediction.
    ``sample_steps`` counts (sample, step) pairs the network actually computed (equals ``steps.sum()``
    when finished samples are dropped; larger when they are only masked).
    """

    pred: Tensor          # [B] long
    stop_step: Tensor     # [B] long
    scores: Tensor        # [B, C] readout scores at the stop step
    n_steps: int
    wall_time_s: float = 0.0
    sample_steps: int = 0

    @property
    def steps(self) -> Tensor:
        return self.stop_step + 1

    @property
    def mean_steps(self) -> float:
        return float(self.steps.double().mean())


def offline_anytime(out: Tensor, cutoff: Cutoff, loss_name: str = "mean_membrane") -> AnytimeResult:
    """Anytime predictions from a full output sequence ``out [T, B, C]`` (what would have stopped where)."""
    cutoff._check_steps(out.shape[0])
    s = prefix_scores(out, loss_name)  # [T, B, C]
    stop = torch.as_tensor(cutoff.stop_steps(topk_gap(s)), dtype=torch.long, device=out.device)  # [B]
    chosen = s[stop, torch.arange(out.shape[1], device=out.device)]  # [B, C]
    return AnytimeResult(chosen.argmax(-1), stop, chosen, out.shape[0], sample_steps=int((stop + 1).sum()))


def _take(state: Any, keep: Tensor, batch: int) -> Any:
    """Select the samples ``keep`` (bool ``[batch]``) from every batch-first tensor of a state tree."""
    if isinstance(state, Tensor):
        return state[keep] if state.dim() >= 1 and state.shape[0] == batch else state
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # NamedTuple
        return type(state)(*(_take(s, keep, batch) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(_take(s, keep, batch) for s in state)
    if isinstance(state, dict):
        return {k: _take(v, keep, batch) for k, v in state.items()}
    return state


def _call_step(model: nn.Module, x: Tensor, state: Any) -> tuple[Tensor, Any]:
    res = model(x, state)
    if isinstance(res, Tensor) or not isinstance(res, tuple) or len(res) < 2:
        raise AnytimeError("anytime inference runs the model one step at a time and needs "
                           "model(x, state) -> (out, state, ...), like spike.synapses.Sequential")
    return res[0], res[1]


@torch.no_grad()
def anytime_forward(model: nn.Module, x: Tensor, cutoff: Cutoff, loss_name: str = "mean_membrane", *,
                    shrink: bool = True, chunk: int = 1, meter: Any = None) -> AnytimeResult:
    """Run ``model`` step by step on ``x [T, B, ...]`` and stop every sample at its cutoff.

    Args:
        model: called as ``model(x [k, B', ...], state) -> (out [k, B', C], state, ...)``
            (a :class:`spike.synapses.Sequential`); it is put in neither train nor eval mode here.
        x: time-first input.
        cutoff: per-step thresholds (``len == T``).
        loss_name: readout score used for the gap and the prediction (as in training).
        shrink: drop finished samples from the batch (their later steps are never computed); with
            ``False`` the batch keeps its size and finished samples are only masked.
        chunk: steps per model call. Stop steps and predictions do not depend on it; a sample that
            stops inside a chunk has the rest of that chunk computed (``sample_steps`` counts it),
            in exchange for ``chunk`` times fewer calls.
        meter: optional :class:`spike.energy.EnergyMeter` observing ``model``; each call's operations
            are attributed to the samples that actually ran it.

    Returns:
        :class:`AnytimeResult`; with ``Cutoff.never(T)`` its predictions are exactly the full-length ones.
    """
    if not isinstance(x, Tensor) or x.dim() < 3:
        raise AnytimeError(f"input must be time-first [T, B, ...], got "
                           f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise AnytimeError(f"chunk must be an integer >= 1, got {chunk!r}")
    t_len, b = x.shape[0], x.shape[1]
    cutoff._check_steps(t_len)
    beta = cutoff.as_array()
    dev = x.device
    rows = meter.new_samples(b) if meter is not None else None
    active = torch.arange(b, device=dev)  # original index of every sample still running
    stop = torch.full((b,), t_len - 1, dtype=torch.long, device=dev)
    pred = torch.zeros(b, dtype=torch.long, device=dev)
    outs: Tensor | None = None
    chosen: Tensor | None = None
    state: Any = None
    sample_steps = 0
    t0 = time.perf_counter()
    for c0 in range(0, t_len, chunk):
        c1 = min(c0 + chunk, t_len)
        comp = active if shrink else torch.arange(b, device=dev)  # samples computed in this chunk
        xc = x[c0:c1] if comp.numel() == b else x[c0:c1, comp]  # [k, B', ...]
        ctx = meter.attribute(rows[comp.cpu().numpy()]) if meter is not None else contextlib.nullcontext()
        with ctx:
            out_c, state = _call_step(model, xc, state)
        sample_steps += int(comp.numel()) * (c1 - c0)
        if outs is None:
            outs = out_c.new_full((t_len, b, out_c.shape[-1]), math.nan)  # [T, B, C]
            chosen = out_c.new_full((b, out_c.shape[-1]), math.nan)  # [B, C]
        outs[c0:c1, comp] = out_c
        for t in range(c0, c1):
            s = readout_scores(loss_name, outs[: t + 1, active])  # [B_active, C]
            if t == t_len - 1:
                done = torch.ones(active.numel(), dtype=torch.bool, device=dev)
            else:
                done = topk_gap(s).double() > beta[t]
            if bool(done.any()):
                idx = active[done]
                stop[idx] = t
                pred[idx] = s[done].argmax(-1)
                chosen[idx] = s[done]
                active = active[~done]
            if active.numel() == 0:
                break
        if active.numel() == 0:
            break
        if shrink and active.numel() < comp.numel():
            keep = torch.isin(comp, active)  # [B'] samples of this chunk still running
            state = _take(state, keep, int(comp.numel()))
    wall = time.perf_counter() - t0
    return AnytimeResult(pred, stop, chosen, t_len, wall_time_s=wall, sample_steps=sample_steps)


def calibrate_cutoff(model: nn.Module, calib_loader: Iterable, epsilon: float, *,
                     loss_name: str = "mean_membrane", target: str = "final", correction: str = "conformal",
                     sequential: bool = True, device: str | torch.device = "cpu") -> Cutoff:
    """Run ``model`` over held-out ``calib_loader`` and calibrate a :class:`Cutoff` for ``epsilon``."""
    model.eval()
    out, y, _ = collect_outputs(model, calib_loader, device)
    s = prefix_scores(out, loss_name)  # [T, N, C]
    return Cutoff.calibrate(topk_gap(s), s.argmax(-1), epsilon, labels=y, target=target, correction=correction,
                            sequential=sequential)


def cumulative_thresholds(cutoff: Cutoff, loss_name: str = "mean_membrane") -> np.ndarray:
    r"""The thresholds in units of the *cumulative sum* of outputs :math:`\sum_{\tau \le t} u_\tau`
    (what :class:`spike.events.network.StopRule` compares): ``beta_t * (t + 1)`` for a mean readout,
    ``beta_t`` for ``count``; other readouts have no such equivalent."""
    b = cutoff.as_array()
    if loss_name in ("mean_membrane", "per_step"):
        return b * np.arange(1, b.size + 1)
    if loss_name == "count":
        return b.copy()
    raise AnytimeError(f"readout {loss_name!r} is not a (scaled) cumulative sum; the event-driven stop rule "
                       f"cannot express its gap")


# -- evaluation over data sets ----------------------------------------------------------------------
@torch.no_grad()
def collect_outputs(model: nn.Module, loader: Iterable, device: str | torch.device = "cpu",
                    ) -> tuple[Tensor, Tensor, float]:
    """Full-length outputs of ``model`` over ``loader``: ``(out [T, N, C], labels [N], wall seconds)``."""
    outs, ys, wall = [], [], 0.0
    for x, y in loader:
        x = x.to(device)
        t0 = time.perf_counter()
        res = model(x)
        wall += time.perf_counter() - t0
        outs.append((res if isinstance(res, Tensor) else res[0]).float().cpu())
        ys.append(torch.as_tensor(y).cpu())
    if not outs:
        raise AnytimeError("the data loader is empty")
    return torch.cat(outs, 1), torch.cat(ys), wall  # [T, N, C], [N]


@dataclass(frozen=True)
class SweepPoint:
    """One risk level of a sweep, evaluated on the test data."""

    epsilon: float
    accuracy: float
    mean_steps: float
    speedup: float             # full_steps / mean_steps
    agreement: float           # fraction of predictions equal to the full-length ones
    wall_time_s: float | None  # step-by-step anytime run over the test set (None if not measured)
    beta: tuple[float, ...]
    online_mismatch: int | None = None  # samples whose online stop step or prediction differs from offline

    def to_dict(self) -> dict:
        return {"epsilon": self.epsilon, "accuracy": self.accuracy, "mean_steps": self.mean_steps,
                "speedup": self.speedup, "agreement": self.agreement, "wall_time_s": self.wall_time_s,
                "online_mismatch": self.online_mismatch,
                "beta": [None if math.isinf(b) else round(b, 6) for b in self.beta]}


@dataclass(frozen=True)
class AnytimeReport:
    """Full-length vs anytime accuracy and cost for a sweep of risks ``epsilon``."""

    full_accuracy: float
    full_steps: int
    n_test: int
    n_calibration: int
    target: str
    points: tuple[SweepPoint, ...]
    full_wall_time_s: float | None = None   # the same step-by-step loop with beta = inf
    dense_wall_time_s: float | None = None  # one plain forward over all T steps
    calibration_source: str = ""
    extra: dict = field(default_factory=dict)

    def point(self, epsilon: float) -> SweepPoint:
        for p in self.points:
            if math.isclose(p.epsilon, epsilon, abs_tol=1e-12):
                return p
        raise KeyError(f"epsilon {epsilon} is not in the sweep {[p.epsilon for p in self.points]}")

    def to_dict(self) -> dict:
        return {"full_accuracy": self.full_accuracy, "full_steps": self.full_steps, "n_test": self.n_test,
                "n_calibration": self.n_calibration, "target": self.target,
                "calibration_source": self.calibration_source, "full_wall_time_s": self.full_wall_time_s,
                "dense_wall_time_s": self.dense_wall_time_s, "sweep": [p.to_dict() for p in self.points],
                **self.extra}

    def format_table(self) -> str:
        lines = [f"full length: accuracy {self.full_accuracy:.4f} at {self.full_steps} steps"
                 + (f", {self.full_wall_time_s:.3f} s step-by-step" if self.full_wall_time_s is not None else ""),
                 f"{'epsilon':>8} {'accuracy':>9} {'mean steps':>11} {'speedup':>8} {'agree':>7} {'wall s':>8}"]
        for p in self.points:
            wall = f"{p.wall_time_s:8.3f}" if p.wall_time_s is not None else f"{'-':>8}"
            lines.append(f"{p.epsilon:8.4f} {p.accuracy:9.4f} {p.mean_steps:11.2f} {p.speedup:7.2f}x "
                         f"{p.agreement:7.4f} {wall}")
        return "\n".join(lines)


@torch.no_grad()
def _timed_pass(model: nn.Module, loader: Iterable, cutoff: Cutoff, loss_name: str, device,
                shrink: bool, chunk: int, repeats: int = 1) -> tuple[Tensor, Tensor, float]:
    """Predictions and stop steps over ``loader``; wall time is the best of ``repeats`` passes."""
    best = math.inf
    for _ in range(max(1, repeats)):
        preds, stops, wall = [], [], 0.0
        for x, _y in loader:
            r = anytime_forward(model, x.to(device), cutoff, loss_name, shrink=shrink, chunk=chunk)
            preds.append(r.pred.cpu())
            stops.append(r.stop_step.cpu())
            wall += r.wall_time_s
        best = min(best, wall)
    return torch.cat(preds), torch.cat(stops), best


@torch.no_grad()
def anytime_sweep(model: nn.Module, calib_loader: Iterable, test_loader: Iterable,
                  epsilons: Sequence[float] = DEFAULT_SWEEP, *, loss_name: str = "mean_membrane",
                  target: str = "final", correction: str = "conformal", sequential: bool = True,
                  device: str | torch.device = "cpu", measure_wall: bool = True,
                  shrink: bool = True, chunk: int = 1, wall_repeats: int = 1,
                  calibration_source: str = "") -> AnytimeReport:
    """Calibrate :math:`\\beta_t` on ``calib_loader`` for each ``epsilon`` and evaluate on ``test_loader``.

    Accuracy and mean steps come from :func:`offline_anytime` on the test outputs; with ``measure_wall``
    every point is also run for real with :func:`anytime_forward`, timed against the same loop with all
    thresholds infinite. The two agree exactly when every layer computes each step the same way in
    both runs; a backend that picks a kernel per call (``"auto"`` sparse Linear) can round differently,
    so disagreements are counted (``online_mismatch``), not raised.
    """
    epsilons = [check_epsilon(e) for e in epsilons]
    if not epsilons:
        raise AnytimeError("the epsilon sweep is empty")
    model.eval()
    c_out, c_y, _ = collect_outputs(model, calib_loader, device)
    c_scores = prefix_scores(c_out, loss_name)  # [T, Nc, C]
    c_gaps, c_preds = topk_gap(c_scores), c_scores.argmax(-1)  # [T, Nc]
    t_out, t_y, dense_wall = collect_outputs(model, test_loader, device)
    t_len = t_out.shape[0]
    full_pred = readout_scores(loss_name, t_out).argmax(-1)
    full_acc = float((full_pred == t_y).double().mean())
    full_wall = never_mismatch = None
    if measure_wall:
        p_never, _, full_wall = _timed_pass(model, test_loader, Cutoff.never(t_len), loss_name, device, shrink,
                                            chunk, wall_repeats)
        never_mismatch = int((p_never != full_pred).sum())
    points = []
    for eps in epsilons:
        cut = Cutoff.calibrate(c_gaps, c_preds, eps, labels=c_y, target=target, correction=correction,
                               sequential=sequential)
        off = offline_anytime(t_out, cut, loss_name)
        wall = mismatch = None
        if measure_wall:
            p_on, s_on, wall = _timed_pass(model, test_loader, cut, loss_name, device, shrink, chunk, wall_repeats)
            mismatch = int(((p_on != off.pred) | (s_on != off.stop_step)).sum())
        ms = off.mean_steps
        points.append(SweepPoint(eps, float((off.pred == t_y).double().mean()), ms, t_len / ms,
                                 float((off.pred == full_pred).double().mean()), wall, cut.beta, mismatch))
    return AnytimeReport(full_acc, t_len, int(t_y.numel()), int(c_y.numel()), target, tuple(points),
                         full_wall_time_s=full_wall, dense_wall_time_s=dense_wall,
                         calibration_source=calibration_source,
                         extra={"correction": correction, "sequential": sequential, "chunk": chunk,
                                "full_length_mismatch": never_mismatch})


def anytime_figure(report: AnytimeReport, title: str = "") -> Any:
    """The figure of :func:`plot_anytime`: accuracy (%) vs mean steps and vs measured wall time."""
    from spike.train.plots import _plt

    plt = _plt()
    by_eps = sorted(report.points, key=lambda p: p.epsilon)
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(by_eps), 1)))
    color = {id(p): c for p, c in zip(by_eps, colors)}
    pts = sorted(report.points, key=lambda p: (p.mean_steps, p.epsilon))
    has_wall = report.full_wall_time_s is not None and all(p.wall_time_s is not None for p in pts)
    fig, axes = plt.subplots(1, 2 if has_wall else 1, figsize=(11 if has_wall else 7, 4.0), squeeze=False,
                             layout="constrained")
    full_acc = 100 * report.full_accuracy
    ax = axes[0, 0]
    # offline accuracy is exact for each epsilon, so the curve is drawn in order of mean steps
    ax.plot([p.mean_steps for p in pts], [100 * p.accuracy for p in pts], "-", color="0.6", lw=1, zorder=1)
    for p in by_eps:
        ax.scatter(p.mean_steps, 100 * p.accuracy, color=color[id(p)], s=30, zorder=3,
                   label=f"ε = {p.epsilon:g}: {p.mean_steps:.2f} steps, {100 * p.accuracy:.1f}%")
    full = dict(marker="s", s=70, facecolors="none", edgecolors="k", linewidths=1.5, zorder=4)
    ax.scatter([report.full_steps], [full_acc], label=f"full length: {report.full_steps} steps, {full_acc:.1f}%",
               **full)
    ax.axhline(full_acc - 1, color="gray", lw=0.8, ls="--", label="full length − 1 point")
    ax.set_xlabel("mean time steps per test sample")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"accuracy vs steps ({report.n_test} test samples)", fontsize=9)
    ax.grid(alpha=0.3)
    if has_wall:
        ax = axes[0, 1]
        # measured times are noisy: points, not a line
        for p in by_eps:
            ax.scatter(p.wall_time_s, 100 * p.accuracy, color=color[id(p)], s=30, zorder=3)
        ax.scatter([report.full_wall_time_s], [full_acc], **full)
        ax.axhline(full_acc - 1, color="gray", lw=0.8, ls="--")
        if report.dense_wall_time_s is not None:
            ax.axvline(report.dense_wall_time_s, color="k", lw=0.8, ls=":",
                       label=f"one dense forward: {report.dense_wall_time_s:.3g} s")
        ax.set_xlabel("wall time over the test set (s), step-by-step loop")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("accuracy vs measured wall time", fontsize=9)
        ax.grid(alpha=0.3)
    handles, labels = [], []
    for a in axes[0]:
        h, lab = a.get_legend_handles_labels()
        handles += h
        labels += lab
    fig.legend(handles, labels, loc="outside right upper", fontsize=7, title="calibrated risk ε",
               title_fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_anytime(report: AnytimeReport, path: str | Path, title: str = "") -> Path:
    """Accuracy (%) vs mean time steps and vs wall time for the sweep, with the full-length point.

    Points are coloured by risk ε (same colour in both panels); the wall-time panel shows each
    measurement as a point, never joined, since timings are noisy.
    """
    from spike.train.plots import _save

    return _save(anytime_figure(report, title), path)


# -- checkpoint driver (``spike eval --anytime``) ---------------------------------------------------
def anytime_from_checkpoint(path: str | Path, *, epsilon: float = 0.01,
                            sweep: Sequence[float] = DEFAULT_SWEEP, calib_fraction: float = 0.2,
                            target: str = "final", correction: str = "conformal", sequential: bool = True,
                            device: str | None = None,
                            out_dir: str | Path | None = None, plot: bool = True,
                            measure_wall: bool = True, max_test: int | None = None, chunk: int = 1,
                            wall_repeats: int = 1) -> dict:
    """Calibrate on held-out data and evaluate anytime inference of a checkpoint on its test split.

    The calibration set is the ``[data] val_fraction`` split held out during training when the run
    had one; otherwise a seeded ``calib_fraction`` of the *training* set (samples the network was
    trained on, so its thresholds are optimistic; the JSON says so). The test set is never used for
    calibration.

    Returns:
        The JSON-able summary: ``full_accuracy``, ``anytime_accuracy``, ``mean_steps``, ``full_steps``,
        ``speedup`` (at ``epsilon``), the sweep, wall times and the calibration source.
    """
    from torch.utils.data import DataLoader, Subset

    from spike.data.builders import time_first_collate
    from spike.train.recipe import load_for_eval

    eps = check_epsilon(epsilon)
    sweep = sorted({check_epsilon(e) for e in sweep} | {eps})
    if target not in TARGETS:
        raise AnytimeError(f"target must be one of {TARGETS}, got {target!r}")
    run = load_for_eval(path, device=device, holdout_fraction=calib_fraction)
    cfg, model, data, dev = run.config, run.model, run.data, run.device
    if run.val is None or len(run.val) == 0:
        raise AnytimeError("no calibration samples: use a larger calib_fraction or [data] val_fraction")
    test = data.test if max_test is None else Subset(data.test, range(min(max_test, len(data.test))))
    bs = cfg.data.eval_batch_size
    calib_loader = DataLoader(run.val, batch_size=bs, shuffle=False, collate_fn=time_first_collate)
    test_loader = DataLoader(test, batch_size=bs, shuffle=False, collate_fn=time_first_collate)
    report = anytime_sweep(model, calib_loader, test_loader, sweep, loss_name=cfg.train.loss, target=target,
                           correction=correction, sequential=sequential, device=dev, measure_wall=measure_wall,
                           chunk=chunk, wall_repeats=wall_repeats,
                           calibration_source=run.val_source)
    p = report.point(eps)
    out = Path(out_dir) if out_dir is not None else run.run_dir
    result = {"full_accuracy": report.full_accuracy, "anytime_accuracy": p.accuracy,
              "mean_steps": p.mean_steps, "full_steps": report.full_steps, "speedup": p.speedup,
              "epsilon": eps, "accuracy_drop_points": round(100 * (report.full_accuracy - p.accuracy), 4),
              "agreement": p.agreement, "anytime_wall_time_s": p.wall_time_s,
              "full_wall_time_s": report.full_wall_time_s, "dense_wall_time_s": report.dense_wall_time_s,
              "wall_speedup": (report.full_wall_time_s / p.wall_time_s
                               if measure_wall and p.wall_time_s else None),
              "beta": p.to_dict()["beta"], "target": target, "correction": correction, "sequential": sequential,
              "chunk": chunk,
              "n_test": report.n_test,
              "n_calibration": report.n_calibration, "calibration_source": report.calibration_source,
              "loss": cfg.train.loss, "checkpoint": str(path), "device": str(dev),
              "sweep": [q.to_dict() for q in report.points]}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if plot:
            result["plot"] = str(plot_anytime(report, out / "anytime.png",
                                              title=f"{cfg.run.name}: anytime inference ({target})"))
        from spike.train.trainer import write_json

        from spike.inference.export import model_fingerprint

        cut = Cutoff(tuple(p.beta), epsilon=eps, target=target, correction=correction)
        result["cutoff"] = str(cut.save(out / "cutoff.json",
                                        model_fingerprint(model, int(cfg.data.n_time_bins))))
        write_json(out / "anytime.json", result)
        result["table"] = report.format_table()
    return result
