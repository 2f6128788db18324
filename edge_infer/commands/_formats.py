"""Output formats of ``generate`` and ``augment``: the course ``.npy`` pair, SEMI G85 XML, or both.

The generator only ever makes arrays (or a streamed ``.npy``); turning them
into G85 happens here, in the command layer, from what it returned.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Callable

import typer

G85_FILE = "gen_maps.xml"
FORMATS = ("npy", "g85", "both")
#: Maps converted at a time when a streamed .npy becomes G85.
G85_BLOCK = 4096

FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        help="npy: gen_data.npy + gen_label.npy (the course layout). g85: gen_maps.xml (SEMI G85 XML, class in ei:ClassIndex). both.",
    ),
]


def check_format(fmt: str) -> str:
    """The format key, or an :class:`~edge_infer.errors.InputError` before any work."""
    from ..errors import InputError

    key = fmt.strip().lower()
    if key not in FORMATS:
        raise InputError(f"--format must be npy, g85 or both, not {fmt!r}")
    return key


def targets(out: Path, fmt: str) -> list[Path]:
    """The map files a format writes into ``out``."""
    from ..generator import DATA_FILE, LABEL_FILE

    paths = []
    if fmt in ("npy", "both"):
        paths += [out / DATA_FILE, out / LABEL_FILE]
    if fmt in ("g85", "both"):
        paths.append(out / G85_FILE)
    return paths


def writers(out: Path, maps: Any, labels: Any, fmt: str) -> "dict[Path, Callable[[Path], None]]":
    """:func:`~edge_infer.commands._common.write_all` writers for the maps in ``fmt``."""
    from ..generator import DATA_FILE, LABEL_FILE
    from ._common import npy_writer

    w: dict[Path, Callable[[Path], None]] = {}
    if fmt in ("npy", "both"):
        w[out / DATA_FILE] = npy_writer(maps)
        w[out / LABEL_FILE] = npy_writer(labels)
    if fmt in ("g85", "both"):
        # Imported only here: g85 pulls in xml.sax.saxutils, and with it urllib,
        # http and email, a measurable share of a small npy run's start-up.
        from ..g85 import G85Writer

        def write_g85(tmp: Path) -> None:  # stand-in for the rewritten sinks: g85.g85_writer is gone
            with open(tmp, "wb") as fh:
                g = G85Writer(fh, lot_id="edge-infer")
                g.write(maps, labels)
                g.close()

        w[out / G85_FILE] = write_g85
    return w


def say_maps(out: Path, n: int, fmt: str) -> None:
    """The result lines naming the map files written."""
    from ..generator import DATA_FILE, LABEL_FILE
    from ._common import say

    if fmt in ("npy", "both"):
        say(f"  {out / DATA_FILE}  ({n}, 26, 26, 3) float32 one-hot")
        say(f"  {out / LABEL_FILE}  ({n}, 1) int64")
    if fmt in ("g85", "both"):
        say(f"  {out / G85_FILE}  {n} <Map>s, SEMI G85 XML")


def npy_to_g85(data_path: Path, labels: Any, target: Path, *, force: bool) -> None:
    """Write a streamed ``gen_data.npy`` as G85, a block at a time.

    Plain reads rather than a memory map: the pages of a memory map count in
    the process's resident memory (the whole file, by the end), plain reads
    hold one block.
    """
    import numpy as np
    from numpy.lib import format as npy_format

    from ..errors import DataFileError
    from ..g85 import open_g85
    from ..wafer import MAP_SHAPE

    with open(data_path, "rb") as fh, open_g85(target, force=force, lot_id="edge-infer") as w:
        version = npy_format.read_magic(fh)
        read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        if fortran or dtype != np.float32 or tuple(shape[1:]) != MAP_SHAPE:  # never, for the generator's own file
            raise DataFileError(f"{data_path} is not a streamed map file ({shape}, {dtype})")
        per_map = int(np.prod(MAP_SHAPE)) * 4
        for start in range(0, shape[0], G85_BLOCK):
            k = min(G85_BLOCK, shape[0] - start)
            block = np.frombuffer(fh.read(k * per_map), dtype=np.float32).reshape(k, *MAP_SHAPE)
            w.write(block, labels[start : start + k])


@contextlib.contextmanager
def streamed_folder(out: Path, fmt: str):
    """Where a streamed run puts its ``.npy``: ``out`` itself, or (G85 only) a
    temporary folder inside it that is removed afterwards."""
    if fmt != "g85":
        yield out
        return
    from ..io import ensure_writable_folder

    ensure_writable_folder(out)
    tmp = Path(tempfile.mkdtemp(prefix=".gen-npy.", dir=out))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _Sinks:
    """Blocks of generated maps to every file of a format, labels taken in step (rows in order)."""

    def __init__(self, npy: Any, g85: Any, labels: Any) -> None:
        self._npy, self._g85, self._labels = npy, g85, labels
        self.rows = 0

    def write(self, block: Any) -> None:
        n = block.shape[0]
        if self._npy is not None:
            self._npy.write(block)
        if self._g85 is not None:
            self._g85.write(block, self._labels[self.rows : self.rows + n])
        self.rows += n


@contextlib.contextmanager
def streamed_writers(out: Path, n: int, labels: Any, fmt: str, *, force: bool):
    """A sink (``.write(block)``) writing ``n`` maps block by block in ``fmt``;
    ``labels`` (all ``n``, known up front) go beside them. Every file is
    written to a temporary path and renamed into place only if all succeed."""
    from ..g85 import open_g85
    from ..generator import DATA_FILE, LABEL_FILE
    from ..io import atomic_path, npy_stream, write_npy
    from ..wafer import MAP_SHAPE

    with contextlib.ExitStack() as stack:
        npy = g85 = None
        if fmt in ("npy", "both"):
            write_npy(stack.enter_context(atomic_path(out / LABEL_FILE, force=force)), labels)
            npy = stack.enter_context(npy_stream(stack.enter_context(atomic_path(out / DATA_FILE, force=force)), (n, *MAP_SHAPE)))
        if fmt in ("g85", "both"):
            g85 = stack.enter_context(open_g85(out / G85_FILE, force=force, lot_id="edge-infer"))
        yield _Sinks(npy, g85, labels)
