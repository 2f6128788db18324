"""Reading SEMI G85: maps one at a time (:func:`iter_g85`), all at 26×26 (:func:`read_g85`), or in blocks
(:class:`G85Source`)."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Optional, Union

import numpy as np

from ..files import PathLike
from ..wafer import CLASS_NAMES, MAP_SIZE, ResizeNote, resize_states
from .codes import G85Error, parse_bin_map
from .parser import CHUNK, G85Map, Parser

MAX_SIDE = 16384  # the largest side a map may have: 16384² dies is 256 MB of codes

BinMap = Union[None, str, Mapping[str, Any]]


def _open(path: PathLike) -> IO[bytes]:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise G85Error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise G85Error(f"{path} is a folder, not a G85 file") from None
    except OSError as exc:
        raise G85Error(f"{path}: cannot read ({exc.strerror or exc})") from None


def iter_g85(source: Union[PathLike, IO[bytes]], *, bin_map: BinMap = None, classes: tuple[str, ...] = CLASS_NAMES,
             max_side: int = MAX_SIDE, digest: Optional[Any] = None) -> Iterator[G85Map]:
    """The maps of a G85 file (path or binary file) one by one, at their own size; ``bin_map`` overrides the states
    of the codes it names; ``digest`` (a hashlib object) is fed every byte read, so the sha256 costs no second pass."""
    codes = parse_bin_map(bin_map)
    with contextlib.nullcontext(source) if hasattr(source, "read") else _open(source) as fh:  # type: ignore[arg-type]
        parser = Parser(getattr(fh, "name", "G85 stream"), codes, tuple(classes), max_side)
        while True:
            try:
                chunk = fh.read(CHUNK)
            except OSError as exc:
                raise G85Error(f"{parser.where}: cannot read ({exc.strerror or exc})") from None
            if digest is not None:
                digest.update(chunk)
            yield from parser.feed(chunk)
            if not chunk:
                return


def looks_like_g85(path: PathLike) -> bool:
    """True for a ``.xml``/``.g85`` file or one whose first bytes look like XML."""
    p = Path(path)
    if p.suffix.lower() in (".xml", ".g85"):
        return True
    try:
        with open(p, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return False
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 (Windows tools write it)
        head = head[2:].replace(b"\x00", b"")
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


def _labelled(maps: Iterator[G85Map], where: str, labels: list) -> Iterator[G85Map]:
    """``maps``, their labels appended to ``labels``, checked to be on every map or on none."""
    first: Optional[G85Map] = None
    for m in maps:
        first = first or m
        if (first.label is None) != (m.label is None):
            lacking, having = (m, first) if m.label is None else (first, m)
            raise G85Error(f"{where}: map {lacking.map_id!r} carries no class (ei:ClassIndex) while map "
                           f"{having.map_id!r} does; label every map or none")
        labels.append(m.label)
        yield m


def _label_array(labels: list) -> Optional[np.ndarray]:
    """int64 (N, 1), or None when the maps carry no class."""
    return np.array(labels, dtype=np.int64).reshape(-1, 1) if labels[0] is not None else None


@dataclass(frozen=True)
class G85Contents:
    """All maps of a G85 file as 26×26 die states, their labels and the file's sha256."""

    states: np.ndarray
    labels: Optional[np.ndarray]
    sha256: str
    map_ids: list


def read_g85(source: PathLike, *, bin_map: BinMap = None, classes: tuple[str, ...] = CLASS_NAMES) -> G85Contents:
    """All maps of a G85 file, brought to 26×26 die states (one :class:`ResizeNote` for the file)."""
    digest, sizes = hashlib.sha256(), Counter()  # type: ignore[var-annotated]
    labels, ids, states = [], [], []  # type: ignore[var-annotated]
    for m in _labelled(iter_g85(source, bin_map=bin_map, classes=classes, digest=digest), str(source), labels):
        ids.append(m.map_id)
        h, w = m.states.shape
        if (h, w) != (MAP_SIZE, MAP_SIZE):
            if min(h, w) < 2:
                raise G85Error(f"{source}: map {m.map_id!r} is {h}×{w} dies; too small to be a wafer")
            sizes[(h, w)] += 1
        states.append(resize_states(m.states))
    if sizes:
        parts = ", ".join(f"{h}×{w}: {k}" for (h, w), k in sorted(sizes.items()))
        warnings.warn(f"resized {sum(sizes.values())} map(s) ({parts}) to {MAP_SIZE}×{MAP_SIZE} dies (nearest "
                      "neighbour on die states, so no state is invented)", ResizeNote, stacklevel=2)
    return G85Contents(np.stack(states), _label_array(labels), digest.hexdigest(), ids)


class G85Source:
    """A G85 file as an :class:`edge_infer.io.MapSource`: opening it validates every map keeping only the labels
    (8 bytes a map), and ``raw_blocks`` reads the file again, one map in memory."""

    def __init__(self, source: PathLike, *, bin_map: BinMap = None, classes: tuple[str, ...] = CLASS_NAMES) -> None:
        self.path, self.where = Path(source), str(source)
        self._options = dict(bin_map=bin_map, classes=tuple(classes))
        digest, labels = hashlib.sha256(), []  # type: ignore[var-annotated]
        maps = iter_g85(self.path, digest=digest, **self._options)  # type: ignore[arg-type]
        self.map_bytes = max(m.states.size for m in _labelled(maps, self.where, labels))  # the largest, uint8
        self.count = len(labels)
        self.labels: Optional[np.ndarray] = _label_array(labels)
        self.sha256: Optional[str] = digest.hexdigest()

    def raw_blocks(self, rows: int, *, hash: bool = False) -> Iterator[Any]:
        """Up to ``rows`` maps a block: uint8 (B, H, W), or a list where sizes differ; ``hash`` is not needed."""
        maps = (m.states for m in iter_g85(self.path, **self._options))  # type: ignore[arg-type]
        while block := list(itertools.islice(maps, rows)):
            yield np.stack(block) if len({b.shape for b in block}) == 1 else block
