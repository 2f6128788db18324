"""Per-fold autoencoders: the generator retrained on one fold's training maps only.

A fold's held-out maps must be unseen by *everything* that shapes the
classifier's training set, the autoencoder included; otherwise its
reconstructions of "held-out" maps are too good and every generation recipe
looks better than it is. So the protocol trains one autoencoder per fold,
with the shipped recipe, and exports it to a bundle exactly as ``make model``
does (:func:`export.build.export_bundle`): the variants are then made by the
runtime's own ``WaferGenerator``, as ``edge-infer augment`` makes them.

Bundles are cached by the sha256 of the training maps and labels, the
training recipe, the variant and the torch version, so a rerun of the
evaluation trains nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np

#: How the autoencoder's training maps are prepared.
#: ``plain``: the fold's maps; ``symmetries``: their 8 rotations/flips, with
#: the epochs divided by 8 so the optimiser takes about as many steps.
AE_VARIANTS = ("plain", "symmetries")
CACHE_FORMAT = "fold-bundle-v1"
#: Parity tolerance of the per-fold exports (see :func:`fold_autoencoder`).
EXPORT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class FoldAutoencoder:
    """A cached per-fold bundle and what made it.

    ``identity``: sha256 over the bundle's graph and bank hashes (its
    manifest's ``files``, minus pictures and metrics), so results made from
    it are keyed by exactly the graphs that generated their maps: a new
    export code (another bundle format) gives another identity and the
    results are recomputed, while the trained weights stay cached.
    """

    bundle: Path
    key: str
    variant: str
    metrics: dict
    identity: str


def _key(maps: np.ndarray, labels: np.ndarray, recipe: dict, variant: str) -> str:
    import torch

    h = hashlib.sha256()
    h.update(np.ascontiguousarray(maps, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).reshape(-1).tobytes())
    meta = {"recipe": recipe, "variant": variant, "torch": str(torch.__version__), "format": CACHE_FORMAT}
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()


def ae_recipe(variant: str = "plain", epochs: int = 100):
    """The shipped training recipe for a fold (no inner hold-out: the fold is the hold-out)."""
    from training.train import Recipe

    if variant not in AE_VARIANTS:
        raise ValueError(f"unknown autoencoder variant {variant!r}; choose one of {', '.join(AE_VARIANTS)}")
    r = Recipe(epochs=epochs, val_split=0.0)
    if variant == "symmetries":
        r = replace(r, epochs=max(1, math.ceil(epochs / 8)))
    return r


def fold_autoencoder(
    maps: np.ndarray,
    labels: np.ndarray,
    cache: Path,
    *,
    variant: str = "plain",
    epochs: int = 100,
    say: Callable[[str], None] = lambda _m: None,
) -> FoldAutoencoder:
    """The bundle of an autoencoder trained on ``maps`` (cached under ``cache/autoencoders``)."""
    from edge_infer.bundle import FORMAT_VERSION, MANIFEST, load_bundle
    from edge_infer.augment import all_symmetries
    from edge_infer.files import atomic_folder, json_text
    from edge_infer.io import DATA_NAME, LABEL_NAME
    from export.build import export_bundle
    from training.data import TrainingData
    from training.run import CHECKPOINT, train_run

    recipe = ae_recipe(variant, epochs)
    key = _key(maps, labels, recipe.as_dict(), variant)
    folder = Path(cache) / "autoencoders" / key[:20]
    done = folder / "done.json"
    if not (done.exists() and (folder / "run" / CHECKPOINT).exists()):
        folder.parent.mkdir(parents=True, exist_ok=True)
        with atomic_folder(folder, force=True) as tmp:
            data_dir = tmp / "data"
            data_dir.mkdir()
            np.save(data_dir / DATA_NAME, np.asarray(maps, dtype=np.float32))
            np.save(data_dir / LABEL_NAME, np.asarray(labels, dtype=np.int64).reshape(-1, 1))
            sym = variant == "symmetries"
            train_maps = all_symmetries(maps) if sym else np.asarray(maps, dtype=np.float32)
            train_labels = np.repeat(np.asarray(labels).reshape(-1), 8 if sym else 1)
            data = TrainingData(maps=train_maps, labels=train_labels.astype(np.int64), path=str(data_dir),
                                labels_path=None, sha256=key, labels_sha256=key)
            say(f"training a {variant} autoencoder on {len(maps)} maps ({recipe.epochs} epochs; cached)")
            metrics = train_run(data, tmp / "run", recipe, force=True)
            (tmp / "done.json").write_text(json_text(metrics))
    # The bundle is exported per bundle format, from the cached run: a new export
    # code re-exports (seconds) without retraining.
    bundle = folder / f"bundle-format{FORMAT_VERSION}"
    if not (bundle / MANIFEST).exists():
        say(f"exporting the {variant} autoencoder of {len(maps)} maps (bundle format {FORMAT_VERSION}; cached)")
        # A looser parity tolerance than make model's 1e-5: a fold bundle is a
        # measuring instrument thrown away after the run, and one fold's fast
        # decoder was measured 1.09e-5 off PyTorch (far below what moves a die).
        export_bundle(folder / "run", bundle, data=folder / "data", tolerance=EXPORT_TOLERANCE, note=lambda _m: None)
    manifest = load_bundle(bundle).manifest  # verified, like any bundle the runtime reads
    graphs = {k: v for k, v in sorted(manifest["files"].items()) if k.endswith((".onnx", ".npz"))}
    identity = hashlib.sha256(json.dumps(graphs, sort_keys=True).encode()).hexdigest()
    return FoldAutoencoder(bundle, key, variant, json.loads(done.read_text()), identity)
