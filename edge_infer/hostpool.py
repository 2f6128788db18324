"""Generated blocks cut into pieces that run side by side on the CPU cores.

A generated block is noise (numpy), the decoder (onnxruntime), then the
outline lock (numpy). numpy runs each of its steps on one core, and
onnxruntime's own threads synchronise at every node. On the CPU the
generator instead cuts a block of 256 rows or more into one piece per core
and runs each piece end to end -- noise, the single-threaded decoder
session, lock -- on its own thread: numpy releases the GIL inside its array
loops and random fills, and onnxruntime inside ``run``. Each piece writes
only its own rows, and noise is keyed by row, so the maps do not depend on
the cut. Measured on 2 cores, ``generate('None', 1024)``: 18.8-19.3 ms
against 19.9-21.1 ms for only the numpy steps split over threads around
one 2-thread decoder run (see docs/performance.md).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Optional, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

T = TypeVar("T")

#: At most this many pieces (threads) per block.
MAX_PARTS = 32
#: Fewer rows than this per piece are not worth a thread of their own: below
#: it the decoder's own threads do better.
MIN_ROWS = 128

_pool: "Optional[ThreadPoolExecutor]" = None
_pool_lock = threading.Lock()


def _forget_pool() -> None:
    # A forked child has no pool threads: start afresh there.
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


def parts_for(rows: int, threads: Optional[int]) -> int:
    """How many pieces to split ``rows`` rows into, for a runtime given ``threads``
    threads (None: every usable core, like onnxruntime's default)."""
    cores = threads if threads is not None else usable_cores()
    return max(1, min(MAX_PARTS, cores, rows // MIN_ROWS))


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def split(start: int, stop: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """``[start, stop)`` cut into ``parts`` near-equal ranges whose inner edges are
    multiples of ``align`` (so no range splits an aligned unit of rows)."""
    units = -(-(stop - start) // align)
    parts = max(1, min(parts, units))
    edges = [start + (units * i // parts) * align for i in range(parts)] + [stop]
    return [(edges[i], min(edges[i + 1], stop)) for i in range(parts) if edges[i] < min(edges[i + 1], stop)]


def pieces(start: int, stop: int, threads: Optional[int], align: int = 1) -> Sequence[tuple[int, int]]:
    """Rows ``[start, stop)`` as the pieces to hand to :func:`for_each`:
    :func:`split` into :func:`parts_for` parts (one piece, at once, for small calls)."""
    if stop - start < 2 * MIN_ROWS:
        return ((start, stop),)
    return split(start, stop, parts_for(stop - start, threads), align)


def for_each(fn: Callable[[T], None], pieces: Sequence[T]) -> None:
    """``fn(piece)`` for every piece: the first here, the others on the pool at
    the same time. Returns when all are done; re-raises the first error."""
    if len(pieces) <= 1:
        for piece in pieces:
            fn(piece)
        return
    global _pool
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor  # lazy: most CLI runs never need it

        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=MAX_PARTS - 1, thread_name_prefix="edge-infer")
    futures: "list[Future]" = [_pool.submit(fn, piece) for piece in pieces[1:]]
    try:
        fn(pieces[0])
    finally:
        errors = [f.exception() for f in futures]
    for err in errors:
        if err is not None:
            raise err
