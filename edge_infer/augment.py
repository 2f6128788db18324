"""Augmentation recipes: the 8 rotations/flips of every source (each keeping its own outline), noise variants of
every base map, every class topped up to a target by variants or copies. Measured in docs/evaluation.md."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Optional, Union

import numpy as np

from .errors import InputError
from .generator import Generated, WaferGenerator
from .sampling import check_choice, is_whole_number
from .wafer import BOUNDARY, MAP_SIZE, as_labels, as_maps, to_onehot, to_states

N_SYMMETRIES = 8

BalanceLike = Union[None, str, int]


def transform_states(states: np.ndarray, k: int) -> np.ndarray:
    """Die states ``(N, H, W)`` under symmetry ``k``, outline too: ``k % 4`` quarter turns, flipped first if k ≥ 4."""
    if not 0 <= int(k) < N_SYMMETRIES:
        raise InputError(f"symmetry index must be 0..{N_SYMMETRIES - 1}, not {k}")
    s = np.asarray(states)
    if k >= 4:
        s = s[:, :, ::-1]
    return np.ascontiguousarray(np.rot90(s, k % 4, axes=(1, 2)))


def symmetric_states(states: np.ndarray, k: int) -> np.ndarray:
    """Die states ``(N, 26, 26)`` under symmetry ``k``, each keeping its own outline (no symmetry maps a course
    outline onto itself): dies moved off it are dropped, dies left uncovered take the nearest covered die's state."""
    moved = transform_states(states, k)
    inside = states != BOUNDARY
    out = np.where(inside, moved, BOUNDARY).astype(states.dtype)
    flat_out, flat_moved = out.reshape(len(out), -1), moved.reshape(len(moved), -1)
    # One fill per distinct outline, grouped on packed bits (np.unique(axis=0) on bool rows is ~100x slower).
    packed = np.ascontiguousarray(np.packbits(inside.reshape(len(out), -1), axis=1))
    keys = packed.view(np.dtype((np.void, packed.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    for u, row in enumerate(first):
        covered = transform_states(inside[row:row + 1], k)[0]
        need, have = np.flatnonzero(inside[row] & ~covered), np.flatnonzero(inside[row] & covered)
        if need.size and have.size:
            (ny, nx), (hy, hx) = np.divmod(need[:, None], MAP_SIZE), np.divmod(have, MAP_SIZE)
            nearest = have[((ny - hy) ** 2 + (nx - hx) ** 2).argmin(axis=1)]
            rows = np.flatnonzero(inverse.reshape(-1) == u)
            flat_out[np.ix_(rows, need)] = flat_moved[np.ix_(rows, nearest)]
    return out


def symmetric(maps: Any, k: int) -> np.ndarray:
    """One-hot maps ``(N, 26, 26, 3)`` under symmetry ``k`` (0..7), each keeping its own outline."""
    return to_onehot(symmetric_states(to_states(as_maps(maps)), k))


def all_symmetries(maps: Any) -> np.ndarray:
    """The 8 symmetries of every map: ``(8·N, 26, 26, 3)``, the 8 of map i at rows 8·i … 8·i+7."""
    states = to_states(as_maps(maps))
    stack = np.stack([symmetric_states(states, k) for k in range(N_SYMMETRIES)], axis=1)
    return to_onehot(stack.reshape(-1, *states.shape[1:]))


def class_target(totals: np.ndarray, balance: BalanceLike) -> int:
    """The per-class target count: ``"max"`` (the largest of ``totals``) or a whole number ≥ 1 (or its text)."""
    if isinstance(balance, str) and balance.strip().lower() == "max":
        return int(np.max(totals))
    value = int(balance) if isinstance(balance, str) and balance.strip().isdecimal() else balance
    if not is_whole_number(value) or value < 1:
        raise InputError(f"balance target must be 'max' or a whole number of at least 1, not {balance!r}")
    return int(value)


def balance_plan(labels: Any, target: BalanceLike = "max", *, have: Any = None) -> np.ndarray:
    """Extra maps (int64 ``(M,)``) per base map of classes ``labels`` so each class reaches ``target``: a class whose
    base maps bring ``H = sum(have)`` maps (default 1 each) gets ``max(0, T − H)``, the first taking any remainder."""
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    h = np.ones(len(y), dtype=np.int64) if have is None else np.asarray(have, dtype=np.int64).reshape(-1)
    if len(h) != len(y):
        raise InputError(f"{len(h)} counts for {len(y)} base maps")
    extra = np.zeros(len(y), dtype=np.int64)
    if len(y) == 0:
        return extra
    totals = np.bincount(y, weights=h).astype(np.int64)
    present = np.bincount(y) > 0
    t = class_target(totals[present], target)
    for c in np.flatnonzero(present):
        rows = np.flatnonzero(y == c)
        q, r = divmod(max(0, t - int(totals[c])), len(rows))
        extra[rows] = q
        extra[rows[:r]] += 1
    return extra


@dataclass(frozen=True)
class Recipe:
    """What ``augment`` makes from each source: ``symmetries``: all 8 rotations/flips are the base maps; ``per_source``
    noise variants of each; ``balance`` None, ``"max"`` or a per-class target; ``fill`` ``"noise"`` (autoencoder) or
    ``"repeat"`` (copies, the control of generation); ``strength`` relative (None: the bundle's)."""

    name: str = "custom"
    symmetries: bool = False
    per_source: int = 0
    balance: BalanceLike = None
    fill: str = "noise"
    strength: Optional[float] = None

    def __post_init__(self) -> None:
        if self.fill not in ("noise", "repeat"):
            raise InputError(f"fill must be one of noise, repeat, not {self.fill!r}")
        if not is_whole_number(self.per_source) or self.per_source < 0:
            raise InputError(f"per_source must be a whole number ≥ 0, not {self.per_source!r}")
        if self.balance is not None:
            class_target(np.ones(1, dtype=np.int64), self.balance)  # validates
        if not (self.symmetries or self.per_source or self.balance is not None):
            raise InputError("this recipe makes nothing: give symmetries, per-source variants or a balance target")

    @property
    def uses_generator(self) -> bool:
        """True when some maps come from the autoencoder (noise variants)."""
        return self.fill == "noise" and (self.per_source > 0 or self.balance is not None)


#: Named recipes, as ``augment --recipe NAME`` offers them.
RECIPES: dict[str, Recipe] = {r.name: r for r in (
        Recipe("classic", per_source=5),
        Recipe("symmetries", symmetries=True),
        Recipe("balanced", balance="max", fill="noise"),
        Recipe("balanced-copies", balance="max", fill="repeat"),
        Recipe("symmetries+noise", symmetries=True, per_source=1),
        Recipe("symmetries+balanced-copies", symmetries=True, balance="max", fill="repeat"),
        Recipe("symmetries+balanced", symmetries=True, balance="max", fill="noise"),
)}

#: ``augment``'s recipe when none is named: docs/evaluation.md's recommended one (+5.0 ± 5.1 macro-F1, 4 of 5 folds).
DEFAULT_RECIPE = "symmetries"


def get_recipe(name: str) -> Recipe:
    """A named recipe (any case); :class:`InputError` naming the choices otherwise."""
    return RECIPES[check_choice(name, tuple(RECIPES), "recipe")]


def resolve_recipe(name: Optional[str] = None, *, per_source: Optional[int] = None, balance: BalanceLike = None,
                   symmetries: Optional[bool] = None) -> Recipe:
    """The recipe of an ``augment`` call: ``name``'s, else the classic one when ``per_source`` is given (what
    ``augment --per-source K`` always did), else :data:`DEFAULT_RECIPE`'s; changed by the options not None."""
    base = get_recipe(name) if name is not None else RECIPES["classic" if per_source is not None else DEFAULT_RECIPE]
    options = {"per_source": per_source, "balance": balance, "symmetries": symmetries}
    changes = {key: value for key, value in options.items() if value is not None}
    keep_name = not changes or (base.name == "classic" and set(changes) == {"per_source"})
    return replace(base, name=base.name if keep_name else f"{base.name}+options", **changes)


class BaseMaps(NamedTuple):
    """Per base map (each source, or its 8 symmetries): its source, whether it is output (a symmetry but the identity),
    its noise variants and copies."""

    base_sources: np.ndarray
    emit_base: np.ndarray
    noise: np.ndarray
    copies: np.ndarray


def base_maps(recipe: Recipe, labels: Any) -> BaseMaps:
    """The :class:`BaseMaps` of ``recipe`` for sources of classes ``labels`` ``(M,)``."""
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    reps = N_SYMMETRIES if recipe.symmetries else 1
    base_sources = np.repeat(np.arange(len(y), dtype=np.int64), reps)
    noise = np.full(base_sources.size, recipe.per_source, dtype=np.int64)
    if recipe.balance is not None:
        noise = noise + balance_plan(y[base_sources], recipe.balance, have=1 + noise)
    zeros = np.zeros_like(noise)
    noise, copies = (zeros, noise) if recipe.fill == "repeat" else (noise, zeros)
    return BaseMaps(base_sources, np.tile(np.arange(reps) > 0, len(y)), noise, copies)


def augment_recipe(generator: Optional[WaferGenerator], recipe: Recipe, maps: Any, labels: Any, *, seed: Any = None,
                   strength: Optional[float] = None, **augment_options: Any) -> Generated:
    """Run ``recipe`` on source ``maps`` + ``labels``: the maps, their labels and each map's source row. Noise variants
    are ``generator.augment``'s (None: a recipe that makes none) with ``strength`` (default: the recipe's)."""
    onehot = as_maps(maps)
    y = as_labels(labels, onehot.shape[0])[:, 0]
    p = base_maps(recipe, y)
    # Each base map in turn gives: itself (a symmetry other than the identity), its noise variants, its copies.
    per_kind = np.stack([p.emit_base, p.noise, p.copies], axis=1)
    if not per_kind.any():
        raise InputError(f"recipe {recipe.name!r} makes no maps from these sources (every class is at the target)")
    base = all_symmetries(onehot) if recipe.symmetries else onehot
    rows = np.repeat(np.arange(len(per_kind)), per_kind.sum(axis=1))
    kind = np.repeat(np.tile(np.arange(3), len(per_kind)), per_kind.reshape(-1))
    out = base[rows]
    if p.noise.sum():
        if generator is None:
            raise InputError(f"recipe {recipe.name!r} makes noise variants: it needs a generator")
        keep = p.noise > 0
        out[kind == 1] = generator.augment([int(c) for c in p.noise[keep]], maps=base[keep],
                                           labels=y[p.base_sources[keep]], seed=seed,
                                           strength=strength if strength is not None else recipe.strength,
                                           **augment_options).maps
    src = p.base_sources[rows]
    return Generated(out, y[src].reshape(-1, 1), src)
