"""``python -m training.evaluation``: one generated set's quality, the usefulness protocol, the two-reader fidelity.

Every command is wrapped in :func:`edge_infer.commands.handle_errors` (errors
as one ``error:`` line and exit 1, Ctrl-C exit 130), checks its outputs
before any work (:func:`edge_infer.files.check_targets`) and writes JSON with
:func:`edge_infer.files.json_text`.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from edge_infer.commands import handle_errors
from edge_infer.errors import InputError

from .folds import DEFAULT_FOLDS

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Evaluate generated maps and augmentation recipes honestly: out-of-fold readers, "
                       "per-fold autoencoders, same-steps controls, paired gains.")


# The options every evaluation command (and the sweep) takes, so they read the same everywhere.
DataOpt = Annotated[Path, typer.Option(
    "--data", help="Real maps: wafer.zip, a folder with data.npy + label.npy, or a .npy (with --labels).")]
LabelsOpt = Annotated[Optional[Path], typer.Option("--labels", help="Labels .npy when --data is a .npy of maps.")]
ModelOpt = Annotated[Optional[Path], typer.Option(
    "--model", "-m", help="Model bundle folder (default: $EDGE_INFER_MODEL, else the packaged one).")]


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


def number_list(text: str, option: str, kind: Callable[[str], float] = float, what: str = "numbers") -> list:
    """Comma-separated numbers of an option (``"0.1,0.3"``); an :class:`InputError` naming the option otherwise."""
    try:
        values = [kind(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"{option} must be {what} separated by commas, not {text!r}") from None
    if not values:
        raise InputError(f"{option} must list at least one value")
    return values


def write_json(path: Path, doc: dict, *, force: bool) -> None:
    """A report as JSON (:func:`edge_infer.files.json_text`), atomically, in the order it was built."""
    from edge_infer.files import atomic_path, json_text

    with atomic_path(path, force=force) as tmp:
        tmp.write_bytes(json_text(doc, sort_keys=False).encode())


@app.command()
@handle_errors
def quality(
    data: DataOpt,
    generated: Path = typer.Option(..., "--generated", help="Folder with gen_data.npy (+ gen_label.npy): the augment output made from --data."),
    labels: LabelsOpt = None,
    per_source: Optional[int] = typer.Option(None, "--per-source", help="Variants per source map (default: generated count / real count)."),
    model: ModelOpt = None,
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
    """Judge one augment output: validity, out-of-fold fidelity, diversity, usefulness (per class)."""
    import numpy as np

    from edge_infer import WaferGenerator
    from edge_infer.files import check_targets
    from edge_infer.io import load_dataset

    from . import report
    from .metrics import source_rows
    from .quality import evaluate_set, load_generated

    def say(msg: str) -> None:
        typer.echo(msg, err=True)

    if out is not None:
        check_targets([out], force=force)
    real = load_dataset(data, labels, require_labels=True)
    gen, gen_labels = load_generated(generated)
    say(f"reconstructing {len(real.maps)} real maps with the bundle")
    generator = WaferGenerator.load(model)
    recon = generator.reconstruct(real.maps, outline_lock=True)
    k = int(source_rows(len(gen), len(real.maps), per_source).size // len(real.maps))
    generate_fold = None
    if per_fold:
        def generate_fold(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # The runtime's warnings (mix falling back to noise for a one-map class) print
            # as one line each, through handle_errors.
            res = generator.augment(k, maps=real.maps[train], labels=real.labels[train], seed=gen_seed,
                                    strength=gen_strength, method=gen_method, mode=gen_mode)
            return np.asarray(res.maps, dtype=np.float32), np.asarray(res.labels)
    doc = evaluate_set(
        real.maps, real.labels, gen, gen_labels, np.asarray(recon),
        per_source=per_source, n_folds=folds, seed=seed,
        with_usefulness=not no_usefulness, progress=say, generate_fold=generate_fold,
    )
    doc["inputs"] = {"data": str(data), "generated": str(generated), "model": report.describe_model(generator)}
    typer.echo(report.format_quality(doc))
    if "usefulness" in doc:
        typer.echo("")
        typer.echo(report.format_usefulness(doc["usefulness"]))
    typer.echo("")
    typer.echo(report.format_done_when(doc["targets"]))
    for c in doc["caveats"]:
        typer.echo(f"note: {c}")
    if out is not None:
        write_json(out, doc, force=force)
        say(f"wrote {out}")


@app.command()
@handle_errors
def usefulness(
    data: DataOpt,
    labels: LabelsOpt = None,
    arms: str = typer.Option("issue", "--set", help="Comma-separated arm or set names. Sets: issue, generator, quick, all."),
    seeds: str = typer.Option("0", "--seeds", help="Classifier seeds, comma-separated; every arm trains one classifier per fold and seed."),
    steps: int = typer.Option(1000, "--steps", min=1, help="Optimiser steps of every classifier (the same in every arm)."),
    folds: int = typer.Option(DEFAULT_FOLDS, "--folds", min=2, help="Folds (stratified by class, identical maps together)."),
    ae_epochs: int = typer.Option(100, "--ae-epochs", min=1, help="Epochs of each per-fold autoencoder (the shipped recipe: 100)."),
    only_folds: Optional[str] = typer.Option(None, "--only-folds", help="Run only these folds (comma-separated, 0-based): to split a long run; the report covers what the cache holds."),
    report_only: bool = typer.Option(False, "--report-only", help="Train nothing: report the results the cache holds for these arms, folds and seeds."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Cache of autoencoders and results (default: $EDGE_INFER_EVAL_CACHE, else the temp folder)."),
    out: Path = typer.Option(Path("usefulness.json"), "--out", help="JSON report."),
    plot_path: Optional[Path] = typer.Option(None, "--plot", help="PNG of the gains (default: --out with .png)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out and --plot."),
) -> None:
    """Train a classifier on each arm's training set, per fold and seed, and report paired gains."""
    from edge_infer.files import check_targets
    from edge_infer.io import load_dataset

    from . import report
    from .protocol import Protocol, resolve_arms, run_protocol

    t0 = time.perf_counter()
    png = plot_path or out.with_suffix(".png")
    check_targets([out, png], force=force)
    chosen = resolve_arms([a.strip() for a in arms.split(",") if a.strip()])
    seed_list = tuple(number_list(seeds, "--seeds", int, "whole numbers"))
    fold_list = None if only_folds is None else number_list(only_folds, "--only-folds", int, "whole numbers")
    ds = load_dataset(data, labels, require_labels=True)
    proto = Protocol(folds=folds, seeds=seed_list, steps=steps, ae_epochs=ae_epochs, cache=_cache(cache))
    _say(f"{len(chosen)} arms × {folds if fold_list is None else len(fold_list)} folds × {len(seed_list)} seeds, "
         f"{steps} steps each; cache {proto.cache}")
    rows = run_protocol(ds.maps, ds.labels, chosen, proto, say=_say, only_folds=fold_list, compute=not report_only)
    if not rows:
        raise InputError("no results to report: the cache holds none for these arms, folds and seeds")
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
    write_json(out, doc, force=force)
    report.plot(summary, png, f"{folds} folds × seeds {','.join(map(str, seed_list))} where run "
                f"(runs per arm: JSON), {steps} steps each; autoencoder retrained per fold", force=force)
    _say(f"wrote {out} and {png}")


