"""Training data: the validated course maps as tensors, a seeded split, provenance.

A thin layer over :func:`edge_infer.io.load_dataset`, which reads and
validates every layout users have (``wafer.zip``, a folder holding
``data.npy`` + ``label.npy``, or the two ``.npy`` paths). This module only
adds what training needs on top: channels-first tensors, the train /
validation split, and the data's sha256 (from ``load_dataset``) for a run's provenance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from edge_infer.io import PathLike, load_dataset


@dataclass(frozen=True)
class TrainingData:
    """Validated maps (one-hot float32, N×26×26×3, NHWC as in ``data.npy``) and labels (int64, N)."""

    maps: np.ndarray
    labels: np.ndarray
    path: str
    labels_path: Optional[str]
    sha256: str
    labels_sha256: str

    @property
    def n_maps(self) -> int:
        return int(self.maps.shape[0])

    def provenance(self) -> dict:
        """Plain-typed description of the data for checkpoints and metrics."""
        return {
            "path": self.path,
            "labels_path": self.labels_path,
            "sha256": self.sha256,
            "labels_sha256": self.labels_sha256,
            "n_maps": self.n_maps,
        }


def load_training_data(data: PathLike, labels: Optional[PathLike] = None) -> TrainingData:
    """Read and validate maps and labels for training (labels are required).

    ``data`` is a ``wafer.zip``, a folder holding ``data.npy`` and
    ``label.npy``, or a maps ``.npy`` with ``labels`` naming the labels
    ``.npy``. Raises :class:`edge_infer.errors.DataFileError` /
    :class:`edge_infer.errors.InputError` with one clear message for a
    missing, broken or inconsistent input.
    """
    ds = load_dataset(data, labels, require_labels=True)
    assert ds.labels is not None and ds.labels_sha256 is not None
    return TrainingData(
        maps=ds.maps,
        labels=ds.labels[:, 0],
        path=str(data),
        labels_path=None if labels is None else str(labels),
        sha256=ds.sha256,
        labels_sha256=ds.labels_sha256,
    )


def split_indices(n: int, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train / validation split of ``range(n)``, both sorted.

    ``val_split`` is the held-out share in [0, 1); 0 trains on every map and
    returns an empty validation set. The split depends only on ``n``,
    ``val_split`` and ``seed`` (its own generator), never on torch's state.
    """
    if not 0.0 <= val_split < 1.0:
        from edge_infer.errors import InputError

        raise InputError(f"--val-split must be in [0, 1), got {val_split}")
    n_val = int(round(n * val_split))
    if val_split > 0 and n_val == 0:
        n_val = 1
    if n - n_val < 1:
        from edge_infer.errors import InputError

        raise InputError(f"--val-split {val_split} leaves no maps to train on ({n} maps)")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def to_tensor(maps: np.ndarray):
    """One-hot maps N×26×26×3 (NHWC) → float32 torch tensor N×3×26×26 (NCHW), contiguous."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(maps, -1, 1), dtype=np.float32))
