"""Frame-level augmentation (spike.data.augment): equal to event augmentation + binning, seeded per
(run seed, epoch, sample), never cached, and a resumed augmented run is bit-identical."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from spike.core.config import ConfigError, config_from_dict
from spike.core.events import make_events
from spike.data import augment as FA
from spike.data import builders
from spike.data.builders import DataBundle, FramesDataset, time_first_collate
from spike.events import augment as EA
from spike.events.frames import to_frame

SENSOR = (12, 10, 2)  # W, H, P
T, DUR = 10, 100_000


def _events(n=3000, seed=0, sensor=SENSOR):
    r = np.random.default_rng(seed)
    w, h, p = sensor
    return make_events(r.integers(0, w, n), r.integers(0, h, n), np.sort(r.integers(0, DUR, n)),
                       r.integers(0, p, n))


def _bin(ev, sensor=SENSOR):
    return torch.as_tensor(to_frame(ev, sensor, n_time_bins=T, start_time=0, end_time=DUR).astype(np.float32))


# (event-level, frame-level) pairs drawing the same numbers in the same order
PAIRS = {
    "flip_x": (lambda e, r: EA.random_flip_x(e, SENSOR, r, 0.5), lambda f, r: FA.random_flip_x(f, r, 0.5)),
    "flip_y": (lambda e, r: EA.random_flip_y(e, SENSOR, r, 0.5), lambda f, r: FA.random_flip_y(f, r, 0.5)),
    "polarity_flip": (lambda e, r: EA.random_polarity_flip(e, SENSOR, r, 0.5),
                      lambda f, r: FA.random_polarity_flip(f, r, 0.5)),
    "translate": (lambda e, r: EA.random_translate(e, SENSOR, r, 4), lambda f, r: FA.random_translate(f, r, 4)),
    "drop_area": (lambda e, r: EA.drop_by_area(e, SENSOR, r, 0.25), lambda f, r: FA.random_drop_area(f, r, 0.25)),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_frame_version_equals_event_version_then_binning(name):
    ev_fn, fr_fn = PAIRS[name]
    ev = _events()
    frames = _bin(ev)
    changed = 0
    for s in range(12):
        want = _bin(ev_fn(ev, np.random.default_rng(s)))
        got = fr_fn(frames, np.random.default_rng(s))
        assert torch.equal(got, want), (name, s)
        changed += not torch.equal(got, frames)
    assert changed > 0  # the augmentation did something for some seed


def test_translate_equivalence_on_a_one_row_sensor():
    sensor = (40, 1, 1)
    ev = _events(2000, 1, sensor)
    frames = _bin(ev, sensor)  # [T, 1, 1, 40]
    for s in range(8):
        want = _bin(EA.random_translate(ev, sensor, np.random.default_rng(s), 6), sensor)
        assert torch.equal(FA.random_translate(frames, np.random.default_rng(s), 6), want)
        flat = FA.random_translate(frames[:, 0, 0], np.random.default_rng(s), 6)  # [T, C] layout
        assert torch.equal(flat, want[:, 0, 0])


def test_drop_time_is_the_bin_aligned_event_drop():
    ev = _events()
    frames = _bin(ev)
    for s in range(6):
        n = int(round(0.3 * T))
        t0 = int(np.random.default_rng(s).integers(0, T - n + 1))
        width = DUR // T
        want = _bin(EA.drop_interval(ev, t0 * width, (t0 + n) * width - 1))
        got = FA.random_drop_time(frames, np.random.default_rng(s), 0.3)
        assert torch.equal(got, want)
        assert int((got.flatten(1).sum(1) == 0).sum()) >= n


def test_frame_ops_never_modify_their_input():
    frames = _bin(_events())
    before = frames.clone()
    for name, step in FA.AUGMENTATIONS.items():
        for s in range(4):
            out = FA.Augment(name, step[1])(frames, np.random.default_rng(s))
            assert out.data_ptr() != frames.data_ptr()
    assert torch.equal(frames, before)


def _frames_dataset(n=12, seed=0):
    r = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 4, 2, 6, 6, generator=r) < 0.3).float()
    return FramesDataset(x, torch.arange(n) % 3)


def test_augmented_dataset_is_seeded_by_seed_epoch_and_index_and_leaves_the_base_alone():
    base = _frames_dataset()
    stored = base.frames.clone()
    ds = FA.AugmentedDataset(base, ["flip_x", "translate:2", "polarity_flip", "drop_area:0.2"], seed=4)
    a = [ds[i][0] for i in range(len(ds))]
    b = [ds[i][0] for i in reversed(range(len(ds)))][::-1]  # order of reading does not matter
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    ds.set_epoch(1)
    c = [ds[i][0] for i in range(len(ds))]
    assert not all(torch.equal(u, v) for u, v in zip(a, c))  # a new epoch, new draws
    other = FA.AugmentedDataset(base, ds.steps, seed=5)
    assert not all(torch.equal(u, other[i][0]) for i, u in enumerate(a))  # the run seed matters
    assert not all(torch.equal(u, base[i][0]) for i, u in enumerate(a))
    assert torch.equal(base.frames, stored)
    assert [int(ds[i][1]) for i in range(len(ds))] == base.labels.tolist()


def test_batches_do_not_depend_on_num_workers():
    ds = FA.AugmentedDataset(_frames_dataset(16), ["flip_x", "translate:2"], seed=1, epoch=3)

    def batches(workers):
        loader = DataLoader(ds, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(9),
                            collate_fn=time_first_collate, num_workers=workers)
        return [x for x, _ in loader]

    for u, v in zip(batches(0), batches(2)):
        assert torch.equal(u, v)


def test_cutmix_mixes_a_box_and_returns_the_label_mix():
    x = torch.zeros(3, 8, 2, 10, 10)
    for b in range(8):
        x[:, b] = b + 1.0  # each sample has its own constant value
    y = torch.arange(8)
    before = x.clone()
    m = FA.cutmix(x, y, np.random.default_rng(2))
    assert torch.equal(x, before)
    perm = m.y_b
    pasted = (m.x != x)[0, :, 0]  # [B, H, W] where the partner's value shows
    frac = pasted.float().mean(dim=(1, 2))
    moved = perm != y
    assert torch.allclose(frac[moved], torch.full_like(frac[moved], 1 - m.lam))
    out = torch.randn(3, 8, 8)
    ce = lambda o, t: torch.nn.functional.cross_entropy(o.mean(0), t)  # noqa: E731
    soft = torch.nn.functional.cross_entropy(out.mean(0), m.soft_targets(8))
    assert torch.allclose(m.loss(ce, out), soft, atol=1e-6)
    ev = FA.cutmix(x, y, np.random.default_rng(2), label_mix="events")
    assert torch.equal(ev.x, m.x) and 0 <= ev.lam <= 1
    assert FA.cutmix(x, y, np.random.default_rng(3)).lam != m.lam


# --------------------------------------------------------------------------------------------------
# config and training
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("item, words", [
    ("flp_x", "unknown augmentation 'flp_x' (did you mean 'flip_x'?)"),
    ("translate:-1", "whole number of pixels"),
    ("flip_x:2", "probability in [0, 1]"),
    ("drop_area:x", "must be a number"),
    ("cutmix:0.5", "set [data] mix"),
])
def test_bad_augment_entry_is_one_config_error(item, words):
    with pytest.raises(ConfigError) as e:
        config_from_dict({"data": {"augment": ["flip_x", item]}}, "x.toml")
    msg = str(e.value)
    assert msg.startswith(f'x.toml: [data] augment[1] = "{item}": ') and words in msg and "\n" not in msg


def test_bad_augment_in_a_file_is_one_cli_error_line(tmp_path, capsys):
    from spike.cli.main import main

    path = tmp_path / "c.toml"
    path.write_text('[data]\nname = "digits"\naugment = ["flip_x", "polarity_flp:0.5"]\n')
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spike train: error: ") and "did you mean 'polarity_flip'" in err[0]
    assert config_from_dict({}).data.augment == ()


N_TRAIN, N_TEST, SIDE = 24, 12, 8


def _split_events(n, seed):
    """Label-dependent events on an 8x8x2 sensor (class c lights the columns near 2c + 1)."""
    r = np.random.default_rng(seed)
    out, labels = [], np.arange(n) % 3
    for c in labels:
        m = 300
        x = np.clip(r.normal(2 * c + 1.5, 1.0, m).round(), 0, SIDE - 1).astype(np.int64)
        out.append(make_events(x, r.integers(0, SIDE, m), np.sort(r.integers(0, DUR, m)), r.integers(0, 2, m)))
    return out, labels


def _binned(split):
    evs, labels = _split_events(N_TRAIN if split == "train" else N_TEST, 0 if split == "train" else 1)
    sensor = (SIDE, SIDE, 2)
    frames = np.stack([to_frame(e, sensor, n_time_bins=4, start_time=0, end_time=DUR) for e in evs])
    return {"frames": frames.astype(np.float32), "labels": labels}


def _cached_builder(cfg, seed):
    from spike.data.cache import load_or_build

    cache_dir = Path(cfg.root) / ".spike_cache" if cfg.cache else None
    splits = {s: load_or_build(cache_dir, {"dataset": "augtest", "split": s, "n_time_bins": 4},
                               lambda s=s: _binned(s)) for s in ("train", "test")}
    return DataBundle(FramesDataset(splits["train"]["frames"], splits["train"]["labels"]),
                      FramesDataset(splits["test"]["frames"], splits["test"]["labels"]),
                      input_shape=(2, SIDE, SIDE), n_classes=3, n_time_bins=4, name="augtest",
                      sensor_size=(SIDE, SIDE, 2), dt_us=DUR / 4)


AUG = ["flip_x:0.5", "translate:2", "polarity_flip:0.5", "drop_area:0.2", "drop_time:0.25"]


@pytest.fixture
def augtest(tmp_path, monkeypatch):
    monkeypatch.setitem(builders.DATASETS, "augtest", _cached_builder)

    def config(epochs=2, augment=AUG, **train):
        return config_from_dict({
            "run": {"name": "aug", "seed": 3, "progress": False, "plots": False, "out_dir": str(tmp_path)},
            "data": {"name": "augtest", "root": str(tmp_path / "data"), "n_time_bins": 4, "batch_size": 8,
                     "augment": list(augment)},
            "model": {"hidden": [8]},
            "train": {"epochs": epochs, "scheduler": "none", "lr": 0.02, **train}})
    return config


def _weights(out: Path):
    from spike.train.trainer import load_checkpoint

    return load_checkpoint(out / "last.pt")["model"]


def test_resumed_augmented_run_is_bit_identical(augtest, tmp_path, monkeypatch):
    from spike.train.recipe import train_from_config

    drawn = []
    real = FA.sample_rng
    monkeypatch.setattr(FA, "sample_rng", lambda s, e, i: drawn.append((s, e, i)) or real(s, e, i))
    full = train_from_config(augtest(epochs=2), out_dir=tmp_path / "full")
    assert sorted(drawn) == sorted((3, e, i) for e in (0, 1) for i in range(N_TRAIN))  # the trainer sets the epoch
    train_from_config(augtest(epochs=1), out_dir=tmp_path / "part")
    drawn.clear()
    resumed = train_from_config(augtest(epochs=2), out_dir=tmp_path / "part", resume=True, force=True)
    assert {e for _, e, _ in drawn} == {1}
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert full["test_loss"] == resumed["test_loss"] and full["train_accuracy"] == resumed["train_accuracy"]
    plain = train_from_config(augtest(epochs=2, augment=[]), out_dir=tmp_path / "plain")
    c = _weights(tmp_path / "plain")
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the augmentation changed the training
    assert plain["test_loss"] != full["test_loss"]


def test_cache_stores_only_unaugmented_frames(augtest, tmp_path):
    from spike.train.recipe import train_from_config

    first = train_from_config(augtest(epochs=1), out_dir=tmp_path / "a")
    files = sorted((tmp_path / "data" / ".spike_cache").glob("augtest-*.npz"))
    assert [f.name.split("-")[1] for f in files] == ["test", "train"]
    for f in files:
        with np.load(f) as z:
            want = _binned(f.name.split("-")[1])
            assert np.array_equal(z["frames"], want["frames"]) and np.array_equal(z["labels"], want["labels"])
    again = train_from_config(augtest(epochs=1), out_dir=tmp_path / "b")  # now read from the cache
    assert again["test_loss"] == first["test_loss"]
    ds = FA.AugmentedDataset(_cached_builder(augtest(epochs=1).data, 3).train, AUG, seed=3)
    assert any(not torch.equal(ds[i][0], torch.as_tensor(_binned("train")["frames"][i])) for i in range(N_TRAIN))
