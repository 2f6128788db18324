"""``.npy`` arrays read from a file or a zip member in bounded memory.

A ``.npy`` header declares a shape and a dtype; the bytes after it must be
exactly that many. Both are checked *before* any data is read: a header that
claims more than the file holds (a truncated or lying file) or less (a zip
member that inflates to gigabytes behind a small header) is refused with the
two sizes, so no allocation is ever sized by a file's claims alone. The data
is then read front to back, a block of rows at a time, into one buffer per
block: a zip member is decompressed as it is read, and a file on disk is read
with plain reads rather than a memory map, whose touched pages would count as
the process's memory.

Nothing here unpickles: object dtypes are refused from the header.
"""

from __future__ import annotations

import contextlib
import hashlib
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

import numpy as np

from .errors import DataFileError

MAGIC = b"\x93NUMPY"
#: numpy's own limit on a header's length (``max_header_size``).
MAX_HEADER_BYTES = 10_000
# Read and decompress in pieces of this size (the block buffer is filled piece by piece).
_READ_PIECE = 1 << 20


def _size(n: int) -> str:
    """``1,128 bytes`` / ``20,783,024 bytes (20.8 MB)``: exact, and readable at a glance."""
    if n < 10_000_000:
        return f"{n:,} bytes"
    if n < 10**9:
        return f"{n:,} bytes ({n / 1e6:.1f} MB)"
    return f"{n:,} bytes ({n / 1e9:.1f} GB)"


