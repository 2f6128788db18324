"""``edge-infer convert``: wafer maps between the course layout (``.npy``) and SEMI G85 XML."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Iterator, Optional

import typer

from ._common import ForceOpt, OutOpt, Progress, handle_errors, say, tell

if TYPE_CHECKING:
    from ..g85 import G85Source

G85_FILE = "maps.xml"

EPILOG = """\
Examples:

\b
  edge-infer convert --data ../shared/data/wafer.zip --to g85 --out g
  edge-infer convert --data g/maps.xml --to npy --out back
  edge-infer convert --data fab_lot.xml --bin-map "7=defect,99=boundary" --out lot
  edge-infer convert --data maps.npy --labels labels.npy --to g85 --bin-type decimal

--to npy writes OUT/data.npy (N, 26, 26, 3) float32 one-hot and, when the maps
carry classes, OUT/label.npy (N, 1) int64: the course layout. --to g85 writes
OUT/maps.xml, one <Maps> document with one <Map> per wafer: off-wafer dies
as the NullBin, normal dies a Pass bin, defects a Fail bin, the class in
ei:ClassIndex. Reading G85: Pass bins are normal, Fail bins defects, the
NullBin off-wafer, unless --bin-map says otherwise; maps of any size are
resized to 26×26 (nearest neighbour). Format details: docs/g85.md.
"""


@contextlib.contextmanager
def _no_empty_folder(out: Path) -> Iterator[None]:
    """Remove ``out`` again if this run created it and fails before filling it."""
    existed = out.exists()
    try:
        yield
    except BaseException:
        if not existed:
            with contextlib.suppress(OSError):
                out.rmdir()  # only ever removes an empty folder
        raise


@handle_errors
def convert(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            "-d",
            help="Maps: a SEMI G85 .xml, a wafer.zip, a folder with data.npy (+ label.npy), or a .npy of maps (with --labels).",
            show_default=False,
        ),
    ],
    to: Annotated[
        Optional[str],
        typer.Option("--to", "-t", help="g85 or npy. Default: npy for G85 input, g85 for anything else.", show_default=False),
    ] = None,
    labels: Annotated[
        Optional[Path],
        typer.Option("--labels", "-l", help="A .npy of class indices, one per map in --data (overrides labels in the input).", show_default=False),
    ] = None,
    out: OutOpt = Path("out"),
    bin_map: Annotated[
        Optional[str],
        typer.Option(
            "--bin-map",
            help="Reading G85: CODE=STATE pairs, e.g. '7=defect,99=boundary' (states: boundary, normal, defect). "
            "Named codes take that state; the rest follow BinQuality (Pass normal, Fail defect) and NullBin (boundary).",
            show_default=False,
        ),
    ] = None,
    bin_type: Annotated[
        str, typer.Option("--bin-type", help="Writing G85: ascii, decimal, hex or integer2.")
    ] = "ascii",
    null_bin: Annotated[
        Optional[str], typer.Option("--null-bin", help="Writing G85: code of off-wafer dies. Default: . (ascii), 000, 00, 0000.", show_default=False)
    ] = None,
    pass_bin: Annotated[
        Optional[str], typer.Option("--pass-bin", help="Writing G85: code of normal dies. Default: 1 (ascii), 001, 01, 0001.", show_default=False)
    ] = None,
    fail_bin: Annotated[
        Optional[str], typer.Option("--fail-bin", help="Writing G85: code of defective dies. Default: X (ascii), 002, 02, 0002.", show_default=False)
    ] = None,
    lot_id: Annotated[
        Optional[str], typer.Option("--lot-id", help="Writing G85: the LotId, also the prefix of each SubstrateId. Default: the input's name.", show_default=False)
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Convert wafer maps between the course .npy layout and SEMI G85 XML."""
    from ..errors import DataFileError, InputError
    from ..g85 import check_bins, looks_like_g85, parse_bin_map

    if not data.exists():
        raise DataFileError(f"{data}: no such file or folder")
    source_is_g85 = data.is_file() and data.suffix.lower() != ".npy" and looks_like_g85(data)
    target = (to or ("npy" if source_is_g85 else "g85")).strip().lower()
    if target not in ("g85", "npy"):
        raise InputError(f"--to must be g85 or npy, not {to!r}")
    # Options that would do nothing are refused rather than silently ignored.
    if bin_map is not None and not source_is_g85:
        raise InputError(f"--bin-map says what a G85 file's bins mean; {data} is not a G85 file")
    writing = {"--bin-type": bin_type != "ascii", "--null-bin": null_bin, "--pass-bin": pass_bin, "--fail-bin": fail_bin, "--lot-id": lot_id}
    unused = [opt for opt, given in writing.items() if given and target != "g85"]
    if unused:
        raise InputError(f"{', '.join(unused)} shape(s) the G85 that --to g85 writes; this run writes npy")
    parse_bin_map(bin_map)  # a bad mapping fails before anything is read
    if target == "g85":
        check_bins(bin_type, null_bin, pass_bin, fail_bin)  # before anything is read
    with _no_empty_folder(out):
        if target == "npy":
            _to_npy(data, labels, out, bin_map, source_is_g85, force)
        else:
            _to_g85(data, labels, out, bin_map, source_is_g85, force, bin_type, null_bin, pass_bin, fail_bin, lot_id)


