"""Files in and out: reading users' wafer data, writing outputs atomically.

Reading never unpickles (``allow_pickle=False`` everywhere), and every
problem with a file becomes one :class:`DataFileError` naming that file.
Writing goes to a temporary file in the target folder, then ``os.replace``:
a reader never sees a half-written output, an interrupted run leaves none,
and an existing file is only replaced when the caller says ``force``.
"""

from __future__ import annotations

import contextlib
import io
import os
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


def load_npy(path: PathLike) -> np.ndarray:
    """Load a ``.npy`` file safely: no pickles, one clear error for anything wrong."""
    p = Path(path)
    if not p.exists():
        raise DataFileError(f"{p}: no such file")
    if p.is_dir():
        raise DataFileError(f"{p} is a folder, not a .npy file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataFileError(f"{p}: cannot read ({exc.strerror or exc})") from None
    return _load_npy_bytes(raw, str(p))


def _read_zip(path: Path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = {Path(n).name: n for n in zf.namelist() if not n.endswith("/")}
            if DATA_NAME not in names:
                raise DataFileError(f"{path} holds no {DATA_NAME} (found: {', '.join(sorted(names)) or 'nothing'})")
            data = _load_npy_bytes(zf.read(names[DATA_NAME]), f"{path}:{DATA_NAME}")
            labels = None
            if LABEL_NAME in names:
                labels = _load_npy_bytes(zf.read(names[LABEL_NAME]), f"{path}:{LABEL_NAME}")
            return data, labels
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
    * a ``.npy`` of maps, with ``labels`` naming its ``.npy`` of labels.

    Maps may be one-hot or die states, any size (resized to 26×26 with a
    note). Raises :class:`DataFileError` / :class:`InputError` with one clear
    message for a missing, broken or inconsistent input.
    """
    p = Path(data)
    if not p.exists():
        raise DataFileError(f"{p}: no such file or folder")
    label_arr: Optional[np.ndarray] = None
    if p.is_dir():
        if not (p / DATA_NAME).exists():
            raise DataFileError(f"{p} holds no {DATA_NAME}")
        data_arr = load_npy(p / DATA_NAME)
        if labels is None and (p / LABEL_NAME).exists():
            label_arr = load_npy(p / LABEL_NAME)
    elif zipfile.is_zipfile(p):
        data_arr, label_arr = _read_zip(p)
    elif p.suffix.lower() == ".zip":
        raise DataFileError(f"{p} is not a valid zip file")
    else:
        data_arr = load_npy(p)
    if labels is not None:
        label_arr = load_npy(labels)
    if label_arr is None and require_labels:
        raise DataFileError(
            f"{p}: no labels found; give a {LABEL_NAME} beside {DATA_NAME}, or a labels file"
        )
    maps = as_maps(data_arr, name=f"maps in {p}")
    lab = None if label_arr is None else as_labels(label_arr, maps.shape[0], name=f"labels for {p}")
    return Dataset(maps=maps, labels=lab, source=str(p))


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


def save_npy(path: PathLike, array: np.ndarray, *, force: bool = False) -> Path:
    """Write ``array`` to ``path`` as ``.npy``, atomically."""
    with atomic_path(path, force=force) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
    return Path(path)


def save_bytes(path: PathLike, payload: bytes, *, force: bool = False) -> Path:
    """Write ``payload`` to ``path``, atomically."""
    with atomic_path(path, force=force) as tmp:
        tmp.write_bytes(payload)
    return Path(path)
