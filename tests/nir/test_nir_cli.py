"""``spike import MODEL.nir OUT.pt`` and ``spike export CHECKPOINT OUT.nir`` through their argparse parsers."""

import argparse
import json

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")

from spike.cli import deploy, nir as nir_cli  # noqa: E402
from spike.core.config import load_config  # noqa: E402
from spike.models import build_model  # noqa: E402
from spike.neurons.cuba import CubaLIF  # noqa: E402
from spike.nir import to_nir  # noqa: E402

CONFIG = """
[run]
name = "imported"
seed = 0
out_dir = "{out}"
[data]
name = "digits"
n_time_bins = 6
batch_size = 32
[model]
kind = "mlp"
hidden = [7]
[train]
loss = "mean_membrane"
"""


def _parse(argv):
    parser = argparse.ArgumentParser(prog="spike")
    sub = parser.add_subparsers(dest="command", required=True)
    deploy.add_parsers(sub)
    nir_cli.add_parsers(sub)
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def cfg_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("cfg")
    p = d / "digits.toml"
    p.write_text(CONFIG.format(out=d / "runs"))
    return p


def _graph(cfg_path, neuron="lif", reset="to_value"):
    """A [model]-shaped network that is not the config's (hidden 16, other neuron settings), as NIR."""
    import dataclasses

    base = load_config(cfg_path).model
    m = dataclasses.replace(base, hidden=(16,), neuron=neuron, tau=3.0, tau_syn=2.0, dt=1.0, v_th=0.5,
                            reset=reset, readout="li", readout_tau=4.0)
    torch.manual_seed(0)
    net = build_model(m, (2, 34, 34), 10).eval()
    return net, to_nir(net, 1.0, input_shape=(2, 34, 34))


@pytest.mark.parametrize("neuron", ["lif", "cubalif"])
def test_import_writes_a_checkpoint_that_eval_and_export_run(neuron, cfg_path, tmp_path):
    from spike.inference.deploy import load_checkpoint_model
    from spike.train.recipe import evaluate_checkpoint

    net, g = _graph(cfg_path, neuron)
    src = tmp_path / "model.nir"
    nir.write(str(src), g)
    ckpt = tmp_path / "imported.pt"
    res = nir_cli.cmd_import(_parse(["import", str(src), str(ckpt), "--config", str(cfg_path)]))
    json.dumps(res)
    assert res["hidden"] == [16] and res["neuron"] == neuron and res["readout"] == "li" and res["dt"] == 1.0
    model, cfg, meta, _ = load_checkpoint_model(ckpt)  # what spike export / stream / energy load
    assert cfg.model.tau == 3.0 and cfg.model.v_th == 0.5 and meta["input_shape"] == [2, 34, 34]
    if neuron == "cubalif":
        assert isinstance(model[2], CubaLIF) and cfg.model.tau_syn == 2.0
    x = (torch.rand(6, 2, 2, 34, 34, generator=torch.Generator().manual_seed(1)) < 0.2).float()
    with torch.no_grad():
        assert torch.equal(model(x).out, net(x).out)  # the checkpoint runs the graph's network
    ev = evaluate_checkpoint(ckpt)  # spike eval
    assert 0.0 <= ev["test_accuracy"] <= 1.0 and ev["n_test"] > 0
    out = tmp_path / "back.nir"  # spike export CHECKPOINT OUT.nir
    r = deploy.cmd_export(_parse(["export", str(ckpt), str(out)]))
    assert r["nir"] == str(out) and not (tmp_path / "back.nir.tmp").exists()
    g2 = nir.read(str(out))
    assert {k: type(v).__name__ for k, v in g2.nodes.items()} == {k: type(v).__name__ for k, v in g.nodes.items()}
    for k, v in g.nodes.items():
        if hasattr(v, "weight"):
            np.testing.assert_array_equal(g2.nodes[k].weight, v.weight)


def test_import_of_an_lif_mlp_runs_on_the_event_path(cfg_path, tmp_path):
    from spike.inference.deploy import export_checkpoint

    _, g = _graph(cfg_path)
    src = tmp_path / "m.nir"
    nir.write(str(src), g)
    ckpt = tmp_path / "m.pt"
    nir_cli.cmd_import(_parse(["import", str(src), str(ckpt), "--config", str(cfg_path), "--input-shape", "2", "34",
                               "34"]))
    enet, meta = export_checkpoint(ckpt)  # what spike export CHECKPOINT OUT.npz / spike stream run
    assert meta["n_classes"] == 10 and len(enet.layers) >= 2
    r = deploy.cmd_export(_parse(["export", str(ckpt), str(tmp_path / "m.npz")]))  # .npz behaviour kept
    assert r["npz"].endswith("m.npz")


def test_import_raises_for_what_a_config_cannot_state(cfg_path, tmp_path):
    from spike.neurons import LIF
    from spike.synapses import Flatten, Linear, Sequential

    def write(net, name):
        p = tmp_path / name
        nir.write(str(p), to_nir(net.eval(), 1.0, input_shape=(2, 34, 34)))
        return p

    two = Sequential(Flatten(), Linear(2312, 8), LIF(tau=3.0), Linear(8, 8), LIF(tau=4.0), Linear(8, 10))
    p = write(two, "two.nir")
    with pytest.raises(nir_cli.NIRCheckpointError, match=r"layer 4 \(LIF\).*differ"):
        nir_cli.cmd_import(_parse(["import", str(p), str(tmp_path / "x.pt"), "--config", str(cfg_path)]))
    wrong = Sequential(Flatten(), Linear(2312, 8), LIF(tau=3.0), Linear(8, 4))  # 4 classes, digits has 10
    p = write(wrong, "wrong.nir")
    with pytest.raises(nir_cli.NIRCheckpointError, match="does not"):
        nir_cli.cmd_import(_parse(["import", str(p), str(tmp_path / "x.pt"), "--config", str(cfg_path)]))
    assert not (tmp_path / "x.pt").exists()
    g = to_nir(Sequential(Flatten(), Linear(2312, 10), LIF()).eval(), 1.0, input_shape=(2, 34, 34))
    g.metadata = {}
    nir.write(str(tmp_path / "nodt.nir"), g)
    with pytest.raises(ValueError, match="pass --dt"):
        nir_cli.cmd_import(_parse(["import", str(tmp_path / "nodt.nir"), str(tmp_path / "x.pt"), "--config",
                                   str(cfg_path)]))
    with pytest.raises(SystemExit):  # --config is required: a NIR file names no data set
        _parse(["import", str(p), str(tmp_path / "x.pt")])
