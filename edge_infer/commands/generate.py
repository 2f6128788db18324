"""``edge-infer generate``: new maps of one class, with a picture beside their sources."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..files import check_free_space
from ..generator import WaferGenerator
from ..render import render_grid
from ..wafer import CLASS_NAMES, MAP_BYTES
from ._common import (RUNS_ROOT, ForceOpt, FormatOpt, MethodOpt, ModelOpt, ModeOpt, OutlineOpt, OutOpt, Progress,
                      ProviderOpt, QuietOpt, SeedOpt, StrengthOpt, ThreadsOpt, examples, handle_errors, map_writer,
                      output_folder, tell)

MAX_SHOWN, WRAP = 64, 8  # maps drawn in the picture at most, in rows of WRAP
EPILOG = examples("generate --class None -n 5", "generate --class scratch -n 200 --seed 7 --out out/scratch",
                  "generate --source-index 17 -n 8 --method noise --strength 0.5")


@handle_errors
def generate(
    cls: Annotated[Optional[str], typer.Option("--class", "-c", help="Class name (any case) or index: "
        + ", ".join(f"{i} {c}" for i, c in enumerate(CLASS_NAMES)) + ". Optional with --source-index.")] = None,
    n: Annotated[int, typer.Option("-n", "--count", help="How many maps to generate.")] = 5,
    out: OutOpt = None,
    seed: SeedOpt = None,
    source_index: Annotated[Optional[int], typer.Option(
        "--source-index", help="Every map from one source: its row in the latent bank (training data order).")] = None,
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
    """Generate new wafer maps of one defect class.

    Each map is a source map's latent code from the bundle's latent bank plus Gaussian noise, decoded by the
    bundle's generator graph; the source's wafer outline is kept exactly unless --no-outline-lock.
    """
    gen = WaferGenerator.load(model, provider=provider, threads=threads)
    check_free_space(out or RUNS_ROOT, n * (MAP_BYTES + 8), f"{n} maps")  # before n rows are planned
    plan, blocks = gen.generate_blocks(cls, n, progress=Progress("generate", quiet=quiet), seed=seed,
                                       source_index=source_index, strength=strength, method=method, mode=noise_mode,
                                       outline_lock=not no_outline_lock)
    folder = output_folder(out, "generate")
    if not quiet:
        tell(f"provider: {gen.provider_info.describe()}")
    class_name = gen.classes[int(plan.labels[0, 0])]
    headline = f"generated {n} {class_name} map(s) from {len(set(plan.sources.tolist()))} source(s) into {folder}"
    maps: list = []  # the first ones, for the picture
    with map_writer(folder, plan.labels, fmt, "generated.png", headline, force=force) as (write, tmp_picture):
        for lo, block in blocks:
            write(block)
            maps += list(block[:max(0, MAX_SHOWN - lo)].copy())
        src = gen.bank_maps(plan.sources[:len(maps)])  # the bundle holds latents only: a source is drawn as decoded
        rows, names = [], []
        for lo in range(0, len(maps), WRAP):  # sources above their generated maps
            rows += [list(src[lo:lo + WRAP]), maps[lo:lo + WRAP]]
            names += [f"sources {lo}-{min(lo + WRAP, len(maps)) - 1}", "generated"]
        title = f"the first {len(maps)} of {n} generated maps" if len(maps) < n else f"{n} generated map(s)"
        title = f"{class_name}: {title}, each below its source (reconstructed)"
        render_grid(rows, row_labels=names, title=title).save(tmp_picture, format="PNG")
