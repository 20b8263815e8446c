"""datasets/fixtures.py: tonic's own dataset classes load the tiny fixtures, with no network."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spike.io import read_nmnist

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "datasets" / "fixtures.py"


def _load_fixtures():
    spec = importlib.util.spec_from_file_location("spike_dataset_fixtures", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fixtures = _load_fixtures()
tonic_datasets = pytest.importorskip("tonic.datasets")


def _same(got: np.ndarray, want: np.ndarray) -> None:
    """Every field tonic returns equals what the fixture wrote."""
    assert len(got) == len(want)
    for f in got.dtype.names:
        np.testing.assert_array_equal(got[f], want[f], err_msg=f)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="module")
def written(root) -> dict:
    return fixtures.write_all(root)


@pytest.mark.parametrize("train", [True, False])
def test_shd_loads_with_unmodified_tonic(root, written, train):
    ds = tonic_datasets.SHD(str(root), train=train)
    want = written["SHD"]["train" if train else "test"]
    assert len(ds) == len(want)
    assert [k.decode() for k in ds.classes] == list(fixtures.SHD_KEYS)
    assert ds.speaker.shape == (len(want),)
    for i, sample in enumerate(want):
        events, target = ds[i]
        assert events.dtype.names == ("t", "x", "p")
        _same(events, sample.events)
        assert target == sample.target
        assert np.all(np.diff(events["t"]) >= 0) and events["x"].max() < 700


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_ssc_loads_with_unmodified_tonic(root, written, split):
    ds = tonic_datasets.SSC(str(root), split=split)
    want = written["SSC"][split]
    assert len(ds) == len(want)
    assert len(ds.classes) == 35
    for i, sample in enumerate(want):
        events, target = ds[i]
        _same(events, sample.events)
        assert target == sample.target


@pytest.mark.parametrize("train", [True, False])
def test_dvs_gesture_loads_with_unmodified_tonic(root, written, train):
    ds = tonic_datasets.DVSGesture(str(root), train=train)
    want = written["DVSGesture"]["train" if train else "test"]
    assert len(ds) == len(want) == 110
    assert sorted(set(ds.users)) == ([1, 2] if train else [24, 25])
    assert set(ds.lighting) == set(fixtures.GESTURE_LIGHTINGS)
    for i in range(len(ds)):
        sample = want[os.path.relpath(ds.data[i], root)]
        events, target = ds[i]
        _same(events, sample.events)  # t comes back in us (stored in ms)
        assert target == sample.target
        assert events["t"].max() < 6_000_000 and events["x"].max() < 128


@pytest.mark.parametrize("train", [True, False])
def test_nmnist_loads_inside_tonic_offline(root, written, train):
    with fixtures.tonic_offline(tonic_datasets.NMNIST):
        ds = tonic_datasets.NMNIST(str(root), train=train)
    want = written["NMNIST"]["train" if train else "test"]
    assert len(ds) == len(want) == 20
    assert sorted(ds.targets) == sorted(s.target for s in want.values())
    for i in range(len(ds)):
        sample = want[os.path.relpath(ds.data[i], root)]
        events, target = ds[i]
        _same(events, sample.events)
        assert target == sample.target
        # Our reader agrees with tonic's on the same file.
        np.testing.assert_array_equal(read_nmnist(ds.data[i], sensor_size=(34, 34, 2)).events,
                                      sample.events)


def test_tonic_offline_refuses_to_download(tmp_path):
    # No files at all: tonic would reach for the network; inside tonic_offline it raises instead.
    with fixtures.tonic_offline(tonic_datasets.NMNIST, tonic_datasets.SHD):
        with pytest.raises(RuntimeError, match="fixture incomplete"):
            tonic_datasets.NMNIST(str(tmp_path), train=True)
        with pytest.raises(RuntimeError, match="fixture incomplete"):
            tonic_datasets.SHD(str(tmp_path), train=True)
    # The patch is gone afterwards.
    assert "download" not in vars(tonic_datasets.NMNIST)


def test_the_minimum_count_is_what_makes_nmnist_need_tonic_offline(root, written):
    with fixtures.tonic_offline(tonic_datasets.NMNIST):
        ds = tonic_datasets.NMNIST(str(root), train=True)
        assert ds._check_exists()
    assert ds._is_file_present()  # the empty placeholder archive is enough (never hashed)
    assert not ds._check_exists()  # but tonic wants >= 10000 .bin files, the fixture has 20


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


def test_script_entry_point_is_deterministic(tmp_path):
    for out in ("a", "b"):
        res = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / out)],
                             capture_output=True, text=True, check=True)
        assert "NMNIST" in res.stdout
    for name in ("SHD", "SSC", "DVSGesture", "NMNIST"):
        assert (tmp_path / "a" / name).is_dir()
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    bad = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


@pytest.mark.parametrize("field, value", [("y", 240), ("x", 256), ("t", 1 << 23), ("p", 2)])
def test_encode_40bit_rejects_values_that_do_not_fit(field, value):
    ev = fixtures._events([1], [1], [1], [1])
    ev[field] = value
    with pytest.raises(ValueError):
        fixtures.encode_40bit(ev)
