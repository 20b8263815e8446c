"""``[data] mix``: CutMix / EventMix of training batches with the label mix on the loss side.

The tiny in-memory data set of ``conftest.py`` (3 classes, ``[T, 2, 4, 4]`` frames).
"""

import json
import re

import numpy as np
import pytest
import torch

from spike.cli.main import main
from spike.data.augment import cutmix
from spike.train.losses import get_loss
from spike.train.strategy import BPTT
from spike.train.trainer import Trainer, load_checkpoint

CFG = """\
[run]
name = "mix"
progress = false
plots = false
[data]
name = "tiny"
n_time_bins = 4
batch_size = 8
[model]
hidden = [16]
[train]
epochs = 2
lr = 0.02
scheduler = "none"
"""


@pytest.fixture
def tiny(register_tiny, monkeypatch, tmp_path):
    register_tiny(side=4, n_train=24, n_test=8)
    monkeypatch.chdir(tmp_path)


def _train(tmp_path, capsys, *sets, name="run"):
    cfg = tmp_path / "mix.toml"
    cfg.write_text(CFG)
    rc = main(["train", str(cfg), "--out", str(tmp_path / name), "--set", *sets] if sets
              else ["train", str(cfg), "--out", str(tmp_path / name)])
    cap = capsys.readouterr()
    return rc, cap


class _Recorder(BPTT):
    """BPTT that records what the trainer hands it."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def train_step(self, model, x, y, loss_fn, optimizer, grad_clip):
        self.seen.append((x.clone(), y.clone(), loss_fn))
        return super().train_step(model, x, y, loss_fn, optimizer, grad_clip)


def _batches(n=3, b=6):
    g = torch.Generator().manual_seed(1)
    return [((torch.rand(4, b, 2, 4, 4, generator=g) < 0.3).float(), torch.arange(b) % 3) for _ in range(n)]


def _trainer(strategy, mix, prob=1.0, tmp_path=None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(2), torch.nn.Linear(32, 3))
    return Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), get_loss("mean_membrane"),
                   strategy=strategy, out_dir=tmp_path, epochs=1, progress=False, seed=5,
                   batch_mix=mix, mix_prob=prob)


def test_mixed_batch_and_loss_are_the_seeded_cutmix(tmp_path):
    rec = _Recorder()
    tr = _trainer(rec, cutmix, tmp_path=tmp_path)
    batches = _batches()
    tr.train_epoch(batches, epoch=2)
    for step, ((x, y), (seen_x, seen_y, loss_fn)) in enumerate(zip(batches, rec.seen)):
        rng = np.random.default_rng([5, 2, step])
        assert rng.random() < 1.0  # the mix_prob draw comes first
        expect = cutmix(x, y, rng)
        assert torch.equal(seen_x, expect.x) and not torch.equal(seen_x, x)  # the mixed input is trained on
        out = torch.randn(4, 6, 3)
        base = get_loss("mean_membrane")
        want = expect.lam * base(out, expect.y_a) + (1 - expect.lam) * base(out, expect.y_b)
        assert torch.allclose(loss_fn(out, seen_y), want) and loss_fn.__name__ == "mean_membrane"
        assert 0.0 < expect.lam < 1.0 or torch.equal(expect.y_a, expect.y_b)


def test_mix_prob_zero_is_plain_training(tmp_path):
    a, b = _Recorder(), _Recorder()
    _trainer(a, cutmix, prob=0.0, tmp_path=tmp_path).train_epoch(_batches(), epoch=0)
    _trainer(b, None, tmp_path=tmp_path).train_epoch(_batches(), epoch=0)
    for (xa, _, fa), (xb, _, fb) in zip(a.seen, b.seen):
        assert torch.equal(xa, xb) and fa is fb  # the unmixed loss itself


def test_mix_prob_mixes_about_that_share_of_batches(tmp_path):
    rec = _Recorder()
    batches = _batches(n=200, b=3)
    tr = _trainer(rec, cutmix, prob=0.3, tmp_path=tmp_path)
    tr.train_epoch(batches, epoch=0)
    mixed = sum(s[2] is not tr.loss_fn for s in rec.seen)
    assert 40 <= mixed <= 80  # Binomial(200, 0.3): mean 60, sd 6.5


@pytest.mark.parametrize("method", ["bptt", "sltt"])
@pytest.mark.parametrize("mix", ["cutmix", "eventmix"])
def test_recipe_trains_with_mix_reproducibly(tiny, tmp_path, capsys, method, mix):
    sets = (f'data.mix="{mix}"', f'train.method="{method}"', 'train.loss="per_step"')
    rc, cap = _train(tmp_path, capsys, *sets, name="a")
    assert rc == 0, cap.err
    rc2, cap2 = _train(tmp_path, capsys, *sets, name="b")
    rc3, cap3 = _train(tmp_path, capsys, 'train.method="%s"' % method, 'train.loss="per_step"', name="c")
    a, b, c = (json.loads(k.out.strip().splitlines()[-1]) for k in (cap, cap2, cap3))
    assert a["test_accuracy"] == b["test_accuracy"]
    wa, wb, wc = (load_checkpoint(tmp_path / n / "last.pt")["model"] for n in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # seeded: two runs train the same weights
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)  # and the mix changed training
    assert load_checkpoint(tmp_path / "a" / "last.pt")["config"]["data"]["mix"] == mix


@pytest.mark.parametrize("sets, match", [
    (('data.mix="cutmix"', 'train.method="forward_forward"'), "does not train on"),
    (('data.mix="cutmix"', 'train.rcs_weight=0.1'), "rcs_weight"),
    (('data.mix="mixup"',), "mix"),
    (('data.mix_prob=1.5',), "mix_prob"),
    (('data.mix_alpha=0',), "mix_alpha"),
    (('data.augment=["cutmix"]',), r"\[data\] mix"),
])
def test_mix_config_errors_are_one_line(tiny, tmp_path, capsys, sets, match):
    rc, cap = _train(tmp_path, capsys, *sets)
    assert rc == 2
    line = cap.err.strip().splitlines()[-1]
    assert "Traceback" not in cap.err and re.search(match, line), cap.err
