"""Noise sweep: fidelity against diversity over relative noise strengths, and the default.

For each strength the runtime generates ``--per-source`` variants of every
real map (method ``noise``, outline locked, fixed seed), and
:mod:`training.evaluation.quality` measures them with the out-of-fold
reference classifiers (:mod:`training.evaluation.readers`). The course's
absolute σ schedule is measured too, as one point. The default strength is
then chosen by the rule in :func:`training.evaluation.rules.choose_strength`
and printed, the picture is written as a PNG and the figures as JSON beside it.

Run ``python -m training.sweep --help``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from edge_infer.commands import handle_errors
from edge_infer.errors import EdgeInferError, InputError
from edge_infer.wafer import to_states
# The evaluation's CLI options (module level: typer reads the annotations here).
from training.evaluation.cli import DataOpt, LabelsOpt, ModelOpt, number_list, write_json
from training.evaluation.folds import DEFAULT_FOLDS
from training.evaluation.metrics import agreement, changed_share, source_rows
from training.evaluation.quality import quality_metrics
from training.evaluation.readers import out_of_fold_reader
from training.evaluation.rules import DEFAULT_TOLERANCE, choose_strength, done_when

DEFAULT_STRENGTHS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0)
COURSE = "course"


def generate(
    generator: Any,
    maps: np.ndarray,
    labels: np.ndarray,
    strength: Union[float, str],
    *,
    per_source: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """The runtime's ``augment`` output maps for one strength (or ``"course"``).

    The one place that knows the runtime's keyword names, so the sweep and
    the docs' commands measure exactly what ``edge-infer augment`` makes.
    """
    kwargs: dict[str, Any] = {"per_source": per_source, "maps": maps, "labels": labels,
                              "seed": seed, "method": "noise", "outline_lock": True}
    if strength == COURSE:
        kwargs["mode"] = COURSE
    else:
        kwargs.update(mode="relative", strength=float(strength))
    res = generator.augment(**kwargs)
    src = np.asarray(res.sources).reshape(-1)
    expected = np.repeat(np.arange(len(maps)), per_source)
    if not np.array_equal(src, expected):
        raise EdgeInferError("augment returned variants out of the documented row order")
    return np.asarray(res.maps, dtype=np.float32)


def reconstruct(generator: Any, maps: np.ndarray) -> np.ndarray:
    """The plain reconstructions (no noise), outline-locked like the generated maps.

    Locked because the generated maps are: a die compared between the two
    then differs only by what the noise did, never by the outline rule.
    """
    return np.asarray(generator.reconstruct(maps, outline_lock=True), dtype=np.float32)


SUMMARY_KEYS = ("valid", "fidelity_generated", "changed_vs_reconstruction", "changed_vs_source",
                "identical_to_reconstruction", "sibling_identical", "copy_of_real")


def run_sweep(
    generator: Any,
    maps: np.ndarray,
    labels: np.ndarray,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    *,
    per_source: int = 5,
    seed: int = 0,
    n_folds: int = DEFAULT_FOLDS,
    tolerance: float = DEFAULT_TOLERANCE,
    progress: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Measure every strength and the course schedule; choose the default. JSON-ready dict."""
    y = np.asarray(labels).reshape(-1)
    reader = out_of_fold_reader(maps, y, n_folds, seed, progress)
    recon = reconstruct(generator, maps)
    real_pred = reader.read(maps)
    recon_pred = reader.read(recon)
    sources = source_rows(len(maps) * per_source, len(maps), per_source)

    def measure(strength: Union[float, str]) -> dict[str, Any]:
        progress(f"strength {strength}: generating {len(sources)} maps and measuring")
        gen = generate(generator, maps, y, strength, per_source=per_source, seed=seed)
        rep = quality_metrics(maps, y, gen, sources, recon, real_pred=real_pred,
                              recon_pred=recon_pred, gen_pred=reader.read(gen, sources))
        row: dict[str, Any] = {"strength": strength}
        row.update({k: rep["overall"][k] for k in SUMMARY_KEYS})
        row["targets"] = {k: t["pass"] for k, t in done_when(rep["overall"], tolerance).items()}
        row["fidelity_generated_per_class"] = {
            name: r["fidelity_generated"] for name, r in rep["per_class"].items()}
        return row

    points = [measure(s) for s in strengths]
    course = measure(COURSE)
    recon_fid = agreement(recon_pred, y)
    chosen = choose_strength([p["strength"] for p in points],
                                [p["fidelity_generated"] for p in points], recon_fid, tolerance)
    return {
        "rule": (f"the largest tested strength such that it and every smaller tested strength "
                 f"have fidelity >= reconstructions' fidelity - {100 * tolerance:g} points"),
        "tolerance": tolerance,
        "chosen_strength": chosen,
        "fidelity_real": agreement(real_pred, y),
        "fidelity_reconstruction": recon_fid,
        "reconstruction_changed_vs_source": float(np.mean(changed_share(
            to_states(recon), to_states(maps), to_states(maps)))),
        "per_source": per_source, "seed": seed, "folds": n_folds, "maps": int(len(maps)),
        "points": points,
        "course": course,
    }


