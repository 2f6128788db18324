"""``.npy`` arrays read from a file or zip member in bounded memory, and written block by block: a header's size is
checked against the real one before any read, so no allocation is sized by a file's claims (truncated, a zip bomb);
plain reads and writes (a memory map's pages would count as the process's memory); nothing unpickles."""

from __future__ import annotations

import contextlib
import math
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Optional

import numpy as np
from numpy.lib import format as npy_format

from .errors import DataFileError

#: numpy's own limit on a header's length (``max_header_size``).
MAX_HEADER_BYTES = 10_000
_PIECE = 1 << 20  # read and decompress in pieces of this size


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 10_000_000 else f"{n:,} bytes ({n / 1e6:.1f} MB)"


@contextlib.contextmanager
def _read_errors(where: str) -> Iterator[None]:
    """Errors of reading or decompressing, as one :class:`DataFileError` naming ``where``."""
    try:
        yield
    except DataFileError:
        raise
    except zipfile.BadZipFile as exc:
        raise DataFileError(f"{where} is damaged ({exc})") from None
    except zlib.error as exc:
        raise DataFileError(f"{where} is damaged: its compressed data cannot be read ({exc})") from None
    except EOFError:
        raise DataFileError(f"{where} ends early: the file is truncated") from None
    except (OSError, RuntimeError, NotImplementedError) as exc:  # RuntimeError: an encrypted member
        raise DataFileError(f"{where}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None


def _fill(fh: IO[bytes], view: memoryview, where: str) -> None:
    """Fill ``view`` from ``fh`` piece by piece; a short stream is a truncated file."""
    pos = 0
    while pos < len(view):
        got = fh.readinto(view[pos:pos + _PIECE])  # type: ignore[attr-defined]
        if not got:
            raise DataFileError(f"{where} ends early: the file is truncated")
        pos += got


@dataclass(frozen=True)
class NpyArray:
    """A ``.npy`` array whose header was checked; ``open`` gives a fresh stream at its first byte."""

    where: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    header_bytes: int
    open: Callable[[], IO[bytes]]
    path: Optional[Path] = None  # the file, for arrays that can be read out of order (None: a zip member)

    @property
    def data_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=object)) * self.dtype.itemsize

    @property
    def row_bytes(self) -> int:
        """Bytes of one item along the first axis (one map, for a stack of maps)."""
        return int(np.prod(self.shape[1:], dtype=object)) * self.dtype.itemsize

    def blocks(self, rows: int, *, hasher: Optional[Any] = None) -> Iterator[np.ndarray]:
        """The array ``rows`` items at a time, each block a new array; ``hasher`` is fed every byte of the file."""
        if self.fortran_order and len(self.shape) > 1:
            yield from self._fortran_blocks(rows, hasher)
            return
        n = self.shape[0] if self.shape else 1
        with _read_errors(self.where), self.open() as fh:
            header = fh.read(self.header_bytes)
            if hasher is not None:
                hasher.update(header)
            for start in range(0, n, max(1, rows)):
                buf = np.empty((min(rows, n - start), *self.shape[1:]), dtype=self.dtype)
                _fill(fh, memoryview(buf.reshape(-1).view(np.uint8)), self.where)
                if hasher is not None:
                    hasher.update(buf.data)
                yield buf
            if fh.read(1):  # read to the end, so a zip member's CRC is checked
                raise DataFileError(f"{self.where} holds more data than its header declares")

    def _fortran_blocks(self, rows: int, hasher: Optional[Any]) -> Iterator[np.ndarray]:
        """Blocks of a Fortran-order file: maps ``a..b`` of one die position lie together."""
        if self.path is None:
            raise DataFileError(f"{self.where} is stored in Fortran order; it can only be read whole")
        n, inner = self.shape[0], self.shape[1:]
        per_map, item = int(np.prod(inner, dtype=object)), self.dtype.itemsize
        with _read_errors(self.where), open(self.path, "rb") as fh:
            for start in range(0, n, max(1, rows)):
                count = min(rows, n - start)
                buf = np.empty((per_map, count), dtype=self.dtype)
                for j in range(per_map):
                    fh.seek(self.header_bytes + (j * n + start) * item)
                    _fill(fh, memoryview(buf[j].view(np.uint8)), self.where)
                yield np.ascontiguousarray(buf.reshape(*inner[::-1], count).transpose(range(len(inner), -1, -1)))
        if hasher is not None:  # the digest is of the file's bytes in their order
            with _read_errors(self.where), self.open() as fh:
                while piece := fh.read(_PIECE * 8):
                    hasher.update(piece)

    def read(self, *, hasher: Optional[Any] = None) -> np.ndarray:
        """The whole array (the caller checks first that it may be held in memory)."""
        if self.fortran_order or not self.shape:  # read as the flat array it is on disk
            flat = replace(self, shape=(math.prod(self.shape),), fortran_order=False, path=None)
            return flat.read(hasher=hasher).reshape(self.shape, order="F")
        whole = list(self.blocks(max(1, self.shape[0]), hasher=hasher))
        return whole[0] if whole else np.empty(self.shape, self.dtype)


