"""``python -m export CHECKPOINT_OR_RUN --out models/NAME``: the exporter's command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from edge_infer.commands import handle_errors
from training import require_torch

require_torch('python -m export')

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Export a trained checkpoint to a verified edge-infer model bundle.")


@app.command()
@handle_errors
def main(
    checkpoint: Path = typer.Argument(..., help="Run folder (holding checkpoint.pt) or the checkpoint.pt file."),
    out: Path = typer.Option(..., "--out", help="Bundle folder to write, e.g. models/wafer-cae."),
    data: Optional[Path] = typer.Option(None, "--data", help="Training data (wafer.zip, folder or data.npy); default: the path the checkpoint records."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Labels .npy, where --data is a bare maps .npy."),
    decoder: str = typer.Option("fast", "--decoder", help="Decoder graph: fast (exact rewrite) or plain (straight export)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing bundle at --out."),
) -> None:
    """Export CHECKPOINT to ONNX, verify it against PyTorch, and write the bundle."""
    from .build import export_bundle

    result = export_bundle(checkpoint, out, data=data, labels=labels, decoder=decoder, force=force)
    diffs = ", ".join(f"{k} {v:.2g}" for k, v in result.max_abs_diff.items())
    typer.echo(f"wrote {result.out} (decoder {result.decoder_variant}, {result.manifest['latent_bank']['count']} latents)")
    typer.echo(f"verified: onnxruntime vs PyTorch max abs diff: {diffs}")
    typer.echo(f"reconstruction MSE (onnxruntime only): {result.reconstruction_mse:.5f}")


if __name__ == "__main__":
    sys.exit(app())
