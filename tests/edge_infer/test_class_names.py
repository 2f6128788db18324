"""Class names are tied to what the maps of each index look like.

edge-infer 0.1 named indices 5, 6, 7 Near-full, Random, Scratch (WM-811K's
alphabetical list). The data says otherwise: index 7 is almost fully defective,
6 has thin lines, 5 scattered defects. These tests read the names from where
users get them (``edge_infer.wafer.CLASS_NAMES``, the bundle manifest) and the
figures from the maps, so the old names fail them.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.wafer import BOUNDARY, CLASS_NAMES, DEFECT


def _defect_share(maps: np.ndarray) -> np.ndarray:
    """Per map: defective dies / in-wafer dies."""
    states = maps.argmax(-1)
    return (states == DEFECT).sum((1, 2)) / (states != BOUNDARY).sum((1, 2))


def _mean_share_by_name(maps: np.ndarray, labels: np.ndarray, names) -> dict[str, float]:
    share = _defect_share(maps)
    return {names[c]: float(share[labels == c].mean()) for c in range(len(names)) if (labels == c).sum() > 1}


def test_names_match_the_data(wafer_data):
    means = _mean_share_by_name(wafer_data.maps, wafer_data.labels[:, 0], CLASS_NAMES)
    ranked = sorted(means, key=means.get, reverse=True)
    # Near-full: nearly every die defective; Random: scattered, about half.
    assert ranked[:2] == ["Near-full", "Random"], means
    assert means["Near-full"] > 0.8 and 0.35 < means["Random"] < 0.65, means
    # Scratch: thin lines, the fewest defects of any defect pattern (None aside).
    patterns = {k: v for k, v in means.items() if k != "None"}
    assert min(patterns, key=patterns.get) == "Scratch", means


def test_scratch_defects_are_thinner_than_random_ones(wafer_data):
    """Line-shaped: a Scratch defect has fewer defective 4-neighbours than a Random one."""
    states = wafer_data.maps.argmax(-1)
    labels = wafer_data.labels[:, 0]
    d = states == DEFECT
    padded = np.pad(d, ((0, 0), (1, 1), (1, 1)))
    neighbours = padded[:, :-2, 1:-1].astype(int) + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]

    def mean_neighbours(name: str) -> float:
        sel = labels == CLASS_NAMES.index(name)
        return float(neighbours[sel][d[sel]].mean())

    assert mean_neighbours("Scratch") < mean_neighbours("Random") < mean_neighbours("Near-full")


def test_bundle_and_generated_maps_carry_the_names(bundle_dir):
    """The manifest lists the corrected names, and `--class Near-full` gives mostly defective wafers."""
    from edge_infer import WaferGenerator

    gen = WaferGenerator.load(bundle_dir)
    assert gen.classes == CLASS_NAMES
    assert gen.bundle.manifest["classes"] == list(CLASS_NAMES)
    assert gen.bundle.class_counts() == {"Center": 90, "Donut": 1, "Edge-Loc": 296, "Edge-Ring": 31, "Loc": 297,
                                         "Random": 74, "Scratch": 72, "Near-full": 16, "None": 404}
    near_full = _defect_share(gen.generate("Near-full", 16, seed=0).maps)
    scratch = _defect_share(gen.generate("Scratch", 16, seed=0).maps)
    assert np.median(near_full) > 0.7, near_full
    assert np.median(scratch) < 0.3, scratch


@pytest.mark.parametrize("name, index", [("random", 5), ("SCRATCH", 6), ("near-full", 7)])
def test_names_resolve_to_their_index(name, index):
    from edge_infer.wafer import resolve_class

    assert resolve_class(name) == index
