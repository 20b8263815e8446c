"""Hostile input: mutated copies of the real recordings, each read by ``read_events`` in a child.

Mutations are generated at test time (seeded) from the files in ../shared/data: truncations at
random offsets (inside headers too), bit flips, zeroed and duplicated blocks, appended garbage,
header-only and empty files, wrong extensions, directories, FIFOs, and the specific damage found
by the hostile test of the issue (damaged header fields, no header, a decreasing timestamp, 8
zero bytes appended, a 0x25 first data word, an invalid UTF-8 byte in an AEDAT4 header, a broken
``.npy`` header). The only acceptable outcomes are:

- ``ok``: a result that passes the invariants (checked here, independently of ``validate_events``:
  coordinates inside the sensor, ``t`` non-decreasing, EVENT_DTYPE, a positive 3-int sensor);
- ``error``: one ``EventError`` (``EventFileError``) whose message names the file.

Anything else is counted: ``violation`` (a result breaking an invariant), ``foreign`` (any other
exception, or our error without the path), ``noise`` (the read printed something or warned),
``crash`` (the process died) and ``hang`` (no answer within the timeout).

A fast subset runs by default; the full campaign (>= 2,000 mutations) is ``-m slow``, or
``python tests/io/test_fuzz.py`` to print the table.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "data"
HANG_S = 20.0  # one read taking longer than this is a hang

# source file, format family, mutations in the fast subset, in the full run
SOURCES = [
    ("aestream/davis.aedat4", "aedat4", 10, 200),
    ("tonic/sample.aedat4", "aedat4", 4, 150),
    ("aedat_pypi/test_data.aedat4", "aedat4", 0, 40),
    ("expelliarmus/evt2_sample.raw", "evt2", 6, 150),
    ("expelliarmus/sparklers.raw", "evt2", 0, 100),
    ("expelliarmus/evt3_sample.raw", "evt3", 6, 200),
    ("expelliarmus/evt3_test_pedestrians.raw", "evt3", 8, 200),
    ("faery_pypi/evt3.raw", "evt3", 0, 30),
    ("tonic/sample_ncars.dat", "dat", 8, 200),
    ("expelliarmus/NCARS_obj_004397_td.dat", "dat", 4, 150),
    ("faery_pypi/gen4.dat", "dat", 0, 30),
    ("tonic/sample_nmnist.bin", "nmnist", 6, 150),
    ("slayerPytorch/NMNISTsmall/1.bs2", "nmnist", 0, 60),
    ("slayerPytorch/NTIDIGITS_1.bs1", "bs1", 6, 150),
    ("@npy:tonic/sample_ncars.dat", "npy", 6, 150),
    ("@npz:aestream/davis.aedat4", "npz", 6, 150),
    ("@npz:tonic/sample_nmnist.bin", "npz", 0, 60),
    ("@h5:tonic/sample_nmnist.bin", "hdf5", 4, 100),
]

_CHILD = r"""
import contextlib, json, os, sys, tempfile, warnings
import numpy as np
from spike.core.events import EVENT_DTYPE, EventError
from spike.io import read_events

def invariants(rec):
    if not isinstance(rec, tuple) or len(rec) != 2:
        return "result is not (events, sensor_size)"
    ev, size = rec
    if not isinstance(ev, np.ndarray) or ev.dtype != EVENT_DTYPE or ev.ndim != 1:
        return f"dtype {getattr(ev, 'dtype', None)}"
    if (not isinstance(size, tuple) or len(size) != 3
            or not all(type(s) is int and s >= 1 for s in size)):
        return f"sensor_size {size!r}"
    if len(ev):
        for f, lim in (("x", size[0]), ("y", size[1]), ("p", size[2])):
            if ev[f].min() < 0 or ev[f].max() >= lim:
                return f"{f} outside [0, {lim})"
        t = ev["t"]
        if np.any(t[1:] < t[:-1]):
            return "t decreases"
    return None

