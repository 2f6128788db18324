"""The plan of a generation request: every per-row decision, before any graph runs.

Pure numpy, no onnxruntime. A :class:`Plan` says, for each output row, which
source it comes from, its variant (for the course schedule), its mixing
partner and weight, and the settings of the request; the generator then runs
the bundle's graphs on it block by block. The randomness rules (source order,
partners, σ, redraws) are :mod:`~edge_infer.sampling`'s.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple, Optional

import numpy as np

from . import sampling
from .errors import InputError


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
    variants: np.ndarray  # (N,) int64, for the course schedule
    partners: Optional[np.ndarray]  # (N,) int64, for mix
    weights: Optional[np.ndarray]  # (N,) float32, for mix
    seed: int
    settings: Settings
    siblings: bool  # some source repeats: identical variants are redrawn
    #: Index of row 0 within the whole request: noise and redraws are keyed by
    #: that global row, so a request cut into calls (an input augmented block
    #: by block) gives the maps of one call.
    row0: int = 0

    @property
    def n(self) -> int:
        return int(self.sources.shape[0])

    @property
    def labels(self) -> np.ndarray:
        """int64 ``(N, 1)``, like ``label.npy``."""
        return self.src.labels[self.sources].astype(np.int64).reshape(-1, 1)

    @property
    def bank_graph(self) -> bool:
        """Whether ``generator.onnx`` covers the request (bank rows, relative noise, lock)."""
        s = self.settings
        return self.src.bank and self.partners is None and s.mode == "relative" and s.outline_lock and not s.raw


def settings(defaults: Any, strength: Optional[float], method: Optional[str], mode: Optional[str],
             outline_lock: Optional[bool], raw: bool) -> Settings:
    """Check a request's options; ``None`` takes the bundle's ``noise_defaults``."""
    return Settings(
        method=sampling.check_choice(method if method is not None else defaults.method, sampling.METHODS, "method"),
        mode=sampling.check_choice(mode if mode is not None else defaults.mode, sampling.MODES, "noise mode"),
        strength=sampling.check_strength(strength if strength is not None else defaults.strength),
        outline_lock=bool(defaults.outline_lock if outline_lock is None else outline_lock),
        raw=bool(raw),
    )


def plan_rows(src: Sources, sources: np.ndarray, variants: np.ndarray, seed: int, opts: Settings,
              classes: tuple[str, ...]) -> Plan:
    """The plan for given rows: mixing partners where asked, whether siblings can clash."""
    partners = weights = None
    if opts.method == "mix":
        partners, weights, alone = sampling.choose_partners(sources, src.labels, src.outline_ids, seed)
        if alone.any():
            lonely = sorted({classes[c] for c in src.labels[sources[alone]]})
            warnings.warn(
                f"mix needs two source maps of a class; {', '.join(lonely)} has only one, "
                "so its maps use noise alone",
                sampling.MixFallback,
                stacklevel=4,
            )
    # Sorted neighbours, not np.unique: its first call imports numpy.ma, a
    # measurable share of a small command's start-up.
    ordered = np.sort(sources)
    repeats = sources.size > 1 and bool((ordered[1:] == ordered[:-1]).any())
    return Plan(src, sources, variants, partners, weights, seed, opts,
                siblings=bool(repeats and opts.mode == "relative" and not opts.raw))


def plan_generate(src: Sources, candidates: np.ndarray, n: int, seed: int, opts: Settings,
                  classes: tuple[str, ...], pin: Optional[int] = None) -> Plan:
    """``n`` rows from ``candidates`` (a class's rows of ``src``) in the seeded order, cycled."""
    sources = sampling.choose_sources(candidates, n, seed, pin=pin)
    variants = np.arange(n, dtype=np.int64) % sampling.COURSE_VARIANTS
    return plan_rows(src, sources, variants, seed, opts, classes)


def plan_augment(src: Sources, per_source: Any, seed: int, opts: Settings, classes: tuple[str, ...]) -> Plan:
    """``per_source`` rows for every source, the k variants of source i at rows k·i … k·i+k−1.

    ``per_source`` is one k for all, or one count per source (int64 array,
    validated by :func:`edge_infer.recipes.variant_counts`): then the variants
    of each source follow each other, numbered 0.. within their source.
    """
    m = src.labels.shape[0]
    counts = np.broadcast_to(np.asarray(per_source, dtype=np.int64), (m,))
    sources = np.repeat(np.arange(m, dtype=np.int64), counts)
    variants = np.arange(sources.size, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return plan_rows(src, sources, variants, seed, opts, classes)


def check_count(n: Any, what: str = "n") -> int:
    """A count of maps (``n``, ``per_source``, ``-n``): a whole number, at least 1.

    The one count rule, for the API and the CLI alike (the CLI calls it before
    any model loads, naming its option).
    """
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise InputError(f"{what} must be a whole number, not {n!r}")
    if n < 1:
        raise InputError(f"{what} must be at least 1, not {n}")
    return int(n)


def check_source_index(source_index: Any, src: Sources, cls_index: Optional[int], classes: tuple[str, ...]) -> int:
    """A valid row of ``src`` whose class agrees with ``cls_index`` (when given)."""
    if isinstance(source_index, (bool, np.bool_)) or not isinstance(source_index, (int, np.integer)):
        raise InputError(f"source index must be a whole number, not {source_index!r}")
    count = src.labels.shape[0]
    if not 0 <= source_index < count:
        raise InputError(f"source index {source_index} is out of range 0..{count - 1}")
    src_cls = int(src.labels[int(source_index)])
    if cls_index is not None and src_cls != cls_index:
        raise InputError(
            f"source {int(source_index)} is class {classes[src_cls]}, not {classes[cls_index]}; "
            "drop --class or pick a source of that class"
        )
    return int(source_index)
