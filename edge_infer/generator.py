"""``WaferGenerator``: plan → generator graph per block → sink.

A request is first *planned*, in Python and without onnxruntime
(:mod:`~edge_infer.sampling`): which source each row comes from, its
variant, its mixing partner, its σ. Each block of rows is then *one run of a
bundle graph*, which draws the seeded noise, decodes and locks the source's
outline: ``generator.onnx`` for bank rows with the default noise,
``generator_core.onnx`` for everything else (given maps, ``mix``, the course
schedule, sibling redraws, raw probabilities). The block goes to its *sink*:
the result array, or a streamed ``.npy``. The graphs' contract is
``docs/bundle-format.md``; a client in another language reproduces these maps
with it (``docs/other-languages.md``).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

import numpy as np

from . import sampling
from .bundle import LATENT_SHAPE, Bundle, load_bundle
from .errors import BundleError, InputError, OutputError
from .io import atomic_path, check_targets, write_npy
from .plan import Plan, Sources, check_count, check_source_index, plan_augment, plan_generate, settings
from .runtime import GraphRunner, SessionInfo, create_session_info
from .wafer import MAP_SHAPE, ClassLike, as_labels, as_maps, lock_outline, outline, resolve_class, to_onehot

PathLike = Union[str, Path]
Progress = Callable[[int, int], None]

#: In-memory results larger than this are refused (use ``generate_to_files``).
MAX_IN_MEMORY_BYTES = 2 << 30
MAP_BYTES = int(np.prod(MAP_SHAPE)) * 4
#: Rows per graph run: the unit of streaming to disk and of progress (bounds memory).
BLOCK_ROWS = 4096
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

    ``np.asarray(result)`` is ``result.maps``.
    """

    maps: np.ndarray
    labels: np.ndarray
    sources: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> np.ndarray:
        """The maps, so ``np.asarray(result)`` and ``np.save(path, result)`` give
        float32 ``(N, 26, 26, 3)`` rather than a pickled object."""
        if copy is False and dtype is not None and np.dtype(dtype) != self.maps.dtype:
            raise ValueError("Generated.maps cannot be converted to another dtype without a copy")
        arr = self.maps if dtype is None else self.maps.astype(dtype, copy=False)
        return arr.copy() if copy else arr


@dataclass(frozen=True)
class Streamed:
    """What :meth:`WaferGenerator.generate_to_files` wrote."""

    data_path: Path
    label_path: Path
    count: int
    labels: np.ndarray  # int64 (N, 1)
    sources: np.ndarray  # int64 (N,)


def _need_memory(n: int) -> None:
    need = n * MAP_BYTES
    if need > MAX_IN_MEMORY_BYTES:
        raise InputError(
            f"{n} maps would need {need / 2**30:.1f} GiB in memory; use "
            "WaferGenerator.generate_to_files (the CLI streams to disk automatically)"
        )


def _finish(probs: np.ndarray, raw: bool, boundary: Optional[np.ndarray]) -> np.ndarray:
    """Decoder probabilities as returned by decode/reconstruct: raw, outline-locked, or argmax."""
    if raw:
        return probs
    if boundary is not None:
        return lock_outline(probs, boundary)
    return to_onehot(probs.argmax(axis=-1))


