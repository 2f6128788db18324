"""The ``edge-infer`` command line: a thin typer layer over :class:`~edge_infer.WaferGenerator`.

Adding a command (the pattern every verb follows)
-------------------------------------------------
1. Write ``edge_infer/commands/<verb>.py`` defining ``def <verb>(...)`` with
   typer ``Annotated[..., typer.Option(...)]`` parameters, decorated with
   ``@handle_errors`` from :mod:`edge_infer.commands._common` (which also
   holds the shared ``ModelOpt``/``ProviderOpt``/``SeedOpt``/``ForceOpt``/
   ``OutOpt`` options, ``say``/``tell`` and ``Progress``). Its docstring is the
   help text; an optional module-level ``EPILOG`` string holds examples.
2. Import numpy, onnxruntime and the rest of edge_infer *inside* the
   function: this module imports every command module, and ``--help`` must
   stay instant.
3. Add ``"<verb>"`` to :data:`COMMANDS`. :func:`main` registers only the
   verb a command line runs (all of them for ``--help``): see :func:`build_app`.

Errors: a command raises :class:`~edge_infer.errors.EdgeInferError`; the
decorator prints ``error: <message>`` and exits 1; Ctrl-C exits 130 after
``interrupted``. Usage errors (unknown option, bad number) are reported the
same way by :func:`main`; a bare ``edge-infer`` shows the help and exits 2,
as click does.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Optional

import typer

from . import __version__

#: Verbs in the order ``--help`` lists them; each is ``edge_infer.commands.<verb>.<verb>``.
COMMANDS: tuple[str, ...] = ("generate", "augment", "reconstruct", "convert", "info", "bench")

HELP = """\
Generate realistic semiconductor wafer maps (26×26 dies: boundary, normal,
defect) of any WM-811K defect class with a torch-free ONNX autoencoder.

Examples:

\b
  edge-infer generate --class Scratch -n 20 --seed 0
  edge-infer augment --per-source 5
  edge-infer reconstruct --data wafer.zip
  edge-infer convert --data wafer.zip --to g85 --out g
  edge-infer info

"""

app = typer.Typer(
    name="edge-infer",
    help=HELP,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click help: rich's help renderer imports rich + markdown-it, which
    # made `--help` take ~1.7x as long (0.54 s vs 0.32 s median, loaded 2-core box).
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"edge-infer {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Show the version and exit.", callback=_version, is_eager=True),
) -> None:
    """Generate realistic wafer maps with a torch-free ONNX autoencoder."""


_registered: set[str] = set()


def _register(verb: str) -> None:
    if verb in _registered:
        return
    module = importlib.import_module(f"edge_infer.commands.{verb}")
    func = getattr(module, verb)
    app.command(name=verb, epilog=getattr(module, "EPILOG", None))(func)
    _registered.add(verb)


def _verb_of(args: Sequence[str]) -> Optional[str]:
    """The verb a command line runs, if it names one before anything else positional."""
    for arg in args:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_app(args: Sequence[str] = ()) -> typer.Typer:
    """:data:`app` with the verbs ``args`` needs: only the one it runs (typer turns
    every option of every registered verb into a click parameter on each call,
    which the other verbs would pay for), else all of them (for ``--help`` and
    for "no such command" messages). Verbs keep the order of :data:`COMMANDS`."""
    verb = _verb_of(args)
    for v in COMMANDS if verb is None else (verb,):
        _register(v)
    return app


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Console entry point (``edge-infer``): run the app, one line per error."""
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        code = build_app(args)(args=args, prog_name="edge-infer", standalone_mode=False)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            # Bare `edge-infer`: the help, as click shows it (stderr, exit 2), not an error line.
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        # click/typer usage errors (unknown option, bad value): same one-line form as ours.
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            ctx = getattr(exc, "ctx", None)
            hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
            print(f"error: {exc.format_message()}{hint}", file=sys.stderr)
            sys.exit(1)
        if type(exc).__name__ == "Abort":
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        raise
    sys.exit(code if isinstance(code, int) else 0)


def console() -> None:
    """The ``edge-infer`` process (the console script): :func:`main`, then exit.

    A process that is about to end frees everything anyway, yet Python's
    exit runs one last full garbage collection over every object the command
    made (typer's app, numpy's and onnxruntime's modules, the bundle): a
    measurable part of a short command's wall time (docs/performance.md).
    ``gc.freeze()`` moves them out of that collection's reach. Only here, not
    in :func:`main`, which tests and other programs call in their own process.
    """
    import gc

    try:
        main()
    finally:
        gc.freeze()


if __name__ == "__main__":
    console()
