"""``edge-infer convert``: wafer maps between the course layout (``.npy``) and SEMI G85 XML."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

from ..errors import DataFileError, InputError
from ..files import atomic_files, check_targets, write_npy
from ..g85 import looks_like_g85, open_g85
from ..io import DATA_NAME, LABEL_NAME, iter_maps, open_input
from ..npy import npy_writer
from ..wafer import MAP_SHAPE
from ._common import DataOpt, ForceOpt, LabelsOpt, OutOpt, Progress, examples, handle_errors, output_folder, say, tell

G85_FILE = "maps.xml"
EPILOG = examples("convert --data ../shared/data/wafer.zip --to g85 --out g",
                  "convert --data g/maps.xml --to npy --out back",
                  'convert --data fab_lot.xml --bin-map "7=defect,99=boundary" --out lot')


@handle_errors
def convert(
    data: DataOpt,
    to: Annotated[Optional[Literal["g85", "npy"]], typer.Option(
        "--to", "-t", show_default=False, case_sensitive=False, help="g85: maps.xml, one <Map> per wafer. npy: "
        "data.npy + label.npy (the course layout). Default: npy for G85 input, g85 for anything else.")] = None,
    labels: LabelsOpt = None,
    out: OutOpt = None,
    bin_map: Annotated[Optional[str], typer.Option(
        "--bin-map", show_default=False,
        help="Reading G85: CODE=STATE pairs, e.g. '7=defect,99=boundary' (states: boundary, normal, defect). Named "
        "codes take that state; the rest follow BinQuality (Pass normal, Fail defect) and NullBin (boundary).")] = None,
    lot_id: Annotated[Optional[str], typer.Option(
        "--lot-id", show_default=False, help="Writing G85: the LotId, also each SubstrateId's prefix. Default: the "
        "input's name.")] = None,
    force: ForceOpt = False,
) -> None:
    """Convert wafer maps between the course .npy layout and SEMI G85 XML (streamed: any size)."""
    if not data.exists():
        raise DataFileError(f"{data}: no such file or folder")
    source_is_g85 = data.is_file() and data.suffix.lower() != ".npy" and looks_like_g85(data)
    target = to or ("npy" if source_is_g85 else "g85")
    if bin_map is not None and not source_is_g85:  # options that would do nothing are refused, not ignored
        raise InputError(f"--bin-map says what a G85 file's bins mean; {data} is not a G85 file")
    if lot_id is not None and target != "g85":
        raise InputError("--lot-id names the G85 that --to g85 writes; this run writes npy")
    inp = open_input(data, labels, bin_map=bin_map)  # headers, sizes and labels checked: no map read yet
    n, lab = inp.maps.count, inp.labels
    folder = output_folder(out, "convert")
    progress = Progress("convert")
    if target == "npy":
        data_out, label_out = folder / DATA_NAME, folder / LABEL_NAME  # the course layout, which --data reads back
        check_targets([data_out, label_out], force=force)
        with atomic_files([data_out] + ([label_out] if lab is not None else []), force=force) as tmps:
            with npy_writer(tmps[0], (n, *MAP_SHAPE)) as sink:  # G85 as it is: a conversion judges no wafer shape
                for _, block in iter_maps(inp.maps, progress=progress, wafer_rule=not source_is_g85):
                    sink.write(block)
            if lab is not None:
                write_npy(tmps[1], lab)
        say(f"converted {n} map(s) from {data}")
        say(f"  {data_out}  ({n}, 26, 26, 3) float32 one-hot")
        if lab is not None:
            say(f"  {label_out}  ({n}, 1) int64")
        else:
            if force and label_out.exists():  # a label.npy from before would not match these maps
                label_out.unlink()
                tell(f"note: removed the old {label_out}, which did not belong to these maps")
            tell("note: the maps carry no classes, so no label.npy was written (give --labels to add them)")
        return
    with open_g85(folder / G85_FILE, force=force, lot_id=lot_id or data.stem) as writer:
        for start, block in iter_maps(inp.maps, progress=progress):
            writer.write(block, None if lab is None else lab[start:start + len(block)])
    say(f"converted {n} map(s) from {data}")
    say(f"  {folder / G85_FILE}  {n} <Map>s, 26×26, ascii bins"
        + ("" if lab is not None else " (no classes: the input has no labels)"))
