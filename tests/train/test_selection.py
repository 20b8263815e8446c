"""Validation, model selection and early stopping: test is evaluated once, on the selected model.

The runs use the tiny in-memory data set of ``conftest.py`` (48 + 12 samples, 3 classes) with a
quarter of the training set held out for validation.
"""

import csv
import json

import pytest
import torch

from spike.cli.main import main
from spike.train import trainer as trainer_mod
from spike.train.trainer import load_checkpoint

CFG = """\
[run]
name = "sel"
progress = false
plots = false
[data]
name = "tiny"
n_time_bins = 4
batch_size = 8
val_fraction = 0.25
[model]
hidden = [16]
[train]
epochs = 4
lr = 0.02
scheduler = "none"
"""


def _run(tmp_path, capsys, *sets, name="run", extra=()):
    cfg = tmp_path / "sel.toml"
    cfg.write_text(CFG)
    out = tmp_path / name
    argv = ["train", str(cfg), "--out", str(out), *extra]
    if sets:
        argv += ["--set", *sets]
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, out, cap


def _metrics(cap) -> dict:
    return json.loads(cap.out.strip().splitlines()[-1])


@pytest.fixture
def tiny(register_tiny, monkeypatch, tmp_path):
    register_tiny(side=4, n_train=48, n_test=12)
    monkeypatch.chdir(tmp_path)


