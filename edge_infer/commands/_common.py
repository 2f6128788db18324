"""What every ``edge-infer`` command shares: error handling, options, messages.

* :func:`handle_errors` wraps a command: an :class:`~edge_infer.errors.EdgeInferError`
  becomes ``error: <message>`` on stderr and exit 1 (no traceback), Ctrl-C
  becomes ``interrupted`` and exit 130; warnings raised inside print as one
  line each (``note: ...`` for a resize, ``warning: ...`` otherwise).
* The ``*Opt`` aliases are the options several commands take, so they read
  and behave the same everywhere.
* :func:`say` (stdout: what was written) and :func:`tell` (stderr: progress,
  provider, notes) keep results apart from chatter; :func:`Progress` makes
  the stderr progress bar (:mod:`edge_infer.progress`).
* A failed or interrupted command removes the ``--out`` folders it created
  while they are still empty; a folder that existed before always stays.

This module must stay light: the CLI imports it for ``--help``, which has to
be instant, so numpy/onnxruntime are imported only inside functions.
"""

from __future__ import annotations

import functools
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer

from ..errors import EdgeInferError, InputError

F = TypeVar("F", bound=Callable[..., Any])

# ---------------------------------------------------------------- shared options

ModelOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--model",
        "-m",
        help="Model bundle folder. Default: $EDGE_INFER_MODEL, else the bundle shipped with edge-infer.",
        show_default=False,
    ),
]
ProviderOpt = Annotated[
    str,
    typer.Option(
        "--provider",
        help="auto: CUDA if onnxruntime really gets a GPU, else the CPU (says why). cpu, cuda, tensorrt, openvino: "
        "that one, or an error naming what is missing.",
    ),
]
ThreadsOpt = Annotated[
    Optional[int],
    typer.Option("--threads", help="onnxruntime intra-op threads. Default: onnxruntime's choice (1 for a generate of up to 64 maps).", show_default=False),
]
SeedOpt = Annotated[
    Optional[int],
    typer.Option("--seed", "-s", help="Random seed: the same seed gives the same maps. Default: fresh randomness.", show_default=False),
]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing output files.")]
QuietOpt = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No progress bar or provider line on stderr (errors and warnings still show)."),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if needed).")]
StrengthOpt = Annotated[
    Optional[float],
    typer.Option(
        "--strength",
        help="Noise strength, relative to each latent channel's spread. Default: the bundle's.",
        show_default=False,
    ),
]
MethodOpt = Annotated[
    Optional[str],
    typer.Option(
        "--method",
        help="noise: source latent + noise. mix: blend with another source of the class, then noise. Default: the bundle's.",
        show_default=False,
    ),
]
ModeOpt = Annotated[
    Optional[str],
    typer.Option(
        "--noise-mode",
        help="relative: strength × latent std per channel. course: sigma 0.1..0.5 for the 5 variants (strength ignored).",
        show_default=False,
    ),
]
OutlineOpt = Annotated[
    bool,
    typer.Option(
        "--no-outline-lock",
        help="Let the decoder redraw the wafer outline too (default: keep each source's outline exactly).",
    ),
]

# ---------------------------------------------------------------- messages


def say(message: str) -> None:
    """A result line (what was written, a figure): stdout."""
    print(message, flush=True)


def tell(message: str) -> None:
    """Chatter (provider, progress, notes): stderr, so stdout stays clean."""
    print(message, file=sys.stderr, flush=True)


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    from ..wafer import ResizeNote

    kind = "note" if issubclass(category, ResizeNote) else "warning"
    tell(f"{kind}: {message}")


# Bars made during the current command, so an error or Ctrl-C ends their line first.
_BARS: list[Any] = []


def Progress(what: str, *, quiet: bool = False) -> Any:  # noqa: N802 -- reads like the class it returns
    """A :class:`~edge_infer.progress.ProgressBar` on stderr for this command (``quiet``: silent)."""
    from ..progress import ProgressBar

    bar = ProgressBar(what, quiet=quiet)
    _BARS.append(bar)
    return bar


def _close_bars() -> None:
    while _BARS:
        _BARS.pop().close()


