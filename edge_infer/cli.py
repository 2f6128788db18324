"""The ``edge-infer`` command line: one typer verb per module of :mod:`edge_infer.commands`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Optional

import typer

from . import __version__
from .commands import augment, bench, bundle, convert, generate, info, reconstruct
from .commands._common import examples

app = typer.Typer(name="edge-infer", add_completion=False, no_args_is_help=True,
                  epilog=examples("generate --class Scratch -n 20 --seed 0", "augment --per-source 5", "info"),
                  pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]})
for module in (generate, augment, reconstruct, convert, info, bench):
    verb = module.__name__.rsplit(".", 1)[1]  # each module holds the function of its name
    app.command(name=verb, epilog=module.EPILOG)(getattr(module, verb))
app.add_typer(bundle.app, name="bundle")


def _version(value: bool) -> None:
    if value:
        print(f"edge-infer {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Show the version and exit.", callback=_version,
                                       is_eager=True)) -> None:
    """Generate realistic wafer maps (26×26 dies) of any WM-811K defect class with a torch-free ONNX autoencoder."""


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``edge-infer``: a usage error is one ``error:`` line and exit 1, like any other; a bare one shows its help."""
    try:
        code = app(args=argv, prog_name="edge-infer", standalone_mode=False)  # args None: sys.argv[1:]
    except typer.TyperException as exc:  # click's usage errors, as typer re-exports them
        if type(exc).__name__ == "NoArgsIsHelpError":  # typer's vendored click gives it no public name
            exc.show()  # a bare verb shows its help, exit 2
            sys.exit(2)
        hint = f" (see: {exc.ctx.command_path} --help)" if getattr(exc, "ctx", None) is not None else ""
        print(f"error: {exc.format_message()}{hint}", file=sys.stderr)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C outside a verb (while typer parses)
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
