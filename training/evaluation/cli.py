"""``python -m training.evaluation``: the usefulness protocol and the two-reader fidelity."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from edge_infer.errors import EdgeInferError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Evaluate augmentation recipes honestly: per-fold autoencoders, same-steps controls, paired gains.")


def _say(msg: str) -> None:
    typer.echo(f"[{time.strftime('%H:%M:%S')}] {msg}", err=True)


def cpu_name() -> str:
    """The CPU model (``lscpu``'s Model name), for every figure's context."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache(cache: Optional[Path]) -> Path:
    if cache is not None:
        return cache
    from training.classifier import cache_dir

    return cache_dir()


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1)


@app.command()
def usefulness(
    data: Path = typer.Option(..., "--data", help="Real maps: wafer.zip, a folder with data.npy + label.npy, or a .npy (with --labels)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Labels .npy when --data is a .npy of maps."),
    arms: str = typer.Option("issue", "--set", help="Comma-separated arm or set names. Sets: issue, generator, quick, all."),
    seeds: str = typer.Option("0", "--seeds", help="Classifier seeds, comma-separated; every arm trains one classifier per fold and seed."),
    steps: int = typer.Option(1000, "--steps", min=1, help="Optimiser steps of every classifier (the same in every arm)."),
    folds: int = typer.Option(5, "--folds", min=2, help="Folds (stratified by class, identical maps together)."),
    ae_epochs: int = typer.Option(100, "--ae-epochs", min=1, help="Epochs of each per-fold autoencoder (the shipped recipe: 100)."),
    only_folds: Optional[str] = typer.Option(None, "--only-folds", help="Run only these folds (comma-separated, 0-based): to split a long run; the report covers what the cache holds."),
    report_only: bool = typer.Option(False, "--report-only", help="Train nothing: report the results the cache holds for these arms, folds and seeds."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Cache of autoencoders and results (default: $EDGE_INFER_EVAL_CACHE, else the temp folder)."),
    out: Path = typer.Option(Path("usefulness.json"), "--out", help="JSON report."),
    plot_path: Optional[Path] = typer.Option(None, "--plot", help="PNG of the gains (default: --out with .png)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out and --plot."),
) -> None:
    """Train a classifier on each arm's training set, per fold and seed, and report paired gains."""
    from edge_infer.io import check_targets, load_dataset, save_bytes

    from . import report
    from .protocol import Protocol, resolve_arms, run_protocol

    t0 = time.perf_counter()
    try:
        png = plot_path or out.with_suffix(".png")
        check_targets([out, png], force=force)
        chosen = resolve_arms([a.strip() for a in arms.split(",") if a.strip()])
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
        fold_list = None if only_folds is None else [int(f) for f in only_folds.split(",") if f.strip()]
        ds = load_dataset(data, labels, require_labels=True)
        proto = Protocol(folds=folds, seeds=seed_list, steps=steps, ae_epochs=ae_epochs, cache=_cache(cache))
        _say(f"{len(chosen)} arms × {folds if fold_list is None else len(fold_list)} folds × {len(seed_list)} seeds, "
             f"{steps} steps each; cache {proto.cache}")
        rows = run_protocol(ds.maps, ds.labels, chosen, proto, say=_say, only_folds=fold_list, compute=not report_only)
        if not rows:
            raise ValueError("no results to report: the cache holds none for these arms, folds and seeds")
    except (EdgeInferError, ValueError) as exc:
        _fail(exc)
    summary = report.summarise(rows, chosen)
    wall = time.perf_counter() - t0
    doc = {
        "protocol": {"folds": folds, "seeds": list(seed_list), "steps": steps, "batch": 64, "ae_epochs": ae_epochs,
                     "folds_run": fold_list, "autoencoder": "retrained per fold on its training maps only"},
        "data": str(data), "cpu": cpu_name(), "cores": os.cpu_count(),
        "wall_seconds": round(wall, 1),
        "results_cached": sum(r["cached"] for r in rows), "results_computed": sum(not r["cached"] for r in rows),
        # What the results cost when they were computed (cached ones cost nothing in this run).
        "train_seconds_recorded": round(sum(r["seconds_train"] for r in rows), 1),
        "arms": summary, "recommended": report.recommend(summary), "runs": rows,
    }
    doc["verdict"] = report.verdict(summary, doc["recommended"])
    typer.echo(report.format_table(summary))
    typer.echo("")
    typer.echo(report.format_recall(summary))
    rec = doc["recommended"]
    typer.echo(f"\nrecommended recipe: {rec['recipe']} (rule: {rec['rule']})")
    v = doc["verdict"]
    if "recommended_gain_vs_real" in v:
        g = v["recommended_gain_vs_real"]
        typer.echo(f"{'PASS' if g['pass'] else 'FAIL'}  recommended recipe gains ≥ {g['target']:g} points over the "
                   f"real maps (same steps): {g['mean']:+.1f} ± {g['std']:.1f}, {g['folds_positive']} folds > 0")
    for name, g in v.get("generator_on_top_of_symmetries_and_balance", {}).items():
        typer.echo(f"      {name} over {report.GEOMETRIC_BASE}: {g['mean']:+.1f} ± {g['std']:.1f} "
                   f"({g['folds_positive']}/{g['folds']} folds > 0)")
    if "generator_adds" in v:
        typer.echo(f"the autoencoder's variants {'add' if v['generator_adds'] else 'do not add'} to rotations/flips + "
                   f"balance by the 4-of-5-folds test (best: {v['best_generator_arm']}, "
                   f"{v['generator_adds_points']:+.1f} points)")
    typer.echo(f"wall time {wall:.0f} s on {cpu_name()}: {doc['results_computed']} classifiers trained now, "
               f"{doc['results_cached']} results from the cache (they took {doc['train_seconds_recorded']:.0f} s of "
               "classifier training when computed)")
    try:
        save_bytes(out, report.dumps(doc).encode(), force=force)
        report.plot(summary, png, f"{folds} folds × seeds {','.join(map(str, seed_list))} where run "
                    f"(runs per arm: JSON), {steps} steps each; autoencoder retrained per fold")
    except EdgeInferError as exc:
        _fail(exc)
    _say(f"wrote {out} and {png}")


@app.command()
def fidelity(
    data: Path = typer.Option(..., "--data", help="Real maps the bundle's variants are made from."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Labels .npy when --data is a .npy of maps."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model bundle (default: the packaged one)."),
    strengths: str = typer.Option("0.1,0.2,0.3,0.4,0.5,0.75,1.0", "--strengths", help="Relative noise strengths to test."),
    seed: int = typer.Option(0, "--seed", help="Seed of the folds, readers and noise."),
    out: Path = typer.Option(Path("fidelity.json"), "--out", help="JSON report."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out."),
) -> None:
    """Fidelity of variants per strength under two readers (out-of-fold, all-maps), and the strength the rule picks."""
    from edge_infer import WaferGenerator
    from edge_infer.io import check_targets, load_dataset, save_bytes

    from . import report
    from .fidelity import format_fidelity, two_reader_fidelity

    t0 = time.perf_counter()
    try:
        check_targets([out], force=force)
        ds = load_dataset(data, labels, require_labels=True)
        gen = WaferGenerator.load(model)
        res = two_reader_fidelity(gen, ds.maps, ds.labels, [float(s) for s in strengths.split(",")], seed=seed, say=_say)
    except (EdgeInferError, ValueError) as exc:
        _fail(exc)
    res.update(cpu=cpu_name(), wall_seconds=round(time.perf_counter() - t0, 1), data=str(data),
               model=str(getattr(gen.bundle, "path", "")))
    typer.echo(format_fidelity(res))
    c = res["chosen"]
    typer.echo(f"\nchosen strength: out-of-fold reader {c['out_of_fold']}, all-maps reader {c['all_maps']}, "
               f"both: {c['both']}\nwall time {res['wall_seconds']:.0f} s on {cpu_name()}")
    try:
        save_bytes(out, report.dumps(res).encode(), force=force)
    except EdgeInferError as exc:
        _fail(exc)


def main() -> None:
    app(prog_name="python -m training.evaluation")


if __name__ == "__main__":
    sys.exit(main())
