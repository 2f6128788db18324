"""The out-of-fold reader: reference classifiers that never saw the map they read.

The maps are split into folds (:func:`.folds.stratified_group_folds`); one
reference classifier (:mod:`training.classifier`, trained on real maps only)
per fold learns the other folds' maps. A real map, its reconstruction and
every variant made from it are then read by the model of the map's fold.
The one-set evaluation (:mod:`.quality`), the two-reader fidelity
(:mod:`.fidelity`) and the noise sweep (:mod:`training.sweep`) all read
through :func:`out_of_fold_reader`. torch is imported only when a model is
trained or asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edge_infer.wafer import to_states

from .folds import stratified_group_folds


def fit_fold_models(
    maps: np.ndarray, labels: np.ndarray, folds: np.ndarray, *, seed: int = 0
) -> list[Any]:
    """One reference classifier per fold, each trained on the other folds' real maps (cached)."""
    from training.classifier import train_cached

    y = np.asarray(labels).reshape(-1)
    models = []
    for f in range(int(folds.max()) + 1):
        train = folds != f
        models.append(train_cached(maps[train], y[train], seed=seed + f))
    return models


def out_of_fold_predict(models: Sequence[Any], maps: np.ndarray, fold_of_row: np.ndarray) -> np.ndarray:
    """Predict each row with the model of its fold (the one that never saw its source)."""
    from training.classifier import predict

    pred = np.empty(len(maps), dtype=np.int64)
    for f, model in enumerate(models):
        rows = np.flatnonzero(fold_of_row == f)
        if len(rows):
            pred[rows] = predict(model, maps[rows])
    return pred


@dataclass(frozen=True)
class OutOfFoldReader:
    """The fold of each real map and the reference classifier of each fold."""

    folds: np.ndarray
    models: list[Any]

    def read(self, maps: np.ndarray, sources: Optional[np.ndarray] = None) -> np.ndarray:
        """Predicted class of each map, by the model of its source's fold.

        ``sources[i]``: the real map that map i was made from; None when the
        maps are the real maps themselves (or their reconstructions), row for row.
        """
        fold_of_row = self.folds if sources is None else self.folds[np.asarray(sources).reshape(-1)]
        return out_of_fold_predict(self.models, maps, fold_of_row)


def out_of_fold_reader(
    maps: np.ndarray,
    labels: np.ndarray,
    n_folds: int,
    seed: int = 0,
    progress: Callable[[str], None] = lambda _msg: None,
) -> OutOfFoldReader:
    """Split the real maps into folds (seeded) and train (or load) a reference classifier per fold."""
    y = np.asarray(labels).reshape(-1)
    folds = stratified_group_folds(to_states(maps), y, n_folds, seed)
    progress(f"reference classifiers: {n_folds} folds (cached per data and recipe)")
    return OutOfFoldReader(folds, fit_fold_models(maps, y, folds, seed=seed))
