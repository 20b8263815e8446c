"""Event-file decoders and writers, measured on the real recordings in ../shared/data.

    python bench/io.py                  # agreement + read/write speed (about 1 min on 2 cores)
    python bench/io.py --mutations 60   # + each decoder on 60 damaged copies per format
    python bench/io.py --quick          # 3 repetitions, small files only

For every real file and every maintained decoder of its format (ours = ``spike.io.read_events``,
faery 0.7.1, aedat 2.3, expelliarmus 1.1, tonic 1.7's ``tonic.io``), the decoder's own output
is compared with ours (x, y, p, t) and timed (median of repetitions after a warm-up), twice:
its native output, and that output converted to what ``read_events`` returns (an int64
EVENT_DTYPE array, 32 bytes per event, which ours includes together with validation). A decoder
counts as *correct* on a file when it returns exactly our events there; ours is checked against
independent references in tests/io (the EVT3 spec oracle, aedat's SHA3 digests, tonic's N-MNIST
reader, faery where it follows the spec). The read ratio of a format is ``sum(ours) /
sum(fastest correct decoder)`` over its files, like for like (``read_ratio_vs_fastest``) and
against the native outputs (``read_ratio_vs_fastest_native``).

``--mutations`` runs each decoder, in a subprocess (faery can abort the process), on damaged
copies made by tests/io/test_fuzz.py's generator, and counts: same events as ours, different
events, events breaking the invariants (unsorted t, outside the header's sensor) without an
error, an exception, a pyo3 panic (a BaseException), printed output, a crash, a hang.

The last stdout line is one JSON object with ``"bench": "io"``, ``evt3_read_ratio_vs_fastest``,
``read_ratio_vs_fastest`` and ``read_ms`` per format, and ``write_ms`` per format (writing the
1.2 M-event EVK4 recording).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import hashlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
try:
    import spike  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from spike.core.events import EVENT_DTYPE  # noqa: E402
from spike.io import WRITE_FORMATS, read_events, write_events  # noqa: E402

SHARED = ROOT / ".." / "shared" / "data"
FILES = {
    "aedat4": ["tonic/sample.aedat4", "aestream/davis.aedat4", "aedat_pypi/test_data.aedat4"],
    "evt2": ["expelliarmus/evt2_sample.raw", "expelliarmus/sparklers.raw"],
    "evt3": ["expelliarmus/evt3_sample.raw", "expelliarmus/evt3_test_pedestrians.raw",
             "faery_pypi/evt3.raw"],
    "dat": ["tonic/sample_ncars.dat", "expelliarmus/NCARS_obj_004397_td.dat",
            "faery_pypi/gen4.dat"],
    "nmnist": ["tonic/sample_nmnist.bin", "slayerPytorch/binarySpikeTestFiles/5.bs2"],
    "bs1": ["slayerPytorch/NTIDIGITS_1.bs1"],
}
QUICK = {"aedat4": ["aestream/davis.aedat4"], "evt2": ["expelliarmus/sparklers.raw"],
         "evt3": ["expelliarmus/evt3_sample.raw"], "dat": ["tonic/sample_ncars.dat"],
         "nmnist": ["tonic/sample_nmnist.bin"], "bs1": ["slayerPytorch/NTIDIGITS_1.bs1"]}
WRITE_SOURCE = "faery_pypi/evt3.raw"

# decoder name -> (formats, source of a function path -> (x, y, t, p)); run in this process and
# in the mutation children alike
DECODERS = {
    "ours": (("aedat4", "evt2", "evt3", "dat", "nmnist", "bs1"), """
def decode(path, fmt):
    from spike.io import read_events
    ev = read_events(path, format=fmt)[0]
    return ev["x"], ev["y"], ev["t"], ev["p"]
"""),
    "faery": (("aedat4", "evt2", "evt3", "dat"), """
def decode(path, fmt):
    import faery
    import numpy as np
    chunks = list(faery.events_stream_from_file(path))
    a = np.concatenate(chunks) if chunks else np.empty(0, faery.EVENTS_DTYPE)
    return a["x"], a["y"], a["t"], a["on"]
"""),
    "aedat": (("aedat4",), """
