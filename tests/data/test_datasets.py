"""tonic-backed datasets (spike.data.datasets) end to end on format-exact fixtures, through the config path.

Every dataset is written into tmp_path in the layout tonic leaves after download (datasets/fixtures.py,
plus AEDAT4 and N-Caltech101 writers here) and loaded with ``build_data(DataConfig(name=..., root=...))``.
Frames are compared with an independent numpy binning of the events the fixture wrote.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from spike.core.config import ConfigError, DataConfig
from spike.core.events import EventError
from spike.data import datasets as D
from spike.data.builders import DATASETS, build_data, split_validation
from spike.data.transforms import ChannelDownsample, TimeBin, downsample_channels

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "data"
tonic = pytest.importorskip("tonic")


def _load_fixtures():
    spec = importlib.util.spec_from_file_location("spike_dataset_fixtures_ds", REPO / "datasets" / "fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fx = _load_fixtures()
OFF = {"download": False}


# --------------------------------------------------------------------------------------------------
# writers for the two datasets datasets/fixtures.py has none for
# --------------------------------------------------------------------------------------------------


def _aedat4_ioheader(description: str) -> bytes:
    """IOHeader flatbuffer (compression None, file_data_position -1, description) laid out by hand."""
    desc = description.encode() + b"\0"
    buf = (struct.pack("<I4s", 24, b"IOHE")                      # root table at 24, identifier
           + struct.pack("<5H", 10, 20, 4, 8, 16) + b"\0" * 6     # vtable at 8: 3 fields
           + struct.pack("<iiqI", 24 - 8, 0, -1, 4)               # table: vtable, compression, fdp, -> string
           + struct.pack("<I", len(desc) - 1) + desc)
    return buf + b"\0" * (-len(buf) % 4)


def _aedat4_packet(ev: np.ndarray) -> bytes:
    """Size-prefixed EventPacket flatbuffer ('EVTS'); Event struct = t i64, x i16, y i16, on u8, 3 pad."""
    rec = np.zeros(len(ev), np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"), ("pad", "V3")]))
    rec["t"], rec["x"], rec["y"], rec["on"] = ev["t"], ev["x"], ev["y"], ev["p"]
    body = (struct.pack("<I4s", 16, b"EVTS") + struct.pack("<3H", 6, 8, 4) + b"\0\0"
            + struct.pack("<iI", 20 - 12, 4) + struct.pack("<I", len(ev)) + rec.tobytes())
    return struct.pack("<I", len(body)) + body


_DV_XML = ('<dv version="2.0"><node name="outInfo" path="/mainloop/output_file/outInfo/">'
           '<node name="0" path="/mainloop/output_file/outInfo/0/">'
           '<attr key="compression" type="string">NONE</attr><attr key="typeIdentifier" type="string">EVTS</attr>'
           '<node name="info" path="/mainloop/output_file/outInfo/0/info/">'
           '<attr key="sizeX" type="int">128</attr><attr key="sizeY" type="int">128</attr>'
           '</node></node></node></dv>')


def write_aedat4(path: Path, ev: np.ndarray) -> None:
    """An uncompressed AEDAT 4.0 file with one DVS128 event stream (what tonic's read_aedat4 reads)."""
    hdr = _aedat4_ioheader(_DV_XML)
    pkt = _aedat4_packet(ev)
    path.write_bytes(b"#!AER-DAT4.0\r\n" + struct.pack("<I", len(hdr)) + hdr + struct.pack("<iI", 0, len(pkt)) + pkt)


def write_cifar10_dvs(root: Path, per_class: int = 10, n_events: int = 40, seed: int = 5) -> dict[str, fx.Sample]:
    """``root/CIFAR10DVS/<class>/cifar10_<class>_<k>.aedat4`` (+ placeholder zip); {relative path: sample}."""
    rng = np.random.default_rng(seed)
    out = {}
    for label, cls in enumerate(D._CIFAR_CLASSES):
        d = root / "CIFAR10DVS" / cls
        d.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            ev = fx.random_events(rng, n_events, (128, 128, 2), 1_300_000)
            write_aedat4(d / f"cifar10_{cls}_{k}.aedat4", ev)
            out[f"{cls}/cifar10_{cls}_{k}.aedat4"] = fx.Sample(ev, label)
    (root / "CIFAR10DVS" / "CIFAR10DVS.zip").touch()
    return out


NCALTECH_CLASSES = ("BACKGROUND_Google", "Faces_easy", "airplanes")


def write_ncaltech101(root: Path, per_class: int = 10, n_events: int = 50, seed: int = 6) -> dict[str, fx.Sample]:
    """``root/NCALTECH101/Caltech101/<class>/image_<NNNN>.bin`` in the 40-bit format; events as tonic
    returns them (shifted so that min x = min y = 0)."""
    rng = np.random.default_rng(seed)
    out = {}
    for label, cls in enumerate(NCALTECH_CLASSES):
        d = root / "NCALTECH101" / "Caltech101" / cls
        d.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            ev = fx.random_events(rng, n_events, (200, 150, 2), 300_000)
            ev["x"] += 20  # recorded off the sensor's origin; tonic shifts it back
            ev["y"] += 10
            (d / f"image_{k + 1:04d}.bin").write_bytes(fx.encode_40bit(ev))
            shown = ev.copy()
            shown["x"] -= ev["x"].min()
            shown["y"] -= ev["y"].min()
            out[f"Caltech101/{cls}/image_{k + 1:04d}.bin"] = fx.Sample(shown, label)
    (root / "NCALTECH101" / "N-Caltech101-archive.zip").touch()
    return out


# --------------------------------------------------------------------------------------------------
# an independent binning to compare with
# --------------------------------------------------------------------------------------------------


def ref_frames(ev: np.ndarray, sensor, size_hw, n_bins: int) -> np.ndarray:
    """``[T, P, H', W']``: bin = min(floor((t - t0) * T / (t1 - t0)), T - 1), x' = x * W' // W."""
    w, h, p = sensor
    t = ev["t"].astype(np.int64)
    out = np.zeros((n_bins, p, *size_hw), np.int64)
    if len(t) == 0:
        return out
    span = t[-1] - t[0]
    b = np.minimum((t - t[0]) * n_bins // span, n_bins - 1) if span else np.zeros_like(t)
    x = ev["x"].astype(np.int64) * size_hw[1] // w
    y = ev["y"].astype(np.int64) * size_hw[0] // h
    np.add.at(out, (b, ev["p"].astype(np.int64), y, x), 1)
    return out


def _cfg(name, root, **kw) -> DataConfig:
    opts = {**OFF, **kw.pop("options", {})}
    return DataConfig(name=name, root=str(root), options=opts if name != "shd" else {}, **kw)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def written(root) -> dict:
    out = fx.write_all(root)
    out["CIFAR10DVS"] = write_cifar10_dvs(root)
    out["NCALTECH101"] = write_ncaltech101(root)
    return out


def _check_vision(bundle_split, want: list, sensor, size_hw, n_bins):
    assert len(bundle_split) == len(want)
    assert bundle_split.labels.tolist() == [s.target for s in want]
    assert bundle_split.n_events.tolist() == [len(s.events) for s in want]
    frames = bundle_split.frames
    assert frames.shape == (len(want), n_bins, sensor[2], *size_hw)
    for f, s in zip(frames, want):
        np.testing.assert_array_equal(f, ref_frames(s.events, sensor, size_hw, n_bins))
    x, y = bundle_split[0]
    assert x.dtype.is_floating_point and x.shape == (n_bins, sensor[2], *size_hw) and isinstance(y, int)


# --------------------------------------------------------------------------------------------------
# every dataset end to end through the config path
# --------------------------------------------------------------------------------------------------


def test_registered():
    for name in ("shd", "ssc", "dvs_gesture", "nmnist", "cifar10_dvs", "ncaltech101"):
        assert name in DATASETS


def test_ssc_official_splits_match_timebin_of_tonic_events(root, written):
    b = build_data(_cfg("ssc", root, n_time_bins=60, options={"dt_ms": 10.0, "channel_group": 5}))
    assert b.input_shape == (140,) and b.n_classes == 35 and b.dt_us == 10_000.0
    tb = TimeBin(n_time_bins=60, dt_ms=10.0, channel_group=5)
    for split, part in (("train", b.train), ("valid", b.val), ("test", b.test)):
        want = written["SSC"][split]
        assert len(part) == len(want) and part.labels.tolist() == [s.target for s in want]
        assert part.n_events.tolist() == [len(s.events) for s in want]
        for f, s in zip(part.frames, want):
            assert f.shape == (60, 140)
            np.testing.assert_array_equal(f, tb(s.events))  # == tonic events through the transform
            assert f.sum() == np.sum(s.events["t"] < 600_000)  # spikes after T * dt are dropped
    assert split_validation(b, 0.0)[1] is b.val  # the official split is the validation set


def test_shd_through_config(root, written):
    b = build_data(_cfg("shd", root, n_time_bins=100))
    assert len(b.train) == len(written["SHD"]["train"]) and b.input_shape == (140,)
    x, y = b.train[0]
    assert x.shape == (100, 140) and int(y) == written["SHD"]["train"][0].target
    assert float(x.sum()) == len(written["SHD"]["train"][0].events)
    assert D.locate("shd", root, download=False) == root / "SHD"  # the helper knows SHD's files too


@pytest.mark.parametrize("size", [[32, 32], [128, 128]])
def test_dvs_gesture(root, written, size):
    b = build_data(_cfg("dvs_gesture", root, n_time_bins=4, options={"size": size}))
    assert b.input_shape == (2, *size) and b.n_classes == 11 and b.val is None
    for split, part in (("train", b.train), ("test", b.test)):
        want = [written["DVSGesture"][split][k] for k in sorted(written["DVSGesture"][split])]
        _check_vision(part, want, (128, 128, 2), tuple(size), 4)


def test_nmnist_and_first_saccade(root, written):
    b = build_data(_cfg("nmnist", root, n_time_bins=3))
    assert b.input_shape == (2, 34, 34) and b.n_classes == 10
    for split, part in (("train", b.train), ("test", b.test)):
        want = [written["NMNIST"][split][k] for k in sorted(written["NMNIST"][split])]
        _check_vision(part, want, (34, 34, 2), (34, 34), 3)
    first = build_data(_cfg("nmnist", root, n_time_bins=3, options={"first_saccade_only": True}))
    want = [written["NMNIST"]["train"][k] for k in sorted(written["NMNIST"]["train"])]
    assert first.train.n_events.tolist() == [int(np.sum(s.events["t"] < 100_000)) for s in want]


def test_cifar10_dvs_seeded_stratified_split(root, written):
    b = build_data(_cfg("cifar10_dvs", root, n_time_bins=5))
    assert b.input_shape == (2, 48, 48) and b.n_classes == 10
    names = sorted(written["CIFAR10DVS"])
    parts = {"train": b.train, "val": b.val, "test": b.test}
    idx = {k: v.indices for k, v in parts.items()}
    assert sorted(np.concatenate(list(idx.values())).tolist()) == list(range(len(names)))  # a partition
    for k, frac in (("train", 8), ("val", 1), ("test", 1)):  # per class 80 / 10 / 10 of 10 samples
        assert np.bincount(parts[k].labels, minlength=10).tolist() == [frac] * 10
        _check_vision(parts[k], [written["CIFAR10DVS"][names[i]] for i in idx[k]], (128, 128, 2), (48, 48), 5)
    # recorded next to the cache, with file names; reused; another seed gives another split
    (rec_path,) = (root / ".spike_cache").glob("cifar10_dvs-splits-*.json")
    rec = json.loads(rec_path.read_text())
    assert rec["indices"]["test"] == idx["test"].tolist() and rec["seed"] == 0
    assert rec["files"]["test"] == [names[i] for i in idx["test"]] and rec["classes"][0] == "airplane"
    again = build_data(_cfg("cifar10_dvs", root, n_time_bins=5))
    assert again.test.indices.tolist() == idx["test"].tolist()
    other = build_data(_cfg("cifar10_dvs", root, n_time_bins=5, options={"split_seed": 1}))
    assert other.test.indices.tolist() != idx["test"].tolist()
    assert len(list((root / ".spike_cache").glob("cifar10_dvs-splits-*.json"))) == 2
    assert len(list((root / ".spike_cache").glob("cifar10_dvs-all-*.npz"))) == 1  # one binned entry


def test_ncaltech101_shifted_and_resized(root, written):
    b = build_data(_cfg("ncaltech101", root, n_time_bins=2, options={"split": [0.6, 0.2, 0.2]}))
    assert b.n_classes == len(NCALTECH_CLASSES) and b.input_shape == (2, 48, 64)
    names = sorted(written["NCALTECH101"])
    for part, n in ((b.train, 6), (b.val, 2), (b.test, 2)):
        assert np.bincount(part.labels).tolist() == [n] * 3  # labels: index in the sorted folder names
        _check_vision(part, [written["NCALTECH101"][names[i]] for i in part.indices], (240, 180, 2), (48, 64), 2)


def test_fixed_duration_window(root, written):
    b = build_data(_cfg("nmnist", root, n_time_bins=4, options={"duration_us": 120_000}))
    assert b.dt_us == 30_000.0
    want = [written["NMNIST"]["train"][k] for k in sorted(written["NMNIST"]["train"])]
    for f, s in zip(b.train.frames, want):
        t = s.events["t"] - s.events["t"][0]
        keep = t <= 120_000  # [t_first, t_first + duration], last bin closed
        ref = np.zeros((4, 2, 34, 34), np.int64)
        np.add.at(ref, (np.minimum(t[keep] * 4 // 120_000, 3), s.events["p"][keep], s.events["y"][keep],
                        s.events["x"][keep]), 1)
        np.testing.assert_array_equal(f, ref)


@pytest.mark.parametrize("config", ["dvs_gesture.toml", "ssc.toml", "dvs_gesture_sew.toml", "dvs_gesture_maxformer.toml",
                                    "cifar10_dvs_maxformer.toml"])
def test_shipped_configs_build_and_run(root, written, config):
    import torch

    from spike.core.config import load_config
    from spike.data.builders import make_loaders
    from spike.models import build_model

    cfg = load_config(REPO / "configs" / config,
                      {"data.root": str(root), "data.n_time_bins": 2, "data.batch_size": 2, "data.options": {**OFF}})
    data = build_data(cfg.data)
    model = build_model(cfg.model, data.input_shape, data.n_classes)
    x, y = next(iter(make_loaders(data, cfg.data)[0]))
    assert x.shape == (2, 2, *data.input_shape)  # [T, B, ...]
    with torch.no_grad():
        out = model(x)
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape[-1] == data.n_classes


# --------------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------------


def test_cache_hit_identical_and_changed_parameter_rebuilds(tmp_path, monkeypatch):
    fx.write_ssc(tmp_path)
    cfg = _cfg("ssc", tmp_path, n_time_bins=20)
    first = build_data(cfg)
    n_entries = len(list((tmp_path / ".spike_cache").glob("*.npz")))
    assert n_entries == 3

    def no_read(*a, **k):
        raise AssertionError("read the source on a cache hit")

    monkeypatch.setattr(D, "_read_hsd", no_read)
    hit = build_data(cfg)
    for a, b in ((first.train, hit.train), (first.val, hit.val), (first.test, hit.test)):
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.labels, b.labels)
    for changed in (_cfg("ssc", tmp_path, n_time_bins=20, options={"dt_ms": 5.0}),
                    _cfg("ssc", tmp_path, n_time_bins=20, options={"channel_group": 7}),
                    _cfg("ssc", tmp_path, n_time_bins=21)):
        with pytest.raises(AssertionError, match="cache hit"):  # a changed parameter is never a hit
            build_data(changed)
    # a changed source file is never a hit either
    src = tmp_path / "SSC" / "ssc_test.h5"
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="cache hit"):
        build_data(cfg)
    monkeypatch.undo()
    other = build_data(_cfg("ssc", tmp_path, n_time_bins=20, options={"dt_ms": 5.0}))
    assert len(list((tmp_path / ".spike_cache").glob("*.npz"))) == n_entries + 3  # 3 splits, new dt_ms
    assert not np.array_equal(other.train.frames, first.train.frames)


@pytest.mark.parametrize("where", ["savez", "replace"])
def test_failure_mid_write_leaves_no_entry(tmp_path, monkeypatch, where):
    fx.write_dvs_gesture(tmp_path, users={"train": (1,), "test": (24,)}, lightings=("lab",))
    cfg = _cfg("dvs_gesture", tmp_path, n_time_bins=3)
    real_savez, real_replace = np.savez, os.replace

    def half_savez(f, **arrays):
        real_savez(f, **arrays)
        f.truncate(f.tell() // 2)  # half the file is on disk when the "disk fills up"
        raise OSError(28, "No space left on device")

    def bad_replace(src, dst):
        raise OSError(5, "I/O error")

    if where == "savez":
        monkeypatch.setattr(np, "savez", half_savez)
    else:
        monkeypatch.setattr(os, "replace", bad_replace)
    with pytest.raises(OSError):
        build_data(cfg)
    cache = tmp_path / ".spike_cache"
    assert not list(cache.glob("*.npz")) and not list(cache.glob("*.tmp"))  # nothing partial
    monkeypatch.setattr(np, "savez", real_savez)
    monkeypatch.setattr(os, "replace", real_replace)
    fresh = build_data(cfg)
    plain = build_data(DataConfig(name="dvs_gesture", root=str(tmp_path), n_time_bins=3, cache=False, options=OFF))
    np.testing.assert_array_equal(fresh.train.frames, plain.train.frames)
    assert len(list(cache.glob("*.npz"))) == 2


# --------------------------------------------------------------------------------------------------
# missing files, download failure, manual path
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("ssc", "SSC/ssc_valid.h5"),
    ("dvs_gesture", "DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy"),
    ("nmnist", "NMNIST/Test/<digit>/<NNNNN>.bin"),
    ("cifar10_dvs", "CIFAR10DVS/truck/<name>.aedat4"),
    ("ncaltech101", "NCALTECH101/Caltech101/<class>/image_<NNNN>.bin"),
])
def test_missing_folder_names_expected_files(tmp_path, name, expected):
    missing = tmp_path / "nowhere"
    with pytest.raises(D.DatasetNotFound) as err:
        build_data(_cfg(name, missing))
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert str(missing / expected) in msg and "download = false" in msg
    assert not missing.exists()  # nothing created when not downloading