items = json.load(open(sys.argv[1]))
out = open(sys.argv[2], "a", buffering=1)
for i, path in items:
    out.write(json.dumps({"start": i}) + "\n")
    tmp = tempfile.TemporaryFile()
    saved = [os.dup(1), os.dup(2)]
    os.dup2(tmp.fileno(), 1); os.dup2(tmp.fileno(), 2)
    detail = ""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                rec = read_events(path)
                why = invariants(rec)
                kind, detail = ("ok", "") if why is None else ("violation", why)
            except EventError as e:
                kind = "error" if str(path) in str(e) else "foreign"
                detail = f"{type(e).__name__}: {e}"
            except Exception as e:
                kind, detail = "foreign", f"{type(e).__name__}: {e}"
            except BaseException as e:
                if isinstance(e, KeyboardInterrupt):
                    raise
                kind, detail = "foreign", f"{type(e).__name__}: {e}"
    finally:
        sys.stdout.flush(); sys.stderr.flush()
        os.dup2(saved[0], 1); os.dup2(saved[1], 2)
        os.close(saved[0]); os.close(saved[1])
    tmp.seek(0)
    printed = tmp.read(2000).decode("utf-8", "replace").strip()
    if kind in ("ok", "error") and (printed or caught):
        kind = "noise"
        detail = printed or str(caught[0].message)
    out.write(json.dumps({"done": i, "kind": kind, "detail": detail[:300]}) + "\n")
"""


# ---------------------------------------------------------------------------------------------
# mutations


def _header_len(data: bytes, family: str) -> int:
    """Bytes of header before the payload (0 for header-less formats)."""
    if family in ("evt2", "evt3", "dat"):
        pos = 0
        while data[pos:pos + 1] == b"%":
            end = data.find(b"\n", pos)
            if end < 0:
                break
            pos = end + 1
        return pos + (2 if family == "dat" else 0)
    if family == "aedat4":
        end = data.find(b"</dv>")
        return end + 5 if end > 0 else 14
    if family == "npy":
        return 10 + int.from_bytes(data[8:10], "little")
    return 0


def _source_bytes(rel: str, scratch: Path) -> tuple[bytes, str]:
    """The bytes of a source (``@npy:``/``@npz:`` ones are made here from a real recording)."""
    if not rel.startswith("@"):
        return (SHARED / rel).read_bytes(), Path(rel).suffix
    from spike.io import read_events, write_events

    kind, real = rel[1:].split(":", 1)
    events, size = read_events(SHARED / real)
    out = scratch / f"src_{kind}_{Path(real).stem}.{kind}"
    if kind == "npy":
        np.save(out, events)
    else:
        write_events(out, events, size, metadata={"source": real})
    return out.read_bytes(), f".{kind}"


def _specific(data: bytes, family: str, hl: int, rng) -> list[tuple[str, bytes]]:
    """The damage the issue's hostile test found, for this format family."""
    out = []
    if family in ("evt2", "evt3", "dat"):
        cut = hl - 2 if family == "dat" else hl  # DAT: keep the type/size bytes with the body
        head, body = data[:cut], data[cut:]
        for bad in (b"% Width 12x0\n", b"% width abc\n", b"% format EVT3;height=x\n",
                    b"% geometry 0x0\n", b"% t0 -5\n"):
            out.append((f"field:{bad[2:-1].decode()}", bad + data))
        out.append(("no-header", body))
        if family == "evt2" and len(body) >= 4:
            out.append(("first-word-0x25", head + b"\x25" + body[1:]))
        if family == "dat" and len(body) >= 26:
            n = (len(body) - 2) // 8
            k = int(rng.integers(1, n))
            b = bytearray(body)
            b[2 + 8 * k:2 + 8 * k + 8] = bytes(8)  # one zeroed event mid-recording
            out.append(("zeroed-event", head + bytes(b)))
        out.append(("append-8-zero", data + bytes(8)))
    if family == "aedat4":
        start = data.find(b"<dv")
        for k in range(3):
            b = bytearray(data)
            b[start + int(rng.integers(0, max(1, hl - start)))] = 0xFF  # invalid UTF-8
            out.append(("utf8-header", bytes(b)))
    if family == "npy":
        b = bytearray(data)
        b[12:20] = b"((((((((" if rng.random() < 0.5 else b"\x00\xff'\"{}[]"
        out.append(("broken-npy-header", bytes(b)))
    return out


