"""Die-state rules: the one place that knows what a wafer map is.

A map is 26×26 dies, each in one of three states. Users see it two ways:

* one-hot, float32 ``(N, 26, 26, 3)``, channel 0 boundary (off-wafer),
  1 normal, 2 defect -- exactly the course ``data.npy``;
* die states, integers ``(N, H, W)`` with 0 boundary, 1 normal, 2 defect.

Training, export and the runtime all convert and validate through here, so
the repository has a single truth about die states, outlines and classes.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Optional, Union

import numpy as np

from .classes import CLASS_NAMES  # re-exported: the one list of class names
from .errors import InputError

BOUNDARY, NORMAL, DEFECT = 0, 1, 2
STATE_NAMES = ("boundary", "normal", "defect")
N_STATES = 3
MAP_SIZE = 26
MAP_SHAPE = (MAP_SIZE, MAP_SIZE, N_STATES)


ClassLike = Union[str, int, np.integer]


class ResizeNote(UserWarning):
    """Maps of another size were resized to 26×26 (nearest neighbour)."""


@functools.lru_cache(maxsize=64)
def _lowered_names(classes: tuple[str, ...]) -> dict[str, int]:
    # Cached per class tuple: resolve_class runs on every generate call, and the
    # returned dict is only read, never changed, so sharing it across threads is safe.
    return {name.lower(): i for i, name in enumerate(classes)}


def resolve_class(cls: ClassLike, classes: Sequence[str] = CLASS_NAMES) -> int:
    """Return the index of ``cls``, given by name (any case) or index.

    ``"edge-loc"``, ``"EDGE-LOC"`` and ``2`` all name ``Edge-Loc``; ``"2"``
    is read as an index too, so the CLI can take either form.
    """
    if isinstance(cls, (bool, np.bool_)):
        raise InputError(f"class must be a name or an index, not {cls!r}")
    if isinstance(cls, (int, np.integer)):
        index = int(cls)
    elif isinstance(cls, str):
        text = cls.strip()
        lowered = _lowered_names(tuple(classes))
        if text.lower() in lowered:
            return lowered[text.lower()]
        if text.lstrip("-").isdigit():
            index = int(text)
        else:
            raise InputError(
                f"unknown class {cls!r}; valid classes: {', '.join(classes)}"
            )
    else:
        raise InputError(f"class must be a name or an index, not {type(cls).__name__}")
    if not 0 <= index < len(classes):
        raise InputError(
            f"class index {index} is out of range 0..{len(classes) - 1}; "
            f"valid classes: {', '.join(classes)}"
        )
    return index


def to_onehot(states: np.ndarray) -> np.ndarray:
    """Die states ``(..., H, W)`` in 0..2 to one-hot float32 ``(..., H, W, 3)``."""
    states = np.asarray(states)
    return (states[..., None] == np.arange(N_STATES)).astype(np.float32)


def to_states(onehot: np.ndarray) -> np.ndarray:
    """One-hot (or probability) maps ``(..., 3)`` to die states uint8 by argmax."""
    return np.asarray(onehot).argmax(axis=-1).astype(np.uint8)


def outline(maps: np.ndarray) -> np.ndarray:
    """Boolean off-wafer mask ``(..., H, W)`` of one-hot maps: True = boundary."""
    return np.asarray(maps)[..., BOUNDARY] > 0.5


# Rows of lock_outline's table, by code (bit 0: decoder prefers defect, bit 1:
# off-wafer): in-wafer dies take the decoder's choice, off-wafer dies are boundary.
_LOCK_TABLE = np.zeros((4, N_STATES), dtype=np.float32)
_LOCK_TABLE[[0, 1, 2, 3], [NORMAL, DEFECT, BOUNDARY, BOUNDARY]] = 1
_DIE_ROW = np.dtype((np.void, N_STATES * 4))  # one die's one-hot float32 row as a single item
_LOCK_ROWS = _LOCK_TABLE.view(_DIE_ROW).reshape(4)


def lock_outline(
    probs: np.ndarray,
    boundary: np.ndarray,
    out: Optional[np.ndarray] = None,
    *,
    work: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Turn decoder probabilities into one-hot maps with a fixed wafer outline.

    Dies in ``boundary`` (broadcast to ``probs[..., 0]``) become boundary; every
    other die becomes normal or defect, whichever the decoder rates higher. So
    the map keeps its source's outline exactly and only in-wafer dies are
    generated. ``out``: a float32 array of ``probs``' shape to write the maps
    into (e.g. rows of the caller's result, saving a copy); it may not overlap
    ``probs``. ``work``: an optional bool array of ``probs.shape[:-1]`` for
    the per-die codes (saves an allocation). Returns the maps (``out`` when given).
    """
    probs = np.asarray(probs)
    shape = probs.shape[:-1] + (N_STATES,)
    boundary = np.asarray(boundary, dtype=bool)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise InputError(f"out must be float32 of shape {shape}, not {out.dtype} {out.shape}")
    # A 2-bit code per die (bit 0: decoder says defect, bit 1: off-wafer) and
    # one table lookup that copies each die's 12-byte one-hot row into place:
    # about half the time of writing the three channels one by one (a strided
    # store per channel), and this runs on every generated map.
    code = np.greater(probs[..., DEFECT], probs[..., NORMAL], out=work).view(np.uint8)
    # boundary broadcasts here (one outline for many maps costs one small shift).
    np.bitwise_or(code, np.left_shift(boundary.view(np.uint8), 1), out=code)
    if out.flags.c_contiguous:
        # mode="clip": codes are 0..3 by construction; "raise" would buffer and check each.
        _LOCK_ROWS.take(code, out=out.view(_DIE_ROW).reshape(code.shape), mode="clip")
    else:
        out[...] = _LOCK_TABLE[code]
    return out


