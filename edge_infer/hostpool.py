"""numpy work spread over the CPU cores, between onnxruntime runs.

A generated block is noise (numpy), then the decoder (onnxruntime, on every
core), then the outline lock (numpy). numpy runs each step on one core, so
on a 2-core machine those steps left a core idle for a quarter of a
1024-map ``generate``. numpy releases the GIL inside its array loops and
random fills, so plain threads can share the work; each piece writes its own
rows, so the result does not depend on how the rows were split.

For this to pay, onnxruntime's worker threads must not spin after a run
(they would hold the cores these steps need): the generator's decoder
session stops their spinning when a run returns (``spin_after_run=False`` in
:func:`edge_infer.runtime.create_session_info`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional, TypeVar

T = TypeVar("T")

#: At most this many pieces (threads) per step.
MAX_PARTS = 4
#: Fewer rows than this per piece are not worth a thread hand-off (~30 us).
MIN_ROWS = 128

_pool: Optional[ThreadPoolExecutor] = None
_pool_lock = threading.Lock()


def _forget_pool() -> None:
    # A forked child has no pool threads: start afresh there.
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


def parts_for(rows: int, threads: Optional[int]) -> int:
    """How many pieces to split ``rows`` rows into, for a runtime given ``threads``
    intra-op threads (None: every core, like onnxruntime's default)."""
    cores = threads if threads is not None else (os.cpu_count() or 1)
    return max(1, min(MAX_PARTS, cores, rows // MIN_ROWS))


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
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=MAX_PARTS - 1, thread_name_prefix="edge-infer")
    futures: list[Future] = [_pool.submit(fn, piece) for piece in pieces[1:]]
    try:
        fn(pieces[0])
    finally:
        errors = [f.exception() for f in futures]
    for err in errors:
        if err is not None:
            raise err
