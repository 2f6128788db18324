"""Fidelity by two readers: does a variant still read as its source's class?

* the **out-of-fold reader**: the reference classifier trained on the other
  folds' real maps (:func:`training.evaluate.fit_fold_models`), so each map,
  its reconstruction and its variants are read by a model that never saw
  that map;
* the **all-maps reader**: one reference classifier trained on every real
  map. It has seen each source, so it reads the reconstructions almost as
  well as the real maps, and every die the noise moves away from the source
  costs fidelity: the stricter test of "still the same pattern".

The default noise strength must keep the variants within ``tolerance`` of
the plain reconstructions under **both** readers (the rule of
:func:`training.evaluate.choose_strength`, applied to each reader, taking the
smaller of the two choices).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from training.evaluate import DEFAULT_TOLERANCE, choose_strength, fit_fold_models, out_of_fold_predict, stratified_group_folds

DEFAULT_STRENGTHS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)


def two_reader_fidelity(
    generator: Any,
    maps: np.ndarray,
    labels: np.ndarray,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    *,
    per_source: int = 5,
    seed: int = 0,
    folds: int = 5,
    tolerance: float = DEFAULT_TOLERANCE,
    say: Callable[[str], None] = lambda _m: None,
) -> dict:
    """Fidelity (share read as the source's class) of reconstructions and of variants per strength."""
    from edge_infer.errors import InputError
    from edge_infer.wafer import to_states
    from training.classifier import predict, train_cached

    y = np.asarray(labels).reshape(-1)
    fold = stratified_group_folds(to_states(maps), y, folds, seed)
    say(f"readers: {folds} out-of-fold classifiers and one on all {len(y)} maps (cached)")
    oof_models = fit_fold_models(maps, y, fold, seed=seed)
    all_model = train_cached(maps, y, seed=seed)
    recon = np.asarray(generator.reconstruct(maps, outline_lock=True))

    def read(x: np.ndarray, src: np.ndarray) -> dict:
        return {"out_of_fold": float((out_of_fold_predict(oof_models, x, fold[src]) == y[src]).mean()),
                "all_maps": float((predict(all_model, x) == y[src]).mean())}

    rows = np.arange(len(y))
    out: dict = {"real": read(maps, rows), "reconstruction": read(recon, rows), "strengths": []}
    for s in strengths:
        say(f"strength {s:g}: {per_source} variants of each of {len(y)} maps")
        g = generator.augment(per_source, maps=maps, labels=y, seed=seed, strength=float(s))
        fid = read(np.asarray(g.maps), np.asarray(g.sources))
        out["strengths"].append({"strength": float(s), **fid,
                                 **{f"delta_{k}": fid[k] - out["reconstruction"][k] for k in fid}})
    chosen = {}
    for reader in ("out_of_fold", "all_maps"):
        try:
            chosen[reader] = choose_strength([r["strength"] for r in out["strengths"]],
                                             [r[reader] for r in out["strengths"]],
                                             out["reconstruction"][reader], tolerance)
        except InputError:
            chosen[reader] = None
    both = [v for v in chosen.values() if v is not None]
    out["chosen"] = {**chosen, "both": min(both) if len(both) == 2 else None, "tolerance": tolerance,
                     "rule": "largest tested strength such that it and every smaller one keep fidelity within "
                             f"{100 * tolerance:g} points of the reconstructions', under each reader; the smaller of the two"}
    return out


def format_fidelity(report: dict) -> str:
    """A Markdown table: fidelity under both readers per strength, against the reconstructions."""
    lines = ["| maps | out-of-fold reader | Δ vs reconstructions | all-maps reader | Δ vs reconstructions |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name in ("real", "reconstruction"):
        r = report[name]
        lines.append(f"| {name} | {100 * r['out_of_fold']:.1f} % | | {100 * r['all_maps']:.1f} % | |")
    for r in report["strengths"]:
        lines.append(f"| strength {r['strength']:g} | {100 * r['out_of_fold']:.1f} % | {100 * r['delta_out_of_fold']:+.1f} | "
                     f"{100 * r['all_maps']:.1f} % | {100 * r['delta_all_maps']:+.1f} |")
    return "\n".join(lines)
