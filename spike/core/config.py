"""Frozen, typed run configuration loaded from TOML; unknown or mistyped keys are errors.

Example ``configs/quickstart.toml``::

    [run]
    name = "quickstart"
    [data]
    name = "digits"
    n_time_bins = 20
    [model]
    hidden = [128]
    [train]
    epochs = 12
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["ConfigError", "RunConfig", "DataConfig", "ModelConfig", "TrainConfig", "Config",
           "load_config", "config_from_dict", "config_to_dict", "validate_config", "check_device", "RULES",
           "CHOICES"]


class ConfigError(ValueError):
    """A configuration file or dict that does not match the schema."""


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    seed: int = 0
    out_dir: str = "runs"
    device: str = "auto"
    progress: bool = True
    plots: bool = True
    seeds: tuple = ()            # several runs (seeds), reported as mean +- std; () = one run with `seed`


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"
    root: str = "data"
    n_time_bins: int = 20
    batch_size: int = 64
    eval_batch_size: int = 256
    num_workers: int = 0
    cache: bool = True
    # digits / event-simulation options
    contrast_threshold: float = 0.2
    # dataset-specific extras (channel grouping, time window, ...), validated by the dataset builder
    options: dict = field(default_factory=dict)
    # fraction of the training set held out (seeded) and never trained on, e.g. to calibrate anytime cutoffs
    val_fraction: float = 0.0
    # training-only augmentation of the binned samples (spike.data.augment), e.g. ["flip_x", "translate:4"]
    augment: tuple = ()
    # batch mixing of the training batches (spike.data.augment.cutmix; loss-side label mix, bptt/sltt/sltt_k)
    mix: str = "none"            # none | cutmix (lam = kept area) | eventmix (lam = kept share of the events)
    mix_alpha: float = 1.0       # box size: 1 - lam ~ Beta(alpha, alpha)
    mix_prob: float = 1.0        # probability that a training batch is mixed


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "mlp"            # mlp | conv | delay_mlp | sew_resnet | spiking_resnet | max_resnet | spikformer | max_former
    arch: dict = field(default_factory=dict)  # deep architectures (spike.archs): their options, e.g. {depth = 18, connect = "iand"}
    hidden: tuple = (128,)       # hidden sizes (mlp) or channels (conv)
    neuron: str = "lif"          # lif | if | ultralif | ultradlif | cubalif | adlif
    tau: float = 5.0
    dt: float = 1.0
    v_th: float = 1.0
    v_reset: float = 0.0
    reset: str = "subtract"
    reset_timing: str = "immediate"
    detach_reset: bool = False
    surrogate: str = "atan"
    surrogate_param: float = 0.0   # 0 = the surrogate's default
    learn_tau: bool = False
    recurrent: bool = False
    dropout: float = 0.0
    batchnorm: bool = False
    readout: str = "li"          # li (non-spiking membrane) | spikes (LIF output layer) | linear (the head's output)
    readout_tau: float = 5.0
    backend: str = "auto"
    discretization: str = "exp"    # exp | euler (SpikingJelly; the SHD delays recipe)
    decay_input: bool = False      # lif/if and the li readout: input scaled by the leak's share (Norse, NIR r = 1)
    v_rest: float = 0.0            # lif/if and the li readout: resting potential the membrane decays to (NIR v_leak)
    # learnable delays (kind = "delay_mlp", spike.synapses.delays)
    max_delay: int = 25            # largest synaptic delay, in time steps (kernel of max_delay + 1 taps)
    delay_sigma_init: float = 0.0  # initial Gaussian width in steps; 0 = max_delay / 2
    delay_pad: int = -1            # silent steps appended before each delayed layer; -1 = max_delay // 2
    # UltraLIF / UltraDLIF (neuron = "ultralif" | "ultradlif", spike.neurons.ultralif)
    ultra_tau: float = 0.9         # UltraLIF per-step decay factor in (0, 1]
    ultra_eps: float = 1.0         # initial temperature
    ultra_eps_min: float = 0.1
    ultra_eps_max: float = 20.0
    ultra_learn_eps: bool = True
    ultra_boundary: str = "wrap"   # UltraDLIF coupling: wrap (ring) | none (chain)
    sparsity_penalty: float = 0.0  # UltraLIF/UltraDLIF firing-rate penalty weight (gradient of w * mean rate)
    # current-based LIF (neuron = "cubalif", spike.neurons.cuba); tau is the membrane time constant
    tau_syn: float = 5.0           # synaptic current time constant, same unit as dt
    # SE-adLIF (neuron = "adlif", spike.neurons.adlif; the paper resets to 0: reset = "to_value")
    adapt_tau: float = 200.0       # adaptation time constant tau_w, same unit as dt
    adapt_a: float = 0.5           # subthreshold coupling a (learnable: kept in [0, 1])
    adapt_b: float = 1.0           # spike-triggered increment b (learnable: kept in [0, 2])
    adapt_q: float = 1.0           # fixed scale of the adaptation drive
    learn_adapt: bool = True       # learn a and b (per neuron)


@dataclass(frozen=True)
class TrainConfig:
    method: str = "bptt"
    epochs: int = 10
    lr: float = 1e-3
    optimizer: str = "adam"      # adam | adamw | sgd
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "cosine"    # cosine | onecycle | step | none
    loss: str = "mean_membrane"  # count | mean_membrane | max_membrane | per_step | sum_softmax
    grad_clip: float = 0.0
    checkpoint_every: int = 1
    deterministic: bool = True
    rcs_weight: float = 0.0      # cutoff regulariser (RCS, spike.train.regularizers); 0 = off
    # delay positions (spike.synapses.delays): own optimiser group and schedule
    lr_positions: float = -1.0        # < 0: one group with lr; >= 0: positions get this lr (0 freezes them)
    scheduler_positions: str = "same"  # same | cosine | onecycle | step | none
    delay_sigma_floor: float = 0.5    # Gaussian width reached after delay_sigma_decay * epochs
    delay_sigma_decay: float = 0.25   # fraction of training over which sigma shrinks to the floor
    # SLTT / SLTT-K (spike.train.sltt)
    sltt_k: int = 0                   # method "sltt_k": steps back-propagated per batch, 1 <= K <= T
    sltt_chunk: int = 25              # steps run together (same gradient; memory grows with it, not T; 25: fastest on CPU)
    memory: str = "none"              # method "bptt": none | packed | checkpoint[:N] | mesa8 (spike.train.memory)
    # Forward-Forward / Mono-Forward (spike.train.forward_forward)
    ff_theta: float = 4.0             # goodness threshold θ of the per-layer loss σ(G − θ)
    ff_goodness_scale: float = 20.0   # G = scale * mean_i rate_i^2 (sets how sharp σ(G − θ) is)
    ff_label_scale: float = 20.0      # one-hot label value (the input is normalised to unit RMS)
    ff_label_embedding: str = "append"  # append | replace (label over the first C input features)
    ff_negatives: str = "random"      # random | hard (wrong label drawn from the readout's softmax)
    ff_inference: str = "auto"        # forward_forward: goodness | readout; mono_forward: last | sum
    # NoProp-DT (spike.train.noprop)
    noprop_steps: int = 10            # T: denoising steps = number of blocks (>= 1)
    noprop_eta: float = 0.1           # weight eta of the SNR-weighted denoising terms
    noprop_embed_dim: int = 0         # class-embedding size E (0: the number of classes)
    noprop_inference: str = "mean"    # mean (posterior means, z_0 = 0, no noise) | sample (the paper's noisy chain)
    # model selection (spike.train.trainer): needs a validation set ([data] val_fraction, or the data set's own)
    select: str = "auto"              # auto (val_accuracy with a validation set, else last) | val_accuracy | val_loss | last
    patience: int = 0                 # early stopping: epochs without a better validation metric (0: off)
    report_max_test: bool = False     # also evaluate test every epoch and report max_test_accuracy_over_epochs


@dataclass(frozen=True)
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _type_ok(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check ``value`` against annotation ``tp``; returns (ok, converted value)."""
    if isinstance(tp, str):
        tp = eval(tp, vars(typing) | {"tuple": tuple, "dict": dict})  # annotations are strings here
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = _type_ok(value, arg)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    if tp is tuple or origin is tuple:
        return isinstance(value, (list, tuple)), tuple(value) if isinstance(value, (list, tuple)) else value
    if tp is dict or origin is dict:
        return isinstance(value, dict), value
    return True, value