def decode(path, fmt):
    import aedat
    import numpy as np
    d = aedat.Decoder(str(path))
    sid = min(i for i, s in d.id_to_stream().items() if s["type"] == "events")
    chunks = [p["events"] for p in d if p["stream_id"] == sid and "events" in p]
    a = np.frombuffer(b"".join(chunks), chunks[0].dtype) if chunks else None
    if a is None:
        return (np.zeros(0, np.int64),) * 4
    return a["x"], a["y"], a["t"], a["on"]
"""),
    "expelliarmus": (("evt2", "evt3", "dat"), """
def decode(path, fmt):
    import numpy as np
    from expelliarmus import Wizard
    a = Wizard(encoding=fmt).read(path)
    if a is None:
        return (np.zeros(0, np.int64),) * 4
    return a["x"], a["y"], a["t"], a["p"]
"""),
    "tonic": (("aedat4", "nmnist"), """
def decode(path, fmt):
    import tonic.io
    if fmt == "aedat4":
        a = tonic.io.read_aedat4(str(path))
        return a["x"], a["y"], a["t"], a["on"]
    import numpy as np
    dt = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
    a = tonic.io.read_mnist_file(str(path), dt)
    return a["x"], a["y"], a["t"], a["p"]
"""),
}


def _decoder(name: str):
    ns: dict = {}
    exec(DECODERS[name][1], ns)  # noqa: S102 - our own source, shared with the children
    return ns["decode"]


def _available(name: str) -> bool:
    mod = {"ours": "spike", "tonic": "tonic.io"}.get(name, name)
    return importlib.util.find_spec(mod.split(".")[0]) is not None


def _digest(cols) -> str:
    h = hashlib.sha1()
    for c in cols:
        h.update(np.ascontiguousarray(np.asarray(c, dtype=np.int64)).tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def _quiet():
    """Send fd 1 to /dev/null, flushing C's stdio buffer before restoring it."""
    sys.stdout.flush()
    old = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            ctypes.CDLL(None).fflush(None)
            os.dup2(old, 1)
            os.close(old)


def _median_ms(fn, reps: int) -> float:  # noqa: D103
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts)


# ---------------------------------------------------------------------------------------------
# agreement and speed


def bench_reads(files: dict, reps: int) -> tuple[list[dict], dict, dict, dict]:
    rows = []
    for fmt, rels in files.items():
        for rel in rels:
            path = SHARED / rel
            if not path.is_file():
                continue
            ref = _digest(_decoder("ours")(path, fmt))
            runs, file_rows = {}, {}
            for name, (fmts, _) in DECODERS.items():
                if fmt not in fmts or not _available(name):
                    continue
                dec = _decoder(name)
                try:
                    with _quiet():  # expelliarmus prints on stdout
                        cols = dec(path, fmt)  # also the warm-up
                    status, n = ("same" if _digest(cols) == ref else "differs"), len(cols[0])
                    runs[name] = dec
                except Exception as e:  # noqa: BLE001 - a decoder that cannot read the file
                    status, n = f"error: {type(e).__name__}: {str(e)[:60]}", 0
                file_rows[name] = {"format": fmt, "file": rel, "decoder": name, "status": status,
                                   "events": n, "ms": float("nan"), "to_events_ms": float("nan")}
            times: dict = collections.defaultdict(list)
            for rep in range(reps):  # interleaved: every decoder once per round, rotating order
                names = list(runs)
                names = names[rep % len(names):] + names[:rep % len(names)]
                for name in names:
                    dec = runs[name]
                    with _quiet():
                        t0 = time.perf_counter()
                        cols = dec(path, fmt)
                        t1 = time.perf_counter()
                        if name != "ours":
                            _as_events(cols)
                        t2 = time.perf_counter()
                    times[name].append((t1 - t0, t2 - t0))
            for name, ts in times.items():
                file_rows[name]["ms"] = 1e3 * statistics.median(a for a, _ in ts)
                file_rows[name]["to_events_ms"] = (file_rows[name]["ms"] if name == "ours" else
                                                   1e3 * statistics.median(b for _, b in ts))
            rows += file_rows.values()
    ratio, native, read_ms = {}, {}, {}
    for fmt in files:
        ours = [r for r in rows if r["format"] == fmt and r["decoder"] == "ours"]
        if not ours:
            continue
        total_ours = sum(r["ms"] for r in ours)
        best = best_native = 0.0
        for r in ours:
            same = [s for s in rows if s["file"] == r["file"] and s["status"] == "same"]
            best += min(s["to_events_ms"] for s in same)
            best_native += min(s["ms"] for s in same)
        ratio[fmt] = round(total_ours / best, 3)
        native[fmt] = round(total_ours / best_native, 3)
        read_ms[fmt] = round(total_ours, 2)
    return rows, ratio, native, read_ms


