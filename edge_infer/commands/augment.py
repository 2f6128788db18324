"""``edge-infer augment``: new maps from every source map, by a recipe (default: the 8 rotations/flips)."""

from __future__ import annotations

from typing import Annotated, Optional

import numpy as np
import typer

from ..augment import DEFAULT_RECIPE, RECIPES, augment_recipe, resolve_recipe
from ..errors import InputError, TooLargeError
from ..files import check_free_space
from ..generator import WaferGenerator
from ..io import iter_maps, open_input, read_all
from ..render import render_grid
from ..sampling import check_seed
from ..wafer import BLOCK_ROWS, MAP_BYTES
from ._common import (DataOpt, ForceOpt, FormatOpt, LabelsOpt, MethodOpt, ModelOpt, ModeOpt, OutlineOpt, OutOpt,
                      Progress, ProviderOpt, QuietOpt, SeedOpt, StrengthOpt, ThreadsOpt, examples, handle_errors,
                      map_writer, output_folder, tell)

EPILOG = examples("augment", "augment --data ../shared/data/wafer.zip --per-source 5 --seed 0",
                  "augment --data my_maps.npy --labels my_labels.npy --recipe balanced --out out/mine")


@handle_errors
def augment(
    data: DataOpt = None,
    labels: LabelsOpt = None,
    per_source: Annotated[Optional[int], typer.Option(
        "--per-source", "-k", help="Noise variants per source map. Alone: the classic recipe "
        "(the course's: -k 5). With --recipe: changes that recipe's count.")] = None,
    recipe: Annotated[Optional[str], typer.Option(
        "--recipe", "-r", help=f"What to make: {', '.join(RECIPES)}; symmetries+X: the 8 "
        f"rotations/flips, then X. Default: {DEFAULT_RECIPE}.")] = None,
    balance: Annotated[Optional[str], typer.Option(
        "--balance", help="Top every class up to this many maps (sources + new): a number, or "
        "'max' (the largest class); rare classes get more variants per source.")] = None,
    symmetries: Annotated[Optional[bool], typer.Option(
        "--symmetries/--no-symmetries", help="Add the 8 rotations/flips of each source (outline kept), and make "
        "noise variants from all 8.")] = None,
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

    Without --data the sources are the bundle's latent bank (the 1281 training maps): -k 5 makes 6405 new maps.
    """
    plan = resolve_recipe(recipe, per_source=per_source, balance=balance, symmetries=symmetries)
    noise = {"--strength": strength, "--method": method, "--noise-mode": noise_mode}
    given = [option for option, value in noise.items() if value is not None]
    if given and not plan.uses_generator:
        raise InputError(f"recipe {plan.name} makes no noise variants, so {', '.join(given)} would do nothing; "
                         "add -k K (noise variants per map) or choose a recipe that generates")
    if labels is not None and data is None:
        raise InputError("--labels needs --data (the maps they label)")
    inp = None if data is None else open_input(data, labels, require_labels=True)  # headers, sizes, labels checked
    gen = WaferGenerator.load(model, provider=provider, threads=threads)
    options = dict(seed=check_seed(seed), strength=strength, method=method, mode=noise_mode,  # one seed, all blocks
                   outline_lock=not no_outline_lock)
    folder = output_folder(out, "augment")
    if not quiet:
        tell(f"provider: {gen.provider_info.describe()}")
    progress = Progress("augment", quiet=quiet)
    classic = not plan.symmetries and plan.balance is None and plan.fill == "noise"
    mix = (method or gen.bundle.noise_defaults.method).lower() == "mix"
    if classic and inp is not None and not mix:  # streamed (mix pairs all sources; recipes rotate, balance them all)
        k, sources_count = plan.per_source, inp.maps.count
        n = k * sources_count
        check_free_space(folder, n * (MAP_BYTES + 8), f"{n} generated maps")
        made_labels = np.repeat(inp.labels, k, axis=0)
        blocks = iter_maps(inp.maps, rows=max(1, BLOCK_ROWS // k), progress=lambda done, _: progress(k * done, n))
        parts = ((start, maps, gen.augment(k, maps=maps, labels=inp.labels[start:start + len(maps)],
                                           source_offset=start, **options))  # rows numbered as in one call
                 for start, maps in blocks)
    else:
        if inp is None:  # the bank, as the decoder draws it (outline locked)
            maps, src_labels = gen.bank_maps(np.arange(gen.bundle.count)), gen.bundle.labels
        else:
            try:
                maps, src_labels = read_all(inp.maps), inp.labels
            except TooLargeError as exc:
                raise TooLargeError(f"{'--method mix' if classic else f'recipe {plan.name}'} reads the input "
                                    f"whole: {exc}") from None
        result = (gen.augment(plan.per_source, progress=progress, **options) if classic and inp is None  # bank latents
                  else augment_recipe(gen, plan, maps, src_labels, progress=progress, **options))
        n, sources_count, made_labels = len(result), int(np.unique(result.sources).size), result.labels
        parts = [(0, maps, result)]
    headline = (f"recipe {plan.name}: made {n} maps from {sources_count} source maps into {folder}, "
                "those of source i on consecutive rows")
    firsts: dict = {}  # the picture's rows: per class, its first source and up to 5 maps made from it
    with map_writer(folder, made_labels, fmt, "augment.png", headline, force=force) as (write, tmp_picture):
        for start, sources, made in parts:
            write(made.maps)
            for c, row in zip(*np.unique(made.labels[:, 0], return_index=True)):
                if int(c) not in firsts:
                    i = int(made.sources[row])
                    firsts[int(c)] = (f"{gen.classes[c]} (source {i})",
                                      [sources[i - start].copy(), *made.maps[made.sources == i][:5]])
        names, rows = zip(*(firsts[c] for c in sorted(firsts)))
        cols = ["source (reconstructed)" if inp is None else "source"]
        cols += [f"made {j}" for j in range(1, max(map(len, rows)))]
        title = f"recipe {plan.name}: the first maps made from one source of each class"
        render_grid(rows, row_labels=names, col_labels=cols, title=title).save(tmp_picture, format="PNG")
