"""``edge-infer generate``: new maps of one class, with a picture beside their sources."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..classes import CLASS_NAMES
from ._common import (
    ForceOpt,
    MethodOpt,
    ModelOpt,
    ModeOpt,
    OutlineOpt,
    OutOpt,
    ProviderOpt,
    QuietOpt,
    SeedOpt,
    StrengthOpt,
    ThreadsOpt,
    Progress,
    check_noise_options,
    handle_errors,
    provider_line,
    say,
    png_writer,
    tell,
    write_all,
)
from ._formats import FormatOpt

#: Above this many maps the CLI streams them to disk block by block (bounded memory).
STREAM_THRESHOLD = 50_000
#: Up to this many maps (and no --threads), one onnxruntime thread per session:
#: such a run is all start-up, and a pool of intra-op threads (created, spun,
#: joined for each of the bundle's sessions) costs more than it gives back. The
#: same maps either way (the kernels do not depend on the thread count, tested).
#: Measured on the generator graphs: generate -n 5 median 0.52 vs 0.82 s wall,
#: 0.34 vs 0.52 s CPU (--threads 1 vs 2, 11 alternating runs, 2 loaded cores).
SMALL_RUN = 64
#: Generated maps shown in the picture.
MAX_SHOWN = 10
PICTURE = "generated.png"

EPILOG = """\
Examples:

\b
  edge-infer generate --class None -n 5
  edge-infer generate --class scratch -n 200 --seed 7 --out out/scratch
  edge-infer generate --source-index 17 -n 8 --method noise --strength 0.5

Writes OUT/gen_data.npy (n, 26, 26, 3) float32 one-hot like data.npy,
OUT/gen_label.npy (n, 1) int64, and OUT/generated.png (sources above, their
generated maps below). With --format g85 (or both), OUT/gen_maps.xml holds
the maps as SEMI G85 XML instead (or as well). Existing files are kept
unless --force.
"""


@handle_errors
def generate(
    cls: Annotated[
        Optional[str],
        typer.Option(
            "--class",
            "-c",
            help="Class name (any case) or index: " + ", ".join(f"{i} {name}" for i, name in enumerate(CLASS_NAMES)) + ". "
            "Optional with --source-index.",
            show_default=False,
        ),
    ] = None,
    n: Annotated[int, typer.Option("-n", "--count", help="How many maps to generate.")] = 5,
    out: OutOpt = Path("out"),
    seed: SeedOpt = None,
    source_index: Annotated[
        Optional[int],
        typer.Option(
            "--source-index",
            help="Generate every map from this one source: its row in the latent bank (= training data order).",
            show_default=False,
        ),
    ] = None,
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

    Each map is a source map's latent code from the bundle's latent bank plus
    Gaussian noise, decoded by the ONNX decoder; the source's wafer outline is
    kept exactly unless --no-outline-lock.
    """
    import numpy as np

    from ..generator import WaferGenerator
    from ..io import check_targets
    from ..plan import check_count
    from ..render import render_grid, save_png
    from ..wafer import resolve_class
    from . import _formats

    check_count(n, "-n")
    check_noise_options(strength, method, noise_mode)
    fmt = _formats.check_format(fmt)
    if threads is None and n <= SMALL_RUN:
        threads = 1
    gen = WaferGenerator.load(model, provider=provider, threads=threads)
    if cls is not None:
        resolve_class(cls, gen.classes)  # a typo fails before anything else happens
    check_targets([*_formats.targets(out, fmt), out / PICTURE], force=force)
    if not quiet:
        tell(provider_line(gen.provider_info))
    options = dict(
        seed=seed,
        source_index=source_index,
        strength=strength,
        method=method,
        mode=noise_mode,
        outline_lock=not no_outline_lock,
    )
    result = None
    if n > STREAM_THRESHOLD:
        # --format g85: the .npy streams into a temporary folder, removed once it is G85.
        with _formats.streamed_folder(out, fmt) as where:
            streamed = gen.generate_to_files(cls, n, where, force=force, progress=Progress("generate", quiet=quiet),
                                             **options)
            shown = np.array(np.load(streamed.data_path, mmap_mode="r")[:MAX_SHOWN])
            labels, sources = streamed.labels, streamed.sources
            if fmt != "npy":
                _formats.npy_to_g85(streamed.data_path, labels, out / _formats.G85_FILE, force=force)
    else:
        result = gen.generate(cls, n, progress=Progress("generate", quiet=quiet), **options)
        shown, labels, sources = result.maps[:MAX_SHOWN], result.labels, result.sources
    class_name = gen.classes[int(labels[0, 0])]
    src = sources[:MAX_SHOWN]
    picture = render_grid(
        [list(gen.bank_maps(src)), list(np.asarray(shown))],
        row_labels=["source (reconstructed)", "generated"],
        col_labels=[f"#{i} from bank {s}" for i, s in enumerate(src)],
        title=f"{class_name}: {min(n, MAX_SHOWN)} of {n} generated map(s) below their sources",
    )
    if result is None:  # streamed: the maps are on disk already
        save_png(picture, out / PICTURE, force=force)
    else:
        write_all({**_formats.writers(out, result.maps, result.labels, fmt), out / PICTURE: png_writer(picture)}, force=force)
    # set(), not np.unique: its first call imports numpy.ma, a measurable part of a small run's start-up.
    say(f"generated {n} {class_name} map(s) from {len(set(sources.tolist()))} source(s)")
    _formats.say_maps(out, n, fmt)
    say(f"  {out / PICTURE}")
