"""Die-state rules: conversions, validation, class names, resizing, outline lock."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edge_infer.errors import InputError
from edge_infer.wafer import (
    BOUNDARY,
    CLASS_NAMES,
    DEFECT,
    NORMAL,
    ResizeNote,
    as_labels,
    as_maps,
    as_states,
    lock_outline,
    resize_states,
    resolve_class,
    to_onehot,
    to_states,
)

def _disc(h: int, w: int) -> np.ndarray:
    """Off-wafer mask of a disc filling an h×w map (corners off-wafer too)."""
    yy, xx = np.mgrid[:h, :w]
    off = ((yy + 0.5) / h - 0.5) ** 2 + ((xx + 0.5) / w - 0.5) ** 2 > 0.25
    off[[0, 0, -1, -1], [0, -1, 0, -1]] = True
    return off


def _as_wafers(states: np.ndarray) -> np.ndarray:
    """Random die states made wafer-shaped: off-wafer outside the disc, normal or defect inside."""
    out = np.maximum(states, NORMAL).astype(states.dtype)
    out[..., _disc(*states.shape[-2:])] = BOUNDARY
    return out


state_batches = arrays(
    np.uint8,
    st.tuples(st.integers(1, 4), st.just(26), st.just(26)),
    elements=st.integers(0, 2),
).map(_as_wafers)


@given(state_batches)
@settings(max_examples=40, deadline=None)
def test_states_onehot_round_trip(states):
    onehot = to_onehot(states)
    assert onehot.dtype == np.float32 and onehot.shape == states.shape + (3,)
    assert (onehot.sum(-1) == 1).all()
    assert np.array_equal(to_states(onehot), states)
    assert np.array_equal(as_states(onehot), states)
    assert np.array_equal(as_states(states), states)
    assert np.array_equal(as_maps(states.astype(np.int64)), onehot)


@given(arrays(np.float64, (2, 26, 26, 3), elements=st.floats(allow_nan=True, allow_infinity=True)))
@settings(max_examples=60, deadline=None)
def test_arbitrary_floats_are_accepted_only_when_one_hot(arr):
    try:
        out = as_maps(arr)
    except InputError:
        return
    assert np.array_equal(out, arr.astype(np.float32))


@given(arrays(np.int64, st.tuples(st.integers(1, 3), st.integers(4, 40), st.integers(4, 40)), elements=st.integers(-3, 5)))
@settings(max_examples=60, deadline=None)
def test_state_validation_accepts_exactly_0_to_2(arr):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResizeNote)
        if arr.min() < 0 or arr.max() > 2:
            with pytest.raises(InputError, match="outside 0..2"):
                as_states(arr)
        else:
            arr = _as_wafers(arr)
            out = as_states(arr)
            assert out.shape == (arr.shape[0], 26, 26)
            assert set(np.unique(out)) <= set(np.unique(arr))


def test_single_maps_in_both_forms():
    states = _as_wafers(np.ones((26, 26), dtype=np.int64))
    assert as_states(states).shape == (1, 26, 26)
    assert as_states(to_onehot(states)).shape == (1, 26, 26)
    assert np.array_equal(as_states(to_onehot(states))[0], states)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((2, 26, 26, 3), np.nan), "NaN"),
        (np.zeros((2, 26, 26, 3)), "not one-hot"),
        (np.full((2, 26, 26, 3), 0.5), "not one-hot"),
        (np.zeros((2, 3, 26, 26)), "channels-first"),
        (np.zeros((2, 26, 26, 4)), "expected"),
        (np.zeros((0, 26, 26, 3)), "empty"),
        (np.zeros((2, 2, 26, 26, 3)), "expected one-hot"),
        (np.array(["a", "b"]), "dtype"),
        (np.full((26, 26), 1.5), "whole numbers"),
        (np.full((26, 26), 7), "outside 0..2"),
    ],
)
def test_bad_maps_give_one_clear_error(bad, message):
    with pytest.raises(InputError, match=message):
        as_states(bad)


def test_resize_is_nearest_neighbour_and_noted():
    big = np.ones((52, 52), dtype=np.uint8)
    big[10:20, 30:40] = DEFECT
    big = _as_wafers(big)
    with pytest.warns(ResizeNote, match="52×52"):
        out = as_states(big)
    assert out.shape == (1, 26, 26)
    # every 2×2 block maps to one of its own dies: an exact downscale here
    assert np.array_equal(out[0], big[1::2, 1::2])
    small = np.array([[0, 1, 2]] * 3, dtype=np.uint8)
    up = resize_states(small)
    assert set(np.unique(up)) == {0, 1, 2}
    assert up.shape == (26, 26)


def test_lock_outline_keeps_boundary_and_generates_only_inside():
    rng = np.random.default_rng(0)
    probs = rng.random((5, 26, 26, 3)).astype(np.float32)
    boundary = np.zeros((26, 26), bool)
    boundary[:3] = True
    out = lock_outline(probs, boundary)
    states = to_states(out)
    assert np.array_equal(states == BOUNDARY, np.broadcast_to(boundary, states.shape))
    inside = ~boundary
    expect = np.where(probs[..., DEFECT] > probs[..., NORMAL], DEFECT, NORMAL)
    assert np.array_equal(states[:, inside], expect[:, inside])


def test_lock_outline_equals_the_die_rule_with_ties_and_per_map_outlines():
    # check lock_outline against the rule written die by die, with ties (a tie is normal)
    # and a different outline for every map.
    rng = np.random.default_rng(4)
    probs = rng.integers(0, 3, size=(7, 26, 26, 3)).astype(np.float32)  # many ties
    boundary = rng.random((7, 26, 26)) < 0.3
    want = np.zeros_like(probs)
    defect = (probs[..., DEFECT] > probs[..., NORMAL]) & ~boundary
    want[..., BOUNDARY] = boundary
    want[..., DEFECT] = defect
    want[..., NORMAL] = ~boundary & ~defect
    got = lock_outline(probs, boundary)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    strided = np.full((7, 26, 26, 4), 9, np.float32)[..., :3]  # non-contiguous probabilities
    strided[...] = probs
    np.testing.assert_array_equal(lock_outline(strided, boundary), want)


@pytest.mark.parametrize("given_, index", [("None", 8), ("edge-loc", 2), ("EDGE-RING", 3), (0, 0), ("4", 4), (np.int64(7), 7)])
def test_resolve_class(given_, index):
    assert resolve_class(given_) == index


@pytest.mark.parametrize("bad", ["Spiral", 9, -1, "", 2.5, True])
def test_unknown_class_lists_valid_names(bad):
    with pytest.raises(InputError) as err:
        resolve_class(bad)
    if isinstance(bad, str) or isinstance(bad, int) and not isinstance(bad, bool):
        assert "Center" in str(err.value) and "None" in str(err.value)


def test_class_names_are_the_course_order():
    assert CLASS_NAMES[0] == "Center" and CLASS_NAMES[1] == "Donut" and CLASS_NAMES[8] == "None"


def test_labels_validation():
    assert as_labels(np.arange(9), 9).shape == (9, 1)
    assert as_labels(np.arange(3.0).reshape(3, 1), 3).dtype == np.int64
    for bad, msg in [(np.arange(4), "4 entries"), (np.array([0, 1, 9]), "outside 0..8"),
                     (np.array([0.5, 1, 2]), "whole"), (np.zeros((3, 2)), "shape"),
                     (np.array(["x", "y", "z"]), "dtype"), (np.array([0, np.nan, 1]), "NaN")]:
        with pytest.raises(InputError, match=msg):
            as_labels(bad, 3)