def _to_npy(data: Path, labels: Optional[Path], out: Path, bin_map: Optional[str], source_is_g85: bool, force: bool) -> None:
    import numpy as np

    from ..g85 import G85Source
    from ..io import DATA_NAME, LABEL_NAME, atomic_path, check_targets, iter_maps, load_npy, npy_stream, open_input, write_npy
    from ..wafer import MAP_SHAPE, as_labels

    data_out, label_out = out / DATA_NAME, out / LABEL_NAME  # the course layout, which --data reads back
    check_targets([data_out, label_out], force=force)
    # Streamed: a block of maps in memory, validated and written before the next is read.
    if source_is_g85:  # stand-in for the rewritten convert: g85.g85_to_npy is gone
        src = G85Source(data, bin_map=bin_map)  # one validating pass: count and labels
        n, lab = src.count, src.labels
        if labels is not None:
            lab = as_labels(load_npy(labels), n, name=f"labels for {data}")
        blocks = _g85_blocks(src)
    else:
        opened = open_input(data, labels)
        n, lab = opened.maps.count, opened.labels
        blocks = (block for _, block in iter_maps(opened.maps, progress=Progress("convert")))
    with contextlib.ExitStack() as stack:
        if lab is not None:
            write_npy(stack.enter_context(atomic_path(label_out, force=force)), np.asarray(lab, dtype=np.int64))
        tmp = stack.enter_context(atomic_path(data_out, force=force))
        with npy_stream(tmp, (n, *MAP_SHAPE)) as sink:
            for block in blocks:
                sink.write(block)
    say(f"converted {n} map(s) from {data}")
    say(f"  {data_out}  ({n}, 26, 26, 3) float32 one-hot")
    if lab is not None:
        say(f"  {label_out}  ({n}, 1) int64")
    else:
        if label_out.exists():  # only with --force: a label.npy from before would not match these maps
            label_out.unlink()
            tell(f"note: removed the old {label_out}, which did not belong to these maps")
        tell("note: the maps carry no classes, so no label.npy was written (give --labels to add them)")


def _g85_blocks(src: "G85Source") -> "Iterator[Any]":
    """One-hot 26×26 blocks of a G85 file as read (a conversion: no wafer rule), one resize note."""
    import warnings

    import numpy as np

    from ..g85 import G85Error
    from ..wafer import MAP_SIZE, ResizeNote, resize_states, to_onehot

    progress, done, sizes = Progress("convert"), 0, set()
    for block in src.raw_blocks(1024):
        for m in block:
            if min(m.shape) < 2:
                raise G85Error(f"{src.where}: a map is {m.shape[0]}×{m.shape[1]} dies; too small to be a wafer")
        sizes.update(m.shape for m in block if m.shape != (MAP_SIZE, MAP_SIZE))
        yield to_onehot(np.stack([m if m.shape == (MAP_SIZE, MAP_SIZE) else resize_states(m) for m in block]))
        done += len(block)
        progress(done, src.count)
    if sizes:
        found = ", ".join(f"{h}×{w}" for h, w in sorted(sizes))
        warnings.warn(f"resized the {found} map(s) to {MAP_SIZE}×{MAP_SIZE} dies (nearest neighbour on die states)", ResizeNote)


def _to_g85(
    data: Path,
    labels: Optional[Path],
    out: Path,
    bin_map: Optional[str],
    source_is_g85: bool,
    force: bool,
    bin_type: str,
    null_bin: Optional[str],
    pass_bin: Optional[str],
    fail_bin: Optional[str],
    lot_id: Optional[str],
) -> None:
    from ..g85 import G85Source, open_g85
    from ..io import check_targets, iter_maps, load_npy, open_input
    from ..wafer import as_labels

    target = out / G85_FILE
    check_targets([target], force=force)
    options = dict(bin_type=bin_type, null_bin=null_bin, pass_bin=pass_bin, fail_bin=fail_bin, lot_id=lot_id or data.stem)
    if source_is_g85:  # stand-in for the rewritten convert: g85.load_g85_dataset is gone
        maps = G85Source(data, bin_map=bin_map)
        n, lab = maps.count, maps.labels
        if labels is not None:
            lab = as_labels(load_npy(labels), n, name=f"labels for {data}")
    else:
        inp = open_input(data, labels)
        maps, n, lab = inp.maps, inp.maps.count, inp.labels
    # Streamed: a block of maps in memory, validated and written before the next is read.
    with open_g85(target, force=force, **options) as w:
        for start, block in iter_maps(maps, progress=Progress("convert")):
            w.write(block, None if lab is None else lab[start : start + block.shape[0]])
    say(f"converted {n} map(s) from {data}")
    say(f"  {target}  {n} <Map>s, 26×26, {bin_type} bins" + ("" if lab is not None else " (no classes: the input has no labels)"))
