"""Sampling: seeds, source choice, mixing partners, noise scale. Pure numpy, no model."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer import sampling as S
from edge_infer.errors import InputError


def test_seeds_are_reproducible_and_independent_of_call_order():
    a = S.block_rng(S.root_seed(7), 3).standard_normal(5)
    root = S.root_seed(7)
    S.plan_rng(root).standard_normal(100)  # using another stream first changes nothing
    S.block_rng(root, 0).standard_normal(100)
    b = S.block_rng(root, 3).standard_normal(5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, S.block_rng(S.root_seed(8), 3).standard_normal(5))
    assert not np.array_equal(a, S.block_rng(root, 4).standard_normal(5))
    # Without a seed, fresh entropy each time.
    assert not np.array_equal(S.plan_rng(S.root_seed(None)).random(4), S.plan_rng(S.root_seed(None)).random(4))


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_bad_seeds(bad):
    with pytest.raises(InputError, match="seed"):
        S.root_seed(bad)


@pytest.mark.parametrize("bad", [0, -0.5, float("nan"), float("inf"), "x"])
def test_bad_strength(bad):
    with pytest.raises(InputError, match="strength"):
        S.check_strength(bad)


def test_choose_sources_distinct_then_cycles_and_pins():
    cands = np.array([3, 8, 11, 20, 42])
    rng = np.random.default_rng(0)
    first = S.choose_sources(cands, 5, rng)
    assert sorted(first) == sorted(cands)
    many = S.choose_sources(cands, 23, np.random.default_rng(1))
    assert set(many) == set(cands)
    counts = np.bincount(many)[cands]
    assert counts.max() - counts.min() <= 1  # cycled permutation: used evenly
    np.testing.assert_array_equal(S.choose_sources(cands, 4, rng, pin=11), [11] * 4)
    with pytest.raises(InputError):
        S.choose_sources(np.array([], dtype=np.int64), 3, rng)


def test_partners_same_class_not_self_same_outline_when_possible():
    labels = np.array([0, 0, 0, 0, 1, 2, 2])
    outlines = np.array([0, 0, 1, 1, 0, 0, 1])
    sources = np.repeat(np.arange(7), 50)
    partners, alone = S.choose_partners(sources, labels, outlines, np.random.default_rng(0))
    assert (labels[partners] == labels[sources]).all()
    ok = ~alone
    assert (partners[ok] != sources[ok]).all()
    # class 0 has two maps per outline: the partner always shares the outline
    c0 = labels[sources] == 0
    assert (outlines[partners[c0]] == outlines[sources[c0]]).all()
    # class 2 has one map per outline: falls back to the other outline rather than none
    c2 = labels[sources] == 2
    assert (partners[c2] != sources[c2]).all()
    # class 1 (a single map, like Donut) cannot mix
    np.testing.assert_array_equal(alone, labels[sources] == 1)
    assert (partners[alone] == sources[alone]).all()


def test_mixed_latents_lie_between_their_two_sources():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 64, 3, 3)).astype(np.float32)
    b = rng.standard_normal((200, 64, 3, 3)).astype(np.float32)
    t = S.mix_weights(200, rng)
    assert ((t >= 0.25) & (t <= 0.75)).all()
    m = S.mix_latents(a, b, t)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    assert ((m >= lo - 1e-6) & (m <= hi + 1e-6)).all()
    np.testing.assert_allclose(m[0], (1 - t[0]) * a[0] + t[0] * b[0], rtol=1e-6)


@pytest.mark.parametrize("strength", [0.3, 1.5])
def test_relative_noise_sigma_is_strength_times_channel_std(strength):
    std = np.linspace(0.1, 2.0, 64).astype(np.float32)
    n = 2000
    base = np.zeros((n, 64, 3, 3), dtype=np.float32)
    sigma = S.noise_sigma("relative", strength, std, np.arange(n))
    noisy = S.add_noise(base, sigma, np.random.default_rng(0))
    measured = noisy.std(axis=(0, 2, 3))
    np.testing.assert_allclose(measured, strength * std, rtol=0.05)
    assert noisy.dtype == np.float32


def test_course_schedule_is_absolute_and_per_variant():
    std = np.full(64, 10.0, dtype=np.float32)  # ignored by the course schedule
    sigma = S.noise_sigma("course", 123.0, std, np.arange(10))
    np.testing.assert_allclose(sigma[:, 0, 0, 0], [0.1, 0.2, 0.3, 0.4, 0.5] * 2, rtol=1e-6)
    with pytest.raises(InputError):
        S.noise_sigma("loud", 1.0, std, np.arange(3))


def test_sibling_noise_is_never_identical():
    base = np.zeros((5, 64, 3, 3), dtype=np.float32)
    noisy = S.add_noise(base, S.noise_sigma("relative", 1.0, np.ones(64, np.float32), np.arange(5)), np.random.default_rng(0))
    flat = noisy.reshape(5, -1)
    assert len({row.tobytes() for row in flat}) == 5


def test_check_choice():
    assert S.check_choice(" MIX ", S.METHODS, "method") == "mix"
    with pytest.raises(InputError, match="noise, mix"):
        S.check_choice("blend", S.METHODS, "method")


@pytest.mark.parametrize("entropy", [0, 1, 7, 2**32 - 1, 2**32, 2**64 + 5, 2**127 + 3, 2**130 + 11])
@pytest.mark.parametrize("key", [(0,), (2,), (1, 0), (1, 3), (1, 2**33 + 1)])
def test_child_streams_equal_numpys_own_spawn_key_construction(entropy, key):
    # _child builds the SeedSequence from pre-assembled words for speed; it must
    # be the very stream numpy gives for SeedSequence(entropy, spawn_key=key).
    root = np.random.SeedSequence(entropy)
    expected = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=key)).integers(0, 2**63, 8)
    np.testing.assert_array_equal(S._child(root, *key).integers(0, 2**63, 8), expected)


def test_child_of_a_spawned_root_keeps_its_spawn_key():
    root = np.random.SeedSequence(5, spawn_key=(9,))
    expected = np.random.default_rng(np.random.SeedSequence(5, spawn_key=(9, 1, 0))).random(4)
    np.testing.assert_array_equal(S.block_rng(root, 0).random(4), expected)
    fresh = S.root_seed(None)  # OS entropy, 128 bits
    expected = np.random.default_rng(np.random.SeedSequence(fresh.entropy, spawn_key=(0,))).random(4)
    np.testing.assert_array_equal(S.plan_rng(fresh).random(4), expected)


def test_sibling_keys_and_repeated_rows():
    from edge_infer.sampling import repeated_rows, sibling_keys
    from edge_infer.wafer import to_onehot

    rng = np.random.default_rng(1)
    states = rng.integers(0, 3, size=(4, 26, 26))
    maps = to_onehot(states[[0, 1, 0, 2, 0]])
    sources = np.array([7, 7, 7, 8, 9])
    keys = sibling_keys(sources, maps)
    # row 2 repeats row 0 (same source, same map); row 4 has the same map but another source
    assert repeated_rows(keys).tolist() == [2]
    assert repeated_rows(keys, seen={int(keys[3])}).tolist() == [2, 3]
    other = maps.copy()
    other[2, 5, 5] = np.roll(other[2, 5, 5], 1)  # one die changed
    assert repeated_rows(sibling_keys(sources, other)).tolist() == []
