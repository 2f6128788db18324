"""What every ``edge-infer`` verb shares: the error wrapper, options, output lines, progress, run folders, map files.

:func:`handle_errors` also wraps ``python -m training`` / ``export`` / ``training.evaluation`` and the drivers in
``bench/``, so every tool of the project fails the same way.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer

from ..errors import EdgeInferError, InputError, Note, OutputError
from ..files import atomic_files, next_run_folder, write_npy

F = TypeVar("F", bound=Callable[..., Any])
G85_FILE = "gen_maps.xml"
#: Where a run writes when no --out is given: a new ``out/VERB-N`` each time.
RUNS_ROOT = Path("out")

ModelOpt = Annotated[Optional[Path], typer.Option(
    "--model", "-m", show_default=False,
    help="Model bundle folder. Default: $EDGE_INFER_MODEL, else the bundle shipped with edge-infer.")]
ProviderOpt = Annotated[str, typer.Option(
    "--provider", help="auto: CUDA if onnxruntime really gets a GPU, else the CPU (says why). cpu, cuda, tensorrt, "
    "openvino: that one, or an error naming what is missing.")]
ThreadsOpt = Annotated[Optional[int], typer.Option(
    "--threads", show_default=False, help="onnxruntime threads per graph. Default: onnxruntime's choice.")]
SeedOpt = Annotated[Optional[int], typer.Option(
    "--seed", "-s", show_default=False,
    help="Random seed: the same seed gives the same maps. Default: fresh randomness.")]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing output files.")]
QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No progress or provider line on stderr (errors still show).")]
OutOpt = Annotated[Optional[Path], typer.Option(
    "--out", "-o", show_default=False,
    help="Output folder (created if needed). Default: a new folder out/VERB-N for each run, so runs never collide.")]
StrengthOpt = Annotated[Optional[float], typer.Option(
    "--strength", show_default=False,
    help="Noise strength, relative to each latent channel's spread. Default: the bundle's.")]
MethodOpt = Annotated[Optional[str], typer.Option(
    "--method", show_default=False,
    help="noise: source latent + noise. mix: blend with another source of the class, then noise. "
    "Default: the bundle's.")]
ModeOpt = Annotated[Optional[str], typer.Option(
    "--noise-mode", show_default=False,
    help="relative: strength × latent std per channel. course: sigma 0.1..0.5 for the 5 variants (strength ignored).")]
OutlineOpt = Annotated[bool, typer.Option(
    "--no-outline-lock",
    help="Let the decoder redraw the wafer outline too (default: keep each source's outline exactly).")]
FormatOpt = Annotated[str, typer.Option(
    "--format", help="npy: gen_data.npy + gen_label.npy (the course layout). g85: gen_maps.xml (SEMI G85 XML, "
    "class in ei:ClassIndex). both.")]


def say(message: str) -> None:
    """A result line (what was written, a figure): stdout, so scripts can read it."""
    print(message, flush=True)


def tell(message: str) -> None:
    """Chatter (provider, progress, notes): stderr, so stdout stays clean."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the wrapper


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the run is, so it unwinds like Ctrl-C (temporary files removed)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame: Any) -> None:
    raise Stopped(signum)


_CREATED: list[Path] = []  # folders this run made for its outputs (removed again if it fails while they are empty)
_BARS: list["Progress"] = []  # bars to end before an error line, so the line is not drawn over


def _show_warning(message: Any, category: type, *args: Any, **kwargs: Any) -> None:
    tell(f"{'note' if issubclass(category, Note) else 'warning'}: {message}")


def _failure(exc: BaseException) -> tuple[str, int]:
    """The one line and the exit code for a failure :func:`handle_errors` catches."""
    if isinstance(exc, EdgeInferError):
        return f"error: {exc}", 1
    if isinstance(exc, KeyboardInterrupt):  # exit 128 + the signal, as shells report it
        signum = exc.signum if isinstance(exc, Stopped) else signal.SIGINT
        names = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)", signal.SIGHUP: "hangup (SIGHUP)"}
        return names[signum], 128 + signum
    if isinstance(exc, MemoryError):
        return f"error: out of memory ({str(exc) or 'an allocation failed'}); ask for fewer maps at a time", 1
    # An OSError: the OS refusing a path (too long, a link loop, no permission), wherever it was met.
    line = f"error: {exc.strerror or exc}"  # type: ignore[attr-defined]
    name = str(exc.filename or "")  # type: ignore[attr-defined]
    if len(name) > 100:
        line += f": {name[:100]}…"
    elif name:
        line += f": {name}"
    return line, 1


