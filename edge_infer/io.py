"""Reading users' wafer data: every input format, validated a block at a time, so any size fits in bounded memory;
every problem with a file becomes one :class:`~edge_infer.errors.DataFileError` naming that file."""

from __future__ import annotations

import contextlib
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .errors import DataFileError, InputError, TooLargeError
from .g85 import G85Error, G85Source, looks_like_g85
from .files import PathLike
from .npy import NpyArray, open_npy_file, open_npy_member
from .wafer import BLOCK_ROWS, CLASS_NAMES, MAP_BYTES, MAP_SHAPE, N_STATES, ResizeNote, as_labels, as_maps

DATA_NAME = "data.npy"
LABEL_NAME = "label.npy"
BLOCK_BYTES = 64 << 20  # raw bytes read at a time at most, so maps of any size keep a block bounded
MAX_MEMORY_ENV = "EDGE_INFER_MAX_INPUT_MEMORY"  # the ceiling on what one input may hold in memory at once
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def max_input_memory() -> int:
    """The ceiling on one input held in memory: ``$EDGE_INFER_MAX_INPUT_MEMORY`` (bytes, K/M/G/T: ``8G``) or 2 GiB."""
    text = os.environ.get(MAX_MEMORY_ENV, "").strip() or "2G"
    size = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([KMGT]?)(?:I?B)?", text.upper())
    limit = int(float(size[1]) * _UNITS[size[2]]) if size else 0
    if limit < 1:
        raise InputError(f"{MAX_MEMORY_ENV}={text!r} is not a size; give bytes or e.g. 512M, 8G")
    return limit


def check_fits(need: int, what: str, *, max_memory: Optional[int] = None) -> None:
    """Refuse (:class:`TooLargeError`) holding ``need`` bytes of one input at once over the ceiling."""
    limit = max_input_memory() if max_memory is None else int(max_memory)
    if need > limit:
        raise TooLargeError(
            f"{what} would take {need / 2**30:.2f} GiB in memory, over the {limit / 2**30:.2f} GiB ceiling for one "
            f"input held whole; raise the ceiling (e.g. {MAX_MEMORY_ENV}={max(1, -(-need // 2**30))}G), "
            "or read it block by block (edge_infer.io.iter_maps; the CLI's reconstruct, augment and convert do)")


class ArraySource:
    """Maps already in memory (validated one-hot float32), as a :data:`MapSource`."""

    def __init__(self, maps: np.ndarray, where: str = "maps", sha256: Optional[str] = None) -> None:
        self.maps, self.where, self.sha256 = maps, where, sha256
        self.count, self.map_bytes = int(maps.shape[0]), MAP_BYTES

    def raw_blocks(self, rows: int, *, hash: bool = False) -> Iterator[np.ndarray]:
        for start in range(0, self.count, rows):
            yield self.maps[start : start + rows]


# What iter_maps reads: ``count`` maps of ``where`` (known before any is read) from ``raw_blocks(rows, hash=)`` in any
# form as_maps takes, ``map_bytes`` raw bytes a map (sizes the blocks); a complete hashed pass sets ``sha256``.
MapSource = Union[NpyArray, ArraySource, G85Source]


def _npy_maps(array: NpyArray, max_memory: Optional[int]) -> MapSource:
    """The maps of one ``.npy`` array: a stack of maps in C order streams; any other array cannot be cut into maps
    from its header alone (or, in Fortran order, lies map across map), so it is read whole, if the ceiling allows."""
    shape, where = array.shape, array.where
    if array.dtype.kind not in "fiub":
        raise DataFileError(f"{where} has dtype {array.dtype}; expected numbers (one-hot or die states)")
    if not array.fortran_order and (len(shape) == 4 or (len(shape) == 3 and shape[-1] != N_STATES)):
        if array.count == 0:
            raise InputError(f"maps in {where} is empty (shape {shape}); give at least one map")
        check_fits(array.map_bytes, f"one map of {where} (shape {shape[1:]})", max_memory=max_memory)
        return array
    need = array.data_bytes + (shape[0] if len(shape) >= 3 else 1) * MAP_BYTES  # raw bytes and one-hot maps at once
    check_fits(need, f"{where} (read whole: shape {shape})", max_memory=max_memory)
    return ArraySource(as_maps(array.read(hash=True), name=f"maps in {where}"), where, array.sha256)


