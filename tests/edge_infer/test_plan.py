"""The plan of a request: rows, settings, which graph, whether siblings can clash. No onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.bundle import NoiseDefaults
from edge_infer.errors import InputError
from edge_infer.plan import Sources, check_source_index, plan_augment, plan_generate, settings

CLASSES = ("a", "b", "c")
DEFAULTS = NoiseDefaults(mode="relative", strength=0.4, method="noise", outline_lock=True)


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
    assert plan.n == 18 and plan.siblings and plan.bank_graph and plan.partners is None
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
    rows = np.array([2, 3, 4])
    few = plan_generate(_src(), rows, 3, 1, opts, CLASSES)
    assert sorted(few.sources) == [2, 3, 4] and not few.siblings
    many = plan_generate(_src(), rows, 7, 1, opts, CLASSES)
    np.testing.assert_array_equal(many.sources[:3], few.sources)
    assert many.siblings
    assert not plan_generate(_src(), rows, 7, 1, settings(DEFAULTS, None, None, "course", None, False), CLASSES).siblings
    assert not plan_generate(_src(), rows, 7, 1, settings(DEFAULTS, None, None, None, None, True), CLASSES).siblings
    np.testing.assert_array_equal(plan_generate(_src(), rows, 4, 1, opts, CLASSES, pin=3).sources, [3] * 4)


def test_source_index_checks():
    assert check_source_index(3, _src(), 1, CLASSES) == 3
    assert check_source_index(np.int64(5), _src(), None, CLASSES) == 5
    with pytest.raises(InputError, match="is class b, not a"):
        check_source_index(3, _src(), 0, CLASSES)
    with pytest.raises(InputError, match="out of range 0..5"):
        check_source_index(6, _src(), None, CLASSES)
    with pytest.raises(InputError, match="whole number"):
        check_source_index(True, _src(), None, CLASSES)
