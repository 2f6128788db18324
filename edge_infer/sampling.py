"""Randomness: source choice, class mixing and latent noise. Pure numpy.

Every random draw comes from a stream keyed by the call's seed; nothing uses
global random state, so concurrent calls never disturb each other and the
same seed always gives the same maps.

Seeds are organised so that streaming and in-memory generation agree: the
seed becomes a root key (:func:`root_seed`), and each stream is the PCG64
generator keyed by a hash of the root and the stream's name
(:class:`Stream`): the per-row plan (which source) from :func:`plan_stream`,
mixing partners and weights from :func:`mix_stream`, and the noise for rows
``[k·NOISE_ROWS, (k+1)·NOISE_ROWS)`` of the output from :func:`noise_stream`
``(root, k)`` -- whatever block size the caller processes with and however
many threads share the work. Normal values come from
:func:`standard_normals` (Box–Muller).

Noise
-----
* ``"relative"`` (default): σ for latent channel c is ``strength × std[c]``,
  the bank's per-channel latent std (manifest ``latent_stats.overall.std``).
* ``"course"``: the course exercise's absolute schedule, σ = (k+1)/10 for the
  k-th of 5 variants (k = variant index mod 5); ``strength`` is ignored.

Methods
-------
* ``"noise"``: source latent + noise.
* ``"mix"``: ``(1-t)·z_a + t·z_b`` with ``t ~ U(0.25, 0.75)``, ``z_b`` another
  source of the same class -- one with the same wafer outline where there is
  one -- then + noise. The map keeps source a's outline. A class with a single
  source (Donut in the course data) cannot mix: its rows fall back to noise
  and :func:`choose_partners` reports them (the generator warns with
  :class:`MixFallback`).

Siblings
--------
With relative noise no two variants of one source are identical: a variant
equal to an earlier sibling is redrawn with σ grown by :data:`REDRAW_GROWTH`
per attempt, from :func:`redraw_stream` ``(root, row, attempt)``, so the result
does not depend on how the output is chunked. The course mode is left as the
course had it.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
import threading
from typing import Optional, Union

import numpy as np

from .errors import InputError

#: Relative noise strength used when neither the caller nor the bundle says.
DEFAULT_NOISE_STRENGTH: float = 0.4
METHODS: tuple[str, ...] = ("noise", "mix")
MODES: tuple[str, ...] = ("relative", "course")
#: Rows per noise stream: the unit of the seed schedule (see the module docstring).
NOISE_ROWS = 128
#: Mixing weight range for the partner's latent.
MIX_RANGE = (0.25, 0.75)
COURSE_VARIANTS = 5

SeedLike = Union[None, int, np.random.SeedSequence]


class MixFallback(UserWarning):
    """A class had a single source, so ``mix`` used noise alone for it."""


#: A call's root key: 32 bytes from which every stream of the call is derived.
RootKey = bytes
_ROOT_PERSON = b"edge-infer/root"
_STREAM_PERSON = b"edge-infer/strm"
# Stream families (the first word of a stream's key).
PLAN, NOISE, MIX, REDRAW = 0, 1, 2, 3


def root_seed(seed: SeedLike) -> RootKey:
    """The root key of a call's streams; ``None`` draws fresh OS entropy.

    An int seed is hashed (BLAKE2b), so nearby seeds give unrelated streams; a
    ``numpy.random.SeedSequence`` (e.g. one of ``SeedSequence(s).spawn(k)``)
    contributes its generated state, spawn key included.
    """
    if seed is None:
        return os.urandom(32)
    if isinstance(seed, np.random.SeedSequence):
        return hashlib.blake2b(seed.generate_state(8, np.uint32).tobytes(), digest_size=32, person=_ROOT_PERSON).digest()
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, not {seed!r}")
    seed = int(seed)
    return hashlib.blake2b(seed.to_bytes((seed.bit_length() + 8) // 8, "little"), digest_size=32, person=_ROOT_PERSON).digest()


_local = threading.local()


class Stream:
    """``with Stream(root, *key) as rng``: the random stream ``key`` of ``root``.

    ``rng`` is a ``numpy.random.Generator`` (PCG64) whose state and increment
    are a BLAKE2b hash of ``root`` and ``key``: the same (root, key) always
    gives the same stream, different keys unrelated ones, and no stream
    depends on what other streams drew. (numpy's ``SeedSequence`` does the
    same job, but building it and a fresh PCG64 costs ~15 us, and the fresh
    object slows the next onnxruntime call by ~10 us: too much for a batch-1
    generate whose decoder runs in ~40 us.) So generators are reused from a
    per-thread pool and re-keyed on entry; use ``rng`` only inside the block.
    """

    __slots__ = ("_root", "_key", "_rng")

    def __init__(self, root: RootKey, *key: int) -> None:
        self._root = root
        self._key = key
        self._rng: Optional[np.random.Generator] = None

    def __enter__(self) -> np.random.Generator:
        pool = getattr(_local, "pool", None)
        if pool is None:
            pool = _local.pool = []
        rng = pool.pop() if pool else np.random.Generator(np.random.PCG64())
        digest = hashlib.blake2b(
            self._root + struct.pack(f"<{len(self._key)}Q", *self._key), digest_size=32, person=_STREAM_PERSON
        ).digest()
        rng.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": int.from_bytes(digest[:16], "little"), "inc": int.from_bytes(digest[16:], "little") | 1},
            "has_uint32": 0,
            "uinteger": 0,
        }
        self._rng = rng
        return rng

    def __exit__(self, *exc: object) -> None:
        _local.pool.append(self._rng)
        self._rng = None


def plan_stream(root: RootKey) -> Stream:
    """The per-row plan (which source each row comes from)."""
    return Stream(root, PLAN)


def mix_stream(root: RootKey) -> Stream:
    """Mixing partners and weights: its own stream, so choosing ``method="mix"``
    never changes which sources are picked."""
    return Stream(root, MIX)


def noise_stream(root: RootKey, chunk: int) -> Stream:
    """The noise of output rows ``[chunk·NOISE_ROWS, (chunk+1)·NOISE_ROWS)``."""
    return Stream(root, NOISE, int(chunk))


#: A variant that comes out identical to a sibling (same source) is redrawn with
#: its relative noise grown by this factor per attempt, at most MAX_REDRAWS times.
#: Near-saturated sources (a wafer that is all defect) need it: moderate noise
#: cannot move their decoder output off the saturated state.
REDRAW_GROWTH = 1.5
MAX_REDRAWS = 8


def redraw_stream(root: RootKey, row: int, attempt: int) -> Stream:
    """Redrawing row ``row`` of a call on attempt ``attempt``.

    Keyed by the row's place in the whole output, not by its noise block, so
    in-memory and streamed generation redraw the same rows the same way.
    """
    return Stream(root, REDRAW, int(row), int(attempt))


# Fixed odd 64-bit weights: a map's key is a weighted sum of its packed bits
# mod 2**64, so two different maps share a key with probability ~2**-63.
_KEY_WORDS = 32  # 26*26*3 one-hot bits = 254 bytes, zero-padded to 32 uint64 words
_KEY_WEIGHTS = np.random.default_rng(0x51B1).integers(1, 2**62, size=_KEY_WORDS, dtype=np.uint64) | np.uint64(1)
_SOURCE_MIX = np.uint64(0x9E3779B97F4A7C15)


def sibling_keys(sources: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """A 64-bit key per row: equal for rows with the same source and the same map.

    ``maps``: one-hot ``(n, 26, 26, 3)``. A collision of keys only costs a
    needless (still deterministic) redraw. The one-hot bits are packed first
    (32 words a map rather than 676 dies): this runs on every generated block.
    """
    n = int(sources.shape[0])
    packed = np.zeros((n, _KEY_WORDS * 8), dtype=np.uint8)
    packed[:, :254] = np.packbits(maps.reshape(n, -1) != 0, axis=1)
    words = packed.view(np.uint64)
    with np.errstate(over="ignore"):
        keys = (words * _KEY_WEIGHTS).sum(axis=1, dtype=np.uint64)
        return keys ^ (np.asarray(sources, dtype=np.uint64) * _SOURCE_MIX)


def repeated_rows(keys: np.ndarray, seen: Optional[set] = None) -> np.ndarray:
    """Indices of rows whose key appeared earlier: in ``keys`` or in ``seen``.

    The first of each group of equal keys is kept (unless ``seen`` already
    has it); the rest are returned in row order.
    """
    n = int(keys.shape[0])
    repeated = np.ones(n, dtype=bool)
    repeated[np.unique(keys, return_index=True)[1]] = False
    if seen:
        repeated |= np.fromiter((int(k) in seen for k in keys), dtype=bool, count=n)
    return np.flatnonzero(repeated)


def check_strength(strength: float) -> float:
    """A finite strength > 0 (zero noise would make sibling variants identical)."""
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise InputError(f"strength must be a number, not {strength!r}") from None
    if not math.isfinite(value) or value <= 0:  # math, not numpy: ~1 us less per call
        raise InputError(f"strength must be a finite number > 0, not {strength!r}")
    return value


def check_choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    """``value`` lower-cased if it is one of ``allowed``, else InputError."""
    v = str(value).strip().lower()
    if v not in allowed:
        raise InputError(f"unknown {what} {value!r}; choose one of: {', '.join(allowed)}")
    return v


def choose_sources(
    candidates: np.ndarray, n: int, rng: np.random.Generator, *, pin: Optional[int] = None
) -> np.ndarray:
    """``n`` source indices drawn from ``candidates``.

    A seeded random order of the candidates, cycled, so ``n ≤ len`` gives
    distinct sources and every source is used about equally often; a larger
    ``n`` keeps the first rows of a smaller one. ``pin`` fixes every row to
    one source.
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    if pin is not None:
        return np.full(n, int(pin), dtype=np.int64)
    if candidates.size == 0:
        raise InputError("no source maps to generate from")
    # A random key per candidate; sources are the candidates in key order. Same
    # result as the first n of a random permutation, but a single source (every
    # batch-1 call) needs only the smallest key: argmin, not a sort. Ties (never,
    # in practice) go to the lower index either way, so both paths agree.
    keys = rng.random(candidates.size)
    if n == 1:
        return candidates[[int(keys.argmin())]]
    order = candidates[keys.argsort(kind="stable")]
    return order[:n] if n <= order.size else np.resize(order, n)


