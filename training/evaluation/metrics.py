"""Classification metrics of the protocol: scikit-learn's, in the project's conventions.

scikit-learn is a training/development dependency (``pip install -e '.[train]'``),
never a runtime one: nothing under ``edge_infer/`` imports this module.
"""

from __future__ import annotations

import math

import numpy as np


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean F1 over the classes in ``y_true`` or ``y_pred`` (0 where undefined)."""
    from sklearn.metrics import f1_score

    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    if not len(y_true):
        return math.nan
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def per_class_recall(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Recall of each class ``(n_classes,)``; NaN for a class absent from ``y_true``."""
    from sklearn.metrics import recall_score

    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    out = np.full(n_classes, np.nan)
    present = np.unique(y_true)
    if present.size:
        out[present] = recall_score(y_true, y_pred, labels=present, average=None, zero_division=0)
    return out


def paired_stats(values: "list[float]") -> dict:
    """Mean, std (population, as the issue's table), count and how many are > 0."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if not v.size:
        return {"mean": math.nan, "std": math.nan, "n": 0, "positive": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size), "positive": int((v > 0).sum())}
