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
    handle_errors,
    npy_writer,
    png_writer,
    provider_line,
    say,
    tell,
    write_all,
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
"""


def reconstruction_metrics(onehot: Any, probs: Any) -> dict[str, float]:
    """MSE (probabilities vs one-hot), die-state accuracy and defect recall."""
    import numpy as np

    from ..wafer import DEFECT

    onehot = np.asarray(onehot, dtype=np.float32)
    probs = np.asarray(probs, dtype=np.float32)
    truth = onehot.argmax(axis=-1)
    pred = probs.argmax(axis=-1)
    defects = truth == DEFECT
    return {
        "mse": float(np.mean((probs - onehot) ** 2, dtype=np.float64)),
        "accuracy": float(np.mean(pred == truth)),
        "defect_recall": float((pred[defects] == DEFECT).mean()) if defects.any() else float("nan"),
    }


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
) -> None:
    """Encode then decode maps and report how close the result is."""
    from ..io import check_targets, load_dataset
    from ..render import render_grid
    from ..wafer import to_onehot

    if out is not None:
        check_targets([out / DATA_FILE, out / PICTURE], force=force)
    dataset = load_dataset(data)
    from ..generator import WaferGenerator

    gen = WaferGenerator.load(model, provider=provider, threads=threads)
    tell(provider_line(gen.provider_info))
    probs = gen.reconstruct(dataset.maps, raw=True)
    metrics = reconstruction_metrics(dataset.maps, probs)
    say(f"maps: {dataset.maps.shape[0]} from {dataset.source}")
    say(f"mse: {metrics['mse']:.6f}")
    say(f"die-state accuracy: {100 * metrics['accuracy']:.2f} %")
    say(f"defect recall: {100 * metrics['defect_recall']:.2f} %")
    if out is not None:
        recon = to_onehot(probs.argmax(axis=-1))
        k = min(MAX_SHOWN, recon.shape[0])
        picture = render_grid(
            [list(dataset.maps[:k]), list(recon[:k])],
            row_labels=["input", "reconstructed"],
            col_labels=[f"map {i}" for i in range(k)],
            title=f"reconstruction of the first {k} maps",
        )
        write_all({out / DATA_FILE: npy_writer(recon), out / PICTURE: png_writer(picture)}, force=force)
        say(f"  {out / DATA_FILE}  {recon.shape} float32 one-hot")
        say(f"  {out / PICTURE}")