def test_partial_dataset_says_what_is_missing(tmp_path):
    fx.write_ssc(tmp_path)
    (tmp_path / "SSC" / "ssc_valid.h5").unlink()
    with pytest.raises(D.DatasetNotFound) as err:
        build_data(_cfg("ssc", tmp_path))
    msg = str(err.value)
    assert f"missing file {tmp_path / 'SSC' / 'ssc_valid.h5'}" in msg
    assert msg.count("(present)") == 2  # train and test are there


def test_download_failure_is_one_clear_error(tmp_path, monkeypatch):
    def offline(self):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tonic.datasets.DVSGesture, "download", offline)
    with pytest.raises(D.DatasetNotFound) as err:
        build_data(_cfg("dvs_gesture", tmp_path, options={"download": True}))
    msg = str(err.value)
    assert "failed: OSError: network is unreachable" in msg
    assert str(tmp_path / "DVSGesture" / "ibmGestureTest" / "user<NN>_<lighting>" / "<label>.npy") in msg


def test_manual_path_without_archives(tmp_path, monkeypatch):
    written = fx.write_dvs_gesture(tmp_path, users={"train": (3,), "test": (27,)}, lightings=("led",))
    for archive in (tmp_path / "DVSGesture").glob("*.tar.gz"):
        archive.unlink()

    def offline(self):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tonic.datasets.DVSGesture, "download", offline)
    with pytest.raises(OSError):  # tonic alone wants the archive and >= 100 files: it downloads
        tonic.datasets.DVSGesture(str(tmp_path), train=True)
    folder = tmp_path / "DVSGesture"
    direct = build_data(_cfg("dvs_gesture", folder, n_time_bins=2, options={"download": True}))
    parent = build_data(_cfg("dvs_gesture", tmp_path, n_time_bins=2, options={"download": True}))
    np.testing.assert_array_equal(direct.train.frames, parent.train.frames)
    want = [written["train"][k] for k in sorted(written["train"])]
    _check_vision(direct.train, want, (128, 128, 2), (32, 32), 2)
    assert D.locate("dvs_gesture", folder, download=False) == folder


