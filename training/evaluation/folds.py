"""The fold split of every evaluation: stratified by class, identical maps together.

One dealer for the out-of-fold readers (:mod:`.readers`), the one-set
usefulness test (:mod:`.quality`), the usefulness protocol (:mod:`.protocol`),
the two-reader fidelity and the noise sweep.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

#: How many folds the out-of-fold predictions and the usefulness tests use.
DEFAULT_FOLDS = 5


def stratified_group_folds(
    states: np.ndarray, labels: np.ndarray, n_folds: int = DEFAULT_FOLDS, seed: int = 0
) -> np.ndarray:
    """Fold index ``(N,)`` for each map: stratified by class, identical maps together.

    Identical maps (the course data has 97 groups of copies) go to the same
    fold, so no held-out map is also a training map. Each group takes its
    first member's label for stratification; within a class the groups are
    shuffled and dealt round-robin, continuing where the previous class
    stopped so fold sizes stay even. A class with fewer groups than folds
    (Donut: one map) lands in fewer folds; that is reported, not hidden.

    Kept rather than scikit-learn's ``StratifiedGroupKFold``, which satisfies
    the same two rules but deals other folds: every figure in
    docs/evaluation.md and the evidence for the default strength were
    measured on these folds, and the usefulness protocol costs hours to rerun.
    """
    import numpy as np  # here, not at import: the CLI's --help reads DEFAULT_FOLDS only

    from .metrics import row_keys

    labels = np.asarray(labels).reshape(-1)
    _, group = np.unique(row_keys(states), return_inverse=True)
    group = group.reshape(-1)
    n_groups = int(group.max()) + 1 if len(group) else 0
    first = np.full(n_groups, len(labels), dtype=np.int64)
    np.minimum.at(first, group, np.arange(len(labels)))
    group_label = labels[first]
    rng = np.random.default_rng(seed)
    group_fold = np.empty(n_groups, dtype=np.int64)
    cursor = 0
    for c in np.unique(group_label):
        members = rng.permutation(np.flatnonzero(group_label == c))
        group_fold[members] = (cursor + np.arange(len(members))) % n_folds
        cursor = (cursor + len(members)) % n_folds
    return group_fold[group]
