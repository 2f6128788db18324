"""What every ``edge-infer`` verb shares: options, output lines, the error wrapper, run folders, progress, map files."""

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
from typing import Annotated, Any, Callable, Literal, Optional, TypeVar

import typer

from ..errors import EdgeInferError, Note, OutputError
from ..files import atomic_files, check_can_create, next_run_folder, write_npy
from ..g85 import G85Writer
from ..generator import DATA_FILE, LABEL_FILE
from ..npy import npy_writer
from ..wafer import MAP_SHAPE

F = TypeVar("F", bound=Callable[..., Any])
RUNS_ROOT = Path("out")  # without --out, each run writes a new out/VERB-N here

ModelOpt = Annotated[Optional[Path], typer.Option(
    "--model", "-m", help="Model bundle folder. Default: $EDGE_INFER_MODEL, else the shipped one.")]
ProviderOpt = Annotated[str, typer.Option(
    "--provider", help="auto: CUDA if onnxruntime really gets a GPU, else the CPU (says why). cpu, cuda, tensorrt, "
    "openvino: that one, or an error naming what is missing.")]
ThreadsOpt = Annotated[Optional[int], typer.Option(
    "--threads", help="onnxruntime threads per graph. Default: onnxruntime's choice.")]
SeedOpt = Annotated[Optional[int], typer.Option(
    "--seed", "-s", help="The same seed gives the same maps. Default: fresh randomness.")]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing output files.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or provider line (errors still show).")]
OutOpt = Annotated[Optional[Path], typer.Option(
    "--out", "-o", help="Output folder (created if needed). Default: a new out/VERB-N per run, so runs never collide.")]
StrengthOpt = Annotated[Optional[float], typer.Option(
    "--strength", help="Noise relative to each latent channel's spread. Default: the bundle's.")]
MethodOpt = Annotated[Optional[str], typer.Option(
    "--method", help="noise: latent + noise. mix: blend two sources of the class, then noise. Default: the bundle's.")]
ModeOpt = Annotated[Optional[str], typer.Option(
    "--noise-mode",
    help="relative: strength × latent std per channel. course: sigma 0.1..0.5 for the 5 variants (strength ignored).")]
OutlineOpt = Annotated[bool, typer.Option(
    "--no-outline-lock", help="Let the decoder redraw the wafer outline too (default: keep each source's exactly).")]
DataOpt = Annotated[Optional[Path], typer.Option(
    "--data", "-d", help="Maps: a wafer.zip, a folder with data.npy (+ label.npy), a .npy of maps "
    "(one-hot or die states; with --labels), or a SEMI G85 .xml (its maps may carry their class).")]
LabelsOpt = Annotated[Optional[Path], typer.Option(
    "--labels", "-l", help="A .npy of class indices, one per map in --data.")]
FormatOpt = Annotated[Literal["npy", "g85", "both"], typer.Option(
    "--format", case_sensitive=False, help="npy: gen_data.npy + gen_label.npy (the course layout). g85: gen_maps.xml "
    "(SEMI G85 XML, class in ei:ClassIndex). both.")]


def examples(*commands: str) -> str:
    """A verb's ``--help`` epilog: its example command lines, shown as written."""
    return "Examples:\n\n\b\n" + "".join(f"  edge-infer {c}\n" for c in commands)


def say(message: str) -> None:
    """A result line (what was written, a figure): stdout, so scripts can read it."""
    print(message, flush=True)


def tell(message: str) -> None:
    """Chatter (provider, progress, notes): stderr, so stdout stays clean."""
    print(message, file=sys.stderr, flush=True)


_CREATED: list[Path] = []  # folders this run made for its outputs (removed again if it fails while they are empty)
_BARS: list["Progress"] = []  # this run's progress bars
_SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)", signal.SIGHUP: "hangup (SIGHUP)"}


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signum)  # where the run is, so SIGTERM/SIGHUP unwind like Ctrl-C (temporaries removed)


