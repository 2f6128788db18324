"""``edge-infer augment``: new maps from every source map, by a recipe (default: the 8 rotations/flips)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from ..augment import DEFAULT_RECIPE, RECIPES
from ._common import (ForceOpt, FormatOpt, MethodOpt, ModelOpt, ModeOpt, OutlineOpt, OutOpt, Progress, ProviderOpt,
                      QuietOpt, SeedOpt, StrengthOpt, ThreadsOpt, check_format, handle_errors, map_writer,
                      output_folder, say, say_maps, tell, write_maps)

PICTURE = "augment.png"

EPILOG = """\
Examples:

\b
  edge-infer augment
  edge-infer augment --data ../shared/data/wafer.zip --per-source 5 --seed 0
  edge-infer augment --data my_maps.npy --labels my_labels.npy --out out/mine

Writes gen_data.npy (M, 26, 26, 3) float32 one-hot and gen_label.npy (M, 1)
int64, everything made from source i on consecutive rows, in source order
(-k K: the k variants of source i at rows k·i … k·i+k−1), and augment.png:
one row per class, a source and the first maps made from it. With --format
g85 (or both), gen_maps.xml holds the maps as SEMI G85 XML instead (or as
well). --data also reads SEMI G85 XML. Without --out each run writes a new
folder out/augment-N.

-k K alone on --data of any size runs in bounded memory, a block of sources
at a time (--method mix pairs sources across the whole input, and the other
recipes rotate and balance it, so they read the input whole, up to
$EDGE_INFER_MAX_INPUT_MEMORY, default 2G).