def test_inner_archives_are_extracted(tmp_path):
    import zipfile

    written = write_ncaltech101(tmp_path, per_class=2)
    base = tmp_path / "NCALTECH101"
    with zipfile.ZipFile(base / "Caltech101.zip", "w") as z:
        for f in sorted((base / "Caltech101").rglob("*.bin")):
            z.write(f, f.relative_to(base).as_posix())
    shutil.rmtree(base / "Caltech101")
    assert D.locate("ncaltech101", tmp_path, download=False) == base
    assert len(list((base / "Caltech101").rglob("*.bin"))) == len(written)


# --------------------------------------------------------------------------------------------------
# bad files: one error naming the file and the problem, and no cache entry
# --------------------------------------------------------------------------------------------------


def test_truncated_nmnist_file(tmp_path):
    written = fx.write_nmnist(tmp_path, per_class=1)
    bad = tmp_path / sorted(written["test"])[3]
    bad.write_bytes(bad.read_bytes()[:-2])
    with pytest.raises(D.DatasetFormatError, match=rf"{bad}.*not a multiple of 5.*truncated"):
        build_data(_cfg("nmnist", tmp_path))
    assert not list((tmp_path / ".spike_cache").glob("nmnist-test-*.npz"))


def test_gesture_event_outside_sensor(tmp_path):
    fx.write_dvs_gesture(tmp_path, users={"train": (1,), "test": (24,)}, lightings=("lab",))
    bad = tmp_path / "DVSGesture" / "ibmGestureTest" / "user24_lab" / "5.npy"
    cols = np.load(bad)
    cols[7, 0] = 131  # x
    np.save(bad, cols)
    with pytest.raises(D.DatasetFormatError, match=rf"{bad}: x outside the sensor"):
        build_data(_cfg("dvs_gesture", tmp_path))


