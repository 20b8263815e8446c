"""write_events: round trips of every real recording through every writer, read back by our
readers and by independent ones (faery, aedat, tonic, h5py, numpy), atomic writes, bad input."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from spike.core.events import EVENT_DTYPE, EventError
from spike.io import EventFileError, WRITE_FORMATS, read_events, read_metadata, write_events

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "data"

RECORDINGS = ["tonic/sample.aedat4", "aestream/davis.aedat4", "aedat_pypi/test_data.aedat4",
              "tonic/sample_nmnist.bin", "tonic/sample_ncars.dat",
              "expelliarmus/NCARS_obj_004397_td.dat", "expelliarmus/evt2_sample.raw",
              "expelliarmus/sparklers.raw", "expelliarmus/evt3_sample.raw",
              "expelliarmus/evt3_test_pedestrians.raw", "faery_pypi/evt3.raw",
              "faery_pypi/gen4.dat", "slayerPytorch/NTIDIGITS_1.bs1",
              "slayerPytorch/binarySpikeTestFiles/1.bs2"]
EXT = {"aedat4": ".aedat4", "evt2": ".raw", "evt3": ".raw", "dat": ".dat", "hdf5": ".h5",
       "npz": ".npz"}


def _load_fixtures():
    spec = importlib.util.spec_from_file_location("spike_dataset_fixtures",
                                                  REPO / "datasets" / "fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fixtures = _load_fixtures()


@pytest.fixture(scope="module")
def data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("real recordings not available (../shared/data is absent)")
    return SHARED.resolve()


@pytest.fixture(scope="module")
def recordings(data):
    return {rel: read_events(data / rel) for rel in RECORDINGS}


def _same(a, b: np.ndarray, fields="xytp") -> None:
    for f in fields:
        assert len(a[f]) == len(b), f
        np.testing.assert_array_equal(np.asarray(a[f], np.int64), np.asarray(b[f], np.int64),
                                      err_msg=f)


@pytest.mark.shared_data
@pytest.mark.parametrize("fmt", WRITE_FORMATS)
@pytest.mark.parametrize("rel", RECORDINGS)
def test_every_recording_round_trips_through_every_writer(recordings, tmp_path, rel, fmt):
    events, size = recordings[rel]
    out = tmp_path / f"rec{EXT[fmt]}"
    assert write_events(out, events, size, format=fmt) == out
    back, back_size = read_events(out, format=fmt)
    assert back.dtype == EVENT_DTYPE
    _same(back, events)  # t identical: every format stores microseconds
    assert back_size == size
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary left


# --------------------------------------------------------------------------------------------
# independent readers


def _faery(path: Path) -> np.ndarray:
    faery = pytest.importorskip("faery")
    chunks = list(faery.events_stream_from_file(path))
    return np.concatenate(chunks) if chunks else np.empty(0, faery.EVENTS_DTYPE)


def _rename_on(a: np.ndarray) -> dict:
    return {"x": a["x"], "y": a["y"], "t": a["t"], "p": a["on"]}


@pytest.mark.shared_data
@pytest.mark.parametrize("rel", ["aestream/davis.aedat4", "expelliarmus/evt3_sample.raw",
                                 "tonic/sample_ncars.dat"])
@pytest.mark.parametrize("fmt", ["aedat4", "evt2", "evt3", "dat"])
def test_camera_files_we_write_are_read_identically_by_faery(recordings, tmp_path, rel, fmt):
    events, size = recordings[rel]
    out = write_events(tmp_path / f"a{EXT[fmt]}", events, size, format=fmt)
    theirs = _faery(out)
    _same(_rename_on(theirs), events)


@pytest.mark.shared_data
def test_aedat4_we_write_is_read_identically_by_aedat_and_tonic(recordings, tmp_path):
    aedat = pytest.importorskip("aedat")
    events, size = recordings["aestream/davis.aedat4"]
    out = write_events(tmp_path / "davis.aedat4", events, size)
    dec = aedat.Decoder(str(out))
    streams = dec.id_to_stream()
    assert streams[0]["type"] == "events"
    assert (streams[0]["width"], streams[0]["height"]) == (346, 260)
    raw = np.concatenate([pk["events"] for pk in dec if "events" in pk])
    _same(_rename_on(raw), events)
    tonic_io = pytest.importorskip("tonic.io")
    _same(_rename_on(tonic_io.read_aedat4(str(out))), events)


@pytest.mark.shared_data
def test_hdf5_and_npz_layouts_read_with_plain_h5py_and_numpy(recordings, tmp_path):
    h5py = pytest.importorskip("h5py")
    events, size = recordings["aestream/davis.aedat4"]
    h5 = write_events(tmp_path / "a.h5", events, size, metadata={"camera": "DAVIS346"})
    with h5py.File(h5, "r") as f:
        assert list(f.attrs["sensor_size"]) == [346, 260, 2]
        meta = json.loads(f.attrs["metadata"])
        assert meta["camera"] == "DAVIS346" and meta["t_unit"] == "us"
        for k in "xytp":
            assert f["events"][k].compression is None  # no filter plugin needed
        _same({k: f["events"][k][()] for k in "xytp"}, events)
    npz = write_events(tmp_path / "a.npz", events, size, metadata={"camera": "DAVIS346"})
    with np.load(npz, allow_pickle=False) as z:
        assert z["sensor_size"].tolist() == [346, 260, 2]
        assert json.loads(str(z["metadata"]))["camera"] == "DAVIS346"
        _same({k: z[k] for k in "xytp"}, events)
    assert read_metadata(npz)["camera"] == read_metadata(h5)["camera"] == "DAVIS346"


@pytest.mark.shared_data
def test_npz_keeps_the_sensor_size_that_np_save_loses(recordings, tmp_path):
    events, size = recordings["aestream/davis.aedat4"]
    events = events[(events["x"] < 344) & (events["y"] < 244)]  # a crop, as in the report
    np.save(tmp_path / "a.npy", events)
    inferred = read_events(tmp_path / "a.npy").sensor_size
    assert inferred == (344, 244, 2) != size  # .npy has no sensor size: the data's bounding box
    assert inferred == (events["x"].max() + 1, events["y"].max() + 1, 2)
    write_events(tmp_path / "a.npz", events, size)
    assert read_events(tmp_path / "a.npz").sensor_size == (346, 260, 2)


def test_npz_and_hdf5_keep_signed_polarity_and_any_p(tmp_path):
    ev = fixtures._events([0, 1, 2], [0, 0, 1], [-5, 0, 7], [-1, 1, -1])
    for name in ("a.npz", "a.h5"):
        write_events(tmp_path / name, ev, (3, 2, 2))
        back, size = read_events(tmp_path / name)
        _same(back, ev)
        assert size == (3, 2, 2)
    ev3 = fixtures._events([0, 1], [0, 0], [0, 1], [0, 4])
    write_events(tmp_path / "b.npz", ev3, (2, 1, 5))
    assert read_events(tmp_path / "b.npz").sensor_size == (2, 1, 5)


def test_camera_writers_store_two_polarities(tmp_path):
    ev = fixtures._events([0, 1, 2], [0, 0, 1], [0, 3, 7], [-1, 1, -1])
    for fmt in ("aedat4", "evt2", "evt3", "dat"):
        out = write_events(tmp_path / f"a{EXT[fmt]}", ev, (3, 2, 2), format=fmt)
        back, _ = read_events(out, format=fmt)
        np.testing.assert_array_equal(back["p"], [0, 1, 0])  # -1 = OFF
        _same(back, ev, "xyt")


def test_camera_writers_keep_gaps_and_evt3_time_loops(tmp_path):
    # 40 s with 9 s gaps: EVT3's 24-bit clock loops twice, EVT2's TIME_HIGH steps, DAT's not.
    t = np.array([5, 6, 9_000_000, 9_000_001, 18_000_000, 27_000_000, 40_000_000, 40_000_000])
    ev = fixtures._events(np.arange(8) % 4, np.arange(8) % 3, t, np.arange(8) % 2)
    for fmt in ("evt2", "evt3", "dat", "aedat4"):
        out = write_events(tmp_path / f"g{EXT[fmt]}", ev, (4, 3, 2), format=fmt)
        back, _ = read_events(out, format=fmt)
        _same(back, ev)


def test_empty_recording_round_trips(tmp_path):
    ev = np.empty(0, EVENT_DTYPE)
    for fmt in WRITE_FORMATS:
        out = write_events(tmp_path / f"e{EXT[fmt]}", ev, (8, 4, 2), format=fmt)
        back, size = read_events(out, format=fmt)
        assert len(back) == 0 and size == (8, 4, 2)


# --------------------------------------------------------------------------------------------
# atomic writes and bad input


def _ev(n=50):
    return fixtures.random_events(np.random.default_rng(0), n, (16, 12, 2), 10_000)


@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_failure_mid_write_leaves_nothing_and_keeps_the_old_file(tmp_path, monkeypatch, fmt):
    import spike.io.aedat4
    import spike.io.arrays
    import spike.io.prophesee

    target = {"aedat4": (spike.io.aedat4, "_write_aedat4"), "evt2": (spike.io.prophesee,
              "_write_evt"), "evt3": (spike.io.prophesee, "_write_evt"),
              "dat": (spike.io.prophesee, "_write_dat"), "hdf5": (spike.io.arrays, "_write_hdf5"),
              "npz": (spike.io.arrays, "_write_npz")}[fmt]
    real = getattr(*target)

    def half_then_fail(tmp, *args, **kwargs):
        real(tmp, *args, **kwargs)
        with open(tmp, "r+b") as fh:
            fh.truncate(fh.seek(0, 2) // 2)
        raise KeyboardInterrupt  # even an interrupt leaves nothing half-written

    monkeypatch.setattr(*target, half_then_fail)
    out = tmp_path / f"r{EXT[fmt]}"
    with pytest.raises(KeyboardInterrupt):
        write_events(out, _ev(), (16, 12, 2), format=fmt)
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        write_events(out, _ev(), (16, 12, 2), format=fmt)
    assert out.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1


def test_encoder_errors_become_our_error_naming_the_file(tmp_path, monkeypatch):
    pytest.importorskip("faery")
    from faery.extension import evt

    class Broken:
        def __init__(self, *a, **k):
            raise RuntimeError("disk on fire")

    monkeypatch.setattr(evt, "Encoder", Broken)
    out = tmp_path / "a.raw"
    with pytest.raises(EventFileError, match=re.escape(str(out)) + ": faery's EVT3 encoder "
                                                                   "failed: disk on fire"):
        write_events(out, _ev(), (16, 12, 2))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("events, size, fmt, pattern", [
    (fixtures._events([3], [0], [1], [0]), (2, 2, 2), "npz", r"events: x outside the sensor"),
    (fixtures._events([0, 0], [0, 0], [5, 1], [0, 0]), (2, 2, 2), "evt3", r"not sorted"),
    (fixtures._events([0], [0], [-1], [0]), (2, 2, 2), "dat", r"DAT stores non-negative times"),
    (fixtures._events([0], [0], [1], [0]), (4096, 2, 2), "evt3", r"below 2048"),
    (fixtures._events([0], [0], [1], [2]), (2, 2, 3), "aedat4", r"stores 2 polarities"),
    (fixtures._events([0, 0], [0, 0], [0, 2**31 + 5], [0, 0]), (2, 2, 2), "dat", r"gap"),
    (np.zeros(2, [("x", "i8"), ("y", "i8"), ("t", "f8"), ("p", "i8")]), (2, 2, 2), "npz",
     r"field 't' has dtype float64"),
    (np.zeros(2, [("x", "i8"), ("t", "i8"), ("p", "i8")]), (2, 2, 2), "npz", r"missing .*'y'"),
    (np.zeros((2, 4), np.int64), (2, 2, 2), "npz", r"structured numpy array"),
    (fixtures._events([0], [0], [1], [0]), (0, 2, 2), "npz", r"three positive integers"),
])
def test_bad_input_is_one_error_and_nothing_is_written(tmp_path, events, size, fmt, pattern):
    out = tmp_path / f"x{EXT[fmt]}"
    with pytest.raises(EventError, match=pattern):
        write_events(out, events, size, format=fmt)
    assert list(tmp_path.iterdir()) == []


def test_bad_paths_formats_and_metadata(tmp_path):
    ev = _ev()
    with pytest.raises(EventFileError, match=r"x\.csv: cannot tell the format"):
        write_events(tmp_path / "x.csv", ev, (16, 12, 2))
    with pytest.raises(EventFileError, match=r"unknown format 'csv'"):
        write_events(tmp_path / "x.npz", ev, (16, 12, 2), format="csv")
    with pytest.raises(EventFileError, match=r"does not exist"):
        write_events(tmp_path / "nope" / "x.npz", ev, (16, 12, 2))
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(EventFileError, match=r"d\.npz: is a directory"):
        write_events(tmp_path / "d.npz", ev, (16, 12, 2))
    with pytest.raises(EventFileError, match=r"metadata must be JSON-serialisable"):
        write_events(tmp_path / "m.npz", ev, (16, 12, 2), metadata={"a": object()})
    assert [p.name for p in tmp_path.iterdir()] == ["d.npz"]


# --------------------------------------------------------------------------------------------
# EventWriter: chunk-by-chunk writing


def _stream(n=200_000, w=346, h=260, seed=0, p_signed=False):
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 3_000_000, n))
    ev["x"], ev["y"] = rng.integers(0, w, n), rng.integers(0, h, n)
    ev["p"] = rng.random(n) < 0.5
    return ev


def _chunks(ev, seed=1):
    """Uneven chunks, some empty, some cutting runs of equal timestamps."""
    cuts = np.sort(np.random.default_rng(seed).integers(0, len(ev), 40))
    return np.split(ev, cuts)


@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_event_writer_file_equals_the_one_shot_file(tmp_path, fmt):
    import zipfile

    from spike.io.writers import EventWriter

    ev = _stream()
    one = write_events(tmp_path / f"one{EXT[fmt]}", ev, (346, 260, 2), format=fmt,
                       metadata={"k": 1})
    chunks = _chunks(ev)
    assert any(len(c) == 0 for c in chunks) or len(chunks) > 30
    with EventWriter(tmp_path / f"inc{EXT[fmt]}", (346, 260, 2), format=fmt, metadata={"k": 1}) as w:
        for c in chunks:
            w.write(c)
    inc = tmp_path / f"inc{EXT[fmt]}"
    assert w.count == len(ev)
    if fmt == "npz":  # np.savez stamps the clock into the zip headers: compare every member
        with zipfile.ZipFile(one) as a, zipfile.ZipFile(inc) as b:
            assert a.namelist() == b.namelist()
            for name in a.namelist():
                assert a.read(name) == b.read(name), name
    else:
        assert one.read_bytes() == inc.read_bytes()
    back, size = read_events(inc, format=fmt)
    _same(back, ev)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([one.name, inc.name])


@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_event_writer_empty_stream_equals_one_shot(tmp_path, fmt):
    from spike.io.writers import EventWriter

    one = write_events(tmp_path / f"one{EXT[fmt]}", _stream(0), (16, 12, 2), format=fmt)
    with EventWriter(tmp_path / f"inc{EXT[fmt]}", (16, 12, 2), format=fmt) as w:
        w.write(_stream(0))
    back, size = read_events(tmp_path / f"inc{EXT[fmt]}", format=fmt)
    assert len(back) == 0 and size[:2] == (16, 12)
    if fmt != "npz":
        assert one.read_bytes() == (tmp_path / f"inc{EXT[fmt]}").read_bytes()


@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_event_writer_failure_leaves_nothing_and_keeps_the_old_file(tmp_path, fmt):
    from spike.io.writers import EventWriter

    out = tmp_path / f"x{EXT[fmt]}"
    out.write_bytes(b"old")
    ev = _stream(5000)
    # an exception in the with block
    with pytest.raises(RuntimeError, match="boom"):
        with EventWriter(out, (346, 260, 2), format=fmt) as w:
            w.write(ev[:2000])
            raise RuntimeError("boom")
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [out.name]
    # a chunk that starts before the previous one ended: one clear error, writer aborted
    w = EventWriter(out, (346, 260, 2), format=fmt)
    w.write(ev[2000:3000])
    with pytest.raises(EventError, match=r"chunk at event 1000: starts at t=.*before the previous"):
        w.write(ev[:10])
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [out.name]
    with pytest.raises(EventFileError, match="after close"):
        w.write(ev[3000:])
    # an event outside the sensor, in a later chunk
    bad = ev[3000:3100].copy()
    bad["x"][50] = 346
    with pytest.raises(EventError, match=r"x\.\w+"):
        with EventWriter(out, (346, 260, 2), format=fmt) as w:
            w.write(ev[:3000])
            w.write(bad)
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [out.name]


def test_event_writer_checks_the_target_up_front(tmp_path):
    from spike.io.writers import EventWriter

    with pytest.raises(EventFileError, match=r"x\.csv: cannot tell the format"):
        EventWriter(tmp_path / "x.csv", (16, 12, 2))
    with pytest.raises(EventFileError, match=r"below 2048"):
        EventWriter(tmp_path / "x.raw", (4096, 12, 2))
    with pytest.raises(EventFileError, match=r"metadata must be a dict"):
        EventWriter(tmp_path / "x.h5", (16, 12, 2), metadata=[1])
    assert list(tmp_path.iterdir()) == []


def test_event_writer_memory_does_not_grow_with_the_stream(tmp_path):
    import tracemalloc

    from spike.io.writers import EventWriter

    chunk = _stream(20_000)
    span = int(chunk["t"][-1]) + 1

    def peak(n_chunks, fmt):
        tracemalloc.start()
        try:
            with EventWriter(tmp_path / f"m{EXT[fmt]}", (346, 260, 2), format=fmt) as w:
                for i in range(n_chunks):
                    c = chunk.copy()
                    c["t"] += i * span
                    w.write(c)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    for fmt in ("evt3", "aedat4", "hdf5", "npz"):
        small, large = peak(5, fmt), peak(40, fmt)  # 100k vs 800k events (25.6 MB as int64 fields)
        assert large < 1.5 * small + 2_000_000, (fmt, small, large)
        assert large < 32 * 20_000 * 8, (fmt, large)  # less than 8 chunks held at once
