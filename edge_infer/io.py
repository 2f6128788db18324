"""Reading users' wafer data: every input format, validated a block at a time, so any size fits in bounded memory;
every problem with a file becomes one :class:`~edge_infer.errors.DataFileError` naming that file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol

import numpy as np

from .errors import DataFileError, InputError, TooLargeError
from .g85 import G85Error, G85Source, looks_like_g85
from .files import PathLike
from .npy import NpyArray, open_npy_file, open_npy_member
from .wafer import BLOCK_ROWS, CLASS_NAMES, MAP_BYTES, MAP_SHAPE, N_STATES, ResizeNote, as_labels, as_maps

DATA_NAME = "data.npy"
LABEL_NAME = "label.npy"
#: Raw bytes read at a time at most, so maps of any size keep a block bounded.
BLOCK_BYTES = 64 << 20
#: Environment variable holding the ceiling on what one input may hold in memory at once.
MAX_MEMORY_ENV = "EDGE_INFER_MAX_INPUT_MEMORY"
DEFAULT_MAX_MEMORY = 2 << 30
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def max_input_memory() -> int:
    """The ceiling on one input held in memory: ``$EDGE_INFER_MAX_INPUT_MEMORY`` (bytes, K/M/G/T: ``8G``) or 2 GiB."""
    text = os.environ.get(MAX_MEMORY_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_MEMORY
    number, unit = text.upper().rstrip("IB"), ""
    if number and number[-1] in _UNITS:
        number, unit = number[:-1], number[-1]
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        value = -1
    if not 0 < value < float("inf"):  # NaN too
        raise InputError(f"{MAX_MEMORY_ENV}={text!r} is not a size; give bytes or e.g. 512M, 8G")
    return int(value)


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n < 10 * 2**30 else f"{n / 2**30:.1f} GiB"


def check_fits(need: int, what: str, *, max_memory: Optional[int] = None) -> None:
    """Refuse (:class:`TooLargeError`) holding ``need`` bytes of one input at once over the ceiling."""
    limit = max_input_memory() if max_memory is None else int(max_memory)
    if need > limit:
        raise TooLargeError(
            f"{what} would take {_gib(need)} in memory, over the {_gib(limit)} ceiling for one input held whole; "
            f"raise the ceiling (e.g. {MAX_MEMORY_ENV}={max(1, -(-need // 2**30))}G), "
            "or read it block by block (edge_infer.io.iter_maps; the CLI's reconstruct, augment and convert do)"
        )


class MapSource(Protocol):
    """Maps of one input, front to back in blocks of any form :func:`~edge_infer.wafer.as_maps` accepts."""

    where: str  # names the input in messages (``wafer.zip:data.npy``)
    count: int  # maps it holds, known before any is read
    map_bytes: int  # raw bytes of one map as read (sizes the blocks)
    sha256: Optional[str]  # of the input's bytes, once a raw_blocks(..., hash=True) pass is complete

    def raw_blocks(self, rows: int, *, hash: bool = False) -> Iterator[Any]: ...


class ArraySource:
    """Maps already in memory (validated one-hot float32), as a :class:`MapSource`."""

    def __init__(self, maps: np.ndarray, where: str = "maps", sha256: Optional[str] = None) -> None:
        self.maps = maps
        self.where = where
        self.count = int(maps.shape[0])
        self.map_bytes = MAP_BYTES
        self.sha256 = sha256

    def raw_blocks(self, rows: int, *, hash: bool = False) -> Iterator[np.ndarray]:
        for start in range(0, self.count, rows):
            yield self.maps[start : start + rows]


class NpySource:
    """The maps of one ``.npy`` array (a file or a zip member): a stack of maps streams; any other shape cannot
    be cut into maps from its header alone, so it is read whole, if the ceiling allows."""

    def __init__(self, array: NpyArray, *, max_memory: Optional[int] = None) -> None:
        self.array = array
        self.where = array.where
        self.sha256: Optional[str] = None
        shape = array.shape
        if array.dtype.kind not in "fiub":
            raise DataFileError(f"{self.where} has dtype {array.dtype}; expected numbers (one-hot or die states)")
        # Fortran order streams from a file (read out of order), not from a zip member.
        in_order = not array.fortran_order or array.path is not None
        streamable = in_order and (len(shape) == 4 or (len(shape) == 3 and shape[-1] != N_STATES))
        if streamable:
            self._whole: Optional[np.ndarray] = None
            self.count = shape[0]
            self.map_bytes = max(array.row_bytes, 1)
            if self.count == 0:
                raise InputError(f"maps in {self.where} is empty (shape {shape}); give at least one map")
            check_fits(self.map_bytes, f"one map of {self.where} (shape {shape[1:]})", max_memory=max_memory)
            return
        # Raw bytes + the one-hot result (shape[0] maps at most) are in memory together.
        maps_at_most = shape[0] if len(shape) >= 3 else 1
        check_fits(array.data_bytes + maps_at_most * MAP_BYTES, f"{self.where} (read whole: shape {shape})", max_memory=max_memory)
        hasher = hashlib.sha256()
        self._whole = as_maps(array.read(hasher=hasher), name=f"maps in {self.where}")
        self.sha256 = hasher.hexdigest()
        self.count = int(self._whole.shape[0])
        self.map_bytes = MAP_BYTES

    def raw_blocks(self, rows: int, *, hash: bool = False) -> Iterator[np.ndarray]:
        if self._whole is not None:
            yield from ArraySource(self._whole).raw_blocks(rows)
            return
        hasher = hashlib.sha256() if hash else None
        yield from self.array.blocks(rows, hasher=hasher)
        if hasher is not None:
            self.sha256 = hasher.hexdigest()


def _zip_members(path: Path) -> dict[str, zipfile.ZipInfo]:
    try:
        with zipfile.ZipFile(path) as zf:
            return {Path(i.filename).name: i for i in zf.infolist() if not i.is_dir()}
    except zipfile.BadZipFile:
        raise DataFileError(f"{path} is not a valid zip file") from None
    except (OSError, EOFError, zipfile.LargeZipFile, NotImplementedError, ValueError) as exc:
        raise DataFileError(f"{path}: cannot read the zip ({exc})") from None


#: An input's labels as read, not yet validated, and the sha256 of their bytes.
RawLabels = tuple[np.ndarray, str]


def _read_labels(array: NpyArray, max_memory: Optional[int]) -> RawLabels:
    check_fits(array.data_bytes, array.where, max_memory=max_memory)
    hasher = hashlib.sha256()
    return array.read(hasher=hasher), hasher.hexdigest()


def _open_layout(p: Path, max_memory: Optional[int], bin_map: Any = None,
                 own_labels: bool = False) -> tuple[MapSource, Optional[RawLabels]]:
    """The maps of ``p`` (headers checked, none read) and, with ``own_labels``, its labels: where layouts are known."""
    if not p.exists():
        raise DataFileError(f"{p}: no such file or folder")
    if p.is_dir():
        if not (p / DATA_NAME).exists():
            raise DataFileError(f"{p} holds no {DATA_NAME}")
        maps = NpySource(open_npy_file(p / DATA_NAME), max_memory=max_memory)
        has_labels = own_labels and (p / LABEL_NAME).exists()
        return maps, _read_labels(open_npy_file(p / LABEL_NAME), max_memory) if has_labels else None
    if zipfile.is_zipfile(p):
        members = _zip_members(p)
        if DATA_NAME not in members:
            raise DataFileError(f"{p} holds no {DATA_NAME} (found: {', '.join(sorted(members)) or 'nothing'})")
        maps = NpySource(open_npy_member(p, members[DATA_NAME]), max_memory=max_memory)
        has_labels = own_labels and LABEL_NAME in members
        return maps, _read_labels(open_npy_member(p, members[LABEL_NAME]), max_memory) if has_labels else None
    if p.suffix.lower() == ".zip":
        raise DataFileError(f"{p} is not a valid zip file")
    if _is_g85(p):
        g85 = G85Source(p, bin_map=bin_map)  # one validating pass: count, labels and sha256, then blocks
        return g85, None if g85.labels is None else (g85.labels, g85.sha256 or "")
    return NpySource(open_npy_file(p), max_memory=max_memory), None


def _is_g85(path: Path) -> bool:
    return path.suffix.lower() != ".npy" and path.is_file() and looks_like_g85(path)


def open_maps(data: PathLike, *, max_memory: Optional[int] = None) -> MapSource:
    """The maps of ``data`` as a :class:`MapSource`: headers and sizes checked, no map read yet."""
    return _open_layout(Path(data), max_memory)[0]


@dataclass(frozen=True)
class DataInput:
    """An opened input: its maps (not read yet) and its validated labels (or None)."""

    maps: MapSource
    labels: Optional[np.ndarray]
    source: str
    labels_sha256: Optional[str] = None


def open_input(data: PathLike, labels: Optional[PathLike] = None, *, require_labels: bool = False,
               max_memory: Optional[int] = None, bin_map: Any = None) -> DataInput:
    """Open maps for streaming and read their labels, validated; ``labels`` (a ``.npy``) overrides the input's own."""
    p = Path(data)
    maps, read = _open_layout(p, max_memory, bin_map, own_labels=labels is None)
    if labels is not None:
        read = _read_labels(open_npy_file(Path(labels)), max_memory)
    if read is None and require_labels:
        if _is_g85(p):
            raise G85Error(f"{p}: its maps carry no class (ei:ClassIndex); give a labels .npy (--labels)")
        raise DataFileError(f"{p}: no labels found; give a {LABEL_NAME} beside {DATA_NAME}, or a labels file")
    lab = digest = None
    if read is not None:
        raw, digest = read
        try:
            lab = as_labels(raw, maps.count, name=f"labels for {p}")
        except InputError as exc:
            raise InputError(f"{exc}{_first_bad_label(raw)}") from None
    return DataInput(maps, lab, str(p), digest)


