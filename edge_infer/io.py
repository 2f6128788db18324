"""Files in and out: reading users' wafer data, writing outputs atomically.

Reading never unpickles (``allow_pickle=False`` everywhere), and every
problem with a file becomes one :class:`DataFileError` naming that file.
Writing goes to a temporary file in the target folder, then ``os.replace``:
a reader never sees a half-written output, an interrupted run leaves none,
and an existing file is only replaced when the caller says ``force``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .errors import DataFileError, OutputError
from .wafer import as_labels, as_maps

PathLike = Union[str, "os.PathLike[str]"]

DATA_NAME = "data.npy"
LABEL_NAME = "label.npy"


@dataclass(frozen=True)
class Dataset:
    """Validated wafer maps (one-hot float32, N×26×26×3) and their labels (int64, N×1) or None."""

    maps: np.ndarray
    labels: Optional[np.ndarray]
    source: str
    #: sha256 of the ``data.npy`` / ``label.npy`` bytes as read (None: no labels).
    #: Hashing the members, not the zip or folder, gives the same figure in every
    #: layout, and one a user can check with ``sha256sum data.npy``.
    sha256: str = ""
    labels_sha256: Optional[str] = None


def _load_npy_bytes(raw: bytes, where: str) -> np.ndarray:
    # np.load falls back to unpickling anything without the .npy magic; check it
    # first so a text file named .npy is reported as what it is.
    if not raw.startswith(b"\x93NUMPY"):
        raise DataFileError(f"{where} is not a valid .npy array file (no .npy header)")
    try:
        return np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataFileError(f"{where} holds Python objects, which are never loaded; save plain numeric arrays") from None
        raise DataFileError(f"{where} is not a valid .npy array file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise DataFileError(f"{where} is not a valid .npy array file ({exc})") from None


def _read_file(path: PathLike) -> bytes:
    p = Path(path)
    if not p.exists():
        raise DataFileError(f"{p}: no such file")
    if p.is_dir():
        raise DataFileError(f"{p} is a folder, not a .npy file")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise DataFileError(f"{p}: cannot read ({exc.strerror or exc})") from None


def load_npy(path: PathLike) -> np.ndarray:
    """Load a ``.npy`` file safely: no pickles, one clear error for anything wrong."""
    return _load_npy_bytes(_read_file(path), str(path))


def _read_zip(path: Path) -> tuple[bytes, Optional[bytes]]:
    """Raw ``data.npy`` and ``label.npy`` (None if absent) bytes of a course zip."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = {Path(n).name: n for n in zf.namelist() if not n.endswith("/")}
            if DATA_NAME not in names:
                raise DataFileError(f"{path} holds no {DATA_NAME} (found: {', '.join(sorted(names)) or 'nothing'})")
            labels = zf.read(names[LABEL_NAME]) if LABEL_NAME in names else None
            return zf.read(names[DATA_NAME]), labels
    except zipfile.BadZipFile:
        raise DataFileError(f"{path} is not a valid zip file") from None
    except (OSError, EOFError, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise DataFileError(f"{path}: cannot read the zip ({exc})") from None


def load_dataset(
    data: PathLike,
    labels: Optional[PathLike] = None,
    *,
    require_labels: bool = False,
) -> Dataset:
    """Read and validate wafer maps from any of the three layouts users have.

    * a ``wafer.zip`` holding ``data.npy`` (and usually ``label.npy``),
    * a folder holding ``data.npy`` (and usually ``label.npy``),
    * a ``.npy`` of maps, with ``labels`` naming its ``.npy`` of labels,
    * a SEMI G85 XML file (``.xml``, or any file that starts like XML):
      see :mod:`edge_infer.g85`; labels from its maps or from ``labels``.

    Maps may be one-hot or die states, any size (resized to 26×26 with a
    note). Raises :class:`DataFileError` / :class:`InputError` with one clear
    message for a missing, broken or inconsistent input.
    """
    p = Path(data)
    if not p.exists():
        raise DataFileError(f"{p}: no such file or folder")
    raw_labels: Optional[bytes] = None
    if p.is_dir():
        if not (p / DATA_NAME).exists():
            raise DataFileError(f"{p} holds no {DATA_NAME}")
        data_where, raw_data = str(p / DATA_NAME), _read_file(p / DATA_NAME)
        label_where = str(p / LABEL_NAME)
        if labels is None and (p / LABEL_NAME).exists():
            raw_labels = _read_file(p / LABEL_NAME)
    elif zipfile.is_zipfile(p):
        data_where, label_where = f"{p}:{DATA_NAME}", f"{p}:{LABEL_NAME}"
        raw_data, raw_labels = _read_zip(p)
    elif p.suffix.lower() == ".zip":
        raise DataFileError(f"{p} is not a valid zip file")
    elif p.suffix.lower() != ".npy" and _is_g85(p):
        from .g85 import load_g85_dataset

        return load_g85_dataset(p, labels, require_labels=require_labels)
    else:
        data_where, label_where, raw_data = str(p), "", _read_file(p)
    if labels is not None:
        label_where, raw_labels = str(labels), _read_file(labels)
    if raw_labels is None and require_labels:
        raise DataFileError(
            f"{p}: no labels found; give a {LABEL_NAME} beside {DATA_NAME}, or a labels file"
        )
    maps = as_maps(_load_npy_bytes(raw_data, data_where), name=f"maps in {p}")
    lab = None
    if raw_labels is not None:
        lab = as_labels(_load_npy_bytes(raw_labels, label_where), maps.shape[0], name=f"labels for {p}")
    return Dataset(
        maps=maps,
        labels=lab,
        source=str(p),
        sha256=hashlib.sha256(raw_data).hexdigest(),
        labels_sha256=None if raw_labels is None else hashlib.sha256(raw_labels).hexdigest(),
    )


def _is_g85(path: Path) -> bool:
    from .g85 import looks_like_g85

    return looks_like_g85(path)


# ---------------------------------------------------------------- writing


def ensure_writable_folder(folder: PathLike) -> None:
    """Create ``folder`` if needed and check it can be written, or raise :class:`OutputError`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {folder}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {folder}: permission denied")


def check_targets(paths: Sequence[PathLike], *, force: bool = False) -> None:
    """Refuse before writing anything if an output exists (without ``force``)
    or its folder cannot be created or written, so a run fails up front
    rather than after half its outputs."""
    for path in paths:
        p = Path(path)
        if p.exists() and not force:
            raise OutputError(f"{p} already exists; use --force to overwrite it")
        if p.exists() and p.is_dir():
            raise OutputError(f"{p} is a folder; cannot write a file there")
        ensure_writable_folder(p.parent)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which would
# race with other threads creating files if done per write.
_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path: PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it into place.

    On any exception (KeyboardInterrupt included) the temporary file is
    removed and ``path`` is left exactly as it was.
    """
    target = Path(path)
    check_targets([target], force=force)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp makes the file 0600; give it the permissions any new file would get.
        os.chmod(tmp, 0o666 & ~_UMASK)
        if target.exists() and not force:
            raise OutputError(f"{target} appeared while writing; use --force to overwrite it")
        os.replace(tmp, target)
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_npy(path: PathLike, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` as ``.npy``, never pickled (not atomic: see :func:`save_npy`)."""
    with open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


@contextlib.contextmanager
def atomic_folder(path: PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it becomes ``path``.

    The files in it are synced, the folder gets normal permissions, and an
    existing ``path`` (only with ``force``) is moved aside first and removed
    only once the new folder is in place: a rename is atomic, a tree delete is
    not. On any exception (KeyboardInterrupt included) the temporary folder is
    removed and ``path`` is left exactly as it was.
    """
    target = Path(path)
    ensure_writable_folder(target.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    except OSError as exc:
        raise OutputError(f"cannot write to {target.parent}: {exc.strerror or exc}") from None
    try:
        yield tmp
        for child in tmp.iterdir():
            if child.is_file():
                with open(child, "rb") as fh:
                    os.fsync(fh.fileno())
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it 0700
        old: Optional[Path] = None
        if target.exists():
            if not force:
                raise OutputError(f"{target} appeared while writing; use --force to replace it")
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / target.name)
        try:
            os.replace(tmp, target)
        except OSError as exc:
            if old is not None:  # put the previous folder back
                os.replace(old / target.name, target)
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_npy(path: PathLike, array: np.ndarray, *, force: bool = False) -> Path:
    """Write ``array`` to ``path`` as ``.npy``, atomically."""
    with atomic_path(path, force=force) as tmp:
        write_npy(tmp, array)
    return Path(path)


def save_bytes(path: PathLike, payload: bytes, *, force: bool = False) -> Path:
    """Write ``payload`` to ``path``, atomically."""
    with atomic_path(path, force=force) as tmp:
        tmp.write_bytes(payload)
    return Path(path)
