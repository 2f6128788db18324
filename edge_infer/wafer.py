"""What a wafer map is (26×26 dies: boundary, normal, defect), for training, export and runtime (``docs/api.md``)."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence
from typing import Optional, Union

import numpy as np

from .errors import InputError, Note

#: The course ``label.npy``'s order, not WM-811K's alphabetical one: the maps show it (test_class_names.py).
CLASS_NAMES = ("Center", "Donut", "Edge-Loc", "Edge-Ring", "Loc", "Random", "Scratch", "Near-full", "None")

BOUNDARY, NORMAL, DEFECT = 0, 1, 2
STATE_NAMES = ("boundary", "normal", "defect")
N_STATES = 3
MAP_SIZE = 26
MAP_SHAPE = (MAP_SIZE, MAP_SIZE, N_STATES)
MAP_BYTES = MAP_SIZE * MAP_SIZE * N_STATES * 4  # one map as float32 one-hot
#: Maps read, validated and generated at a time (per graph run): what bounds memory on any input.
BLOCK_ROWS = 4096
ClassLike = Union[str, int, np.integer]


class ResizeNote(Note):
    """Maps of another size were resized to 26×26 (nearest neighbour)."""


class NotWaferWarning(UserWarning):
    """Some of the maps given do not look like wafer maps (see :func:`as_states`)."""


def resolve_class(cls: ClassLike, classes: Sequence[str] = CLASS_NAMES) -> int:
    """The index of ``cls``, a name (any case: ``"edge-loc"``) or an index (``2`` or ``"2"``)."""
    lowered, valid = [name.lower() for name in classes], f"valid classes: {', '.join(classes)}"
    text = cls.strip().lower() if isinstance(cls, str) else ""
    if text in lowered:
        return lowered.index(text)
    if isinstance(cls, str) and not text.lstrip("-").isdigit():
        close = difflib.get_close_matches(text.replace("_", "-").replace(" ", "-"), lowered, 1, 0.6)
        hint = f" (did you mean {classes[lowered.index(close[0])]!r}?)" if close else ""
        raise InputError(f"unknown class {cls!r}{hint}; {valid}")
    if isinstance(cls, (bool, np.bool_)) or not isinstance(cls, (str, int, np.integer)):
        raise InputError(f"class must be a name or an index, not {cls!r}")
    if not 0 <= int(cls) < len(classes):
        raise InputError(f"class index {int(cls)} is out of range 0..{len(classes) - 1}; {valid}")
    return int(cls)


def to_onehot(states: np.ndarray) -> np.ndarray:
    """Die states ``(..., H, W)`` in 0..2 to one-hot float32 ``(..., H, W, 3)``."""
    return (np.asarray(states)[..., None] == np.arange(N_STATES)).astype(np.float32)


def is_onehot(arr: np.ndarray) -> bool:
    """Whether every die of ``arr`` ``(..., 3)`` has exactly one channel 1 and the others 0."""
    return bool(((arr == 0) | (arr == 1)).all() and (arr.sum(axis=-1) == 1).all())


def to_states(onehot: np.ndarray) -> np.ndarray:
    """One-hot (or probability) maps ``(..., 3)`` to die states uint8 by argmax."""
    return np.asarray(onehot).argmax(axis=-1).astype(np.uint8)


def outline(maps: np.ndarray) -> np.ndarray:
    """Boolean off-wafer mask ``(..., H, W)`` of one-hot maps: True = boundary."""
    return np.asarray(maps)[..., BOUNDARY] > 0.5


def lock_outline(probs: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """One-hot maps whose dies in ``boundary`` are off-wafer, the rest normal or defect by ``probs`` (as graphs do)."""
    probs = np.asarray(probs)
    states = np.where(probs[..., DEFECT] > probs[..., NORMAL], DEFECT, NORMAL)
    return to_onehot(np.where(np.asarray(boundary, dtype=bool), BOUNDARY, states))


def resize_states(states: np.ndarray, size: int = MAP_SIZE) -> np.ndarray:
    """Nearest-neighbour resize of die states ``(..., H, W)`` to ``size×size`` (it invents no die state)."""
    states = np.asarray(states)
    rows, cols = (np.minimum(((np.arange(size) + 0.5) * n / size).astype(np.int64), n - 1) for n in states.shape[-2:])
    return states[..., rows[:, None], cols[None, :]]


#: Why a map fails the wafer rule, by the code :func:`_wafer_problems` gives (0: it passes).
_WAFER_PROBLEMS = ("", "one die state everywhere", "no wafer dies (every die off-wafer)",
                   "its corner dies are not off-wafer",
                   "its outline is not closed (off-wafer dies inside or notched into the wafer)",
                   "its wafer dies are in more than one piece")


def _runs(on: np.ndarray) -> np.ndarray:
    """How many unbroken runs of True each row of a bool ``(..., W)`` holds."""
    return on[..., 0] + np.count_nonzero(on[..., 1:] & ~on[..., :-1], axis=-1)


def _wafer_problems(states: np.ndarray) -> np.ndarray:
    """The wafer rule on die states ``(N, H, W)``: corner dies off-wafer (a disc in a square), the outline closed (in
    every row and column one unbroken run of wafer dies; the rows holding them consecutive, each run touching the
    next). int8 ``(N,)``: 0 where a map passes, else the index of its first failure in :data:`_WAFER_PROBLEMS`."""
    on = states != BOUNDARY
    rows_on = on.any(axis=2)
    # One piece: with every run unbroken, consecutive rows whose runs overlap make the wafer connected.
    touching = (on[:, 1:] & on[:, :-1]).any(axis=2) | ~(rows_on[:, 1:] & rows_on[:, :-1])
    one_piece = (_runs(rows_on) <= 1) & touching.all(axis=1)
    closed = (_runs(on) <= 1).all(axis=1) & (_runs(on.transpose(0, 2, 1)) <= 1).all(axis=1)
    corners_off = (states[:, [0, 0, -1, -1], [0, -1, 0, -1]] == BOUNDARY).all(axis=1)
    one_state = (states == states[:, :1, :1]).all(axis=(1, 2))
    # The first failure that applies is the most basic one, the one reported.
    failures = [one_state, ~rows_on.any(axis=1), ~corners_off, ~closed, ~one_piece]
    return np.select(failures, np.arange(1, 6, dtype=np.int8), 0).astype(np.int8)


def _check_whole(arr: np.ndarray, name: str, what: str, top: int, hint: str = "") -> None:
    if arr.dtype.kind == "f" and not (arr == np.round(arr)).all():
        raise InputError(f"{name} holds {what} that are not whole numbers")
    if arr.size and (arr.min() < 0 or arr.max() > top):
        raise InputError(f"{name} holds {what} outside 0..{top} (found {int(arr.min())}..{int(arr.max())}){hint}")


def _numbers(obj: object, name: str) -> Optional[np.ndarray]:
    """``obj`` (an array, or nested lists as JSON gives) as one array, or None where it is ragged; NaN refused."""
    try:
        arr = np.asarray(obj)
    except (ValueError, TypeError):
        return None
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(f"{name} contains {int((~np.isfinite(arr)).sum())} NaN or infinite value(s)")
    return None if arr.dtype == object else arr


def _states_of(arr: Optional[np.ndarray], name: str) -> np.ndarray:
    """Die states uint8 ``(N, 26, 26)`` of a numeric batch ``(N, H, W[, 3])`` or single map ``(H, W[, 3])``."""
    if arr is not None and arr.dtype.kind not in "fiub":
        raise InputError(f"{name} has dtype {arr.dtype}; expected numbers (one-hot or die states)")
    if arr is None or arr.ndim < 2:
        raise InputError(f"{name} is not a map: a map is rows of dies, each die a state 0..2 or 3 one-hot numbers "
                         "(nested lists must be rectangular: rows of unequal length, or a number for a row?)")
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape}); give at least one map")
    if arr.ndim == 4 and arr.shape[-1] != N_STATES:
        hint = ("which looks channels-first; expected (N, H, W, 3): use numpy.moveaxis(maps, 1, -1)"
                if arr.shape[1] == N_STATES else "expected (N, H, W, 3) one-hot")
        raise InputError(f"{name} has shape {arr.shape}, {hint}")
    if arr.ndim > 4:
        raise InputError(f"{name} has shape {arr.shape}; expected one-hot (N, 26, 26, 3), die states (N, 26, 26), "
                         "or a single map")
    if arr.ndim == 4 or (arr.ndim == 3 and arr.shape[-1] == N_STATES and arr.shape[0] > N_STATES and is_onehot(arr)):
        if not is_onehot(arr):
            raise InputError(f"{name} is not one-hot: every die must have exactly one of its 3 channels "
                             "(boundary, normal, defect) equal to 1 and the others 0")
        arr = arr.argmax(axis=-1)
    else:
        _check_whole(arr, name, "die states", DEFECT, "; use 0 boundary, 1 normal, 2 defect")
    states = arr.astype(np.uint8).reshape(-1, *arr.shape[-2:])  # a single map is a batch of one
    h, w = states.shape[-2:]
    if (h, w) != (MAP_SIZE, MAP_SIZE):
        if min(h, w) < 2:
            raise InputError(f"{name} maps are {h}×{w}; too small to be a wafer")
        warnings.warn(f"resized {states.shape[0]} map(s) from {h}×{w} to {MAP_SIZE}×{MAP_SIZE} "
                      "dies (nearest neighbour on die states, so no state is invented)", ResizeNote, stacklevel=3)
        states = resize_states(states)
    return np.ascontiguousarray(states)


def as_states(maps: object, *, name: str = "maps", wafer_rule: bool = True) -> np.ndarray:
    """Die states uint8 ``(N, 26, 26)`` of any accepted form (one-hot or states, a batch, one map or a list of maps of
    mixed sizes); InputError if no map passes the wafer rule, a :class:`NotWaferWarning` if some fail."""
    arr = _numbers(maps, name)
    if arr is None and isinstance(maps, (list, tuple)):  # a list of maps of different sizes: each resized
        states = np.concatenate([_states_of(_numbers(m, f"{name}[{i}]"), f"{name}[{i}]") for i, m in enumerate(maps)])
    else:
        states = _states_of(arr, name)
    codes = _wafer_problems(states) if wafer_rule else np.zeros(0)
    bad = np.flatnonzero(codes)
    if bad.size == 0:
        return states
    first, n = int(bad[0]), states.shape[0]
    why = _WAFER_PROBLEMS[int(codes[first])]
    if bad.size == n:
        what = f"{name}: the map is not wafer-shaped ({why})" if n == 1 else \
            f"none of the {n} {name} looks like a wafer map (map 0: {why})"
        raise InputError(f"{what}; a wafer map has off-wafer corner dies and one closed wafer outline "
                         "(0 boundary = off-wafer, 1 normal, 2 defect; see edge_infer.wafer)")
    warnings.warn(f"{bad.size} of {n} {name} do not look like wafer maps (first: map {first}, {why}); "
                  "they are used as given", NotWaferWarning, stacklevel=2)
    return states


def as_maps(maps: object, *, name: str = "maps", wafer_rule: bool = True) -> np.ndarray:
    """One-hot float32 ``(N, 26, 26, 3)`` of any form :func:`as_states` accepts (``wafer_rule=False``: as given)."""
    return to_onehot(as_states(maps, name=name, wafer_rule=wafer_rule))


def as_labels(labels: object, n: int, n_classes: int = len(CLASS_NAMES), *, name: str = "labels") -> np.ndarray:
    """Validate labels for ``n`` maps and return int64 ``(n, 1)`` like ``label.npy``."""
    arr = _numbers(labels, name)
    if arr is None or arr.dtype.kind not in "fiub":
        raise InputError(f"{name} has dtype {'object' if arr is None else arr.dtype}; expected integer class indices")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InputError(f"{name} has shape {arr.shape}; expected (N,) or (N, 1)")
    if arr.shape[0] != n:
        raise InputError(f"{name} has {arr.shape[0]} entries but there are {n} maps")
    _check_whole(arr, name, "class indices", n_classes - 1)
    return arr.astype(np.int64).reshape(-1, 1)
