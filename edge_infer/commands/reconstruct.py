"""``edge-infer reconstruct``: how well the autoencoder reproduces given maps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._common import (
    ForceOpt,
    ModelOpt,
    ProviderOpt,
    ThreadsOpt,
    Progress,
    QuietOpt,
    handle_errors,
    png_writer,
    provider_line,
    say,
    tell,
)

DATA_FILE = "reconstructed.npy"
PICTURE = "reconstructed.png"
MAX_SHOWN = 8

EPILOG = """\
Examples:

\b
  edge-infer reconstruct --data ../shared/data/wafer.zip
  edge-infer reconstruct --data maps.npy --out out/recon

MSE is the mean over all N×26×26×3 elements of the decoder's probabilities
against the one-hot input; accuracy compares the most likely die state with
the input's; defect recall is the share of defective dies reconstructed as
defective. With --out, writes OUT/reconstructed.npy (one-hot, like data.npy)
and OUT/reconstructed.png (inputs above, reconstructions below).

Inputs of any size run in bounded memory: maps are read, checked and
reconstructed a block at a time, and the output is written as it comes.
A file whose header does not match its size is refused before reading.
"""


def reconstruction_metrics(onehot: Any, probs: Any) -> dict[str, float]:
    """MSE (probabilities vs one-hot), die-state accuracy and defect recall."""
    from ..blocks import ReconstructionTally

    tally = ReconstructionTally()
    tally.add(onehot, probs)
    return tally.metrics()


@handle_errors
def reconstruct(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            "-d",
            help="Maps: a wafer.zip, a folder with data.npy, a .npy of maps (one-hot or die states), or a SEMI G85 .xml.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", help="Also write reconstructed.npy and reconstructed.png here.", show_default=False),
    ] = None,
    provider: ProviderOpt = "auto",
    threads: ThreadsOpt = None,
    model: ModelOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Encode then decode maps and report how close the result is.

    Maps are read, validated and reconstructed a block at a time, and
    reconstructed.npy is written as they come, so inputs of any size run in
    bounded memory.
    """
    import contextlib

    from ..blocks import reconstruct_blocks
    from ..io import MAP_BYTES, atomic_path, check_free_space, check_start, check_targets, npy_stream, open_input
    from ..render import render_grid
    from ..wafer import MAP_SHAPE

    if out is not None:
        check_targets([out / DATA_FILE, out / PICTURE], force=force)
    inp = open_input(data)  # headers and sizes checked: no map read yet
    source = inp.maps
    check_start(source)  # a broken start fails now, before a model loads
    if out is not None:
        check_free_space(out, source.count * MAP_BYTES, f"{source.count} reconstructed maps")
    from ..generator import WaferGenerator

    gen = WaferGenerator.load(model, provider=provider, threads=threads)
    if not quiet:
        tell(provider_line(gen.provider_info))
    with contextlib.ExitStack() as stack:
        sink = None
        if out is not None:
            tmp_data = stack.enter_context(atomic_path(out / DATA_FILE, force=force))
            tmp_picture = stack.enter_context(atomic_path(out / PICTURE, force=force))
            sink = stack.enter_context(npy_stream(tmp_data, (source.count, *MAP_SHAPE)))
        result = reconstruct_blocks(gen, source, sink=sink, keep=MAX_SHOWN, progress=Progress("reconstruct", quiet=quiet))
        if out is not None:
            k = result.first_inputs.shape[0]
            picture = render_grid(
                [list(result.first_inputs), list(result.first_outputs)],
                row_labels=["input", "reconstructed"],
                col_labels=[f"map {i}" for i in range(k)],
                title=f"reconstruction of the first {k} maps",
            )
            png_writer(picture)(tmp_picture)
    metrics = result.metrics
    say(f"maps: {result.count} from {inp.source}")
    say(f"mse: {metrics['mse']:.6f}")
    say(f"die-state accuracy: {100 * metrics['accuracy']:.2f} %")
    say(f"defect recall: {100 * metrics['defect_recall']:.2f} %")
    if out is not None:
        say(f"  {out / DATA_FILE}  ({result.count}, 26, 26, 3) float32 one-hot")
        say(f"  {out / PICTURE}")