def mutations(data: bytes, family: str, n: int, seed: int) -> list[tuple[str, bytes]]:
    """``n`` seeded mutations of ``data`` (the specific ones first, then random kinds)."""
    rng = np.random.default_rng(seed)
    hl = _header_len(data, family)
    out = _specific(data, family, hl, rng)
    out += [("empty", b""), ("header-only", data[:hl])] if hl else [("empty", b"")]
    kinds = ["truncate", "truncate-header", "flip1", "flip8", "flip-header", "xor-header",
             "zero-block", "dup-block", "append-garbage"]
    while len(out) < n:
        kind = kinds[int(rng.integers(len(kinds)))]
        b = bytearray(data)
        L = len(b)
        if kind == "truncate":
            b = b[:int(rng.integers(0, L))]
        elif kind == "truncate-header":
            b = b[:int(rng.integers(0, max(hl, 16)))]
        elif kind in ("flip1", "flip8"):
            for _ in range(1 if kind == "flip1" else 8):
                i = int(rng.integers(0, L))
                b[i] ^= 1 << int(rng.integers(0, 8))
        elif kind == "flip-header":
            i = int(rng.integers(0, max(hl, 16)))
            b[i] ^= 1 << int(rng.integers(0, 8))
        elif kind == "xor-header":  # a whole header byte inverted (faery 0.7.1 aborts on some)
            b[int(rng.integers(0, max(hl, 16)))] ^= 0xFF
        elif kind == "zero-block":
            i, k = int(rng.integers(0, L)), int(rng.integers(1, 256))
            b[i:i + k] = bytes(len(b[i:i + k]))
        elif kind == "dup-block":
            i, k, j = int(rng.integers(0, L)), int(rng.integers(1, 512)), int(rng.integers(0, L))
            b[j:j] = b[i:i + k]
        else:
            b += rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        out.append((kind, bytes(b)))
    return out[:max(n, 0)] if n < len(out) else out


# ---------------------------------------------------------------------------------------------
# runner


def _run_batch(items: list[tuple[int, str]], scratch: Path) -> dict[int, tuple[str, str]]:
    """Read every path in a child process (restarted after a crash or hang)."""
    results: dict[int, tuple[str, str]] = {}
    todo = list(items)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    while todo:
        job = scratch / "job.json"
        log = scratch / "log.jsonl"
        job.write_text(json.dumps(todo))
        log.write_text("")
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(job), str(log)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=scratch)
        seen, last = 0, time.monotonic()
        started = None
        while True:
            rc = proc.poll()
            lines = log.read_text().splitlines()
            if len(lines) > seen:
                seen, last = len(lines), time.monotonic()
            for line in lines:
                rec = json.loads(line)
                if "done" in rec:
                    results[rec["done"]] = (rec["kind"], rec["detail"])
                else:
                    started = rec["start"]
            if rc is not None:
                break
            if time.monotonic() - last > HANG_S + (30 if started is None else 0):
                proc.kill()
                proc.wait()
                rc = "hang"
                break
            time.sleep(0.05)
        output = proc.stdout.read().decode("utf-8", "replace")[-300:]
        if started is not None and started not in results:
            kind = "hang" if rc == "hang" else "crash"
            results[started] = (kind, f"exit {rc}: {output}")
        elif rc not in (0, "hang") and started is None:
            raise RuntimeError(f"fuzz child failed to start (exit {rc}): {output}")
        todo = [(i, p) for i, p in todo if i not in results]
    return results


def campaign(full: bool, scratch: Path, batch: int = 150) -> tuple[dict, list]:
    """Run the mutations; returns ``{(family, outcome): count}`` and the list of failures."""
    counts: collections.Counter = collections.Counter()
    failures = []
    serial = 0
    for k, (rel, family, n_fast, n_full) in enumerate(SOURCES):
        n = n_full if full else n_fast
        if n == 0:
            continue
        real = rel.split(":", 1)[-1]
        if not (SHARED / real).is_file():
            continue
        data, suffix = _source_bytes(rel, scratch)
        muts = mutations(data, family, n, seed=1000 + k)
        # the environment: wrong extension, a directory, a FIFO (a reader that opens it hangs)
        others = [".raw", ".dat", ".aedat4", ".bin", ".bs1", ".npy", ".npz", ".h5", ".xyz"]
        extra = [("wrong-ext" + e, data, e) for e in others if e != suffix][:3 if full else 1]
        pending: list[tuple[int, str, str]] = []
        for name, content in muts:
            serial += 1
            tag = name.replace(':', '-').replace(' ', '_')[:24]
            path = scratch / f"m{serial:05d}_{tag}{suffix}"
            path.write_bytes(content)
            pending.append((serial, str(path), name))
        for name, content, ext in extra:
            serial += 1
            path = scratch / f"m{serial:05d}_{name}{ext}"
            path.write_bytes(content)
            pending.append((serial, str(path), name))
        serial += 1
        d = scratch / f"m{serial:05d}_dir{suffix}"
        d.mkdir()
        pending.append((serial, str(d), "directory"))
        if hasattr(os, "mkfifo"):
            serial += 1
            fifo = scratch / f"m{serial:05d}_fifo{suffix}"
            os.mkfifo(fifo)
            pending.append((serial, str(fifo), "fifo"))
        for start in range(0, len(pending), batch):
            chunk = pending[start:start + batch]
            res = _run_batch([(i, p) for i, p, _ in chunk], scratch)
            for i, p, name in chunk:
                kind, detail = res[i]
                counts[family, kind] += 1
                if kind not in ("ok", "error"):
                    failures.append((family, name, p, kind, detail))
                q = Path(p)
                if q.is_dir() and not q.is_symlink():
                    q.rmdir()
                else:
                    q.unlink()
    return dict(counts), failures


