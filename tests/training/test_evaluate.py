"""Evaluation metrics on hand-made maps with known answers, the choice rule, the CLIs' errors."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from edge_infer.errors import InputError
from edge_infer.files import json_text
from edge_infer.wafer import BOUNDARY, DEFECT, NORMAL, to_onehot, to_states
from training.evaluation import cli, metrics, quality, readers, report, rules
from training.evaluation.folds import stratified_group_folds


def disc_states(n: int = 1, radius: float = 11.0) -> np.ndarray:
    """n round wafers: boundary outside ``radius``, normal inside."""
    yy, xx = np.mgrid[:26, :26]
    inside = (yy - 12.5) ** 2 + (xx - 12.5) ** 2 <= radius**2
    states = np.where(inside, NORMAL, BOUNDARY).astype(np.uint8)
    return np.repeat(states[None], n, axis=0)


def in_wafer_count(states: np.ndarray) -> int:
    return int((states[0] != BOUNDARY).sum())


# ------------------------------------------------------------------ validity


def test_validity_flags_broken_outline_and_non_onehot():
    src = to_onehot(disc_states(4))
    gen = src.copy()
    # map 1: one boundary die turned into a defect -> outline broken, still one-hot
    gen[1, 0, 0] = [0, 0, 1]
    # map 2: a die with two channels set -> not one-hot, outline intact
    gen[2, 12, 12] = [0, 1, 1]
    # map 3: a soft probability -> not one-hot
    gen[3, 12, 13] = [0, 0.4, 0.6]
    v = metrics.validity(gen, src)
    assert v["valid"].tolist() == [True, False, False, False]
    assert v["outline"].tolist() == [True, False, True, True]
    assert v["onehot"].tolist() == [True, True, False, False]


def test_validity_flags_nan_and_wafer_grown_into_boundary():
    src = to_onehot(disc_states(2))
    gen = src.copy()
    gen[0, 5, 5] = np.nan
    edge = np.argwhere(disc_states(1)[0] == NORMAL)[0]
    gen[1, edge[0], edge[1]] = [1, 0, 0]  # an in-wafer die made boundary
    v = metrics.validity(gen, src)
    assert not v["onehot"][0]
    assert v["onehot"][1] and not v["outline"][1]


# ----------------------------------------------------------------- diversity


def test_changed_share_counts_only_in_wafer_dies():
    src = disc_states(1)
    gen = src.copy()
    inside = np.argwhere(src[0] == NORMAL)
    for r, c in inside[:7]:
        gen[0, r, c] = DEFECT
    gen[0, 0, 0] = DEFECT  # an off-wafer change is not counted as in-wafer diversity
    share = metrics.changed_share(gen, src, src)
    assert share[0] == pytest.approx(7 / in_wafer_count(src))


def test_sibling_duplicates_and_real_copies():
    base = disc_states(1)[0]
    a, b, c = base.copy(), base.copy(), base.copy()
    b[12, 12] = DEFECT
    c[12, 13] = DEFECT
    # source 0: a, b, a  -> rows 0 and 2 identical; source 1: b, c, a -> all distinct
    states = np.stack([a, b, a, b, c, a])
    sources = np.array([0, 0, 0, 1, 1, 1])
    assert metrics.sibling_duplicates(states, sources).tolist() == [True, False, True, False, False, False]
    real = np.stack([c, base])  # 'a' equals base, which is real
    assert metrics.copies_of(states, real).tolist() == [True, False, True, False, True, True]


def test_source_rows_inferred_and_checked():
    assert metrics.source_rows(6, 2).tolist() == [0, 0, 0, 1, 1, 1]
    assert metrics.source_rows(4, 2, per_source=2).tolist() == [0, 0, 1, 1]
    with pytest.raises(InputError, match="multiple"):
        metrics.source_rows(7, 2)
    with pytest.raises(InputError, match="do not match"):
        metrics.source_rows(6, 2, per_source=2)


# ------------------------------------------------------------ classification


def test_agreement_is_fidelity_of_fixed_predictions():
    assert metrics.agreement(np.array([0, 1, 2, 2]), np.array([[0], [1], [1], [2]])) == 0.75
    with pytest.raises(InputError):
        metrics.agreement(np.array([0, 1]), np.array([0]))


def test_macro_f1_and_recall_match_hand_computation():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    # class 0: tp2 fp0 fn1 -> F1 4/5; class 1: tp1 fp1 fn1 -> 1/2; class 2: tp1 fp1 fn0 -> 2/3
    assert metrics.macro_f1(y_true, y_pred) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    recall = metrics.per_class_recall(y_true, y_pred, 4)
    assert recall[:3] == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert math.isnan(recall[3])  # class 3 never occurs: no recall, not 0
    # a class predicted but never true counts, with F1 0 (scikit-learn's convention)
    assert metrics.macro_f1(np.array([0, 0]), np.array([0, 1])) == pytest.approx((2 / 3 + 0) / 2)


def test_folds_are_stratified_and_keep_copies_together():
    rng = np.random.default_rng(1)
    states = rng.integers(0, 3, size=(60, 26, 26)).astype(np.uint8)
    labels = np.repeat([0, 1, 2], 20)
    states[5] = states[0]  # a copy inside class 0
    states[45] = states[1]  # a copy across classes (conflicting labels, as in the course data)
    folds = stratified_group_folds(states, labels, n_folds=4, seed=0)
    assert folds[5] == folds[0] and folds[45] == folds[1]
    for c in range(3):
        counts = np.bincount(folds[labels == c], minlength=4)
        assert counts.min() >= 4 and counts.max() <= 6
    assert np.array_equal(folds, stratified_group_folds(states, labels, n_folds=4, seed=0))


def test_single_map_class_lands_in_one_fold():
    states = np.random.default_rng(2).integers(0, 3, size=(11, 26, 26)).astype(np.uint8)
    labels = np.array([0] * 10 + [1])
    folds = stratified_group_folds(states, labels, n_folds=5)
    assert len(np.unique(folds[labels == 0])) == 5
    assert np.bincount(folds, minlength=5).max() <= 3



def test_folds_keep_the_rules_scikit_learns_split_keeps():
    """The project's dealer and StratifiedGroupKFold (other folds, same rules): no group split,
    every class with at least n_folds groups in every fold."""
    from sklearn.model_selection import StratifiedGroupKFold

    from training.evaluation.metrics import row_keys

    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1, 2, 3], [40, 17, 6, 2])  # 3: fewer groups than folds
    states = rng.integers(0, 3, size=(len(labels), 26, 26)).astype(np.uint8)
    for a, b in ((1, 0), (2, 0), (20, 3), (41, 40), (60, 59)):  # groups of copies, within a class
        states[a] = states[b]
    _, group = np.unique(row_keys(states), return_inverse=True)
    group = group.reshape(-1)
    ours = stratified_group_folds(states, labels, n_folds=5, seed=0)
    theirs = np.empty(len(labels), dtype=np.int64)
    with pytest.warns(UserWarning):  # scikit-learn warns of the two-map class
        split = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0).split(states, labels, group)
        for f, (_, test) in enumerate(split):
            theirs[test] = f
    for folds in (ours, theirs):
        assert all(len(np.unique(folds[group == g])) == 1 for g in np.unique(group))
        for c in (0, 1, 2):  # each has >= 5 groups
            assert len(np.unique(folds[labels == c])) == 5, c
        assert np.bincount(folds, minlength=5).min() > 0

# ---------------------------------------------------------------- choice rule


def test_choose_strength_takes_largest_within_tolerance():
    s = [0.1, 0.2, 0.5, 1.0]
    f = [0.80, 0.79, 0.775, 0.70]
    assert rules.choose_strength(s, f, reconstruction_fidelity=0.80, tolerance=0.03) == 0.5
    assert rules.choose_strength(s, f, reconstruction_fidelity=0.80, tolerance=0.015) == 0.2
    assert rules.choose_strength(s, f, reconstruction_fidelity=0.80, tolerance=0.2) == 1.0


def test_choose_strength_stops_at_first_failure_and_ignores_order():
    # 0.5 fails; the lucky 1.0 beyond it must not be chosen; input order does not matter
    s = [1.0, 0.1, 0.5, 0.2]
    f = [0.79, 0.80, 0.60, 0.79]
    assert rules.choose_strength(s, f, reconstruction_fidelity=0.80, tolerance=0.03) == 0.2
    with pytest.raises(InputError, match="even strength 0.1"):
        rules.choose_strength(s, [0.79, 0.5, 0.6, 0.79], reconstruction_fidelity=0.80)


def test_done_when_targets():
    good = {"valid": 1.0, "changed_vs_reconstruction": 0.05, "sibling_identical": 0.0,
            "fidelity_generated": 0.70, "fidelity_reconstruction": 0.72}
    assert all(t["pass"] for t in rules.done_when(good).values())
    bad = dict(good, valid=0.99, changed_vs_reconstruction=0.02, sibling_identical=0.001,
               fidelity_generated=0.68)
    results = rules.done_when(bad)
    assert len(results) == 4 and not any(t["pass"] for t in results.values())
    assert "FAIL" in report.format_done_when(results) and "PASS" in report.format_done_when(rules.done_when(good))


# ------------------------------------------------------------- whole report


def test_quality_metrics_on_hand_made_set():
    real = disc_states(2)
    real[1, 12, 12] = DEFECT
    labels = np.array([0, 1])
    recon = real.copy()
    inside = np.argwhere(real[0] == NORMAL)
    n_in = in_wafer_count(real)
    # source 0: variant 0 = its reconstruction, variant 1 = 10 dies changed
    v1 = real[0].copy()
    for r, c in inside[:10]:
        v1[r, c] = DEFECT
    # source 1: two identical variants, each 5 dies changed and outline broken in one die
    v2 = real[1].copy()
    for r, c in inside[20:25]:
        v2[r, c] = DEFECT
    v2[0, 0] = NORMAL
    gen = to_onehot(np.stack([real[0], v1, v2, v2]))
    rep = quality.quality_metrics(to_onehot(real), labels, gen, np.array([0, 0, 1, 1]), to_onehot(recon),
                             real_pred=np.array([0, 1]), recon_pred=np.array([0, 0]),
                             gen_pred=np.array([0, 1, 1, 1]))
    o = rep["overall"]
    assert o["valid"] == 0.5
    assert o["changed_vs_reconstruction"] == pytest.approx((0 + 10 + 5 + 5) / n_in / 4)
    assert o["identical_to_reconstruction"] == 0.25
    assert o["sibling_identical"] == 0.5
    assert o["copy_of_real"] == 0.25
    assert o["fidelity_generated"] == 0.75
    assert o["fidelity_reconstruction"] == 0.5
    assert o["fidelity_real"] == 1.0
    assert rep["per_class"]["Center"]["fidelity_generated"] == 0.5
    assert rep["per_class"]["Donut"]["sibling_identical"] == 1.0
    assert set(rep["per_class"]) == {"Center", "Donut"}


def _toy_data(n_per_class: int = 24, seed: int = 0):
    """Two trivially separable classes: defects in the left half vs in the right half."""
    rng = np.random.default_rng(seed)
    states = disc_states(2 * n_per_class)
    for i in range(2 * n_per_class):
        cols = slice(4, 12) if i < n_per_class else slice(14, 22)
        block = states[i, 8:18, cols]
        block[(block == NORMAL) & (rng.random(block.shape) < 0.6)] = DEFECT
    return to_onehot(states), np.repeat([0, 1], n_per_class).reshape(-1, 1)


def test_evaluate_set_end_to_end_on_toy_data(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_INFER_EVAL_CACHE", str(tmp_path / "cache"))
    maps, labels = _toy_data()
    gen = np.repeat(maps, 2, axis=0)  # "generated" = exact copies of the sources
    rep = quality.evaluate_set(maps, labels, gen, np.repeat(labels, 2, axis=0), maps, n_folds=2)
    o = rep["overall"]
    assert o["valid"] == 1.0 and o["copy_of_real"] == 1.0 and o["sibling_identical"] == 1.0
    assert o["changed_vs_reconstruction"] == 0.0
    assert o["fidelity_real"] >= 0.9
    # copies are classified exactly like their sources
    assert o["fidelity_generated"] == o["fidelity_real"] == o["fidelity_reconstruction"]
    use = rep["usefulness"]
    assert use["folds"] == 2 and use["macro_f1_real"]["folds"] == 2
    assert 0.0 <= use["macro_f1_augmented"]["mean"] <= 1.0
    # copies of the sources as "generated" maps = the real maps repeated: the same training set
    # up to order, so the augmented and repeated controls are the same size
    assert use["macro_f1_real_repeated"]["folds"] == 2
    per_fold = use["macro_f1_per_fold"]
    assert use["macro_f1_gain_over_repeated"]["mean"] == pytest.approx(
        np.mean(np.subtract(per_fold["augmented"], per_fold["real_repeated"])))
    text = json_text(rep, sort_keys=False)
    assert json.loads(text)["counts"]["per_source"] == 2
    assert "Center" in report.format_quality(rep) and "macro-F1" in report.format_usefulness(use)
    with pytest.raises(InputError, match="differ from their source"):
        quality.evaluate_set(maps, labels, gen, 1 - np.repeat(labels, 2, axis=0), maps, n_folds=2,
                        with_usefulness=False)


# ---------------------------------------------------------------- the sweep


class FakeGenerator:
    """The runtime's augment/reconstruct contract, with noise = random die flips."""

    def reconstruct(self, maps, outline_lock=False):
        return np.asarray(maps, dtype=np.float32)

    def augment(self, per_source, *, maps, labels, seed, strength=None, mode=None, method="noise",
                outline_lock=True):
        rng = np.random.default_rng(seed)
        states = np.repeat(to_states(maps), per_source, axis=0)
        p = 0.02 if mode == "course" else 0.1 * strength
        flip = (states != BOUNDARY) & (rng.random(states.shape) < p)
        states[flip] = np.where(states[flip] == NORMAL, DEFECT, NORMAL)
        src = np.repeat(np.arange(len(maps)), per_source)
        return SimpleNamespace(maps=to_onehot(states), labels=np.asarray(labels).reshape(-1, 1)[src],
                               sources=src)


