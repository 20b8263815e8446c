"""One way for the numba backends to split a kernel over threads: :func:`run_chunks`.

The kernels release the GIL, so plain Python threads run them in parallel. Two costs made the
earlier per-call threads slow inside a training step, both measured on the 2-core benchmark machine:
starting and joining threads on every call, and, worse, waiting at ``join`` for a thread that the OS
had not scheduled yet because torch's OpenMP workers were still spinning on the other core after the
preceding matmul (a LIF call right after a matmul took 13.1 ms on 2 threads and 6.8 ms on one).

Here the helper threads live in a small persistent pool, and a call waits only for the chunks that some
thread has *claimed*: the calling thread works through the chunks itself, a helper that starts late finds
none left and goes back to sleep, and the call returns as soon as every chunk is done. The result does
not depend on which thread ran which chunk (each chunk writes its own outputs).
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from typing import Callable

__all__ = ["run_chunks"]

_jobs: queue.SimpleQueue = queue.SimpleQueue()
_helpers: list[threading.Thread] = []
_helpers_lock = threading.Lock()


def _helper() -> None:
    while True:
        _jobs.get()()


def _ensure_helpers(n: int) -> None:
    with _helpers_lock:
        while len(_helpers) < n:
            t = threading.Thread(target=_helper, name=f"spike-kernel-{len(_helpers)}", daemon=True)
            t.start()
            _helpers.append(t)


def _after_fork() -> None:  # a forked child (DataLoader worker) has none of the parent's threads
    global _jobs, _helpers_lock
    _jobs = queue.SimpleQueue()
    _helpers.clear()
    _helpers_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def run_chunks(run: Callable[[int, int], None], n_chunks: int, nthreads: int) -> None:
    """``run(c, c + 1)`` for every chunk ``c`` in ``[0, n_chunks)`` on up to ``nthreads`` threads
    (the caller's included); one thread: ``run(0, n_chunks)``. Returns when every chunk is done and
    re-raises the first exception a chunk raised."""
    nthreads = min(nthreads, n_chunks)
    if nthreads <= 1:
        run(0, n_chunks)
        return
    counter = itertools.count()  # next() is atomic under the GIL
    state = {"done": 0, "error": None}
    cond = threading.Condition()

    def work() -> None:
        for c in iter(counter.__next__, -1):
            if c >= n_chunks:
                return
            try:
                run(c, c + 1)
            except BaseException as e:  # noqa: BLE001 - handed to the caller below
                with cond:
                    state["error"] = state["error"] or e
            finally:
                with cond:
                    state["done"] += 1
                    if state["done"] == n_chunks:
                        cond.notify_all()

    _ensure_helpers(nthreads - 1)
    for _ in range(nthreads - 1):
        _jobs.put(work)
    work()
    with cond:
        cond.wait_for(lambda: state["done"] >= n_chunks)
    if state["error"] is not None:
        raise state["error"]
