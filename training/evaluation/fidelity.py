"""Fidelity by two readers: does a variant still read as its source's class?

* the **out-of-fold reader**: the reference classifier trained on the other
  folds' real maps (:mod:`.readers`), so each map, its reconstruction and
  its variants are read by a model that never saw that map;
* the **all-maps reader**: one reference classifier trained on every real
  map. It has seen each source, so it reads the reconstructions almost as
  well as the real maps, and every die the noise moves away from the source
  costs fidelity: the stricter test of "still the same pattern".

The default noise strength must keep the variants within ``tolerance`` of
the plain reconstructions under **both** readers (the rule of
:func:`.rules.choose_strength`, applied to each reader, taking the
smaller of the two choices).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .folds import DEFAULT_FOLDS
from .metrics import agreement
from .readers import out_of_fold_reader
from .rules import DEFAULT_TOLERANCE, choose_strength

DEFAULT_STRENGTHS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)


def two_reader_fidelity(
    generator: Any,
    maps: np.ndarray,
    labels: np.ndarray,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    *,
    per_source: int = 5,
    seed: int = 0,
    folds: int = DEFAULT_FOLDS,
    tolerance: float = DEFAULT_TOLERANCE,
    say: Callable[[str], None] = lambda _m: None,
) -> dict:
    """Fidelity (share read as the source's class) of reconstructions and of variants per strength."""
    from edge_infer.errors import InputError
    from training.classifier import predict, train_cached

    y = np.asarray(labels).reshape(-1)
    oof = out_of_fold_reader(maps, y, folds, seed, say)
    say(f"all-maps reader: one classifier on all {len(y)} maps (cached)")
    all_model = train_cached(maps, y, seed=seed)
    recon = np.asarray(generator.reconstruct(maps, outline_lock=True))

    def read(x: np.ndarray, src: np.ndarray) -> dict:
        return {"out_of_fold": agreement(oof.read(x, src), y[src]),
                "all_maps": agreement(predict(all_model, x), y[src])}

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