def _parse_header(fh: IO[bytes], where: str) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    try:
        version = npy_format.read_magic(fh)
    except (ValueError, EOFError):
        raise DataFileError(f"{where} is not a valid .npy array file (no .npy header)") from None
    try:
        reader = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, fortran, dtype = reader(fh, max_header_size=MAX_HEADER_BYTES)
    except ValueError as exc:
        text = str(exc)
        if "pickle" in text.lower() or "object" in text.lower():
            raise DataFileError(f"{where} holds Python objects, which are never loaded; save plain numeric arrays") from None
        raise DataFileError(f"{where} is not a valid .npy array file ({text.splitlines()[0]})") from None
    except (EOFError, OSError) as exc:
        raise DataFileError(f"{where} is not a valid .npy array file ({exc or 'header cut short'})") from None
    if dtype.hasobject:
        raise DataFileError(f"{where} holds Python objects, which are never loaded; save plain numeric arrays")
    if dtype.fields is not None or dtype.subdtype is not None:
        raise DataFileError(f"{where} holds a structured array ({dtype}); expected plain numbers")
    if any(d < 0 for d in shape):
        raise DataFileError(f"{where} is not a valid .npy array file (negative shape {shape})")
    return tuple(int(d) for d in shape), dtype, bool(fortran), fh.tell()


def _checked(where: str, opener: Callable[[], IO[bytes]], real: int, what: str, path: Optional[Path]) -> NpyArray:
    with _read_errors(where), opener() as fh:
        shape, dtype, fortran, header = _parse_header(fh, where)
    arr = NpyArray(where, shape, dtype, fortran, header, opener, path)
    declared = header + arr.data_bytes
    if declared != real:
        raise DataFileError(
            f"{where}: its header declares a {dtype} array of shape {shape}, {_size(declared)} with the header, "
            f"but {what} {_size(real)}; "
            + ("the file is truncated or its header lies" if declared > real else "the header does not describe its data"))
    return arr


def open_npy_file(path: Path) -> NpyArray:
    """A ``.npy`` file on disk, its header checked against the file's length."""
    try:
        if path.is_dir():
            raise DataFileError(f"{path} is a folder, not a .npy file")
        real = path.stat().st_size
    except FileNotFoundError:
        raise DataFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return _checked(str(path), lambda: open(path, "rb"), real, "the file holds", path)


def open_npy_member(zf_path: Path, member: zipfile.ZipInfo) -> NpyArray:
    """A ``.npy`` member of a zip, its header checked against the member's size (:mod:`zipfile` never inflates more)."""

    @contextlib.contextmanager
    def opener() -> Iterator[IO[bytes]]:
        with zipfile.ZipFile(zf_path) as zf, zf.open(member) as fh:
            yield fh

    return _checked(f"{zf_path}:{member.filename}", opener, member.file_size, "the zip says the member inflates to", None)


class NpyWriter:
    """A ``.npy`` written block after block, its shape known up front; use :func:`npy_writer`."""

    def __init__(self, fh: IO[bytes], shape: Sequence[int], dtype: Any = np.float32) -> None:
        self._fh, self.shape, self.dtype, self.rows = fh, tuple(int(d) for d in shape), np.dtype(dtype), 0
        npy_format.write_array_header_1_0(
            fh, {"descr": npy_format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape})

    def write(self, block: np.ndarray) -> None:
        """Append ``block`` (rows of the declared item shape)."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if tuple(block.shape[1:]) != self.shape[1:] or self.rows + block.shape[0] > self.shape[0]:
            raise ValueError(f"block {block.shape} does not continue an array of shape {self.shape} at row {self.rows}")
        self._fh.write(block.data)
        self.rows += block.shape[0]


@contextlib.contextmanager
def npy_writer(path: Any, shape: Sequence[int], dtype: Any = np.float32) -> Iterator[NpyWriter]:
    """Write a ``.npy`` of ``shape`` to ``path`` block by block; every declared row must be written."""
    with open(path, "wb") as fh:
        writer = NpyWriter(fh, shape, dtype)
        yield writer
        if writer.rows != writer.shape[0]:
            raise ValueError(f"{path}: wrote {writer.rows} of {writer.shape[0]} rows")

