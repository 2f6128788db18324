"""``WaferGenerator``: a request's plan (:mod:`~edge_infer.sampling`) → one bundle graph run per block → a sink.
It holds only immutable state (onnxruntime's ``run`` is thread-safe), so one instance may serve many threads."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from . import sampling
from .bundle import LATENT_SHAPE, Bundle, load_bundle
from .errors import BundleError, InputError
from .files import PathLike, atomic_files, check_free_space, check_targets, write_npy
from .npy import npy_writer
from .runtime import SessionInfo, open_session
from .sampling import Plan, Sources, check_count
from .wafer import (BLOCK_ROWS, MAP_BYTES, MAP_SHAPE, ClassLike, as_labels, as_maps, is_onehot, lock_outline, outline,
                    resolve_class, to_onehot)

ProgressFn = Callable[[int, int], None]
Blocks = Iterator[tuple[int, np.ndarray]]  # a request's maps as made: (first row, maps)

MAX_IN_MEMORY_BYTES = 2 << 30
DATA_FILE, LABEL_FILE = "gen_data.npy", "gen_label.npy"


@dataclass(frozen=True)
class Generated:
    """Maps float32 ``(N, 26, 26, 3)`` one-hot (probabilities with ``raw=True``), labels int64 ``(N, 1)``, ``sources``
    int64 ``(N,)`` (each map's row in the bank or the maps given). ``np.asarray(result)`` is ``result.maps``."""

    maps: np.ndarray
    labels: np.ndarray
    sources: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> np.ndarray:
        # Not np.array(..., copy=copy): numpy 1.x (still supported) calls this without copy and refuses copy=None.
        if copy is False and dtype is not None and np.dtype(dtype) != self.maps.dtype:
            raise ValueError("Generated.maps cannot be converted to another dtype without a copy")
        return np.array(self.maps, dtype=dtype) if copy else np.asarray(self.maps, dtype=dtype)


@dataclass(frozen=True)
class Streamed:
    """What :meth:`WaferGenerator.generate_to_files` wrote."""

    data_path: Path
    label_path: Path
    count: int
    labels: np.ndarray  # int64 (N, 1)
    sources: np.ndarray  # int64 (N,)


def _need_memory(n: int) -> None:
    if n * MAP_BYTES > MAX_IN_MEMORY_BYTES:
        raise InputError(f"{n} maps would need {n * MAP_BYTES / 2**30:.1f} GiB in memory; use "
                         "WaferGenerator.generate_to_files (the CLI streams to disk automatically)")


def _open(path: Path, provider: str, threads: Optional[int], inputs: Sequence[str],
          outputs: dict[str, tuple]) -> tuple[Any, SessionInfo]:
    """A graph's session, refused unless it has the format's ``inputs`` and ``outputs`` (name: shape after batch)."""
    session, info = open_session(path, provider=provider, threads=threads)
    have = sorted(i.name for i in session.get_inputs())
    got = {o.name: tuple(d if isinstance(d, int) else -1 for d in o.shape[1:]) for o in session.get_outputs()}
    if have != sorted(inputs) or not set(outputs) <= set(got):
        raise BundleError(f"{path}: inputs {', '.join(have)}, outputs {', '.join(got)} are not the format's "
                          f"{', '.join(inputs)}, {', '.join(outputs)}")
    for name, shape in outputs.items():
        if len(got[name]) != len(shape) or any(g not in (-1, w) for g, w in zip(got[name], shape)):
            raise BundleError(f"{path}: output shape (batch, {', '.join(map(str, got[name]))}) is not "
                              f"(batch, {', '.join(map(str, shape))})")
    return session, info


def _run(session: Any, path: Path, output: str, feeds: dict, *, onehot: bool = False) -> np.ndarray:
    """A graph's ``output``, if it is what the format promises (a bundle is code from elsewhere)."""
    out = session.run([output], feeds)[0]
    if not np.isfinite(out).all():
        raise BundleError(f"{path}: the graph computed NaN or infinite values; this bundle is broken")
    if onehot and not is_onehot(out):
        raise BundleError(f"{path}: the graph's maps are not one-hot; this bundle is broken")
    return out


def _blockwise(session: Any, path: Path, io: tuple[str, str], x: np.ndarray) -> np.ndarray:
    """The encoder or decoder over ``x``, a block at a time."""
    parts = [_run(session, path, io[1], {io[0]: np.ascontiguousarray(x[i:i + BLOCK_ROWS], dtype=np.float32)})
             for i in range(0, x.shape[0], BLOCK_ROWS)]
    return np.concatenate(parts) if parts else np.empty((0, *session.get_outputs()[0].shape[1:]), np.float32)


class WaferGenerator:
    """Generate, encode, decode and reconstruct wafer maps (docs/api.md): maps in any form ``as_maps`` accepts, classes
    by name or index. ``classes``: names in label-index order; ``provider``: what really runs the graphs."""

    def __init__(self, bundle: Bundle, provider: str = "auto", threads: Optional[int] = None) -> None:
        """A generator over a loaded ``bundle`` (:meth:`load` finds and verifies one)."""
        b = self.bundle = bundle
        self.classes = b.classes
        self.generator_session, self.provider_info = _open(b.generator_path, provider, threads,
                                                           ("source", "seed", "row0", "strength"), {"maps": MAP_SHAPE})
        self.provider = on = self.provider_info.actual  # the other graphs run where the generator really runs
        self.core_session = _open(b.core_path, on, threads, ("latent", "sigma", "outline", "seed", "row", "attempt"),
                                  {"maps": MAP_SHAPE, "probs": MAP_SHAPE})[0]
        self.encoder_session = _open(b.encoder_path, on, threads, b.encoder_io[:1], {b.encoder_io[1]: LATENT_SHAPE})[0]
        self.decoder_session = _open(b.decoder_path, on, threads, b.decoder_io[:1], {b.decoder_io[1]: MAP_SHAPE})[0]
        self._bank = Sources(b.latents, b.labels, b.outline_ids, b.outlines, True)

    @classmethod
    def load(cls, path: Optional[PathLike] = None, provider: str = "auto", threads: Optional[int] = None, *,
             verify: bool = True) -> "WaferGenerator":
        """Load and verify a bundle (None: the default one); open its graphs on ``provider`` (docs/providers.md)."""
        return cls(load_bundle(path, verify=verify), provider, threads)

    def encode(self, maps: Any) -> np.ndarray:
        """Latents float32 ``(N, 64, 3, 3)`` of maps in any accepted form."""
        return _blockwise(self.encoder_session, self.bundle.encoder_path, self.bundle.encoder_io, as_maps(maps))

    def decode(self, latents: Any, *, raw: bool = False, outlines: Optional[np.ndarray] = None) -> np.ndarray:
        """Maps ``(N, 26, 26, 3)`` from latents ``(N, 64, 3, 3)``: one-hot by the most likely die state, with
        ``outlines`` (bool, True = off-wafer) locked in where given; ``raw=True``: the probabilities."""
        try:
            z = np.asarray(latents, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InputError(f"latents cannot be read as numbers: {exc}") from None
        z = z[None] if z.shape == LATENT_SHAPE else z  # one latent: a batch of one
        if z.ndim != 4 or tuple(z.shape[1:]) != LATENT_SHAPE:
            raise InputError(f"latents have shape {z.shape}; expected (N, 64, 3, 3)")
        if not np.isfinite(z).all():
            raise InputError("latents contain NaN or infinite values")
        probs = _blockwise(self.decoder_session, self.bundle.decoder_path, self.bundle.decoder_io, z)
        if raw:
            return probs
        return to_onehot(probs.argmax(axis=-1)) if outlines is None else lock_outline(probs, np.asarray(outlines, bool))

    def reconstruct(self, maps: Any, *, raw: bool = False, outline_lock: bool = False) -> np.ndarray:
        """Encoder then decoder: plain argmax, or keeping each input's outline (``outline_lock``), or ``raw``."""
        onehot = as_maps(maps)
        return self.decode(self.encode(onehot), raw=raw, outlines=outline(onehot) if outline_lock else None)

    def bank_maps(self, indices: Any) -> np.ndarray:
        """Bank maps ``indices`` as the decoder draws them, outline locked (the bundle holds no training map)."""
        idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        if idx.size and (idx.min() < 0 or idx.max() >= self.bundle.count):
            raise InputError(f"bank index out of range 0..{self.bundle.count - 1}")
        return self.decode(self.bundle.latents[idx], outlines=self.bundle.outlines[self.bundle.outline_ids[idx]])

    def generate(self, cls: Optional[ClassLike], n: int = 1, *, seed: sampling.SeedLike = None, maps: Any = None,
                 labels: Any = None, source_index: Optional[int] = None, strength: Optional[float] = None,
                 method: Optional[str] = None, mode: Optional[str] = None, outline_lock: Optional[bool] = None,
                 raw: bool = False, progress: Optional[ProgressFn] = None) -> Generated:
        """``n`` new maps of class ``cls`` from the bank or ``maps`` (+ ``labels``, else all ``cls``): sources in a
        seeded order, cycled, or ``source_index``; None options take the bundle's defaults; same seed, same maps."""
        _need_memory(check_count(n))
        plan, blocks = self.generate_blocks(cls, n, seed=seed, maps=maps, labels=labels, source_index=source_index,
                                            strength=strength, method=method, mode=mode, outline_lock=outline_lock,
                                            raw=raw, progress=progress)
        return _gather(plan, blocks)

    def generate_blocks(self, cls: Optional[ClassLike], n: int, *, seed: sampling.SeedLike = None, maps: Any = None,
                        labels: Any = None, source_index: Optional[int] = None,
                        progress: Optional[ProgressFn] = None, **noise: Any) -> tuple[Plan, Blocks]:
        """:meth:`generate`'s maps as its plan (``labels``, ``sources``) and 4096-map blocks, all checked up front."""
        n = check_count(n)
        cls_index = None if cls is None else resolve_class(cls, self.classes)
        if cls_index is None and source_index is None:
            raise InputError(f"give a class (one of: {', '.join(self.classes)}) or a source index")
        opts = sampling.settings(self.bundle.noise_defaults, **noise)
        seed = sampling.check_seed(seed)
        src = self._sources(maps, labels, cls_index)
        plan = sampling.plan_generate(src, cls_index, n, seed, opts, self.classes, source_index)
        return plan, plan_blocks(self, plan, progress)

    def generate_to_files(self, cls: Optional[ClassLike], n: int, out_dir: PathLike, *, force: bool = False,
                          progress: Optional[ProgressFn] = None, **options: Any) -> Streamed:
        """:meth:`generate` streamed to ``out_dir/gen_data.npy`` + ``gen_label.npy``, appearing when both are whole."""
        paths = [Path(out_dir, DATA_FILE), Path(out_dir, LABEL_FILE)]
        check_targets(paths, force=force)
        check_free_space(out_dir, check_count(n) * (MAP_BYTES + 8), f"{n} maps")  # before n rows are planned
        plan, blocks = self.generate_blocks(cls, n, progress=progress, **options)
        with atomic_files(paths, force=force) as (tmp_data, tmp_label), npy_writer(tmp_data, (n, *MAP_SHAPE)) as sink:
            write_npy(tmp_label, plan.labels)
            for _, block in blocks:
                sink.write(block)
        return Streamed(*paths, n, plan.labels, plan.sources)

    def augment(self, per_source: Union[int, Sequence[int]] = 5, *, maps: Any = None, labels: Any = None,
                seed: sampling.SeedLike = None, strength: Optional[float] = None, method: Optional[str] = None,
                mode: Optional[str] = None, outline_lock: Optional[bool] = None, raw: bool = False,
                progress: Optional[ProgressFn] = None, source_offset: int = 0) -> Generated:
        """``per_source`` new maps (one k, or a count per source) for every source map (the bank, or ``maps`` +
        ``labels``): the variants of source i on consecutive rows, k·i … k·i+k−1. ``source_offset``: the index of
        ``maps[0]`` in a larger set augmented block by block, so rows and noise are those of one call on the set."""
        if not sampling.is_whole_number(source_offset) or source_offset < 0:
            raise InputError(f"source_offset must be a non-negative whole number, not {source_offset!r}")
        opts = sampling.settings(self.bundle.noise_defaults, strength, method, mode, outline_lock, raw)
        if source_offset and (np.ndim(per_source) or opts.method == "mix"):
            raise InputError("source_offset needs one k for all sources and method 'noise' (mix pairs sources "
                             "across the whole set)")
        src = self._sources(maps, labels, None)
        counts = sampling.variant_counts(per_source, len(src.labels))
        _need_memory(int(counts.sum()))
        plan = sampling.plan_augment(src, counts, sampling.check_seed(seed), opts, self.classes)
        plan = plan._replace(row0=int(source_offset) * int(counts[0]))
        return _gather(plan, plan_blocks(self, plan, progress), int(source_offset))

    def _sources(self, maps: Any, labels: Any, cls_index: Optional[int]) -> Sources:
        """The bank, or ``maps`` encoded; without ``labels`` they are all class ``cls_index`` (generate only)."""
        if maps is None:
            if labels is not None:
                raise InputError("labels were given without maps")
            return self._bank
        onehot = as_maps(maps)
        m = onehot.shape[0]
        if labels is None and cls_index is None:
            raise InputError("labels are needed for the given maps (one class index per map)")
        lab = np.full(m, cls_index, dtype=np.int64) if labels is None else as_labels(labels, m, len(self.classes))[:, 0]
        return Sources(self.encode(onehot), lab, np.arange(m, dtype=np.int64), outline(onehot), False)


def _gather(plan: Plan, blocks: Blocks, source_offset: int = 0) -> Generated:
    maps = np.empty((len(plan.sources), *MAP_SHAPE), dtype=np.float32)
    for lo, block in blocks:
        maps[lo:lo + len(block)] = block
    return Generated(maps, plan.labels, plan.sources + source_offset)


def plan_blocks(gen: WaferGenerator, plan: Plan, progress: Optional[ProgressFn]) -> Blocks:
    """``(first row, maps)`` block after block, siblings redrawn, progress reported."""
    seen: set = set()  # sibling keys so far: 8 bytes a map, even for a million
    n = len(plan.sources)
    for lo in range(0, n, BLOCK_ROWS):
        hi = min(lo + BLOCK_ROWS, n)
        if plan.bank_graph:
            feeds = {"source": plan.sources[lo:hi], "seed": np.array([plan.seed], np.int64),
                     "row0": np.array([plan.row0 + lo], np.int64),
                     "strength": np.array([plan.settings.strength], np.float32)}
            maps = _run(gen.generator_session, gen.bundle.generator_path, "maps", feeds, onehot=True)
        else:
            maps = _draw(gen, plan, np.arange(lo, hi, dtype=np.int64), np.zeros(hi - lo, dtype=np.int64))
        if plan.siblings:
            _redraw_siblings(gen, plan, lo, maps, seen)
        yield lo, maps
        if progress is not None:
            progress(hi, n)


def _draw(gen: WaferGenerator, plan: Plan, rows: np.ndarray, attempts: np.ndarray) -> np.ndarray:
    """Maps of request ``rows`` at draw ``attempts`` (per row): one run of the core graph."""
    src, sources, opts = plan.src, plan.sources[rows], plan.settings
    latent = src.latents[sources]
    if plan.partners is not None:  # mix: (1-t)·a + t·b in float32
        t = plan.weights[rows].reshape(-1, 1, 1, 1)
        latent = ((np.float32(1) - t) * latent + t * src.latents[plan.partners[rows]]).astype(np.float32)
    sigma = sampling.noise_sigma(opts.mode, opts.strength, gen.bundle.latent_std, plan.variants[rows])
    sigma = sigma * (sampling.REDRAW_GROWTH ** attempts[:, None]).astype(np.float32)  # × 1 on a first draw
    feeds = {"latent": np.ascontiguousarray(latent, dtype=np.float32), "sigma": np.ascontiguousarray(sigma, np.float32),
             "outline": src.outlines[src.outline_ids[sources]], "seed": np.array([plan.seed], np.int64),
             "row": rows + plan.row0, "attempt": attempts.astype(np.int64)}
    if opts.outline_lock and not opts.raw:
        return _run(gen.core_session, gen.bundle.core_path, "maps", feeds, onehot=True)
    probs = _run(gen.core_session, gen.bundle.core_path, "probs", feeds)
    return probs if opts.raw else to_onehot(probs.argmax(axis=-1))


def _redraw_siblings(gen: WaferGenerator, plan: Plan, lo: int, maps: np.ndarray, seen: set) -> None:
    """Replace, in row order, each map equal to a kept map of an earlier row with its source by the first of its
    redraws (1 … MAX_REDRAWS) that is new, else the last. ``seen``: the keys of rows before ``lo`` (updated)."""
    def redraws(rows: np.ndarray) -> dict:  # {row: (maps (R, 26, 26, 3), keys [R])} of redraws 1 … R, one run
        r = sampling.MAX_REDRAWS
        every = np.repeat(rows, r)
        made = _draw(gen, plan, every, np.tile(np.arange(1, r + 1, dtype=np.int64), rows.size))
        keys = sampling.sibling_keys(plan.sources[every], made).reshape(rows.size, r).tolist()
        return {int(row): (made[j * r:(j + 1) * r], keys[j]) for j, row in enumerate(rows)}

    keys = sampling.sibling_keys(plan.sources[lo:lo + len(maps)], maps)
    clashing = lo + sampling.repeated_rows(keys, seen)
    batch = redraws(clashing) if clashing.size else {}  # every clashing row's redraws at once
    for i, key in enumerate(keys.tolist()):
        if key in seen:  # a row that clashes only with an earlier row's redraw gets its own run
            cand_maps, cand_keys = batch.get(lo + i) or redraws(np.array([lo + i]))[lo + i]
            k = next((j for j, c in enumerate(cand_keys) if c not in seen), len(cand_keys) - 1)
            maps[i], key = cand_maps[k], cand_keys[k]
        seen.add(key)