\b
Recipes:
  classic                     k noise variants per map (the course's 5)
  symmetries                  the 7 other rotations/flips of each map (the default:
                              the only recipe that measurably helped a classifier)
  balanced                    every class topped up to the largest, by noise variants
  balanced-copies             the same by copies of the sources (no generation)
  symmetries+noise            rotations/flips, and one noise variant of each
  symmetries+balanced-copies  rotations/flips, classes topped up by copies
  symmetries+balanced         rotations/flips, classes topped up by noise variants
"""


def picture(classes, maps, labels, sources, source_maps, title: str, first_word: str):
    """One row per class: its first source, then up to 5 maps made from it."""
    from ..render import render_grid

    shown = int(min(5, np.bincount(sources).max()))
    rows, names = [], []
    for c, name in enumerate(classes):
        hits = np.flatnonzero(labels[:, 0] == c)
        if hits.size:
            i = int(sources[hits[0]])
            rows.append([source_maps(i), *maps[sources == i][:shown]])
            names.append(f"{name} (source {i})")
    return render_grid(rows, row_labels=names, col_labels=[first_word, *[f"made {j + 1}" for j in range(shown)]],
                       title=title)


@handle_errors
def augment(
    data: Annotated[Optional[Path], typer.Option(
        "--data", "-d", show_default=False,
        help="Source maps: a wafer.zip, a folder with data.npy + label.npy, a .npy of maps (with --labels), or a SEMI "
        "G85 .xml whose maps carry their class. Default: the bundle's latent bank (the 1281 training maps).")] = None,
    labels: Annotated[Optional[Path], typer.Option(
        "--labels", "-l", show_default=False, help="A .npy of class indices, one per map in --data.")] = None,
    per_source: Annotated[Optional[int], typer.Option(
        "--per-source", "-k", show_default=False,
        help="Noise variants per source map. Alone: the classic recipe with k (the course's 5 per map: -k 5). "
        "With --recipe: changes that recipe's count.")] = None,
    recipe: Annotated[Optional[str], typer.Option(
        "--recipe", "-r", show_default=False,
        help="What to make (see below): " + ", ".join(RECIPES) + f". Default: {DEFAULT_RECIPE}.")] = None,
    balance: Annotated[Optional[str], typer.Option(
        "--balance", show_default=False, help="Top every class up to this many maps (sources + new): a number, or "
        "'max' (the largest class); rare classes get more variants per source.")] = None,
    symmetries: Annotated[Optional[bool], typer.Option(
        "--symmetries/--no-symmetries", show_default=False,
        help="Add the 8 rotations/flips of each source (outline kept), and make noise variants from all 8.")] = None,
    out: OutOpt = None,
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
    quiet: QuietOpt = False,
) -> None:
    """Make new maps from every source map, by a recipe (default: the 8 rotations/flips) or k noise variants each.

    Without --data the sources are the bundle's latent bank, so no data file
    is needed: -k 5 makes 1281 sources × 5 = 6405 new maps.
    """
    from ..augment import augment_recipe, resolve_recipe
    from ..errors import InputError, TooLargeError
    from ..generator import WaferGenerator, augment_blocks
    from ..io import check_start, open_input, read_all
    from ..sampling import check_count, settings
    from ..files import check_free_space
    from ..wafer import MAP_BYTES

    if per_source is not None:
        check_count(per_source, "--per-source")
    plan = resolve_recipe(recipe, per_source=per_source, balance=balance, symmetries=symmetries)
    given = [o for o, v in (("--strength", strength), ("--method", method), ("--noise-mode", noise_mode)) if v is not None]
    if given and not plan.uses_generator:
        raise InputError(f"recipe {plan.name} makes no noise variants, so {', '.join(given)} would do nothing; "
                         "add -k K (noise variants per map) or choose a recipe that generates")
    fmt = check_format(fmt)
    if labels is not None and data is None:
        raise InputError("--labels needs --data (the maps they label)")
    inp = None
    if data is not None:
        inp = open_input(data, labels, require_labels=True)  # headers, sizes and labels checked: no map read yet
        check_start(inp.maps)  # a broken start fails now, before a model loads
    gen = WaferGenerator.load(model, provider=provider, threads=threads)
    options = dict(seed=seed, strength=strength, method=method, mode=noise_mode, outline_lock=not no_outline_lock)
    settings(gen.bundle.noise_defaults, strength, method, noise_mode, None, False)  # bad values fail before any work
    folder = output_folder(out, "augment")
    if not quiet:
        tell(f"provider: {gen.provider_info.describe()}")
    progress = Progress("augment", quiet=quiet)
    first_word = "source" if inp is not None else "source (reconstructed)"
    classic = not plan.symmetries and plan.balance is None and plan.fill == "noise"
    if classic and inp is not None:  # block by block, bounded memory
        k = plan.per_source
        n = inp.maps.count * k
        check_free_space(folder, n * (MAP_BYTES + 8), f"{n} generated maps")
        out_labels = np.repeat(inp.labels[:, 0], k).reshape(-1, 1)
        with map_writer(folder, n, out_labels, fmt, force=force, extra=(folder / PICTURE,)) as (sink, (tmp_picture,)):
            examples = augment_blocks(gen, k, inp, sink=sink, progress=progress, **options)
            rows = [[src, *made] for _, src, made in (examples[c] for c in sorted(examples))]
            names = [f"{gen.classes[c]} (source {examples[c][0]})" for c in sorted(examples)]
            from ..render import render_grid

            render_grid(rows, row_labels=names, col_labels=[first_word, *[f"made {j + 1}" for j in range(min(k, 5))]],
                        title=f"recipe {plan.name}: the first maps made from one source of each class",
                        ).save(tmp_picture, format="PNG")
        sources_count = inp.maps.count
    elif classic:  # the bank's latents themselves
        result = gen.augment(plan.per_source, progress=progress, **options)
        n, sources_count = len(result), gen.bundle.count
        image = picture(gen.classes, result.maps, result.labels, result.sources, lambda i: gen.bank_maps([i])[0],
                        f"recipe {plan.name}: the first maps made from one source of each class", first_word)
        write_maps(folder, result.maps, result.labels, fmt, image, PICTURE, force=force)
    else:
        if inp is None:  # the bank, as the decoder draws it (outline locked)
            maps, src_labels = gen.bank_maps(np.arange(gen.bundle.count)), gen.bundle.labels
        else:
            try:
                maps = read_all(inp.maps)
            except TooLargeError as exc:
                raise TooLargeError(f"recipe {plan.name} reads the input whole: {exc}") from None
            src_labels = inp.labels
        result = augment_recipe(gen, plan, maps, src_labels, progress=progress, **options)
        n, sources_count = len(result), int(np.unique(result.sources).size)
        image = picture(gen.classes, result.maps, result.labels, result.sources, lambda i: maps[i],
                        f"recipe {plan.name}: the first maps made from one source of each class", first_word)
        write_maps(folder, result.maps, result.labels, fmt, image, PICTURE, force=force)
    say(f"recipe {plan.name}: made {n} maps from {sources_count} source maps into {folder}, "
        "those of source i on consecutive rows")
    say_maps(folder, n, fmt)
    say(f"  {folder / PICTURE}")
