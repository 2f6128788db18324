"""Augmentation recipes (edge_infer.augment): symmetries keep the outline, balance plans, augment counts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edge_infer import augment as R
from edge_infer.errors import InputError
from edge_infer.wafer import BOUNDARY, DEFECT, NORMAL, outline, to_onehot, to_states


def _disc(radius: float = 12.0) -> np.ndarray:
    """A 26×26 outline symmetric under all 8 symmetries: True = boundary."""
    yy, xx = np.mgrid[:26, :26]
    return (yy - 12.5) ** 2 + (xx - 12.5) ** 2 > radius**2


def _maps(n: int, boundary: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    states = rng.choice([NORMAL, DEFECT], size=(n, 26, 26))
    states[:, boundary] = BOUNDARY
    return to_onehot(states)


def test_symmetric_outline_is_plain_rotation():
    maps = _maps(4, _disc())
    states = to_states(maps)
    for k in range(8):
        want = np.rot90(states[:, :, ::-1] if k >= 4 else states, k % 4, axes=(1, 2))
        np.testing.assert_array_equal(to_states(R.symmetric(maps, k)), want)


def test_asymmetric_outline_is_kept_and_gaps_filled_from_neighbours(wafer_data):
    maps = wafer_data.maps[:40]
    src = outline(maps)
    for k in range(1, 8):
        out = R.symmetric(maps, k)
        np.testing.assert_array_equal(outline(out), src)  # the source's own outline, not the rotated one
        moved = R.transform_states(to_states(maps), k)
        states = to_states(out)
        covered = (moved != BOUNDARY) & ~src
        np.testing.assert_array_equal(states[covered], moved[covered])  # dies the transform covers are moved
        # Uncovered in-wafer dies are never boundary and take a state present in that map.
        gap = (moved == BOUNDARY) & ~src
        assert gap.any() and (states[gap] != BOUNDARY).all()


def test_all_symmetries_order_and_identity():
    maps = _maps(3, _disc(), seed=1)
    out = R.all_symmetries(maps)
    assert out.shape == (24, 26, 26, 3)
    np.testing.assert_array_equal(out[::8], maps)
    np.testing.assert_array_equal(out[8 * 2 + 2], R.symmetric(maps[2:3], 2)[0])
    with pytest.raises(InputError, match="symmetry index"):
        R.transform_states(to_states(maps), 8)


def test_balance_plan_reaches_target_with_more_per_rare_source():
    labels = np.array([0] * 10 + [1] * 3 + [2])
    extra = R.balance_plan(labels, "max")
    totals = np.bincount(labels, weights=1 + extra).astype(int)
    assert totals.tolist() == [10, 10, 10]
    assert extra[:10].sum() == 0 and extra[13] == 9
    assert sorted(extra[10:13].tolist()) == [2, 2, 3]  # as even as it divides
    extra = R.balance_plan(labels, 12, have=np.full(14, 2))
    assert np.bincount(labels, weights=2 + extra).astype(int).tolist() == [20, 12, 12]  # never removes
    for bad in ("most", 0, -3, 2.5):
        with pytest.raises(InputError, match="balance target"):
            R.balance_plan(labels, bad)


def test_plan_counts_for_each_named_recipe():
    labels = np.array([0, 0, 0, 0, 1])
    classic = R.base_maps(R.RECIPES["classic"], labels)
    assert classic.noise.tolist() == [5] * 5 and classic.copies.sum() == classic.emit_base.sum() == 0
    sym = R.base_maps(R.RECIPES["symmetries"], labels)
    assert sym.emit_base.sum() == 35 and sym.base_sources.size == 40 and sym.noise.sum() == 0
    bal = R.base_maps(R.RECIPES["symmetries+balanced"], labels)
    y = labels[bal.base_sources]
    assert np.bincount(y, weights=1 + bal.noise).tolist() == [32, 32] and bal.copies.sum() == 0
    cop = R.base_maps(R.RECIPES["symmetries+balanced-copies"], labels)
    np.testing.assert_array_equal(cop.copies, bal.noise)
    assert cop.noise.sum() == 0


def test_copies_for_variants_need_no_generator():
    r = R.RECIPES["symmetries+balanced"]
    assert r.uses_generator and not replace(r, fill="repeat").uses_generator
    assert not R.RECIPES["symmetries"].uses_generator and not R.RECIPES["balanced-copies"].uses_generator
    with pytest.raises(InputError, match="fill must be one of"):
        replace(r, fill="paste")
    with pytest.raises(InputError, match="makes nothing"):
        R.Recipe("empty")


def test_resolve_recipe_keeps_classic_per_source():
    assert R.resolve_recipe() == R.RECIPES[R.DEFAULT_RECIPE]
    assert R.resolve_recipe(per_source=3) == R.Recipe("classic", per_source=3)
    r = R.resolve_recipe("balanced", symmetries=True)
    assert r.symmetries and r.balance == "max" and r.name == "balanced+options"
    with pytest.raises(InputError, match="unknown recipe"):
        R.resolve_recipe("sideways")


def test_generator_augment_with_counts_per_source(bundle_dir):
    from edge_infer import WaferGenerator

    gen = WaferGenerator.load(bundle_dir, provider="cpu")
    maps = gen.bank_maps(np.arange(4))
    labels = gen.bundle.labels[:4]
    res = gen.augment([2, 0, 3, 1], maps=maps, labels=labels, seed=5)
    np.testing.assert_array_equal(res.sources, [0, 0, 2, 2, 2, 3])
    np.testing.assert_array_equal(res.labels[:, 0], labels[res.sources])
    np.testing.assert_array_equal(outline(res.maps), outline(maps)[res.sources])
    same = gen.augment(2, maps=maps, labels=labels, seed=5)
    np.testing.assert_array_equal(gen.augment([2, 2, 2, 2], maps=maps, labels=labels, seed=5).maps, same.maps)


def test_augment_recipe_through_the_runtime(bundle_dir):
    from edge_infer import WaferGenerator

    gen = WaferGenerator.load(bundle_dir, provider="cpu")
    idx = np.concatenate([np.flatnonzero(gen.bundle.labels == 8)[:6], np.flatnonzero(gen.bundle.labels == 1)])
    maps, labels = gen.bank_maps(idx), gen.bundle.labels[idx]
    classic = R.augment_recipe(gen, R.RECIPES["classic"], maps, labels, seed=0)
    np.testing.assert_array_equal(classic.maps, gen.augment(5, maps=maps, labels=labels, seed=0).maps)
    res = R.augment_recipe(gen, R.RECIPES["symmetries+balanced"], maps, labels, seed=0)
    totals = np.bincount(np.concatenate([labels, res.labels[:, 0]]), minlength=9)
    assert totals[8] == totals[1] == 48  # 6 None × 8 symmetries; the one Donut topped up to it
    assert (np.diff(res.sources) >= 0).all()  # everything from source i on consecutive rows
    np.testing.assert_array_equal(outline(res.maps), outline(maps)[res.sources])
    # The largest class needs no variants: its rows are the 7 other symmetries of each source, nothing else.
    none_rows = res.labels[:, 0] == 8
    syms = R.all_symmetries(maps[:6])
    np.testing.assert_array_equal(res.maps[none_rows], syms[np.arange(48) % 8 != 0])
    # The Donut: its 7 other symmetries once each, and 40 noise variants (none of them a symmetry of it).
    donut = to_states(res.maps[res.labels[:, 0] == 1])
    same = (donut[:, None] == to_states(R.all_symmetries(maps[6:]))[None]).all(axis=(2, 3))  # (47, 8)
    assert same[:, 1:].sum(axis=0).tolist() == [1] * 7 and same.sum(axis=1).tolist().count(0) == 40
    copies = R.augment_recipe(None, R.RECIPES["symmetries+balanced-copies"], maps, labels)
    np.testing.assert_array_equal(copies.labels, res.labels)
    with pytest.raises(InputError, match="needs a generator"):
        R.augment_recipe(None, R.RECIPES["balanced"], maps, labels)
