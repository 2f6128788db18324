"""The latent bank and its statistics: what generation samples from.

The bank holds the encoder's latent for every training map, its label, and
which of the (few) distinct wafer outlines it has -- never the maps
themselves. It is written as an ``.npz`` whose bytes depend only on its
arrays (fixed zip timestamps), so re-exporting one checkpoint is reproducible.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

import numpy as np

from edge_infer.wafer import CLASS_NAMES, outline

BANK_KEYS = ("latents", "labels", "outline_ids", "outlines")


def outline_table(maps: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
    """Distinct boundary masks of one-hot ``maps`` and each map's index into them.

    Returns ``(outline_ids int64 (N,), outlines bool (K,26,26))``; outlines are
    ordered by first appearance, so the most common course outline is row 0.
    """
    masks = outline(maps)
    flat = masks.reshape(len(masks), -1)
    _, first, inverse = np.unique(flat, axis=0, return_index=True, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    order = np.argsort(first)  # unique rows sorted by first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    outline_ids = rank[inverse].astype(np.int64)
    outlines = masks[np.sort(first)].astype(bool)
    return outline_ids, outlines


def build_bank(latents: np.ndarray, labels: np.ndarray, maps: np.ndarray) -> "dict[str, np.ndarray]":
    """The bank arrays for ``latents`` (N,64,3,3) of ``maps`` (N,26,26,3) with ``labels`` (N,) or (N,1)."""
    latents = np.ascontiguousarray(latents, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if not (len(latents) == len(labels) == len(maps)):
        raise ValueError(f"bank parts disagree: {len(latents)} latents, {len(labels)} labels, {len(maps)} maps")
    outline_ids, outlines = outline_table(maps)
    return {"latents": latents, "labels": labels, "outline_ids": outline_ids, "outlines": outlines}


def bank_bytes(bank: "dict[str, np.ndarray]") -> bytes:
    """The ``.npz`` bytes of ``bank``: ``np.load``-able, no pickles, no timestamps.

    Stored, not deflated: float latents barely compress, while inflating
    them cost every bundle load (so every CLI run) time at start-up.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in BANK_KEYS:
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(bank[key]), allow_pickle=False)
            zf.writestr(info, member.getvalue())
    return buffer.getvalue()


def channel_stats(latents: np.ndarray) -> "dict[str, list[float]]":
    """Per latent channel: ``mean`` over maps and 3×3 positions, and the map-to-map ``std``.

    The std is the root mean over the 3×3 positions of the variance *across
    maps* at each position. It measures how much latents differ between
    maps -- the scale generation's noise should have -- and not a channel's
    spatial pattern within one map (a pooled std would count that too). So a
    class with a single map has std zeros, as the bundle format says.
    Computed in float64 so the figures do not depend on summation order.
    """
    z = latents.astype(np.float64)
    mean = z.mean(axis=(0, 2, 3))
    std = np.sqrt(z.var(axis=0).mean(axis=(1, 2)))
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}


def latent_stats(latents: np.ndarray, labels: np.ndarray, classes: Sequence[str] = CLASS_NAMES) -> dict:
    """``{"overall": {mean, std}, "per_class": {name: {mean, std}}}``, 64 floats each.

    Classes without any map are left out of ``per_class`` (there is nothing to
    describe, and no source to generate from); a one-map class has std zeros.
    """
    labels = np.asarray(labels).reshape(-1)
    per_class = {}
    for index, name in enumerate(classes):
        chosen = latents[labels == index]
        if len(chosen):
            per_class[name] = channel_stats(chosen)
    return {"overall": channel_stats(latents), "per_class": per_class}


def class_rows(labels: np.ndarray, classes: Sequence[str] = CLASS_NAMES) -> "dict[str, list[int]]":
    """Each class's bank rows, in bank order, every class named (empty where it has none).

    Written to the manifest so a client in any language finds a class's rows
    without reading the ``.npz`` (docs/bundle-format.md).
    """
    labels = np.asarray(labels).reshape(-1)
    return {name: [int(i) for i in np.flatnonzero(labels == index)] for index, name in enumerate(classes)}


def class_counts(labels: np.ndarray, classes: Sequence[str] = CLASS_NAMES) -> "dict[str, int]":
    """Maps per class, every class named (0 where it has none)."""
    counts = np.bincount(np.asarray(labels).reshape(-1), minlength=len(classes))
    return {name: int(counts[i]) for i, name in enumerate(classes)}
