"""``WaferGenerator``: the public API, composed of bundle, runtime, sampling and wafer.

Generation = latents of source maps (the bundle's latent bank, or maps the
caller gives, through ``encoder.onnx``) + Gaussian noise (optionally mixed
with a same-class partner first), through ``decoder.onnx``, then the wafer
outline of the source is locked back in. See :mod:`edge_infer.sampling` for
the noise and mixing rules and the seed schedule.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

import numpy as np

from . import hostpool, sampling
from .bundle import Bundle, load_bundle
from .errors import BundleError, InputError, OutputError
from .io import atomic_path, check_targets, write_npy
from .runtime import GraphRunner, SessionInfo, create_session_info, single_thread_twin
from .scratch import Scratch, borrow
from .wafer import MAP_SHAPE, ClassLike, as_labels, as_maps, lock_outline, outline, resolve_class, to_onehot

PathLike = Union[str, Path]
Progress = Callable[[int, int], None]

#: In-memory results larger than this are refused (use ``generate_to_files``).
MAX_IN_MEMORY_BYTES = 2 << 30
MAP_BYTES = int(np.prod(MAP_SHAPE)) * 4
#: Rows generated at a time: the unit of streaming to disk, of sibling tracking
#: and of chunked graph runs (bounds the memory of huge calls).
BLOCK_ROWS = 4096
# Variant index of row i (i mod 5) for one block, built once: read-only, shared by all calls.
_VARIANTS = np.arange(BLOCK_ROWS, dtype=np.int64) % sampling.COURSE_VARIANTS
_VARIANTS.flags.writeable = False
# Blocks of at least this many maps have the decoder write into a reused buffer.
_BIND_MIN = 64
DATA_FILE = "gen_data.npy"
LABEL_FILE = "gen_label.npy"


@dataclass(frozen=True)
class Generated:
    """Generated maps and where each came from.

    * ``maps``: float32 ``(N, 26, 26, 3)``, one-hot like ``data.npy`` (or the
      decoder's probabilities with ``raw=True``);
    * ``labels``: int64 ``(N, 1)`` like ``label.npy``;
    * ``sources``: int64 ``(N,)``, row of the source set (the latent bank in
      training-data order, or the maps the caller gave) each map came from.
    """

    maps: np.ndarray
    labels: np.ndarray
    sources: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Streamed:
    """What :meth:`WaferGenerator.generate_to_files` wrote."""

    data_path: Path
    label_path: Path
    count: int
    labels: np.ndarray  # int64 (N, 1)
    sources: np.ndarray  # int64 (N,)


@dataclass(frozen=True)
class _SourceSet:
    latents: np.ndarray  # (M, 64, 3, 3) float32
    labels: np.ndarray  # (M,) int64
    outline_ids: np.ndarray  # (M,) int64 into outlines
    outlines: np.ndarray  # (K, 26, 26) bool


class _Job(NamedTuple):
    """Everything one generation run needs; immutable, so a call owns no shared state.

    A NamedTuple rather than a frozen dataclass: built on every call, and a
    frozen dataclass's ``__init__`` costs ~1.5 us more.
    """

    src: _SourceSet
    sources: np.ndarray
    variants: np.ndarray
    partners: Optional[np.ndarray]
    weights: Optional[np.ndarray]
    mode: str
    strength: float
    std: np.ndarray
    root: sampling.RootKey
    outline_lock: bool
    raw: bool
    #: Index of this job's first output row within the whole request (noise and
    #: redraws are keyed by that global row, so a request cut into jobs gives
    #: the same maps as one job).
    row0: int = 0

    @property
    def n(self) -> int:
        return int(self.sources.shape[0])


def _finish(probs: np.ndarray, raw: bool, boundary: Optional[np.ndarray]) -> np.ndarray:
    """Decoder probabilities as returned to callers: raw, outline-locked, or plain argmax."""
    if raw:
        return probs
    if boundary is not None:
        return lock_outline(probs, boundary)
    return to_onehot(probs.argmax(axis=-1))


def _check_count(n: Any, what: str = "n") -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise InputError(f"{what} must be a whole number, not {n!r}")
    if n < 1:
        raise InputError(f"{what} must be at least 1, not {n}")
    return int(n)


def _need_memory(n: int) -> None:
    need = n * MAP_BYTES
    if need > MAX_IN_MEMORY_BYTES:
        raise InputError(
            f"{n} maps would need {need / 2**30:.1f} GiB in memory; use "
            "WaferGenerator.generate_to_files (the CLI streams to disk automatically)"
        )


class WaferGenerator:
    """Generate, encode, decode and reconstruct wafer maps with a verified bundle.

    Thread safety: a generator holds only immutable state (a verified bundle
    with read-only arrays, two onnxruntime sessions, whose ``run`` is
    thread-safe). Random streams and work buffers are borrowed per call from
    per-thread pools (:mod:`~edge_infer.sampling`, :mod:`~edge_infer.scratch`)
    and keyed by the call's seed, so one instance may serve many threads at
    once; the same seed gives the same maps in any thread.

    Maps are accepted one-hot ``(N, 26, 26, 3)`` like ``data.npy``, as die
    states ``(N, 26, 26)`` (0 boundary, 1 normal, 2 defect), or as a single
    map; other sizes are resized to 26×26 by nearest neighbour with a
    :class:`~edge_infer.wafer.ResizeNote` warning. Classes are given by name
    (any case) or index.
    """

    def __init__(self, bundle: Bundle, encoder: GraphRunner, decoder: GraphRunner, threads: Optional[int] = None) -> None:
        self.bundle = bundle
        self.encoder = encoder
        self.decoder = decoder
        # Host threads for the numpy steps around the decoder (see hostpool);
        # None: every core, like onnxruntime's default.
        self._threads = threads
        # Per-bundle things every generate call needs, built once here. All are
        # read-only and never change after load, so threads share them safely.
        self._bank = _SourceSet(bundle.latents, bundle.labels, bundle.outline_ids, bundle.outlines)
        rows = []
        for c in range(len(bundle.classes)):
            r = np.flatnonzero(bundle.labels == c)
            r.flags.writeable = False
            rows.append(r)
        self._class_rows: tuple[np.ndarray, ...] = tuple(rows)

    @classmethod
    def load(
        cls,
        path: Optional[PathLike] = None,
        provider: str = "auto",
        threads: Optional[int] = None,
        *,
        verify: bool = True,
    ) -> "WaferGenerator":
        """Load and verify a bundle (the default one when ``path`` is None).

        ``provider``: ``"auto"`` (CUDA when a session really gets it, else the
        CPU), ``"cpu"`` or ``"cuda"`` (a :class:`~edge_infer.errors.ProviderError`
        where CUDA does not work). ``threads``: onnxruntime intra-op threads
        per session; None keeps onnxruntime's default.
        """
        bundle = load_bundle(path, verify=verify)
        enc_s, enc_i = create_session_info(bundle.encoder_path, provider=provider, threads=threads)
        # Threads stop spinning when a run returns, leaving the cores to the numpy
        # work after it. Measured as a gain only when that work ran on threads
        # around this session's runs (35d8daa); blocks cut into pieces now use
        # the twin, and with them it measures neutral (docs/performance.md).
        dec_s, dec_i = create_session_info(bundle.decoder_path, provider=provider, threads=threads, spin_after_run=False)
        encoder = GraphRunner(enc_s, enc_i, input_name=bundle.encoder_io[0], output_name=bundle.encoder_io[1])
        # The decoder gets a single-threaded twin session for batch-1 calls (see runtime).
        decoder = GraphRunner(
            dec_s,
            dec_i,
            input_name=bundle.decoder_io[0],
            output_name=bundle.decoder_io[1],
            small_session=single_thread_twin(bundle.decoder_path, dec_i, threads),
        )
        # Fixed dimensions in the graphs must agree with the bundle format (-1 = dynamic).
        for runner, want, path in (
            (encoder, bundle.latents.shape[1:], bundle.encoder_path),
            (decoder, MAP_SHAPE, bundle.decoder_path),
        ):
            got = runner.item_shape
            if len(got) != len(want) or any(g not in (-1, w) for g, w in zip(got, want)):
                raise BundleError(f"{path}: output shape (batch, {', '.join(map(str, got))}) is not (batch, {', '.join(map(str, want))})")
        return cls(bundle, encoder, decoder, threads)

    # ------------------------------------------------------------ properties

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in label-index order."""
        return self.bundle.classes

    @property
    def provider(self) -> str:
        """``"cpu"`` or ``"cuda"``: what really runs the decoder."""
        return self.decoder.actual

    @property
    def provider_info(self) -> SessionInfo:
        """The decoder's provider and the reason for a CPU fallback, if any."""
        return self.decoder.info

    # ------------------------------------------------------------ encode / decode

    def encode(self, maps: Any) -> np.ndarray:
        """Latents float32 ``(N, 64, 3, 3)`` of maps in any accepted form."""
        onehot = as_maps(maps)
        return self.encoder.run(onehot, chunk=BLOCK_ROWS)

    def decode(self, latents: Any, *, raw: bool = False, outlines: Optional[np.ndarray] = None) -> np.ndarray:
        """Maps float32 ``(N, 26, 26, 3)`` from latents ``(N, 64, 3, 3)`` (or one latent).

        One-hot by the decoder's most likely die state, or, with ``outlines``
        (boolean ``(N, 26, 26)`` or ``(26, 26)``, True = off-wafer), with that
        outline locked in. ``raw=True``: the decoder's probabilities.
        """
        z = self._check_latents(latents)
        probs = self.decoder.run(z, chunk=BLOCK_ROWS)
        return _finish(probs, raw, None if outlines is None else np.asarray(outlines, dtype=bool))

    def reconstruct(self, maps: Any, *, raw: bool = False, outline_lock: bool = False) -> np.ndarray:
        """Encoder then decoder: float32 ``(N, 26, 26, 3)``.

        One-hot by plain argmax (the honest reconstruction) unless
        ``outline_lock`` keeps each input's own outline; ``raw=True``: the
        decoder's probabilities.
        """
        onehot = as_maps(maps)
        probs = self.decoder.run(self.encoder.run(onehot, chunk=BLOCK_ROWS), chunk=BLOCK_ROWS)
        return _finish(probs, raw, outline(onehot) if outline_lock else None)

    def bank_maps(self, indices: Any) -> np.ndarray:
        """The bank's own maps ``indices`` as the decoder sees them (outline-locked).

        The bundle stores no training map, so this is the closest picture of
        a bank source: its latent decoded, with its outline locked in.
        """
        idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        if idx.size and (idx.min() < 0 or idx.max() >= self.bundle.count):
            raise InputError(f"bank index out of range 0..{self.bundle.count - 1}")
        return self.decode(self.bundle.latents[idx], outlines=self.bundle.source_outlines(idx))

    # ------------------------------------------------------------ generation

    def generate(
        self,
        cls: Optional[ClassLike],
        n: int = 1,
        *,
        seed: sampling.SeedLike = None,
        maps: Any = None,
        labels: Any = None,
        source_index: Optional[int] = None,
        strength: Optional[float] = None,
        method: Optional[str] = None,
        mode: Optional[str] = None,
        outline_lock: Optional[bool] = None,
        raw: bool = False,
        progress: Optional[Progress] = None,
    ) -> Generated:
        """Generate ``n`` new maps of class ``cls`` (name, any case, or index).

        Sources: the bundle's latent bank, or ``maps`` (with ``labels``; without
        labels every given map counts as class ``cls``). Sources are a seeded
        random permutation of the class's maps, cycled, so ``n`` up to the
        class count gives distinct sources. ``source_index`` pins every map to
        that row of the source set (``cls`` may then be None; if given it must
        match). ``strength``/``method``/``mode``/``outline_lock`` default to the
        bundle's ``noise_defaults``. Same ``seed``, same maps.
        """
        n = _check_count(n)
        _need_memory(n)
        job = self._generate_job(cls, n, seed, maps, labels, source_index, strength, method, mode, outline_lock, raw)
        out = np.empty((n, *MAP_SHAPE), dtype=np.float32)
        self._fill(job, out, progress)
        return Generated(out, self._labels(job), job.sources)

    def augment(
        self,
        per_source: int = 5,
        *,
        maps: Any = None,
        labels: Any = None,
        seed: sampling.SeedLike = None,
        strength: Optional[float] = None,
        method: Optional[str] = None,
        mode: Optional[str] = None,
        outline_lock: Optional[bool] = None,
        raw: bool = False,
        progress: Optional[Progress] = None,
        source_offset: int = 0,
    ) -> Generated:
        """``per_source`` new maps for every source map (the bank, or ``maps`` + ``labels``).

        Order: the k variants of source i are rows ``k·i … k·i+k−1``; each
        keeps its source's label and outline.

        ``source_offset``: the index of ``maps[0]`` in a larger source set that
        the caller augments block by block (:mod:`edge_infer.blocks`). Rows,
        their noise and ``sources`` are numbered as in one call on the whole
        set, so the blocks' results, concatenated, equal that call's (for
        ``method="noise"``; ``"mix"`` pairs sources across the whole set).
        """
        k = _check_count(per_source, "per_source")
        if isinstance(source_offset, (bool, np.bool_)) or not isinstance(source_offset, (int, np.integer)) or source_offset < 0:
            raise InputError(f"source_offset must be a non-negative whole number, not {source_offset!r}")
        src = self._source_set(maps, labels, None, require_labels=True)
        m = src.labels.shape[0]
        _need_memory(m * k)
        sources = np.repeat(np.arange(m, dtype=np.int64), k)
        variants = np.tile(np.arange(k, dtype=np.int64), m)
        job = self._job(src, sources, variants, sampling.root_seed(seed), strength, method, mode, outline_lock, raw)
        if source_offset:
            if job.partners is not None:
                raise InputError("method 'mix' pairs sources across the whole set; it cannot be given in blocks")
            job = job._replace(row0=int(source_offset) * k)
        out = np.empty((sources.size, *MAP_SHAPE), dtype=np.float32)
        self._fill(job, out, progress)
        return Generated(out, self._labels(job), job.sources + int(source_offset))

    def generate_to_files(
        self,
        cls: Optional[ClassLike],
        n: int,
        out_dir: PathLike,
        *,
        force: bool = False,
        seed: sampling.SeedLike = None,
        maps: Any = None,
        labels: Any = None,
        source_index: Optional[int] = None,
        strength: Optional[float] = None,
        method: Optional[str] = None,
        mode: Optional[str] = None,
        outline_lock: Optional[bool] = None,
        raw: bool = False,
        progress: Optional[Progress] = None,
    ) -> Streamed:
        """Like :meth:`generate`, streamed to ``out_dir/gen_data.npy`` + ``gen_label.npy``.

        Maps are written block by block to a temporary ``.npy`` that is renamed
        into place at the end, so only one block (4096 maps) is held in memory
        and an interrupted run leaves no partial file. Same
        seed, same maps as :meth:`generate`.
        """
        n = _check_count(n)
        out = Path(out_dir)
        data_path, label_path = out / DATA_FILE, out / LABEL_FILE
        check_targets([data_path, label_path], force=force)
        # Refuse up front (before planning n rows) what the disk cannot hold.
        need = n * MAP_BYTES + n * 8 + (1 << 20)
        free = shutil.disk_usage(out).free
        if need > free:
            raise OutputError(
                f"{n} maps need {need / 2**30:.2f} GiB in {out}, which has {free / 2**30:.2f} GiB free"
            )
        job = self._generate_job(cls, n, seed, maps, labels, source_index, strength, method, mode, outline_lock, raw)
        lab = self._labels(job)
        with atomic_path(label_path, force=force) as tmp_label, atomic_path(data_path, force=force) as tmp_data:
            self._write_npy(job, tmp_data, progress)
            write_npy(tmp_label, lab)
        return Streamed(data_path, label_path, n, lab, job.sources)

    # ------------------------------------------------------------ internals

    def _check_latents(self, latents: Any) -> np.ndarray:
        try:
            z = np.asarray(latents, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InputError(f"latents cannot be read as numbers: {exc}") from None
        shape = tuple(self.bundle.latents.shape[1:])
        if z.shape == shape:
            z = z[None]
        if z.ndim != 4 or tuple(z.shape[1:]) != shape:
            raise InputError(f"latents have shape {z.shape}; expected (N, {', '.join(map(str, shape))})")
        if not np.isfinite(z).all():
            raise InputError("latents contain NaN or infinite values")
        return np.ascontiguousarray(z)

    def _source_set(self, maps: Any, labels: Any, cls_index: Optional[int], *, require_labels: bool) -> _SourceSet:
        if maps is None:
            if labels is not None:
                raise InputError("labels were given without maps")
            return self._bank
        onehot = as_maps(maps)
        m = onehot.shape[0]
        if labels is None:
            if require_labels or cls_index is None:
                raise InputError("labels are needed for the given maps (one class index per map)")
            lab = np.full(m, cls_index, dtype=np.int64)
        else:
            lab = as_labels(labels, m, len(self.classes))[:, 0]
        latents = self.encoder.run(onehot, chunk=BLOCK_ROWS)
        return _SourceSet(latents, lab, np.arange(m, dtype=np.int64), outline(onehot))

    def _generate_job(
        self, cls, n, seed, maps, labels, source_index, strength, method, mode, outline_lock, raw
    ) -> _Job:
        cls_index = None if cls is None else resolve_class(cls, self.classes)
        if cls_index is None and source_index is None:
            raise InputError(f"give a class (one of: {', '.join(self.classes)}) or a source index")
        src = self._source_set(maps, labels, cls_index, require_labels=False)
        root = sampling.root_seed(seed)
        pin = None
        if source_index is not None:
            if isinstance(source_index, (bool, np.bool_)) or not isinstance(source_index, (int, np.integer)):
                raise InputError(f"source index must be a whole number, not {source_index!r}")
            count = src.labels.shape[0]
            if not 0 <= source_index < count:
                raise InputError(f"source index {source_index} is out of range 0..{count - 1}")
            pin = int(source_index)
            src_cls = int(src.labels[pin])
            if cls_index is not None and src_cls != cls_index:
                raise InputError(
                    f"source {pin} is class {self.classes[src_cls]}, not {self.classes[cls_index]}; "
                    "drop --class or pick a source of that class"
                )
            cls_index = src_cls
        candidates = self._class_rows[cls_index] if src is self._bank else np.flatnonzero(src.labels == cls_index)
        if candidates.size == 0:
            where = "the given maps" if maps is not None else "the bundle's latent bank"
            raise InputError(f"no maps of class {self.classes[cls_index]} in {where}")
        with sampling.plan_stream(root) as rng:
            sources = sampling.choose_sources(candidates, n, rng, pin=pin)
        variants = _VARIANTS[:n] if n <= _VARIANTS.size else np.arange(n, dtype=np.int64) % sampling.COURSE_VARIANTS
        return self._job(src, sources, variants, root, strength, method, mode, outline_lock, raw)

    def _job(self, src, sources, variants, root, strength, method, mode, outline_lock, raw) -> _Job:
        d = self.bundle.noise_defaults
        method = sampling.check_choice(method if method is not None else d.method, sampling.METHODS, "method")
        mode = sampling.check_choice(mode if mode is not None else d.mode, sampling.MODES, "noise mode")
        strength = sampling.check_strength(strength if strength is not None else d.strength)
        partners = weights = None
        if method == "mix":
            with sampling.mix_stream(root) as rng:
                partners, alone = sampling.choose_partners(sources, src.labels, src.outline_ids, rng)
                weights = sampling.mix_weights(sources.size, rng)
            if alone.any():
                lonely = sorted({self.classes[c] for c in src.labels[sources[alone]]})
                warnings.warn(
                    f"mix needs two source maps of a class; {', '.join(lonely)} has only one, "
                    "so its maps use noise alone",
                    sampling.MixFallback,
                    stacklevel=3,
                )
        return _Job(
            src=src,
            sources=sources,
            variants=variants,
            partners=partners,
            weights=weights,
            mode=mode,
            strength=strength,
            std=self.bundle.latent_std,
            root=root,
            outline_lock=bool(d.outline_lock if outline_lock is None else outline_lock),
            raw=bool(raw),
        )

    def _labels(self, job: _Job) -> np.ndarray:
        return job.src.labels[job.sources].astype(np.int64).reshape(-1, 1)

    def _clean_latents(self, job: _Job, rows: Union[slice, np.ndarray], out: Optional[np.ndarray] = None) -> np.ndarray:
        """Latents of output ``rows`` before noise: the source's, or its mix with
        the partner's (``out``: where to gather the sources' latents)."""
        z = job.src.latents.take(job.sources[rows], axis=0, out=out, mode="clip")  # rows valid by construction; "raise" buffers
        if job.partners is not None and job.weights is not None:
            z = sampling.mix_latents(z, job.src.latents[job.partners[rows]], job.weights[rows])
        return z

    def _latents(self, job: _Job, rows: slice, scratch: Scratch) -> np.ndarray:
        """Noisy (and mixed) latents for output ``rows``, in ``scratch``.

        Row ``r``'s noise comes from noise stream ``r // NOISE_ROWS``, so rows
        can be cut into pieces (blocks, threads) anywhere.
        """
        start, n = rows.start, rows.stop - rows.start
        shape = (n, *job.src.latents.shape[1:])
        sigma = sampling.noise_sigma(job.mode, job.strength, job.std, job.variants[rows])
        clean = self._clean_latents(job, rows, out=scratch.array("clean", shape))
        noisy, uniform = scratch.array("noisy", shape), scratch.array("uniform", shape)
        step = sampling.NOISE_ROWS
        lo = start
        while lo < rows.stop:
            g = lo + job.row0  # the row's index in the whole request
            hi = min(lo - g % step + step, rows.stop)  # to the end of the row's stream, or of the rows
            a, b = lo - start, hi - start
            with sampling.noise_stream(job.root, g // step) as rng:
                if g % step:  # rows that start inside a stream: skip the stream's rows before them
                    rng.random((g % step) * uniform[0].size, dtype=np.float32)
                s = sigma if sigma.shape[0] == 1 else sigma[a:b]
                sampling.add_noise(clean[a:b], s, rng, out=noisy[a:b], work=uniform[a:b])
            lo = hi
        return noisy

    def _block_into(self, job: _Job, rows: slice, dest: np.ndarray, seen: Optional[set] = None) -> np.ndarray:
        """Write the maps of output ``rows`` (one block) into ``dest`` and return it.

        ``dest``: C-contiguous float32 ``(rows, 26, 26, 3)``, e.g. those rows of
        the result, so each map is written once, where it ends up. ``seen``:
        sibling keys of the earlier blocks (updated with this block's), so no
        variant repeats a sibling anywhere in the output.

        On the CPU a large block is cut into pieces, one per core, and each
        piece goes through noise, the single-threaded decoder session and the
        outline lock on its own host thread (see :mod:`~edge_infer.hostpool`).
        """
        start, n = rows.start, rows.stop - rows.start
        pieces: Sequence[tuple[int, int]] = ((start, rows.stop),)
        if self.decoder.small_session is not None:  # CPU: the runner has a one-thread twin to run pieces on
            pieces = hostpool.pieces(start, rows.stop, self._threads, align=sampling.NOISE_ROWS)
        split = len(pieces) > 1

        def piece(bounds: tuple[int, int]) -> None:
            lo, hi = bounds
            part = slice(lo, hi)
            out = dest[lo - start : hi - start]
            with borrow() as scratch:
                z = self._latents(job, part, scratch)
                if job.raw:
                    self.decoder.run(z, out=out, one_thread=split)  # IO binding: straight into dest
                    return
                if hi - lo < _BIND_MIN:
                    # Small batches: plain session.run (onnxruntime allocates a few kB)
                    # is ~5 us cheaper than setting up an IO binding.
                    probs = self.decoder.run(z)
                else:
                    probs = self.decoder.run(z, out=scratch.array("probs", (hi - lo, *MAP_SHAPE)), one_thread=split)
                self._maps_into(job, job.sources[part], probs, out, scratch)

        hostpool.for_each(piece, pieces)
        if job.raw:
            return dest
        # Siblings can only clash where this block repeats a source or earlier
        # blocks exist; a single block of distinct sources (batch 1) skips the check.
        sources = job.sources[rows]
        if job.mode == "relative" and (seen is not None or (n > 1 and np.unique(sources).size < n)):
            keys = self._distinct_siblings(job, rows, dest, seen)
            if seen is not None:
                seen.update(keys.tolist())
        return dest

    def _maps_into(
        self, job: _Job, sources: np.ndarray, probs: np.ndarray, dest: np.ndarray, scratch: Optional[Scratch] = None
    ) -> None:
        """Decoder probabilities → one-hot maps in ``dest`` (outline-locked or argmax)."""
        if job.outline_lock:
            ids = job.src.outline_ids[sources]
            if scratch is None:
                lock_outline(probs, job.src.outlines[ids], out=dest)
            else:
                shape = probs.shape[:-1]
                boundary = job.src.outlines.take(ids, axis=0, out=scratch.array("boundary", shape, bool), mode="clip")
                lock_outline(probs, boundary, out=dest, work=scratch.array("codes", shape, bool))
        else:
            dest[...] = to_onehot(probs.argmax(axis=-1))

    def _distinct_siblings(self, job: _Job, rows: slice, dest: np.ndarray, seen: Optional[set]) -> np.ndarray:
        """Redraw, with growing noise, every variant in ``dest`` identical to a
        sibling (same source) earlier in the output; return the final keys.

        Only for relative noise: the course schedule is kept as the course had
        it, identical siblings included, so its results can be reproduced.
        Redraws are keyed by output row, so in-memory and streamed runs agree.
        """
        sources = job.sources[rows]
        keys = sampling.sibling_keys(sources, dest)
        for attempt in range(1, sampling.MAX_REDRAWS + 1):
            repeated = sampling.repeated_rows(keys, seen)
            if repeated.size == 0:
                break
            grow = np.float32(sampling.REDRAW_GROWTH**attempt)
            sigma = sampling.noise_sigma(job.mode, job.strength, job.std, job.variants[rows][repeated]) * grow
            picked = np.arange(rows.start, rows.stop)[repeated]
            z = self._clean_latents(job, picked)
            noisy = np.empty_like(z)
            for i, r in enumerate(picked):
                with sampling.redraw_stream(job.root, int(r) + job.row0, attempt) as rng:
                    noisy[i : i + 1] = sampling.add_noise(z[i : i + 1], sigma, rng)
            redrawn = np.empty((repeated.size, *MAP_SHAPE), dtype=np.float32)
            self._maps_into(job, sources[repeated], self.decoder.run(noisy), redrawn)
            dest[repeated] = redrawn
            keys[repeated] = sampling.sibling_keys(sources[repeated], redrawn)
        return keys

    def _blocks(self, job: _Job, progress: Optional[Progress], out: Optional[np.ndarray] = None) -> Iterator[tuple[slice, np.ndarray]]:
        """``job``'s maps, one block at a time: ``(rows, maps of those rows)``.

        With ``out`` (all ``job.n`` rows) each block is written into its rows of
        ``out``; without, into one reused buffer: consume it before the next block.
        """
        step = BLOCK_ROWS
        buf = np.empty((min(step, job.n), *MAP_SHAPE), dtype=np.float32) if out is None else None
        seen: set = set()  # sibling keys so far: 8 bytes a map, even for a million
        for start in range(0, job.n, step):
            rows = slice(start, min(start + step, job.n))
            dest = out[rows] if buf is None else buf[: rows.stop - start]
            yield rows, self._block_into(job, rows, dest, seen)
            if progress is not None:
                progress(rows.stop, job.n)

    def _fill(self, job: _Job, out: np.ndarray, progress: Optional[Progress]) -> None:
        """Write all of ``job``'s maps into the array ``out``."""
        if job.n <= BLOCK_ROWS:
            # One block (every batch-1 call): skip the generator machinery.
            self._block_into(job, slice(0, job.n), out)
            if progress is not None:
                progress(job.n, job.n)
            return
        for _ in self._blocks(job, progress, out):
            pass

    def _write_npy(self, job: _Job, path: Path, progress: Optional[Progress]) -> None:
        """Stream ``job``'s maps into a ``.npy`` file: header, then block after block.

        Plain sequential writes rather than a memory map: a memory map's dirty
        pages count as the process's memory (8 GB resident for a million maps),
        while written blocks are the page cache's business.
        """
        from numpy.lib import format as npy_format

        header = {
            "descr": npy_format.dtype_to_descr(np.dtype(np.float32)),
            "fortran_order": False,
            "shape": (job.n, *MAP_SHAPE),
        }
        with open(path, "wb") as fh:
            npy_format.write_array_header_1_0(fh, header)
            for _, maps in self._blocks(job, progress):
                fh.write(np.ascontiguousarray(maps, dtype=np.float32).data)

