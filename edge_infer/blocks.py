"""Inputs of any size through the generator, a block at a time (bounded memory).

Each function reads a :class:`~edge_infer.io.MapSource` block by block
(:func:`~edge_infer.io.iter_maps`: every map validated, the first bad one
named by its index), runs the generator's ordinary per-array method on the
block, and hands the result to a sink (:class:`~edge_infer.io.NpyStream`)
before reading the next. Memory is one block's, whatever the input's size,
and results equal those of the in-memory calls on the whole input:

* :func:`reconstruct_blocks` = ``WaferGenerator.reconstruct`` + the metrics of
  the whole input (sums kept in float64);
* :func:`augment_blocks` = ``WaferGenerator.augment`` on the whole input (each
  block is augmented with ``source_offset``, so rows and their noise are
  numbered as in one call);
* :func:`encode_blocks` = ``WaferGenerator.encode``.

The ``*_to_file(s)`` functions wrap them with files written atomically.
"""

from __future__ import annotations

import contextlib
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from .errors import InputError, TooLargeError
from .io import (
    BLOCK_MAPS,
    MAP_BYTES,
    ArraySource,
    DataInput,
    MapSource,
    NpyStream,
    atomic_path,
    check_free_space,
    check_targets,
    iter_maps,
    npy_stream,
    open_input,
    read_all,
    write_npy,
)
from .wafer import DEFECT, MAP_SHAPE, to_onehot

if TYPE_CHECKING:
    from .generator import WaferGenerator

PathLike = Union[str, Path]
Progress = Callable[[int, int], None]
#: Sources augmented per call are a multiple of this (the generator's noise
#: streams hold 128 rows each, so calls start on a stream boundary).
_ALIGN = 128


# ---------------------------------------------------------------- reconstruct


@dataclass
class ReconstructionTally:
    """Reconstruction metrics summed block by block (float64 sums, so blocks add up exactly enough).

    MSE: mean over all N×26×26×3 elements of (probabilities − one-hot)²;
    accuracy: share of dies whose most likely state is the input's; defect
    recall: share of defective dies reconstructed as defective.
    """

    squared: float = 0.0
    elements: int = 0
    correct: int = 0
    dies: int = 0
    defects: int = 0
    defects_found: int = 0

    def add(self, onehot: np.ndarray, probs: np.ndarray) -> None:
        onehot = np.asarray(onehot, dtype=np.float32)
        probs = np.asarray(probs, dtype=np.float32)
        truth = onehot.argmax(axis=-1)
        pred = probs.argmax(axis=-1)
        defects = truth == DEFECT
        self.squared += float(np.sum(np.square(probs - onehot), dtype=np.float64))
        self.elements += int(onehot.size)
        self.correct += int(np.count_nonzero(pred == truth))
        self.dies += int(truth.size)
        self.defects += int(np.count_nonzero(defects))
        self.defects_found += int(np.count_nonzero(pred[defects] == DEFECT))

    def metrics(self) -> dict[str, float]:
        """``{"mse", "accuracy", "defect_recall"}`` (recall NaN without defects)."""
        return {
            "mse": self.squared / self.elements if self.elements else math.nan,
            "accuracy": self.correct / self.dies if self.dies else math.nan,
            "defect_recall": self.defects_found / self.defects if self.defects else math.nan,
        }


@dataclass(frozen=True)
class Reconstruction:
    """What :func:`reconstruct_blocks` measured: metrics of every map, and the first few maps."""

    count: int
    metrics: dict[str, float]
    #: The first maps given and their reconstructions (one-hot), for a picture.
    first_inputs: np.ndarray
    first_outputs: np.ndarray


def _as_source(maps: Any) -> MapSource:
    if hasattr(maps, "raw_blocks"):
        return maps
    from .wafer import as_maps

    return ArraySource(as_maps(maps))


