"""Randomness: source choice, class mixing and latent noise. Pure numpy.

Every random draw comes from a ``numpy.random.Generator`` built for that call
from a seed; nothing uses global random state, so concurrent calls never
disturb each other and the same seed always gives the same maps.

Seeds are organised so that streaming and in-memory generation agree: the
per-row plan (which source) comes from :func:`plan_rng`, mixing partners and
weights from :func:`mix_rng`, and the noise for rows ``[b·RNG_BLOCK, (b+1)·RNG_BLOCK)``
comes from :func:`block_rng` ``(root, b)`` -- whatever chunk size the caller
processes with.

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
per attempt, from :func:`redraw_rng` ``(root, row, attempt)``, so the result
does not depend on how the output is chunked. The course mode is left as the
course had it.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import numpy as np

from .errors import InputError

#: Relative noise strength used when neither the caller nor the bundle says.
DEFAULT_NOISE_STRENGTH: float = 0.4
METHODS: tuple[str, ...] = ("noise", "mix")
MODES: tuple[str, ...] = ("relative", "course")
#: Rows per noise block: the unit of the seed schedule (see the module docstring).
RNG_BLOCK = 4096
#: Mixing weight range for the partner's latent.
MIX_RANGE = (0.25, 0.75)
COURSE_VARIANTS = 5

SeedLike = Union[None, int, np.random.SeedSequence]


class MixFallback(UserWarning):
    """A class had a single source, so ``mix`` used noise alone for it."""


def root_seed(seed: SeedLike) -> np.random.SeedSequence:
    """The root of a call's seed tree; ``None`` draws fresh OS entropy."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is not None:
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InputError(f"seed must be a non-negative integer, not {seed!r}")
        seed = int(seed)
    return np.random.SeedSequence(seed)


#: numpy's default SeedSequence pool size (what ``SeedSequence(entropy, spawn_key=k)`` uses).
_POOL_WORDS = 4
_MASK32 = 0xFFFFFFFF


def _uint32_words(value: int) -> list[int]:
    """A non-negative int as numpy's SeedSequence reads it: uint32 words, least significant first."""
    words = [value & _MASK32]
    value >>= 32
    while value:
        words.append(value & _MASK32)
        value >>= 32
    return words


def _child(root: np.random.SeedSequence, *key: int) -> np.random.Generator:
    # Built from entropy + spawn_key rather than root.spawn(), which is stateful:
    # the same (root, key) must always give the same stream.
    entropy = root.entropy
    if type(entropy) is int and not root.spawn_key:
        # The same SeedSequence as SeedSequence(entropy, spawn_key=key), built from
        # the words numpy would assemble itself (entropy words zero-padded to the
        # pool size, then the key's words): skips numpy's per-int Python
        # conversion, ~3 us of every call, twice per generate. Same pool, same
        # stream (tests/test_sampling.py checks it against the plain construction).
        words = _uint32_words(entropy)
        if len(words) < _POOL_WORDS:
            words += [0] * (_POOL_WORDS - len(words))
        for k in key:
            words += _uint32_words(int(k))
        ss = np.random.SeedSequence(np.array(words, dtype=np.uint32))
    else:
        ss = np.random.SeedSequence(entropy, spawn_key=root.spawn_key + key)
    return np.random.Generator(np.random.PCG64(ss))


def plan_rng(root: np.random.SeedSequence) -> np.random.Generator:
    """Generator for the per-row plan (sources, partners, mix weights)."""
    return _child(root, 0)


#: A variant that comes out identical to a sibling (same source) is redrawn with
#: its relative noise grown by this factor per attempt, at most MAX_REDRAWS times.
#: Near-saturated sources (a wafer that is all defect) need it: moderate noise
#: cannot move their decoder output off the saturated state.
REDRAW_GROWTH = 1.5
MAX_REDRAWS = 8


def redraw_rng(root: np.random.SeedSequence, row: int, attempt: int) -> np.random.Generator:
    """Generator for redrawing row ``row`` of a call on attempt ``attempt``.

    Keyed by the row's place in the whole output, not by its noise block, so
    in-memory and streamed generation redraw the same rows the same way.
    """
    return _child(root, 3, int(row), int(attempt))


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


def mix_rng(root: np.random.SeedSequence) -> np.random.Generator:
    """Generator for mixing partners and weights: its own stream, so choosing
    ``method="mix"`` never changes which sources are picked."""
    return _child(root, 2)


def block_rng(root: np.random.SeedSequence, block: int) -> np.random.Generator:
    """Generator for the noise of rows ``[block·RNG_BLOCK, (block+1)·RNG_BLOCK)``."""
    return _child(root, 1, int(block))


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

    A seeded random permutation of the candidates, cycled, so ``n ≤ len``
    gives distinct sources and every source is used about equally often.
    ``pin`` fixes every row to one source.
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    if pin is not None:
        return np.full(n, int(pin), dtype=np.int64)
    if candidates.size == 0:
        raise InputError("no source maps to generate from")
    perm = rng.permutation(candidates)  # int64, a fresh array
    # n ≤ len: the first n of the permutation (what np.resize would give, without its copy).
    return perm[:n] if n <= perm.size else np.resize(perm, n)


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


def add_noise(latents: np.ndarray, sigma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``latents + σ·N(0, 1)``, element by element, float32 (a new array)."""
    noise = rng.standard_normal(latents.shape, dtype=np.float32)
    sigma = np.asarray(sigma)
    if latents.dtype != np.float32 or sigma.dtype != np.float32:
        return (latents + noise * sigma).astype(np.float32, copy=False)
    # In place in the fresh noise array: the same float32 operations as
    # latents + noise·σ (so the same bits), without two temporaries.
    noise *= sigma
    noise += latents
    return noise