def format_sweep(result: dict[str, Any]) -> str:
    """The sweep as a fixed-width text table, the chosen row marked."""
    head = (f"{'strength':>9}{'valid':>8}{'fidelity':>10}{'Δ recon':>9}{'Δ source':>10}"
            f"{'=recon':>8}{'=sibling':>10}{'=real':>8}")
    lines = [f"real maps' fidelity {100 * result['fidelity_real']:.1f}%, reconstructions' "
             f"{100 * result['fidelity_reconstruction']:.1f}%", head, "-" * len(head)]
    for p in result["points"] + [result["course"]]:
        mark = " ← default" if p["strength"] == result["chosen_strength"] else ""
        lines.append(
            f"{str(p['strength']):>9}{100 * p['valid']:7.1f}%{100 * p['fidelity_generated']:9.1f}%"
            f"{100 * p['changed_vs_reconstruction']:8.1f}%{100 * p['changed_vs_source']:9.1f}%"
            f"{100 * p['identical_to_reconstruction']:7.2f}%{100 * p['sibling_identical']:9.2f}%"
            f"{100 * p['copy_of_real']:7.2f}%{mark}")
    lines.append(f"rule: {result['rule']}")
    lines.append(f"chosen default strength: {result['chosen_strength']:g}")
    chosen = next(p for p in result["points"] if p["strength"] == result["chosen_strength"])
    failed = [name for name, ok in chosen["targets"].items() if not ok]
    lines.append("done-when targets at the default: " + ("all met" if not failed else "NOT met: " + "; ".join(failed)))
    return "\n".join(lines)


def plot_sweep(result: dict[str, Any], path: Path, *, force: bool = False) -> Path:
    """Fidelity (y) against in-wafer dies changed vs the reconstruction (x), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge_infer.files import atomic_path

    pts = result["points"]
    x = [100 * p["changed_vs_reconstruction"] for p in pts]
    yv = [100 * p["fidelity_generated"] for p in pts]
    recon = 100 * result["fidelity_reconstruction"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    ax.axhline(100 * result["fidelity_real"], color="0.55", lw=1, ls=":", label="real maps (ceiling)")
    ax.axhline(recon, color="0.3", lw=1, label="plain reconstructions")
    ax.axhspan(recon - 100 * result["tolerance"], recon, color="tab:green", alpha=0.12,
               label=f"within {100 * result['tolerance']:g} points")
    ax.plot(x, yv, "o-", color="tab:blue", label="relative strength")
    for i, (xi, yi, p) in enumerate(zip(x, yv, pts)):
        # alternate above/below: the weak strengths crowd together near the top left
        ax.annotate(f"{p['strength']:g}", (xi, yi), textcoords="offset points",
                    xytext=(5, 5) if i % 2 == 0 else (-4, -13), fontsize=8)
    c = result["course"]
    ax.plot([100 * c["changed_vs_reconstruction"]], [100 * c["fidelity_generated"]], "s",
            color="tab:orange", ms=8, label="course σ = i/10")
    chosen = next(p for p in pts if p["strength"] == result["chosen_strength"])
    ax.plot([100 * chosen["changed_vs_reconstruction"]], [100 * chosen["fidelity_generated"]], "*",
            color="tab:red", ms=16, label=f"default {result['chosen_strength']:g}")
    ax.set_xlabel("in-wafer dies changed vs the source's reconstruction (%)")
    ax.set_ylabel("fidelity: reference classifier keeps the class (%)")
    ax.set_title(f"Noise sweep ({result['maps']} maps × {result['per_source']} variants, out-of-fold)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    with atomic_path(path, force=force) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def _app() -> Any:
    import typer

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=__doc__.split("\n\n")[0])

    @app.command()
    @handle_errors
    def main(
        data: DataOpt,
        out: Path = typer.Option(..., "--out", help="PNG to write; the figures go to the same name with .json."),
        labels: LabelsOpt = None,
        strengths: str = typer.Option(",".join(f"{s:g}" for s in DEFAULT_STRENGTHS), "--strengths",
                                      help="Comma-separated relative strengths (> 0) to test."),
        per_source: int = typer.Option(5, "--per-source", min=1, help="Variants per real map."),
        model: ModelOpt = None,
        tolerance: float = typer.Option(DEFAULT_TOLERANCE, "--tolerance", min=0.0,
                                        help="Allowed fidelity drop below the reconstructions', as a share (0.03 = 3 points)."),
        folds: int = typer.Option(DEFAULT_FOLDS, "--folds", min=2),
        seed: int = typer.Option(0, "--seed"),
        force: bool = typer.Option(False, "--force", help="Overwrite the PNG and JSON."),
    ) -> None:
        """Sweep the noise strength, draw fidelity against diversity, choose the default."""
        from edge_infer import WaferGenerator
        from edge_infer.files import check_targets
        from edge_infer.io import load_dataset
        from training.evaluation.report import describe_model

        def say(msg: str) -> None:
            typer.echo(msg, err=True)

        values = number_list(strengths, "--strengths")
        if min(values) <= 0:
            raise InputError("--strengths must list at least one strength, all > 0")
        json_path = out.with_suffix(".json")
        check_targets([out, json_path], force=force)
        real = load_dataset(data, labels, require_labels=True)
        gen = WaferGenerator.load(model)
        result = run_sweep(gen, real.maps, real.labels, sorted(values), per_source=per_source,
                           seed=seed, n_folds=folds, tolerance=tolerance, progress=say)
        result["inputs"] = {"data": str(data), "model": describe_model(gen)}
        typer.echo(format_sweep(result))
        plot_sweep(result, out, force=force)
        write_json(json_path, result, force=force)
        say(f"wrote {out} and {json_path}")

    return app


def main() -> None:
    """Entry point of ``python -m training.sweep``."""
    _app()(prog_name="python -m training.sweep")


if __name__ == "__main__":
    sys.exit(main())