def handle_errors(func: F) -> F:
    """Run a command so every failure is one line and an exit code, and nothing half-made stays behind.

    An :class:`~edge_infer.errors.EdgeInferError`, an OSError or a MemoryError prints ``error: …`` and
    exits 1; Ctrl-C, SIGTERM and SIGHUP print one line and exit 128 + the signal; warnings print as
    ``note:``/``warning:`` lines. Files being written are removed on the way out (:mod:`edge_infer.files`),
    and so are the output folders a failed run created.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        main = threading.current_thread() is threading.main_thread()  # signal handlers can only be set there
        old = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGHUP)} if main else {}
        del _CREATED[:]
        ok = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                warnings.showwarning = _show_warning
                result = func(*args, **kwargs)
            ok = True
            return result
        except BrokenPipeError:  # whoever read stdout went away (`| head`): stop quietly, as a pipeline expects
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(1) from None
        except (EdgeInferError, KeyboardInterrupt, MemoryError, OSError) as exc:
            _end_bars()
            line, code = _failure(exc)
            tell(line)
            raise SystemExit(code) from None
        finally:
            _end_bars()
            for s, handler in old.items():
                signal.signal(s, handler)
            if not ok:
                for folder in reversed(_CREATED):
                    with contextlib.suppress(OSError):
                        folder.rmdir()  # only ever removes an empty folder

    return wrapper  # type: ignore[return-value]


def output_folder(out: Optional[Path], verb: str) -> Path:
    """The folder a run writes into: ``out`` itself, or a new ``out/VERB-N``.

    The folders this creates are recorded, so a failed run removes them again.
    """
    if out is not None:
        missing = []
        p = Path(out)
        while not os.path.lexists(p) and p != p.parent:
            missing.append(p)
            p = p.parent
        _CREATED.extend(reversed(missing))
        return Path(out)
    for _ in range(1000):
        folder = next_run_folder(RUNS_ROOT, verb)
        created = not os.path.lexists(RUNS_ROOT)
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            if folder.is_dir():
                continue  # another run took that number a moment ago
            raise OutputError(f"cannot create {folder}: {RUNS_ROOT} is not a folder; give --out") from None
        except OSError as exc:
            raise OutputError(f"cannot create {folder}: {exc.strerror or exc}; give --out") from None
        _CREATED.extend([RUNS_ROOT, folder] if created else [folder])
        return folder
    raise OutputError(f"cannot find a free run folder in {RUNS_ROOT} (can it be listed?); give --out")


# ---------------------------------------------------------------- progress


class Progress:
    """``progress(done, total)`` on stderr: nothing for a run under a second; a rich bar on a
    terminal; a plain line every few seconds otherwise (a log, a pipe); nothing with ``quiet``."""

    def __init__(self, what: str, *, quiet: bool = False, delay: float = 1.0, every: float = 5.0) -> None:
        self.what, self.quiet, self.delay, self.every = what, quiet, delay, every
        self.start, self.last, self.bar, self.task = time.monotonic(), 0.0, None, None
        _BARS.append(self)

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.quiet or now - self.start < self.delay:
            return
        if sys.stderr.isatty():
            if self.bar is None:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TimeRemainingColumn

                self.bar = Bar(self.what, BarColumn(), MofNCompleteColumn(), "maps", TimeRemainingColumn(),
                               transient=False, console=Console(stderr=True))
                self.bar.start()
                self.task = self.bar.add_task(self.what, total=total)
            self.bar.update(self.task, completed=done)
        elif now - self.last >= self.every or done >= total:
            self.last = now
            rate = done / max(now - self.start, 1e-9)
            tell(f"{self.what}: {done:,}/{total:,} maps ({100 * done / max(total, 1):.0f}%), {rate:,.0f} maps/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _end_bars() -> None:
    while _BARS:
        _BARS.pop().close()


# ---------------------------------------------------------------- map files


def check_format(fmt: str) -> str:
    """``--format`` as a key: npy, g85 or both."""
    key = fmt.strip().lower()
    if key not in ("npy", "g85", "both"):
        raise InputError(f"--format must be npy, g85 or both, not {fmt!r}")
    return key


def map_files(out: Path, fmt: str) -> list[Path]:
    """The map files a format writes into ``out``: npy first (maps, labels), then G85."""
    from ..generator import DATA_FILE, LABEL_FILE

    files = []
    if fmt != "g85":
        files += [out / DATA_FILE, out / LABEL_FILE]
    if fmt != "npy":
        files.append(out / G85_FILE)
    return files


class MapSink:
    """Blocks of maps, in order, to every file of a format; the labels, known up front, go beside them."""

    def __init__(self, npy: Any, g85: Any, labels: Any) -> None:
        self.npy, self.g85, self.labels, self.rows = npy, g85, labels, 0

    def write(self, block: Any) -> None:
        if self.npy is not None:
            self.npy.write(block)
        if self.g85 is not None:
            self.g85.write(block, self.labels[self.rows:self.rows + len(block)])
        self.rows += len(block)


@contextlib.contextmanager
def map_writer(out: Path, labels: Any, fmt: str, picture: str, *, force: bool) -> Iterator[tuple[MapSink, Path]]:
    """``(sink, temporary picture path)`` for the maps of ``labels``, written block by block in ``fmt``.

    Every file, the picture included, appears only if all of them are complete: a failed or
    interrupted run leaves none of them.
    """
    from ..g85 import G85Writer
    from ..npy import npy_writer
    from ..wafer import MAP_SHAPE

    files = map_files(out, fmt)
    with atomic_files([*files, out / picture], force=force) as tmps, contextlib.ExitStack() as stack:
        npy = g85 = None
        if fmt != "g85":
            write_npy(tmps[1], labels)
            npy = stack.enter_context(npy_writer(tmps[0], (len(labels), *MAP_SHAPE)))
        if fmt != "npy":
            g85 = G85Writer(stack.enter_context(open(tmps[len(files) - 1], "wb")), lot_id="edge-infer")
        yield MapSink(npy, g85, labels), tmps[-1]
        if g85 is not None:
            g85.close()


def say_maps(out: Path, n: int, fmt: str, picture: str) -> None:
    """The result lines for what :func:`map_writer` wrote: each file, and what it holds."""
    from ..generator import DATA_FILE, LABEL_FILE

    holds = {DATA_FILE: f"({n}, 26, 26, 3) float32 one-hot", LABEL_FILE: f"({n}, 1) int64",
             G85_FILE: f"{n} <Map>s, SEMI G85 XML"}
    for path in map_files(out, fmt):
        say(f"  {path}  {holds[path.name]}")
    say(f"  {out / picture}")
