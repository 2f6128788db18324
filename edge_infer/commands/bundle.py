"""``edge-infer bundle export``: the verified bundle, copied for a tool in another language."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import ForceOpt, ModelOpt, handle_errors, say

app = typer.Typer(help="The model bundle: the files any onnxruntime binding needs to generate the same maps.",
                  no_args_is_help=True)

EPILOG = """\
Examples:

\b
  edge-infer bundle export my-tool/model
  edge-infer bundle export my-tool/model --model models/wafer-cae --force

The folder then holds manifest.json, the four .onnx graphs and latent_bank.npz:
what a C#, C++, Java or JavaScript tool needs to generate exactly the maps the
Python API does.
"""


@app.command("export", epilog=EPILOG)
@handle_errors
def export(
    dest: Annotated[Path, typer.Argument(
        show_default=False, help="Folder to write the bundle into (created; must not exist unless --force).")],
    model: ModelOpt = None,
    force: ForceOpt = False,
) -> None:
    """Copy the verified bundle (the default one, or --model) to a folder of yours."""
    from ..bundle import export_bundle, load_bundle

    bundle = load_bundle(model)
    export_bundle(bundle, dest, force=force)
    say(f"exported bundle {bundle.manifest.get('name', '?')} ({len(bundle.manifest['files']) + 1} files) to {dest}")