def choose_partners(
    sources: np.ndarray,
    labels: np.ndarray,
    outline_ids: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """A mixing partner for every row: same class, not itself, same outline if possible.

    Returns ``(partners, alone)``: ``alone`` marks rows whose class has no
    other source; their partner is themselves (so mixing is a no-op and only
    noise varies them).
    """
    sources = np.asarray(sources, dtype=np.int64)
    labels = np.asarray(labels)
    outline_ids = np.asarray(outline_ids)
    partners = sources.copy()
    alone = np.zeros(sources.shape, dtype=bool)
    # Work group by group (class, outline), vectorised inside each group.
    keys = np.stack([labels[sources], outline_ids[sources]], axis=1)
    for cls, oid in np.unique(keys, axis=0):
        rows = np.flatnonzero((keys[:, 0] == cls) & (keys[:, 1] == oid))
        same = np.flatnonzero((labels == cls) & (outline_ids == oid))
        pool = same if same.size >= 2 else np.flatnonzero(labels == cls)
        if pool.size < 2:
            alone[rows] = True
            continue
        own = sources[rows]
        # Draw among pool minus the row's own source: an index into pool of size m-1,
        # shifted past the source's own position (pool is sorted).
        pos = np.searchsorted(pool, own)
        in_pool = (pos < pool.size) & (pool[np.minimum(pos, pool.size - 1)] == own)
        draw = rng.integers(0, pool.size - 1, size=rows.size)
        draw = np.where(in_pool & (draw >= pos), draw + 1, draw)
        partners[rows] = pool[draw]
    return partners, alone


def mix_weights(n: int, rng: np.random.Generator) -> np.ndarray:
    """Partner weights ``t ~ U(0.25, 0.75)``, float32 ``(n,)``."""
    return rng.uniform(*MIX_RANGE, size=n).astype(np.float32)


def mix_latents(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Convex mix ``(1-t)·a + t·b`` row by row (``t`` shape ``(n,)``)."""
    t = np.asarray(t, dtype=np.float32).reshape(-1, *([1] * (np.ndim(a) - 1)))
    return ((1 - t) * a + t * b).astype(np.float32)


def noise_sigma(mode: str, strength: float, std: np.ndarray, variants: np.ndarray) -> np.ndarray:
    """σ per row and latent channel, float32, shaped to broadcast over latents ``(n, C, H, W)``.

    ``relative``: ``strength × std[c]``, shape ``(1, C, 1, 1)`` (the same for
    every row); ``course``: ``(variant mod 5 + 1) / 10``, shape ``(n, 1, 1, 1)``.
    Only the axes σ varies along are materialised: this runs on every call.
    """
    if mode == "course":
        variants = np.asarray(variants, dtype=np.int64)
        sigma = ((variants % COURSE_VARIANTS) + 1).astype(np.float32) / 10
        return sigma.reshape(-1, 1, 1, 1)
    if mode == "relative":
        sigma = np.float32(strength) * np.asarray(std, dtype=np.float32)
        return sigma.reshape(1, -1, 1, 1)
    raise InputError(f"unknown noise mode {mode!r}; choose one of: {', '.join(MODES)}")


_TWO_PI = np.float32(2 * np.pi)
_ONE = np.float32(1)
_MINUS_TWO = np.float32(-2)


def standard_normals(
    rng: np.random.Generator,
    rows: int,
    width: int,
    *,
    out: Optional[np.ndarray] = None,
    work: Optional[np.ndarray] = None,
) -> np.ndarray:
    """float32 ``(rows, width)`` of independent N(0, 1) values (``width`` even).

    Box–Muller on float32 uniforms: about 3x faster than numpy's float32
    ziggurat, which was a fifth of a 1024-map generate. Row ``i`` uses only
    the ``i``-th ``width`` uniforms of the stream, so a longer draw begins
    with the rows of a shorter one. ``1 - u`` lies in ``(0, 1]``, so every
    value is finite; float32 uniforms have 24 bits, so ``|z| <= 5.77``
    (a normal exceeds that with probability 8e-9). ``out`` (the result) and
    ``work`` (the uniforms): optional float32 buffers of ``rows·width`` values.
    """
    if width % 2:
        raise ValueError("width must be even")
    half = width // 2
    if work is None:
        u = rng.random((rows, 2, half), dtype=np.float32)
    else:
        u = rng.random(dtype=np.float32, out=work.reshape(rows, 2, half))
    radius, angle = u[:, 0], u[:, 1]
    np.subtract(_ONE, radius, out=radius)
    np.log(radius, out=radius)
    np.multiply(radius, _MINUS_TWO, out=radius)
    np.sqrt(radius, out=radius)
    np.multiply(angle, _TWO_PI, out=angle)
    out = np.empty((rows, 2, half), dtype=np.float32) if out is None else out.reshape(rows, 2, half)
    np.cos(angle, out=out[:, 0])
    np.sin(angle, out=out[:, 1])
    np.multiply(out, radius[:, None, :], out=out)
    return out.reshape(rows, width)


def add_noise(
    latents: np.ndarray,
    sigma: np.ndarray,
    rng: np.random.Generator,
    *,
    out: Optional[np.ndarray] = None,
    work: Optional[np.ndarray] = None,
) -> np.ndarray:
    """``latents + σ·N(0, 1)``, element by element, float32 (a new array, or ``out``).

    Row ``i``'s noise is the ``i``-th row of :func:`standard_normals`;
    ``out``/``work`` as there (``out`` may not overlap ``latents``).
    """
    n = int(latents.shape[0])
    noise = standard_normals(rng, n, math.prod(latents.shape[1:]), out=out, work=work).reshape(latents.shape)
    sigma = np.asarray(sigma)
    if latents.dtype != np.float32 or sigma.dtype != np.float32:
        return (latents + noise * sigma).astype(np.float32, copy=False)
    # In place in the fresh noise array: the same float32 operations as
    # latents + noise·σ (so the same bits), without two temporaries.
    noise *= sigma
    noise += latents
    return noise