@dataclass(frozen=True)
class NpyArray:
    """A ``.npy`` array whose header was read and checked against its real size.

    ``open`` gives a fresh binary stream positioned at the first byte of the
    file or member, so the array can be read more than once (zip members
    cannot seek back cheaply: each read starts a new decompression).
    """

    where: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    header_bytes: int
    open: Callable[[], IO[bytes]]
    #: The file, for arrays that can be read out of order (None: a zip member).
    path: Optional[Path] = None

    @property
    def data_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=object)) * self.dtype.itemsize

    @property
    def row_bytes(self) -> int:
        """Bytes of one item along the first axis (one map, for a stack of maps)."""
        return int(np.prod(self.shape[1:], dtype=object)) * self.dtype.itemsize

    def _errors(self) -> contextlib.AbstractContextManager:
        return _read_errors(self.where)

    def blocks(self, rows: int, *, hasher: Optional["hashlib._Hash"] = None) -> Iterator[np.ndarray]:
        """The array ``rows`` items (along the first axis) at a time, front to back.

        Each block is a new array (the caller may keep it). ``hasher``, if
        given, is fed every byte of the file (header included), so after a
        full pass it holds the file's digest.
        """
        if self.fortran_order and len(self.shape) > 1:
            yield from self._fortran_blocks(rows, hasher)
            return
        n = self.shape[0] if self.shape else 1
        rows = max(1, int(rows))
        with self._errors(), self.open() as fh:
            header = _read_exact(fh, self.header_bytes, self.where, self.header_bytes)
            if hasher is not None:
                hasher.update(header)
            for start in range(0, n, rows):
                count = min(rows, n - start)
                buf = np.empty((count, *self.shape[1:]), dtype=self.dtype)
                _fill(fh, memoryview(buf.reshape(-1).view(np.uint8)), self.where, self.header_bytes + self.data_bytes)
                if hasher is not None:
                    hasher.update(buf.data)
                yield buf
            _check_end(fh, self.where)

    def _fortran_blocks(self, rows: int, hasher: Optional["hashlib._Hash"]) -> Iterator[np.ndarray]:
        """Blocks of a Fortran-order file: each die of a block of maps is one contiguous run.

        In Fortran order the first axis varies fastest, so the maps ``a..b``
        of one (row, column, channel) position lie together; a block is read
        as one run per position.
        """
        if self.path is None:
            raise DataFileError(f"{self.where} is stored in Fortran order; it can only be read whole")
        n, inner = self.shape[0], self.shape[1:]
        per_map = int(np.prod(inner, dtype=object))
        item = self.dtype.itemsize
        rows = max(1, int(rows))
        with self._errors(), open(self.path, "rb") as fh:
            for start in range(0, n, rows):
                count = min(rows, n - start)
                buf = np.empty((per_map, count), dtype=self.dtype)
                for j in range(per_map):
                    fh.seek(self.header_bytes + (j * n + start) * item)
                    _fill(fh, memoryview(buf[j].view(np.uint8)), self.where, self.header_bytes + self.data_bytes)
                # buf[j, m]: position j (first inner axis fastest) of map m.
                order = tuple(range(len(inner), -1, -1))
                yield np.ascontiguousarray(buf.reshape(*inner[::-1], count).transpose(order))
        if hasher is not None:  # the digest is of the file's bytes in their order: one more sequential pass
            with self._errors(), self.open() as fh:
                while piece := fh.read(_READ_PIECE * 8):
                    hasher.update(piece)

    def read(self, *, hasher: Optional["hashlib._Hash"] = None) -> np.ndarray:
        """The whole array (the caller checks first that it may be held in memory)."""
        with self._errors(), self.open() as fh:
            header = _read_exact(fh, self.header_bytes, self.where, self.header_bytes)
            if hasher is not None:
                hasher.update(header)
            buf = np.empty(self.data_bytes // max(self.dtype.itemsize, 1), dtype=self.dtype)
            _fill(fh, memoryview(buf.view(np.uint8)), self.where, self.header_bytes + self.data_bytes)
            if hasher is not None:
                hasher.update(buf.data)
            _check_end(fh, self.where)
        return buf.reshape(self.shape, order="F" if self.fortran_order else "C")


@contextlib.contextmanager
def _read_errors(where: str) -> Iterator[None]:
    """Errors of reading or decompressing, as one :class:`DataFileError` naming ``where``."""
    try:
        yield
    except DataFileError:
        raise
    except zipfile.BadZipFile as exc:  # e.g. a CRC mismatch at the end of a member
        raise DataFileError(f"{where} is damaged ({exc})") from None
    except zlib.error as exc:
        raise DataFileError(f"{where} is damaged: its compressed data cannot be read ({exc})") from None
    except EOFError:
        raise DataFileError(f"{where} ends early: the file is truncated") from None
    except (OSError, RuntimeError, NotImplementedError) as exc:  # RuntimeError: an encrypted member
        raise DataFileError(f"{where}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None


def _read_exact(fh: IO[bytes], n: int, where: str, total: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise DataFileError(f"{where} ends early: the file is truncated (expected {_size(total)})")
    return data


def _fill(fh: IO[bytes], view: memoryview, where: str, total: int) -> None:
    """Fill ``view`` from ``fh`` piece by piece; a short stream is a truncated file."""
    pos = 0
    while pos < len(view):
        got = fh.readinto(view[pos : pos + _READ_PIECE]) if hasattr(fh, "readinto") else None
        if got is None:  # streams without readinto
            piece = fh.read(min(_READ_PIECE, len(view) - pos))
            got = len(piece)
            view[pos : pos + got] = piece
        if not got:
            raise DataFileError(f"{where} ends early: the file is truncated (expected {_size(total)})")
        pos += got


def _check_end(fh: IO[bytes], where: str) -> None:
    """Read to the end of a zip member, so its CRC is checked (there is nothing left by then)."""
    if fh.read(1):
        raise DataFileError(f"{where} holds more data than its header declares")


def _parse_header(fh: IO[bytes], where: str) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    from numpy.lib import format as npy_format

    magic = fh.read(len(MAGIC))
    if magic != MAGIC:
        raise DataFileError(f"{where} is not a valid .npy array file (no .npy header)")
    version = fh.read(2)
    if len(version) != 2 or version[0] not in (1, 2, 3):
        raise DataFileError(f"{where} is not a valid .npy array file (unknown format version)")
    try:
        reader = npy_format.read_array_header_1_0 if version[0] == 1 else npy_format.read_array_header_2_0
        # Version 3 differs from 2 only by allowing utf-8 in field names, and fields are refused below.
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


def _checked(where: str, opener: Callable[[], IO[bytes]], real: int, what: str) -> NpyArray:
    """Read the header of the stream ``opener`` gives and check it against ``real`` bytes."""
    with _read_errors(where), opener() as fh:
        shape, dtype, fortran, header = _parse_header(fh, where)
    arr = NpyArray(where, shape, dtype, fortran, header, opener)
    declared = header + arr.data_bytes
    if declared != real:
        shape_text = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
        raise DataFileError(
            f"{where}: its header declares a {dtype} array of shape {shape_text}, "
            f"{_size(declared)} with the header, but {what} {_size(real)}; "
            + ("the file is truncated or its header lies" if declared > real else "the header does not describe its data")
        )
    return arr


def open_npy_file(path: Path) -> NpyArray:
    """A ``.npy`` file on disk, its header checked against the file's length."""
    try:
        real = path.stat().st_size
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    arr = _checked(str(path), lambda: open(path, "rb"), real, "the file holds")
    return NpyArray(arr.where, arr.shape, arr.dtype, arr.fortran_order, arr.header_bytes, arr.open, path)


def open_npy_member(zf_path: Path, member: zipfile.ZipInfo) -> NpyArray:
    """A ``.npy`` member of a zip, its header checked against the member's declared size.

    The declared (uncompressed) size is also what bounds decompression:
    :mod:`zipfile` never returns more than it, and checks the CRC at the end.
    """

    def opener() -> IO[bytes]:
        zf = zipfile.ZipFile(zf_path)
        try:
            inner = zf.open(member)
        except BaseException:
            zf.close()
            raise
        return _ClosingMember(inner, zf)

    where = f"{zf_path}:{member.filename}"
    return _checked(where, opener, member.file_size, "the zip says the member inflates to")


class _ClosingMember:
    """A zip member stream that also closes its zip file."""

    def __init__(self, inner: IO[bytes], zf: zipfile.ZipFile) -> None:
        self._inner, self._zf = inner, zf

    def read(self, n: int = -1) -> bytes:
        return self._inner.read(n)

    def readinto(self, b: memoryview) -> int:
        return self._inner.readinto(b)  # type: ignore[attr-defined]

    def tell(self) -> int:
        return self._inner.tell()

    def __enter__(self) -> "_ClosingMember":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._inner.close()
        finally:
            self._zf.close()