def test_corrupt_hdf5(tmp_path):
    fx.write_ssc(tmp_path)
    bad = tmp_path / "SSC" / "ssc_test.h5"
    bad.write_bytes(bad.read_bytes()[:300])
    with pytest.raises(D.DatasetFormatError, match=str(bad)):
        build_data(_cfg("ssc", tmp_path))


# --------------------------------------------------------------------------------------------------
# validation split carved from an official train split
# --------------------------------------------------------------------------------------------------


def test_val_fraction_is_fixed_recorded_and_not_carved_twice(root, written):
    cfg = _cfg("dvs_gesture", root, n_time_bins=2, val_fraction=0.2)
    b = build_data(cfg)
    full = build_data(_cfg("dvs_gesture", root, n_time_bins=2))
    tr, va = b.train.indices, b.val.indices
    assert not set(tr) & set(va) and sorted([*tr, *va]) == list(range(len(full.train)))
    assert np.bincount(b.val.labels).tolist() == [2] * 11  # 20 % of the 10 samples per class
    np.testing.assert_array_equal(b.val.frames, full.train.frames[va])
    assert split_validation(b, cfg.val_fraction, seed=123) == (b, b.val)  # run seed does not re-split
    rec = json.loads(next((root / ".spike_cache").glob("dvs_gesture-splits-*.json")).read_text())
    assert rec["indices"]["val"] == va.tolist() and rec["files"]["val"][0].startswith("ibmGestureTrain/user")
    assert build_data(cfg).val.indices.tolist() == va.tolist()


