"""``edge-infer augment``: new maps from every source map, by a recipe (default: k noise variants each)."""

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
    QuietOpt,
    check_noise_options,
    handle_errors,
    png_writer,
    provider_line,
    say,
    tell,
    write_all,
)
from ._formats import FormatOpt

PICTURE = "augment.png"
# Names only (no numpy): --help stays instant. tests/edge_infer/test_recipes.py ties them to edge_infer.recipes.
RECIPE_NAMES = ("classic", "symmetries", "balanced", "balanced-copies", "symmetries+noise",
                "symmetries+balanced-copies", "symmetries+balanced")
DEFAULT_RECIPE_NAME = "symmetries"

EPILOG = """\
Examples:

\b
  edge-infer augment
  edge-infer augment --data ../shared/data/wafer.zip --per-source 5 --seed 0
  edge-infer augment --data my_maps.npy --labels my_labels.npy --out out/mine

Writes OUT/gen_data.npy (M, 26, 26, 3) float32 one-hot and OUT/gen_label.npy
(M, 1) int64, everything made from source i on consecutive rows, in source
order (-k K: the k variants of source i at rows k·i … k·i+k−1), and
OUT/augment.png: one row per class, a source and its first generated maps.
With --format g85 (or both), OUT/gen_maps.xml holds the maps as SEMI G85 XML
instead (or as well). --data also reads SEMI G85 XML (maps.xml).

--data of any size runs in bounded memory, a block of sources at a time,
with the same maps as one in-memory call (--method mix pairs sources across
the whole input, and recipes other than classic rotate and balance it, so
they read the input whole, up to $EDGE_INFER_MAX_INPUT_MEMORY, default 2G).

\b
Recipes (docs/evaluation.md measures each against its own control):
  classic                     k noise variants per map (the course's 5)
  symmetries                  the 7 other rotations/flips of each map
  balanced                    every class topped up to the largest, by noise variants
  balanced-copies             the same by copies of the sources (no generation)
  symmetries+noise            rotations/flips, and one noise variant of each
  symmetries+balanced-copies  rotations/flips, classes topped up by copies
  symmetries+balanced         rotations/flips, classes topped up by noise variants
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
    per_source: Annotated[
        Optional[int],
        typer.Option("--per-source", "-k", help="Noise variants per source map. Alone: the classic recipe with k "
                     "(the course's 5 per map: -k 5). With --recipe: changes that recipe's count.", show_default=False),
    ] = None,
    recipe: Annotated[
        Optional[str],
        typer.Option("--recipe", "-r", help="What to make (see below): " + ", ".join(RECIPE_NAMES)
                     + f". Default: {DEFAULT_RECIPE_NAME}.", show_default=False),
    ] = None,
    balance: Annotated[
        Optional[str],
        typer.Option("--balance", help="Top every class up to this many maps (sources + new): a number, or 'max' "
                     "(the largest class); rare classes get more variants per source.", show_default=False),
    ] = None,
    symmetries: Annotated[
        Optional[bool],
        typer.Option("--symmetries/--no-symmetries", help="Add the 8 rotations/flips of each source (outline kept), "
                     "and make noise variants from all 8.", show_default=False),
    ] = None,
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
    quiet: QuietOpt = False,
) -> None:
    """Make new maps from every source map, by a recipe (default below) or k noise variants each.

    Without --data the sources are the bundle's latent bank, so no data file
    is needed: -k 5 makes 1281 sources × 5 = 6405 new maps.
    """
    import contextlib

    import numpy as np

    from ..errors import InputError
    from ..generator import WaferGenerator
    from ..io import MAP_BYTES, atomic_path, check_free_space, check_start, check_targets, open_input
    from ..plan import check_count
    from ..recipes import resolve_recipe
    from ..render import render_grid
    from . import _formats

    if per_source is not None:
        check_count(per_source, "--per-source")
    check_noise_options(strength, method, noise_mode)
    plan = resolve_recipe(recipe, per_source=per_source, balance=balance, symmetries=symmetries)
    given = [name for name, value in (("--strength", strength), ("--method", method), ("--noise-mode", noise_mode))
             if value is not None]
    if given and not plan.uses_generator:
        raise InputError(f"recipe {plan.name} makes no noise variants, so {', '.join(given)} would do nothing; "
                         "add -k K (noise variants per map) or choose a recipe that generates")
    fmt = _formats.check_format(fmt)
    if labels is not None and data is None:
        raise InputError("--labels needs --data (the maps they label)")
    inp = None
    if data is not None:
        inp = open_input(data, labels, require_labels=True)  # headers, sizes and labels checked: no map read yet
        check_start(inp.maps)  # a broken start fails now, before a model loads
    gen = WaferGenerator.load(model, provider=provider, threads=threads)
    check_targets([*_formats.targets(out, fmt), out / PICTURE], force=force)
    if not quiet:
        tell(provider_line(gen.provider_info))
    options = dict(seed=seed, strength=strength, method=method, mode=noise_mode, outline_lock=not no_outline_lock)
    if plan.symmetries or plan.balance is not None or plan.fill != "noise":
        _augment_recipe(gen, plan, inp, out, fmt, force, options)
        return
    k = per_source = plan.per_source
    shown = min(k, 5)

    # The figure: one row per class present, its first source and that source's variants.
    def picture_of(examples: dict) -> "object":
        rows, row_labels = [], []
        for c, name in enumerate(gen.classes):
            if c in examples:
                i, source, variants = examples[c]
                rows.append([source, *variants])
                row_labels.append(f"{name} (source {i})")
        src_word = "source" if inp is not None else "source (reconstructed)"
        return render_grid(
            rows,
            row_labels=row_labels,
            col_labels=[src_word, *[f"generated {j + 1}" for j in range(shown)]],
            title=f"{shown} generated samples for each class",
        )

    if inp is None:
        # The bank's 1281 sources: small, made in memory.
        result = gen.augment(per_source, progress=Progress("augment", quiet=quiet), **options)
        n = len(result)
        examples = {}
        source_labels = result.labels[::k, 0]
        for c in range(len(gen.classes)):
            hits = np.flatnonzero(source_labels == c)
            if hits.size:
                i = int(hits[0])
                examples[c] = (i, gen.bank_maps([i])[0], result.maps[k * i : k * i + shown])
        writers = _formats.writers(out, result.maps, result.labels, fmt)
        write_all({**writers, out / PICTURE: png_writer(picture_of(examples))}, force=force)
    else:
        from ..blocks import augment_blocks

        # Streamed: each block of sources is augmented and written before the next is read.
        n = inp.maps.count * k
        check_free_space(out, n * (MAP_BYTES + 8), f"{n} generated maps")
        out_labels = np.repeat(inp.labels[:, 0], k).reshape(-1, 1)
        with contextlib.ExitStack() as stack:
            sink = stack.enter_context(_formats.streamed_writers(out, n, out_labels, fmt, force=force))
            tmp_picture = stack.enter_context(atomic_path(out / PICTURE, force=force))
            made = augment_blocks(gen, k, inp, sink=sink, shown=shown, progress=Progress("augment", quiet=quiet), **options)
            png_writer(picture_of(made.examples))(tmp_picture)
    say(f"generated {n} maps: {k} for each of {n // k} source maps")
    _formats.say_maps(out, n, fmt)
    say(f"  {out / PICTURE}")


def _augment_recipe(gen, plan, inp, out: Path, fmt: str, force: bool, options: dict) -> None:
    """A recipe that rotates, balances or copies: made in memory from the whole input."""
    import numpy as np

    from ..errors import TooLargeError
    from ..io import read_all
    from ..recipes import augment_recipe
    from ..render import render_grid
    from . import _formats

    if inp is None:  # the bank: its maps as the decoder draws them (outline locked)
        maps, labels = gen.bank_maps(np.arange(gen.bundle.count)), gen.bundle.labels
    else:
        try:
            maps = read_all(inp.maps)
        except TooLargeError as exc:
            raise TooLargeError(f"recipe {plan.name} rotates and balances the whole input, so it reads it whole: {exc}") from None
        labels = inp.labels
    result = augment_recipe(gen, plan, maps, labels, progress=Progress("augment"), **options)
    sources = np.asarray(result.sources)
    shown = int(min(5, np.bincount(sources).max()))
    rows, row_labels = [], []
    for c, name in enumerate(gen.classes):
        hits = np.flatnonzero(result.labels[:, 0] == c)
        if hits.size:
            i = int(sources[hits[0]])
            rows.append([maps[i], *result.maps[sources == i][:shown]])  # a source with fewer maps leaves blanks
            row_labels.append(f"{name} (source {i})")
    picture = render_grid(
        rows, row_labels=row_labels,
        col_labels=["source" if inp is not None else "source (reconstructed)", *[f"made {j + 1}" for j in range(shown)]],
        title=f"recipe {plan.name}: the first maps made from one source of each class",
    )
    writers = _formats.writers(out, result.maps, result.labels, fmt)
    write_all({**writers, out / PICTURE: png_writer(picture)}, force=force)
    n = len(result)
    say(f"recipe {plan.name}: made {n} maps from {int(np.unique(sources).size)} source maps, "
        "those of source i on consecutive rows")
    _formats.say_maps(out, n, fmt)
    say(f"  {out / PICTURE}")
