"""The `spike` console script end to end on the embedded digits data."""

import json
from pathlib import Path

import pytest

from spike.cli.main import main

REPO = Path(__file__).resolve().parents[2]


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_train_then_eval_print_json_last(tmp_path, capsys):
    rc = main(["train", str(REPO / "configs" / "quickstart.toml"), "--out", str(tmp_path),
               "--set", "train.epochs=1", "model.hidden=[32]", "data.n_time_bins=8", "run.plots=true"])
    assert rc == 0
    m = _last_json(capsys.readouterr().out)
    assert m["epochs"] == 1 and 0.0 <= m["test_accuracy"] <= 1.0
    assert json.loads((tmp_path / "metrics.json").read_text())["test_accuracy"] == m["test_accuracy"]
    for name in ("last.pt", "metrics.csv", "training_curves.png", "raster.png"):
        assert (tmp_path / name).is_file(), name
    rc = main(["eval", str(tmp_path / "last.pt")])
    assert rc == 0
    e = _last_json(capsys.readouterr().out)
    assert e["test_accuracy"] == pytest.approx(m["test_accuracy"])  # same weights, same test split
    assert e["n_test"] == 360


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nhiden = [3]\n")
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "hiden" in err and "bad.toml" in err and "did you mean 'hidden'" in err


def test_info_lists_versions_and_backends(capsys):
    assert main(["info"]) == 0
    info = _last_json(capsys.readouterr().out)
    assert info["versions"]["torch"].startswith("2.")
    assert info["backends"]["lif"]["reference"] == "ok"
    assert info["devices"][0] == "cpu"
