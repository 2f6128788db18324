"""How good is a set of generated wafer maps? Validity, fidelity, diversity, usefulness.

A generated map is worth something only if it is a valid wafer, still shows
its class's pattern, and is not a copy of its source. This module measures
exactly that for the output of ``edge-infer augment`` (the k variants of
source i at rows k·i … k·i + k − 1):

* **validity** -- share of maps that are proper one-hot die maps with their
  source's wafer outline;
* **fidelity** -- share of generated maps that a reference classifier, trained
  on real maps only, puts in their source's class; the same classifier's
  agreement on the sources' plain reconstructions and on the real maps is the
  ceiling. Predictions are *out of fold*: the maps are split into folds
  (stratified by class, identical maps kept together), and each map, its
  reconstruction and its variants are judged by the model that never saw it;
* **diversity** -- share of in-wafer dies that differ from the source's
  reconstruction and from the source; share of variants identical to a
  sibling, to their reconstruction, or to any real map;
* **usefulness** -- macro-F1 and per-class recall on each held-out fold of a
  classifier trained on the real training folds versus one trained on them
  plus the variants generated from them.

The metrics are plain numpy functions; only the reference classifier
(:mod:`training.classifier`) needs torch, and it is imported lazily.

Run ``python -m training.evaluate --help``.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edge_infer.errors import EdgeInferError, InputError
# to_states (argmax) never refuses a map, unlike as_states: the evaluation must
# be able to look at broken generated maps to count them.
from edge_infer.wafer import BOUNDARY, CLASS_NAMES, N_STATES, to_states

#: How many folds the out-of-fold predictions and the usefulness test use.
DEFAULT_FOLDS = 5

#: The choice rule's tolerance: fidelity may fall this far (as a share, so
#: 0.03 = 3 points) below the reconstructions' own fidelity.
DEFAULT_TOLERANCE = 0.03


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


def _row_keys(states: np.ndarray) -> np.ndarray:
    """One hashable bytes key per map, for exact-equality lookups."""
    flat = np.ascontiguousarray(np.asarray(states, dtype=np.uint8).reshape(len(states), -1))
    return flat.view(np.dtype((np.void, flat.shape[1]))).reshape(-1)


def sibling_duplicates(states: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Per map: identical to at least one other variant of the same source."""
    keys = _row_keys(states)
    out = np.zeros(len(states), dtype=bool)
    for src in np.unique(sources):
        rows = np.flatnonzero(sources == src)
        _, inverse, counts = np.unique(keys[rows], return_inverse=True, return_counts=True)
        out[rows] = counts[inverse.reshape(-1)] > 1
    return out