def _fmt(value: Any) -> str:
    """``value`` written as in TOML (``inf``, ``"a"``, ``[1, 2]``, ``true``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_fmt(v)}" for k, v in value.items()) + "}"
    return repr(value)


# --------------------------------------------------------------------------------------------------
# value ranges: one rule per numeric (or otherwise constrained) field; a rule returns the problem or None
# --------------------------------------------------------------------------------------------------

Rule = Callable[[Any], "str | None"]


def _int(lo: int, note: str = "") -> Rule:
    def rule(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= lo
        return None if ok else f"must be an integer >= {lo}{note}"
    return rule


def _num(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False,
         inf_ok: bool = False, note: str = "") -> Rule:
    """A float in the given (half-)open or closed range; finite unless ``inf_ok`` (then ``+inf`` passes)."""
    if lo is not None and hi is not None:
        want = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        want = f"a {'' if inf_ok else 'finite '}number {'>' if lo_open else '>='} {lo:g}"
    else:
        want = "a finite number"
    if inf_ok:
        want += " (inf allowed)"

    def rule(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"must be {want}{note}"
        if math.isnan(v) or (math.isinf(v) and not (inf_ok and v > 0)):
            return f"must be {want}{note}"
        if lo is not None and (v <= lo if lo_open else v < lo):
            return f"must be {want}{note}"
        if hi is not None and (v >= hi if hi_open else v > hi):
            return f"must be {want}{note}"
        return None
    return rule


def _nonempty(v: str) -> str | None:
    return None if isinstance(v, str) and v.strip() else "must be a non-empty string"


_DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")
_DEVICE_HINT = 'must be "auto", "cpu", "cuda", "cuda:N" or "mps"'


def _device(v: str) -> str | None:
    return None if isinstance(v, str) and _DEVICE.fullmatch(v) else _DEVICE_HINT


def check_device(name: str, what: str = "device") -> str:
    """``name`` if it is a device string spike accepts (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``).

    Raises:
        ConfigError: ``<what> = "<name>": must be ...``.
    """
    if _device(name) is not None:
        raise ConfigError(f"{what} = {_fmt(name)}: {_DEVICE_HINT}")
    return name


def _seeds(v: tuple) -> tuple[str, Any, str] | str | None:
    """Run seeds: distinct integers >= 0."""
    if not isinstance(v, (list, tuple)):
        return "must be a list of integer seeds"
    for i, s in enumerate(v):
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            return f"[{i}]", s, "must be an integer >= 0 (a seed)"
    if len(set(v)) != len(v):
        return "must not repeat a seed"
    return None


def _augment(v: tuple) -> tuple[str, Any, str] | str | None:
    """Augmentation names ``"name"`` or ``"name:value"`` (:mod:`spike.core.augment_spec`)."""
    if not isinstance(v, (list, tuple)):
        return 'must be a list of augmentation names such as ["flip_x", "translate:4"]'
    if not v:
        return None
    from spike.core.augment_spec import augment_problem

    for i, item in enumerate(v):
        problem = augment_problem(item)
        if problem is not None:
            return f"[{i}]", item, problem
    return None


def _sizes(v: tuple) -> tuple[str, Any, str] | str | None:
    """Layer sizes: every element an integer >= 1 (returns ``(suffix, element, problem)`` for a bad one)."""
    if not isinstance(v, (list, tuple)):
        return "must be a list of layer sizes"
    for i, h in enumerate(v):
        if isinstance(h, bool) or not isinstance(h, int):
            return f"[{i}]", h, "must be an integer >= 1 (a layer size)"
        if h < 1:
            return f"[{i}]", h, "must be an integer >= 1 (a layer size; 0 would be a layer without neurons)"
    return None


#: ``[train] memory`` modes (implemented in :mod:`spike.train.memory`)
MEMORY_MODES = ("none", "packed", "checkpoint", "mesa8")


def check_memory(spec: Any) -> str | None:
    """``None`` if ``spec`` is a valid ``[train] memory`` mode, else the problem."""
    if not isinstance(spec, str):
        return f"must be a string, one of {', '.join(map(repr, MEMORY_MODES))}"
    if "+" in spec:
        return ("combinations are not supported: 'mesa8' already packs the binary tensors, and a "
                "'checkpoint' chunk keeps nothing for the others to pack; use one of "
                + ", ".join(map(repr, MEMORY_MODES)))
    mode, colon, n = spec.partition(":")
    if mode not in MEMORY_MODES:
        return (f"unknown memory mode; must be one of {', '.join(map(repr, MEMORY_MODES))} "
                f"(or 'MODE:N', N time steps per chunk, for 'checkpoint', 'mesa8' and 'packed')")
    if colon and (mode == "none" or not n.isdigit() or int(n) < 1):
        return ("a chunk length is written 'MODE:N' with an integer N >= 1 ('checkpoint:N', 'mesa8:N', "
                "'packed:N'; 'none' takes none)")
    return None


def _memory_mode(v) -> str | None:
    return check_memory(v)


#: ``RULES[section][key]``: the range check of every numeric field (strings naming a method, neuron,
#: loss, ... are checked where they are used, by the registries that know the choices).
RULES: dict[str, dict[str, Rule]] = {
    "run": {"name": _nonempty, "seed": _int(0), "out_dir": _nonempty, "device": _device, "seeds": _seeds},
    "data": {
        "root": _nonempty,
        "n_time_bins": _int(1),
        "batch_size": _int(1),
        "eval_batch_size": _int(1),
        "num_workers": _int(0),
        "contrast_threshold": _num(0, lo_open=True),
        "val_fraction": _num(0, 1, hi_open=True),
        "augment": _augment,
        "mix_alpha": _num(0, lo_open=True),
        "mix_prob": _num(0, 1),
    },
    "model": {
        "hidden": _sizes,
        "tau": _num(0, lo_open=True, inf_ok=True, note=" (inf: no leak)"),
        "dt": _num(0, lo_open=True),
        "v_th": _num(0, lo_open=True),
        "v_reset": _num(),
        "v_rest": _num(),
        "surrogate_param": _num(0, note=" (0: the surrogate's default)"),
        "dropout": _num(0, 1, hi_open=True),
        "readout_tau": _num(0, lo_open=True, inf_ok=True, note=" (inf: no leak)"),
        "max_delay": _int(0),
        "delay_sigma_init": _num(0, note=" (0: max_delay / 2)"),
        "delay_pad": _int(-1, " (-1: max_delay // 2)"),
        "ultra_tau": _num(0, 1, lo_open=True),
        "ultra_eps": _num(0, lo_open=True),
        "ultra_eps_min": _num(0, lo_open=True),
        "ultra_eps_max": _num(0, lo_open=True),
        "sparsity_penalty": _num(0),
        "tau_syn": _num(0, lo_open=True, inf_ok=True, note=" (inf: no decay)"),
        "adapt_tau": _num(0, lo_open=True, inf_ok=True, note=" (inf: no decay)"),
        "adapt_a": _num(),
        "adapt_b": _num(),
        "adapt_q": _num(0, lo_open=True),
    },
    "train": {
        "epochs": _int(1),
        "lr": _num(0, lo_open=True),
        "weight_decay": _num(0),
        "momentum": _num(0, 1, hi_open=True),
        "grad_clip": _num(0, note=" (the largest gradient norm; 0: no clipping)"),
        "checkpoint_every": _int(1, " (epochs between checkpoints)"),
        "rcs_weight": _num(0, note=" (0: off)"),
        "lr_positions": _num(note=" (< 0: one parameter group with lr)"),
        "delay_sigma_floor": _num(0, lo_open=True),
        "delay_sigma_decay": _num(0, 1),
        "sltt_k": _int(0, " (0: unused; method = 'sltt_k' needs sltt_k >= 1)"),
        "sltt_chunk": _int(1),
        "memory": _memory_mode,
        "ff_theta": _num(),
        "ff_goodness_scale": _num(0, lo_open=True),
        "ff_label_scale": _num(0, lo_open=True),
        "noprop_steps": _int(1, " (T: the number of denoising blocks; a schedule needs at least one step)"),
        "noprop_eta": _num(0, lo_open=True),
        "noprop_embed_dim": _int(0, " (0: the number of classes)"),
        "patience": _int(0, " (epochs without improvement of the validation metric; 0: no early stopping)"),
    },
}


def _one_of(*choices: str) -> Rule:
    def rule(v: str) -> str | None:
        if v in choices:
            return None
        hint = difflib.get_close_matches(str(v), choices, n=1)
        return (f"must be one of {', '.join(map(repr, choices))}"
                + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    return rule


def _backend_names() -> tuple[str, ...]:
    from spike.core.registry import BACKENDS

    return ("auto", *sorted(BACKENDS["lif"]))


#: ``CHOICES[section][key]``: the names a string field accepts. They mirror the code that consumes them
#: (surrogates, losses, trainers, backends, model builders); ``tests/train/test_config_errors.py`` checks
#: that each list equals what that code accepts, so they cannot drift apart.
CHOICES: dict[str, dict[str, tuple[str, ...]]] = {
    "data": {"mix": ("none", "cutmix", "eventmix")},
    "model": {
        "kind": ("mlp", "conv", "delay_mlp", "sew_resnet", "spiking_resnet", "max_resnet", "spikformer", "max_former"),
        "neuron": ("lif", "if", "ultralif", "ultradlif", "cubalif", "adlif"),
        "reset": ("subtract", "to_value", "none"),
        "reset_timing": ("immediate", "deferred"),
        "surrogate": ("atan", "sigmoid", "fast_sigmoid", "triangle"),
        "readout": ("li", "spikes", "linear"),
        "backend": _backend_names(),
        "discretization": ("exp", "euler"),
        "ultra_boundary": ("wrap", "none"),
    },
    "train": {
        "method": ("bptt", "sltt", "sltt_k", "forward_forward", "mono_forward", "noprop"),
        "optimizer": ("adam", "adamw", "sgd"),
        "scheduler": ("cosine", "onecycle", "step", "none"),
        "scheduler_positions": ("same", "cosine", "onecycle", "step", "none"),
        "loss": ("count", "mean_membrane", "max_membrane", "per_step", "sum_softmax"),
        "ff_label_embedding": ("append", "replace"),
        "ff_negatives": ("random", "hard"),
        "select": ("auto", "val_accuracy", "val_loss", "last"),
        "ff_inference": ("auto", "goodness", "readout", "last", "sum"),
        "noprop_inference": ("mean", "sample"),
    },
}
for _section, _fields in CHOICES.items():
    for _key, _choices in _fields.items():
        RULES[_section][_key] = _one_of(*_choices)


def _cross_checks(cfg: Config) -> list[tuple[str, str, str]]:
    """Checks between fields: ``[(section, key, problem)]``."""
    m = cfg.model
    out = []
    if m.v_reset >= m.v_th:
        out.append(("model", "v_reset", f"must be below v_th = {_fmt(m.v_th)}"))
    if m.ultra_eps_min > m.ultra_eps_max:
        out.append(("model", "ultra_eps_max", f"must be >= ultra_eps_min = {_fmt(m.ultra_eps_min)}"))
    elif not m.ultra_eps_min <= m.ultra_eps <= m.ultra_eps_max:
        out.append(("model", "ultra_eps", f"must lie in [ultra_eps_min, ultra_eps_max] = "
                                          f"[{m.ultra_eps_min:g}, {m.ultra_eps_max:g}]"))
    if m.decay_input and m.neuron != "lif":
        out.append(("model", "decay_input", f"applies to neuron = 'lif' only (an IF has no leak to share the input "
                                            f"with; {m.neuron!r} has its own input scaling), got neuron = {m.neuron!r}"))
    if m.v_rest != 0.0 and m.neuron not in ("lif", "if"):
        out.append(("model", "v_rest", f"applies to neuron = 'lif' or 'if' only, got neuron = {m.neuron!r}"))
    if m.neuron == "adlif" and m.learn_adapt:  # the learnable a, b live in the open ranges (sigmoid map)
        for key, hi in (("adapt_a", 1.0), ("adapt_b", 2.0)):
            if not 0.0 < getattr(m, key) < hi:
                out.append(("model", key, f"must lie in (0, {hi:g}) with learn_adapt = true"))
    return out


def validate_config(cfg: Config, source: str = "<config>", origins: dict[str, str] | None = None) -> Config:
    """Check every field of ``cfg`` against :data:`RULES` and the cross-field checks; returns ``cfg``.

    Args:
        cfg: the configuration.
        source: where it came from (a file name), written first in the message.
        origins: ``{"train.lr": "--set train.lr (on x.toml)"}`` for keys that came from somewhere else.

    Raises:
        ConfigError: ``<source>: [<section>] <key> = <value>: <problem>`` for the first bad field.
    """
    origins = origins or {}
    for section, rules in RULES.items():
        sub = getattr(cfg, section)
        for key, rule in rules.items():
            value = getattr(sub, key)
            problem = rule(value)
            if problem is None:
                continue
            where = origins.get(f"{section}.{key}", source)
            if isinstance(problem, tuple):  # an element of a list
                suffix, value, problem = problem
                key = key + suffix
            raise ConfigError(f"{where}: [{section}] {key} = {_fmt(value)}: {problem}")
    for section, key, problem in _cross_checks(cfg):
        where = origins.get(f"{section}.{key}", source)
        raise ConfigError(f"{where}: [{section}] {key} = {_fmt(getattr(getattr(cfg, section), key))}: {problem}")
    return cfg


def _build(cls: type, data: Any, where: str, source: str, origins: dict[str, str]) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{origins.get(where, source)}: [{where}] must be a table, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        src = origins.get(f"{where}.{key}", source)
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            raise ConfigError(f"{src}: unknown key {key!r} in [{where}]"
                              + (f"; did you mean {hint[0]!r}?" if hint else f"; known keys: {sorted(known)}"))
        f = known[key]
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            kwargs[key] = _build(f.default_factory, value, f"{where}.{key}" if where else key, source, origins)
            continue
        ok, conv = _type_ok(value, f.type)
        if not ok:
            raise ConfigError(f"{src}: key {key!r} in [{where}] must be {f.type}, got {_fmt(value)}")
        kwargs[key] = conv
    return cls(**kwargs)


def config_from_dict(data: dict, source: str = "<dict>", origins: dict[str, str] | None = None) -> Config:
    """Build a validated :class:`Config` from nested dicts, rejecting unknown keys, wrong types and
    out-of-range values (:func:`validate_config`).

    Args:
        data: ``{"train": {"lr": 1e-3}, ...}``.
        source: named in error messages (the file it came from).
        origins: ``{"section.key": label}`` naming keys that came from elsewhere (``--set``).
    """
    origins = origins or {}
    known = {f.name: f for f in fields(Config)}
    kwargs = {}
    for section, value in data.items():
        if section not in known:
            hint = difflib.get_close_matches(section, known, n=1)
            src = next((o for k, o in origins.items() if k.partition(".")[0] == section), source)
            raise ConfigError(f"{src}: unknown section [{section}]"
                              + (f"; did you mean [{hint[0]}]?" if hint else f"; known: {sorted(known)}"))
        kwargs[section] = _build(known[section].default_factory, value, section, source,  # type: ignore[arg-type]
                                 origins)
    return validate_config(Config(**kwargs), source, origins)


def load_config(path: str | Path, overrides: dict | None = None) -> Config:
    """Load a TOML file into a frozen, validated :class:`Config`.

    Args:
        path: the ``.toml`` file.
        overrides: ``{"train.epochs": 2, ...}`` applied on top of the file (``spike train --set``);
            errors in them are named as ``--set train.epochs (on <path>)``.

    Raises:
        ConfigError: naming the file (or the override) and the offending key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    origins = {}
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if not key or not section:
            raise ConfigError(f"--set {dotted}: must look like section.key=value")
        origins[dotted] = f"--set {dotted} (on {path})"
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{origins[dotted]}: [{section}] in the file is not a table")
        table[key] = value
    return config_from_dict(data, str(path), origins)


def config_to_dict(cfg: Any) -> dict:
    """Plain nested dict (lists for tuples) for checkpoints and JSON."""
    out = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            v = config_to_dict(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out