def test_config_errors(root, written):
    with pytest.raises(ConfigError, match="official validation split"):
        build_data(_cfg("ssc", root, val_fraction=0.1))
    with pytest.raises(ConfigError, match=r"split = \[train, val, test\]"):
        build_data(_cfg("cifar10_dvs", root, val_fraction=0.1))
    with pytest.raises(ConfigError, match="unknown key"):
        build_data(_cfg("nmnist", root, options={"sise": 10}))
    with pytest.raises(ConfigError, match="larger than the sensor"):
        build_data(_cfg("nmnist", root, options={"size": 64}))
    with pytest.raises(ConfigError, match="summing to 1"):
        build_data(_cfg("ncaltech101", root, options={"split": [0.5, 0.2, 0.2]}))


# --------------------------------------------------------------------------------------------------
# SHD/SSC transforms, helpers
# --------------------------------------------------------------------------------------------------


def test_channel_downsample_and_time_bin(written):
    ev = written["SHD"]["train"][0].events
    before = ev.copy()
    down = ChannelDownsample(5)(ev)
    np.testing.assert_array_equal(ev, before)  # input untouched
    assert down["x"].tolist() == (ev["x"] // 5).tolist() and ChannelDownsample(5).sensor_size == (140, 1, 1)
    assert np.array_equal(down["t"], ev["t"])
    # summing groups: time-binned counts of grouped channels == grouping the channels of full counts
    full = TimeBin(50, 20.0)(ev)  # [50, 700]
    grouped = TimeBin(50, 20.0, channel_group=5)(ev)  # [50, 140]
    np.testing.assert_array_equal(grouped, full.reshape(50, 140, 5).sum(-1))  # [T, 140, 5] -> [T, 140]
    assert full.sum() == len(ev)  # fixture spikes lie in [0, 1 s) = 50 bins of 20 ms
    tf = tonic.transforms.ToFrame(sensor_size=(140, 1, 1), time_window=1e6, start_time=0, end_time=1e6)
    np.testing.assert_array_equal(tf(down).reshape(-1, 140).sum(0), grouped.sum(0))  # tonic framing agrees
    bad = ev.copy()
    bad["x"][0] = 700
    with pytest.raises(EventError, match="outside"):
        TimeBin(10)(bad)
    with pytest.raises(ValueError):
        downsample_channels(ev, 3)


def test_stratified_split_properties():
    labels = np.repeat(np.arange(4), [10, 7, 3, 1])
    s = D.stratified_split(labels, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    assert sorted(np.concatenate(list(s.values())).tolist()) == list(range(len(labels)))
    assert np.bincount(labels[s["test"]], minlength=4).tolist() == [1, 1, 0, 0]  # round(0.1 * n) per class
    assert all(np.array_equal(s[k], D.stratified_split(labels, {"train": 0.8, "val": 0.1, "test": 0.1}, 3)[k])
               for k in s)


def test_time_cached_load(tmp_path):
    fx.write_ssc(tmp_path)
    t = D.time_cached_load(_cfg("ssc", tmp_path, n_time_bins=10))
    assert t.first_was_miss and t.identical and t.n_train == 3 and t.cache_bytes > 0
    assert t.first_s > 0 and t.second_s > 0 and t.speedup > 0
    assert not (tmp_path / ".spike_cache").exists()  # a temporary cache by default


# --------------------------------------------------------------------------------------------------
# real recordings (../shared/data)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED


@pytest.mark.shared_data
def test_real_nmnist_files_in_tonic_layout(shared_data, tmp_path):
    """Real N-MNIST recordings (SLAYER's NMNISTsmall .bs2 = N-MNIST .bin) linked into tonic's layout;
    frames equal an independent decode by spike.io.read_nmnist."""
    from spike.io import read_nmnist

    small = shared_data / "slayerPytorch" / "NMNISTsmall"
    want = {}
    for listing, sub, n in (("train1K.txt", "Train", 12), ("test100.txt", "Test", 6)):
        rows = np.loadtxt(small / listing, dtype=np.int64, comments="#", ndmin=2)[:n]
        for sample, label in rows:
            d = tmp_path / "NMNIST" / sub / str(label)
            d.mkdir(parents=True, exist_ok=True)
            os.symlink(small / f"{sample}.bs2", d / f"{sample:05d}.bin")
            want[f"{sub}/{label}/{sample:05d}.bin"] = (small / f"{sample}.bs2", int(label))
    b = build_data(DataConfig(name="nmnist", root=str(tmp_path), n_time_bins=5, cache=False, options=OFF))
    for sub, part in (("Train", b.train), ("Test", b.test)):
        keys = sorted(k for k in want if k.startswith(sub))
        assert part.labels.tolist() == [want[k][1] for k in keys]
        for f, k in zip(part.frames, keys):
            ev = read_nmnist(want[k][0]).events
            np.testing.assert_array_equal(f, ref_frames(ev, (34, 34, 2), (34, 34), 5))
            assert f.sum() == len(ev) > 1000


@pytest.mark.shared_data
def test_real_aedat4_of_the_wrong_sensor_is_named(shared_data, tmp_path):
    """A real DVXplorer (320 x 240) AEDAT4 recording where CIFAR10-DVS (128 x 128) is expected."""
    real = shared_data / "tonic" / "sample.aedat4"
    for cls in D._CIFAR_CLASSES:
        (tmp_path / "CIFAR10DVS" / cls).mkdir(parents=True)
        os.symlink(real, tmp_path / "CIFAR10DVS" / cls / "a.aedat4")
    with pytest.raises(D.DatasetFormatError, match=r"airplane/a\.aedat4: x outside the sensor.*\(128, 128, 2\)"):
        build_data(DataConfig(name="cifar10_dvs", root=str(tmp_path), n_time_bins=2, cache=False, options=OFF))


@pytest.mark.parametrize("config", ["dvs_gesture_sew.toml", "dvs_gesture_maxformer.toml", "cifar10_dvs_maxformer.toml"])
def test_deep_recipes_train_end_to_end_on_fixtures(root, written, config, tmp_path):
    """The deep-network recipes (their networks as configured) run ``spike train``'s whole path on the
    format-exact fixtures: one epoch, test evaluated, checkpoint and metrics written (the fixtures hold one
    or two recordings per class, too few for a validation split: the last epoch is the selected one)."""
    import json as _json

    from spike.core.config import load_config
    from spike.train.recipe import train_from_config

    options = {**load_config(REPO / "configs" / config).data.options, **OFF}  # the recipe's, no download
    # the recipes' networks as configured, on smaller frames and fewer training recordings: CI stays short
    options["size"] = [32, 32]
    if "split" in options:  # CIFAR10-DVS (80 fixture recordings): train on 16 of them
        options["split"] = [0.2, 0.4, 0.4]
    cfg = load_config(REPO / "configs" / config, {
        "data.root": str(root), "data.n_time_bins": 2, "data.batch_size": 2, "data.eval_batch_size": 4,
        "data.options": options, "data.cache": False, "data.val_fraction": 0.0, "train.select": "last",
        "train.epochs": 1, "run.out_dir": str(tmp_path), "run.progress": False, "run.plots": False})
    m = train_from_config(cfg, device="cpu")
    assert 0.0 <= m["test_accuracy"] <= 1.0 and m["epochs"] == 1 and m["selected_by"].startswith("last epoch")
    run = Path(m["run_dir"])
    assert (run / "last.pt").is_file()
    assert _json.loads((run / "metrics.json").read_text())["test_accuracy"] == m["test_accuracy"]