def copies_of(states: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Per map: identical (every die) to some map in ``pool`` (die states)."""
    return np.isin(_row_keys(states), _row_keys(pool))


# ----------------------------------------------------------- classification


def agreement(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Share of predictions equal to the labels (fidelity when labels are the sources')."""
    p = np.asarray(predicted).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if len(p) != len(y):
        raise InputError(f"{len(p)} predictions but {len(y)} labels")
    return float((p == y).mean()) if len(p) else math.nan


def per_class_recall(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Recall of each class ``(n_classes,)``; NaN for a class absent from ``y_true``."""
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    out = np.full(n_classes, np.nan)
    for c in range(n_classes):
        mask = y_true == c
        if mask.any():
            out[c] = float((y_pred[mask] == c).mean())
    return out


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean F1 over the classes that occur in ``y_true`` or ``y_pred``.

    Same convention as scikit-learn's ``f1_score(average="macro")``: a class
    never predicted and never true is left out; an undefined F1 counts as 0.
    """
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    scores = []
    for c in range(n_classes):
        tp = int(((y_true == c) & (y_pred == c)).sum())
        fp = int(((y_true != c) & (y_pred == c)).sum())
        fn = int(((y_true == c) & (y_pred != c)).sum())
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else math.nan


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
    """
    labels = np.asarray(labels).reshape(-1)
    _, group = np.unique(_row_keys(states), return_inverse=True)
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


# ------------------------------------------------------------ choice rule


def choose_strength(
    strengths: Sequence[float],
    fidelities: Sequence[float],
    reconstruction_fidelity: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> float:
    """The default noise strength, by a rule anyone can rerun.

    **Rule:** the largest strength *s* such that every tested strength up to
    and including *s* has fidelity ≥ reconstructions' fidelity − ``tolerance``.
    Requiring it of all smaller strengths too keeps one lucky point beyond a
    failing one from being chosen. Noise only adds diversity as it grows, so
    the largest admissible strength is the most diverse one that keeps the
    class pattern. Raises :class:`InputError` if even the smallest fails.
    """
    s = np.asarray(strengths, dtype=float)
    f = np.asarray(fidelities, dtype=float)
    if s.shape != f.shape or s.size == 0:
        raise InputError("strengths and fidelities must be equally long and not empty")
    order = np.argsort(s)
    ok = f[order] >= reconstruction_fidelity - tolerance - 1e-12
    if not ok[0]:
        raise InputError(
            f"even strength {s[order][0]:g} has fidelity {f[order][0]:.3f}, more than "
            f"{tolerance:.3f} below the reconstructions' {reconstruction_fidelity:.3f}"
        )
    n_ok = len(ok) if ok.all() else int(np.argmin(ok))
    return float(s[order][n_ok - 1])


# ------------------------------------------------------------ done-when

#: Diversity target: in-wafer dies differing from the source's reconstruction, on average.
MIN_CHANGED = 0.03


def done_when(overall: dict[str, Any], tolerance: float = DEFAULT_TOLERANCE) -> dict[str, dict[str, Any]]:
    """The issue's targets for a generated set, each with its figure and pass/fail.

    100 % valid; ≥ 3 % of in-wafer dies differ from the reconstruction on
    average; fidelity within ``tolerance`` of the reconstructions' own; no
    sibling variant identical to another.
    """
    fid, rec = overall.get("fidelity_generated"), overall.get("fidelity_reconstruction")
    out = {
        "all valid": {"value": overall["valid"], "pass": overall["valid"] == 1.0},
        f"dies changed vs reconstruction >= {100 * MIN_CHANGED:g}%": {
            "value": overall["changed_vs_reconstruction"],
            "pass": overall["changed_vs_reconstruction"] >= MIN_CHANGED},
        "no identical siblings": {"value": overall["sibling_identical"],
                                  "pass": overall["sibling_identical"] == 0.0},
    }
    if fid is not None and rec is not None:
        out[f"fidelity within {100 * tolerance:g} points of reconstructions'"] = {
            "value": fid - rec, "pass": fid >= rec - tolerance - 1e-12}
    return out


def format_done_when(targets: dict[str, dict[str, Any]]) -> str:
    """One line per target: PASS/FAIL, the target, the figure (as a percentage)."""
    return "\n".join(f"{'PASS' if t['pass'] else 'FAIL'}  {name}: {100 * t['value']:+.2f}%"
                     if "fidelity" in name else
                     f"{'PASS' if t['pass'] else 'FAIL'}  {name}: {100 * t['value']:.2f}%"
                     for name, t in targets.items())


# ------------------------------------------------------ reference classifier


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


# ------------------------------------------------------------ the report


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else math.nan


def quality_metrics(
    real_maps: np.ndarray,
    real_labels: np.ndarray,
    generated: np.ndarray,
    sources: np.ndarray,
    reconstructions: np.ndarray,
    *,
    real_pred: Optional[np.ndarray] = None,
    recon_pred: Optional[np.ndarray] = None,
    gen_pred: Optional[np.ndarray] = None,
    classes: Sequence[str] = CLASS_NAMES,
) -> dict[str, Any]:
    """Validity, fidelity and diversity, overall and per class of the source.

    ``sources[i]`` is the row in ``real_maps`` of generated map i;
    ``reconstructions`` are the real maps' plain reconstructions (decoder of
    the encoder, no noise). Predictions are optional (fidelity is left out
    without them). Every share is a fraction in 0..1.
    """
    y = np.asarray(real_labels).reshape(-1)
    sources = np.asarray(sources).reshape(-1)
    real_states = to_states(real_maps)
    recon_states = to_states(reconstructions)
    gen_states = to_states(generated)
    src_states = real_states[sources]
    val = validity(generated, np.asarray(real_maps)[sources])
    per_map = {
        "valid": val["valid"],
        "onehot": val["onehot"],
        "outline": val["outline"],
        "changed_vs_reconstruction": changed_share(gen_states, recon_states[sources], src_states),
        "changed_vs_source": changed_share(gen_states, src_states, src_states),
        "identical_to_reconstruction": (gen_states == recon_states[sources]).all(axis=(1, 2)),
        "sibling_identical": sibling_duplicates(gen_states, sources),
        "copy_of_real": copies_of(gen_states, real_states),
    }
    per_source: dict[str, np.ndarray] = {
        "reconstruction_changed_vs_source": changed_share(recon_states, real_states, real_states),
    }
    if gen_pred is not None:
        per_map["fidelity_generated"] = np.asarray(gen_pred).reshape(-1) == y[sources]
    if recon_pred is not None:
        per_source["fidelity_reconstruction"] = np.asarray(recon_pred).reshape(-1) == y
    if real_pred is not None:
        per_source["fidelity_real"] = np.asarray(real_pred).reshape(-1) == y

    def summary(gen_rows: np.ndarray, src_rows: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {"sources": int(src_rows.sum()), "generated": int(gen_rows.sum())}
        for k, v in per_source.items():
            out[k] = _mean(v[src_rows])
        for k, v in per_map.items():
            out[k] = _mean(v[gen_rows])
        return out

    report: dict[str, Any] = {"overall": summary(np.ones(len(sources), bool), np.ones(len(y), bool))}
    report["per_class"] = {
        name: summary(y[sources] == c, y == c)
        for c, name in enumerate(classes)
        if (y == c).any()
    }
    return report


def usefulness(
    real_maps: np.ndarray,
    real_labels: np.ndarray,
    generated: np.ndarray,
    gen_labels: np.ndarray,
    sources: np.ndarray,
    folds: np.ndarray,
    baseline_models: Sequence[Any],
    *,
    seed: int = 0,
    classes: Sequence[str] = CLASS_NAMES,
    progress: Callable[[str], None] = lambda _msg: None,
    generate_fold: Optional[Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] = None,
) -> dict[str, Any]:
    """Held-out macro-F1 / recall: real training folds alone vs plus their variants.

    By default the variants of fold f's training set are the rows of
    ``generated`` whose source lies outside f. That is exact for ``noise``,
    but ``mix`` blends each source with a partner that may be a held-out
    map; ``generate_fold(train_mask) -> (maps, labels)`` instead generates
    from the training folds alone (see ``--per-fold-generation``).

    Three classifiers per fold, one recipe: ``real`` (the reference model),
    ``real_repeated`` (the real training maps repeated to the augmented set's
    size: same optimiser steps, no new content) and ``augmented``.

    For fold f the augmented classifier trains on the real maps outside f and
    the generated maps whose *source* is outside f, so nothing derived from a
    held-out map is trained on (the autoencoder itself is another matter:
    see the caveat in the report). The baseline models are the reference
    classifiers of :func:`fit_fold_models`, trained with the same recipe.
    """
    from training.classifier import predict, train_cached

    y = np.asarray(real_labels).reshape(-1)
    gy = np.asarray(gen_labels).reshape(-1)
    n_classes = len(classes)
    rows: list[dict[str, Any]] = []
    for f, base in enumerate(baseline_models):
        test = folds == f
        train = ~test
        if generate_fold is not None:
            fold_x, fold_y = generate_fold(train)
        else:
            fold_x, fold_y = generated[train[sources]], gy[train[sources]]
        progress(f"usefulness fold {f + 1}/{len(baseline_models)}: training on "
                 f"{int(train.sum())} real + {len(fold_x)} generated maps")
        aug_x = np.concatenate([real_maps[train], fold_x]).astype(np.float32)
        aug_y = np.concatenate([y[train], np.asarray(fold_y).reshape(-1)])
        aug = train_cached(aug_x, aug_y, seed=seed + f)
        # Control: the real training maps repeated to the same size, so the same number of
        # optimiser steps; a gain of "augmented" over this is due to the generated content,
        # not to training longer.
        reps = max(1, round(len(aug_x) / max(1, int(train.sum()))))
        rep = train_cached(np.concatenate([real_maps[train]] * reps).astype(np.float32),
                           np.concatenate([y[train]] * reps), seed=seed + f)
        for name, model in (("real", base), ("real_repeated", rep), ("augmented", aug)):
            pred = predict(model, real_maps[test])
            rows.append({"fold": f, "train": name,
                         "macro_f1": macro_f1(y[test], pred, n_classes),
                         "recall": per_class_recall(y[test], pred, n_classes)})

    def stats(values: list[float]) -> dict[str, Any]:
        v = np.asarray([x for x in values if not math.isnan(x)])
        return {"mean": _mean(v), "std": float(v.std()) if len(v) else math.nan, "folds": int(len(v))}

    out: dict[str, Any] = {"folds": len(baseline_models)}
    out["macro_f1_per_fold"] = {name: [r["macro_f1"] for r in rows if r["train"] == name]
                                for name in ("real", "real_repeated", "augmented")}
    # Paired by fold: the folds differ more from each other than the arms do.
    out["macro_f1_gain_over_repeated"] = stats(
        [a - b for a, b in zip(out["macro_f1_per_fold"]["augmented"],
                               out["macro_f1_per_fold"]["real_repeated"])])
    for name in ("real", "real_repeated", "augmented"):
        mine = [r for r in rows if r["train"] == name]
        out[f"macro_f1_{name}"] = stats([r["macro_f1"] for r in mine])
        out[f"recall_{name}"] = {
            cname: stats([float(r["recall"][c]) for r in mine])
            for c, cname in enumerate(classes) if (y == c).any()
        }
    return out


# ---------------------------------------------------------------- display


def _pct(x: float) -> str:
    return "   -  " if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:5.1f}%"


QUALITY_COLUMNS = (
    ("sources", "src"),
    ("generated", "gen"),
    ("valid", "valid"),
    ("fidelity_real", "fid real"),
    ("fidelity_reconstruction", "fid recon"),
    ("fidelity_generated", "fid gen"),
    ("changed_vs_reconstruction", "Δ recon"),
    ("changed_vs_source", "Δ source"),
    ("identical_to_reconstruction", "=recon"),
    ("sibling_identical", "=sibling"),
    ("copy_of_real", "=real"),
)


def format_quality(report: dict[str, Any]) -> str:
    """The per-class quality table as fixed-width text."""
    head = f"{'class':<10}" + "".join(f"{label:>10}" for _, label in QUALITY_COLUMNS)
    lines = [head, "-" * len(head)]
    items = list(report["per_class"].items()) + [("overall", report["overall"])]
    for name, row in items:
        cells = []
        for key, _ in QUALITY_COLUMNS:
            v = row.get(key)
            cells.append(f"{v:>10d}" if isinstance(v, int) else f"{_pct(v):>10}")
        lines.append(f"{name:<10}" + "".join(cells))
    return "\n".join(lines)


def format_usefulness(use: dict[str, Any]) -> str:
    """The usefulness table (mean ± std over folds) as fixed-width text."""
    def ms(s: dict[str, Any]) -> str:
        if math.isnan(s["mean"]):
            return "-"
        return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"

    lines = [f"{'held-out real maps':<20}{'real only':>16}{'real repeated':>16}"
             f"{'real+generated':>18}{'folds':>7}"]
    lines.append("-" * len(lines[0]))
    lines.append(f"{'macro-F1 (%)':<20}{ms(use['macro_f1_real']):>16}{ms(use['macro_f1_real_repeated']):>16}"
                 f"{ms(use['macro_f1_augmented']):>18}{use['macro_f1_real']['folds']:>7}")
    for name, s in use["recall_real"].items():
        r = use["recall_real_repeated"][name]
        a = use["recall_augmented"][name]
        lines.append(f"{'recall ' + name:<20}{ms(s):>16}{ms(r):>16}{ms(a):>18}{s['folds']:>7}")
    gain = use.get("macro_f1_gain_over_repeated")
    if gain is not None and not math.isnan(gain["mean"]):
        lines.append(f"macro-F1 gain of real+generated over real repeated, paired by fold: "
                     f"{100 * gain['mean']:+.1f} ± {100 * gain['std']:.1f} points")
    lines.append("(real repeated: the real training maps repeated to the augmented set's size, "
                 "so as many training steps as real+generated)")
    return "\n".join(lines)


# ------------------------------------------------------------- whole runs


def load_generated(folder: Path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """``gen_data.npy`` (+ ``gen_label.npy`` if present) of an ``augment`` output folder.

    Maps are loaded as stored, *not* validated: counting invalid maps is this
    module's job, so a broken generated map must not stop the evaluation.
    """
    from edge_infer.errors import DataFileError
    from edge_infer.io import load_npy

    folder = Path(folder)
    data_file = folder / "gen_data.npy" if folder.is_dir() else folder
    if not data_file.exists():
        raise DataFileError(f"{data_file}: no such file (expected the augment output gen_data.npy)")
    maps = load_npy(data_file)
    if maps.ndim != 4 or maps.shape[1:] != (26, 26, N_STATES):
        raise InputError(f"{data_file} has shape {maps.shape}; expected (N, 26, 26, 3)")
    label_file = data_file.with_name("gen_label.npy")
    labels = load_npy(label_file) if label_file.exists() else None
    return maps.astype(np.float32), labels


def evaluate_set(
    real_maps: np.ndarray,
    real_labels: np.ndarray,
    generated: np.ndarray,
    gen_labels: Optional[np.ndarray],
    reconstructions: np.ndarray,
    *,
    per_source: Optional[int] = None,
    n_folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    with_usefulness: bool = True,
    progress: Callable[[str], None] = lambda _msg: None,
    generate_fold: Optional[Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] = None,
) -> dict[str, Any]:
    """The whole evaluation of one generated set: the JSON report as a dict.

    ``generate_fold``: see :func:`usefulness`.
    """
    y = np.asarray(real_labels).reshape(-1)
    sources = source_rows(len(generated), len(real_maps), per_source)
    if gen_labels is not None:
        gy = np.asarray(gen_labels).reshape(-1)
        if len(gy) != len(generated):
            raise InputError(f"{len(gy)} generated labels for {len(generated)} generated maps")
        bad = int((gy != y[sources]).sum())
        if bad:
            raise InputError(
                f"{bad} generated labels differ from their source's label: the generated set "
                "does not line up with --data (variants of source i must be rows k·i … k·i+k−1)"
            )
    folds = stratified_group_folds(to_states(real_maps), y, n_folds, seed)
    progress(f"reference classifiers: {n_folds} folds (cached per data and recipe)")
    models = fit_fold_models(real_maps, y, folds, seed=seed)
    report: dict[str, Any] = {
        "counts": {"real": int(len(real_maps)), "generated": int(len(generated)),
                   "per_source": int(len(generated) // len(real_maps)), "folds": n_folds,
                   "seed": seed},
    }
    report.update(quality_metrics(
        real_maps, y, generated, sources, reconstructions,
        real_pred=out_of_fold_predict(models, real_maps, folds),
        recon_pred=out_of_fold_predict(models, reconstructions, folds),
        gen_pred=out_of_fold_predict(models, generated, folds[sources]),
    ))
    absent = [CLASS_NAMES[c] for c in np.unique(y) if len(np.unique(folds[y == c])) < n_folds]
    report["caveats"] = [
        "The autoencoder that made the generated maps was trained on all real maps, held-out "
        "folds included; fidelity and usefulness are therefore optimistic for unseen data.",
        "Fidelity predictions are out of fold: each map, its reconstruction and its variants are "
        "classified by the reference model trained on the other folds.",
    ]
    if absent:
        report["caveats"].append(
            "Classes in fewer folds than there are (too few maps): " + ", ".join(absent)
            + "; their recall is averaged over the folds that hold them, and a fold's training "
            "set may lack them entirely."
        )
    report["targets"] = done_when(report["overall"])
    if with_usefulness:
        report["usefulness"] = usefulness(
            real_maps, y, generated, y[sources], sources, folds, models, seed=seed,
            progress=progress, generate_fold=generate_fold,
        )
        if generate_fold is None:
            report["caveats"].append(
                "Usefulness trains on the given set's variants of training-fold sources. That is "
                "exact for method noise; with method mix a variant's partner may be a held-out "
                "map (a leak that inflated macro-F1 from 65.0 to 77.3 in docs/evaluation.md): "
                "use --per-fold-generation for mix.")
        report["usefulness"]["generated_from"] = (
            "regenerated per fold from the training folds only" if generate_fold is not None
            else "the given set's variants whose source is in the training folds")
    return report


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps_report(report: dict[str, Any]) -> str:
    """The report as JSON text (NaN written as null)."""
    def clean(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, float) and math.isnan(o):
            return None
        return o
    return json.dumps(clean(report), indent=2, default=_json_default) + "\n"


# -------------------------------------------------------------------- CLI


def load_generator(model: Optional[Path]) -> Any:
    """The runtime's WaferGenerator for a bundle folder (None: the default bundle)."""
    from edge_infer import WaferGenerator  # the runtime: torch-free

    return WaferGenerator.load(model)


def describe_model(generator: Any) -> dict[str, Any]:
    """Which bundle made the maps: folder, creation time, training epochs, manifest hash."""
    b = getattr(generator, "bundle", None)
    manifest = getattr(b, "manifest", None) or {}
    return {
        "path": str(getattr(b, "path", getattr(b, "folder", ""))),
        "created_utc": manifest.get("created_utc"),
        "epochs": (manifest.get("provenance") or {}).get("epochs"),
        "manifest_sha256": manifest.get("manifest_sha256"),
        "noise_defaults": dict(manifest.get("noise_defaults") or {}),
    }


def _app() -> Any:
    import typer

    app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])

    @app.command()
    def main(
        data: Path = typer.Option(..., "--data", help="Real maps: wafer.zip, a folder with data.npy + label.npy, or a .npy (with --labels)."),
        generated: Path = typer.Option(..., "--generated", help="Folder with gen_data.npy (+ gen_label.npy): the augment output made from --data."),
        labels: Optional[Path] = typer.Option(None, "--labels", help="Labels .npy when --data is a .npy of maps."),
        per_source: Optional[int] = typer.Option(None, "--per-source", help="Variants per source map (default: generated count / real count)."),
        model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model bundle folder for the reconstructions (default: $EDGE_INFER_MODEL, else the packaged one)."),
        folds: int = typer.Option(DEFAULT_FOLDS, "--folds", min=2, help="Folds for out-of-fold fidelity and usefulness."),
        seed: int = typer.Option(0, "--seed", help="Seed of the folds and the classifiers."),
        no_usefulness: bool = typer.Option(False, "--no-usefulness", help="Skip the (slow) usefulness test."),
        per_fold: bool = typer.Option(False, "--per-fold-generation", help="For usefulness, regenerate each fold's variants from its training folds only, with the settings below (needed for --method mix, whose partners may be held-out maps)."),
        gen_strength: Optional[float] = typer.Option(None, "--strength", help="With --per-fold-generation: the augment --strength used (default: the bundle's)."),
        gen_method: Optional[str] = typer.Option(None, "--method", help="With --per-fold-generation: the augment --method used."),
        gen_mode: Optional[str] = typer.Option(None, "--noise-mode", help="With --per-fold-generation: the augment --noise-mode used."),
        gen_seed: int = typer.Option(0, "--gen-seed", help="With --per-fold-generation: the augment --seed used."),
        out: Optional[Path] = typer.Option(None, "--out", help="Write the JSON report here."),
        force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
    ) -> None:
        """Evaluate generated wafer maps against the real maps they came from."""
        from edge_infer.io import check_targets, load_dataset, save_bytes

        def say(msg: str) -> None:
            typer.echo(msg, err=True)

        try:
            if out is not None:
                check_targets([out], force=force)
            real = load_dataset(data, labels, require_labels=True)
            gen, gen_labels = load_generated(generated)
            say(f"reconstructing {len(real.maps)} real maps with the bundle")
            generator = load_generator(model)
            recon = generator.reconstruct(real.maps, outline_lock=True)
            k = int(source_rows(len(gen), len(real.maps), per_source).size // len(real.maps))
            generate_fold = None
            if per_fold:
                def generate_fold(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                    # The runtime's warnings (mix falling back to noise for a one-map class)
                    # become one note line each, not a Python warning with a source line.
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        res = generator.augment(k, maps=real.maps[train], labels=real.labels[train],
                                                seed=gen_seed, strength=gen_strength,
                                                method=gen_method, mode=gen_mode)
                    for w in caught:
                        say(f"note: {w.message}")
                    return np.asarray(res.maps, dtype=np.float32), np.asarray(res.labels)
            report = evaluate_set(
                real.maps, real.labels, gen, gen_labels, np.asarray(recon),
                per_source=per_source, n_folds=folds, seed=seed,
                with_usefulness=not no_usefulness, progress=say, generate_fold=generate_fold,
            )
            report["inputs"] = {"data": str(data), "generated": str(generated),
                                "model": describe_model(generator)}
            typer.echo(format_quality(report))
            if "usefulness" in report:
                typer.echo("")
                typer.echo(format_usefulness(report["usefulness"]))
            typer.echo("")
            typer.echo(format_done_when(report["targets"]))
            for c in report["caveats"]:
                typer.echo(f"note: {c}")
            if out is not None:
                save_bytes(out, dumps_report(report).encode(), force=force)
                say(f"wrote {out}")
        except EdgeInferError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None

    return app


def main() -> None:
    """Entry point of ``python -m training.evaluate``."""
    _app()(prog_name="python -m training.evaluate")


if __name__ == "__main__":
    sys.exit(main())