def reconstruct_blocks(
    gen: "WaferGenerator",
    maps: Any,
    *,
    sink: Optional[NpyStream] = None,
    keep: int = 8,
    progress: Optional[Progress] = None,
) -> Reconstruction:
    """Reconstruct every map of ``maps`` (a :class:`~edge_infer.io.MapSource` or an array), a block at a time.

    The one-hot reconstructions (as ``gen.reconstruct``) go to ``sink`` if
    given; the metrics cover every map. ``progress(done, total)`` after each block.
    """
    source = _as_source(maps)
    tally = ReconstructionTally()
    firsts: list[np.ndarray] = []
    recons: list[np.ndarray] = []
    kept = 0
    for _, block in iter_maps(source, progress=progress):
        probs = gen.reconstruct(block, raw=True)
        tally.add(block, probs)
        if sink is not None or kept < keep:
            recon = to_onehot(probs.argmax(axis=-1))
            if sink is not None:
                sink.write(recon)
            if kept < keep:
                firsts.append(block[: keep - kept].copy())
                recons.append(recon[: keep - kept].copy())
                kept += firsts[-1].shape[0]
    empty = np.empty((0, *MAP_SHAPE), dtype=np.float32)
    return Reconstruction(
        count=source.count,
        metrics=tally.metrics(),
        first_inputs=np.concatenate(firsts) if firsts else empty,
        first_outputs=np.concatenate(recons) if recons else empty,
    )


def reconstruct_to_file(
    gen: "WaferGenerator",
    data: PathLike,
    path: PathLike,
    *,
    force: bool = False,
    progress: Optional[Progress] = None,
) -> Reconstruction:
    """Reconstruct the maps of the file ``data`` into the ``.npy`` ``path``, streamed and atomic."""
    check_targets([path], force=force)
    source = open_input(data).maps
    check_free_space(Path(path).parent, source.count * MAP_BYTES, f"{source.count} reconstructed maps")
    with atomic_path(path, force=force) as tmp, npy_stream(tmp, (source.count, *MAP_SHAPE)) as sink:
        return reconstruct_blocks(gen, source, sink=sink, progress=progress)


# ---------------------------------------------------------------- augment


@dataclass
class Augmented:
    """What :func:`augment_blocks` made (the maps went to the sink).

    ``labels``: int64 ``(N·k, 1)``, the class of every generated map;
    ``examples``: per class index, ``(source row, source map, its first variants)``,
    for the first source of each class (a picture's rows).
    """

    count: int
    labels: np.ndarray
    examples: dict[int, tuple[int, np.ndarray, np.ndarray]] = field(default_factory=dict)


