"""Metrics: plain numpy functions over maps, die states and predictions.

* structure of an ``augment`` output (:func:`source_rows`);
* **validity** -- one-hot maps with their source's wafer outline;
* **diversity** -- dies changed, variants identical to a sibling or a real map;
* **classification** -- agreement (fidelity), and scikit-learn's macro-F1 and
  per-class recall in the project's conventions, paired statistics.

scikit-learn is a training/development dependency (``pip install -e '.[train]'``),
never a runtime one: nothing under ``edge_infer/`` imports this module.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from edge_infer.errors import InputError
# to_states (argmax) never refuses a map, unlike as_states: the evaluation must
# be able to look at broken generated maps to count them.
from edge_infer.wafer import BOUNDARY, N_STATES, to_states

# --------------------------------------------------------------- structure


def source_rows(
    n_generated: int, n_real: int, per_source: Optional[int] = None
) -> np.ndarray:
    """Row of the source map for each generated row, in the ``augment`` order.

    ``per_source`` (k) is inferred as ``n_generated / n_real`` when not
    given; a size that does not fit raises :class:`InputError`.
    """
    if n_real <= 0:
        raise InputError("there are no real maps to compare against")
    if per_source is None:
        if n_generated % n_real:
            raise InputError(
                f"{n_generated} generated maps is not a whole multiple of the {n_real} real "
                "maps; give --per-source, or generate from exactly these real maps"
            )
        per_source = n_generated // n_real
    if per_source < 1 or n_generated != per_source * n_real:
        raise InputError(
            f"{n_generated} generated maps do not match {n_real} sources × {per_source} per source"
        )
    return np.repeat(np.arange(n_real), per_source)


# ---------------------------------------------------------------- validity


def is_onehot(maps: np.ndarray) -> np.ndarray:
    """Per map: every die is exactly one of the three states (values 0/1, one 1)."""
    arr = np.asarray(maps)
    if arr.ndim != 4 or arr.shape[-1] != N_STATES:
        raise InputError(f"maps have shape {arr.shape}; expected (N, 26, 26, 3)")
    finite = np.isfinite(arr).all(axis=(1, 2, 3))
    binary = ((arr == 0) | (arr == 1)).all(axis=(1, 2, 3))
    one = (arr.sum(axis=-1) == 1).all(axis=(1, 2))
    return finite & binary & one


def outline_matches(generated: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Per map: the generated map's boundary dies are exactly its source's."""
    gen_states = to_states(generated)
    src_states = to_states(sources)
    return ((gen_states == BOUNDARY) == (src_states == BOUNDARY)).all(axis=(1, 2))


def validity(generated: np.ndarray, sources: np.ndarray) -> dict[str, np.ndarray]:
    """Per-map booleans ``onehot``, ``outline`` and ``valid`` (both).

    ``sources`` holds, for each generated map, its source map (same length).
    """
    onehot = is_onehot(generated)
    outline = outline_matches(generated, sources)
    return {"onehot": onehot, "outline": outline, "valid": onehot & outline}


# --------------------------------------------------------------- diversity


def changed_share(a: np.ndarray, b: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per map: share of ``reference``'s in-wafer dies whose state differs between a and b.

    All three are die states ``(N, 26, 26)``; the in-wafer dies (the
    denominator) are those not boundary in ``reference`` (the source map).
    """
    inside = np.asarray(reference) != BOUNDARY
    diff = (np.asarray(a) != np.asarray(b)) & inside
    n_inside = inside.sum(axis=(1, 2))
    return diff.sum(axis=(1, 2)) / np.maximum(n_inside, 1)


def row_keys(states: np.ndarray) -> np.ndarray:
    """One hashable bytes key per map, for exact-equality lookups."""
    flat = np.ascontiguousarray(np.asarray(states, dtype=np.uint8).reshape(len(states), -1))
    return flat.view(np.dtype((np.void, flat.shape[1]))).reshape(-1)


def sibling_duplicates(states: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Per map: identical to at least one other variant of the same source."""
    keys = row_keys(states)
    out = np.zeros(len(states), dtype=bool)
    for src in np.unique(sources):
        rows = np.flatnonzero(sources == src)
        _, inverse, counts = np.unique(keys[rows], return_inverse=True, return_counts=True)
        out[rows] = counts[inverse.reshape(-1)] > 1
    return out


def copies_of(states: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Per map: identical (every die) to some map in ``pool`` (die states)."""
    return np.isin(row_keys(states), row_keys(pool))


# ----------------------------------------------------------- classification


def agreement(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Share of predictions equal to the labels (fidelity when labels are the sources')."""
    p = np.asarray(predicted).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if len(p) != len(y):
        raise InputError(f"{len(p)} predictions but {len(y)} labels")
    return float((p == y).mean()) if len(p) else math.nan


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
