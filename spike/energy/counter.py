r"""Count what a spiking network does on real inputs: an observer with forward hooks, never a mutation.

Per layer and per sample (the counting rules of NeuroBench's ``SynapticOperations``, Yik et al. 2025,
"The NeuroBench framework for benchmarking neuromorphic computing algorithms and systems",
Nat. Commun. 16, 1545, doi:10.1038/s41467-025-56739-4):

* **synaptic operations** of ``Linear`` / ``Conv1d/2d/3d`` layers: for every output, one operation per
  input that is non-zero *and* reaches it through a non-zero weight (bias excluded; a pruned weight is
  no synapse)

  .. math:: N_\text{syn} = \sum_\text{outputs} \big(\mathbb 1[W \ne 0] * \mathbb 1[x \ne 0]\big);

  an operation triggered by an input *value* in :math:`\{-1, 1\}` (a spike) is an accumulate (**AC**),
  one triggered by any other value a multiply-accumulate (**MAC**):
  :math:`N_\text{AC} = \sum (\mathbb 1[W \ne 0] * \mathbb 1[|x| = 1])`, :math:`N_\text{MAC} = N_\text{syn} -
  N_\text{AC}`. Classified per element, the counts do not depend on how a sequence is chunked into calls
  or batched with other samples. ``rule="neurobench"`` reproduces NeuroBench instead: all operations of
  a *call* are ACs if every input of that call is in :math:`\{-1, 0, 1\}`, else all are MACs (so they
  depend on chunking and batching). The **dense** equivalent sets both indicators to one;
* **neuron updates**: every neuron of a stateful layer (spike's LIF/IF/LI, snnTorch's spiking neurons)
  updates its state once per step;
* **spikes**, **firing rate** (spikes / updates) and **activation sparsity** (zero outputs / outputs;
  the summary's value is over the spiking layers, a non-spiking readout's membrane is left out).

A stateful module the meter cannot interpret (a Norse / SpikingJelly / Sinabs neuron, or any foreign
module that keeps tensors between calls) is named in an :class:`EnergyWarning` and in the report's
``not_counted``: its updates and spikes are missing, never silently zero.

Calls are time-first ``model(x [T, B, ...])`` (each call adds ``B`` samples), or, with
``per_step=T``, batch-first single steps ``model(x [B, ...])`` (``T`` consecutive calls are one
sequence of ``B`` samples, as NeuroBench's ``SNNTorchModel`` runs a net). Only the calls that actually
run are counted, so anytime inference (finished samples leave the batch) is charged for the steps it
executed. Counts are float64 sums (exact to :math:`2^{53}`).

Example:
    >>> with EnergyMeter(model) as meter:
    ...     for x, _ in loader:
    ...         model(x)
    >>> report = meter.report()
    >>> print(report.format_table("cmos45_fp32"))
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from spike.energy.profiles import DeviceProfile, get_profile

__all__ = ["EnergyError", "EnergyWarning", "EnergyMeter", "LayerCounts", "EnergyReport", "measure",
           "SYNAPSE_TYPES", "RULES"]

SYNAPSE_TYPES: tuple[type, ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
RULES = ("element", "neurobench")
"""AC/MAC rules: per input element (default) or NeuroBench's per call."""
_METRICS = ("ac", "mac", "dense", "updates", "spikes", "nonzero_out", "outputs")
# libraries whose stateful modules (neurons) the meter does not interpret, unless listed in _is_neuron
_SNN_LIBRARIES = ("snntorch", "norse", "spikingjelly", "sinabs", "lava", "rockpool")
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


class EnergyError(ValueError):
    """The meter cannot attribute a call (unknown batch layout, layer called outside the model)."""


class EnergyWarning(UserWarning):
    """A stateful module of the observed model is not counted (the meter cannot interpret it)."""


def _is_linear_like(m: nn.Module) -> bool:
    """``nn.Linear`` or a layer with a ``[out_features, in_features]`` weight (e.g. a delayed linear layer:
    a delay shifts when an input arrives, not how many synapses it reaches)."""
    if isinstance(m, nn.Linear):
        return True
    w = getattr(m, "weight", None)
    return (isinstance(w, Tensor) and w.dim() == 2 and not isinstance(m, SYNAPSE_TYPES)
            and (getattr(m, "out_features", None), getattr(m, "in_features", None)) == tuple(w.shape))


