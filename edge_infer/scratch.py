"""Reusable per-thread buffers for the intermediates of one generated block.

A 1024-map block needs about 15 MB of temporaries (uniforms, noise, latents,
decoder output, die codes). Allocated afresh on every call, glibc returns
them to the operating system when the call ends (they are the top of its
heap) and the next call faults them in again: measured 2,500 page faults
and about a third of a 1024-map ``generate``. Buffers borrowed from here are
faulted in once per thread and then reused.

Memory: a thread keeps the buffers of the largest block (or piece of one)
it generated, at most :data:`~edge_infer.generator.BLOCK_ROWS` maps (about
70 MB); the buffers go when the thread ends, or with :func:`release`.
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import Optional

import numpy as np

_local = threading.local()


class _Pool(list):
    """One thread's spare scratches (a list that can be weakly referenced)."""


# Every thread's pool, so release() reaches the generator's worker threads too;
# weak, so a finished thread's buffers are freed with it.
_pools: "weakref.WeakValueDictionary[int, _Pool]" = weakref.WeakValueDictionary()


class Scratch:
    """Named buffers, grown on demand; :meth:`array` hands out views of them."""

    __slots__ = ("_buffers", "_views")

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}
        # The view last handed out per (name, shape, dtype): repeated calls of
        # one size (a batch-1 loop) skip building it again (~3 us a buffer).
        self._views: dict[tuple, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: "np.typing.DTypeLike" = np.float32) -> np.ndarray:
        """A C-contiguous ``shape`` array of ``dtype`` (contents undefined), valid
        until the next request for ``name`` from this scratch."""
        key = (name, shape, dtype)
        view = self._views.get(key)
        if view is not None:
            return view
        dt = np.dtype(dtype)
        need = math.prod(shape) * dt.itemsize
        buf = self._buffers.get(name)
        if buf is None or buf.size < need:
            buf = self._buffers[name] = np.empty(need, dtype=np.uint8)
            self._views = {k: v for k, v in self._views.items() if k[0] != name}  # views of the old buffer
        if len(self._views) > 64:  # many sizes seen (a stream's last block, say): start over
            self._views = {}
        view = self._views[key] = buf[:need].view(dt).reshape(shape)
        return view


class borrow:
    """``with borrow() as scratch``: this thread's spare :class:`Scratch` for the block.

    A pool rather than one per thread, so a nested call in the same thread (a
    progress callback that generates, say) gets its own buffers.
    """

    __slots__ = ("_scratch",)

    def __init__(self) -> None:
        self._scratch: Optional[Scratch] = None

    def __enter__(self) -> Scratch:
        pool = getattr(_local, "pool", None)
        if pool is None:
            pool = _local.pool = _Pool()
            _pools[id(pool)] = pool
        self._scratch = pool.pop() if pool else Scratch()
        return self._scratch

    def __exit__(self, *exc: object) -> None:
        _local.pool.append(self._scratch)
        self._scratch = None


def release() -> None:
    """Drop the spare buffers of every thread (they are rebuilt on the next
    generate); buffers in use at that moment are kept until their call ends."""
    for pool in list(_pools.values()):
        pool.clear()
