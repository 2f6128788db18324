"""Per-thread scratch buffers: reuse, growth, nesting, threads."""

from __future__ import annotations

import threading

import numpy as np

from edge_infer import scratch


def test_buffers_are_reused_grown_and_typed():
    with scratch.borrow() as s:
        a = s.array("x", (4, 5))
        assert a.shape == (4, 5) and a.dtype == np.float32 and a.flags.c_contiguous
        b = s.array("x", (2, 3), np.uint8)
        assert np.shares_memory(a, b)  # same name: the same memory, reused
        assert not np.shares_memory(a, s.array("y", (4, 5)))
        big = s.array("x", (100, 100))  # larger than before: grown
        big[...] = 1
        assert big.sum() == 10_000


def test_nested_borrows_get_separate_buffers_and_the_pool_is_per_thread():
    with scratch.borrow() as outer:
        with scratch.borrow() as inner:
            assert inner is not outer
            assert not np.shares_memory(outer.array("x", (8,)), inner.array("x", (8,)))
    with scratch.borrow() as again:
        assert again in (outer, inner)  # returned to this thread's pool
    seen = []

    def other_thread():
        with scratch.borrow() as s:
            seen.append(s)
        ready.set()
        done.wait(10)
        with scratch.borrow() as s:  # after release(): a new one in this thread too
            seen.append(s)

    ready, done = threading.Event(), threading.Event()
    t = threading.Thread(target=other_thread)
    t.start()
    assert ready.wait(10)
    assert seen[0] is not outer and seen[0] is not inner
    scratch.release()  # every thread's spare buffers
    done.set()
    t.join(10)
    assert len(seen) == 2 and seen[1] is not seen[0]
    with scratch.borrow() as fresh:
        assert fresh is not outer and fresh is not inner


def test_a_finished_threads_buffers_are_freed():
    import gc

    def work():
        with scratch.borrow() as s:
            s.array("x", (1000,))

    before = len(scratch._pools)
    t = threading.Thread(target=work)
    t.start()
    t.join(10)
    gc.collect()
    assert len(scratch._pools) == before
