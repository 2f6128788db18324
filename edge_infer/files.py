"""Writing outputs: each is a hidden ``.NAME.<pid>-<random>.edge-infer-part`` beside its target until complete,
then renamed into place (parts a killed run left are removed by the next write there); checks before any work; JSON."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ContextManager, Union

import numpy as np

from .errors import Note, OutputError

PathLike = Union[str, "os.PathLike[str]"]
PART_SUFFIX = ".edge-infer-part"  # marks our temporaries, so a later run may remove stale ones


def _dead(part: Path) -> bool:
    """Whether the process whose id ``part``'s name carries has ended."""
    try:
        os.kill(int(part.name[:-len(PART_SUFFIX)].rsplit(".", 1)[-1].split("-")[0]), 0)
    except (ValueError, OSError, OverflowError) as exc:  # else no id, another user's process, or no pid here
        return isinstance(exc, ProcessLookupError)
    return False


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def check_can_create(folder: PathLike) -> Path:
    """Check, creating nothing, that ``folder`` could be written; returns it or its nearest existing parent."""
    probe = Path(folder)
    try:
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
    except OSError as exc:
        raise OutputError(f"cannot use {folder}: {exc.strerror or exc}") from None
    if not probe.is_dir():
        raise OutputError(f"cannot create folder {folder}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {probe}: permission denied")
    return probe


def check_targets(paths: Sequence[PathLike], *, force: bool = False) -> None:
    """Refuse up front an output that exists (without ``force``), is a folder, or cannot be written."""
    for p in map(Path, paths):
        try:
            exists, is_dir = p.exists(), p.is_dir()
        except OSError as exc:
            raise OutputError(f"cannot write {p}: {exc.strerror or exc}") from None
        if is_dir:
            raise OutputError(f"{p} is a folder; cannot write a file there")
        if exists and not force:
            raise OutputError(f"{p} already exists; use --force to overwrite it")
        check_can_create(p.parent)


def check_free_space(folder: PathLike, need: int, what: str) -> None:
    """Refuse up front an output of ``need`` bytes that the disk cannot hold."""
    try:
        free = shutil.disk_usage(check_can_create(folder)).free
    except OSError:
        return  # cannot tell: the write itself will say
    if need > free:
        raise OutputError(f"{what} need {need / 2**30:.2f} GiB in {folder}, which has {free / 2**30:.2f} GiB free")


def check_folder_target(folder: PathLike, *, force: bool, marker: str, what: str) -> bool:
    """Refuse up front a file there, a folder without ``force``, or (so ``--force`` never deletes an arbitrary
    folder) one neither empty nor ``what`` (no ``marker``). Returns whether :func:`atomic_folder` may replace it."""
    out, replace = Path(folder), force
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise OutputError(f"{out} exists and is not a folder; give another --out")
        if all(c.name.startswith(".") and c.is_file() for c in out.iterdir()):
            replace = True  # nothing of the user's is lost
        elif not (out / marker).exists():
            raise OutputError(f"{out} is a folder that is not {what}; refusing to replace it")
        elif not force:
            raise OutputError(f"{out} already exists; use --force to replace it")
    check_can_create(out.parent)
    return replace


def next_run_folder(root: PathLike, verb: str) -> Path:
    """``root/VERB-N`` with N one more than any such folder there: a run of its own, never a collision."""
    tails = [p.name[len(verb) + 1:] for p in Path(root).glob(f"{verb}-*")]
    return Path(root) / f"{verb}-{max((int(t) for t in tails if t.isdigit()), default=0) + 1}"


@contextlib.contextmanager
def atomic_path(path: PathLike, *, force: bool = False, folder: bool = False) -> Iterator[Path]:
    """Yield a temporary file (``folder``: an empty folder) beside ``path`` that becomes ``path`` on success (``force``:
    replacing one); on any exception (Ctrl-C, the CLI's SIGTERM/SIGHUP) it is removed and ``path`` left as it was."""
    target = Path(path)
    if not folder:
        check_targets([target], force=force)
    tmp = target.with_name(f".{target.name[:200]}.{os.getpid()}-{secrets.token_hex(4)}{PART_SUFFIX}")
    old = tmp.with_name(tmp.name[:-len(PART_SUFFIX)] + "-old" + PART_SUFFIX)  # a part too, if this run dies
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        stale = [p for p in target.parent.glob(f".*{PART_SUFFIX}") if _dead(p)]
        for p in stale:
            _remove(p)
        if stale:
            warnings.warn(f"removed {len(stale)} partial file(s) an interrupted run left in {target.parent}", Note,
                          stacklevel=3)
        tmp.mkdir() if folder else tmp.touch(exist_ok=False)  # the modes the umask gives any new file
        yield tmp
        for written in filter(Path.is_file, tmp.iterdir()) if folder else [tmp]:
            with open(written, "rb") as fh:
                os.fsync(fh.fileno())
        if target.exists() and not force:
            raise OutputError(f"{target} appeared while writing; use --force to replace it")
        if folder and target.exists():  # a folder is not replaced in one step: the old one goes once the new one is in
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except OSError:
            if old.exists():
                os.replace(old, target)
            raise
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        _remove(tmp)
        _remove(old)


def atomic_folder(path: PathLike, *, force: bool = False) -> ContextManager[Path]:
    """:func:`atomic_path` of a folder: yields an empty temporary folder."""
    return atomic_path(path, force=force, folder=True)


@contextlib.contextmanager
def atomic_files(paths: Sequence[PathLike], *, force: bool = False) -> Iterator[list[Path]]:
    """Temporary paths for several outputs, renamed into place only if all are written."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_path(p, force=force)) for p in paths]


def write_npy(path: PathLike, array: np.ndarray) -> None:
    """``array`` as ``.npy`` at ``path``, never pickled (not atomic: write into :func:`atomic_path`)."""
    with open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def jsonable(value: Any) -> Any:
    """A JSON-safe copy for every JSON file written (strict readers refuse ``NaN``): NaN and infinities become
    null, numpy values plain ones, tuples lists, anything else unknown its text."""
    text = json.dumps(value, default=lambda v: v.tolist() if isinstance(v, (np.ndarray, np.generic)) else str(v))
    return json.loads(text, parse_constant=lambda _: None)  # the round trip turns NaN and Infinity into null


def json_text(obj: Any, *, sort_keys: bool = True) -> str:
    """``obj`` as indented, strict JSON text (see :func:`jsonable`), newline-terminated."""
    return json.dumps(jsonable(obj), indent=2, sort_keys=sort_keys, allow_nan=False) + "\n"
