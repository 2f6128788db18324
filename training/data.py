"""Training data: the validated course maps as tensors, a seeded split, provenance.

A thin layer over :func:`edge_infer.io.load_dataset`, which reads and
validates every layout users have (``wafer.zip``, a folder holding
``data.npy`` + ``label.npy``, or the two ``.npy`` paths). This module only
adds what training needs on top: channels-first tensors, the train /
validation split and the sha256 that goes into a run's provenance.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edge_infer.io import DATA_NAME, LABEL_NAME, PathLike, load_dataset


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


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _member_bytes(data: Path, labels: Optional[Path]) -> tuple[bytes, bytes]:
    """Raw bytes of the maps file and the labels file, whatever the layout.

    Hashing ``data.npy`` itself (not the zip or the folder) gives the same
    sha256 for the same data in all three layouts, and one a user can check
    with ``sha256sum data.npy``. Only called after ``load_dataset`` accepted
    the same paths, so every file named here exists and is readable.
    """
    if data.is_dir():
        raw_data = (data / DATA_NAME).read_bytes()
        raw_labels = labels.read_bytes() if labels is not None else (data / LABEL_NAME).read_bytes()
        return raw_data, raw_labels
    if zipfile.is_zipfile(data):
        with zipfile.ZipFile(data) as zf:
            names = {Path(n).name: n for n in zf.namelist() if not n.endswith("/")}
            raw_data = zf.read(names[DATA_NAME])
            raw_labels = labels.read_bytes() if labels is not None else zf.read(names[LABEL_NAME])
        return raw_data, raw_labels
    assert labels is not None  # a bare maps file has labels only when named
    return data.read_bytes(), labels.read_bytes()


def load_training_data(data: PathLike, labels: Optional[PathLike] = None) -> TrainingData:
    """Read and validate maps and labels for training (labels are required).

    ``data`` is a ``wafer.zip``, a folder holding ``data.npy`` and
    ``label.npy``, or a maps ``.npy`` with ``labels`` naming the labels
    ``.npy``. Raises :class:`edge_infer.errors.DataFileError` /
    :class:`edge_infer.errors.InputError` with one clear message for a
    missing, broken or inconsistent input.
    """
    ds = load_dataset(data, labels, require_labels=True)
    assert ds.labels is not None
    data_p = Path(data)
    labels_p = Path(labels) if labels is not None else None
    raw_data, raw_labels = _member_bytes(data_p, labels_p)
    return TrainingData(
        maps=ds.maps,
        labels=ds.labels[:, 0],
        path=str(data_p),
        labels_path=None if labels_p is None else str(labels_p),
        sha256=_sha256(raw_data),
        labels_sha256=_sha256(raw_labels),
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
