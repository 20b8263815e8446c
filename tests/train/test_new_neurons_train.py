"""``[model] neuron = "cubalif" | "adlif"`` builds MLPs of those neurons that learn with BPTT (SHD-format fixture).

The fixture is written in the published SHD HDF5 layout (as ``datasets/fixtures.py`` does), but with a
learnable label: class ``k`` of 4 fires channels in its own quarter of the 700, so two epochs must
lower the loss and beat chance (25 %) on the test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spike.core.config import ConfigError, ModelConfig, config_from_dict
from spike.models import build_model
from spike.neurons import AdLIF, CubaLIF

N_CLASSES_USED = 4


def _write_split(path: Path, rng: np.random.Generator, n: int) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float16))
        units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        labels = (np.arange(n) % N_CLASSES_USED).astype(np.uint16)
        for i, k in enumerate(labels):
            m = int(rng.integers(300, 500))
            times[i] = np.sort(rng.uniform(0.0, 1.0, m)).astype(np.float16)
            units[i] = rng.integers(175 * k, 175 * (k + 1), m).astype(np.uint16)
        f.create_dataset("labels", data=labels)
        f.create_dataset("extra/speaker", data=rng.integers(0, 12, n).astype(np.uint16))
        f.create_dataset("extra/keys", data=np.array([str(k).encode() for k in range(20)]))


@pytest.fixture(scope="module")
def shd_root(tmp_path_factory) -> Path:
    pytest.importorskip("h5py")
    root = tmp_path_factory.mktemp("shd_data")
    (root / "SHD").mkdir()
    rng = np.random.default_rng(0)
    _write_split(root / "SHD" / "shd_train.h5", rng, 96)
    _write_split(root / "SHD" / "shd_test.h5", rng, 32)
    return root


def _cfg(root: Path, neuron: str, **model):
    return config_from_dict({
        "run": {"name": neuron, "progress": False, "plots": False, "device": "cpu"},
        "data": {"name": "shd", "root": str(root), "n_time_bins": 25, "batch_size": 16, "cache": False,
                 "options": {"dt_ms": 40.0, "channel_group": 25}},
        "model": {"kind": "mlp", "hidden": [32], "neuron": neuron, "tau": 60.0, "dt": 40.0, "tau_syn": 40.0,
                  "adapt_tau": 200.0, "readout_tau": 80.0, **model},
        "train": {"method": "bptt", "epochs": 2, "lr": 1e-2, "scheduler": "none", "loss": "mean_membrane"},
    }, "test.toml")


@pytest.mark.parametrize("neuron,model", [("cubalif", {}), ("adlif", {"reset": "to_value"}),
                                          ("adlif", {"learn_tau": True, "recurrent": True})],
                         ids=["cubalif", "adlif", "adlif-learn_tau-recurrent"])
def test_two_epochs_lower_the_loss_and_beat_chance(shd_root, tmp_path, neuron, model):
    from spike.train.recipe import train_from_config

    cfg = _cfg(shd_root, neuron, **model)
    torch.manual_seed(0)
    metrics = train_from_config(cfg, out_dir=tmp_path / "run")
    history = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["history"]
    assert len(history) == 2
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert metrics["test_accuracy"] > 1.0 / N_CLASSES_USED + 0.2, metrics
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["model"]
    if neuron == "adlif":
        assert any(k.endswith("a_raw") for k in ckpt) and any(k.endswith("b_raw") for k in ckpt)
    if model.get("learn_tau"):
        assert any(k.endswith("log_tau_w") for k in ckpt) and any(k.endswith("w_rec") for k in ckpt)


def test_config_builds_the_new_neurons_with_their_keys():
    net = build_model(ModelConfig(neuron="cubalif", hidden=(8,), tau=4.0, tau_syn=2.0, learn_tau=True), (5,), 3)
    cuba = [m for m in net if isinstance(m, CubaLIF)]
    assert len(cuba) == 1 and cuba[0].log_tau_syn.shape == (8,)
    assert float(cuba[0].params().tau_syn.detach()[0]) == pytest.approx(2.0)
    net = build_model(ModelConfig(neuron="adlif", hidden=(8, 6), adapt_tau=50.0, adapt_a=0.2, adapt_b=0.4,
                                  adapt_q=3.0, reset="to_value"), (5,), 3)
    ad = [m for m in net if isinstance(m, AdLIF)]
    assert [m.shape for m in ad] == [(8,), (6,)]
    with torch.no_grad():
        p = ad[0].params()
    assert p.tau_w == 50.0 and p.q == 3.0 and float(p.a[0]) == pytest.approx(0.2) and float(p.b[0]) == pytest.approx(0.4)
    fixed = build_model(ModelConfig(neuron="adlif", hidden=(4,), learn_adapt=False, adapt_a=3.0), (5,), 2)
    assert [m for m in fixed if isinstance(m, AdLIF)][0].params().a == 3.0  # any a when not learnt
    out = net(torch.rand(7, 2, 5))
    assert out.out.shape == (7, 2, 3)


@pytest.mark.parametrize("model,match", [
    ({"neuron": "adlif", "adapt_a": 1.5}, r"\[model\] adapt_a = 1.5: must lie in \(0, 1\)"),
    ({"neuron": "adlif", "adapt_b": 0.0}, r"\[model\] adapt_b = 0.0: must lie in \(0, 2\)"),
    ({"neuron": "cubalif", "tau_syn": -1.0}, r"\[model\] tau_syn = -1.0: must be"),
    ({"adapt_q": 0.0}, r"\[model\] adapt_q = 0.0"),
])
def test_bad_new_neuron_keys_are_config_errors(model, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"model": model}, "x.toml")


def test_adlif_rejects_deferred_reset_and_kernels_clearly():
    with pytest.raises(ConfigError, match=r"\[model\] adlif: .*reset_timing must be 'immediate'"):
        build_model(ModelConfig(neuron="adlif", reset_timing="deferred"), (4,), 2)
    with pytest.raises(ConfigError, match=r"\[model\] cubalif: .*backend='numba' does not support recurrent=True"):
        build_model(ModelConfig(neuron="cubalif", backend="numba", recurrent=True), (4,), 2)


_TRAINERS_CFG = """[run]
name = "n"
progress = false
plots = false
[data]
name = "tiny"
n_time_bins = 4
batch_size = 8
[model]
hidden = [16]
neuron = "{neuron}"
[train]
epochs = 2
lr = 0.01
method = "{method}"
{extra}
"""


@pytest.mark.parametrize("neuron", ["cubalif", "adlif"])
@pytest.mark.parametrize("method", ["sltt", "sltt_k", "forward_forward", "mono_forward", "noprop"])
def test_every_trainer_runs_with_the_new_neurons(neuron, method, tmp_path, capsys, register_tiny, monkeypatch):
    """Every training method accepts CubaLIF and SE-adLIF layers end to end (from a config) and moves the
    weights; the gradient equalities of each method are tested with LIF in their own files."""
    import json

    import torch

    from spike.cli.main import main
    from spike.train.trainer import load_checkpoint

    register_tiny(side=4, n_train=24, n_test=6)
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text(_TRAINERS_CFG.format(neuron=neuron, method=method, extra="sltt_k = 2" if method == "sltt_k" else ""))
    assert main(["train", str(cfg), "--out", str(tmp_path / "r"), "--set", "train.epochs=1"]) == 0, \
        capsys.readouterr().err[-800:]
    first = load_checkpoint(tmp_path / "r" / "last.pt")["model"]
    assert main(["train", str(cfg), "--out", str(tmp_path / "r2")]) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= m["test_accuracy"] <= 1.0 and m["epochs"] == 2
    second = load_checkpoint(tmp_path / "r2" / "last.pt")["model"]
    assert any(not torch.equal(first[k], second[k]) for k in first if first[k].is_floating_point())