def sources_per_call(per_source: int, rows: int = BLOCK_MAPS) -> int:
    """Sources augmented per generator call: about ``rows`` output maps, aligned to the noise streams."""
    n = max(1, rows // max(per_source, 1))
    return n - n % _ALIGN if n >= _ALIGN else n


def augment_blocks(
    gen: "WaferGenerator",
    per_source: int,
    inp: DataInput,
    *,
    sink: Any,
    seed: Any = None,
    strength: Optional[float] = None,
    method: Optional[str] = None,
    mode: Optional[str] = None,
    outline_lock: Optional[bool] = None,
    shown: int = 5,
    progress: Optional[Progress] = None,
) -> Augmented:
    """``per_source`` new maps for every map of ``inp`` (with its labels), written to ``sink`` in order.

    Equal to ``gen.augment(per_source, maps=all maps, labels=...)``, a block of
    sources at a time. ``method="mix"`` pairs sources across the whole input,
    so it reads the input whole (within the memory ceiling) and makes the maps
    in one call.
    """
    from . import sampling
    from .generator import MAX_IN_MEMORY_BYTES

    if inp.labels is None:
        raise InputError(f"labels are needed for the maps of {inp.source} (one class index per map)")
    k = int(per_source)
    if k < 1:
        raise InputError(f"per_source must be at least 1, not {per_source}")
    if k * MAP_BYTES > MAX_IN_MEMORY_BYTES:
        raise InputError(
            f"{k} maps per source would be made {k * MAP_BYTES / 2**30:.1f} GiB at a time; "
            f"at most {MAX_IN_MEMORY_BYTES // MAP_BYTES} per source"
        )
    if seed is None:  # one fresh seed for every block, so they draw as one call would
        seed = secrets.randbits(63)
    chosen = method if method is not None else gen.bundle.noise_defaults.method
    mix = sampling.check_choice(chosen, sampling.METHODS, "method") == "mix"
    options = dict(seed=seed, strength=strength, method=method, mode=mode, outline_lock=outline_lock)
    labels = inp.labels
    total = inp.maps.count * k
    result = Augmented(total, np.repeat(labels[:, 0], k).reshape(-1, 1))

    def blocks():
        if mix:
            try:
                maps = read_all(inp.maps)
            except TooLargeError as exc:
                raise TooLargeError(f"method mix pairs sources across the whole input, so it reads it whole: {exc}") from None
            yield 0, maps, gen.augment(k, maps=maps, labels=labels, **options)
            return
        for start, maps in iter_maps(inp.maps, rows=sources_per_call(k)):
            stop = start + maps.shape[0]
            yield start, maps, gen.augment(k, maps=maps, labels=labels[start:stop], source_offset=start, **options)

    done = 0
    for start, maps, made in blocks():
        sink.write(made.maps)
        block_labels = labels[start : start + maps.shape[0], 0]
        for c in np.unique(block_labels):
            if int(c) not in result.examples:
                i = int(np.flatnonzero(block_labels == c)[0])
                result.examples[int(c)] = (start + i, maps[i].copy(), made.maps[k * i : k * i + min(k, shown)].copy())
        done += made.maps.shape[0]
        if progress is not None:
            progress(done, total)
    return result


def augment_to_files(
    gen: "WaferGenerator",
    per_source: int,
    data: PathLike,
    out_dir: PathLike,
    *,
    labels: Optional[PathLike] = None,
    force: bool = False,
    progress: Optional[Progress] = None,
    **options: Any,
) -> Augmented:
    """Augment the maps of the file ``data`` into ``out_dir/gen_data.npy`` + ``gen_label.npy``, streamed.

    ``options``: ``seed``, ``strength``, ``method``, ``mode``, ``outline_lock``
    as for ``WaferGenerator.augment``. Both files appear only when complete.
    """
    from .generator import DATA_FILE, LABEL_FILE

    out = Path(out_dir)
    data_path, label_path = out / DATA_FILE, out / LABEL_FILE
    check_targets([data_path, label_path], force=force)
    inp = open_input(data, labels, require_labels=True)
    n = inp.maps.count * int(per_source)
    check_free_space(out, n * (MAP_BYTES + 8), f"{n} generated maps")
    with contextlib.ExitStack() as stack:
        tmp_labels = stack.enter_context(atomic_path(label_path, force=force))
        tmp_data = stack.enter_context(atomic_path(data_path, force=force))
        with npy_stream(tmp_data, (n, *MAP_SHAPE)) as sink:
            result = augment_blocks(gen, per_source, inp, sink=sink, progress=progress, **options)
        write_npy(tmp_labels, result.labels)
    return result


# ---------------------------------------------------------------- encode


def encode_blocks(gen: "WaferGenerator", maps: Any, sink: NpyStream, *, progress: Optional[Progress] = None) -> int:
    """Latents of every map of ``maps`` (as ``gen.encode``) into ``sink``, a block at a time; returns the count."""
    source = _as_source(maps)
    for _, block in iter_maps(source, progress=progress):
        sink.write(gen.encode(block))
    return source.count


def encode_to_file(
    gen: "WaferGenerator", data: PathLike, path: PathLike, *, force: bool = False, progress: Optional[Progress] = None
) -> int:
    """Latents float32 ``(N, 64, 3, 3)`` of the maps of the file ``data`` into the ``.npy`` ``path``, streamed."""
    check_targets([path], force=force)
    source = open_input(data).maps
    shape = (source.count, *gen.bundle.latents.shape[1:])
    check_free_space(Path(path).parent, int(np.prod(shape)) * 4, f"{source.count} latents")
    with atomic_path(path, force=force) as tmp, npy_stream(tmp, shape) as sink:
        return encode_blocks(gen, source, sink, progress=progress)
