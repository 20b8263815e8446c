"""Every user error of ``spike train`` is one line ``spike train: error: ...`` naming the setting or file, exit 2.

The runs use a tiny in-memory dataset registered as ``[data] name = "tiny"`` (16 + 8 samples, T = 4).
"""

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from spike.cli.main import main
from spike.core.config import (RULES, Config, ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig,
                               config_from_dict, load_config)

TINY = """\
[run]
name = "tiny"
progress = false
plots = false
[data]
name = "tiny"
n_time_bins = 4
batch_size = 8
[model]
hidden = [8]
[train]
epochs = 1
"""


@pytest.fixture
def tiny(tmp_path, monkeypatch, register_tiny):
    register_tiny(side=4)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def _one_error_line(capsys, command: str = "train") -> str:
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1, cap.err
    assert lines[0].startswith(f"spike {command}: error: "), lines[0]
    assert "Traceback" not in cap.err and cap.out == ""
    return lines[0]


# (section, key, TOML value, words the message must contain)
BAD_VALUES = [
    ("train", "checkpoint_every", "0", ">= 1"),
    ("model", "hidden", "[-3]", "hidden[0] = -3"),
    ("model", "hidden", "[0]", "hidden[0] = 0"),
    ("model", "hidden", '[8, "a"]', 'hidden[1] = "a"'),
    ("run", "device", '"tpu"', '"tpu"'),
    ("model", "dropout", "-0.1", "[0, 1)"),
    ("model", "dropout", "1.0", "[0, 1)"),
    ("train", "grad_clip", "-1", ">= 0"),
    ("train", "lr", "inf", "lr = inf"),
    ("train", "lr", "0", "> 0"),
    ("train", "momentum", "nan", "momentum = nan"),
    ("data", "eval_batch_size", "0", "eval_batch_size = 0"),
    ("data", "batch_size", "0", "batch_size = 0"),
    ("train", "epochs", "0", ">= 1"),
    ("data", "n_time_bins", "0", ">= 1"),
    ("model", "tau", "-5.0", "> 0"),
    ("model", "v_reset", "2.0", "below v_th"),
]


@pytest.mark.parametrize("section, key, value, words", BAD_VALUES, ids=[f"{s}.{k}={v}" for s, k, v, _ in BAD_VALUES])
@pytest.mark.parametrize("where", ["file", "--set"])
def test_bad_value_is_one_line_naming_file_and_key(tiny, tmp_path, capsys, section, key, value, words, where):
    out = tmp_path / "run"
    if where == "file":
        lines = [ln for ln in tiny.read_text().splitlines() if not ln.startswith(f"{key} = ")]
        tiny.write_text("\n".join(lines).replace(f"[{section}]", f"[{section}]\n{key} = {value}") + "\n")
        args = []
    else:
        args = ["--set", f"{section}.{key}={value}"]
    assert main(["train", str(tiny), "--out", str(out), *args]) == 2
    line = _one_error_line(capsys)
    assert f"[{section}] {key}" in line and words in line
    assert str(tiny) in line  # the file
    assert (f"--set {section}.{key}" in line) == (where == "--set")  # and where the value came from
    assert not out.exists()  # rejected before anything is written


def test_bad_device_argument_is_named(tiny, tmp_path, capsys):
    assert main(["train", str(tiny), "--out", str(tmp_path / "run"), "--device", "tpu"]) == 2
    assert '--device = "tpu"' in _one_error_line(capsys)
    assert main(["train", str(tiny), "--out", str(tmp_path / "run"), "--set", "train.epochs"]) == 2
    assert "--set expects section.key=value" in _one_error_line(capsys)


@pytest.mark.parametrize("name, options", [
    ("nmnist_small", {}), ("nmnist", {"download": False}), ("dvs_gesture", {"download": False}), ("shd", {}),
])
def test_missing_data_root_is_one_line(tiny, tmp_path, capsys, name, options):
    missing = tmp_path / "no_data_here"
    opts = "{" + ", ".join(f"{k} = {str(v).lower()}" for k, v in options.items()) + "}"
    assert main(["train", str(tiny), "--out", str(tmp_path / "run"), "--set", f'data.name="{name}"',
                 f'data.root="{missing}"', f"data.options={opts}"]) == 2
    line = _one_error_line(capsys)
    assert str(missing) in line and "not found" in line
    assert not missing.exists() and not (tmp_path / "run").exists()


def test_every_numeric_field_has_a_range():
    sections = {"run": RunConfig, "data": DataConfig, "model": ModelConfig, "train": TrainConfig}
    for section, cls in sections.items():
        for f in dataclasses.fields(cls):
            if f.type in ("int", "float", "tuple"):
                assert f.name in RULES[section], f"[{section}] {f.name} has no range check"
            if f.name in RULES[section]:  # and the rule rejects something
                bad = {"int": -10**9, "float": math.nan, "tuple": [-1], "str": ""}[f.type]
                with pytest.raises(ConfigError, match=rf"^x\.toml: \[{section}\] {f.name}"):
                    config_from_dict({section: {f.name: bad}}, "x.toml")
    assert config_from_dict({}) == Config()  # the defaults are valid


