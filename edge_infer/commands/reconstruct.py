"""``edge-infer reconstruct``: how well the autoencoder reproduces given maps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import (ForceOpt, ModelOpt, Progress, ProviderOpt, QuietOpt, ThreadsOpt, handle_errors, output_folder,
                      say, tell)

DATA_FILE, PICTURE, MAX_SHOWN = "reconstructed.npy", "reconstructed.png", 8

EPILOG = """\
Examples:

\b
  edge-infer reconstruct --data ../shared/data/wafer.zip
  edge-infer reconstruct --data maps.npy --out out/recon

MSE is the mean over all N×26×26×3 elements of the decoder's probabilities
against the one-hot input; accuracy compares the most likely die state with
the input's; defect recall is the share of defective dies reconstructed as
defective. reconstructed.png shows the first inputs above their reconstructions.
"""


@handle_errors
def reconstruct(
    data: Annotated[Path, typer.Option(
        "--data", "-d", show_default=False,
        help="Maps: a wafer.zip, a folder with data.npy, a .npy of maps (one-hot or die states), or a SEMI G85 .xml.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", show_default=False, help="Also write reconstructed.npy and reconstructed.png here.")] = None,
    provider: ProviderOpt = "auto",
    threads: ThreadsOpt = None,
    model: ModelOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Encode then decode maps and report how close the result is (bounded memory, any input size)."""
    import numpy as np

    from ..files import atomic_files, check_free_space, check_targets
    from ..generator import WaferGenerator
    from ..streaming import reconstruct_blocks
    from ..io import check_start, open_input
    from ..npy import npy_writer
    from ..render import render_grid
    from ..wafer import MAP_BYTES, MAP_SHAPE

    if out is not None:
        check_targets([out / DATA_FILE, out / PICTURE], force=force)
    source = open_input(data).maps  # headers and sizes checked: no map read yet
    check_start(source)  # a broken start fails now, before a model loads
    gen = WaferGenerator.load(model, provider=provider, threads=threads)
    if not quiet:
        tell(f"provider: {gen.provider_info.describe()}")
    progress = Progress("reconstruct", quiet=quiet)
    if out is None:
        result = reconstruct_blocks(gen, source, progress=progress)
    else:
        folder = output_folder(out, "reconstruct")
        check_free_space(folder, source.count * MAP_BYTES, f"{source.count} reconstructed maps")
        with atomic_files([folder / DATA_FILE, folder / PICTURE], force=force) as (tmp_data, tmp_picture):
            with npy_writer(tmp_data, (source.count, *MAP_SHAPE)) as sink:
                result = reconstruct_blocks(gen, source, sink=sink, keep=MAX_SHOWN, progress=progress)
            firsts, recons = np.concatenate(result.first_inputs), np.concatenate(result.first_outputs)
            render_grid([list(firsts), list(recons)], row_labels=["input", "reconstructed"],
                        col_labels=[f"map {i}" for i in range(len(firsts))],
                        title=f"reconstruction of the first {len(firsts)} maps").save(tmp_picture, format="PNG")
    m = result.metrics
    say(f"maps: {result.count} from {data}")
    say(f"mse: {m['mse']:.6f}")
    say(f"die-state accuracy: {100 * m['accuracy']:.2f} %")
    say(f"defect recall: {100 * m['defect_recall']:.2f} %")
    if out is not None:
        say(f"  {out / DATA_FILE}  ({result.count}, 26, 26, 3) float32 one-hot")
        say(f"  {out / PICTURE}")