def test_selects_on_validation_and_evaluates_test_once(tiny, tmp_path, capsys, monkeypatch):
    calls = []
    real = trainer_mod.Trainer.evaluate

    def spy(self, loader, prefix="test"):
        r = real(self, loader, prefix)
        calls.append(prefix)
        return r

    monkeypatch.setattr(trainer_mod.Trainer, "evaluate", spy)
    rc, out, cap = _run(tmp_path, capsys)
    assert rc == 0, cap.err
    m = _metrics(cap)
    assert calls.count("test") == 1 and calls.count("val") == 4  # test once, validation every epoch
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 4 and "val_accuracy" in rows[0] and "test_accuracy" not in rows[0]
    val = [float(r["val_accuracy"]) for r in rows]
    vloss = [float(r["val_loss"]) for r in rows]
    best = max(range(4), key=lambda i: (val[i], -vloss[i], -i)) + 1  # best accuracy, ties: lowest loss
    assert m["selected_by"] == "val_accuracy" and m["selected_epoch"] == best
    assert m["best_val_accuracy"] == pytest.approx(val[best - 1])
    assert m["split"]["train"] == 36 and m["split"]["val"] == 12 and m["split"]["test"] == 12
    assert len(m["split"]["val_indices_sha256"]) == 64 and m["seed"] == 0
    # best.pt holds the selected epoch, and the reported test accuracy is that model's
    ck = load_checkpoint(out / "best.pt")
    assert ck["epoch"] == best and m["selected_checkpoint"] == str(out / "best.pt")
    assert main(["eval", str(out / "best.pt")]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["test_accuracy"] == pytest.approx(m["test_accuracy"])
    assert "max_test_accuracy_over_epochs" not in m  # only when asked
    assert json.loads((out / "metrics.json").read_text())["selected_epoch"] == best


def test_test_labels_do_not_influence_selection(tiny, tmp_path, capsys, register_tiny, monkeypatch):
    rc, _, cap = _run(tmp_path, capsys, name="a")
    a = _metrics(cap)
    from spike.data import builders

    base = builders.DATASETS["tiny"]

    def shuffled_test(cfg, seed):
        b = base(cfg, seed)
        b.test.labels = (b.test.labels + 1) % 3  # other test labels: the test accuracy changes, selection must not
        return b

    monkeypatch.setitem(builders.DATASETS, "tiny", shuffled_test)
    rc2, _, cap2 = _run(tmp_path, capsys, name="b")
    b = _metrics(cap2)
    assert rc == rc2 == 0
    assert (a["selected_epoch"], a["best_val_accuracy"]) == (b["selected_epoch"], b["best_val_accuracy"])


def test_early_stopping_and_bit_identical_resume(tiny, tmp_path, capsys):
    # lr = 1e-12: validation never improves after epoch 1, so patience 2 stops at epoch 3
    rc, out, cap = _run(tmp_path, capsys, "train.lr=1e-12", "train.patience=2", "train.epochs=10", name="flat")
    m = _metrics(cap)
    assert rc == 0 and m["epochs"] == 3 and m["stopped_early_at_epoch"] == 3 and m["selected_epoch"] == 1
    # interrupted after 2 epochs and resumed == uninterrupted, early stopping state included
    sets = ("train.patience=2", "train.epochs=6")
    rc, full, cap = _run(tmp_path, capsys, *sets, name="full")
    whole = _metrics(cap)
    rc, part, cap = _run(tmp_path, capsys, "train.patience=2", "train.epochs=2", name="part")
    rc, part, cap = _run(tmp_path, capsys, *sets, name="part", extra=("--resume", "--force"))
    resumed = _metrics(cap)
    assert rc == 0, cap.err
    for k in ("epochs", "selected_epoch", "best_val_accuracy", "test_accuracy"):
        assert resumed[k] == whole[k], k
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(part / "last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["selection"] == b["selection"]


def test_select_by_val_loss_and_report_max_test(tiny, tmp_path, capsys):
    rc, out, cap = _run(tmp_path, capsys, 'train.select="val_loss"', "train.report_max_test=true")
    m = _metrics(cap)
    assert rc == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    losses = [float(r["val_loss"]) for r in rows]
    assert m["selected_epoch"] == losses.index(min(losses)) + 1
    assert m["max_test_accuracy_over_epochs"] == pytest.approx(max(float(r["test_accuracy"]) for r in rows))


@pytest.mark.parametrize("sets,match", [
    (("data.val_fraction=0.0", "train.patience=2"), "patience = 2.*validation set"),
    (("data.val_fraction=0.0", 'train.select="val_loss"'), "select = 'val_loss' needs a validation set"),
    (("data.val_fraction=0.0", "train.report_max_test=true"), "report_max_test needs a validation set"),
    (('train.select="last"', "train.patience=1"), "patience = 1 needs select"),
    (('train.select="best"',), "select.*must be one of"),
    (("data.val_fraction=0.99",), "val_fraction=0.99"),
    (("data.val_fraction=0.01",), r"val_fraction=0.01 leaves class 0 \(16 training samples\) with 0 validation"),
])
def test_selection_config_errors_are_one_line(tiny, tmp_path, capsys, sets, match):
    rc, out, cap = _run(tmp_path, capsys, *sets)
    err = cap.err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("spike train: error: "), cap.err
    import re

    assert re.search(match, err[0]), err[0]
    assert not (out / "last.pt").exists()


def test_seeds_report_mean_and_std_of_selected_models(tiny, tmp_path, capsys):
    import statistics

    rc, out, cap = _run(tmp_path, capsys, "train.epochs=2", extra=("--seeds", "0", "3"))
    assert rc == 0, cap.err
    s = _metrics(cap)
    per = [json.loads((out / f"seed_{k}" / "metrics.json").read_text()) for k in (0, 3)]
    assert [p["seed"] for p in per] == [0, 3]
    assert per[0]["split"]["val_indices_sha256"] != per[1]["split"]["val_indices_sha256"]  # split seeded per run
    accs = [p["test_accuracy"] for p in per]
    assert s["test_accuracies"] == accs and s["seeds"] == [0, 3]
    assert s["test_accuracy_mean"] == pytest.approx(statistics.mean(accs))
    assert s["test_accuracy_std"] == pytest.approx(statistics.stdev(accs))
    assert json.loads((out / "summary.json").read_text()) == s
    rc, _, cap = _run(tmp_path, capsys, "run.seeds=[1, 1]")
    assert rc == 2 and "must not repeat a seed" in cap.err


def test_validation_split_is_per_class_and_seeded(register_tiny):
    import numpy as np

    from spike.core.config import DataConfig
    from spike.data.builders import build_data, split_validation

    register_tiny(side=4, n_train=48, n_test=12)
    data = build_data(DataConfig(name="tiny", n_time_bins=2))
    a, val_a = split_validation(data, 0.25, seed=0)
    _, val_b = split_validation(data, 0.25, seed=1)
    labels = data.train.labels.numpy()
    assert np.bincount(labels[val_a.indices]).tolist() == [4, 4, 4]  # every class keeps its share
    assert sorted(val_a.indices + a.train.indices) == list(range(48))  # a partition of the training set
    assert val_a.indices != val_b.indices


def test_repeated_set_options_all_apply(tiny, tmp_path, capsys):
    rc, out, cap = _run(tmp_path, capsys, extra=("--set", "train.epochs=1", "--set", "model.hidden=[8]"))
    assert rc == 0, cap.err
    m = _metrics(cap)
    assert m["epochs"] == 1  # the first --set was not dropped by the second
    from spike.train.trainer import load_checkpoint

    assert load_checkpoint(out / "last.pt")["config"]["model"]["hidden"] == [8]


def test_select_last_with_a_validation_set_still_tests_the_last_model_once(tiny, tmp_path, capsys, monkeypatch):
    """``select = "last"`` with a validation split: validation every epoch, test once at the end (it used to
    report no test accuracy at all)."""
    calls = []
    real = trainer_mod.Trainer.evaluate

    def spy(self, loader, prefix="test"):
        calls.append(prefix)
        return real(self, loader, prefix)

    monkeypatch.setattr(trainer_mod.Trainer, "evaluate", spy)
    rc, out, cap = _run(tmp_path, capsys, "train.select=last")
    assert rc == 0, cap.err
    m = _metrics(cap)
    assert calls.count("test") == 1 and calls.count("val") == 4
    assert m["selected_by"] == "last epoch" and 0.0 <= m["test_accuracy"] <= 1.0
    assert main(["eval", str(out / "last.pt")]) == 0  # the reported number is the last model's
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["test_accuracy"] == pytest.approx(m["test_accuracy"])
