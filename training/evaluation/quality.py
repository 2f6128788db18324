"""The quality of one generated set: validity, fidelity, diversity, usefulness.

A generated map is worth something only if it is a valid wafer, still shows
its class's pattern, and is not a copy of its source. This module measures
exactly that for the output of ``edge-infer augment`` (the k variants of
source i at rows k·i … k·i + k − 1):

* **validity** -- share of maps that are proper one-hot die maps with their
  source's wafer outline;
* **fidelity** -- share of generated maps that a reference classifier, trained
  on real maps only, puts in their source's class; the same classifier's
  agreement on the sources' plain reconstructions and on the real maps is the
  ceiling. Predictions are *out of fold* (:mod:`.readers`): each map, its
  reconstruction and its variants are judged by the model that never saw it;
* **diversity** -- share of in-wafer dies that differ from the source's
  reconstruction and from the source; share of variants identical to a
  sibling, to their reconstruction, or to any real map;
* **usefulness** -- macro-F1 and per-class recall on each held-out fold of a
  classifier trained on the real training folds versus one trained on them
  plus the variants generated from them.

The metrics are plain numpy functions (:mod:`.metrics`); only the reference
classifier (:mod:`training.classifier`) needs torch, and it is imported
lazily. ``python -m training.evaluation quality`` runs :func:`evaluate_set`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edge_infer.errors import InputError
from edge_infer.wafer import CLASS_NAMES, N_STATES, to_states

from .folds import DEFAULT_FOLDS
from .metrics import changed_share, copies_of, macro_f1, per_class_recall, sibling_duplicates, source_rows, validity
from .readers import out_of_fold_reader
from .rules import done_when


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
    classifiers of :func:`.readers.fit_fold_models`, trained with the same recipe.
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
                         "macro_f1": macro_f1(y[test], pred),
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


def load_generated(folder: Path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """``gen_data.npy`` (+ ``gen_label.npy`` if present) of an ``augment`` output folder.

    Maps are loaded as stored, *not* validated: counting invalid maps is this
    module's job, so a broken generated map must not stop the evaluation.
    """
    from edge_infer.errors import DataFileError
    from edge_infer.generator import DATA_FILE, LABEL_FILE
    from edge_infer.io import load_npy

    folder = Path(folder)
    data_file = folder / DATA_FILE if folder.is_dir() else folder
    if not data_file.exists():
        raise DataFileError(f"{data_file}: no such file (expected the augment output {DATA_FILE})")
    maps = load_npy(data_file)
    if maps.ndim != 4 or maps.shape[1:] != (26, 26, N_STATES):
        raise InputError(f"{data_file} has shape {maps.shape}; expected (N, 26, 26, 3)")
    label_file = data_file.with_name(LABEL_FILE)
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
    reader = out_of_fold_reader(real_maps, y, n_folds, seed, progress)
    folds, models = reader.folds, reader.models
    report: dict[str, Any] = {
        "counts": {"real": int(len(real_maps)), "generated": int(len(generated)),
                   "per_source": int(len(generated) // len(real_maps)), "folds": n_folds,
                   "seed": seed},
    }
    report.update(quality_metrics(
        real_maps, y, generated, sources, reconstructions,
        real_pred=reader.read(real_maps),
        recon_pred=reader.read(reconstructions),
        gen_pred=reader.read(generated, sources),
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
