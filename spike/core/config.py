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
import sys
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["ConfigError", "RunConfig", "DataConfig", "ModelConfig", "TrainConfig", "Config",
           "load_config", "config_from_dict", "config_to_dict"]


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


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "mlp"            # mlp | conv | delay_mlp
    hidden: tuple = (128,)       # hidden sizes (mlp) or channels (conv)
    neuron: str = "lif"          # lif | if | ultralif | ultradlif
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
    readout: str = "li"          # li (non-spiking membrane) | spikes (LIF output layer)
    readout_tau: float = 5.0
    backend: str = "auto"
    discretization: str = "exp"    # exp | euler (SpikingJelly; the SHD delays recipe)
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
    sltt_chunk: int = 1               # steps run together (memory grows with it, not with T; same gradient)
    # Forward-Forward / Mono-Forward (spike.train.forward_forward)
    ff_theta: float = 4.0             # goodness threshold θ of the per-layer loss σ(G − θ)
    ff_goodness_scale: float = 20.0   # G = scale * mean_i rate_i^2 (sets how sharp σ(G − θ) is)
    ff_label_scale: float = 20.0      # one-hot label value (the input is normalised to unit RMS)
    ff_label_embedding: str = "append"  # append | replace (label over the first C input features)
    ff_negatives: str = "random"      # random | hard (wrong label drawn from the readout's softmax)
    ff_inference: str = "auto"        # forward_forward: goodness | readout; mono_forward: last | sum


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


def _build(cls: type, data: Any, where: str, source: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: [{where}] must be a table, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            raise ConfigError(f"{source}: unknown key {key!r} in [{where}]"
                              + (f"; did you mean {hint[0]!r}?" if hint else f"; known keys: {sorted(known)}"))
        f = known[key]
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            kwargs[key] = _build(f.default_factory, value, f"{where}.{key}" if where else key, source)
            continue
        ok, conv = _type_ok(value, f.type)
        if not ok:
            raise ConfigError(f"{source}: key {key!r} in [{where}] must be {f.type}, got {value!r}")
        kwargs[key] = conv
    return cls(**kwargs)


def config_from_dict(data: dict, source: str = "<dict>") -> Config:
    """Build a :class:`Config` from nested dicts, rejecting unknown keys and wrong types."""
    known = {f.name: f for f in fields(Config)}
    kwargs = {}
    for section, value in data.items():
        if section not in known:
            hint = difflib.get_close_matches(section, known, n=1)
            raise ConfigError(f"{source}: unknown section [{section}]"
                              + (f"; did you mean [{hint[0]}]?" if hint else f"; known: {sorted(known)}"))
        kwargs[section] = _build(known[section].default_factory, value, section, source)  # type: ignore[arg-type]
    return Config(**kwargs)


def load_config(path: str | Path, overrides: dict | None = None) -> Config:
    """Load a TOML file into a frozen :class:`Config`.

    Args:
        path: the ``.toml`` file.
        overrides: ``{"train.epochs": 2, ...}`` applied on top of the file.

    Raises:
        ConfigError: naming the file and the offending key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if not key:
            raise ConfigError(f"override {dotted!r} must look like section.key=value")
        data.setdefault(section, {})[key] = value
    return config_from_dict(data, str(path))


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
