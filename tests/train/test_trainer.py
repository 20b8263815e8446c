"""Trainer, config and CLI: strict configs, atomic checkpoints, exact resume, machine-readable output."""

import json
from pathlib import Path

import pytest
import torch

from spike.core.config import ConfigError, config_from_dict, config_to_dict, load_config
from spike.neurons import LI, LIF
from spike.synapses import Flatten, Linear, SharedDropout, Sequential
from spike.train import BPTT, CheckpointError, Trainer, get_loss, load_checkpoint, save_checkpoint
from spike.data.builders import FramesDataset, time_first_collate

REPO = Path(__file__).resolve().parents[2]


def _toy_data(n=96, t=8, f=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = (torch.rand(n, t, f, generator=g) < 0.05 + 0.45 * (torch.arange(f) % 3 == y[:, None, None])).float()
    return FramesDataset(x, y)


class _Interrupt:
    """Simulates a crash at the start of a given epoch (after the previous checkpoint was written)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def _toy_trainer(out_dir, epochs, seed=0, callbacks=()):
    torch.manual_seed(seed)
    net = Sequential(Flatten(), Linear(12, 16), LIF(tau=4.0), SharedDropout(0.2), Linear(16, 3), LI(tau=4.0))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    return Trainer(net, opt, get_loss("mean_membrane"), scheduler=sched, out_dir=out_dir, epochs=epochs,
                   seed=seed, progress=False, callbacks=callbacks, extra_state={"config": {"note": "toy"}})


def _loaders(seed=0):
    ds = _toy_data()
    gen = torch.Generator().manual_seed(seed)
    train = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True, generator=gen, collate_fn=time_first_collate)
    test = torch.utils.data.DataLoader(_toy_data(48, seed=1), batch_size=48, collate_fn=time_first_collate)
    return train, test


def test_training_learns_and_writes_csv(tmp_path):
    tr = _toy_trainer(tmp_path, epochs=6)
    train, test = _loaders()
    m = tr.fit(train, test)
    assert m["test_accuracy"] > 0.8  # chance is 1/3
    rows = (tmp_path / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 7 and rows[0].startswith("epoch,")
    assert not list(tmp_path.glob("*.tmp"))


def test_resume_reproduces_uninterrupted_run_exactly(tmp_path):
    full = _toy_trainer(tmp_path / "full", epochs=4)
    full.fit(*_loaders())
    part = _toy_trainer(tmp_path / "part", epochs=4, callbacks=[_Interrupt(2)])
    with pytest.raises(KeyboardInterrupt):
        part.fit(*_loaders())
    assert load_checkpoint(tmp_path / "part" / "last.pt")["epoch"] == 2
    resumed = _toy_trainer(tmp_path / "part", epochs=4, seed=0)
    resumed.model.apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)
    resumed.fit(*_loaders(), resume=True)
    for (n, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), n
    assert [h["train_loss"] for h in full.history] == [h["train_loss"] for h in resumed.history]
    assert len(resumed.history) == 4


def test_checkpoint_is_atomic_and_weights_only(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", {"epoch": 1, "model": {"w": torch.ones(2)}})
    assert load_checkpoint(path)["model"]["w"].sum() == 2

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "c.pt", {"epoch": 2})
    assert load_checkpoint(path)["epoch"] == 1  # old checkpoint intact, no temp file left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"a": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a spike checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_config_unknown_key_names_key_and_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[train]\nepochz = 3\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*'epochz'.*did you mean 'epochs'"):
        load_config(p)
    p.write_text("[trian]\nepochs = 3\n")
    with pytest.raises(ConfigError, match=r"\[trian\]"):
        load_config(p)
    p.write_text("[train]\nepochs = 'three'\n")
    with pytest.raises(ConfigError, match="'epochs'.*int"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_config_is_frozen_and_roundtrips():
    cfg = load_config(REPO / "configs" / "quickstart.toml")
    assert config_from_dict(config_to_dict(cfg)) == cfg
    with pytest.raises(Exception):
        cfg.train.epochs = 3  # frozen


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_parses(path):
    load_config(path)


def test_bptt_strategy_is_a_plain_step():
    net = Sequential(Linear(3, 2), LI(tau=2.0))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.rand(5, 4, 3), torch.tensor([0, 1, 0, 1])
    before = [p.clone() for p in net.parameters()]
    res = BPTT().train_step(net, x, y, get_loss("mean_membrane"), opt, 0.0)
    assert res.out.shape == (5, 4, 2) and res.loss > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
