"""One training run, written as a folder: checkpoint, history, loss plot, metrics.

``runs/NAME/`` appears complete or not at all: everything is written into a
temporary folder beside it and renamed into place at the end, so a crash or
Ctrl-C leaves no half run (and, with ``force``, the old run stays until the
new one is complete).

The shipped model is trained on every map. So that overfitting still shows,
a run first trains the same recipe (same seed) on ``1 - val_split`` of the
maps and measures MSE on the held-out rest; those figures are recorded as
``holdout_*`` beside the final model's own training figures.
"""

from __future__ import annotations

import csv
import io
import platform
from pathlib import Path
from typing import Callable, Optional

from edge_infer.files import atomic_folder, check_folder_target, json_text, jsonable

from .data import TrainingData, split_indices, to_tensor

CHECKPOINT_FORMAT = "edge-infer-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT = "checkpoint.pt"


def check_out(out: Path, *, force: bool) -> bool:
    """Refuse up front (before any training) an output ``atomic_folder`` must
    not replace; returns whether it may replace what is there."""
    return check_folder_target(out, force=force, marker=CHECKPOINT, what="a training run")


def versions() -> dict:
    """Tool versions recorded in a checkpoint (plain strings)."""
    import numpy
    import torch

    import edge_infer

    return {
        "torch": str(torch.__version__),  # a TorchVersion would not load with weights_only
        "numpy": str(numpy.__version__),
        "python": platform.python_version(),
        "edge_infer": edge_infer.__version__,
        "platform": f"{platform.system()}-{platform.machine()}",
    }


def _history_csv(history: dict) -> str:
    cols = ["epoch", "train_loss", "train_mse", "lr"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for row in zip(*(history[c] for c in cols)):
        w.writerow(row)
    return buf.getvalue()


def train_run(
    data: TrainingData,
    out: Path,
    recipe,
    *,
    force: bool = False,
    progress: Optional[Callable[[str, int], Callable]] = None,
) -> dict:
    """Train with ``recipe`` and write the run folder ``out``; returns the metrics.

    ``progress(title, total_steps)`` returns a per-step callback
    ``(epoch, step, running_loss)``; None trains silently.
    """
    import torch

    from .plots import plot_loss
    from .train import COURSE_REPORT_MSE, train

    out = Path(out)
    replace = check_out(out, force=force)
    x_all = to_tensor(data.maps)
    steps = -(-data.n_maps // recipe.batch_size)

    holdout_metrics: dict = {}
    holdout_history: Optional[dict] = None
    if recipe.val_split > 0:
        tr_idx, val_idx = split_indices(data.n_maps, recipe.val_split, recipe.seed)
        tr_steps = -(-len(tr_idx) // recipe.batch_size)
        cb = progress("held-out run", recipe.epochs * tr_steps) if progress else None
        held = train(x_all[torch.from_numpy(tr_idx)], recipe, x_all[torch.from_numpy(val_idx)], progress=cb)
        m = held.metrics
        holdout_metrics = {
            "holdout_val_split": recipe.val_split,
            "holdout_n_train": m["n_train"],
            "holdout_n_val": m["n_val"],
            "holdout_train_mse": m["train_mse"],
            "holdout_val_mse": m["val_mse"],
            "holdout_val_accuracy": m["val_accuracy"],
            "holdout_val_defect_recall": m["val_defect_recall"],
            "holdout_seconds": m["seconds"],
        }
        holdout_history = held.history.as_dict()

    cb = progress("final run, all maps", recipe.epochs * steps) if progress else None
    final = train(x_all, recipe, None, progress=cb)
    metrics = {k: v for k, v in final.metrics.items() if not k.startswith("val_") and k != "n_val"}
    metrics.update(holdout_metrics)
    metrics["validation"] = (
        f"the model is trained on all {data.n_maps} maps; holdout_* figures come from the same recipe "
        f"and seed trained on {holdout_metrics['holdout_n_train']} maps and evaluated on the other "
        f"{holdout_metrics['holdout_n_val']}"
        if holdout_metrics
        else f"the model is trained on all {data.n_maps} maps; no held-out check (--val-split 0)"
    )
    metrics["mse_definition"] = "mean of squared error over all N x 3 x 26 x 26 elements, eval mode, after the last epoch"
    metrics["loss"] = recipe.loss
    metrics["course_report_train_mse"] = COURSE_REPORT_MSE
    metrics = jsonable(metrics)  # NaN (e.g. defect recall without defects) → null

    history = final.history.as_dict()
    history.pop("val_mse", None)
    history_doc = {"final": history, "holdout": holdout_history}
    recipe_d = recipe.as_dict()
    data_d = data.provenance()
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "model": {k: v.detach().clone().contiguous() for k, v in final.model.state_dict().items()},
        "recipe": recipe_d,
        "metrics": metrics,
        "data": data_d,
        "versions": versions(),
    }
    with atomic_folder(out, force=replace) as tmp:
        torch.save(checkpoint, tmp / CHECKPOINT)
        (tmp / "history.json").write_text(json_text(history_doc))
        (tmp / "history.csv").write_text(_history_csv(history))
        (tmp / "metrics.json").write_text(json_text({**metrics, "recipe": recipe_d, "data": data_d}))
        plot_loss(tmp / "loss.png", history, loss_name=recipe.loss, reference=COURSE_REPORT_MSE, holdout=holdout_history)
    return metrics

