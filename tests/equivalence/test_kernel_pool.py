"""spike.backends._pool.run_chunks: every chunk once, errors reach the caller, late helpers do nothing."""

from __future__ import annotations

import threading
import time

import pytest

from spike.backends import _pool


@pytest.mark.parametrize("nthreads", [1, 2, 4])
def test_every_chunk_runs_exactly_once(nthreads):
    seen: list[int] = []
    lock = threading.Lock()

    def run(c0, c1):
        with lock:
            seen.extend(range(c0, c1))

    for n_chunks in (1, 3, 17):
        seen.clear()
        _pool.run_chunks(run, n_chunks, nthreads)
        assert sorted(seen) == list(range(n_chunks))


def test_an_error_in_a_chunk_reaches_the_caller_after_every_claimed_chunk_finished():
    done: list[int] = []

    def run(c0, c1):
        if c0 == 2:
            raise ValueError("chunk 2")
        time.sleep(0.01)
        done.append(c0)

    with pytest.raises(ValueError, match="chunk 2"):
        _pool.run_chunks(run, 6, 2)
    assert sorted(done) == [0, 1, 3, 4, 5]  # the other chunks still ran, and had finished on return


def test_the_call_does_not_wait_for_a_helper_that_has_not_started():
    """With the helpers busy, the caller runs every chunk itself and returns; the queued job later
    finds no chunk left."""
    _pool._ensure_helpers(1)
    release = threading.Event()
    for _ in _pool._helpers:  # occupy every helper
        _pool._jobs.put(release.wait)
    try:
        ran: list[int] = []
        call = threading.Thread(target=_pool.run_chunks, args=(lambda c0, c1: ran.append(c0), 5, 2), daemon=True)
        call.start()
        call.join(timeout=5.0)  # a call that waited for a busy helper would still be running
        assert not call.is_alive() and sorted(ran) == [0, 1, 2, 3, 4]
    finally:
        release.set()