def _first_bad_label(raw: np.ndarray) -> str:
    """``; the first is map 12 (label 20)`` for labels with bad values, else ''."""
    flat = raw.reshape(-1) if raw.ndim == 2 and raw.shape[-1] == 1 else raw
    if flat.ndim != 1 or flat.dtype.kind not in "fiub" or flat.size == 0:
        return ""
    bad = (flat < 0) | (flat >= len(CLASS_NAMES))
    if flat.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad |= ~np.isfinite(flat) | (flat != np.round(flat))
    hits = np.flatnonzero(bad)
    return f"; the first is map {int(hits[0])} (label {flat[hits[0]]})" if hits.size else ""


def block_rows(source: MapSource, rows: int = BLOCK_ROWS) -> int:
    """Maps per block for ``source``: ``rows``, fewer for maps big enough to pass :data:`BLOCK_BYTES`."""
    return max(1, min(int(rows), BLOCK_BYTES // max(source.map_bytes, 1)))


def iter_maps(source: MapSource, *, rows: int = BLOCK_ROWS, hash: bool = False,
              progress: Optional[Callable[[int, int], None]] = None,
              wafer_rule: bool = True) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, maps)``: the source's maps validated, one-hot float32, a block at a time; ``progress(done, total)``
    after each. A resize is noted once for the whole input (catching the per-block notes is not thread-safe, so
    only inputs that need resizing do)."""
    done, noted = 0, False
    for raw in source.raw_blocks(block_rows(source, rows), hash=hash):
        resized = _needs_resize(raw)
        with warnings.catch_warnings(record=True) if resized else contextlib.nullcontext() as caught:
            if resized:
                warnings.simplefilter("always", ResizeNote)
            try:
                maps = as_maps(raw, name=f"maps in {source.where}", wafer_rule=wafer_rule)
            except InputError as exc:
                raise _first_bad_map(raw, done, source.where) or exc from None
        # Only ResizeNote is folded into one note; other warnings (NotWaferWarning) pass on as they came.
        notes = [str(w.message) for w in caught or [] if issubclass(w.category, ResizeNote)]
        for w in caught or []:
            if not issubclass(w.category, ResizeNote):
                warnings.warn(w.message, w.category, stacklevel=2)
        if notes and not noted:
            noted = True
            message = notes[0]
            if source.count != len(raw):
                message = re.sub(r"^resized \d+ map", f"resized {source.count} map", message)
            warnings.warn(message, ResizeNote, stacklevel=2)
        yield done, maps
        done += maps.shape[0]
        if progress is not None:
            progress(done, source.count)
    if done != source.count:  # a source that yields fewer or more maps than it announced
        raise DataFileError(f"{source.where} gave {done} maps, not the {source.count} it declares")


def check_start(source: MapSource, rows: int = 64) -> None:
    """Validate the first ``rows`` maps before a model loads, so an input broken from its start fails at once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResizeNote)  # the streamed pass notes it once
        next(iter_maps(source, rows=min(rows, source.count)), None)