def test_edge_values_that_are_allowed():
    cfg = config_from_dict({"model": {"dropout": 0.0, "tau": math.inf, "hidden": []},
                            "train": {"grad_clip": 0.0, "momentum": 0.0, "lr_positions": -1.0},
                            "run": {"device": "cuda:1"}})
    assert cfg.model.tau == math.inf and cfg.train.grad_clip == 0.0 and cfg.run.device == "cuda:1"


def test_python_api_validates_too(tmp_path):
    from spike.train.recipe import train_from_config
    from spike.train.trainer import Trainer

    with pytest.raises(ConfigError, match=r"\[train\] lr = inf"):
        train_from_config(Config(train=TrainConfig(lr=math.inf)), out_dir=tmp_path / "run")
    net = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="checkpoint_every"):  # no ZeroDivisionError after epoch 1
        Trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), lambda o, y: o.sum(), checkpoint_every=0)


def test_shipped_configs_still_load():
    for path in sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml")):
        load_config(path)


BAD_CHOICES = [("model", "reset", '"substract"', "did you mean 'subtract'"),
               ("model", "surrogate", '"arctan"', "'atan'"),
               ("model", "backend", '"cuda"', "'numba'"),
               ("train", "method", '"stlt"', "'sltt'"),
               ("train", "loss", '"ce"', "'per_step'")]


@pytest.mark.parametrize("section, key, value, words", BAD_CHOICES, ids=[f"{s}.{k}" for s, k, _, _ in BAD_CHOICES])
def test_bad_name_is_one_line_naming_file_and_key(tiny, tmp_path, capsys, section, key, value, words):
    assert main(["train", str(tiny), "--out", str(tmp_path / "run"), "--set", f"{section}.{key}={value}"]) == 2
    line = _one_error_line(capsys)
    assert f"[{section}] {key} = {value}" in line and words in line and str(tiny) in line


def test_choices_equal_what_the_code_accepts():
    """Every name CHOICES lists builds, and the lists equal the registries that consume them."""
    from spike.core.config import CHOICES
    from spike.core.registry import BACKENDS
    from spike.models import build_model
    from spike.surrogate import _BY_NAME
    from spike.train.losses import LOSSES
    from spike.train.recipe import METHODS

    assert set(CHOICES["model"]["surrogate"]) == set(_BY_NAME)
    assert set(CHOICES["train"]["loss"]) == set(LOSSES)
    assert CHOICES["train"]["method"] == METHODS
    assert set(CHOICES["model"]["backend"]) == {"auto", *BACKENDS["lif"]}
    for key in ("kind", "neuron", "reset", "reset_timing", "readout", "discretization"):
        for name in CHOICES["model"][key]:
            m = ModelConfig(kind=name, max_delay=2) if key == "kind" else ModelConfig(**{key: name})
            build_model(m, (2, 4, 4), 3)  # every accepted name builds a model


def test_scores_with_swapped_arguments_is_one_short_error():
    import torch

    from spike.train.losses import scores

    out = torch.randn(5, 3, 4)
    with pytest.raises(TypeError, match="arguments swapped") as e:
        scores(out, "mean_membrane")
    assert len(str(e.value)) < 200  # names the problem, does not print the tensor
    with pytest.raises(ValueError, match=r"\[T, B, C\].*\(3, 4\)"):
        scores("mean_membrane", out[0])
    assert torch.equal(scores("count", out), out.sum(0))


@pytest.mark.parametrize("neuron, key, value, words", [
    ("if", "decay_input", "true", "neuron = 'lif' only"),
    ("cubalif", "decay_input", "true", "neuron = 'lif' only"),
    ("adlif", "v_rest", "0.5", "'lif' or 'if' only"),
])
def test_norse_style_keys_only_where_the_neuron_has_them(tiny, tmp_path, capsys, neuron, key, value, words):
    out = tmp_path / "run"
    args = ["--set", f'model.neuron="{neuron}"', "--set", f"model.{key}={value}"]
    assert main(["train", str(tiny), "--out", str(out), *args]) == 2
    line = _one_error_line(capsys)
    assert f"[model] {key}" in line and words in line and not out.exists()


def test_decay_input_and_v_rest_reach_the_neurons(tiny):
    from spike.core.config import load_config
    from spike.models import build_model

    cfg = load_config(tiny, {"model.decay_input": True, "model.v_rest": -0.25, "model.readout": "li"})
    net = build_model(cfg.model, (2, 4, 4), 3)
    ps = [m.params() for m in net if hasattr(m, "params")]
    assert len(ps) >= 2 and all(p.decay_input and p.v_rest == -0.25 for p in ps)  # hidden LIFs and the LI readout