def _open_layout(p: Path, max_memory: Optional[int], bin_map: Any,
                 own_labels: bool) -> tuple[MapSource, Optional[NpyArray]]:
    """The maps of ``p`` (headers checked, none read) and, with ``own_labels``, the ``label.npy`` beside them."""
    if not p.exists():
        raise DataFileError(f"{p}: no such file or folder")
    if p.is_dir():
        if not (p / DATA_NAME).exists():
            raise DataFileError(f"{p} holds no {DATA_NAME}")
        maps = _npy_maps(open_npy_file(p / DATA_NAME), max_memory)
        return maps, open_npy_file(p / LABEL_NAME) if own_labels and (p / LABEL_NAME).exists() else None
    if zipfile.is_zipfile(p):
        try:
            with zipfile.ZipFile(p) as zf:
                members = {Path(i.filename).name: i for i in zf.infolist() if not i.is_dir()}
        except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, ValueError) as exc:
            raise DataFileError(f"{p}: cannot read the zip ({exc})") from None
        if DATA_NAME not in members:
            raise DataFileError(f"{p} holds no {DATA_NAME} (found: {', '.join(sorted(members)) or 'nothing'})")
        maps = _npy_maps(open_npy_member(p, members[DATA_NAME]), max_memory)
        return maps, open_npy_member(p, members[LABEL_NAME]) if own_labels and LABEL_NAME in members else None
    if p.suffix.lower() == ".zip":
        raise DataFileError(f"{p} is not a valid zip file")
    if p.suffix.lower() != ".npy" and p.is_file() and looks_like_g85(p):
        return G85Source(p, bin_map=bin_map), None  # one validating pass: count, labels and sha256, then blocks
    return _npy_maps(open_npy_file(p), max_memory), None


@dataclass(frozen=True)
class DataInput:
    """An input's maps (a :class:`MapSource` from :func:`open_input`; one-hot float32 N×26×26×3 from
    :func:`load_dataset`), validated labels (int64 N×1, or None), and sha256s of its ``.npy`` bytes (not a zip's)."""

    maps: Union[MapSource, np.ndarray]
    labels: Optional[np.ndarray]
    source: str
    labels_sha256: Optional[str] = None
    sha256: str = ""


def open_input(data: PathLike, labels: Optional[PathLike] = None, *, require_labels: bool = False,
               max_memory: Optional[int] = None, bin_map: Any = None) -> DataInput:
    """Open maps for streaming and read their labels, validated; ``labels`` (a ``.npy``) overrides the input's own."""
    p = Path(data)
    maps, own = _open_layout(p, max_memory, bin_map, own_labels=labels is None)
    array = own if labels is None else open_npy_file(Path(labels))
    raw, digest = (maps.labels, maps.sha256) if isinstance(maps, G85Source) else (None, None)
    if array is not None:
        check_fits(array.data_bytes, array.where, max_memory=max_memory)
        raw, digest = array.read(hash=True), array.sha256
    if raw is None:
        if not require_labels:
            return DataInput(maps, None, str(p))
        if isinstance(maps, G85Source):
            raise G85Error(f"{p}: its maps carry no class (ei:ClassIndex); give a labels .npy (--labels)")
        raise DataFileError(f"{p}: no labels found; give a {LABEL_NAME} beside {DATA_NAME}, or a labels file")
    try:
        return DataInput(maps, as_labels(raw, maps.count, name=f"labels for {p}"), str(p), digest)
    except InputError as exc:
        raise InputError(f"{exc}{_first_bad_label(raw)}") from None


def _first_bad_label(raw: np.ndarray) -> str:
    """``; the first is map 12 (label 20)`` for labels with bad values, else ''."""
    flat = raw.reshape(-1) if raw.ndim == 2 and raw.shape[-1] == 1 else raw
    if flat.ndim != 1 or flat.dtype.kind not in "fiub":
        return ""
    hits = np.flatnonzero(~np.isin(flat, np.arange(len(CLASS_NAMES))))  # NaN, fractions and negatives too
    return f"; the first is map {int(hits[0])} (label {flat[hits[0]]})" if hits.size else ""


