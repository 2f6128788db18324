"""The evaluation's rules: the default noise strength and the done-when targets.

Both are stated so that anyone can rerun them on the figures of a report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_infer.errors import InputError

#: The choice rule's tolerance: fidelity may fall this far (as a share, so
#: 0.03 = 3 points) below the reconstructions' own fidelity.
DEFAULT_TOLERANCE = 0.03

#: Diversity target: in-wafer dies differing from the source's reconstruction, on average.
MIN_CHANGED = 0.03


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
