"""``--resume`` refuses a changed config (``--force`` records both), and checkpoints detect corruption.

The runs use a tiny in-memory dataset registered as ``[data] name = "tiny"`` (16 + 8 samples, T = 4) and
a 128 -> 32 -> 3 network, so the first weight matrix is 16 KiB.
"""

import json
import zipfile

import pytest
import torch

from spike.cli.main import main
from spike.train.trainer import CheckpointError, CheckpointWarning, load_checkpoint, payload_digest, save_checkpoint

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
hidden = [32]
[train]
epochs = 1
lr = 0.01
"""


@pytest.fixture
def run(tmp_path, monkeypatch, capsys, register_tiny):
    """A finished 1-epoch run: ``(config path, run folder)``."""
    register_tiny(side=8)
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.replace('name = "tiny"\n', f'name = "run"\nout_dir = "{tmp_path}"\n', 1))
    out = tmp_path / "run"  # = [run] out_dir / name, where `spike energy CONFIG` looks
    assert main(["train", str(cfg), "--out", str(out)]) == 0
    capsys.readouterr()
    return cfg, out


def _train(cfg, out, *args) -> int:
    return main(["train", str(cfg), "--out", str(out), *args])


def _one_error_line(capsys, command: str = "train") -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"spike {command}: error: "), err
    return err[0]


# --------------------------------------------------------------------------------------------------
# resume is honest
# --------------------------------------------------------------------------------------------------


def test_resume_with_changed_config_refuses_and_lists_differences(run, capsys):
    cfg, out = run
    before = (out / "last.pt").read_bytes()
    assert _train(cfg, out, "--resume", "--set", "train.epochs=2", "train.lr=0.02", "run.seed=3") == 2
    line = _one_error_line(capsys)
    for diff in ("train.epochs: 1 -> 2", "train.lr: 0.01 -> 0.02", "run.seed: 0 -> 3"):
        assert diff in line
    assert "--force" in line and str(out / "last.pt") in line
    assert (out / "last.pt").read_bytes() == before  # the stored config is not overwritten


def test_resume_with_changed_hidden_is_refused_before_loading_weights(run, capsys):
    cfg, out = run
    assert _train(cfg, out, "--resume", "--set", "model.hidden=[16]") == 2
    assert "model.hidden: [32] -> [16]" in _one_error_line(capsys)
    assert _train(cfg, out, "--resume", "--force", "--set", "model.hidden=[16]") == 2  # forced: the weights don't fit
    line = _one_error_line(capsys)
    assert str(out / "last.pt") in line and "do not fit" in line and "size mismatch" in line


def test_resume_with_same_config_continues(run, capsys):
    cfg, out = run
    # where the run lives and how it is shown may change; the ckpt already holds epoch 1 of 1: nothing to do
    assert _train(cfg, out, "--resume", "--device", "cpu", "--set", "run.progress=true", "data.num_workers=0",
                  'run.out_dir="elsewhere"') == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["epochs"] == 1 and "config_changes" not in m


def test_force_resumes_and_records_both_configs(run, capsys):
    cfg, out = run
    assert _train(cfg, out, "--resume", "--force", "--set", "train.epochs=2", "train.lr=0.02") == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["epochs"] == 2  # one stored epoch, one new
    assert m["config_changes"] == ["train.epochs: 1 -> 2", "train.lr: 0.01 -> 0.02"]
    assert json.loads((out / "metrics.json").read_text())["config_changes"] == m["config_changes"]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["config"]["train"]["lr"] == 0.02 and ckpt["epoch"] == 2
    (old,) = ckpt["config_history"]
    assert old["config"]["train"]["lr"] == 0.01 and old["until_epoch"] == 1
    # the history stays with the run: a later honest resume keeps it
    assert _train(cfg, out, "--resume", "--set", "train.epochs=2", "train.lr=0.02") == 0
    capsys.readouterr()
    assert len(load_checkpoint(out / "last.pt")["config_history"]) == 1


def test_force_without_resume_is_an_error(run, capsys):
    cfg, out = run
    assert _train(cfg, out, "--force") == 2
    assert "--force only applies with --resume" in _one_error_line(capsys)


def test_weights_that_do_not_fit_are_one_checkpoint_error(run, capsys):
    """A checkpoint whose stored config claims another size (e.g. edited elsewhere): one line, no traceback."""
    _, out = run
    ckpt = load_checkpoint(out / "last.pt")
    ckpt["config"]["model"]["hidden"] = [16]
    save_checkpoint(out / "foreign.pt", ckpt)
    assert main(["eval", str(out / "foreign.pt")]) == 2
    line = _one_error_line(capsys, "eval")
    assert str(out / "foreign.pt") in line and "do not fit" in line and "size mismatch" in line


# --------------------------------------------------------------------------------------------------
# checkpoints detect corruption
# --------------------------------------------------------------------------------------------------


def _zero_inside_largest_tensor(path, n_bytes: int = 4096) -> str:
    """Zero ``n_bytes`` in the middle of the largest tensor's storage (``<archive>/data/<k>`` entries of
    torch's uncompressed zip); returns the entry's name."""
    with zipfile.ZipFile(path) as z:
        entries = [i for i in z.infolist() if "/data/" in i.filename and i.compress_type == zipfile.ZIP_STORED]
        info = max(entries, key=lambda i: i.file_size)
        assert info.file_size >= 2 * n_bytes
    raw = bytearray(path.read_bytes())
    name_len, extra_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len  # after the local file header
    mid = start + info.file_size // 2 - n_bytes // 2
    raw[mid:mid + n_bytes] = bytes(n_bytes)
    path.write_bytes(bytes(raw))
    return info.filename


def test_zeroed_weights_are_detected_on_every_load_path(run, capsys):
    cfg, out = run
    path = out / "last.pt"
    good = torch.load(path, weights_only=True)
    _zero_inside_largest_tensor(path)
    bad = torch.load(path, weights_only=True)  # torch itself loads it silently ...
    changed = [k for k in good["model"] if not torch.equal(good["model"][k], bad["model"][k])]
    assert changed  # ... with different weights
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(path)
    for argv in (["eval", str(path)], ["energy", str(path), "--no-plot"], ["energy", str(cfg), "--no-plot"]):
        assert main(argv) == 2
        line = _one_error_line(capsys, argv[0])
        assert str(path) in line and "corrupted" in line
    assert _train(cfg, out, "--resume") == 2
    assert "corrupted" in _one_error_line(capsys)


def test_digest_depends_on_content_not_order():
    w = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    a = {"model": {"w": w, "b": torch.zeros(3)}, "epoch": 1}
    b = {"epoch": 1, "model": {"b": torch.zeros(3), "w": w.t().contiguous().t()}}  # other order, other strides
    assert payload_digest(a) == payload_digest(b)
    nudged = w.clone()
    nudged[1, 2] = torch.nextafter(nudged[1, 2], torch.tensor(100.0))  # one ulp
    assert payload_digest({**a, "model": {"w": nudged, "b": torch.zeros(3)}}) != payload_digest(a)
    assert payload_digest({**a, "epoch": 2}) != payload_digest(a)
    assert payload_digest({**a, "model": {"w": w.view(torch.int32), "b": torch.zeros(3)}}) != payload_digest(a)


def test_checkpoint_without_digest_loads_with_a_warning(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": "spike-checkpoint-v1", "epoch": 1, "model": {"w": torch.ones(2)}}, path)
    with pytest.warns(CheckpointWarning, match="no digest"):
        assert load_checkpoint(path)["model"]["w"].sum() == 2