@app.command()
@handle_errors
def fidelity(
    data: DataOpt,
    labels: LabelsOpt = None,
    model: ModelOpt = None,
    strengths: str = typer.Option("0.1,0.2,0.3,0.4,0.5,0.75,1.0", "--strengths", help="Relative noise strengths to test."),
    seed: int = typer.Option(0, "--seed", help="Seed of the folds, readers and noise."),
    out: Path = typer.Option(Path("fidelity.json"), "--out", help="JSON report."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out."),
) -> None:
    """Fidelity of variants per strength under two readers (out-of-fold, all-maps), and the strength the rule picks."""
    from edge_infer import WaferGenerator
    from edge_infer.files import check_targets
    from edge_infer.io import load_dataset

    from .fidelity import two_reader_fidelity
    from .report import format_fidelity

    t0 = time.perf_counter()
    check_targets([out], force=force)
    values = number_list(strengths, "--strengths")
    ds = load_dataset(data, labels, require_labels=True)
    gen = WaferGenerator.load(model)
    res = two_reader_fidelity(gen, ds.maps, ds.labels, values, seed=seed, say=_say)
    res.update(cpu=cpu_name(), wall_seconds=round(time.perf_counter() - t0, 1), data=str(data),
               model=str(gen.bundle.path))
    typer.echo(format_fidelity(res))
    c = res["chosen"]
    typer.echo(f"\nchosen strength: out-of-fold reader {c['out_of_fold']}, all-maps reader {c['all_maps']}, "
               f"both: {c['both']}\nwall time {res['wall_seconds']:.0f} s on {cpu_name()}")
    write_json(out, res, force=force)


def main() -> None:
    """Entry point of ``python -m training.evaluation``."""
    app(prog_name="python -m training.evaluation")


if __name__ == "__main__":
    sys.exit(main())