def _as_events(cols) -> np.ndarray:
    """A decoder's columns as what ``read_events`` returns (the like-for-like comparison)."""
    ev = np.empty(len(cols[0]), EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = cols
    return ev


def bench_writes(reps: int) -> tuple[list[dict], dict]:
    events, size = read_events(SHARED / WRITE_SOURCE)
    ext = {"aedat4": ".aedat4", "evt2": ".raw", "evt3": ".raw", "dat": ".dat", "hdf5": ".h5",
           "npz": ".npz"}
    rows, write_ms = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in WRITE_FORMATS:
            out = Path(tmp) / f"w{ext[fmt]}"
            write_events(out, events, size, format=fmt)  # warm-up (imports faery / h5py)
            ms = _median_ms(lambda: write_events(out, events, size, format=fmt), reps)
            read_back = _median_ms(lambda: read_events(out, format=fmt), reps)
            back = read_events(out, format=fmt)[0]
            same = all(np.array_equal(back[f], events[f]) for f in "xytp")
            rows.append({"format": fmt, "ms": ms, "MB": out.stat().st_size / 1e6,
                         "read_back_ms": read_back, "identical": same})
            write_ms[fmt] = round(ms, 1)
    return rows, write_ms


# ---------------------------------------------------------------------------------------------
# behaviour on damaged files

_CHILD = r"""
import hashlib, json, os, sys, tempfile
import numpy as np
exec(sys.argv[3])
fmt = sys.argv[4]
items = json.load(open(sys.argv[1]))
out = open(sys.argv[2], "a", buffering=1)
for i, path in items:
    out.write(json.dumps({"start": i}) + "\n")
    tmp = tempfile.TemporaryFile()
    saved = [os.dup(1), os.dup(2)]
    os.dup2(tmp.fileno(), 1); os.dup2(tmp.fileno(), 2)
    rec = {"done": i}
    try:
        cols = decode(path, fmt)
        h = hashlib.sha1()
        for c in cols:
            h.update(np.ascontiguousarray(np.asarray(c, dtype=np.int64)).tobytes())
        t = np.asarray(cols[2], np.int64)
        rec.update(kind="ok", digest=h.hexdigest(), n=len(t),
                   sorted=bool(np.all(t[1:] >= t[:-1])),
                   xmax=int(np.max(cols[0])) if len(t) else -1,
                   ymax=int(np.max(cols[1])) if len(t) else -1)
    except Exception as e:
        rec.update(kind="exception", detail=type(e).__name__)
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        rec.update(kind="panic" if type(e).__name__ == "PanicException" else "exception",
                   detail=type(e).__name__)
    finally:
        try:
            import ctypes
            ctypes.CDLL(None).fflush(None)
        except Exception:
            pass
        os.dup2(saved[0], 1); os.dup2(saved[1], 2)
    tmp.seek(0)
    rec["printed"] = bool(tmp.read(1))
    out.write(json.dumps(rec) + "\n")
"""


def _run_child(name: str, fmt: str, items: list, scratch: Path, hang_s: float = 20.0) -> dict:
    results: dict = {}
    todo = list(items)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    while todo:
        job, log = scratch / "job.json", scratch / "log.jsonl"
        job.write_text(json.dumps(todo))
        log.write_text("")
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(job), str(log),
                                 DECODERS[name][1], fmt], env=env, cwd=scratch,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started, last, seen = None, time.monotonic(), 0
        while True:
            rc = proc.poll()
            lines = log.read_text().splitlines()
            if len(lines) > seen:
                seen, last = len(lines), time.monotonic()
            for line in lines:
                rec = json.loads(line)
                if "done" in rec:
                    results[rec["done"]] = rec
                else:
                    started = rec["start"]
            if rc is not None:
                break
            if time.monotonic() - last > hang_s + (40 if started is None else 0):
                proc.kill()
                proc.wait()
                rc = "hang"
                break
            time.sleep(0.05)
        if started is not None and started not in results:
            results[started] = {"kind": "hang" if rc == "hang" else "crash"}
        elif started is None:
            break
        todo = [(i, p) for i, p in todo if i not in results]
    return results