def resize_states(states: np.ndarray, size: int = MAP_SIZE) -> np.ndarray:
    """Nearest-neighbour resize of die states ``(..., H, W)`` to ``size×size``.

    Nearest neighbour only picks existing dies, so no die state is invented
    (no blending between a defect and the boundary, say).
    """
    states = np.asarray(states)
    h, w = states.shape[-2:]
    rows = np.minimum(((np.arange(size) + 0.5) * h / size).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size) + 0.5) * w / size).astype(np.int64), w - 1)
    return states[..., rows[:, None], cols[None, :]]


def _check_finite(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise InputError(f"{name} contains {bad} NaN or infinite value(s)")


def _states_from_onehot(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype.kind not in "fiub":
        raise InputError(f"{name} has dtype {arr.dtype}; expected numbers")
    _check_finite(arr, name)
    is_binary = (arr == 0) | (arr == 1)
    if not is_binary.all() or not (arr.sum(axis=-1) == 1).all():
        raise InputError(
            f"{name} is not one-hot: every die must have exactly one of its 3 "
            "channels (boundary, normal, defect) equal to 1 and the others 0"
        )
    return arr.argmax(axis=-1).astype(np.uint8)


def _states_from_ints(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype.kind == "f":
        _check_finite(arr, name)
        if not (arr == np.round(arr)).all():
            raise InputError(f"{name} holds die states that are not whole numbers")
    elif arr.dtype.kind not in "iub":
        raise InputError(f"{name} has dtype {arr.dtype}; expected numbers")
    if arr.size and (arr.min() < 0 or arr.max() > 2):
        raise InputError(
            f"{name} holds die states outside 0..2 (found {arr.min()}..{arr.max()}); "
            "use 0 boundary, 1 normal, 2 defect"
        )
    return arr.astype(np.uint8)


def _one_to_states(arr: np.ndarray, name: str) -> np.ndarray:
    """Die states of a batch (N,H,W[,3]) or a single map (H,W[,3])."""
    if arr.ndim == 4:
        if arr.shape[-1] != N_STATES:
            if arr.shape[1] == N_STATES:
                raise InputError(
                    f"{name} has shape {arr.shape}, which looks channels-first; "
                    "expected (N, H, W, 3): use numpy.moveaxis(maps, 1, -1)"
                )
            raise InputError(f"{name} has shape {arr.shape}; expected (N, H, W, 3) one-hot")
        return _states_from_onehot(arr, name)
    if arr.ndim == 3:
        looks_onehot = (
            arr.shape[-1] == N_STATES
            and arr.shape[0] > N_STATES
            and arr.dtype.kind in "fiub"
            and np.isfinite(arr).all()
            and bool(((arr == 0) | (arr == 1)).all())
            and bool((arr.sum(axis=-1) == 1).all())
        )
        if looks_onehot:
            return _states_from_onehot(arr, name)[None]
        return _states_from_ints(arr, name)
    if arr.ndim == 2:
        return _states_from_ints(arr, name)[None]
    raise InputError(
        f"{name} has shape {arr.shape}; expected one-hot (N, 26, 26, 3), "
        "die states (N, 26, 26), or a single map"
    )


def as_states(maps: object, *, name: str = "maps") -> np.ndarray:
    """Validate any accepted map form and return die states uint8 ``(N, 26, 26)``.

    Accepts one-hot ``(N, H, W, 3)``, die states ``(N, H, W)``, a single map in
    either form, or a list of maps of mixed sizes. Maps that are not 26×26 are
    resized by nearest neighbour, with a :class:`ResizeNote` warning.
    Raises :class:`InputError` with one clear message for anything else.
    """
    if isinstance(maps, (list, tuple)) and maps and not np.isscalar(maps[0]):
        parts = [as_states(m, name=f"{name}[{i}]") for i, m in enumerate(maps)]
        return np.concatenate(parts, axis=0)
    try:
        arr = np.asarray(maps)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{name} cannot be read as an array: {exc}") from None
    if arr.dtype.kind not in "fiub":
        raise InputError(f"{name} has dtype {arr.dtype}; expected numbers (one-hot or die states)")
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape}); give at least one map")
    states = _one_to_states(arr, name)
    h, w = states.shape[-2:]
    if (h, w) != (MAP_SIZE, MAP_SIZE):
        if min(h, w) < 2:
            raise InputError(f"{name} maps are {h}×{w}; too small to be a wafer")
        warnings.warn(
            f"resized {states.shape[0]} map(s) from {h}×{w} to {MAP_SIZE}×{MAP_SIZE} "
            "dies (nearest neighbour on die states, so no state is invented)",
            ResizeNote,
            stacklevel=2,
        )
        states = resize_states(states)
    return np.ascontiguousarray(states)


def as_maps(maps: object, *, name: str = "maps") -> np.ndarray:
    """Validate any accepted map form and return one-hot float32 ``(N, 26, 26, 3)``."""
    return to_onehot(as_states(maps, name=name))


def as_labels(labels: object, n: int, n_classes: int = len(CLASS_NAMES), *, name: str = "labels") -> np.ndarray:
    """Validate labels for ``n`` maps and return int64 ``(n, 1)`` like ``label.npy``."""
    try:
        arr = np.asarray(labels)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{name} cannot be read as an array: {exc}") from None
    if arr.dtype == object or arr.dtype.kind not in "fiub":
        raise InputError(f"{name} has dtype {arr.dtype}; expected integer class indices")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InputError(f"{name} has shape {arr.shape}; expected (N,) or (N, 1)")
    if arr.shape[0] != n:
        raise InputError(f"{name} has {arr.shape[0]} entries but there are {n} maps")
    if arr.dtype.kind == "f":
        _check_finite(arr, name)
        if not (arr == np.round(arr)).all():
            raise InputError(f"{name} holds values that are not whole class indices")
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise InputError(
            f"{name} holds class indices outside 0..{n_classes - 1} "
            f"(found {int(arr.min())}..{int(arr.max())})"
        )
    return arr.astype(np.int64).reshape(-1, 1)