def _needs_resize(raw: Any) -> bool:
    """Whether ``raw`` holds maps of another size; a list of maps (mixed sizes) may, as_maps tells."""
    return not isinstance(raw, np.ndarray) or (raw.ndim >= 3 and raw.shape[1:3] != MAP_SHAPE[:2])


def _first_bad_map(raw: Any, start: int, where: str) -> Optional[InputError]:
    """The error of the first map of ``raw`` that fails validation alone, named by its index."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResizeNote)
        for i in range(len(raw)):
            try:
                as_maps(raw[i : i + 1], name=f"map {start + i} in {where}")
            except InputError as exc:
                return exc
    return None


@dataclass(frozen=True)
class Dataset:
    """Validated maps (one-hot float32, N×26×26×3) and labels (int64, N×1) or None; the digests are of the
    ``data.npy``/``label.npy`` bytes, not the zip's, so every layout gives what ``sha256sum data.npy`` does."""

    maps: np.ndarray
    labels: Optional[np.ndarray]
    source: str
    sha256: str = ""
    labels_sha256: Optional[str] = None


def read_all(source: MapSource, *, max_memory: Optional[int] = None,
             progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
    """All maps of ``source`` in one one-hot float32 array, if the ceiling allows it."""
    check_fits(source.count * MAP_BYTES, f"{source.count} maps from {source.where}", max_memory=max_memory)
    if isinstance(source, ArraySource):
        return source.maps
    out = np.empty((source.count, *MAP_SHAPE), dtype=np.float32)
    for start, maps in iter_maps(source, hash=True, progress=progress):
        out[start : start + maps.shape[0]] = maps
    return out


def load_dataset(data: PathLike, labels: Optional[PathLike] = None, *, require_labels: bool = False,
                 max_memory: Optional[int] = None) -> Dataset:
    """Read and validate a whole input (a ``wafer.zip``, a folder with ``data.npy``, a ``.npy`` of maps with
    ``labels``, or SEMI G85 XML) if it fits under :func:`max_input_memory`; else use :func:`iter_maps`."""
    inp = open_input(data, labels, require_labels=require_labels, max_memory=max_memory)
    maps = read_all(inp.maps, max_memory=max_memory)
    return Dataset(maps, inp.labels, inp.source, inp.maps.sha256 or "", inp.labels_sha256)


def load_npy(path: PathLike, *, max_memory: Optional[int] = None) -> np.ndarray:
    """Load a ``.npy`` file safely: no pickles, its size checked, one clear error for anything wrong."""
    array = open_npy_file(Path(path))
    check_fits(array.data_bytes, str(path), max_memory=max_memory)
    return array.read()
