"""``edge-infer bundle export``: the verified bundle, copied for a tool in another language."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..bundle import export_bundle, load_bundle
from ._common import ForceOpt, ModelOpt, examples, handle_errors, say

app = typer.Typer(help="The model bundle: the files any onnxruntime binding needs to generate the same maps.",
                  no_args_is_help=True)


@app.command("export", epilog=examples("bundle export my-tool/model",
                                       "bundle export my-tool/model --model models/wafer-cae --force"))
@handle_errors
def export(
    dest: Annotated[Path, typer.Argument(
        help="Folder to write the bundle into (created; must not exist unless --force).", show_default=False)],
    model: ModelOpt = None,
    force: ForceOpt = False,
) -> None:
    """Copy the verified bundle (the default one, or --model) to a folder of yours: manifest.json, the .onnx
    graphs and latent_bank.npz, what a tool in another language needs to generate exactly the same maps."""
    bundle = load_bundle(model)
    export_bundle(bundle, dest, force=force)
    say(f"exported bundle {bundle.manifest.get('name', '?')} ({len(bundle.manifest['files']) + 1} files) to {dest}")