def _is_snntorch_neuron(m: nn.Module) -> bool:
    snn = sys.modules.get("snntorch")  # only if the user imported it (a module of it exists)
    return snn is not None and isinstance(m, getattr(snn, "SpikingNeuron", ()))


def _is_neuron(m: nn.Module) -> bool:
    from spike.neurons.modules import LIF
    from spike.synapses.sequential import is_stateful

    return isinstance(m, LIF) or _is_snntorch_neuron(m) or (
        is_stateful(m) and not isinstance(m, SYNAPSE_TYPES) and not isinstance(m, _CONTAINERS))


def _library(m: nn.Module) -> str:
    return type(m).__module__.split(".")[0]


def _is_torch_layer(m: nn.Module) -> bool:
    """A (subclass of a) stock ``torch.nn`` layer: its semantics are torch's (pooling, dropout, ...)."""
    return any(c.__module__.startswith("torch.") and c is not nn.Module for c in type(m).__mro__)


def _buffer_marks(m: nn.Module) -> dict[str, tuple[int, int]]:
    return {k: (id(v), v._version) for k, v in m.named_buffers(recurse=False)}


def _holds_state(m: nn.Module, before: dict[str, tuple[int, int]]) -> bool:
    """After a call: does ``m`` keep tensors between calls (plain tensor attributes, SpikingJelly-style
    memories, or buffers the call replaced or changed in place; a constant buffer is no state)?"""
    return (any(isinstance(v, Tensor) for v in vars(m).values())
            or bool(getattr(m, "_memories", None))
            or _buffer_marks(m) != before)


def _is_nonspiking(m: nn.Module) -> bool:
    from spike.neurons.modules import LI

    return isinstance(m, LI)


@dataclass
class _Acc:
    """The meter's own running sums for one layer (rows, values) — the model is never touched."""

    name: str
    kind: str
    module: str
    chunks: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    inputs: set = field(default_factory=set)  # {"spikes", "real"}: non-zero input values seen (AC / MAC)
    calls: int = 0
    binary_out: bool = True
    dense_step: float = 0.0
    neurons: int = 0

    def add(self, metric: str, rows: np.ndarray, values: Tensor) -> None:
        self.chunks.setdefault(metric, []).append((rows, values.detach().to("cpu", torch.float64).numpy()))


