"""The plan of a request: each row's source, variant, mixing partner and weight, made from the seed before the graphs
draw the noise; the same seed gives the same maps in any thread, block size or language (docs/other-languages.md)."""

from __future__ import annotations

import math
import os
import warnings
from typing import Any, NamedTuple, Optional, Union

import numpy as np

from .errors import InputError

DEFAULT_NOISE_STRENGTH: float = 0.3  # when neither the caller nor the bundle says
METHODS: tuple[str, ...] = ("noise", "mix")
MODES: tuple[str, ...] = ("relative", "course")
COURSE_VARIANTS = 5
#: A variant identical to a sibling is redrawn with σ grown by this factor per attempt, at most MAX_REDRAWS times:
#: moderate noise cannot move a near-saturated source (a wafer all defect) off its saturated decoder output.
REDRAW_GROWTH = 1.5
MAX_REDRAWS = 8

# SplitMix64 (Steele, Lea & Flood 2014): increment and output multipliers.
GAMMA = 0x9E3779B97F4A7C15
MIX_M1 = 0xBF58476D1CE4E5B9
MIX_M2 = 0x94D049BB133111EB
ATTEMPT_MUL = 0xD1B54A32D192ED03  # K: odd, so no two streams share a key
PLAN_STREAM = 1 << 32
MIX_STREAM = PLAN_STREAM + 1
MAX_SEED = 2**63 - 1  # seeds are int64: the graphs take them unchanged

SeedLike = Union[None, int, np.random.SeedSequence]


class MixFallback(UserWarning):
    """A class had a single source, so ``mix`` used noise alone for it."""


def is_whole_number(x: Any) -> bool:
    """An int or numpy integer, and not a bool."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def splitmix64(x: "np.ndarray | np.uint64") -> np.ndarray:
    """The SplitMix64 output function on uint64 values (wrapping arithmetic)."""
    x = np.array(x, dtype=np.uint64)  # a copy: worked on in place
    x ^= x >> np.uint64(30)
    x *= np.uint64(MIX_M1)
    x ^= x >> np.uint64(27)
    x *= np.uint64(MIX_M2)
    x ^= x >> np.uint64(31)
    return x


def draws(seed: int, stream: int, count: int) -> np.ndarray:
    """Values ``0 … count-1`` of ``stream`` for ``seed``, uint64: ``mix(mix(seed XOR stream·K) + (c + 1)·γ)``."""
    key = splitmix64((int(seed) ^ int(stream) * ATTEMPT_MUL) & (2**64 - 1))
    with np.errstate(over="ignore"):
        return splitmix64(np.arange(1, count + 1, dtype=np.uint64) * np.uint64(GAMMA) + key)


def check_seed(seed: SeedLike) -> int:
    """The int64 seed the graphs get: ``seed``, a fresh one for None, 63 bits of a ``SeedSequence``'s state."""
    if seed is None:
        return int.from_bytes(os.urandom(8), "little") >> 1
    if isinstance(seed, np.random.SeedSequence):
        return int(seed.generate_state(1, np.uint64)[0]) >> 1
    if not is_whole_number(seed) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed must be a whole number from 0 to 2**63-1, not {seed!r}")
    return int(seed)


def check_choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    """``value`` lower-cased if it is one of ``allowed``, else InputError."""
    v = str(value).strip().lower()
    if v not in allowed:
        raise InputError(f"unknown {what} {value!r}; choose one of: {', '.join(allowed)}")
    return v


def check_count(n: Any, what: str = "n") -> int:
    """A count of maps, a whole number ≥ 1: the one count rule (the CLI calls it before a model loads)."""
    if not is_whole_number(n) or n < 1:
        raise InputError(f"{what} must be a whole number, at least 1, not {n!r}")
    return int(n)


