"""``.npy`` arrays read from a file or zip member in bounded memory, each header checked against the real size first
(no allocation is sized by a file's claims; nothing unpickles; no memory maps), and written block by block."""

from __future__ import annotations

import contextlib
import hashlib
import math
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Optional

import numpy as np
from numpy.lib import format as npy_format

from .errors import DataFileError


@contextlib.contextmanager
def _read_errors(where: str) -> Iterator[None]:
    try:
        yield
    except DataFileError:
        raise
    except (zipfile.BadZipFile, zlib.error) as exc:
        raise DataFileError(f"{where} is damaged ({exc})") from None
    except EOFError:
        raise DataFileError(f"{where} ends early: the file is truncated") from None
    except FileNotFoundError:
        raise DataFileError(f"{where}: no such file") from None
    except ValueError as exc:  # numpy's verdict on a header
        raise DataFileError(f"{where} is not a valid .npy array file ({str(exc).splitlines()[0]})") from None
    except (OSError, RuntimeError, NotImplementedError) as exc:  # RuntimeError: an encrypted member
        raise DataFileError(f"{where}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None


@dataclass
class NpyArray:
    """A ``.npy`` array whose header was checked; ``open`` gives a fresh stream at its first byte. Read along its
    first axis it is a :class:`~edge_infer.io.MapSource` (its rows are the maps)."""

    where: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    header_bytes: int
    open: Callable[[], IO[bytes]]
    sha256: Optional[str] = None  # of the file's bytes, once a ``hash=True`` read is complete
    count: int = field(init=False)  # rows (maps, of a stack of maps)
    map_bytes: int = field(init=False)  # bytes of one row
    data_bytes: int = field(init=False)

    def __post_init__(self) -> None:
        self.count = self.shape[0] if self.shape else 1
        self.map_bytes = max(1, math.prod(self.shape[1:]) * self.dtype.itemsize)
        self.data_bytes = math.prod(self.shape) * self.dtype.itemsize

    def raw_blocks(self, rows: int, *, hash: bool = False) -> Iterator[np.ndarray]:
        """The array ``rows`` rows at a time as stored (C order), each block a new array."""
        hasher = hashlib.sha256()
        update = hasher.update if hash else (lambda _: None)
        with _read_errors(self.where), self.open() as fh:
            update(fh.read(self.header_bytes))
            for start in range(0, max(self.count, 1), max(1, rows)):
                buf = np.empty((min(rows, self.count - start), *self.shape[1:]), dtype=self.dtype)
                view, pos = memoryview(buf.reshape(-1).view(np.uint8)), 0
                while pos < len(view):  # plain reads, in 1 MiB pieces (a memory map's pages would count as ours)
                    got = fh.readinto(view[pos:pos + (1 << 20)])  # type: ignore[attr-defined]
                    if not got:
                        raise DataFileError(f"{self.where} ends early: the file is truncated")
                    pos += got
                update(buf.data)
                yield buf
            if fh.read(1):  # read to the end, so a zip member's CRC is checked
                raise DataFileError(f"{self.where} holds more data than its header declares")
        if hash:
            self.sha256 = hasher.hexdigest()

    def read(self, *, hash: bool = False) -> np.ndarray:
        """The whole array (the caller checks first that it may be held in memory)."""
        flat = replace(self, shape=(math.prod(self.shape),))  # as it lies on disk, in either order
        (whole,) = flat.raw_blocks(flat.count, hash=hash)
        self.sha256 = flat.sha256
        return whole.reshape(self.shape, order="F" if self.fortran_order else "C")


def _checked(where: str, opener: Callable[[], IO[bytes]], real: int, what: str) -> NpyArray:
    """The array ``opener`` gives, its header parsed and its size checked against ``real`` (what ``what``)."""
    with _read_errors(where), opener() as fh:
        version = npy_format.read_magic(fh)
        read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh, max_header_size=10_000)  # numpy's own limit
        array = NpyArray(where, tuple(int(d) for d in shape), dtype, bool(fortran), fh.tell(), opener)
    if dtype.hasobject:
        raise DataFileError(f"{where} holds Python objects, which are never loaded; save plain numeric arrays")
    if any(d < 0 for d in shape):
        raise DataFileError(f"{where} is not a valid .npy array file (negative shape {shape})")
    declared = array.header_bytes + array.data_bytes
    if declared != real:
        why = "the file is truncated or its header lies" if declared > real else "the header does not describe its data"
        raise DataFileError(f"{where}: its header declares a {dtype} array of shape {array.shape}, {declared:,} bytes "
                            f"with the header, but {what} {real:,} bytes; {why}")
    return array


def open_npy_file(path: Path) -> NpyArray:
    """A ``.npy`` file on disk, its header checked against the file's length."""
    with _read_errors(str(path)):
        real = path.stat().st_size
    return _checked(str(path), lambda: open(path, "rb"), real, "the file holds")


def open_npy_member(zf_path: Path, member: zipfile.ZipInfo) -> NpyArray:
    """A ``.npy`` member of a zip, its header checked against the member's size (:mod:`zipfile` never inflates more)."""

    def opener() -> IO[bytes]:  # the member keeps the archive's file open until it is closed itself
        with zipfile.ZipFile(zf_path) as zf:
            return zf.open(member)

    return _checked(f"{zf_path}:{member.filename}", opener, member.file_size, "the zip says the member inflates to")


class NpyWriter:
    """A ``.npy`` written block after block, its shape known up front; use :func:`npy_writer`."""

    def __init__(self, fh: IO[bytes], shape: Sequence[int], dtype: Any = np.float32) -> None:
        self._fh, self.shape, self.dtype, self.rows = fh, tuple(int(d) for d in shape), np.dtype(dtype), 0
        npy_format.write_array_header_1_0(
            fh, {"descr": npy_format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape})

    def write(self, block: np.ndarray) -> None:
        """Append ``block`` (rows of the declared item shape)."""
        if tuple(np.shape(block)[1:]) != self.shape[1:]:  # a wrong shape would still count as rows: refuse it here
            raise ValueError(f"a block of shape {np.shape(block)} does not continue an array of shape {self.shape}")
        self._fh.write(np.ascontiguousarray(block, dtype=self.dtype).data)
        self.rows += len(block)


@contextlib.contextmanager
def npy_writer(path: Any, shape: Sequence[int], dtype: Any = np.float32) -> Iterator[NpyWriter]:
    """Write a ``.npy`` of ``shape`` to ``path`` block by block; every declared row must be written."""
    with open(path, "wb") as fh:
        writer = NpyWriter(fh, shape, dtype)
        yield writer
        if writer.rows != writer.shape[0]:
            raise ValueError(f"{path}: wrote {writer.rows} of {writer.shape[0]} rows")
