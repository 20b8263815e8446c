"""``[model] kind = <deep architecture>`` from a config: trains with BPTT and SLTT, bad options are one
line, and ``spike energy`` counts the networks."""

import json

import pytest

from spike.cli.main import main

CFG = """\
[run]
name = "arch"
progress = false
plots = false
[data]
name = "tiny"
n_time_bins = 3
batch_size = 8
[model]
kind = "{kind}"
tau = 2.0
readout = "linear"
arch = {arch}
[train]
epochs = 1
lr = 0.01
method = "{method}"
"""

ARCHS = {
    "sew_resnet": '{ depth = 18, width = 4, connect = "iand", stem = "cifar" }',
    "spiking_resnet": '{ depth = 18, width = 4, stem = "cifar" }',
    "max_resnet": '{ width = 4 }',
    "spikformer": '{ dim = 16, depth = 1, heads = 2 }',
    "max_former": '{ dim = 16, depths = [1, 1, 1], heads = 2, stem = "cifar" }',
}


def _write(tmp_path, kind, method="bptt", arch=None):
    p = tmp_path / f"{kind}.toml"
    p.write_text(CFG.format(kind=kind, arch=arch or ARCHS[kind], method=method))
    return p


@pytest.mark.parametrize("kind", sorted(ARCHS))
def test_every_architecture_trains_from_a_config(kind, tmp_path, capsys, register_tiny, monkeypatch):
    register_tiny(side=16, n_train=16, n_test=8)
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(_write(tmp_path, kind)), "--out", str(tmp_path / "run")]) == 0, capsys.readouterr().err
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["epochs"] == 1 and 0.0 <= m["test_accuracy"] <= 1.0
    assert main(["energy", str(tmp_path / "run" / "last.pt"), "--no-plot"]) == 0
    e = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert e["synops"] > 0 and e["energy_pj"] > 0 and e["not_counted"] == []


@pytest.mark.parametrize("kind", ["sew_resnet", "spikformer"])
def test_architectures_train_with_sltt(kind, tmp_path, capsys, register_tiny, monkeypatch):
    register_tiny(side=16, n_train=16, n_test=8)
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(_write(tmp_path, kind, "sltt")), "--out", str(tmp_path / "run")]) == 0, \
        capsys.readouterr().err


@pytest.mark.parametrize("kind,arch,match", [
    ("sew_resnet", '{ depht = 18 }', r"arch: unknown option\(s\) \['depht'\]"),
    ("sew_resnet", '{ connect = "xor" }', r"\[model\] arch: .*connect"),
    ("spikformr", '{}', r"kind.*did you mean 'spikformer'"),
])
def test_bad_architecture_options_are_one_line(kind, arch, match, tmp_path, capsys, register_tiny, monkeypatch):
    import re

    register_tiny(side=16)
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "bad.toml"
    p.write_text(CFG.format(kind=kind, arch=arch, method="bptt"))
    assert main(["train", str(p), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(match, err[0]), err
