"""The reference classifier: repeatable for a seed, learns an easy task, caches safely."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_infer.wafer import BOUNDARY, DEFECT, NORMAL, to_onehot  # noqa: E402
from training.classifier import (  # noqa: E402
    ClassifierConfig,
    cache_key,
    predict,
    predict_proba,
    train_cached,
    train_classifier,
)

FAST = ClassifierConfig(epochs=8)


def toy(n_per_class: int, seed: int):
    """Three classes anyone can tell apart: no defects, defects at the top, at the bottom."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:26, :26]
    inside = (yy - 12.5) ** 2 + (xx - 12.5) ** 2 <= 121
    states = np.where(inside, NORMAL, BOUNDARY)[None].repeat(3 * n_per_class, axis=0)
    labels = np.repeat([0, 1, 2], n_per_class)
    for i, c in enumerate(labels):
        noise = rng.random((26, 26)) < 0.03  # a few random defects everywhere
        band = (yy < 10) if c == 1 else (yy > 15) if c == 2 else np.zeros((26, 26), bool)
        hit = inside & (noise | (band & (rng.random((26, 26)) < 0.7)))
        states[i][hit] = DEFECT
    return to_onehot(states), labels


def test_same_seed_same_model_other_seed_other_model():
    x, y = toy(6, seed=0)
    a = train_classifier(x, y, seed=3, config=FAST)
    b = train_classifier(x, y, seed=3, config=FAST)
    c = train_classifier(x, y, seed=4, config=FAST)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert not all(torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_learns_a_trivially_separable_set():
    x, y = toy(20, seed=1)
    model = train_classifier(x, y, seed=0, config=ClassifierConfig(epochs=15))
    x_test, y_test = toy(10, seed=2)
    assert (predict(model, x_test) == y_test).mean() == 1.0
    proba = predict_proba(model, x_test)
    assert proba.shape == (30, 9) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)


def test_training_leaves_global_torch_state_alone():
    x, y = toy(3, seed=0)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_classifier(x, y, seed=0, config=ClassifierConfig(epochs=1))
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_cache_reuses_and_survives_a_damaged_entry(tmp_path):
    x, y = toy(4, seed=0)
    first = train_cached(x, y, seed=0, config=FAST, cache=tmp_path)
    files = list(tmp_path.glob("*.pt"))
    assert [f.stem for f in files] == [cache_key(x, y, 0, FAST)]
    again = train_cached(x, y, seed=0, config=FAST, cache=tmp_path)
    assert np.array_equal(predict_proba(first, x), predict_proba(again, x))
    files[0].write_bytes(b"not a model")
    rebuilt = train_cached(x, y, seed=0, config=FAST, cache=tmp_path)
    assert np.allclose(predict_proba(first, x), predict_proba(rebuilt, x))
    # a different recipe or seed is a different entry
    assert cache_key(x, y, 1, FAST) != cache_key(x, y, 0, FAST)
    assert cache_key(x, y, 0, ClassifierConfig(epochs=9)) != cache_key(x, y, 0, FAST)


def test_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="26, 26, 3"):
        train_classifier(np.zeros((2, 3, 26, 26), np.float32), np.array([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        train_classifier(np.zeros((2, 26, 26, 3), np.float32), np.array([0, 1, 1]))