def handle_errors(func: F) -> F:
    """Run a command so every failure is one line and an exit code (``error: …`` and 1; Ctrl-C, SIGTERM, SIGHUP:
    128 + the signal), warnings are ``note:``/``warning:`` lines, and a failed run leaves no folder it created."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        main = threading.current_thread() is threading.main_thread()  # signal handlers can only be set there
        old = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGHUP)} if main else {}
        del _CREATED[:]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                warnings.showwarning = lambda msg, kind, *_, **__: tell(
                    f"{'note' if issubclass(kind, Note) else 'warning'}: {msg}")
                try:
                    return func(*args, **kwargs)
                finally:
                    while _BARS:  # ended before an error line, so the line is not drawn over
                        _BARS.pop().close()
        except BaseException as exc:
            for folder in reversed(_CREATED):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only ever removes an empty folder
            if isinstance(exc, KeyboardInterrupt):  # exit 128 + the signal, as shells report it
                signum = exc.args[0] if exc.args else signal.SIGINT
                tell(_SIGNALS[signum])
                raise SystemExit(128 + signum) from None
            if isinstance(exc, BrokenPipeError):  # whoever read stdout went away (`| head`): stop quietly
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise SystemExit(1) from None
            if isinstance(exc, MemoryError):
                tell(f"error: out of memory ({str(exc) or 'an allocation failed'}); ask for fewer maps at a time")
            elif isinstance(exc, EdgeInferError):
                tell(f"error: {exc}")
            elif isinstance(exc, OSError):  # the OS refusing a path
                tell(f"error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
            else:
                raise
            raise SystemExit(1) from None
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    return wrapper  # type: ignore[return-value]


def output_folder(out: Optional[Path], verb: str) -> Path:
    """The folder a run writes into, created now (removed if the run fails while empty): ``out`` or ``out/VERB-N``."""
    root = Path(out) if out is not None else RUNS_ROOT
    _CREATED.extend(reversed([p for p in (root, *root.parents) if not os.path.lexists(p)]))
    check_can_create(root)
    root.mkdir(parents=True, exist_ok=True)
    if out is not None:
        return root
    for _ in range(100):  # another run may take a number between looking and creating it
        folder = next_run_folder(root, verb)
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
            _CREATED.append(folder)
            return folder
    raise OutputError(f"cannot find a free run folder in {root} (can it be listed?); give --out")


class Progress:
    """``progress(done, total)`` on stderr after the first second: a rich bar on a terminal, else a line at times."""

    def __init__(self, what: str, *, quiet: bool = False, delay: float = 1.0, every: float = 5.0) -> None:
        self.what, self.quiet, self.delay, self.every = what, quiet, delay, every
        self.start, self.last, self.bar = time.monotonic(), 0.0, None
        _BARS.append(self)

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.quiet or now - self.start < self.delay:
            return
        if sys.stderr.isatty():
            if self.bar is None:
                from rich import console, progress as rp  # here: most runs draw no bar (~80 ms to import)

                self.bar = rp.Progress(self.what, rp.BarColumn(), rp.MofNCompleteColumn(), "maps",
                                       rp.TimeRemainingColumn(), console=console.Console(stderr=True))
                self.bar.start()
                self.bar.add_task(self.what, total=total)
            self.bar.update(self.bar.task_ids[0], completed=done)
        elif now - self.last >= self.every or done >= total:
            self.last = now
            rate = done / max(now - self.start, 1e-9)
            tell(f"{self.what}: {done:,}/{total:,} maps ({100 * done / max(total, 1):.0f}%), {rate:,.0f} maps/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()  # a second stop does nothing


@contextlib.contextmanager
def map_writer(out: Path, labels: Any, fmt: str, picture: str, headline: str, *,
               force: bool) -> Iterator[tuple[Callable[[Any], None], Path]]:
    """Yield ``(write(block), picture's temporary path)``; all files appear once complete, then ``headline`` + paths."""
    n, files = len(labels), {}
    if fmt != "g85":
        files.update({out / DATA_FILE: f"({n}, 26, 26, 3) float32 one-hot", out / LABEL_FILE: f"({n}, 1) int64"})
    if fmt != "npy":
        files[out / "gen_maps.xml"] = f"{n} <Map>s, SEMI G85 XML"
    with atomic_files([*files, out / picture], force=force) as tmps, contextlib.ExitStack() as stack:
        writers = []
        if fmt != "g85":
            write_npy(tmps[1], labels)
            writers.append(stack.enter_context(npy_writer(tmps[0], (n, *MAP_SHAPE))).write)
        if fmt != "npy":
            g85 = G85Writer(stack.enter_context(open(tmps[-2], "wb")), lot_id="edge-infer")
            stack.callback(g85.close)  # before the file closes; a failed run's file is removed anyway
            writers.append(lambda block: g85.write(block, labels[g85.count:g85.count + len(block)]))

        def write(block: Any) -> None:
            for w in writers:
                w(block)

        yield write, tmps[-1]
    say(headline)
    for path, holds in files.items():
        say(f"  {path}  {holds}")
    say(f"  {out / picture}")
