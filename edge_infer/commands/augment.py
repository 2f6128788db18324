"""``edge-infer augment``: k new maps for every source map (the classic augmentation task)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import (
    ForceOpt,
    MethodOpt,
    ModelOpt,
    ModeOpt,
    OutlineOpt,
    OutOpt,
    ProviderOpt,
    SeedOpt,
    StrengthOpt,
    ThreadsOpt,
    Progress,
    check_count,
    check_noise_options,
    handle_errors,
    provider_line,
    png_writer,
    say,
    tell,
    write_all,
)
from ._formats import FormatOpt

PICTURE = "augment.png"

EPILOG = """\
Examples:

\b
  edge-infer augment
  edge-infer augment --data ../shared/data/wafer.zip --per-source 5 --seed 0
  edge-infer augment --data my_maps.npy --labels my_labels.npy --out out/mine

Writes OUT/gen_data.npy (N·k, 26, 26, 3) float32 one-hot and OUT/gen_label.npy
(N·k, 1) int64, the k variants of source i at rows k·i … k·i+k−1, and
OUT/augment.png: one row per class, a source and its first generated variants.
With --format g85 (or both), OUT/gen_maps.xml holds the maps as SEMI G85 XML
instead (or as well). --data also reads SEMI G85 XML (maps.xml).
"""


@handle_errors
def augment(
    data: Annotated[
        Optional[Path],
        typer.Option(
            "--data",
            "-d",
            help="Source maps: a wafer.zip, a folder with data.npy + label.npy, a .npy of maps (with --labels), "
            "or a SEMI G85 .xml whose maps carry their class. "
            "Default: the bundle's latent bank (the 1281 training maps).",
            show_default=False,
        ),
    ] = None,
    labels: Annotated[
        Optional[Path],
        typer.Option("--labels", "-l", help="A .npy of class indices, one per map in --data.", show_default=False),
    ] = None,
    per_source: Annotated[int, typer.Option("--per-source", "-k", help="New maps per source map.")] = 5,
    out: OutOpt = Path("out"),
    seed: SeedOpt = None,
    strength: StrengthOpt = None,
    method: MethodOpt = None,
    noise_mode: ModeOpt = None,
    no_outline_lock: OutlineOpt = False,
    provider: ProviderOpt = "auto",
    threads: ThreadsOpt = None,
    model: ModelOpt = None,
    fmt: FormatOpt = "npy",
    force: ForceOpt = False,
) -> None:
    """Make k new maps for every source map (k = --per-source).

    Without --data the sources are the bundle's latent bank, so no data file
    is needed: 1281 sources × 5 = 6405 new maps.
    """
    import numpy as np

    from ..errors import InputError
    from ..generator import WaferGenerator
    from ..io import check_targets, load_dataset
    from ..render import render_grid
    from . import _formats

    check_count(per_source, "--per-source")
    check_noise_options(strength, method, noise_mode)
    fmt = _formats.check_format(fmt)
    if labels is not None and data is None:
        raise InputError("--labels needs --data (the maps they label)")
    maps = lab = None
    if data is not None:
        dataset = load_dataset(data, labels, require_labels=True)
        maps, lab = dataset.maps, dataset.labels
    gen = WaferGenerator.load(model, provider=provider, threads=threads)
    check_targets([*_formats.targets(out, fmt), out / PICTURE], force=force)
    tell(provider_line(gen.provider_info))
    result = gen.augment(
        per_source,
        maps=maps,
        labels=lab,
        seed=seed,
        strength=strength,
        method=method,
        mode=noise_mode,
        outline_lock=not no_outline_lock,
        progress=Progress("augment"),
    )

    # The figure: one row per class present, its first source and that source's variants.
    k = per_source
    shown = min(k, 5)
    source_labels = result.labels[::k, 0]
    rows, row_labels = [], []
    for c, name in enumerate(gen.classes):
        hits = np.flatnonzero(source_labels == c)
        if hits.size == 0:
            continue
        i = int(hits[0])
        source = maps[i] if maps is not None else gen.bank_maps([i])[0]
        rows.append([source, *result.maps[k * i : k * i + shown]])
        row_labels.append(f"{name} (source {i})")
    src_word = "source" if maps is not None else "source (reconstructed)"
    picture = render_grid(
        rows,
        row_labels=row_labels,
        col_labels=[src_word, *[f"generated {j + 1}" for j in range(shown)]],
        title=f"{shown} generated samples for each class",
    )
    write_all({**_formats.writers(out, result.maps, result.labels, fmt), out / PICTURE: png_writer(picture)}, force=force)
    n = len(result)
    say(f"generated {n} maps: {k} for each of {n // k} source maps")
    _formats.say_maps(out, n, fmt)
    say(f"  {out / PICTURE}")
