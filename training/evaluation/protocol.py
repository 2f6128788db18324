"""The usefulness protocol: does a recipe's training set give a better classifier?

For each of 5 folds (stratified by class, identical maps kept together:
:func:`.folds.stratified_group_folds`):

1. an autoencoder is trained on the fold's *training* maps only and exported
   to a bundle (:mod:`.autoencoders`; cached);
2. every arm builds its training set from those training maps: the real maps
   alone, or real + what a recipe makes from them through that fold's
   bundle, with the runtime's own ``augment`` (:func:`edge_infer.augment.augment_recipe`);
3. the reference classifier (:mod:`training.classifier`) is trained on it for
   the **same number of optimiser steps** in every arm, with several seeds,
   and scored on the fold's held-out real maps (macro-F1, per-class recall).

Every arm names its control: the real maps alone for a recipe that only
rearranges real maps (symmetries, copies), and the same recipe with its
noise variants replaced by copies of their base maps for a recipe that
generates (so balanced generation is compared with balanced repeats). Gains
are paired by (fold, seed). Results are cached per (fold, arm, seed), keyed
by everything that shapes them, so a rerun only computes what changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edge_infer.augment import RECIPES, Recipe, augment_recipe, base_maps

from .folds import DEFAULT_FOLDS, stratified_group_folds
from .metrics import macro_f1, per_class_recall

PROTOCOL_VERSION = "usefulness-v1"  # results of generating arms are also keyed by their generator
#: Optimiser steps of every classifier (batch 64): about 60 passes over a
#: fold's ~1025 real maps, 8 over their 8 rotations/flips. Fixed, so no arm
#: trains longer than another. (500 steps were too few for the 8× larger
#: symmetric sets: see docs/evaluation.md.)
DEFAULT_STEPS = 1000
DEFAULT_SEEDS = (0,)
#: Noise strength of an arm whose recipe names none: the runtime's default
#: when the protocol was first run, pinned so that results do not move with
#: the product's default (which issue 14's two-reader rule lowered to 0.3).
PROTOCOL_STRENGTH = 0.4
METHODS = ("recipe", "class-gaussian")
#: How a recipe's noise variants are made: ``channel`` (the runtime's σ =
#: strength × per-channel std of all latents), ``class`` (× the std of the
#: source's class instead), ``delta`` (the runtime's variant, but only the dies
#: where it differs from the source's reconstruction are taken; every other
#: die keeps the real source's state, so detail the autoencoder cannot
#: reproduce, such as thin Scratch lines, survives).
NOISE_SHAPES = ("channel", "class", "delta")


@dataclass(frozen=True)
class Arm:
    """One way to build a training set from a fold's real training maps.

    * ``recipe``: a :class:`~edge_infer.augment.Recipe` (None: real maps only);
    * ``method``: ``"recipe"`` (the runtime's augment), or ``"class-gaussian"``
      (``per_source`` latents per source drawn from a diagonal Gaussian fitted
      to its class's latents, decoded with the source's outline);
    * ``noise``: ``"channel"`` (the runtime's σ = strength × per-channel std of
      all latents) or ``"class"`` (× the std of the source's class);
    * ``ae``: the autoencoder variant (:data:`.autoencoders.AE_VARIANTS`);
    * ``control``: the name of the arm this one is judged against.
    """

    name: str
    label: str
    recipe: Optional[Recipe] = None
    control: Optional[str] = "real"
    method: str = "recipe"
    noise: str = "channel"
    ae: str = "plain"

    def spec(self) -> dict:
        d = asdict(self)
        d["recipe"] = None if self.recipe is None else asdict(self.recipe)
        d.pop("label")
        d.pop("control")
        return d

    @property
    def needs_autoencoder(self) -> bool:
        return self.method != "recipe" or (self.recipe is not None and self.recipe.uses_generator)


def control_recipe(recipe: Recipe) -> Optional[Recipe]:
    """The same recipe with every noise variant replaced by a copy of its base map.

    Same class mix, same base maps, no autoencoder content: the fair control
    for what generation adds. None for a recipe that generates nothing (its
    control is the real maps alone).
    """
    if not recipe.uses_generator:
        return None
    return replace(recipe, name=f"{recipe.name} (control)", fill="repeat", strength=None)


R = RECIPES

#: Arm sets by name, as ``--set`` takes them. ``issue``: the table of issue 14;
#: ``generator``: ways to make the autoencoder's variants add to the best geometric recipe.
ARMS: dict[str, Arm] = {a.name: a for a in (
    Arm("real", "real maps only (same steps)", None, control=None),
    Arm("classic", "+ 5 noise variants per map (the classic recipe)", R["classic"]),
    Arm("symmetries", "+ the 8 rotations/flips of each map", R["symmetries"]),
    Arm("balanced-copies", "class-balanced copies of real maps (no generation)", R["balanced-copies"]),
    Arm("balanced", "class-balanced noise variants", R["balanced"], control="balanced-copies"),
    Arm("symmetries+noise", "noise variants of the rotated/flipped maps", R["symmetries+noise"], control="symmetries"),
    Arm("class-gaussian", "+ 5 samples per map from a per-class Gaussian of the latents",
        Recipe("class-gaussian", per_source=5), method="class-gaussian"),
    Arm("symmetries+balanced-copies", "rotations/flips + class-balanced copies", R["symmetries+balanced-copies"]),
    Arm("symmetries+balanced", "rotations/flips + class-balanced noise variants", R["symmetries+balanced"],
        control="symmetries+balanced-copies"),
    # The generator's search (issue 14, "make the generator earn its place").
    Arm("symmetries+balanced@1.0", "... noise at strength 1.0 (chosen for usefulness, not fidelity)",
        replace(R["symmetries+balanced"], name="symmetries+balanced@1.0", strength=1.0),
        control="symmetries+balanced-copies"),
    Arm("symmetries+balanced/class-noise", "... noise shaped by the class's latent spread",
        R["symmetries+balanced"], control="symmetries+balanced-copies", noise="class"),
    Arm("symmetries+balanced/delta", "... variants applied to the real source (only the dies the noise changed)",
        R["symmetries+balanced"], control="symmetries+balanced-copies", noise="delta"),
    Arm("symmetries+balanced/delta@1.0", "... the same at strength 1.0",
        replace(R["symmetries+balanced"], name="symmetries+balanced@1.0", strength=1.0),
        control="symmetries+balanced-copies", noise="delta"),
    Arm("symmetries+balanced/sym-ae", "... from an autoencoder trained on rotations/flips",
        R["symmetries+balanced"], control="symmetries+balanced-copies", ae="symmetries"),
    Arm("symmetries+balanced/sym-ae@1.0", "... symmetric autoencoder, strength 1.0",
        replace(R["symmetries+balanced"], name="symmetries+balanced@1.0", strength=1.0),
        control="symmetries+balanced-copies", ae="symmetries"),
)}

ARM_SETS: dict[str, tuple[str, ...]] = {
    "issue": ("real", "classic", "symmetries", "balanced-copies", "balanced", "symmetries+noise",
              "class-gaussian", "symmetries+balanced-copies", "symmetries+balanced"),
    "generator": ("real", "symmetries+balanced-copies", "symmetries+balanced", "symmetries+balanced@1.0",
                  "symmetries+balanced/delta", "symmetries+balanced/delta@1.0",
                  "symmetries+balanced/class-noise", "symmetries+balanced/sym-ae"),
    "quick": ("real", "symmetries", "symmetries+balanced-copies", "symmetries+balanced"),
}
ARM_SETS["all"] = tuple(dict.fromkeys(ARM_SETS["issue"] + ARM_SETS["generator"]))


def resolve_arms(names: Sequence[str]) -> list[Arm]:
    """Arms by name or set name, each control added before its arm, no duplicates."""
    from edge_infer.errors import InputError

    out: dict[str, Arm] = {}

    def add(name: str) -> None:
        if name in out:
            return
        if name not in ARMS:
            raise InputError(f"unknown arm {name!r}; choose from: {', '.join(ARMS)} or a set: {', '.join(ARM_SETS)}")
        arm = ARMS[name]
        if arm.control is not None:
            add(arm.control)
        out[name] = arm

    for n in names:
        for name in ARM_SETS.get(n, (n,)):
            add(name)
    return list(out.values())


# ------------------------------------------------------------ generation per arm


def _latent_std(z: np.ndarray) -> np.ndarray:
    """Per channel, the rms over 3×3 positions of the across-map std (as the bundle's latent stats)."""
    return np.sqrt(z.astype(np.float64).var(axis=0).mean(axis=(1, 2))).astype(np.float32)


def _class_gaussian(gen: Any, maps: np.ndarray, labels: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k maps per source from a diagonal Gaussian fitted to its class's latents."""
    from edge_infer.wafer import outline

    z = gen.encode(maps)
    rng = np.random.default_rng(seed)
    outs, labs = [], []
    bound = outline(maps)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        zc = z[rows].astype(np.float64)
        mu, sd = zc.mean(axis=0), zc.std(axis=0)
        n = k * len(rows)
        draw = (mu + sd * rng.standard_normal((n, *mu.shape))).astype(np.float32)
        outs.append(gen.decode(draw, outlines=bound[np.repeat(rows, k)]))
        labs.append(np.full(n, c, dtype=np.int64))
    return np.concatenate(outs), np.concatenate(labs)


def _class_noise_generator(gen: Any, maps: np.ndarray, labels: np.ndarray) -> Any:
    """A stand-in for ``gen`` whose noise is scaled per class: σ = strength × the class's std.

    Implemented by rescaling: for source maps of class c the latent is
    mapped to units of the class's own std before the runtime adds noise
    and back after, through thin ``encode``/``decode`` wrappers around the
    fold's bundle. Equivalent to per-class σ and kept out of the product
    until it earns its place.
    """
    z = gen.encode(maps)
    overall = _latent_std(z)
    scale = {}
    for c in np.unique(labels):
        zc = z[labels == c]
        sd = _latent_std(zc) if len(zc) > 1 else overall
        scale[int(c)] = np.where(sd > 0, sd, overall) / np.where(overall > 0, overall, 1)

    class Shaped:
        classes = gen.classes

        def augment(self, counts, *, maps, labels, seed, strength, **kw):
            from edge_infer.generator import Generated
            from edge_infer.sampling import variant_counts
            from edge_infer.wafer import outline

            lab = np.asarray(labels).reshape(-1)
            counts = variant_counts(counts, len(lab))
            src = np.repeat(np.arange(len(lab)), counts)
            zs = gen.encode(maps)[src]
            s = np.stack([scale[int(c)] for c in lab[src]])[:, :, None, None].astype(np.float32)
            rng = np.random.default_rng(seed)
            sigma = (strength or PROTOCOL_STRENGTH) * overall[None, :, None, None] * s
            noisy = zs + sigma * rng.standard_normal(zs.shape).astype(np.float32)
            out = gen.decode(noisy, outlines=outline(maps)[src])
            return Generated(out, lab[src].reshape(-1, 1), src)

    return Shaped()


def _delta_generator(gen: Any) -> Any:
    """A stand-in for ``gen`` whose variants keep the source's dies except where the noise changed the decoding."""

    class Delta:
        classes = gen.classes

        def augment(self, counts, *, maps, labels, **kw):
            from edge_infer.generator import Generated
            from edge_infer.wafer import to_onehot, to_states

            res = gen.augment(counts, maps=maps, labels=labels, **kw)
            src = np.asarray(res.sources)
            recon = to_states(np.asarray(gen.reconstruct(maps, outline_lock=True)))[src]
            varied = to_states(np.asarray(res.maps))
            out = np.where(varied != recon, varied, to_states(np.asarray(maps))[src])
            return Generated(to_onehot(out), res.labels, src)

    return Delta()


def arm_training_set(
    arm: Arm, maps: np.ndarray, labels: np.ndarray, gen: Optional[Any], seed: int
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Real training maps + what ``arm`` makes from them; and a few counts."""
    y = np.asarray(labels).reshape(-1)
    info: dict = {"real": int(len(y))}
    if arm.recipe is None:
        return maps, y, info
    if arm.method == "class-gaussian":
        gx, gy = _class_gaussian(gen, maps, y, arm.recipe.per_source, seed)
    else:
        g = gen
        if arm.recipe.uses_generator and arm.noise == "class":
            g = _class_noise_generator(gen, maps, y)
        elif arm.recipe.uses_generator and arm.noise == "delta":
            g = _delta_generator(gen)
        if arm.recipe.uses_generator and g is None:
            raise RuntimeError(f"arm {arm.name} needs an autoencoder")
        strength = arm.recipe.strength if arm.recipe.strength is not None else PROTOCOL_STRENGTH
        res = augment_recipe(g, arm.recipe, maps, y, seed=seed, strength=strength)
        gx, gy = res.maps, res.labels.reshape(-1)
        # What each made map is, from the recipe's plan (the maps come in its order, not labelled).
        p = base_maps(arm.recipe, y)
        info.update({"symmetry": int(p.emit_base.sum()), "noise": int(p.noise.sum()), "copy": int(p.copies.sum())})
    info["made"] = int(len(gy))
    return np.concatenate([maps, gx]).astype(np.float32), np.concatenate([y, gy]), info


# ------------------------------------------------------------ the run


@dataclass
class Protocol:
    """Settings of one evaluation run (all part of every cache key)."""

    folds: int = DEFAULT_FOLDS
    fold_seed: int = 0
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    steps: int = DEFAULT_STEPS
    ae_epochs: int = 100
    cache: Path = field(default_factory=lambda: Path("/tmp/edge-infer-eval-cache"))


def _result_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def run_protocol(
    maps: np.ndarray,
    labels: np.ndarray,
    arms: Sequence[Arm],
    protocol: Protocol,
    *,
    say: Callable[[str], None] = lambda _m: None,
    only_folds: Optional[Sequence[int]] = None,
    compute: bool = True,
) -> list[dict]:
    """Every (fold, arm, seed) result: held-out macro-F1, per-class recall, counts, seconds."""
    from edge_infer.files import atomic_path, json_text
    from edge_infer.wafer import CLASS_NAMES, to_states
    from training.classifier import ClassifierConfig, predict, train_classifier

    from .autoencoders import fold_autoencoder

    y = np.asarray(labels).reshape(-1)
    folds = stratified_group_folds(to_states(maps), y, protocol.folds, protocol.fold_seed)
    config = ClassifierConfig(steps=protocol.steps)
    data_key = hashlib.sha256(np.ascontiguousarray(maps, dtype=np.float32).tobytes()
                              + y.astype(np.int64).tobytes()).hexdigest()
    results_dir = Path(protocol.cache) / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for f in range(protocol.folds):
        if only_folds is not None and f not in only_folds:
            continue
        train, test = folds != f, folds == f
        gens: dict[str, Any] = {}
        ae_ids: dict[str, str] = {}

        def generator(variant: str) -> tuple[Any, str]:
            if variant not in gens:
                from edge_infer.generator import WaferGenerator

                fa = fold_autoencoder(maps[train], y[train], protocol.cache, variant=variant,
                                      epochs=protocol.ae_epochs, say=say)
                gens[variant] = WaferGenerator.load(fa.bundle, provider="cpu")
                ae_ids[variant] = fa.identity
            return gens[variant], ae_ids[variant]

        for arm in arms:
            gen_seed = 1000 * protocol.fold_seed + f
            base = {"protocol": PROTOCOL_VERSION, "data": data_key, "folds": protocol.folds,
                    "fold_seed": protocol.fold_seed, "fold": f, "arm": arm.spec(), "gen_seed": gen_seed,
                    "classifier": asdict(config), "ae_epochs": protocol.ae_epochs}
            if arm.needs_autoencoder:
                # Keyed by the graphs that make the maps: another generator, other results.
                base["generator"] = generator(arm.ae)[1]
            todo = []
            for s in protocol.seeds:
                key = _result_key({**base, "seed": s})
                path = results_dir / f"{key[:24]}.json"
                if path.exists():
                    rows.append({**json.loads(path.read_text()), "cached": True})
                else:
                    todo.append((s, path))
            if not todo or not compute:  # compute=False: report what the cache holds, compute nothing
                continue
            t0 = time.perf_counter()
            gen, ae_id = generator(arm.ae) if arm.needs_autoencoder else (None, None)
            x, ty, info = arm_training_set(arm, maps[train], y[train], gen, gen_seed)
            t_gen = time.perf_counter() - t0
            for s, path in todo:
                say(f"fold {f + 1}/{protocol.folds}  {arm.name:<34} seed {s}: training on {len(ty)} maps "
                    f"({protocol.steps} steps)")
                t1 = time.perf_counter()
                model = train_classifier(x, ty, seed=1000 * s + f, config=config)
                pred = predict(model, maps[test])
                row = {
                    "fold": f, "arm": arm.name, "seed": s, "steps": protocol.steps,
                    "macro_f1": macro_f1(y[test], pred),
                    "recall": [None if np.isnan(v) else float(v)
                               for v in per_class_recall(y[test], pred, len(CLASS_NAMES))],
                    "train_counts": [int(v) for v in np.bincount(ty, minlength=len(CLASS_NAMES))],
                    "made": info, "seconds_generate": round(t_gen, 2),
                    "seconds_train": round(time.perf_counter() - t1, 2), "generator": ae_id,
                }
                # Atomic: a run stopped mid-write leaves no broken cache file behind.
                with atomic_path(path, force=True) as tmp:
                    tmp.write_bytes(json_text(row, sort_keys=False).encode())
                rows.append({**row, "cached": False})
    return rows