def _missing_folders(path: Any) -> list[Path]:
    """``path`` and its parents that do not exist yet, deepest first."""
    missing = []
    p = Path(path)
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed run created, deepest first, where still empty."""
    for folder in folders:
        try:
            folder.rmdir()  # only ever removes an empty folder
        except FileNotFoundError:
            continue  # never made (a file --out, or a folder the run did not reach)
        except OSError:
            return


def handle_errors(func: F) -> F:
    """Map user errors to ``error: <message>`` + exit 1, Ctrl-C to exit 130.

    The one entry-point wrapper: every ``edge-infer`` verb, ``python -m
    training`` / ``export`` / ``training.evaluation``, and the argparse drivers
    in ``bench/``. It exits with ``SystemExit``, which typer, click and plain
    Python all pass through as the process's exit code.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Folders this run would create for its --out: removed again if it fails
        # while they are still empty (a folder that was already there stays).
        out = kwargs.get("out")
        created = _missing_folders(out) if isinstance(out, Path) else []
        ok = False
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _show_warning
            try:
                result = func(*args, **kwargs)
                ok = True
                return result
            except EdgeInferError as exc:
                _close_bars()
                tell(f"error: {exc}")
                raise SystemExit(1) from None
            except KeyboardInterrupt:
                _close_bars()
                tell("interrupted")
                raise SystemExit(130) from None
            except MemoryError as exc:
                _close_bars()
                tell(f"error: {out_of_memory(exc)}")
                raise SystemExit(1) from None
            finally:
                _close_bars()
                if not ok:
                    _remove_empty(created)

    return wrapper  # type: ignore[return-value]


def out_of_memory(exc: MemoryError) -> str:
    """What a real allocation failure asked for: numpy says how much, for which array.

    Inputs never get here by lying: their sizes are checked before anything
    is allocated for them (edge_infer.io), so this is a request that truly
    did not fit.
    """
    detail = str(exc).strip()
    if detail.startswith("Unable to allocate"):
        detail = "could not allocate" + detail[len("Unable to allocate") :]
    asked = f" ({detail})" if detail else ""
    return f"out of memory{asked}; ask for fewer maps at a time"


def provider_line(info: Any) -> str:
    """``provider: cpu (auto: no NVIDIA driver found, so CUDA was not tried)``."""
    return f"provider: {info.describe()}"


def check_noise_options(strength: Optional[float], method: Optional[str], mode: Optional[str]) -> None:
    """Reject a bad --strength / --method / --noise-mode before any model is loaded."""
    from .. import sampling

    if strength is not None:
        sampling.check_strength(strength)
    if method is not None:
        sampling.check_choice(method, sampling.METHODS, "method")
    if mode is not None:
        sampling.check_choice(mode, sampling.MODES, "noise mode")


def write_all(writers: "dict[Path, Callable[[Path], None]]", *, force: bool) -> None:
    """Write several outputs as one step: each writer fills a temporary file,
    and only when all have succeeded are they renamed into place, so an
    error or Ctrl-C leaves none of them rather than some."""
    import contextlib

    from ..io import atomic_path

    with contextlib.ExitStack() as stack:
        temps = {path: stack.enter_context(atomic_path(path, force=force)) for path in writers}
        for path, write in writers.items():
            write(temps[path])


def npy_writer(array: Any) -> "Callable[[Path], None]":
    """A :func:`write_all` writer saving ``array`` as ``.npy`` (never pickled)."""

    def write(tmp: Path) -> None:
        from ..io import write_npy

        write_npy(tmp, array)

    return write


def save_generated(out: Path, maps: Any, labels: Any, picture: Any, picture_name: str, *, force: bool) -> None:
    """``gen_data.npy``, ``gen_label.npy`` and the picture into ``out``, as one step."""
    from ..generator import DATA_FILE, LABEL_FILE

    write_all(
        {out / DATA_FILE: npy_writer(maps), out / LABEL_FILE: npy_writer(labels), out / picture_name: png_writer(picture)},
        force=force,
    )


def say_generated(out: Path, n: int, picture_name: str) -> None:
    """The lines telling where the generated maps, labels and picture are."""
    from ..generator import DATA_FILE, LABEL_FILE

    say(f"  {out / DATA_FILE}  ({n}, 26, 26, 3) float32 one-hot")
    say(f"  {out / LABEL_FILE}  ({n}, 1) int64")
    say(f"  {out / picture_name}")


def png_writer(image: Any) -> "Callable[[Path], None]":
    """A :func:`write_all` writer saving a PIL image as PNG."""
    from ..render import png_bytes

    def write(tmp: Path) -> None:
        tmp.write_bytes(png_bytes(image))

    return write
