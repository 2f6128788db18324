"""``python -m training``: train the wafer-map autoencoder and write a run folder.

    python -m training --data ../shared/data/wafer.zip --out runs/wafer-cae

The recipe is all flags with the shipped defaults; the course exercise's
recipe is ``--schedule constant --lr 1e-3``. Failures print ``error: <message>``
on stderr and exit 1, leaving no run folder behind.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from edge_infer.commands import handle_errors
from training import require_torch

require_torch('python -m training')

# torch-free: --help shows the recipe's defaults without importing torch
from .recipe import DEFAULTS, Recipe

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _progress_factory(enabled: bool):
    """Per-step progress: a tqdm bar on a terminal, a line every 10 % otherwise."""
    if not enabled:
        return None
    from tqdm import tqdm

    tty = sys.stderr.isatty()

    def make(title: str, total: int):
        if tty:
            bar = tqdm(total=total, desc=title, unit="step", leave=True, dynamic_ncols=True)

            def cb(epoch: int, step: int, loss: float) -> None:
                bar.update(1)
                bar.set_postfix_str(f"epoch {epoch} loss {loss:.5f}", refresh=False)
                if bar.n >= total:
                    bar.close()

            return cb
        marks = {max(1, round(total * k / 10)) for k in range(1, 11)}
        count = [0]

        def cb(epoch: int, step: int, loss: float) -> None:
            count[0] += 1
            if count[0] in marks:
                print(f"{title}: {100 * count[0] // total:3d}%  epoch {epoch}  running loss {loss:.5f}", file=sys.stderr, flush=True)

        return cb

    return make


@app.command()
@handle_errors
def main(
    data: Path = typer.Option(..., "--data", help="wafer.zip, a folder with data.npy + label.npy, or a maps .npy (then --labels)"),
    out: Path = typer.Option(..., "--out", help="run folder to create, e.g. runs/NAME"),
    labels: Optional[Path] = typer.Option(None, "--labels", help="labels .npy, when --data is a maps .npy"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing run folder"),
    epochs: int = typer.Option(DEFAULTS["epochs"], min=1, help="training epochs"),
    batch_size: int = typer.Option(DEFAULTS["batch_size"], min=1, help="maps per step"),
    lr: float = typer.Option(DEFAULTS["lr"], min=0.0, help="learning rate (peak LR for onecycle/cosine)"),
    weight_decay: float = typer.Option(DEFAULTS["weight_decay"], min=0.0, help="weight decay"),
    optimizer: str = typer.Option(DEFAULTS["optimizer"], help="adam (L2 weight decay, as the course) or adamw"),
    schedule: str = typer.Option(DEFAULTS["schedule"], help="onecycle, cosine (linear warmup) or constant (the course)"),
    warmup: float = typer.Option(DEFAULTS["warmup"], min=0.0, max=1.0, help="share of steps spent warming up (onecycle, cosine)"),
    loss: str = typer.Option(DEFAULTS["loss"], help="training loss: mse (the course) or bce; MSE is reported either way"),
    clip: float = typer.Option(DEFAULTS["clip"], min=0.0, help="gradient-norm clip, 0 = off"),
    seed: int = typer.Option(DEFAULTS["seed"], help="seed of weights, batch order and the split"),
    val_split: float = typer.Option(
        DEFAULTS["val_split"], help="share of maps held out in a first run to measure validation MSE; 0 skips it"
    ),
    threads: int = typer.Option(DEFAULTS["threads"], min=1, help="torch CPU threads (part of the recipe: results are bitwise reproducible per thread count)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
) -> None:
    """Train the wafer-map autoencoder and write OUT/{checkpoint.pt, history.json, history.csv, loss.png, metrics.json}.

    The model is trained on every map. With --val-split F (default 0.1) the same
    recipe is first trained on the other maps and scored on a held-out share F, so
    the metrics show overfitting. The course recipe: --schedule constant --lr 1e-3.
    """
    # Recipe() checks the choices and the split before anything is read or written.
    recipe = Recipe(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
        schedule=schedule, warmup=warmup, loss=loss, clip=clip, seed=seed, val_split=val_split, threads=threads,
    )
    from .run import check_out

    check_out(out, force=force)  # before the data and before any training

    from .data import load_training_data, split_indices
    from .run import train_run

    dataset = load_training_data(data, labels)
    if val_split > 0:
        split_indices(dataset.n_maps, val_split, seed)  # refuse a split that leaves nothing to train on
    metrics = train_run(dataset, out, recipe, force=force, progress=_progress_factory(not quiet))
    line = f"wrote {out}: training MSE {metrics['train_mse']:.5f}, die accuracy {metrics['train_accuracy']:.4f}, defect recall {metrics['train_defect_recall']:.4f}"
    if metrics.get("holdout_val_mse") is not None:
        line += f"; held-out validation MSE {metrics['holdout_val_mse']:.5f} ({metrics['holdout_n_val']} maps)"
    typer.echo(line + f"; {metrics['seconds']:.1f} s")


if __name__ == "__main__":
    app(prog_name="python -m training")
