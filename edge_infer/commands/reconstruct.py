"""``edge-infer reconstruct``: how well the autoencoder reproduces given maps."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from ..files import atomic_files, check_free_space
from ..generator import WaferGenerator
from ..io import iter_maps, open_input
from ..npy import npy_writer
from ..render import render_grid
from ..wafer import DEFECT, MAP_BYTES, MAP_SHAPE, N_STATES, to_onehot
from ._common import (DataOpt, ForceOpt, ModelOpt, Progress, ProviderOpt, QuietOpt, ThreadsOpt, examples,
                      handle_errors, output_folder, say, tell)

DATA_FILE, PICTURE, MAX_SHOWN = "reconstructed.npy", "reconstructed.png", 8
EPILOG = examples("reconstruct --data ../shared/data/wafer.zip", "reconstruct --data maps.npy --out out/recon")


def metric_sums(onehot: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Squared error of probabilities vs one-hot, dies, dies whose most likely state is the input's, defect dies,
    defect dies reconstructed as defects: float64, so blocks add up exactly."""
    truth, pred = onehot.argmax(axis=-1), probs.argmax(axis=-1)
    defects = truth == DEFECT
    return np.array([np.sum(np.square(probs - onehot), dtype=np.float64), truth.size,
                     np.count_nonzero(pred == truth), np.count_nonzero(defects),
                     np.count_nonzero(pred[defects] == DEFECT)], dtype=np.float64)


@handle_errors
def reconstruct(
    data: DataOpt,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Also write reconstructed.npy and reconstructed.png here.")] = None,
    provider: ProviderOpt = "auto",
    threads: ThreadsOpt = None,
    model: ModelOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Encode then decode maps and report how close the result is (bounded memory, any input size)."""
    source = open_input(data).maps  # headers and sizes checked: no map read yet
    gen = WaferGenerator.load(model, provider=provider, threads=threads)
    if not quiet:
        tell(f"provider: {gen.provider_info.describe()}")
    sums, firsts, recons = np.zeros(5), [], []
    with contextlib.ExitStack() as stack:  # with --out: both files appear only when complete
        if out is not None:
            output_folder(out, "reconstruct")
            check_free_space(out, source.count * MAP_BYTES, f"{source.count} reconstructed maps")
            tmp_data, tmp_picture = stack.enter_context(atomic_files([out / DATA_FILE, out / PICTURE], force=force))
            sink = stack.enter_context(npy_writer(tmp_data, (source.count, *MAP_SHAPE)))
        for start, block in iter_maps(source, progress=Progress("reconstruct", quiet=quiet)):
            probs = gen.reconstruct(block, raw=True)
            sums += metric_sums(block, probs)
            recon = to_onehot(probs.argmax(axis=-1))
            if out is not None:
                sink.write(recon)
            firsts += list(block[:max(0, MAX_SHOWN - start)].copy())
            recons += list(recon[:max(0, MAX_SHOWN - start)])
        if out is not None:
            render_grid([firsts, recons], row_labels=["input", "reconstructed"],
                        col_labels=[f"map {i}" for i in range(len(firsts))],
                        title=f"reconstruction of the first {len(firsts)} maps").save(tmp_picture, format="PNG")
    squared, dies, right, defects, found = sums
    say(f"maps: {source.count} from {data}")
    say(f"mse: {squared / (dies * N_STATES):.6f}")  # over all N×26×26×3 elements
    say(f"die-state accuracy: {100 * right / dies:.2f} %")
    say(f"defect recall: {100 * found / defects:.2f} %" if defects else "defect recall: none (no defect dies)")
    if out is not None:
        say(f"  {out / DATA_FILE}  ({source.count}, 26, 26, 3) float32 one-hot")
        say(f"  {out / PICTURE}")