def bench_mutations(n: int, scratch: Path) -> dict:
    spec = importlib.util.spec_from_file_location("fuzz", ROOT / "tests" / "io" / "test_fuzz.py")
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    src = {"aedat4": "aestream/davis.aedat4", "evt2": "expelliarmus/evt2_sample.raw",
           "evt3": "expelliarmus/evt3_test_pedestrians.raw", "dat": "tonic/sample_ncars.dat",
           "nmnist": "tonic/sample_nmnist.bin"}
    table: dict = {}
    for k, (fmt, rel) in enumerate(src.items()):
        path = SHARED / rel
        if not path.is_file():
            continue
        _, sensor = read_events(path)
        if fmt in ("dat", "nmnist") and path.name.startswith(("sample", "NCARS")):
            sensor = (2**31, 2**31)  # no sensor size in these files: only time order is checked
        suffix = path.suffix
        raw = path.read_bytes()
        muts = fuzz.mutations(raw, fmt, n, 77 + k)
        if fmt == "aedat4":  # every 23rd header byte inverted: where faery 0.7.1 aborts
            end = raw.find(b"</dv>") + 5
            muts += [("xor", raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1:])
                     for i in range(14, end, 23)]
        items = []
        for j, (mname, content) in enumerate(muts):
            p = scratch / f"{fmt}_{j:04d}{suffix}"
            p.write_bytes(content)
            items.append((j, str(p)))
        base = _run_child("ours", fmt, items, scratch)
        for name, (fmts, _) in DECODERS.items():
            if fmt not in fmts or not _available(name):
                continue
            res = base if name == "ours" else _run_child(name, fmt, items, scratch)
            c: collections.Counter = collections.Counter()
            for j, _ in items:
                r = res.get(j, {"kind": "crash"})
                kind = r["kind"]
                if kind == "ok":
                    ours = base.get(j, {})
                    if not r["sorted"] or r["xmax"] >= sensor[0] or r["ymax"] >= sensor[1]:
                        kind = "invalid, no error"
                    elif ours.get("kind") == "ok":
                        kind = "same as ours" if ours["digest"] == r["digest"] else "differs"
                    else:
                        kind = "data where ours errs"
                c[kind] += 1
                if r.get("printed"):
                    c["printed"] += 1
            table[fmt, name] = dict(c)
        for _, p in items:
            Path(p).unlink()
    return table


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 repetitions, one small file per format")
    ap.add_argument("--mutations", type=int, default=0, help="damaged copies per format (0: skip)")
    args = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit("bench/io.py needs the real recordings in ../shared/data")
    reps = 3 if args.quick else 7
    rows, ratio, native, read_ms = bench_reads(QUICK if args.quick else FILES, reps)
    print("| format | file | decoder | events | native ms | to EVENT_DTYPE ms | vs ours |")
    print("|---|---|---|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['format']} | {r['file']} | {r['decoder']} | {r['events']} | "
              f"{r['ms']:.1f} | {r['to_events_ms']:.1f} | {r['status']} |")
    wrows, write_ms = bench_writes(reps)
    print("\n| write format | ms (1.2 M events) | MB | read back ms | identical |")
    print("|---|---:|---:|---:|---|")
    for r in wrows:
        print(f"| {r['format']} | {r['ms']:.1f} | {r['MB']:.1f} | {r['read_back_ms']:.1f} | "
              f"{r['identical']} |")
    result = {"bench": "io", "evt3_read_ratio_vs_fastest": ratio.get("evt3"),
              "evt3_read_ratio_vs_fastest_native": native.get("evt3"),
              "read_ratio_vs_fastest": ratio, "read_ratio_vs_fastest_native": native,
              "read_ms": read_ms, "write_ms": write_ms}
    if args.mutations:
        with tempfile.TemporaryDirectory() as tmp:
            table = bench_mutations(args.mutations, Path(tmp))
        kinds = ["same as ours", "differs", "data where ours errs", "invalid, no error",
                 "exception", "panic", "crash", "hang", "printed"]
        print("\n| format | decoder | " + " | ".join(kinds) + " |")
        print("|---" * (len(kinds) + 2) + "|")
        for (fmt, name), c in table.items():
            print(f"| {fmt} | {name} | " + " | ".join(str(c.get(k, 0)) for k in kinds) + " |")
        result["mutations_per_format"] = args.mutations
        result["mutation_crashes"] = {f"{f}/{n}": c.get("crash", 0) for (f, n), c in table.items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
