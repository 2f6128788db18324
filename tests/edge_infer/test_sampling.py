"""The plan: seeds, counter-based draws, source choice, mixing partners, σ; the plan of a request
(rows, settings, which graph, whether siblings can clash). Pure numpy, no model, no onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer import sampling as S
from edge_infer.errors import InputError
from edge_infer.sampling import Settings, Sources, plan_augment, plan_generate, settings


def _splitmix64_sequence(seed: int, count: int) -> list[int]:
    """The textbook SplitMix64 generator, in plain Python integers."""
    mask = (1 << 64) - 1
    state, out = seed & mask, []
    for _ in range(count):
        state = (state + S.GAMMA) & mask
        z = state
        z = ((z ^ (z >> 30)) * S.MIX_M1) & mask
        z = ((z ^ (z >> 27)) * S.MIX_M2) & mask
        out.append(z ^ (z >> 31))
    return out


def test_draws_are_the_splitmix64_sequence_of_the_stream_key():
    for seed, stream in ((0, 0), (12345, 3), (2**63 - 1, S.PLAN_STREAM)):
        key = int(S.splitmix64(np.uint64((seed ^ (stream * S.ATTEMPT_MUL)) & (2**64 - 1))))
        assert S.draws(seed, stream, 10).tolist() == _splitmix64_sequence(key, 10)
    # a longer draw begins with a shorter one; other seeds and streams differ
    np.testing.assert_array_equal(S.draws(7, 1, 100)[:10], S.draws(7, 1, 10))
    assert not np.array_equal(S.draws(7, 1, 10), S.draws(8, 1, 10))
    assert not np.array_equal(S.draws(7, 1, 10), S.draws(7, 2, 10))


def test_seeds_ints_pass_unchanged_none_is_fresh_sequences_are_accepted():
    assert S.check_seed(0) == 0 and S.check_seed(2**63 - 1) == 2**63 - 1 and S.check_seed(np.int64(5)) == 5
    assert S.check_seed(None) != S.check_seed(None)
    parent = np.random.SeedSequence(5)
    kids = parent.spawn(2)
    seeds = {S.check_seed(np.random.SeedSequence(5)), S.check_seed(kids[0]), S.check_seed(kids[1])}
    assert len(seeds) == 3 and S.check_seed(np.random.SeedSequence(5)) == S.check_seed(parent)
    assert all(0 <= s <= S.MAX_SEED for s in seeds)


@pytest.mark.parametrize("bad", [-1, 2**63, 1.5, "7", True])
def test_bad_seeds(bad):
    with pytest.raises(InputError, match="seed"):
        S.check_seed(bad)


@pytest.mark.parametrize("bad", [0, -0.5, float("nan"), float("inf"), "x"])
def test_bad_strength(bad):
    with pytest.raises(InputError, match="strength"):
        settings(DEFAULTS, bad)


def test_choose_sources_distinct_then_cycles_and_pins():
    cands = np.array([3, 8, 11, 20, 42])
    first = S.choose_sources(cands, 5, 0)
    assert sorted(first) == sorted(cands)
    # the documented order: candidates sorted by their draw of the plan stream
    np.testing.assert_array_equal(first, cands[np.argsort(S.draws(0, S.PLAN_STREAM, 5), kind="stable")])
    many = S.choose_sources(cands, 23, 1)
    counts = np.bincount(many)[cands]
    assert set(many) == set(cands) and counts.max() - counts.min() <= 1  # cycled: used evenly
    for seed in range(20):  # batch 1 (argmin) is the first row of any longer request
        np.testing.assert_array_equal(S.choose_sources(cands, 1, seed), S.choose_sources(cands, 3, seed)[:1])
        np.testing.assert_array_equal(S.choose_sources(cands, 3, seed), S.choose_sources(cands, 12, seed)[:3])
    assert len({tuple(S.choose_sources(cands, 5, s)) for s in range(20)}) > 10


def test_partners_same_class_not_self_same_outline_when_possible():
    labels = np.array([0, 0, 0, 0, 1, 2, 2])
    outlines = np.array([0, 0, 1, 1, 0, 0, 1])
    sources = np.repeat(np.arange(7), 50)
    partners, weights, alone = S.choose_partners(sources, labels, outlines, 0)
    assert (labels[partners] == labels[sources]).all()
    ok = ~alone
    assert (partners[ok] != sources[ok]).all()
    c0 = labels[sources] == 0  # two maps per outline: the partner shares it
    assert (outlines[partners[c0]] == outlines[sources[c0]]).all()
    c2 = labels[sources] == 2  # one map per outline: the other outline rather than none
    assert (partners[c2] != sources[c2]).all()
    np.testing.assert_array_equal(alone, labels[sources] == 1)  # a one-map class cannot mix
    assert (partners[alone] == sources[alone]).all()
    assert weights.dtype == np.float32 and ((weights >= 0.25) & (weights < 0.75)).all()
    p2, w2, _ = S.choose_partners(sources, labels, outlines, 0)
    np.testing.assert_array_equal(p2, partners)
    np.testing.assert_array_equal(w2, weights)


def test_sigma_relative_and_course():
    std = np.linspace(0.1, 2.0, 64).astype(np.float32)
    rel = S.noise_sigma("relative", 0.4, std, np.arange(3))
    assert rel.shape == (3, 64) and rel.dtype == np.float32
    np.testing.assert_array_equal(rel[2], np.float32(0.4) * std)
    course = S.noise_sigma("course", 123.0, std, np.arange(10))
    np.testing.assert_allclose(course[:, 0], [0.1, 0.2, 0.3, 0.4, 0.5] * 2, rtol=1e-6)
    assert (course == course[:, :1]).all()


def test_check_choice():
    assert S.check_choice(" MIX ", S.METHODS, "method") == "mix"
    with pytest.raises(InputError, match="noise, mix"):
        S.check_choice("blend", S.METHODS, "method")


def test_sibling_keys_and_repeated_rows():
    from edge_infer.wafer import to_onehot

    rng = np.random.default_rng(1)
    states = rng.integers(0, 3, size=(4, 26, 26))
    maps = to_onehot(states[[0, 1, 0, 2, 0]])
    sources = np.array([7, 7, 7, 8, 9])
    keys = S.sibling_keys(sources, maps)
    # row 2 repeats row 0 (same source, same map); row 4 has the same map but another source
    assert S.repeated_rows(keys).tolist() == [2]
    assert S.repeated_rows(keys, seen={int(keys[3])}).tolist() == [2, 3]
    other = maps.copy()
    other[2, 5, 5] = np.roll(other[2, 5, 5], 1)  # one die changed
    assert S.repeated_rows(S.sibling_keys(sources, other)).tolist() == []


# ---------------------------------------------------------------- the plan of a request

CLASSES = ("a", "b", "c")
DEFAULTS = Settings(method="noise", mode="relative", strength=0.4, outline_lock=True, raw=False)


def _src(bank: bool = True) -> Sources:
    labels = np.array([0, 0, 1, 1, 1, 2], dtype=np.int64)
    return Sources(np.zeros((6, 64, 3, 3), np.float32), labels, np.zeros(6, np.int64), np.zeros((1, 26, 26), bool), bank)


def test_settings_take_the_bundle_defaults_and_check_what_is_given():
    s = settings(DEFAULTS, None, None, None, None, False)
    assert (s.method, s.mode, s.strength, s.outline_lock, s.raw) == ("noise", "relative", 0.4, True, False)
    s = settings(DEFAULTS, 1.5, "MIX", "Course", False, True)
    assert (s.method, s.mode, s.strength, s.outline_lock, s.raw) == ("mix", "course", 1.5, False, True)
    with pytest.raises(InputError, match="strength"):
        settings(DEFAULTS, -1, None, None, None, False)


def test_augment_rows_labels_and_the_graph_they_take():
    opts = settings(DEFAULTS, None, None, None, None, False)
    plan = plan_augment(_src(), 3, 7, opts, CLASSES)
    np.testing.assert_array_equal(plan.sources, np.repeat(np.arange(6), 3))
    np.testing.assert_array_equal(plan.variants, np.tile(np.arange(3), 6))
    np.testing.assert_array_equal(plan.labels[:, 0], np.repeat([0, 0, 1, 1, 1, 2], 3))
    assert len(plan.sources) == 18 and plan.siblings and plan.bank_graph and plan.partners is None
    # anything but bank rows with relative noise and the lock goes through the core graph
    for other in (plan_augment(_src(bank=False), 3, 7, opts, CLASSES),
                  plan_augment(_src(), 3, 7, settings(DEFAULTS, None, None, "course", None, False), CLASSES),
                  plan_augment(_src(), 3, 7, settings(DEFAULTS, None, None, None, False, False), CLASSES)):
        assert not other.bank_graph
    with pytest.warns(UserWarning, match="c has only one"):
        mixed = plan_augment(_src(), 2, 7, settings(DEFAULTS, None, "mix", None, None, False), CLASSES)
    assert not mixed.bank_graph and mixed.partners is not None and mixed.weights.dtype == np.float32


def test_generate_rows_distinct_then_repeating_and_siblings_only_where_they_can_clash():
    opts = settings(DEFAULTS, None, None, None, None, False)
    few = plan_generate(_src(), 1, 3, 1, opts, CLASSES)  # class 1: rows 2, 3, 4
    assert sorted(few.sources) == [2, 3, 4] and not few.siblings
    many = plan_generate(_src(), 1, 7, 1, opts, CLASSES)
    np.testing.assert_array_equal(many.sources[:3], few.sources)
    assert many.siblings
    assert not plan_generate(_src(), 1, 7, 1, settings(DEFAULTS, None, None, "course", None, False), CLASSES).siblings
    assert not plan_generate(_src(), 1, 7, 1, settings(DEFAULTS, None, None, None, None, True), CLASSES).siblings
    np.testing.assert_array_equal(plan_generate(_src(), 1, 4, 1, opts, CLASSES, source_index=3).sources, [3] * 4)


def test_source_index_checks():
    opts = settings(DEFAULTS)
    assert plan_generate(_src(), 1, 2, 0, opts, CLASSES, source_index=3).sources.tolist() == [3, 3]
    assert plan_generate(_src(), None, 1, 0, opts, CLASSES, source_index=np.int64(5)).labels.tolist() == [[2]]
    for index, cls, match in ((3, 0, "is class b, not a"), (6, None, "in 0..5, not 6"), (True, None, "whole number")):
        with pytest.raises(InputError, match=match):
            plan_generate(_src(), cls, 2, 0, opts, CLASSES, source_index=index)
    with pytest.raises(InputError, match="no maps of class c in the given maps"):
        plan_generate(_src(bank=False)._replace(labels=np.zeros(6, np.int64)), 2, 2, 0, opts, CLASSES)


def test_variant_counts():
    np.testing.assert_array_equal(S.variant_counts(2, 3), [2, 2, 2])
    np.testing.assert_array_equal(S.variant_counts([0, 1, 3], 3), [0, 1, 3])
    for bad, match in ((0, "at least 1"), (2.0, "whole number"), ([1, 2], "one per source"),
                       ([0, 0, 0], "at least one"), ([1, -1, 1], "≥ 0")):
        with pytest.raises(InputError, match=match):
            S.variant_counts(bad, 3)