def test_sweep_chooses_by_the_rule_and_draws(tmp_path, monkeypatch):
    from training import sweep

    monkeypatch.setenv("EDGE_INFER_EVAL_CACHE", str(tmp_path / "cache"))
    maps, labels = _toy_data()
    res = sweep.run_sweep(FakeGenerator(), maps, labels, [0.1, 0.5, 5.0], per_source=3, n_folds=2)
    fids = [p["fidelity_generated"] for p in res["points"]]
    assert res["chosen_strength"] == rules.choose_strength([0.1, 0.5, 5.0], fids,
                                                        res["fidelity_reconstruction"])
    diversity = [p["changed_vs_reconstruction"] for p in res["points"]]
    assert diversity == sorted(diversity) and diversity[-1] > 0.3
    assert res["course"]["strength"] == "course"
    assert "chosen default strength" in sweep.format_sweep(res)
    png = sweep.plot_sweep(res, tmp_path / "sweep.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_cli_reports_bad_input_without_traceback(tmp_path):
    from typer.testing import CliRunner

    maps, labels = _toy_data(4)
    np.save(tmp_path / "maps.npy", maps)
    np.save(tmp_path / "labels.npy", labels)
    runner = CliRunner()
    result = runner.invoke(cli.app, ["quality", "--data", str(tmp_path / "maps.npy"), "--labels",
                                       str(tmp_path / "labels.npy"), "--generated", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "error:" in result.output and "gen_data.npy" in result.output
    assert "Traceback" not in result.output


def test_sweep_speaks_the_runtime_api(bundle_dir):
    """The keyword contract with the real WaferGenerator: order, labels, course mode, reconstructions."""
    from edge_infer import WaferGenerator
    from training import sweep

    gen = WaferGenerator.load(bundle_dir)
    maps, labels = _toy_data(2)
    relative = sweep.generate(gen, maps, labels, 0.5, per_source=3, seed=0)
    course = sweep.generate(gen, maps, labels, sweep.COURSE, per_source=3, seed=0)
    recon = sweep.reconstruct(gen, maps)
    sources = metrics.source_rows(len(relative), len(maps))
    for out in (relative, course):
        assert out.shape == (12, 26, 26, 3)
        assert metrics.validity(out, maps[sources])["valid"].all()  # outline locked by default
    assert metrics.validity(recon, maps)["valid"].all()
    assert not np.array_equal(relative, course)
    assert report.describe_model(gen)["manifest_sha256"]


def test_sweep_cli_rejects_bad_strengths_without_traceback(tmp_path):
    from typer.testing import CliRunner

    from training import sweep

    maps, labels = _toy_data(4)
    np.save(tmp_path / "maps.npy", maps)
    np.save(tmp_path / "labels.npy", labels)
    for bad in ("0,1", "a,b", ""):
        result = CliRunner().invoke(sweep._app(), ["--data", str(tmp_path / "maps.npy"), "--labels",
                                                   str(tmp_path / "labels.npy"), "--out",
                                                   str(tmp_path / "s.png"), "--strengths", bad])
        assert result.exit_code == 1, bad
        assert "error: --strengths" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s.png").exists()


def test_usefulness_can_regenerate_from_training_folds_only(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_INFER_EVAL_CACHE", str(tmp_path / "cache"))
    maps, labels = _toy_data(8)
    y = labels.reshape(-1)
    folds = stratified_group_folds(to_states(maps), y, 2)
    models = readers.fit_fold_models(maps, y, folds)
    seen = []

    def generate_fold(train):
        seen.append(train.copy())
        return maps[train], y[train]  # stand-in generator: copies of the training maps only

    sources = metrics.source_rows(len(maps), len(maps))
    use = quality.usefulness(maps, y, maps, y, sources, folds, models, generate_fold=generate_fold)
    assert len(seen) == 2
    for f, train in enumerate(seen):
        assert np.array_equal(train, folds != f)  # never handed a held-out map
    assert use["macro_f1_augmented"]["folds"] == 2