class EnergyMeter:
    """Context manager observing ``model`` with forward hooks (removed on exit) and counting operations.

    Every top-level call ``model(x [T, B, ...], ...)`` adds ``B`` new samples; inside
    :meth:`attribute` the calls are charged to given existing samples instead (step-by-step runs).

    Args:
        model: the network (its parameters and buffers are only read).
        rule: ``"element"`` (default): an operation is an AC if the input value that triggers it is
            ``±1``, else a MAC; ``"neurobench"``: NeuroBench's rule, all operations of a layer call are
            ACs if every input of the call is in ``{-1, 0, 1}``, else MACs.
        per_step: ``T`` when the model is called once per time step with a batch-first input
            ``x [B, ...]`` (no time axis, e.g. an snnTorch net); ``T`` consecutive calls outside
            :meth:`attribute` make one sequence of ``B`` new samples.

    Raises:
        EnergyError: an unknown ``rule`` or a bad ``per_step``.
    """

    def __init__(self, model: nn.Module, *, rule: str = "element", per_step: int | None = None):
        if rule not in RULES:
            raise EnergyError(f"unknown rule {rule!r}; known: {RULES}")
        if per_step is not None and (isinstance(per_step, bool) or not isinstance(per_step, int) or per_step < 1):
            raise EnergyError(f"per_step must be the number of steps of a sequence (an int >= 1), got {per_step!r}")
        self.model = model
        self.rule = rule
        self.per_step = per_step
        self._seq_rows: np.ndarray | None = None  # per_step: the samples of the running sequence
        self._seq_left = 0  # per_step: calls left in it
        self._not_counted: dict[str, str] = {}  # module name -> "name (library Class)"
        self._handles: list[Any] = []
        self._acc: dict[str, _Acc] = {}
        self._n = 0
        self._steps: list[tuple[np.ndarray, int]] = []
        self._attr: np.ndarray | None = None
        self._rows: np.ndarray | None = None
        self._t = 0
        self._dense_cache: dict[tuple, float] = {}

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> "EnergyMeter":
        if self._handles:
            raise EnergyError("this EnergyMeter is already observing its model")
        counted: list[str] = []
        for name, m in self.model.named_modules():
            if isinstance(m, SYNAPSE_TYPES) or _is_linear_like(m):
                self._acc[name] = _Acc(name or type(m).__name__, "synapse", type(m).__name__)
                self._handles.append(m.register_forward_hook(self._synapse_hook(self._acc[name])))
                counted.append(name)
            elif m is not self.model and _is_neuron(m):
                self._acc[name] = _Acc(name, "neuron", type(m).__name__)
                self._handles.append(m.register_forward_hook(self._neuron_hook(self._acc[name], m)))
                counted.append(name)
        if not self._acc:
            raise EnergyError(f"{type(self.model).__name__} has no Linear/Conv or neuron layers to count")
        self._watch_foreign(counted)
        # registered last: the root's post-hook runs after a root layer's own counting hook
        self._handles.insert(0, self.model.register_forward_pre_hook(self._root_pre, with_kwargs=True))
        self._handles.append(self.model.register_forward_hook(self._root_post))
        return self

    def _watch_foreign(self, counted: list[str]) -> None:
        """Name the modules whose state the meter cannot count: neurons of other SNN libraries at once,
        any other foreign module as soon as a call shows that it keeps tensors between calls."""
        flagged: list[str] = []
        for name, m in self.model.named_modules():
            if (m is self.model or name in self._acc or isinstance(m, _CONTAINERS) or _is_torch_layer(m)
                    or _library(m) == "spike"):
                continue
            inside = [p for p in counted + flagged if p == "" or name.startswith(p + ".")]
            below = [c for c in counted if c.startswith(name + ".")]
            if inside or below:  # part of a counted layer, or a container of counted layers
                continue
            if _library(m) in _SNN_LIBRARIES:
                flagged.append(name)
                self._flag(name, m)
            else:
                self._foreign_hook(name, m)

    def _flag(self, name: str, m: nn.Module) -> None:
        if name in self._not_counted:
            return
        self._not_counted[name] = f"{name} ({_library(m)} {type(m).__name__})"
        warnings.warn(f"EnergyMeter cannot interpret the stateful module {self._not_counted[name]}: its neuron "
                      f"updates and spikes are not counted", EnergyWarning, stacklevel=3)

    def _foreign_hook(self, name: str, m: nn.Module) -> None:
        marks: dict[str, tuple[int, int]] = {}

        def pre(mod: nn.Module, args) -> None:
            marks.clear()
            marks.update(_buffer_marks(mod))

        def post(mod: nn.Module, args, out) -> None:
            if _holds_state(mod, marks):
                self._flag(name, mod)
        self._handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._rows = None

    def new_samples(self, n: int) -> np.ndarray:
        """Reserve ``n`` new sample rows (returns their ids)."""
        rows = np.arange(self._n, self._n + int(n))
        self._n += int(n)
        return rows

    @contextlib.contextmanager
    def attribute(self, rows: np.ndarray | Tensor) -> Iterator[None]:
        """Charge the model calls inside this block to the existing samples ``rows`` (one per batch entry)."""
        r = np.asarray(rows.cpu() if isinstance(rows, Tensor) else rows, dtype=np.int64).reshape(-1)
        if r.size and (r.min() < 0 or r.max() >= self._n):
            raise EnergyError(f"rows {r.min()}..{r.max()} are not samples of this meter (0..{self._n - 1})")
        prev, self._attr = self._attr, r
        try:
            yield
        finally:
            self._attr = prev

    # -- hooks ---------------------------------------------------------------------------------------
    def _root_pre(self, module, args, kwargs):
        x = args[0] if args else kwargs.get("x", next(iter(kwargs.values()), None))
        if self.per_step is None:
            if not isinstance(x, Tensor) or x.dim() < 2:
                raise EnergyError("the observed model must be called with a time-first tensor x [T, B, ...]; "
                                  "for one call per step with x [B, ...] use EnergyMeter(model, per_step=T)")
            t, b = int(x.shape[0]), int(x.shape[1])
        else:
            if not isinstance(x, Tensor) or x.dim() < 1:
                raise EnergyError("with per_step the observed model must be called with a batch-first tensor "
                                  "x [B, ...] (one step)")
            t, b = 1, int(x.shape[0])
        if self._attr is not None:
            if self._attr.size != b:
                raise EnergyError(f"attribute() got {self._attr.size} rows but the call has batch {b}")
            rows = self._attr
        elif self.per_step is None:
            rows = self.new_samples(b)
        else:
            if self._seq_left == 0:
                self._seq_rows, self._seq_left = self.new_samples(b), self.per_step
            elif self._seq_rows is not None and self._seq_rows.size != b:
                raise EnergyError(f"step {self.per_step - self._seq_left} of a {self.per_step}-step sequence has "
                                  f"batch {b}, its first step had {self._seq_rows.size}; charge shrinking batches "
                                  f"with attribute(rows)")
            rows = self._seq_rows
            self._seq_left -= 1
        self._rows, self._t = rows, t
        self._steps.append((rows, t))

    def _root_post(self, module, args, output):
        self._rows = None

    def _current(self, what: str) -> tuple[np.ndarray, int, int]:
        if self._rows is None:
            raise EnergyError(f"{what} ran outside a call of the observed model; call the model itself")
        return self._rows, int(self._rows.size), self._t

    @staticmethod
    def _steps_of(v: Tensor, b: int, t: int, what: str) -> int:
        """Steps per sample held by ``v``: ``[T, B, ...]`` or ``[T*B, ...]`` (``t``) or ``[B, ...]`` (one)."""
        if v.dim() >= 2 and v.shape[0] == t and v.shape[1] == b:
            return t
        if v.dim() >= 1 and v.shape[0] == t * b:
            return t
        if v.dim() >= 1 and v.shape[0] == b:
            return 1
        hint = "" if t == 1 else "; for one call per step with x [B, ...] use EnergyMeter(model, per_step=T)"
        raise EnergyError(f"{what}: cannot find the batch ({b} samples, {t} steps) in a tensor of shape "
                          f"{tuple(v.shape)}{hint}")

    @classmethod
    def _per_sample(cls, v: Tensor, b: int, t: int, what: str) -> Tensor:
        """Sum a tensor over everything but the sample axis: ``[T, B, ...]``, ``[T*B, ...]`` or ``[B, ...]``."""
        steps = cls._steps_of(v, b, t, what)
        return v.reshape(steps, b, -1).sum((0, 2))  # [B]

    def _split(self, x: Tensor) -> dict[str, Tensor]:
        """Indicators of the inputs whose operations are ACs / MACs under the meter's rule."""
        nz = x != 0
        if self.rule == "neurobench":  # one class for the whole call
            spiking = bool(((x == 0) | (x == 1) | (x == -1)).all())
            return {"ac" if spiking else "mac": nz}
        unit = (x == 1) | (x == -1)  # [...] an input spike: its operations are accumulates
        return {"ac": unit, "mac": nz & ~unit}

    def _synapse_hook(self, acc: _Acc):
        def hook(m: nn.Module, args, out) -> None:
            rows, b, t = self._current(acc.name)
            x = args[0].detach()
            acc.calls += 1
            w = m.weight.detach()
            wbin = (w != 0).to(torch.float64)
            linear = _is_linear_like(m)
            if linear:
                fan = wbin.sum(0)  # [F_in] non-zero synapses of every input
                dense_frame = float(w.numel())  # one input vector: F_in * F_out connections
                frames = x.numel() // w.shape[1]
            else:
                spatial = w.dim() - 2
                shape = x.shape[2:] if x.dim() == spatial + 3 else x.shape[1:]  # time-first [T, B, C, ...]
                key = (acc.name, tuple(shape))
                if key not in self._dense_cache:
                    ones = torch.ones((1, *shape), dtype=torch.float64, device=x.device)
                    self._dense_cache[key] = float(m._conv_forward(ones, torch.ones_like(wbin), None).sum())
                dense_frame = self._dense_cache[key]
                frames = x.numel() // max(int(np.prod(shape)), 1)
            for metric, ind in self._split(x).items():
                if not bool(ind.any()):
                    continue
                acc.inputs.add("spikes" if metric == "ac" else "real")
                ind = ind.to(torch.float64)
                if linear:
                    eff = ind @ fan  # [..., F_in] @ [F_in] -> [...], synapses reached per input vector
                else:
                    ind = ind.reshape(-1, *shape)  # [N, C, ...]
                    eff = m._conv_forward(ind, wbin, None).reshape(ind.shape[0], -1).sum(1)  # [N]
                acc.add(metric, rows, self._per_sample(eff, b, t, acc.name))
            acc.add("dense", rows, torch.full((b,), dense_frame * frames / b, dtype=torch.float64))
            acc.dense_step = dense_frame
        return hook

    def _neuron_hook(self, acc: _Acc, layer: nn.Module):
        nonspiking = _is_nonspiking(layer)

        def hook(m: nn.Module, args, output) -> None:
            rows, b, t = self._current(acc.name)
            x = args[0]
            acc.calls += 1
            y = (output if isinstance(output, Tensor) else output[0]).detach()  # snnTorch: (spk, mem)
            per_numel = x.numel() // max(b, 1)
            acc.neurons = per_numel // self._steps_of(x, b, t, acc.name)
            ones = torch.full((b,), float(per_numel), dtype=torch.float64)
            acc.add("updates", rows, ones)
            acc.add("outputs", rows, torch.full((b,), float(y.numel() // max(b, 1)), dtype=torch.float64))
            nzo = self._per_sample((y != 0).to(torch.float64), b, t, acc.name)
            acc.add("nonzero_out", rows, nzo)
            binary = (not nonspiking) and bool(((y == 0) | (y == 1)).all())
            acc.binary_out = acc.binary_out and binary
            if binary:
                acc.add("spikes", rows, nzo)
        return hook

    # -- result -------------------------------------------------------------------------------------
    def report(self) -> "EnergyReport":
        """Counts so far as an :class:`EnergyReport` (may be called inside or after the block)."""
        n = self._n
        steps = np.zeros(n)
        for rows, t in self._steps:
            np.add.at(steps, rows, t)
        layers = []
        for acc in self._acc.values():
            arrays = {}
            for k in _METRICS:
                a = np.zeros(n)
                for rows, vals in acc.chunks.get(k, []):
                    np.add.at(a, rows, vals)
                arrays[k] = a
            if acc.kind == "synapse":
                inp = {frozenset({"spikes"}): "spikes", frozenset({"real"}): "real",
                       frozenset({"spikes", "real"}): "mixed"}.get(frozenset(acc.inputs),
                                                                 "silent" if acc.calls else "unused")
            else:
                inp = ""
            layers.append(LayerCounts(acc.name, acc.kind, acc.module, inp,
                                      spiking=acc.kind == "neuron" and acc.binary_out and bool(acc.chunks),
                                      neurons=acc.neurons, dense_step=acc.dense_step, **arrays))
        return EnergyReport(tuple(layers), steps, tuple(self._not_counted.values()), self.rule)


@dataclass(frozen=True, eq=False)
class LayerCounts:
    """Per-sample counts of one layer (arrays ``[N]``, float64)."""

    name: str
    kind: str          # "synapse" | "neuron"
    module: str        # class name
    input: str         # synapse: "spikes" (all AC) | "real" (all MAC) | "mixed" | "silent" | "unused"; neuron: ""
    spiking: bool      # neuron layer emitting binary spikes
    neurons: int       # neurons of the layer (one sample, one step)
    dense_step: float  # dense synaptic operations of one sample and one step (the ANN's MACs)
    ac: np.ndarray
    mac: np.ndarray
    dense: np.ndarray
    updates: np.ndarray
    spikes: np.ndarray
    nonzero_out: np.ndarray
    outputs: np.ndarray

    def energy_pj(self, profile: DeviceProfile, memory: bool = False) -> np.ndarray:
        """``[N]`` picojoules of this layer (formula in :mod:`spike.energy.profiles`)."""
        e = profile.ac_pj * self.ac + profile.mac_pj * self.mac + profile.mac_pj * self.updates \
            + profile.ac_pj * self.spikes
        if memory:
            e = e + profile.mem_access_pj * (self.ac + self.mac + 2.0 * self.updates)
        return e

    def ann_energy_pj(self, profile: DeviceProfile, memory: bool = False) -> float:
        """Per-sample energy of the same layer in a non-spiking ANN (one dense pass, MACs)."""
        e = profile.mac_pj * self.dense_step
        if memory:
            e += profile.mem_access_pj * (self.dense_step + 2.0 * self.neurons * (self.kind == "neuron"))
        return float(e)


@dataclass(frozen=True, eq=False)
class EnergyReport:
    """Counts of an observed run: per layer, per sample; plus time steps executed per sample.

    ``not_counted`` names the stateful modules the meter could not interpret (their neuron updates and
    spikes are missing from every total); ``rule`` is the AC/MAC rule (:data:`RULES`).
    """

    layers: tuple[LayerCounts, ...]
    steps: np.ndarray  # [N]
    not_counted: tuple[str, ...] = ()
    rule: str = "element"

    @property
    def n_samples(self) -> int:
        return int(self.steps.size)

    def layer(self, name: str) -> LayerCounts:
        for lc in self.layers:
            if lc.name == name:
                return lc
        raise KeyError(f"no layer {name!r}; layers: {[lc.name for lc in self.layers]}")

    def total(self, metric: str) -> np.ndarray:
        """``[N]`` sum of ``metric`` over layers (``ac``, ``mac``, ``dense``, ``updates``, ``spikes``, ...)."""
        if metric not in _METRICS:
            raise KeyError(f"unknown metric {metric!r}; known: {_METRICS}")
        return sum((getattr(lc, metric) for lc in self.layers), np.zeros(self.n_samples))

    def energy_pj(self, profile: str | DeviceProfile = "cmos45_fp32", memory: bool = False) -> np.ndarray:
        p = get_profile(profile)
        return sum((lc.energy_pj(p, memory) for lc in self.layers), np.zeros(self.n_samples))

    def summary(self, profile: str | DeviceProfile = "cmos45_fp32", memory: bool = False) -> dict:
        """Means per sample over the observed samples, plus the ANN comparison."""
        p = get_profile(profile)
        n = max(self.n_samples, 1)
        spk = [lc for lc in self.layers if lc.spiking]
        upd_spk = sum(float(lc.updates.sum()) for lc in spk)
        outs = sum(float(lc.outputs.sum()) for lc in spk)
        e_snn = float(self.energy_pj(p, memory).sum()) / n
        e_ann = sum(lc.ann_energy_pj(p, memory) for lc in self.layers)
        return {
            "n_samples": self.n_samples, "mean_steps": float(self.steps.mean()) if self.n_samples else 0.0,
            "ac": float(self.total("ac").sum()) / n, "mac": float(self.total("mac").sum()) / n,
            "synops": float((self.total("ac") + self.total("mac")).sum()) / n,
            "dense_synops": float(self.total("dense").sum()) / n,
            "neuron_updates": float(self.total("updates").sum()) / n,
            "spikes": float(self.total("spikes").sum()) / n,
            "firing_rate": float(sum(float(lc.spikes.sum()) for lc in spk) / upd_spk) if upd_spk else 0.0,
            "activation_sparsity": (1.0 - sum(float(lc.nonzero_out.sum()) for lc in spk) / outs) if outs else 0.0,
            "energy_pj": e_snn, "ann_macs": sum(lc.dense_step for lc in self.layers), "ann_energy_pj": e_ann,
            "ann_over_snn": e_ann / e_snn if e_snn else None,
            "profile": p.name, "memory": memory, "rule": self.rule, "not_counted": list(self.not_counted),
        }

    def per_layer(self, profile: str | DeviceProfile = "cmos45_fp32", memory: bool = False) -> list[dict]:
        """One row per layer: means per sample."""
        p = get_profile(profile)
        n = max(self.n_samples, 1)
        rows = []
        for lc in self.layers:
            upd = float(lc.updates.sum())
            outs = float(lc.outputs.sum())
            rows.append({
                "layer": lc.name, "kind": lc.kind, "module": lc.module, "input": lc.input, "spiking": lc.spiking,
                "neurons": lc.neurons, "ac": float(lc.ac.sum()) / n, "mac": float(lc.mac.sum()) / n,
                "dense": float(lc.dense.sum()) / n, "updates": upd / n, "spikes": float(lc.spikes.sum()) / n,
                "firing_rate": float(lc.spikes.sum()) / upd if (lc.spiking and upd) else None,
                "activation_sparsity": 1.0 - float(lc.nonzero_out.sum()) / outs if outs else None,
                "energy_pj": float(lc.energy_pj(p, memory).sum()) / n, "ann_energy_pj": lc.ann_energy_pj(p, memory),
            })
        return rows

    def per_sample(self, profile: str | DeviceProfile = "cmos45_fp32", memory: bool = False) -> dict[str, list]:
        """Totals over layers for every sample (lists of length ``N``)."""
        return {"steps": self.steps.tolist(), "ac": self.total("ac").tolist(), "mac": self.total("mac").tolist(),
                "dense": self.total("dense").tolist(), "updates": self.total("updates").tolist(),
                "spikes": self.total("spikes").tolist(), "energy_pj": self.energy_pj(profile, memory).tolist()}

    def to_dict(self, profile: str | DeviceProfile = "cmos45_fp32", memory: bool = False,
                samples: bool = True) -> dict:
        d = {"summary": self.summary(profile, memory), "layers": self.per_layer(profile, memory),
             "profile": get_profile(profile).to_dict()}
        if samples:
            d["per_sample"] = self.per_sample(profile, memory)
        return d

    def to_json(self, path: str | Path | None = None, **kw) -> str:
        text = json.dumps(self.to_dict(**kw), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def format_table(self, profile: str | DeviceProfile = "cmos45_fp32", memory: bool = False) -> str:
        """Per-layer table of means per sample, then totals and the ANN comparison."""
        p = get_profile(profile)
        head = (f"{'layer':<10} {'module':<10} {'in':<6} {'AC':>11} {'MAC':>11} {'dense':>11} {'updates':>10} "
                f"{'spikes':>9} {'rate':>6} {'sparsity':>8} {'E (nJ)':>9} {'ANN (nJ)':>9}")
        lines = [f"energy profile {p.name}: AC {p.ac_pj} pJ, MAC {p.mac_pj} pJ"
                 + (f", memory {p.mem_access_pj} pJ/access" if memory else "") + f" ({p.source})", head]
        for r in self.per_layer(p, memory):
            rate = f"{r['firing_rate']:.3f}" if r["firing_rate"] is not None else "-"
            sp = f"{r['activation_sparsity']:.3f}" if r["activation_sparsity"] is not None else "-"
            lines.append(f"{r['layer']:<10} {r['module']:<10} {r['input'] or '-':<6} {r['ac']:11.4g} "
                         f"{r['mac']:11.4g} {r['dense']:11.4g} {r['updates']:10.4g} {r['spikes']:9.4g} {rate:>6} "
                         f"{sp:>8} {r['energy_pj'] / 1e3:9.4g} {r['ann_energy_pj'] / 1e3:9.4g}")
        s = self.summary(p, memory)
        lines.append(f"per sample ({s['n_samples']} samples, {s['mean_steps']:.2f} steps): AC {s['ac']:.4g}, "
                     f"MAC {s['mac']:.4g}, dense {s['dense_synops']:.4g}, updates {s['neuron_updates']:.4g}, "
                     f"spikes {s['spikes']:.4g}, firing rate {s['firing_rate']:.4f}, "
                     f"sparsity {s['activation_sparsity']:.4f}")
        if self.not_counted:
            lines.append(f"NOT COUNTED (stateful modules the meter cannot interpret; their updates and spikes are "
                         f"missing): {', '.join(self.not_counted)}")
        ratio = f"{s['ann_over_snn']:.2f}x" if s["ann_over_snn"] else "-"
        lines.append(f"energy per sample: SNN {s['energy_pj'] / 1e3:.4g} nJ, ANN (same layers, one dense pass) "
                     f"{s['ann_energy_pj'] / 1e3:.4g} nJ, ANN/SNN {ratio}")
        return "\n".join(lines)

    def plot(self, path: str | Path, profile: str | DeviceProfile = "cmos45_fp32", memory: bool = False,
             title: str = "", *, epsilon: float | None = None, accuracy: float | None = None) -> Path:
        """Per-layer bar chart: energy per sample (SNN vs ANN) and synaptic operations (AC / MAC / dense),
        both on log axes (layers differ by orders of magnitude).

        Args:
            path: the ``.png`` to write.
            profile, memory: as :meth:`energy_pj`.
            title: run name, first in the title.
            epsilon: the risk of an anytime run: the title then says "anytime (ε = …, mean steps …)".
            accuracy: a fraction in ``[0, 1]``, shown in the title as a percentage.
        """
        fig = self.figure(profile, memory, title, epsilon=epsilon, accuracy=accuracy)
        path = Path(path)
        fig.savefig(path, dpi=120)
        fig.clear()
        return path

    def figure(self, profile: str | DeviceProfile = "cmos45_fp32", memory: bool = False, title: str = "", *,
               epsilon: float | None = None, accuracy: float | None = None):
        """The matplotlib ``Figure`` of :meth:`plot` (made without pyplot: the user's backend is untouched)."""
        from spike.core.figures import figures

        plt = figures()

        p = get_profile(profile)
        rows = self.per_layer(p, memory)
        names = [f"{r['layer']}\n{r['module']}" for r in rows]
        xs = np.arange(len(rows))
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
        a1.bar(xs - 0.2, [r["energy_pj"] / 1e3 for r in rows], 0.4, label="SNN")
        a1.bar(xs + 0.2, [r["ann_energy_pj"] / 1e3 for r in rows], 0.4, label="ANN (1 dense pass)")
        a1.set_ylabel("energy per sample (nJ)")
        a1.set_title(f"energy ({p.name}{', +memory' if memory else ''})", fontsize=9)
        a2.bar(xs - 0.27, [r["ac"] for r in rows], 0.27, label="AC")
        a2.bar(xs, [r["mac"] for r in rows], 0.27, label="MAC")
        a2.bar(xs + 0.27, [r["dense"] for r in rows], 0.27, label="dense")
        a2.set_ylabel("operations per sample")
        a2.set_title("synaptic operations", fontsize=9)
        for ax, vals in ((a1, [v for r in rows for v in (r["energy_pj"] / 1e3, r["ann_energy_pj"] / 1e3)]),
                         (a2, [v for r in rows for v in (r["ac"], r["mac"], r["dense"])])):
            pos = [v for v in vals if v > 0]
            if pos:  # log axis; a zero bar (no MAC, no ANN cost of a neuron layer) is simply absent
                ax.set_yscale("log")
                ax.set_ylim(min(pos) / 3, max(pos) * 3)
            ax.set_xticks(xs, names, fontsize=8)
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3, axis="y")
        fig.suptitle(self._plot_title(title, epsilon, accuracy), fontsize=10)
        fig.tight_layout()
        return fig

    def _plot_title(self, title: str, epsilon: float | None, accuracy: float | None) -> str:
        mean = float(self.steps.mean()) if self.n_samples else 0.0
        if epsilon is not None:
            run = f"anytime (ε = {epsilon:g}, mean steps {mean:.2f})"
        else:
            run = f"full length ({mean:g} steps)"
        parts = [title, run, f"{self.n_samples} samples"]
        if accuracy is not None:
            parts.append(f"accuracy {100.0 * accuracy:.1f} %")
        if self.not_counted:
            parts.append(f"not counted: {', '.join(self.not_counted)}")
        return " — ".join(x for x in parts if x)


@torch.no_grad()
def measure(model: nn.Module, loader: Iterable, device: str | torch.device = "cpu",
            max_samples: int | None = None, rule: str = "element") -> EnergyReport:
    """Run ``model`` (eval mode) over ``loader``'s ``(x [T, B, ...], y)`` batches and count everything
    (``rule``: see :class:`EnergyMeter`)."""
    was_training = model.training
    model.eval()
    seen = 0
    try:
        with EnergyMeter(model, rule=rule) as meter:
            for x, _y in loader:
                if max_samples is not None:
                    if seen >= max_samples:
                        break
                    x = x[:, : max_samples - seen]
                model(x.to(device))
                seen += x.shape[1]
    finally:
        model.train(was_training)
    return meter.report()