def iter_maps(source: MapSource, *, rows: int = BLOCK_ROWS, hash: bool = False, wafer_rule: bool = True,
              progress: Optional[Callable[[int, int], None]] = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, maps)``: the source's maps validated, one-hot float32, a block at a time; ``progress(done, total)``
    after each. A resize is noted once (only blocks that need one catch warnings: that is not thread-safe)."""
    done, noted = 0, False
    rows = max(1, min(int(rows), BLOCK_BYTES // max(source.map_bytes, 1)))  # fewer for maps of another size
    for raw in source.raw_blocks(rows, hash=hash):
        resized = not isinstance(raw, np.ndarray) or (raw.ndim >= 3 and raw.shape[1:3] != MAP_SHAPE[:2])
        with warnings.catch_warnings(record=True) if resized else contextlib.nullcontext() as caught:
            if resized:
                warnings.simplefilter("always", ResizeNote)
            try:
                maps = as_maps(raw, name=f"maps in {source.where}", wafer_rule=wafer_rule)
            except InputError as exc:
                raise _first_bad_map(raw, done, source.where, wafer_rule) or exc from None
        for w in caught or []:  # one ResizeNote, counting the whole input; other warnings as they came
            if not issubclass(w.category, ResizeNote):
                warnings.warn(w.message, w.category, stacklevel=2)
            elif not noted:
                noted, message = True, re.sub(r"^resized \d+", f"resized {source.count}", str(w.message))
                warnings.warn(message, ResizeNote, stacklevel=2)
        yield done, maps
        done += maps.shape[0]
        if progress is not None:
            progress(done, source.count)
    if done != source.count:  # a source that yields fewer or more maps than it announced
        raise DataFileError(f"{source.where} gave {done} maps, not the {source.count} it declares")


def _first_bad_map(raw: Any, start: int, where: str, wafer_rule: bool) -> Optional[InputError]:
    """The error of the first map of ``raw`` that fails validation alone, named by its index."""
    for i in range(len(raw)):
        try:
            as_maps(raw[i : i + 1], name=f"map {start + i} in {where}", wafer_rule=wafer_rule)
        except InputError as exc:
            return exc
    return None


def check_start(source: MapSource, rows: int = 64) -> None:
    """Validate the first ``rows`` maps before a model loads, so an input broken from its start fails at once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResizeNote)  # the streamed pass notes it once
        next(iter_maps(source, rows=min(rows, source.count)), None)


def read_all(source: MapSource, *, max_memory: Optional[int] = None) -> np.ndarray:
    """All maps of ``source`` in one one-hot float32 array, if the ceiling allows it."""
    check_fits(source.count * MAP_BYTES, f"{source.count} maps from {source.where}", max_memory=max_memory)
    if isinstance(source, ArraySource):
        return source.maps
    out = np.empty((source.count, *MAP_SHAPE), dtype=np.float32)
    for start, maps in iter_maps(source, hash=True):
        out[start : start + maps.shape[0]] = maps
    return out


def load_dataset(data: PathLike, labels: Optional[PathLike] = None, *, require_labels: bool = False,
                 max_memory: Optional[int] = None) -> DataInput:
    """Read and validate a whole input (a ``wafer.zip``, a folder with ``data.npy``, a ``.npy`` of maps with
    ``labels``, or SEMI G85 XML) if it fits under :func:`max_input_memory`; else use :func:`iter_maps`."""
    inp = open_input(data, labels, require_labels=require_labels, max_memory=max_memory)
    maps = read_all(inp.maps, max_memory=max_memory)  # sets the input's sha256
    return replace(inp, maps=maps, sha256=inp.maps.sha256 or "")


def load_npy(path: PathLike, *, max_memory: Optional[int] = None) -> np.ndarray:
    """Load a ``.npy`` file safely: no pickles, its size checked, one clear error for anything wrong."""
    array = open_npy_file(Path(path))
    check_fits(array.data_bytes, str(path), max_memory=max_memory)
    return array.read()
