"""What every ``edge-infer`` command shares: error handling, options, messages.

* :func:`handle_errors` wraps a command: an :class:`~edge_infer.errors.EdgeInferError`
  becomes ``error: <message>`` on stderr and exit 1 (no traceback), Ctrl-C
  becomes ``interrupted`` and exit 130; warnings raised inside print as one
  line each (``note: ...`` for a resize, ``warning: ...`` otherwise).
* The ``*Opt`` aliases are the options several commands take, so they read
  and behave the same everywhere.
* :func:`say` (stdout: what was written) and :func:`tell` (stderr: progress,
  provider, notes) keep results apart from chatter.

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
        help="auto: CUDA if onnxruntime really gets a GPU, else CPU. cpu. cuda: fail unless CUDA works.",
    ),
]
ThreadsOpt = Annotated[
    Optional[int],
    typer.Option("--threads", help="onnxruntime intra-op threads. Default: onnxruntime's choice.", show_default=False),
]
SeedOpt = Annotated[
    Optional[int],
    typer.Option("--seed", "-s", help="Random seed: the same seed gives the same maps. Default: fresh randomness.", show_default=False),
]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing output files.")]
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


class Progress:
    """A one-line progress counter on stderr, drawn only on a terminal."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.live = sys.stderr.isatty()
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.live:
            return
        pct = 100 * done // max(total, 1)
        if pct != self._last or done == total:
            self._last = pct
            bar = "#" * (pct // 4)
            sys.stderr.write(f"\r{self.what} [{bar:<25}] {done}/{total} ({pct}%)")
            if done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def handle_errors(func: F) -> F:
    """Map user errors to ``error: <message>`` + exit 1, Ctrl-C to exit 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _show_warning
            try:
                return func(*args, **kwargs)
            except EdgeInferError as exc:
                tell(f"error: {exc}")
                raise typer.Exit(1) from None
            except KeyboardInterrupt:
                tell("interrupted")
                raise typer.Exit(130) from None
            except MemoryError as exc:
                tell(f"error: {out_of_memory(exc)}")
                raise typer.Exit(1) from None

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


def check_count(value: int, option: str) -> int:
    """Reject 0 or negative counts before any model is loaded."""
    if value < 1:
        raise InputError(f"{option} must be at least 1, not {value}")
    return value


def provider_line(info: Any) -> str:
    """``provider: cpu (auto: CUDA listed but not usable here)``."""
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

    def write(tmp: Path) -> None:
        image.save(tmp, format="PNG")

    return write
