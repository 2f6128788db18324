"""Reports as text: the usefulness protocol's and one generated set's.

* the protocol (:mod:`.protocol`): from per-(fold, arm, seed) results to paired
  gains, the tables, the plot and the recommendation rule;
* one generated set (:mod:`.quality`): the per-class quality table, the
  usefulness table, the done-when lines, and which bundle made the maps.

Every report is written as JSON by :func:`edge_infer.files.json_text`.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

from edge_infer.wafer import CLASS_NAMES

from .metrics import paired_stats
from .protocol import Arm

if TYPE_CHECKING:
    from edge_infer import WaferGenerator

#: The recommendation rule's thresholds (see :func:`recommend`).
MIN_POSITIVE_FOLDS = 4


def _scores(rows: Sequence[dict], arm: str) -> dict[tuple[int, int], float]:
    return {(r["fold"], r["seed"]): r["macro_f1"] for r in rows if r["arm"] == arm}


def _paired(rows: Sequence[dict], arm: str, other: str) -> Optional[dict]:
    """Gain of ``arm`` over ``other`` paired by (fold, seed), in points; folds > 0 by fold mean."""
    a, b = _scores(rows, arm), _scores(rows, other)
    pairs = sorted(set(a) & set(b))
    if not pairs:
        return None
    gains = [100 * (a[p] - b[p]) for p in pairs]
    out = paired_stats(gains)
    per_fold: dict[int, list[float]] = {}
    for p, g in zip(pairs, gains):
        per_fold.setdefault(p[0], []).append(g)
    fold_means = {f: float(np.mean(v)) for f, v in sorted(per_fold.items())}
    out.update(per_fold=fold_means, folds=len(fold_means),
               folds_positive=int(sum(v > 0 for v in fold_means.values())))
    return out


def summarise(rows: Sequence[dict], arms: Sequence[Arm], classes: Sequence[str] = CLASS_NAMES) -> list[dict]:
    """One entry per arm: macro-F1, gains over its control and over the real maps, recall per class."""
    out = []
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm.name]
        if not mine:
            continue
        f1 = paired_stats([100 * r["macro_f1"] for r in mine])
        rec = np.array([[np.nan if v is None else v for v in r["recall"]] for r in mine], dtype=float)
        with np.errstate(all="ignore"):
            recall = {c: (None if np.all(np.isnan(rec[:, i])) else float(100 * np.nanmean(rec[:, i])))
                      for i, c in enumerate(classes)}
        entry: dict[str, Any] = {
            "arm": arm.name, "label": arm.label, "control": arm.control,
            "recipe": None if arm.recipe is None else asdict(arm.recipe),
            "method": arm.method, "noise": arm.noise, "autoencoder": arm.ae,
            "runs": len(mine), "macro_f1": f1, "recall": recall,
            "train_maps": float(np.mean([sum(r["train_counts"]) for r in mine])),
            "gain_vs_control": _paired(rows, arm.name, arm.control) if arm.control else None,
            "gain_vs_real": _paired(rows, arm.name, "real") if arm.name != "real" else None,
        }
        out.append(entry)
    return out


def recommend(summary: Sequence[dict]) -> dict:
    """The default recipe by a stated rule.

    **Rule:** among the arms the product can make with its shipped bundle
    (the runtime's augment, per-channel noise, the plain autoencoder), take
    those whose gain over the real maps (same steps) is positive in at least
    4 of 5 folds; an arm that uses the autoencoder must also beat its own
    control by the same test (mean > 0, positive in at least 4 of 5 folds;
    else its variants add nothing sure and the control, which needs no
    autoencoder, is the better recipe). The one with the largest mean gain
    over the real maps wins.
    """
    eligible = []
    for e in summary:
        g = e.get("gain_vs_real")
        if e["recipe"] is None or e["method"] != "recipe" or e["noise"] != "channel" or e["autoencoder"] != "plain":
            continue
        if g is None or g["folds_positive"] < min(MIN_POSITIVE_FOLDS, g["folds"]):
            continue
        c = e.get("gain_vs_control")
        if e["control"] not in (None, "real") and (
                c is None or not c["mean"] > 0 or c["folds_positive"] < min(MIN_POSITIVE_FOLDS, c["folds"])):
            continue
        eligible.append(e)
    rule = ("largest mean macro-F1 gain over the real maps (same steps), among product recipes gaining in "
            f"at least {MIN_POSITIVE_FOLDS} of 5 folds; a generating recipe must also beat its own control "
            f"(copies instead of variants) on average and in at least {MIN_POSITIVE_FOLDS} of 5 folds")
    if not eligible:
        return {"rule": rule, "recipe": None, "why": "no arm qualifies"}
    best = max(eligible, key=lambda e: e["gain_vs_real"]["mean"])
    return {"rule": rule, "recipe": best["recipe"]["name"], "arm": best["arm"],
            "gain_vs_real": best["gain_vs_real"]["mean"], "eligible": [e["arm"] for e in eligible]}


#: Issue 14's done-when: the recommended recipe gains this much over the real maps.
TARGET_GAIN = 4.0
GEOMETRIC_BASE = "symmetries+balanced-copies"


def verdict(summary: Sequence[dict], recommended: dict) -> dict:
    """The issue's questions, answered from the summary.

    * does the recommended recipe lift macro-F1 by ≥ :data:`TARGET_GAIN` points
      over the real maps at the same steps?
    * do the autoencoder's variants add anything on top of rotations/flips +
      balance? (every arm whose control is :data:`GEOMETRIC_BASE`: its gain over it)
    """
    by = {e["arm"]: e for e in summary}
    out: dict = {}
    rec = by.get(recommended.get("arm") or "")
    if rec is not None and rec["gain_vs_real"]:
        g = rec["gain_vs_real"]
        out["recommended_gain_vs_real"] = {"arm": rec["arm"], "mean": g["mean"], "std": g["std"],
                                           "folds_positive": g["folds_positive"],
                                           "pass": bool(g["mean"] >= TARGET_GAIN), "target": TARGET_GAIN}
    on_top = {e["arm"]: {k: e["gain_vs_control"][k] for k in ("mean", "std", "n", "folds_positive", "folds")}
              for e in summary if e["control"] == GEOMETRIC_BASE and e["gain_vs_control"]}
    out["generator_on_top_of_symmetries_and_balance"] = on_top
    # "Adds" by the recommendation rule's own test: a mean gain over the copies that
    # is positive in at least 4 of 5 folds.
    passing = {k: g for k, g in on_top.items()
               if g["mean"] > 0 and g["folds_positive"] >= min(MIN_POSITIVE_FOLDS, g["folds"])}
    pool = passing or on_top
    best = max(pool.items(), key=lambda kv: kv[1]["mean"], default=None)
    if best is not None:
        out["generator_adds"] = bool(passing)
        out["best_generator_arm"] = best[0]
        out["generator_adds_points"] = best[1]["mean"]
    return out


def _pm(s: Optional[dict]) -> str:
    if not s or s.get("n", 0) == 0 or math.isnan(s["mean"]):
        return "–"
    return f"{s['mean']:+.1f} ± {s['std']:.1f}"


def format_table(summary: Sequence[dict]) -> str:
    """A Markdown table: macro-F1, gain over the real maps and over the arm's own control."""
    lines = ["| arm | macro-F1 | gain vs real (points) | folds > 0 | control | gain vs control | folds > 0 |",
             "| --- | ---: | ---: | ---: | --- | ---: | ---: |"]
    for e in summary:
        f1 = e["macro_f1"]
        gr, gc = e["gain_vs_real"], e["gain_vs_control"]
        own = e["control"] not in (None, "real")
        fr = f"{gr['folds_positive']}/{gr['folds']}" if gr else ""
        fc = f"{gc['folds_positive']}/{gc['folds']}" if gc and own else ""
        lines.append(f"| {e['arm']} | {f1['mean']:.1f} ± {f1['std']:.1f} | {_pm(gr)} | {fr} | "
                     f"{e['control'] or ''} | {_pm(gc) if own else ''} | {fc} |")
    return "\n".join(lines)


def format_recall(summary: Sequence[dict], classes: Sequence[str] = CLASS_NAMES) -> str:
    """Held-out recall per class (%, mean over folds and seeds holding the class)."""
    head = "| class | " + " | ".join(e["arm"] for e in summary) + " |"
    lines = [head, "| --- |" + " ---: |" * len(summary)]
    for c in classes:
        cells = [("–" if e["recall"].get(c) is None else f"{e['recall'][c]:.0f}") for e in summary]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: Sequence[dict], path: Any, title: str, *, force: bool = False) -> None:
    """Gains over the real maps and over each arm's own control, mean ± std, one bar pair per arm.

    Written atomically: an interrupted run never leaves a half-written picture.
    """
    import matplotlib

    from edge_infer.files import atomic_path

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    arms = [e for e in summary if e["arm"] != "real"]
    fig = Figure(figsize=(9, 0.45 * len(arms) + 1.6), dpi=110)
    ax = fig.add_subplot(111)
    ys = np.arange(len(arms))
    for off, key, colour, name in ((-0.18, "gain_vs_real", "#4c72b0", "vs real maps (same steps)"),
                                   (0.18, "gain_vs_control", "#dd8452", "vs its own control")):
        vals = [e[key]["mean"] if e[key] and (key == "gain_vs_real" or e["control"] not in (None, "real"))
                else np.nan for e in arms]
        errs = [e[key]["std"] if e[key] else 0 for e in arms]
        ax.barh(ys + off, vals, height=0.34, xerr=errs, color=colour, label=name, capsize=2)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels([e["arm"] for e in arms], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("held-out macro-F1 gain (points), mean ± std over folds × seeds")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    with atomic_path(path, force=force) as tmp:
        fig.savefig(tmp, format="png")


# ------------------------------------------------------ one generated set


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


def format_done_when(targets: dict[str, dict[str, Any]]) -> str:
    """One line per target: PASS/FAIL, the target, the figure (as a percentage)."""
    return "\n".join(f"{'PASS' if t['pass'] else 'FAIL'}  {name}: {100 * t['value']:+.2f}%"
                     if "fidelity" in name else
                     f"{'PASS' if t['pass'] else 'FAIL'}  {name}: {100 * t['value']:.2f}%"
                     for name, t in targets.items())


def describe_model(generator: WaferGenerator) -> dict[str, Any]:
    """Which bundle made the maps: folder, creation time, training epochs, manifest hash.

    ``generator`` is the runtime's :class:`~edge_infer.WaferGenerator`; its
    bundle's manifest is verified (its hash checked) when it is loaded, but
    creation time, provenance and noise defaults are optional keys there.
    """
    bundle = generator.bundle
    manifest = bundle.manifest
    return {
        "path": str(bundle.path),
        "created_utc": manifest.get("created_utc"),
        "epochs": (manifest.get("provenance") or {}).get("epochs"),
        "manifest_sha256": manifest["manifest_sha256"],
        "noise_defaults": dict(manifest.get("noise_defaults") or {}),
    }


# ------------------------------------------------------ two-reader fidelity


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
