"""The reference classifier: a small CNN that names a wafer map's pattern class.

It is the yardstick of :mod:`training.evaluation`: trained on real maps only, it
says whether a generated map still shows its source's class (fidelity), and
trained on real plus generated maps, whether augmentation helps (usefulness).
So it must be cheap (seconds to tens of seconds on two CPU cores) and exactly
repeatable for a seed, not state of the art.

Everything here takes and returns the user-facing layout: one-hot float
``(N, 26, 26, 3)`` maps and integer class indices.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from edge_infer.files import atomic_path
from edge_infer.wafer import CLASS_NAMES, N_STATES


@dataclass(frozen=True)
class ClassifierConfig:
    """Training recipe; part of the cache key, so changing it retrains."""

    epochs: int = 15
    batch_size: int = 64
    #: If set, train exactly this many optimiser steps (batches) instead of
    #: ``epochs`` passes: the evaluation's "same steps" rule, so arms whose
    #: training sets differ in size still train equally long.
    steps: Optional[int] = None
    lr: float = 2e-3
    weight_decay: float = 1e-4
    n_classes: int = len(CLASS_NAMES)


class WaferCNN(nn.Module):
    """(N,3,26,26) one-hot maps → (N, n_classes) logits.

    Two conv/pool stages keep the 6×6 spatial layout (where on the wafer a
    defect sits is what separates Center, Edge-Loc and Edge-Ring), then a
    small dense head.
    """

    def __init__(self, n_classes: int = len(CLASS_NAMES)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(N_STATES, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 13×13
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 6×6
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(32 * 6 * 6, 64),
            nn.ReLU(),
            nn.Linear(64, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _to_tensor(maps: np.ndarray) -> torch.Tensor:
    arr = np.asarray(maps, dtype=np.float32)
    if arr.ndim != 4 or arr.shape[1:] != (26, 26, N_STATES):
        raise ValueError(f"maps must be (N, 26, 26, 3) one-hot, got {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


def train_classifier(
    maps: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int = 0,
    config: ClassifierConfig = ClassifierConfig(),
    threads: int = 1,
) -> WaferCNN:
    """Train a :class:`WaferCNN` on one-hot maps and integer labels ``(N,)`` or ``(N,1)``.

    Deterministic for a seed: initialisation and batch order come from that
    seed alone, and the global torch RNG is left as it was. ``threads`` is 1
    by default: on the shared 2-core dev machine, 15 epochs on 1024 maps took
    69 s with torch's default two threads, while 5 epochs took 2.6 s with one.
    """
    x = _to_tensor(maps)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64).reshape(-1))
    if len(x) != len(y):
        raise ValueError(f"{len(x)} maps but {len(y)} labels")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        return _train(x, y, seed, config)
    finally:
        torch.set_num_threads(old_threads)


def _train(x: torch.Tensor, y: torch.Tensor, seed: int, config: ClassifierConfig) -> WaferCNN:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WaferCNN(config.n_classes)
        order = torch.Generator().manual_seed(seed + 1)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        for idx in _batches(len(x), config, order):
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    return model


def _batches(n: int, config: ClassifierConfig, order: torch.Generator):
    """Index batches: ``epochs`` reshuffled passes, or passes cut off after ``steps`` batches."""
    done = 0
    epoch = 0
    while (config.steps is None and epoch < config.epochs) or (config.steps is not None and done < config.steps):
        perm = torch.randperm(n, generator=order)
        epoch += 1
        for start in range(0, n, config.batch_size):
            if config.steps is not None and done >= config.steps:
                return
            done += 1
            yield perm[start : start + config.batch_size]


@torch.no_grad()
def predict_proba(model: WaferCNN, maps: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities ``(N, n_classes)`` float32 for one-hot maps."""
    model.eval()
    x = _to_tensor(maps)
    out = [torch.softmax(model(x[i : i + batch_size]), dim=1) for i in range(0, len(x), batch_size)]
    if not out:
        return np.zeros((0, model.head[-1].out_features), dtype=np.float32)
    return torch.cat(out).numpy()


def predict(model: WaferCNN, maps: np.ndarray) -> np.ndarray:
    """Predicted class index ``(N,)`` int64 for one-hot maps."""
    return predict_proba(model, maps).argmax(axis=1).astype(np.int64)


# ------------------------------------------------------------------ cache


def cache_dir() -> Path:
    """Where trained reference classifiers are kept between runs.

    ``$EDGE_INFER_EVAL_CACHE`` if set, else a folder in the system temp dir:
    a lost cache only costs retraining.
    """
    env = os.environ.get("EDGE_INFER_EVAL_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / "edge-infer-eval-cache"


def cache_key(maps: np.ndarray, labels: np.ndarray, seed: int, config: ClassifierConfig) -> str:
    """sha256 over the training data, the seed, the recipe and the torch version."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(maps, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).reshape(-1).tobytes())
    cfg = asdict(config)
    if cfg["steps"] is None:
        del cfg["steps"]  # keys of epoch-based models stay as they were before steps existed
    meta = {"seed": seed, "config": cfg, "torch": torch.__version__, "arch": "WaferCNN-v1"}
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()


def train_cached(
    maps: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int = 0,
    config: ClassifierConfig = ClassifierConfig(),
    cache: Optional[Path] = None,
) -> WaferCNN:
    """:func:`train_classifier`, reusing a model trained earlier on the same data and recipe.

    ``cache=None`` uses :func:`cache_dir`. Entries are named by
    :func:`cache_key`, so different data, seed or recipe never collide.
    """
    folder = Path(cache) if cache is not None else cache_dir()
    path = folder / f"{cache_key(maps, labels, seed, config)}.pt"
    if path.exists():
        model = WaferCNN(config.n_classes)
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            model.eval()
            return model
        except Exception:  # noqa: BLE001 - torch raises many types for a damaged file
            pass  # a damaged cache entry is simply retrained and replaced
    model = train_classifier(maps, labels, seed=seed, config=config)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, force=True) as tmp:
            torch.save(model.state_dict(), tmp)
    except OSError:
        pass  # caching is an optimisation; an unwritable cache must not fail the run
    return model
