"""Sampling: seeds, source choice, mixing partners, noise scale. Pure numpy, no model."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer import sampling as S
from edge_infer.errors import InputError


def _draw(stream, n=5):
    with stream as rng:
        return rng.standard_normal(n)


def test_seeds_are_reproducible_and_independent_of_call_order():
    a = _draw(S.noise_stream(S.root_seed(7), 3))
    root = S.root_seed(7)
    _draw(S.plan_stream(root), 100)  # using another stream first changes nothing
    _draw(S.noise_stream(root, 0), 100)
    b = _draw(S.noise_stream(root, 3))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _draw(S.noise_stream(S.root_seed(8), 3)))
    assert not np.array_equal(a, _draw(S.noise_stream(root, 4)))
    for other in (S.plan_stream(root), S.mix_stream(root), S.redraw_stream(root, 3, 1), S.Stream(root, 1, 3, 0)):
        assert not np.array_equal(a, _draw(other))
    # Without a seed, fresh entropy each time.
    assert not np.array_equal(_draw(S.plan_stream(S.root_seed(None))), _draw(S.plan_stream(S.root_seed(None))))


def test_seed_sequences_are_accepted_and_their_spawns_differ():
    parent = np.random.SeedSequence(5)
    kids = parent.spawn(2)
    assert S.root_seed(np.random.SeedSequence(5)) == S.root_seed(parent)
    roots = {S.root_seed(parent), S.root_seed(kids[0]), S.root_seed(kids[1]), S.root_seed(5)}
    assert len(roots) == 4
    assert len(S.root_seed(5)) == 32


def test_nested_streams_in_one_thread_do_not_share_a_generator():
    root = S.root_seed(11)
    with S.noise_stream(root, 0) as a:
        first = a.random(3)
        with S.noise_stream(root, 1) as b:
            assert b is not a
            inner = b.random(3)
        rest = a.random(3)
    with S.noise_stream(root, 0) as a:
        np.testing.assert_array_equal(a.random(6), np.concatenate([first, rest]))
    with S.noise_stream(root, 1) as b:
        np.testing.assert_array_equal(b.random(3), inner)


def test_streams_in_threads_equal_serial():
    from concurrent.futures import ThreadPoolExecutor

    roots = [S.root_seed(i) for i in range(40)]
    serial = [_draw(S.noise_stream(r, i % 3), 50) for i, r in enumerate(roots)]
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda ir: _draw(S.noise_stream(ir[1], ir[0] % 3), 50), enumerate(roots)))
    for x, y in zip(serial, threaded):
        np.testing.assert_array_equal(x, y)


def test_standard_normals_are_normal_finite_and_prefix_stable():
    from math import erf, sqrt

    with S.Stream(S.root_seed(3), 9) as rng:
        z = S.standard_normals(rng, 4000, 576)
    assert z.dtype == np.float32 and z.shape == (4000, 576)
    assert np.isfinite(z).all() and np.abs(z).max() <= 5.8
    flat = z.ravel().astype(np.float64)
    assert abs(flat.mean()) < 0.003 and abs(flat.std() - 1) < 0.003
    # Empirical CDF against the normal's at several points (2.3 M values).
    for x in (-2.5, -1.0, -0.3, 0.0, 0.7, 1.5, 3.0):
        assert abs((flat <= x).mean() - 0.5 * (1 + erf(x / sqrt(2)))) < 0.002
    # Channels paired by Box-Muller are uncorrelated.
    assert abs(np.corrcoef(flat[:-1:2], flat[1::2])[0, 1]) < 0.005
    assert abs(np.corrcoef(z[:, :288].ravel(), z[:, 288:].ravel())[0, 1]) < 0.005
    # A shorter draw is the start of a longer one; buffers change nothing.
    with S.Stream(S.root_seed(3), 9) as rng:
        short = S.standard_normals(rng, 7, 576)
    np.testing.assert_array_equal(short, z[:7])
    out, work = np.empty(7 * 576, np.float32), np.empty(7 * 576, np.float32)
    with S.Stream(S.root_seed(3), 9) as rng:
        again = S.standard_normals(rng, 7, 576, out=out, work=work)
    np.testing.assert_array_equal(again, z[:7])
    assert np.shares_memory(again, out)
    with pytest.raises(ValueError, match="even"):
        S.standard_normals(rng, 1, 5)


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
    # One source (the batch-1 shortcut) is the first of any longer draw from the same stream.
    for seed in range(20):
        one = S.choose_sources(cands, 1, np.random.default_rng(seed))
        np.testing.assert_array_equal(one, S.choose_sources(cands, 3, np.random.default_rng(seed))[:1])
        np.testing.assert_array_equal(S.choose_sources(cands, 3, np.random.default_rng(seed)),
                                      S.choose_sources(cands, 12, np.random.default_rng(seed))[:3])
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