def table(counts: dict) -> str:
    """Markdown table: one row per format family, one column per outcome."""
    kinds = ["ok", "error", "violation", "foreign", "noise", "crash", "hang"]
    fams = sorted({f for f, _ in counts}, key=[s[1] for s in SOURCES].index)
    rows = ["| format | mutations | " + " | ".join(kinds) + " |",
            "|---" * (len(kinds) + 2) + "|"]
    for fam in fams:
        cells = [counts.get((fam, k), 0) for k in kinds]
        rows.append(f"| {fam} | {sum(cells)} | " + " | ".join(map(str, cells)) + " |")
    tot = [sum(counts.get((f, k), 0) for f in fams) for k in kinds]
    rows.append(f"| **all** | {sum(tot)} | " + " | ".join(map(str, tot)) + " |")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------
# tests


@pytest.fixture(scope="module")
def data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("real recordings not available (../shared/data is absent)")
    return SHARED


def test_mutations_are_seeded_and_cover_every_kind():
    data = b"% evt 3.0\n% geometry 16x16\n" + bytes(range(256)) * 8
    a = mutations(data, "evt3", 60, seed=3)
    assert a == mutations(data, "evt3", 60, seed=3)
    assert a != mutations(data, "evt3", 60, seed=4)
    names = {n.split(":")[0] for n, _ in a}
    assert {"field", "no-header", "append-8-zero", "empty", "header-only", "truncate",
            "flip1", "zero-block", "dup-block", "append-garbage"} <= names
    assert all(m != data for _, m in a)


def test_harness_flags_every_bad_outcome(tmp_path, monkeypatch):
    """The classifier itself can fail: a FIFO opened naively hangs, a violation is seen."""
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros(3, [("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")]))
    monkeypatch.setattr(sys.modules[__name__], "HANG_S", 3.0)
    child = _CHILD.replace("rec = read_events(path)",
                           "rec = (np.zeros(2, EVENT_DTYPE), (0, 1, 2)) if path.endswith('v.npy') "
                           "else (open(path).read() if path.endswith('.fifo') else "
                           "(print('hello') or read_events(path)))")
    monkeypatch.setattr(sys.modules[__name__], "_CHILD", child)
    fifo = tmp_path / "x.fifo"
    os.mkfifo(fifo)
    v = tmp_path / "v.npy"
    v.write_bytes(b"")
    res = _run_batch([(1, str(bad)), (2, str(fifo)), (3, str(v))], tmp_path)
    assert res[1][0] == "noise" and "hello" in res[1][1]
    assert res[2][0] == "hang"
    assert res[3][0] == "violation" and "sensor_size" in res[3][1]


@pytest.mark.shared_data
def test_fast_fuzz_subset_has_only_clean_outcomes(data, tmp_path):
    counts, failures = campaign(full=False, scratch=tmp_path)
    assert sum(counts.values()) >= 100
    assert failures == [], "\n".join(map(str, failures[:20]))
    assert {f for f, _ in counts} == {s[1] for s in SOURCES if s[2] > 0}


@pytest.mark.slow
@pytest.mark.shared_data
def test_full_fuzz_campaign_has_only_clean_outcomes(data, tmp_path):
    counts, failures = campaign(full=True, scratch=tmp_path)
    print("\n" + table(counts))
    assert sum(counts.values()) >= 2000
    assert failures == [], "\n".join(map(str, failures[:20]))


if __name__ == "__main__":  # python tests/io/test_fuzz.py [--fast]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        counts, failures = campaign(full="--fast" not in sys.argv, scratch=Path(tmp))
        print(table(counts))
        print(f"{sum(counts.values())} mutations in {time.time() - t0:.0f} s")
        for f in failures[:40]:
            print(f)
