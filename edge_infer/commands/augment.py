"""``edge-infer augment``: new maps from every source map, by a recipe (default: the 8 rotations/flips)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from ..augment import DEFAULT_RECIPE, RECIPES
from ._common import (ForceOpt, FormatOpt, MethodOpt, ModelOpt, ModeOpt, OutlineOpt, OutOpt, Progress, ProviderOpt,
                      QuietOpt, SeedOpt, StrengthOpt, ThreadsOpt, check_format, handle_errors, map_writer,
                      output_folder, say, say_maps, tell)

PICTURE = "augment.png"

EPILOG = """\
Examples:

\b
  edge-infer augment
  edge-infer augment --data ../shared/data/wafer.zip --per-source 5 --seed 0
  edge-infer augment --data my_maps.npy --labels my_labels.npy --out out/mine

The maps made from source i are on consecutive rows, in source order (-k K:
rows k·i … k·i+k−1); augment.png shows, per class, a source and the first maps
made from it. -k K alone streams --data of any size; the other recipes (and
--method mix) read it whole, up to $EDGE_INFER_MAX_INPUT_MEMORY (default 2G).

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


def first_examples(result, source_map, shown: int) -> dict:
    """Per class of ``result``, its first source: ``(source row, source map, the first maps made from it)``."""
    examples = {}
    for c in np.unique(result.labels[:, 0]):
        i = int(result.sources[np.flatnonzero(result.labels[:, 0] == c)[0]])
        examples[int(c)] = (i, source_map(i), result.maps[result.sources == i][:shown])
    return examples


def picture(classes, examples: dict, shown: int, recipe: str, first_word: str):
    """One row per class: its first source, then up to ``shown`` maps made from it."""
    from ..render import render_grid

    rows = [[src, *made] for _, src, made in (examples[c] for c in sorted(examples))]
    names = [f"{classes[c]} (source {examples[c][0]})" for c in sorted(examples)]
    return render_grid(rows, row_labels=names, col_labels=[first_word, *[f"made {j + 1}" for j in range(shown)]],
                       title=f"recipe {recipe}: the first maps made from one source of each class")


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
    from ..files import check_free_space
    from ..generator import WaferGenerator
    from ..streaming import augment_blocks
    from ..io import check_start, open_input, read_all
    from ..sampling import check_count, settings
    from ..wafer import MAP_BYTES

    if per_source is not None:
        check_count(per_source, "--per-source")
    plan = resolve_recipe(recipe, per_source=per_source, balance=balance, symmetries=symmetries)
    noise_options = {"--strength": strength, "--method": method, "--noise-mode": noise_mode}
    given = [option for option, value in noise_options.items() if value is not None]
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

    if classic and inp is not None:
        # The one recipe that can stream: k variants of each source, a block of sources at a time (bounded memory).
        k = plan.per_source
        n, sources_count = inp.maps.count * k, inp.maps.count
        check_free_space(folder, n * (MAP_BYTES + 8), f"{n} generated maps")
        with map_writer(folder, np.repeat(inp.labels, k, axis=0), fmt, PICTURE, force=force) as (sink, tmp_picture):
            examples = augment_blocks(gen, k, inp, sink=sink, progress=progress, **options)
            picture(gen.classes, examples, min(k, 5), plan.name, first_word).save(tmp_picture, format="PNG")
    else:
        # Everything else is made in memory: from the bank's latents themselves (classic), or from maps
        # (other recipes rotate and balance the whole set, so they read the input whole).
        if classic:
            result = gen.augment(plan.per_source, progress=progress, **options)
            sources_count = gen.bundle.count

            def source_map(i):
                return gen.bank_maps([i])[0]
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
            sources_count = int(np.unique(result.sources).size)

            def source_map(i):
                return maps[i]
        n = len(result)
        shown = int(min(5, np.bincount(result.sources).max()))
        examples = first_examples(result, source_map, shown)
        with map_writer(folder, result.labels, fmt, PICTURE, force=force) as (sink, tmp_picture):
            sink.write(result.maps)
            picture(gen.classes, examples, shown, plan.name, first_word).save(tmp_picture, format="PNG")
    say(f"recipe {plan.name}: made {n} maps from {sources_count} source maps into {folder}, "
        "those of source i on consecutive rows")
    say_maps(folder, n, fmt, PICTURE)
