"""Event-file readers: real recordings from ../shared/data, hand-built streams, and bad input."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from spike.core.events import EVENT_DTYPE, EventError, validate_events
from spike.io import (
    EventFileError,
    EventFileNotFoundError,
    Recording,
    decode_40bit,
    decode_dat,
    decode_evt2,
    decode_evt3,
    detect_format,
    read_aedat4,
    read_bs1,
    read_dat,
    read_events,
    read_evt2,
    read_evt3,
    read_nmnist,
    read_npy,
)

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "data"


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


# --------------------------------------------------------------------------------------------
# Real recordings. Counts, sensor sizes and durations from shared/data/MANIFEST.txt and
# VERIFY_LOG.txt; sizes of header-less formats are the coordinate ranges listed there.

GESTURE_COUNTS = [63471, 84260, 113063, 151879, 181179, 124244, 159617, 101288, 141773, 85936]
REAL = [
    # path, format, events, sensor_size, duration in s
    ("tonic/sample.aedat4", "aedat4", 111_954, (320, 240, 2), 0.590),
    ("aestream/davis.aedat4", "aedat4", 117_667, (346, 260, 2), 0.130),
    ("aedat_pypi/test_data.aedat4", "aedat4", 78_830, (346, 260, 2), 2.360),
    ("tonic/sample_nmnist.bin", "nmnist", 4_325, (34, 34, 2), 0.311),
    ("tonic/sample_ncars.dat", "dat", 2_009, (78, 42, 2), 0.100),
    ("expelliarmus/NCARS_obj_004397_td.dat", "dat", 4_407, (54, 61, 2), 0.100),
    ("expelliarmus/evt2_sample.raw", "evt2", 539_481, (640, 480, 2), 0.050),
    ("expelliarmus/sparklers.raw", "evt2", 521_252, (640, 480, 2), 0.096),
    ("expelliarmus/evt3_sample.raw", "evt3", 219_596, (1280, 720, 2), 0.0088),
    ("expelliarmus/evt3_test_pedestrians.raw", "evt3", 5_000, (1280, 720, 2), 0.045),
    ("faery_pypi/evt3.raw", "evt3", 1_218_618, (1280, 720, 2), 10.768),
    ("faery_pypi/gen4.dat", "dat", 1_218_618, (1280, 720, 2), 10.768),
    ("slayerPytorch/NTIDIGITS_1.bs1", "bs1", 898, (64, 1, 2), 1.079),
] + [(f"slayerPytorch/binarySpikeTestFiles/{i + 1}.bs2", "nmnist", n, (128, 128, 2), 1.450)
     for i, n in enumerate(GESTURE_COUNTS)]


@pytest.mark.shared_data
@pytest.mark.parametrize("rel, fmt, count, size, duration", REAL, ids=[r[0] for r in REAL])
def test_real_recording_counts_sizes_and_durations(data, rel, fmt, count, size, duration):
    path = data / rel
    assert detect_format(path) == fmt
    rec = read_events(path)
    assert isinstance(rec, Recording)
    events, sensor_size = rec
    assert events.dtype == EVENT_DTYPE
    assert len(events) == count
    assert sensor_size == size
    assert np.all(np.diff(events["t"]) >= 0)
    assert set(np.unique(events["p"])) <= {0, 1}
    # The duration catches time-decoding bugs (expelliarmus' EVT3 gives 2x too long here).
    span = (events["t"][-1] - events["t"][0]) / 1e6
    assert span == pytest.approx(duration, rel=0.01, abs=1.5e-3)


@pytest.mark.shared_data
def test_aedat4_reproduces_reference_sha3_digests(data):
    ref = json.loads((data / "aedat_pypi" / "reference_digests.json").read_text())
    events, size = read_aedat4(data / "aedat_pypi" / "test_data.aedat4")
    assert size == (ref["sensor"]["width"], ref["sensor"]["height"], 2)
    assert len(events) == ref["event_count"]
    # Field layout of the reference: t 8-byte, x/y 2-byte unsigned, on 1 byte, little-endian.
    layout = {"t": ("t", "<u8"), "x": ("x", "<u2"), "y": ("y", "<u2"), "on": ("p", "u1")}
    for name, (field, dt) in layout.items():
        digest = hashlib.sha3_224(events[field].astype(dt).tobytes()).hexdigest()
        assert digest == ref["field_to_digest"][name], name


@pytest.mark.shared_data
def test_gen4_dat_and_evt3_raw_are_the_same_recording(data):
    dat, dat_size = read_dat(data / "faery_pypi" / "gen4.dat")
    evt3, evt3_size = read_evt3(data / "faery_pypi" / "evt3.raw")
    assert dat_size == evt3_size == (1280, 720, 2)
    for f in "xyp":
        np.testing.assert_array_equal(dat[f], evt3[f])
    offsets = np.unique(evt3["t"] - dat["t"])
    assert offsets.size == 1  # one constant offset for all 1.2 M events
    # The recording crosses the 2**24 us loop of EVT3 time (16.8 s): unwrapping is exercised.
    assert evt3["t"][0] < 2**24 < evt3["t"][-1]


def _evt2_reference(path: Path) -> np.ndarray:
    """Independent numpy decoder of the EVT 2.0 spec (CD_OFF 0, CD_ON 1, TIME_HIGH 8)."""
    raw = path.read_bytes()
    offset = 0
    while raw[offset:offset + 1] == b"%":
        offset = raw.index(b"\n", offset) + 1
    w = np.frombuffer(raw, "<u4", offset=offset)
    kind = w >> 28
    th = kind == 8
    last_th = np.cumsum(th) - 1
    ev = np.flatnonzero((kind <= 1) & (last_th >= 0))
    high = (w[th] & 0x0FFFFFFF).astype(np.int64)
    t = (high[last_th[ev]] << 6) | ((w[ev] >> 22) & 0x3F)
    return fixtures._events((w[ev] >> 11) & 0x7FF, w[ev] & 0x7FF, t, kind[ev])


@pytest.mark.shared_data
@pytest.mark.parametrize("rel", ["expelliarmus/evt2_sample.raw", "expelliarmus/sparklers.raw"])
def test_evt2_matches_an_independent_decoder(data, rel):
    events, _ = read_evt2(data / rel)
    np.testing.assert_array_equal(events, _evt2_reference(data / rel))


@pytest.mark.shared_data
def test_nmnist_decoder_matches_tonic_on_real_files(data):
    from tonic.io import read_mnist_file

    small = sorted((data / "slayerPytorch" / "NMNISTsmall").glob("*.bs2"))[:25]
    files = [data / "tonic" / "sample_nmnist.bin",
             data / "slayerPytorch" / "binarySpikeTestFiles" / "1.bs2", *small]
    for f in files:
        np.testing.assert_array_equal(read_nmnist(f).events, read_mnist_file(str(f), EVENT_DTYPE))


@pytest.mark.shared_data
def test_nmnist_small_totals_and_labels(data):
    folder = data / "slayerPytorch" / "NMNISTsmall"
    files = sorted(folder.glob("*.bs2"), key=lambda p: int(p.stem))
    assert len(files) == 1100
    total = 0
    for f in files:
        events, _ = read_nmnist(f, sensor_size=(34, 34, 2))  # validates x, y < 34
        total += len(events)
    assert total == 4_518_827
    labels = dict(line.split() for line in (folder / "train1K.txt").read_text().splitlines()
                  if line and not line.startswith("#"))
    assert labels["1"] == "5"  # MNIST train sample 1 is a 5


# --------------------------------------------------------------------------------------------
# Hand-built streams with known answers.


def test_decode_evt3_vectors_time_loop_and_dropped_prefix():
    words = np.array([
        0x6005,  # TIME_LOW 5 before any TIME_HIGH
        0x2007,  # ADDR_X before TIME_HIGH/ADDR_Y: dropped
        0x8001,  # TIME_HIGH 1 -> 4096
        0x0003,  # ADDR_Y 3
        0x6010,  # TIME_LOW 16 -> t = 4112
        0x2805,  # ADDR_X x=5 p=1
        0x3064,  # VECT_BASE_X x=100 p=0
        0x4805,  # VECT_12 bits 0, 2, 11 -> x = 100, 102, 111; base -> 112
        0x5081,  # VECT_8 bits 0, 7 -> x = 112, 119
        0xE123,  # OTHERS: ignored
        0x8FFF,  # TIME_HIGH 4095
        0x6001,  # TIME_LOW 1 -> t = 4095 * 4096 + 1
        0x0804,  # ADDR_Y 4 (bit 11 = system type, not y)
        0x2000,  # ADDR_X x=0 p=0
        0x8000,  # TIME_HIGH 0 after 4095: a loop -> 2**24
        0x6002,  # TIME_LOW 2
        0x3800,  # VECT_BASE_X x=0 p=1
        0x5003,  # VECT_8 bits 0, 1 -> x = 0, 1
        0x7ABC,  # CONTINUED_4: ignored
    ], dtype=np.uint16)
    x, y, t, p = decode_evt3(words)
    t1, t2, t3 = 4112, 4095 * 4096 + 1, 2**24 + 2
    np.testing.assert_array_equal(x, [5, 100, 102, 111, 112, 119, 0, 0, 1])
    np.testing.assert_array_equal(y, [3, 3, 3, 3, 3, 3, 4, 4, 4])
    np.testing.assert_array_equal(t, [t1, t1, t1, t1, t1, t1, t2, t3, t3])
    np.testing.assert_array_equal(p, [1, 0, 0, 0, 0, 0, 0, 1, 1])


def test_decode_evt3_small_time_high_step_back_is_not_a_loop():
    words = np.array([0x8002, 0x0000, 0x6000, 0x2001, 0x8001, 0x6000, 0x2002], np.uint16)
    _, _, t, _ = decode_evt3(words)
    np.testing.assert_array_equal(t, [2 * 4096, 4096])


def test_decode_evt3_vector_without_base_is_dropped_and_empty_stream():
    x, _, _, _ = decode_evt3(np.array([0x8000, 0x0001, 0x6000, 0x4FFF, 0x2003], np.uint16))
    np.testing.assert_array_equal(x, [3])
    assert all(len(a) == 0 for a in decode_evt3(np.zeros(0, np.uint16)))


def _write_evt3(path: Path, words, header=b"% evt 3.0\n% geometry 128x8\n") -> Path:
    path.write_bytes(header + np.asarray(words, "<u2").tobytes())
    return path


def test_read_evt3_header_geometry_and_unsorted_policy(tmp_path):
    f = _write_evt3(tmp_path / "back.raw", [0x8002, 0x0001, 0x6000, 0x2001, 0x8001, 0x6005, 0x2802])
    assert detect_format(f) == "evt3"
    with pytest.raises(EventFileError, match=r"back\.raw.*not sorted.*sort=True"):
        read_events(f)
    events, size = read_events(f, sort=True)
    assert size == (128, 8, 2)
    np.testing.assert_array_equal(events["t"], [4096 + 5, 2 * 4096])
    np.testing.assert_array_equal(events["x"], [2, 1])


def test_header_parser_stops_at_binary_data_starting_with_percent(tmp_path):
    # First data word 0x8025 is stored as b"%\x80": it must not be taken for a header line.
    words = [0x8025, 0x0000, 0x600A, 0x2003]
    events, _ = read_evt3(_write_evt3(tmp_path / "pct.raw", words))
    np.testing.assert_array_equal(events["t"], [0x25 * 4096 + 10])


def test_evt2_and_dat_synthetic_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    ev = fixtures.random_events(rng, 200, (16, 12, 2), 5000)
    # EVT2: TIME_HIGH word before each event, 6 low time bits in the CD word.
    words = []
    for x, y, t, p in ev[["x", "y", "t", "p"]].tolist():
        words += [(8 << 28) | (t >> 6), (p << 28) | ((t & 0x3F) << 22) | (x << 11) | y]
    f2 = tmp_path / "syn.raw"
    f2.write_bytes(b"% evt 2.0\n% geometry 16x12\n" + np.array(words, "<u4").tobytes())
    got, size = read_events(f2)
    assert size == (16, 12, 2)
    np.testing.assert_array_equal(got, ev)
    # DAT: 32-bit time, then x | y << 14 | p << 28.
    body = np.empty((len(ev), 2), "<u4")  # (n_events, 2)
    body[:, 0] = ev["t"]
    body[:, 1] = ev["x"] | (ev["y"] << 14) | (ev["p"] << 28)
    fd = tmp_path / "syn.dat"
    fd.write_bytes(b"% Version 2\n% Width 16\n% Height 12\n" + bytes([12, 8]) + body.tobytes())
    got, size = read_events(fd)
    assert size == (16, 12, 2)
    np.testing.assert_array_equal(got, ev)


def test_40bit_round_trip_and_overflow_marker(tmp_path):
    rng = np.random.default_rng(1)
    ev = fixtures.random_events(rng, 300, (34, 34, 2), 300_000)
    f = tmp_path / "00001.bin"
    f.write_bytes(fixtures.encode_40bit(ev))
    got, size = read_events(f)
    np.testing.assert_array_equal(got, ev)
    assert size == (int(ev["x"].max()) + 1, int(ev["y"].max()) + 1, 2)
    # A y == 240 word is a time-overflow marker: removed, and 2**13 us added to later events.
    raw = bytearray(fixtures.encode_40bit(ev))
    marker = bytes([0, 240, 0, 0, 0])
    raw[5 * 100:5 * 100] = marker
    x, y, t, p = decode_40bit(bytes(raw))
    np.testing.assert_array_equal(x, ev["x"])
    np.testing.assert_array_equal(t[:100], ev["t"][:100])
    np.testing.assert_array_equal(t[100:], ev["t"][100:] + 2**13)


def test_bs1_round_trip(tmp_path):
    ids, t = np.array([0, 63, 300, 5]), np.array([10, 20, 20, 8_000_000])
    rows = np.stack([ids >> 8, ids & 0xFF, (1 << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF], 1)
    f = tmp_path / "a.bs1"
    f.write_bytes(rows.astype(np.uint8).tobytes())  # (n_events, 5)
    events, size = read_bs1(f)
    assert size == (301, 1, 2)
    np.testing.assert_array_equal(events["x"], ids)
    np.testing.assert_array_equal(events["t"], t)
    assert np.all(events["y"] == 0) and np.all(events["p"] == 1)


def test_npy_structured_round_trip_and_missing_y(tmp_path):
    ev = np.zeros(3, dtype=[("t", "<i8"), ("x", "<i2"), ("p", "?")])
    ev["t"], ev["x"], ev["p"] = [1, 2, 3], [4, 0, 9], [True, False, True]
    np.save(tmp_path / "a.npy", ev)
    events, size = read_npy(tmp_path / "a.npy")
    assert size == (10, 1, 2)
    np.testing.assert_array_equal(events["p"], [1, 0, 1])
    assert np.all(events["y"] == 0)


# --------------------------------------------------------------------------------------------
# Bad input: one clear error naming the file.


def test_missing_file_is_both_our_error_and_file_not_found(tmp_path):
    with pytest.raises(EventFileNotFoundError) as info:
        read_events(tmp_path / "nope.aedat4")
    assert info.value.filename == str(tmp_path / "nope.aedat4")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, EventFileError)
    assert str(info.value).startswith(str(tmp_path / "nope.aedat4"))


@pytest.mark.parametrize("name, content, pattern", [
    ("trunc.bin", bytes(5 * 10 + 3), r"truncated 40-bit.*53 bytes"),
    ("trunc.bs2", bytes(7), r"truncated 40-bit"),
    ("trunc.bs1", bytes(4), r"truncated \.bs1"),
    ("noevt.raw", b"% date 2020\n" + bytes(8), r"cannot tell EVT2 from EVT3"),
    ("evt21.raw", b"% evt 2.1\n" + bytes(8), r"unsupported Prophesee encoding 'evt 2.1'"),
    ("odd.raw", b"% evt 3.0\n" + bytes(5), r"truncated EVT3.*5 data bytes"),
    ("odd2.raw", b"% evt 2.0\n" + bytes(6), r"truncated EVT2.*6 data bytes"),
    ("trunc.dat", b"% Version 2\n" + bytes([12, 8]) + bytes(12), r"truncated DAT.*12 data bytes"),
    ("kind.dat", b"% Version 2\n" + bytes([12, 16]) + bytes(16),
     r"unsupported DAT event type 12 of size 16"),
    ("empty.dat", b"% Version 2\n%", r"no event type/size bytes"),
    ("junk.aedat4", b"\x00garbage" * 10, r"not an AEDAT 4\.0 file"),
    ("cut.aedat4", b"#!AER-DAT4.0\r\n" + bytes(range(256)) * 3, r"truncated AEDAT4 header"),
    ("what.xyz", b"hello", r"unknown event file type '\.xyz'"),
    ("flat.npy", None, r"wrong dtype: expected a 1-D structured array"),
    ("float.npy", None, r"wrong dtype: field 't' has dtype float64"),
    ("broken.npy", b"\x93NUMPY garbage", r"not a readable \.npy file"),
])
def test_bad_files_raise_one_error_naming_the_file(tmp_path, name, content, pattern):
    f = tmp_path / name
    if name == "flat.npy":
        np.save(f, np.zeros((5, 4), np.int64))
    elif name == "float.npy":
        np.save(f, np.array([(0, 0, 0.5, 1)], [("x", "i8"), ("y", "i8"), ("t", "f8"), ("p", "i8")]))
    else:
        f.write_bytes(content)
    with pytest.raises(EventFileError, match=re.escape(str(f)) + ".*" + pattern) as info:
        read_events(f)
    assert isinstance(info.value, EventError) and isinstance(info.value, ValueError)


def test_coordinates_outside_the_sensor(tmp_path):
    ev = fixtures._events([3, 40], [1, 2], [0, 10], [0, 1])
    f = tmp_path / "wide.bin"
    f.write_bytes(fixtures.encode_40bit(ev))
    with pytest.raises(EventFileError, match=r"wide\.bin: x outside the sensor.*\[3, 40\]"):
        read_nmnist(f, sensor_size=(34, 34, 2))
    # The header size is enforced too: x = 20 on a 16-wide EVT3 sensor.
    g = _write_evt3(tmp_path / "wide.raw", [0x8000, 0x0001, 0x6000, 0x2014],
                    header=b"% evt 3.0\n% geometry 16x16\n")
    with pytest.raises(EventFileError, match=r"wide\.raw: x outside the sensor"):
        read_events(g)


def test_unsorted_40bit_file_and_sort_is_stable(tmp_path):
    ev = fixtures._events([1, 2, 3, 4], [0, 0, 0, 0], [50, 10, 50, 10], [0, 1, 0, 1])
    f = tmp_path / "unsorted.bin"
    f.write_bytes(fixtures.encode_40bit(ev))
    with pytest.raises(EventFileError, match=r"unsorted\.bin: timestamps are not sorted"):
        read_events(f)
    got, _ = read_events(f, sort=True)
    np.testing.assert_array_equal(got["x"], [2, 4, 1, 3])  # equal times keep file order


def test_header_only_file_is_an_empty_recording(tmp_path):
    events, size = read_events(_write_evt3(tmp_path / "empty.raw", []))
    assert len(events) == 0 and events.dtype == EVENT_DTYPE and size == (128, 8, 2)
    # Newer Metavision headers put the geometry in the format line and end with "% end".
    header = b"% format EVT3;height=720;width=1280\n% end\n"
    f = _write_evt3(tmp_path / "new.raw", [], header=header)
    assert detect_format(f) == "evt3" and read_events(f).sensor_size == (1280, 720, 2)


def test_unknown_format_name(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(bytes(5))
    with pytest.raises(EventFileError, match="unknown format 'csv'"):
        read_events(f, format="csv")


# --------------------------------------------------------------------------------------------
# EVT3 time: the spec, openeb and faery. A pure-Python decoder written from the spec is the
# oracle (https://docs.prophesee.ai/stable/data/encoding_formats/evt3.html: "EVT_TIME_LOW:
# updates the lower 12-bit portion of the 24-bit time base"; openeb's evt3_decoder.h assigns it
# as is, never clamps).


def _evt3_spec(words) -> np.ndarray:
    """One word at a time, as the spec reads (slow; the oracle for decode_evt3)."""
    out = []
    started, high, low, loops, y, cd, base, bp = False, 0, 0, 0, 0, False, -1, 0
    for w in np.asarray(words).tolist():
        kind, v = w >> 12, w & 0xFFF
        if not started:
            if kind == 8:
                started, high = True, v
            continue
        t = (loops << 24) | (high << 12) | low
        if kind == 0:
            y, cd = v & 0x7FF, True
        elif kind == 1:
            cd = False
        elif kind == 2 and cd:
            out.append((v & 0x7FF, y, t, v >> 11))
        elif kind == 3:
            base, bp = v & 0x7FF, v >> 11
        elif kind in (4, 5) and base >= 0:
            n = 12 if kind == 4 else 8
            if cd:
                out += [(base + i, y, t, bp) for i in range(n) if v >> i & 1]
            base += n
        elif kind == 6:
            low = v
        elif kind == 8 and v != high:
            loops += high - v >= 2048
            high, low = v, 0
    return fixtures._events(*zip(*out)) if out else np.empty(0, EVENT_DTYPE)


def _words(path: Path) -> np.ndarray:
    from spike.io.prophesee import _read_prophesee_header

    raw = path.read_bytes()
    return np.frombuffer(raw, "<u2", offset=_read_prophesee_header(path, raw)[1])


@pytest.mark.shared_data
@pytest.mark.parametrize("rel", ["expelliarmus/evt3_sample.raw",
                                 "expelliarmus/evt3_test_pedestrians.raw"])
def test_evt3_decoder_equals_the_spec_oracle(data, rel):
    events, _ = read_evt3(data / rel)
    np.testing.assert_array_equal(events, _evt3_spec(_words(data / rel)))


@pytest.mark.shared_data
def test_evt3_sample_time_low_steps_back_and_faery_clamps_it(data):
    """The 10 us disagreement with faery 0.7.1, decided by the spec: the file has TIME_LOW 811
    then TIME_LOW 800 under TIME_HIGH 2861; the events after it are at 2861*4096 + 800."""
    path = data / "expelliarmus" / "evt3_sample.raw"
    w = _words(path)
    at = np.flatnonzero((w[:-2] == 0x8B2D) & (w[1:-1] == 0x632B) & (w[2:] == 0x6320))
    assert len(at) == 1  # TIME_HIGH 2861, TIME_LOW 811, then TIME_LOW 800
    ours, _ = read_evt3(path)
    k = len(decode_evt3(w[:at[0] + 3])[0])  # the first event after those words
    assert ours["t"][k] == 2861 * 4096 + 800
    faery = pytest.importorskip("faery")
    theirs = np.concatenate(list(faery.events_stream_from_file(path)))
    for f, g in (("x", "x"), ("y", "y"), ("p", "on")):
        np.testing.assert_array_equal(ours[f], theirs[g])
    assert theirs["t"][k] == 2861 * 4096 + 811
    diff = theirs["t"].astype(np.int64) - ours["t"]
    # faery never goes back in time: it keeps 811 for those events (and any later backward
    # TIME_LOW); only t differs, by at most the 11 us of that step.
    assert np.count_nonzero(diff) == 1455 and diff.min() == 0 and diff.max() == 11
    assert np.all(np.diff(theirs["t"].astype(np.int64)) >= 0)


@pytest.mark.shared_data
def test_evt2_decoder_agrees_with_faery_on_real_files(data):
    faery = pytest.importorskip("faery")
    for rel in ("expelliarmus/evt2_sample.raw", "expelliarmus/sparklers.raw"):
        ours, size = read_evt2(data / rel)
        theirs = np.concatenate(list(faery.events_stream_from_file(data / rel)))
        for f, g in (("x", "x"), ("y", "y"), ("t", "t"), ("p", "on")):
            np.testing.assert_array_equal(ours[f], theirs[g])


def test_decode_evt2_loop_and_backward_step():
    th = lambda h: (8 << 28) | h  # noqa: E731
    cd = lambda p, lo, x, y: (p << 28) | (lo << 22) | (x << 11) | y  # noqa: E731
    words = np.array([cd(1, 5, 1, 1),  # before any TIME_HIGH: dropped
                      th(0x0FFFFFFF), cd(1, 3, 2, 2),
                      th(0), cd(0, 4, 3, 3),  # a loop of the 28-bit TIME_HIGH: +2**34 us
                      th(5), th(4), cd(0, 1, 4, 4)], np.uint32)  # a small step back: kept
    x, y, t, p = decode_evt2(words)
    np.testing.assert_array_equal(x, [2, 3, 4])
    np.testing.assert_array_equal(t, [(0x0FFFFFFF << 6) | 3, (1 << 34) | 4,
                                      (1 << 34) | (4 << 6) | 1])
    np.testing.assert_array_equal(p, [1, 0, 0])


def test_decode_evt3_time_high_change_clears_time_low_and_em_events_are_skipped():
    words = np.array([0x8001, 0x0002, 0x6123, 0x8002, 0x2005,  # TH 2 clears TL: t = 2*4096
                      0x1003, 0x2006,  # EM ADDR_Y: the next ADDR_X is not a CD event
                      0x0004, 0x6001, 0x2007], np.uint16)
    x, y, t, p = decode_evt3(words)
    np.testing.assert_array_equal(x, [5, 7])
    np.testing.assert_array_equal(t, [2 * 4096, 2 * 4096 + 1])
    np.testing.assert_array_equal(y, [2, 4])


# --------------------------------------------------------------------------------------------
# DAT time: a decreasing timestamp is an error, not a 71-minute unwrap.


def _dat(path: Path, t, x=None, header=b"% Version 2\n% Width 16\n% Height 12\n") -> Path:
    t = np.asarray(t, np.uint64)
    body = np.zeros((len(t), 2), "<u4")  # (n_events, [t, data])
    body[:, 0] = t & 0xFFFFFFFF
    body[:, 1] = 0 if x is None else np.asarray(x)
    path.write_bytes(header + bytes([12, 8]) + body.tobytes())
    return path


def test_dat_zeroed_event_or_appended_zeros_raise_instead_of_unwrapping(tmp_path):
    t = np.arange(0, 100_000, 1000)
    z = t.copy()
    z[40] = 0  # one zeroed event
    with pytest.raises(EventFileError, match=r"zeroed\.dat: timestamps are not sorted"):
        read_events(_dat(tmp_path / "zeroed.dat", z))
    f = _dat(tmp_path / "tail.dat", t)
    f.write_bytes(f.read_bytes() + bytes(8))
    with pytest.raises(EventFileError, match=r"tail\.dat: timestamps are not sorted"):
        read_events(f)
    events, _ = read_events(f, sort=True)  # the zero event sorts to the front, nothing is unwrapped
    assert events["t"].max() == t.max()


def test_dat_true_32_bit_wrap_is_unwrapped(tmp_path):
    t = np.array([2**32 - 20, 2**32 - 5, 2**32 + 3, 2**32 + 2**30, 2 * 2**32 - 7, 2 * 2**32 + 5],
                 np.int64)
    events, size = read_events(_dat(tmp_path / "wrap.dat", t))
    np.testing.assert_array_equal(events["t"], t)
    assert size == (16, 12, 2)
    np.testing.assert_array_equal(decode_dat(bytes(16))["t"], [0, 0])


@pytest.mark.shared_data
def test_dat_real_files_agree_with_faery_and_expelliarmus_misreads_zeroed_event(data, tmp_path):
    ours, _ = read_dat(data / "faery_pypi" / "gen4.dat")
    faery = pytest.importorskip("faery")
    theirs = np.concatenate(list(faery.events_stream_from_file(data / "faery_pypi" / "gen4.dat")))
    for f, g in (("x", "x"), ("y", "y"), ("t", "t"), ("p", "on")):
        np.testing.assert_array_equal(ours[f], theirs[g])
    expelliarmus = pytest.importorskip("expelliarmus")
    raw = bytearray((data / "tonic" / "sample_ncars.dat").read_bytes())
    raw[-8 * 100:-8 * 99] = bytes(8)  # zero one event
    bad = tmp_path / "zeroed.dat"
    bad.write_bytes(bytes(raw))
    arr = expelliarmus.Wizard(encoding="dat").read(bad)
    assert (arr["t"].max() - arr["t"].min()) > 2**32 - 10**6  # 71 minutes, silently
    with pytest.raises(EventFileError, match="not sorted"):
        read_events(bad)


# --------------------------------------------------------------------------------------------
# EVT2 without a header, and with a first data word starting with '%'.


@pytest.mark.shared_data
def test_evt2_without_header_and_with_percent_first_word(data, tmp_path):
    src = data / "expelliarmus" / "evt2_sample.raw"
    from spike.io.prophesee import _read_prophesee_header

    raw = src.read_bytes()
    off = _read_prophesee_header(src, raw)[1]
    want, _ = read_evt2(src)
    bare = tmp_path / "bare.raw"
    bare.write_bytes(raw[off:])
    with pytest.raises(EventFileError, match="cannot tell EVT2 from EVT3"):
        read_events(bare)
    got, size = read_events(bare, format="evt2")
    np.testing.assert_array_equal(got, want)
    assert size == (int(want["x"].max()) + 1, int(want["y"].max()) + 1, 2)  # inferred
    # A data stream whose first byte is 0x25 ('%'): a TIME_HIGH word 0x80000025 put first.
    pct = tmp_path / "pct.raw"
    pct.write_bytes(raw[:off] + np.array([0x80000025], "<u4").tobytes() + raw[off:])
    assert pct.read_bytes()[off:off + 1] == b"%"
    got, _ = read_events(pct)
    np.testing.assert_array_equal(got, want)  # no event lost to header skipping


# --------------------------------------------------------------------------------------------
# Bad input found by the hostile test: one EventFileError naming the file, nothing printed.


@pytest.mark.shared_data
def test_aedat4_panic_and_bad_utf8_become_our_error_with_nothing_printed(data, tmp_path, capfd):
    raw = (data / "aestream" / "davis.aedat4").read_bytes()
    panic = bytearray(raw)
    panic[37] ^= 0xFF  # aedat panics (a flatbuffer offset out of range)
    utf8 = bytearray(raw)
    utf8[raw.find(b"<dv") + 40] = 0xFF  # one invalid UTF-8 byte in the XML header
    for name, content, pattern in (("panic.aedat4", panic, "Rust panic"),
                                   ("utf8.aedat4", utf8, "description is not UTF-8")):
        f = tmp_path / name
        f.write_bytes(bytes(content))
        with pytest.raises(EventFileError, match=re.escape(str(f)) + ".*" + pattern):
            read_events(f)
    out, err = capfd.readouterr()
    assert out == "" and "panicked" not in err and "backtrace" not in err


def test_third_party_guard_converts_panics_output_and_lets_interrupts_through(tmp_path, capfd):
    import os
    import warnings

    from spike.io._common import _third_party

    PanicException = type("PanicException", (BaseException,), {})  # pyo3's, by name
    with pytest.raises(EventFileError, match=r"^f\.raw: dec: Rust panic: boom"):
        with _third_party("f.raw", "dec"):
            raise PanicException("boom\nbacktrace ...")
    with pytest.raises(EventFileError, match=r"^f\.raw: dec: bad"):
        with _third_party("f.raw", "dec"):
            raise RuntimeError("bad")
    with pytest.raises(KeyboardInterrupt):
        with _third_party("f.raw", "dec"):
            raise KeyboardInterrupt
    with pytest.raises(EventFileError, match=r"^f\.raw: dec: the decoder printed 'Wrap detected"):
        with _third_party("f.raw", "dec"):  # expelliarmus' only signal of a time "wrap"
            os.write(1, b"Wrap detected\n")
            os.write(2, b"thread panicked\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _third_party("f.raw", "enc", printed="warn"):
            os.write(2, b"note\n")
    assert "f.raw: enc printed: note" in str(caught[0].message)
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("line, pattern", [
    (b"% Width 12x0\n% Height 10\n", r"'Width': '12x0' is not a whole number"),
    (b"% width abc\n% height 5\n", r"'Width': 'abc' is not a whole number"),
    (b"% format EVT3;height=x;width=5\n", r"'format height': 'x'"),
    (b"% geometry 0x0\n", r"'geometry': 0 is outside"),
    (b"% geometry 12\n", r"'geometry': '12' is not WxH"),
    (b"% Width 12\n", r"only one of 'Width' and 'Height'"),
    (b"% geometry 16x8\n% format EVT3;width=32;height=8\n", r"different sensor sizes"),
    (b"% t0 -5\n", r"'t0': '-5'"),
])
def test_damaged_header_fields_name_the_file_and_field(tmp_path, line, pattern):
    f = _write_evt3(tmp_path / "hdr.raw", [0x8000, 0x0001, 0x6000, 0x2002],
                    header=b"% evt 3.0\n" + line)
    with pytest.raises(EventFileError, match=re.escape(str(f)) + ": bad header field|"
                       + re.escape(str(f)) + ": the header") as info:
        read_events(f)
    assert re.search(pattern, str(info.value))


def test_broken_npy_header_directory_and_fifo(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, fixtures._events([1], [1], [1], [1]))
    raw = bytearray(good.read_bytes())
    raw[12:20] = b"(((((((("  # tokenize.TokenError inside numpy
    bad = tmp_path / "bad.npy"
    bad.write_bytes(bytes(raw))
    with pytest.raises(EventFileError, match=re.escape(str(bad)) + ": not a readable .npy"):
        read_events(bad)
    short = tmp_path / "short.npy"
    short.write_bytes(good.read_bytes()[:-3])
    with pytest.raises(EventFileError, match=r"short\.npy: truncated or padded \.npy"):
        read_events(short)
    d = tmp_path / "dir.aedat4"
    d.mkdir()
    with pytest.raises(EventFileError, match=r"dir\.aedat4: is a directory"):
        read_events(d)
    import os

    fifo = tmp_path / "pipe.raw"
    os.mkfifo(fifo)
    with pytest.raises(EventFileError, match=r"pipe\.raw: is not a regular file"):
        read_events(fifo)  # never opened: opening a FIFO with no writer blocks forever


@pytest.mark.parametrize("name, content", [
    ("empty.bin", b""), ("empty.bs1", b""), ("bare.raw", b"% evt 3.0\n"),
    ("bare.dat", b"% Version 2\n" + bytes([12, 8])), ("evt2.raw", b"% evt 2.0\n% date x\n"),
])
def test_empty_files_without_sensor_size_are_an_error_not_sensor_0x0(tmp_path, name, content):
    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(EventFileError, match=re.escape(str(f)) + ": no events and no sensor size"):
        read_events(f, format="evt2" if name == "evt2.raw" else None)
    events, size = read_events(f, sensor_size=(4, 4, 2),
                               format="evt2" if name == "evt2.raw" else None)
    assert len(events) == 0 and size == (4, 4, 2)


def test_sensor_size_argument_is_checked(tmp_path):
    f = _write_evt3(tmp_path / "a.raw", [0x8000, 0x0001, 0x6000, 0x2002])
    for bad in [(0, 4, 2), (4, 4), (4.5, 4, 2), "abc"]:
        with pytest.raises(EventFileError, match=r"a\.raw: sensor_size must be three positive"):
            read_events(f, sensor_size=bad)


def test_an_evt_file_named_dat_is_told_apart(tmp_path):
    f = tmp_path / "x.dat"
    f.write_bytes(b"% evt 3.0\n% geometry 8x8\n" + np.array([0x8000], "<u2").tobytes())
    with pytest.raises(EventFileError, match=r"x\.dat: the header says EVT 3\.0: this is a \.raw"):
        read_events(f)


# --------------------------------------------------------------------------------------------
# validate_events on extremes (spike/core/events.py)


def test_validate_events_int64_extremes_and_non_finite_times():
    ev = fixtures._events([0, 0], [0, 0], [0, 0], [0, 0])
    ev["t"] = [np.iinfo(np.int64).max, np.iinfo(np.int64).min]  # np.diff overflows to +1
    with pytest.raises(EventError, match="not sorted"):
        validate_events(ev, (1, 1, 2))
    ok = ev[::-1].copy()
    assert validate_events(ok, (1, 1, 2)) is ok
    for bad in (np.inf, -np.inf, np.nan):
        fl = np.zeros(3, [("x", "i8"), ("y", "i8"), ("t", "f8"), ("p", "i8")])
        fl["t"] = [0.0, 1.0, bad]
        with pytest.raises(EventError, match=r"arr: t holds non-finite values"):
            validate_events(fl, (1, 1, 2), name="arr")
    fl["t"] = [0.0, np.nan, 1.0]
    with pytest.raises(EventError, match="non-finite"):
        validate_events(fl, (1, 1, 2), check_sorted=False)


# --------------------------------------------------------------------------------------------
# Fast paths against their references.


def test_bounds_fast_check_agrees_with_validate_events():
    from spike.io._common import _bounds, _within

    rng = np.random.default_rng(5)
    for trial in range(60):
        n = 1 << 16
        ev = fixtures.random_events(rng, n, (64, 48, 2), 10**6)
        kind = trial % 6
        if kind == 1:
            ev["x"][rng.integers(n)] = 64 + trial  # outside the sensor
        elif kind == 2:
            ev["y"][rng.integers(n)] = -1
        elif kind == 3:
            i = int(rng.integers(1, n))
            ev["t"][i] = ev["t"][i - 1] - 1  # one backward step
        elif kind == 4:
            ev["p"][rng.integers(n)] = -1  # {-1, 1} polarity is fine for P == 2
        elif kind == 5:
            ev["p"][rng.integers(n)] = 2
        try:
            validate_events(ev, (64, 48, 2))
            ok = True
        except EventError:
            ok = False
        assert _within(_bounds(ev), (64, 48, 2)) == ok, kind


def test_decode_evt3_dense_vectors_grow_the_output_and_match_the_oracle():
    rng = np.random.default_rng(2)
    words = [0x8000, 0x0003, 0x3000]
    for k in range(20000):  # about 6 events per word: past the first allocation
        words.append(int(rng.choice([0x4000 | int(rng.integers(0, 4096)), 0x5000 | 0xFF,
                                     0x6000 | k % 4096, 0x3000 | int(rng.integers(0, 64))])))
    words = np.array(words, np.uint16)
    x, y, t, p = decode_evt3(words)
    want = _evt3_spec(words)
    assert len(x) > len(words) // 2
    for got, f in ((x, "x"), (y, "y"), (t, "t"), (p, "p")):
        np.testing.assert_array_equal(got, want[f])


def test_dat_kernel_matches_a_numpy_decode():
    rng = np.random.default_rng(4)
    n = 5000
    t = np.cumsum(rng.integers(0, 2**22, n)).astype(np.uint64)  # crosses 2**32 a few times
    d = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    body = np.empty((n, 2), "<u4")
    body[:, 0], body[:, 1] = t & 0xFFFFFFFF, d
    for version in (1, 2):
        ev = decode_dat(body.tobytes(), version)
        np.testing.assert_array_equal(ev["t"], t.astype(np.int64))
        if version == 2:
            np.testing.assert_array_equal(ev["x"], d & 0x3FFF)
            np.testing.assert_array_equal(ev["y"], (d >> 14) & 0x3FFF)
            np.testing.assert_array_equal(ev["p"], d >> 28)
        else:
            np.testing.assert_array_equal(ev["x"], d & 0x1FF)
            np.testing.assert_array_equal(ev["y"], (d >> 9) & 0xFF)
            np.testing.assert_array_equal(ev["p"], (d >> 17) & 0xF)


@pytest.mark.shared_data
def test_aedat4_bad_utf8_that_aborts_aedat_and_faery_is_refused_first(data, tmp_path):
    """Byte 698 of davis.aedat4 inverted: aedat 2.3 (and faery 0.7.1) raise UnicodeDecodeError,
    then panic in a destructor and abort the interpreter (SIGABRT). Run in a child process, so
    a regression fails this test instead of killing pytest."""
    import subprocess
    import sys

    raw = bytearray((data / "aestream" / "davis.aedat4").read_bytes())
    raw[698] ^= 0xFF
    f = tmp_path / "abort.aedat4"
    f.write_bytes(bytes(raw))
    code = ("import sys\nfrom spike.io import read_events, EventFileError\n"
            "try:\n    read_events(sys.argv[1])\nexcept EventFileError as e:\n    print(e)\n")
    res = subprocess.run([sys.executable, "-c", code, str(f)], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert res.returncode == 0, res.stderr[-500:]
    assert res.stdout.startswith(str(f)) and "not UTF-8" in res.stdout
    assert res.stderr == ""
