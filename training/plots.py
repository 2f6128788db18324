"""The loss plot of a training run (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def plot_loss(
    path: Path,
    history: dict,
    *,
    loss_name: str,
    reference: Optional[float] = None,
    holdout: Optional[dict] = None,
) -> None:
    """Write ``loss.png``: per-epoch training loss (log scale) and reference lines.

    ``history`` has lists ``epoch``, ``train_loss`` (running mean over the
    epoch), ``train_mse`` (eval mode after the epoch). ``holdout`` is the
    same for the held-out run, with ``val_mse``, so overfitting shows as a
    gap between its training and validation curves. ``reference`` is drawn
    as a dashed line (the course report's final training MSE).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    epochs = history["epoch"]
    ax.plot(epochs, history["train_loss"], color="#999999", lw=1, label=f"training {loss_name.upper()} loss (running mean per epoch)")
    ax.plot(epochs, history["train_mse"], color="#1f77b4", lw=2, label="training MSE (all maps)")
    if holdout and holdout.get("val_mse"):
        ax.plot(holdout["epoch"], holdout["train_mse"], color="#2ca02c", lw=1, ls="-", label="training MSE (held-out run)")
        ax.plot(holdout["epoch"], holdout["val_mse"], color="#d62728", lw=1.5, label="validation MSE (held-out maps)")
    if reference is not None:
        ax.axhline(reference, color="black", ls="--", lw=1, label=f"course report final MSE {reference}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("wafer-map autoencoder: training loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, format="png")