class _Lazy:
    """A graph opened at its first use, once, however many threads ask at once.

    Only ``generator.onnx`` is opened at load: it is what ``generate`` from
    the bank runs and what decides the provider. The encoder, the decoder and
    the core graph cost start-up time that a command not using them should not
    pay; they open on the provider the generator really got, and their checks
    against the format run then.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._value: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._make()
        return self._value


def _check_inputs(session: Any, path: Path, names: tuple[str, ...]) -> Any:
    have = [i.name for i in session.get_inputs()]
    if sorted(have) != sorted(names):
        raise BundleError(f"{path}: inputs {', '.join(have)} are not the format's {', '.join(names)}")
    return session


def _runner(bundle: Bundle, role: str, provider: str, threads: Optional[int]) -> GraphRunner:
    """The encoder or decoder of ``bundle`` as a runner, its output shape checked."""
    path, (input_name, output_name), want = (
        (bundle.encoder_path, bundle.encoder_io, LATENT_SHAPE) if role == "encoder"
        else (bundle.decoder_path, bundle.decoder_io, MAP_SHAPE)
    )
    runner = GraphRunner(*create_session_info(path, provider=provider, threads=threads),
                         input_name=input_name, output_name=output_name)
    got = runner.item_shape
    if len(got) != len(want) or any(g not in (-1, w) for g, w in zip(got, want)):
        raise BundleError(f"{path}: output shape (batch, {', '.join(map(str, got))}) is not (batch, {', '.join(map(str, want))})")
    return runner


GENERATOR_INPUTS = ("source", "seed", "row0", "strength")
CORE_INPUTS = ("latent", "sigma", "outline", "seed", "row", "attempt")


def _as_latents(latents: Any, shape: tuple) -> np.ndarray:
    """Latents ``(N, *shape)`` float32, C-contiguous, finite (one latent becomes a batch of one)."""
    try:
        z = np.asarray(latents, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"latents cannot be read as numbers: {exc}") from None
    shape = tuple(shape)
    if z.shape == shape:
        z = z[None]
    if z.ndim != 4 or tuple(z.shape[1:]) != shape:
        raise InputError(f"latents have shape {z.shape}; expected (N, {', '.join(map(str, shape))})")
    if not np.isfinite(z).all():
        raise InputError("latents contain NaN or infinite values")
    return np.ascontiguousarray(z)


class WaferGenerator:
    """Generate, encode, decode and reconstruct wafer maps with a verified bundle.

    Thread safety: a generator holds only immutable state (a verified bundle
    with read-only arrays and onnxruntime sessions, whose ``run`` is
    thread-safe); every call plans and runs on its own, so one instance may
    serve many threads at once, and the same seed gives the same maps in any
    thread.

    Maps are accepted one-hot ``(N, 26, 26, 3)`` like ``data.npy``, as die
    states ``(N, 26, 26)`` (0 boundary, 1 normal, 2 defect), or as a single
    map; other sizes are resized to 26×26 by nearest neighbour with a
    :class:`~edge_infer.wafer.ResizeNote` warning. Classes are given by name
    (any case) or index.
    """

    def __init__(self, bundle: Bundle, provider: str = "auto", threads: Optional[int] = None) -> None:
        """A generator over a loaded ``bundle`` (:meth:`load` finds and verifies one)."""
        self.bundle = bundle
        session, self._info = create_session_info(bundle.generator_path, provider=provider, threads=threads)
        self.generator_session = _check_inputs(session, bundle.generator_path, GENERATOR_INPUTS)  # generator.onnx
        on = self._info.actual  # the graphs opened later run where the generator really runs
        self._encoder = _Lazy(lambda: _runner(bundle, "encoder", on, threads))
        self._decoder = _Lazy(lambda: _runner(bundle, "decoder", on, threads))
        self._core = _Lazy(lambda: _check_inputs(
            create_session_info(bundle.core_path, provider=on, threads=threads)[0], bundle.core_path, CORE_INPUTS))
        self._graphs = _Graphs(self.generator_session, self._core, bundle.latent_std)
        self._bank = Sources(bundle.latents, bundle.labels, bundle.outline_ids, bundle.outlines, True)
        self._class_rows = tuple(np.flatnonzero(bundle.labels == c) for c in range(len(bundle.classes)))

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
        CPU), ``"cpu"``, ``"cuda"``, ``"tensorrt"`` or ``"openvino"`` (a
        :class:`~edge_infer.errors.ProviderError` where it does not really
        run). ``threads``: onnxruntime intra-op threads per session; None
        keeps onnxruntime's default. The encoder, decoder and core graphs open
        at their first use (see :class:`_Lazy`).
        """
        return cls(load_bundle(path, verify=verify), provider, threads)

    def open_graphs(self) -> "WaferGenerator":
        """Open the encoder, decoder and core graphs now rather than at first use.

        For a server that wants its first request as fast as the rest, and for
        ``edge-infer info``, which checks every graph against the format.
        Returns the generator.
        """
        self._encoder(), self._decoder(), self._core()
        return self

    @property
    def encoder(self) -> GraphRunner:
        """``encoder.onnx`` as a runner (opened at first use)."""
        return self._encoder()

    @property
    def decoder(self) -> GraphRunner:
        """``decoder.onnx`` as a runner (opened at first use)."""
        return self._decoder()

    @property
    def core_session(self) -> Any:
        """``generator_core.onnx``'s session (opened at first use)."""
        return self._core()

    # ------------------------------------------------------------ properties

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in label-index order."""
        return self.bundle.classes

    @property
    def provider(self) -> str:
        """``"cpu"`` or ``"cuda"``: what really runs the generator graph."""
        return self._info.actual

    @property
    def provider_info(self) -> SessionInfo:
        """The generator graph's provider and the reason for a CPU fallback, if any."""
        return self._info

    # ------------------------------------------------------------ encode / decode

    def encode(self, maps: Any) -> np.ndarray:
        """Latents float32 ``(N, 64, 3, 3)`` of maps in any accepted form."""
        return self.encoder.run(as_maps(maps), chunk=BLOCK_ROWS)

    def decode(self, latents: Any, *, raw: bool = False, outlines: Optional[np.ndarray] = None) -> np.ndarray:
        """Maps float32 ``(N, 26, 26, 3)`` from latents ``(N, 64, 3, 3)`` (or one latent).

        One-hot by the decoder's most likely die state, or, with ``outlines``
        (boolean ``(N, 26, 26)`` or ``(26, 26)``, True = off-wafer), with that
        outline locked in. ``raw=True``: the decoder's probabilities.
        """
        probs = self.decoder.run(_as_latents(latents, LATENT_SHAPE), chunk=BLOCK_ROWS)
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
        a bank source: its latent decoded, with its outline locked in. That is
        the generator graph at zero noise (the exporter checks it against
        ``decoder.onnx`` + the lock bit for bit), so a picture of a bank
        generate needs no second graph.
        """
        idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        if idx.size and (idx.min() < 0 or idx.max() >= self.bundle.count):
            raise InputError(f"bank index out of range 0..{self.bundle.count - 1}")
        zero_noise = {"seed": np.zeros(1, np.int64), "row0": np.zeros(1, np.int64), "strength": np.zeros(1, np.float32)}
        blocks = [self.generator_session.run(["maps"], {"source": idx[lo:lo + BLOCK_ROWS], **zero_noise})[0]
                  for lo in range(0, idx.size, BLOCK_ROWS)]
        return np.concatenate(blocks) if blocks else np.empty((0, *MAP_SHAPE), np.float32)

    # ------------------------------------------------------------ generation: plan → graph per block → sink

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
        random order of the class's maps, cycled, so ``n`` up to the class
        count gives distinct sources. ``source_index`` pins every map to that
        row of the source set (``cls`` may then be None; if given it must
        match). ``strength``/``method``/``mode``/``outline_lock`` default to the
        bundle's ``noise_defaults``. ``seed``: an int from 0 to 2**63-1,
        passed to the generator graph unchanged; None draws a fresh one. Same
        seed, same maps. ``progress(done, total)`` is called after each block.
        """
        n = check_count(n)
        _need_memory(n)
        plan = self._plan(cls, n, seed, maps, labels, source_index, strength, method, mode, outline_lock, raw)
        return Generated(_collect(self._graphs, plan, progress), plan.labels, plan.sources)

    def augment(
        self,
        per_source: Union[int, Sequence[int]] = 5,
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
        keeps its source's label and outline. ``per_source`` may also be one
        count per source (≥ 0; see :mod:`edge_infer.recipes`): then the
        variants of each source follow each other, in source order.

        ``source_offset``: the index of ``maps[0]`` in a larger source set that
        the caller augments block by block (:mod:`edge_infer.blocks`). Rows,
        their noise and ``sources`` are numbered as in one call on the whole
        set, so the blocks' results, concatenated, equal that call's (for
        ``method="noise"``; ``"mix"`` pairs sources across the whole set).
        """
        uniform = not isinstance(per_source, (list, tuple, np.ndarray))
        k = check_count(per_source, "per_source") if uniform else 0
        if isinstance(source_offset, (bool, np.bool_)) or not isinstance(source_offset, (int, np.integer)) or source_offset < 0:
            raise InputError(f"source_offset must be a non-negative whole number, not {source_offset!r}")
        if source_offset and not uniform:
            raise InputError("per-source counts cannot be given in blocks (source_offset needs one k for all)")
        src = self._source_set(maps, labels, None, require_labels=True)
        from .recipes import variant_counts  # only augment needs the recipes

        counts = variant_counts(k if uniform else per_source, src.labels.shape[0])  # one per source (recipes)
        _need_memory(int(counts.sum()))
        opts = settings(self.bundle.noise_defaults, strength, method, mode, outline_lock, raw)
        plan = plan_augment(src, counts, sampling.check_seed(seed), opts, self.classes)
        if source_offset:
            if plan.partners is not None:
                raise InputError("method 'mix' pairs sources across the whole set; it cannot be given in blocks")
            plan = plan._replace(row0=int(source_offset) * k)
        return Generated(_collect(self._graphs, plan, progress), plan.labels, plan.sources + int(source_offset))

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
        and an interrupted run leaves no partial file. Same seed, same maps as
        :meth:`generate`. ``progress(done, total)`` is called after each block.
        """
        n = check_count(n)
        out = Path(out_dir)
        data_path, label_path = out / DATA_FILE, out / LABEL_FILE
        check_targets([data_path, label_path], force=force)
        need = n * MAP_BYTES + n * 8 + (1 << 20)  # refused before planning n rows
        free = shutil.disk_usage(out).free
        if need > free:
            raise OutputError(f"{n} maps need {need / 2**30:.2f} GiB in {out}, which has {free / 2**30:.2f} GiB free")
        plan = self._plan(cls, n, seed, maps, labels, source_index, strength, method, mode, outline_lock, raw)
        with atomic_path(label_path, force=force) as tmp_label, atomic_path(data_path, force=force) as tmp_data:
            _write_npy(self._graphs, plan, tmp_data, progress)
            write_npy(tmp_label, plan.labels)
        return Streamed(data_path, label_path, n, plan.labels, plan.sources)

    # ------------------------------------------------------------ internals

    def _plan(self, cls, n, seed, maps, labels, source_index, strength, method, mode, outline_lock, raw) -> Plan:
        cls_index = None if cls is None else resolve_class(cls, self.classes)
        if cls_index is None and source_index is None:
            raise InputError(f"give a class (one of: {', '.join(self.classes)}) or a source index")
        src = self._source_set(maps, labels, cls_index, require_labels=False)
        opts = settings(self.bundle.noise_defaults, strength, method, mode, outline_lock, raw)
        seed = sampling.check_seed(seed)
        pin = None
        if source_index is not None:
            pin = check_source_index(source_index, src, cls_index, self.classes)
            cls_index = int(src.labels[pin])
        candidates = self._class_rows[cls_index] if src.bank else np.flatnonzero(src.labels == cls_index)
        if candidates.size == 0:
            where = "the given maps" if maps is not None else "the bundle's latent bank"
            raise InputError(f"no maps of class {self.classes[cls_index]} in {where}")
        return plan_generate(src, candidates, n, seed, opts, self.classes, pin=pin)

    def _source_set(self, maps: Any, labels: Any, cls_index: Optional[int], *, require_labels: bool) -> Sources:
        if maps is None:
            if labels is not None:
                raise InputError("labels were given without maps")
            return self._bank
        return _given_sources(self.encoder, maps, labels, cls_index, len(self.classes), require_labels)


def _given_sources(encoder: GraphRunner, maps: Any, labels: Any, cls_index: Optional[int], n_classes: int,
                   require_labels: bool) -> Sources:
    """The caller's maps as sources: their latents (``encoder.onnx``), labels and outlines."""
    onehot = as_maps(maps)
    m = onehot.shape[0]
    if labels is None:
        if require_labels or cls_index is None:
            raise InputError("labels are needed for the given maps (one class index per map)")
        lab = np.full(m, cls_index, dtype=np.int64)
    else:
        lab = as_labels(labels, m, n_classes)[:, 0]
    return Sources(encoder.run(onehot, chunk=BLOCK_ROWS), lab, np.arange(m, dtype=np.int64), outline(onehot), False)


# ---------------------------------------------------------------- 2. one graph run per block


class _Graphs(NamedTuple):
    """The two generator sessions and the bank's latent std (σ of relative noise)."""

    generator: Any  # generator.onnx
    core: Callable[[], Any]  # generator_core.onnx, opened at its first use
    std: np.ndarray


def _block(graphs: _Graphs, plan: Plan, lo: int, hi: int) -> np.ndarray:
    """The maps of rows ``[lo, hi)`` (first draws): one run of a generator graph."""
    if plan.bank_graph:
        feeds = {
            "source": plan.sources[lo:hi],
            "seed": np.array([plan.seed], dtype=np.int64),
            "row0": np.array([plan.row0 + lo], dtype=np.int64),
            "strength": np.array([plan.settings.strength], dtype=np.float32),
        }
        return graphs.generator.run(["maps"], feeds)[0]
    return _draw(graphs, plan, np.arange(lo, hi, dtype=np.int64), np.zeros(hi - lo, dtype=np.int64))


def _draw(graphs: _Graphs, plan: Plan, rows: np.ndarray, attempts: np.ndarray) -> np.ndarray:
    """Maps of request ``rows`` at draw ``attempts`` (per row): one run of the core graph."""
    src, sources, opts = plan.src, plan.sources[rows], plan.settings
    latent = src.latents[sources]
    if plan.partners is not None and plan.weights is not None:
        latent = sampling.mix_latents(latent, src.latents[plan.partners[rows]], plan.weights[rows])
    sigma = sampling.noise_sigma(opts.mode, opts.strength, graphs.std, plan.variants[rows])
    if attempts.any():
        sigma = sampling.redraw_sigma(sigma, attempts[:, None])
    feeds = {
        "latent": np.ascontiguousarray(latent, dtype=np.float32),
        "sigma": np.ascontiguousarray(sigma, dtype=np.float32),
        "outline": src.outlines[src.outline_ids[sources]],
        "seed": np.array([plan.seed], dtype=np.int64),
        "row": rows + plan.row0,
        "attempt": attempts.astype(np.int64),
    }
    if opts.outline_lock and not opts.raw:
        return graphs.core().run(["maps"], feeds)[0]
    probs = graphs.core().run(["probs"], feeds)[0]
    return probs if opts.raw else to_onehot(probs.argmax(axis=-1))


def _redraw_siblings(graphs: _Graphs, plan: Plan, lo: int, maps: np.ndarray, seen: set) -> None:
    """Replace, in row order, each map equal to an earlier map of its source.

    Row r keeps the first of its draws (attempt 0, then redraws 1 …
    MAX_REDRAWS) whose map differs from every kept map of an earlier row
    with the same source; after MAX_REDRAWS clashes the last is kept.
    ``seen``: sibling keys of the rows before ``lo`` (updated).
    """
    keys = sampling.sibling_keys(plan.sources[lo:lo + len(maps)], maps)
    clashing = sampling.repeated_rows(keys, seen)
    if clashing.size == 0:
        seen.update(keys.tolist())
        return
    # Every redraw of every row that clashes at attempt 0, in one graph run; a row
    # that clashes only with an earlier row's redraw gets its own run below.
    redraws = _redraws(graphs, plan, lo, lo + clashing)
    for i, key in enumerate(keys.tolist()):
        if key in seen:
            cand_maps, cand_keys = redraws.get(i) or _redraws(graphs, plan, lo, np.array([lo + i]))[i]
            for k in range(sampling.MAX_REDRAWS):
                if cand_keys[k] not in seen or k == sampling.MAX_REDRAWS - 1:
                    break
            maps[i], key = cand_maps[k], cand_keys[k]
        seen.add(key)


def _redraws(graphs: _Graphs, plan: Plan, lo: int, rows: np.ndarray) -> dict:
    """``{row - lo: (maps (R, 26, 26, 3), keys [R])}`` for redraws 1 … R of request ``rows``."""
    r = sampling.MAX_REDRAWS
    all_rows = np.repeat(rows, r)
    attempts = np.tile(np.arange(1, r + 1, dtype=np.int64), rows.size)
    maps = _draw(graphs, plan, all_rows, attempts).reshape(rows.size, r, *MAP_SHAPE)
    keys = sampling.sibling_keys(plan.sources[all_rows], maps.reshape(-1, *MAP_SHAPE)).reshape(rows.size, r)
    return {int(row) - lo: (maps[j], keys[j].tolist()) for j, row in enumerate(rows)}


def _blocks(graphs: _Graphs, plan: Plan, progress: Optional[Progress]) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, maps)`` block after block, siblings redrawn, progress reported."""
    seen: set = set()  # sibling keys so far: 8 bytes a map, even for a million
    for lo in range(0, plan.n, BLOCK_ROWS):
        hi = min(lo + BLOCK_ROWS, plan.n)
        maps = _block(graphs, plan, lo, hi)
        if plan.siblings:
            _redraw_siblings(graphs, plan, lo, maps, seen)
        yield lo, maps
        if progress is not None:
            progress(hi, plan.n)


# ---------------------------------------------------------------- 3. sinks


def _collect(graphs: _Graphs, plan: Plan, progress: Optional[Progress]) -> np.ndarray:
    """All maps in one array (a single block is the graph's own output, not a copy)."""
    n = plan.n
    if n <= BLOCK_ROWS and not plan.siblings:  # one block, nothing to redraw (every batch-1 call)
        maps = _block(graphs, plan, 0, n)
        if progress is not None:
            progress(n, n)
        return maps
    if n <= BLOCK_ROWS:
        return next(iter(_blocks(graphs, plan, progress)))[1]
    out = np.empty((n, *MAP_SHAPE), dtype=np.float32)
    for lo, maps in _blocks(graphs, plan, progress):
        out[lo:lo + len(maps)] = maps
    return out


def _write_npy(graphs: _Graphs, plan: Plan, path: Path, progress: Optional[Progress]) -> None:
    """Stream the maps into a ``.npy`` file: header, then block after block.

    Plain sequential writes rather than a memory map: a memory map's dirty
    pages count as the process's memory, written blocks are the page cache's.
    """
    from numpy.lib import format as npy_format

    header = {"descr": npy_format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
              "shape": (plan.n, *MAP_SHAPE)}
    with open(path, "wb") as fh:
        npy_format.write_array_header_1_0(fh, header)
        for _, maps in _blocks(graphs, plan, progress):
            fh.write(np.ascontiguousarray(maps, dtype=np.float32).data)