def choose_sources(candidates: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` rows: ``candidates`` ordered by their values of :data:`PLAN_STREAM` (ties keep index order), cycled; so
    ``n ≤ len`` gives distinct sources, and a larger ``n`` keeps the first rows of a smaller one."""
    candidates = np.asarray(candidates, dtype=np.int64)
    order = candidates[draws(seed, PLAN_STREAM, candidates.size).argsort(kind="stable")]
    return order[:n] if n <= order.size else np.resize(order, n)


def choose_partners(sources: np.ndarray, labels: np.ndarray, outline_ids: np.ndarray,
                    seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(partners, weights, alone)``: a mixing partner for every row, same class, not itself, same outline if
    possible; row r's values 2r and 2r+1 of :data:`MIX_STREAM` pick it (``value mod (pool size − 1)`` in the pool, in
    index order, without the row's own source) and the weight ``0.25 + 0.5·u`` (``u`` float32 from the top 24 bits).
    ``alone``: rows whose class has no other source; their partner is themselves (mixing is a no-op)."""
    sources = np.asarray(sources, dtype=np.int64)
    values = draws(seed, MIX_STREAM, 2 * sources.size).reshape(-1, 2)
    u = (values[:, 1] >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)
    weights = np.float32(0.25) + np.float32(0.5) * u
    partners = sources.copy()
    alone = np.zeros(sources.shape, dtype=bool)
    keys = np.stack([labels[sources], outline_ids[sources]], axis=1)
    for cls, oid in np.unique(keys, axis=0):
        rows = np.flatnonzero((keys[:, 0] == cls) & (keys[:, 1] == oid))
        same = np.flatnonzero((labels == cls) & (outline_ids == oid))
        pool = same if same.size >= 2 else np.flatnonzero(labels == cls)
        if pool.size < 2:
            alone[rows] = True
            continue
        own = np.searchsorted(pool, sources[rows])  # each row's own place in the pool (always there): skipped
        draw = (values[rows, 0] % np.uint64(pool.size - 1)).astype(np.int64)
        partners[rows] = pool[draw + (draw >= own)]
    return partners, weights, alone


def noise_sigma(mode: str, strength: float, std: np.ndarray, variants: np.ndarray) -> np.ndarray:
    """σ per row and latent channel, float32 ``(n, 64)``: ``float32(strength) × std`` (relative), or
    ``(v mod 5 + 1) / 10`` for variant v (the course's schedule)."""
    std = np.asarray(std, dtype=np.float32)
    if mode == "course":
        sigma = ((np.asarray(variants) % COURSE_VARIANTS) + 1).astype(np.float32)[:, None] / np.float32(10)
    else:
        sigma = np.float32(strength) * std
    return np.broadcast_to(sigma, (len(variants), std.size))


# A map's key: its packed bits (26*26*3 = 254 bytes, zero-padded to 32 uint64 words) times fixed odd weights, summed
# mod 2**64; two maps share a key with probability ~2**-63, and that costs only a needless (deterministic) redraw.
_KEY_WEIGHTS = draws(0x51B1, 0, 32) | np.uint64(1)


def sibling_keys(sources: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """A 64-bit key per row of one-hot ``maps``, equal for the same source and map."""
    n = int(sources.shape[0])
    packed = np.zeros((n, 256), dtype=np.uint8)
    packed[:, :254] = np.packbits(maps.reshape(n, -1) != 0, axis=1)
    with np.errstate(over="ignore"):
        keys = (packed.view(np.uint64) * _KEY_WEIGHTS).sum(axis=1, dtype=np.uint64)
        return keys ^ (np.asarray(sources, dtype=np.uint64) * np.uint64(GAMMA))


def repeated_rows(keys: np.ndarray, seen: Optional[set] = None) -> np.ndarray:
    """Indices, in row order, of rows whose key appeared earlier in ``keys`` or is in ``seen``."""
    repeated = np.ones(len(keys), dtype=bool)
    repeated[np.unique(keys, return_index=True)[1]] = False
    if seen:
        repeated |= np.fromiter((int(k) in seen for k in keys), dtype=bool, count=len(keys))
    return np.flatnonzero(repeated)


class Sources(NamedTuple):
    """What a request generates from: the bank, or maps the caller gave (encoded)."""

    latents: np.ndarray  # (M, 64, 3, 3) float32
    labels: np.ndarray  # (M,) int64
    outline_ids: np.ndarray  # (M,) int64 into outlines
    outlines: np.ndarray  # (K, 26, 26) bool, True = off-wafer
    bank: bool  # the bundle's own latent bank (generator.onnx takes its rows)


class Settings(NamedTuple):
    """A request's noise settings, checked, with the bundle's defaults filled in."""

    method: str
    mode: str
    strength: float
    outline_lock: bool
    raw: bool


class Plan(NamedTuple):
    """Everything a request needs, decided before any graph runs; immutable."""

    src: Sources
    sources: np.ndarray  # (N,) int64 rows of src
    labels: np.ndarray  # (N, 1) int64, like label.npy
    variants: np.ndarray  # (N,) int64, for the course schedule
    partners: Optional[np.ndarray]  # (N,) int64, for mix
    weights: Optional[np.ndarray]  # (N,) float32, for mix
    seed: int
    settings: Settings
    siblings: bool  # some source repeats: identical variants are redrawn
    bank_graph: bool  # generator.onnx covers the request (bank rows, relative noise, lock, no mix)
    #: Row 0's place in the whole request: noise and redraws key on global rows, so split calls give one call's maps.
    row0: int = 0


def settings(defaults: Any, strength: Optional[float] = None, method: Optional[str] = None, mode: Optional[str] = None,
             outline_lock: Optional[bool] = None, raw: bool = False) -> Settings:
    """A request's options checked, ``None`` taking the bundle's ``noise_defaults``; strength > 0 (siblings differ)."""
    strength = defaults.strength if strength is None else strength
    try:
        value = float(strength)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"strength must be a finite number > 0, not {strength!r}")
    return Settings(check_choice(defaults.method if method is None else method, METHODS, "method"),
                    check_choice(defaults.mode if mode is None else mode, MODES, "noise mode"), value,
                    bool(defaults.outline_lock if outline_lock is None else outline_lock), bool(raw))


def make_plan(src: Sources, sources: np.ndarray, variants: np.ndarray, seed: int, opts: Settings,
              classes: tuple[str, ...]) -> Plan:
    """The plan for given rows: mixing partners where asked, whether siblings can clash."""
    partners = weights = None
    if opts.method == "mix":
        partners, weights, alone = choose_partners(sources, src.labels, src.outline_ids, seed)
        if alone.any():
            lonely = ", ".join(sorted({classes[c] for c in src.labels[sources[alone]]}))
            warnings.warn(f"mix needs two source maps of a class; {lonely} has only one, so its maps use noise alone",
                          MixFallback, stacklevel=4)
    relative = opts.mode == "relative" and not opts.raw
    return Plan(src, sources, src.labels[sources].reshape(-1, 1), variants, partners, weights, seed, opts,
                siblings=relative and len(set(sources.tolist())) < sources.size,
                bank_graph=relative and src.bank and partners is None and opts.outline_lock)


def plan_generate(src: Sources, cls_index: Optional[int], n: int, seed: int, opts: Settings,
                  classes: tuple[str, ...], source_index: Any = None) -> Plan:
    """``n`` rows of class ``cls_index`` of ``src`` in the seeded order (:func:`choose_sources`), or row
    ``source_index`` of ``src`` on every row (of class ``cls_index`` when that is given)."""
    if source_index is not None:
        if not is_whole_number(source_index) or not 0 <= source_index < len(src.labels):
            raise InputError(f"source index must be a whole number in 0..{len(src.labels) - 1}, not {source_index!r}")
        own = int(src.labels[source_index])
        if cls_index is not None and own != cls_index:
            raise InputError(f"source {int(source_index)} is class {classes[own]}, not {classes[cls_index]}; "
                             "drop --class or pick a source of that class")
        sources = np.full(n, int(source_index), dtype=np.int64)
    else:
        candidates = np.flatnonzero(src.labels == cls_index)
        if candidates.size == 0:
            where = "the bundle's latent bank" if src.bank else "the given maps"
            raise InputError(f"no maps of class {classes[cls_index]} in {where}")
        sources = choose_sources(candidates, n, seed)
    return make_plan(src, sources, np.arange(n, dtype=np.int64) % COURSE_VARIANTS, seed, opts, classes)


def plan_augment(src: Sources, per_source: Any, seed: int, opts: Settings, classes: tuple[str, ...]) -> Plan:
    """``per_source`` rows (one k, or :func:`variant_counts`) for each source, consecutive, numbered 0.. within it."""
    counts = np.broadcast_to(np.asarray(per_source, dtype=np.int64), (len(src.labels),))
    sources = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    variants = np.arange(sources.size, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return make_plan(src, sources, variants, seed, opts, classes)


def variant_counts(per_source: Any, n_sources: int) -> np.ndarray:
    """Variants per source, int64: one whole number k ≥ 1 for all, or one count ≥ 0 each (one map at least)."""
    try:
        counts = np.asarray(per_source)
    except (TypeError, ValueError):  # ragged
        counts = np.zeros(0)
    if counts.ndim == 0:
        return np.full(n_sources, check_count(per_source, "per_source"), dtype=np.int64)
    if counts.shape != (n_sources,) or counts.dtype.kind not in "iu" or (counts < 0).any() or counts.sum() < 1:
        raise InputError(f"per_source counts must be whole numbers ≥ 0, one per source ({n_sources}), making at "
                         "least one map")
    return counts.astype(np.int64)
