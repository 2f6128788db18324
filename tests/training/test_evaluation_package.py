"""The evaluation package (training.evaluation): metrics, protocol on tiny data, report, rule, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_infer.files import json_text
from edge_infer.wafer import BOUNDARY, DEFECT, NORMAL, to_onehot
from training.evaluation import metrics, report
from training.evaluation.protocol import (ARMS, ARM_SETS, Arm, Protocol, arm_training_set, control_recipe, resolve_arms,
                                         run_protocol)


def _hand_macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """The project's convention, written out: mean 2tp / (2tp + fp + fn) over classes true or predicted."""
    scores = []
    for c in range(n_classes):
        tp = int(((y_true == c) & (y_pred == c)).sum())
        fp = int(((y_true != c) & (y_pred == c)).sum())
        fn = int(((y_true == c) & (y_pred != c)).sum())
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def _hand_recall(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Recall per class, NaN for a class never true."""
    return np.array([(y_pred[y_true == c] == c).mean() if (y_true == c).any() else np.nan
                     for c in range(n_classes)])


def test_sklearn_metrics_match_the_project_conventions():
    own_f1, own_recall = _hand_macro_f1, _hand_recall
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 200), rng.integers(0, 6, 200)
    y[y == 3] = 4  # a class never true but predicted, one never predicted
    assert metrics.macro_f1(y, p) == pytest.approx(own_f1(y, p, 9))
    np.testing.assert_allclose(metrics.per_class_recall(y, p, 9), own_recall(y, p, 9), equal_nan=True)
    s = metrics.paired_stats([1.0, -2.0, 3.0, float("nan")])
    assert s == {"mean": pytest.approx(2 / 3), "std": pytest.approx(np.std([1, -2, 3])), "n": 3, "positive": 2}


def test_classifier_trains_exactly_the_given_steps():
    import torch

    from training.classifier import ClassifierConfig, _batches

    cfg = ClassifierConfig(steps=7, batch_size=4)
    batches = list(_batches(10, cfg, torch.Generator().manual_seed(0)))
    assert len(batches) == 7 and [len(b) for b in batches[:3]] == [4, 4, 2]  # epochs of 3 batches, cut at 7
    assert len(list(_batches(10, ClassifierConfig(epochs=2, batch_size=4), torch.Generator()))) == 6


def test_resolve_arms_adds_controls_first():
    arms = [a.name for a in resolve_arms(["symmetries+balanced"])]
    assert arms == ["real", "symmetries+balanced-copies", "symmetries+balanced"]
    assert len({a.name for a in resolve_arms(["all"])}) == len(ARM_SETS["all"])
    from edge_infer.errors import InputError

    with pytest.raises(InputError, match="unknown arm"):
        resolve_arms(["nope"])


def _rows(gains: dict[str, list[float]], base: float = 0.6) -> list[dict]:
    rows = []
    for f in range(5):
        rows.append({"fold": f, "seed": 0, "arm": "real", "macro_f1": base, "recall": [0.5] * 9, "train_counts": [1] * 9})
        for arm, g in gains.items():
            rows.append({"fold": f, "seed": 0, "arm": arm, "macro_f1": base + g[f] / 100,
                         "recall": [0.5] * 9, "train_counts": [2] * 9})
    return rows


def test_report_pairs_gains_and_the_rule_picks_by_it():
    gains = {"symmetries": [4, 5, 3, 6, -1], "symmetries+balanced-copies": [6, 7, 5, 8, 1],
             "symmetries+balanced": [9, 9, 9, 9, 9], "classic": [1, -1, 2, -2, 0]}
    # The generating arm beats the real maps in every fold, but not its own control on
    # average once the control is better: make its control better still.
    gains["symmetries+balanced-copies"] = [10, 10, 10, 10, 10]
    arms = resolve_arms(["real", *gains])
    summary = report.summarise(_rows(gains), arms)
    by = {e["arm"]: e for e in summary}
    assert by["symmetries"]["gain_vs_real"]["mean"] == pytest.approx(3.4)
    assert by["symmetries"]["gain_vs_real"]["folds_positive"] == 4
    assert by["symmetries+balanced"]["gain_vs_control"]["mean"] == pytest.approx(-1.0)
    rec = report.recommend(summary)
    assert rec["recipe"] == "symmetries+balanced-copies"  # the generating arm loses to its control
    assert "symmetries+balanced" not in rec["eligible"] and "classic" not in rec["eligible"]
    # Better on average but only in 3 of 5 folds: not enough to need an autoencoder.
    gains["symmetries+balanced"] = [15, 15, 15, 9, 9]
    summary3 = report.summarise(_rows(gains), arms)
    assert {e["arm"]: e for e in summary3}["symmetries+balanced"]["gain_vs_control"]["folds_positive"] == 3
    assert report.recommend(summary3)["recipe"] == "symmetries+balanced-copies"
    gains["symmetries+balanced"] = [15, 15, 15, 15, 9]
    assert report.recommend(report.summarise(_rows(gains), arms))["recipe"] == "symmetries+balanced"
    table = report.format_table(summary)
    assert "| symmetries | " in table and "4/5" in table
    assert json.loads(json_text({"x": float("nan"), "y": np.float32(1.5)})) == {"x": None, "y": 1.5}


def test_a_generating_recipes_control_repeats_its_base_maps():
    from dataclasses import replace

    from edge_infer.augment import RECIPES

    r = replace(RECIPES["symmetries+balanced"], strength=0.7)
    c = control_recipe(r)
    assert r.uses_generator and c.fill == "repeat" and not c.uses_generator and c.strength is None
    assert (c.symmetries, c.per_source, c.balance) == (r.symmetries, r.per_source, r.balance)
    assert control_recipe(RECIPES["symmetries"]) is None  # generates nothing: its control is the real maps


def test_arm_training_set_counts_what_it_made_by_kind():
    """Real maps first, then the recipe's; the counts per kind add up to the maps made (no autoencoder needed)."""
    maps, labels = _tiny_data(12)  # 9 of class 0, 3 of class 8
    x, y, info = arm_training_set(ARMS["symmetries+balanced-copies"], maps, labels, None, seed=0)
    assert info == {"real": 12, "symmetry": 7 * 12, "noise": 0, "copy": 8 * (9 - 3), "made": 7 * 12 + 8 * 6}
    assert len(x) == len(y) == 12 + info["made"]
    np.testing.assert_array_equal(x[:12], maps)
    assert np.bincount(y, minlength=9)[[0, 8]].tolist() == [8 * 9, 8 * 9]  # balanced at 8 × the larger class


def _tiny_data(n: int = 48, share: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """Two classes a small CNN separates: defects in the centre (a ``share`` of the maps) vs scattered."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:26, :26]
    r = np.sqrt((yy - 12.5) ** 2 + (xx - 12.5) ** 2)
    labels = np.array([0] * int(n * share) + [8] * (n - int(n * share)))
    states = np.where(rng.random((n, 26, 26)) < 0.1, DEFECT, NORMAL)
    states[labels == 0] = np.where((r < 5) & (rng.random((1, 26, 26)) < 0.9), DEFECT, states[labels == 0])
    states[:, r > 12.5] = BOUNDARY
    return to_onehot(states), labels


@pytest.mark.slow
def test_protocol_on_tiny_data_is_cached_and_balanced(tmp_path, monkeypatch):
    maps, labels = _tiny_data()
    arms = resolve_arms(["symmetries", "balanced"])
    proto = Protocol(folds=2, seeds=(0, 1), steps=3, ae_epochs=1, cache=tmp_path)
    rows = run_protocol(maps, labels, arms, proto)
    assert len(rows) == len(arms) * 2 * 2
    by = {(r["arm"], r["fold"], r["seed"]): r for r in rows}
    for f in range(2):
        real = by[("real", f, 0)]["train_counts"]
        bal = by[("balanced", f, 0)]["train_counts"]
        assert bal[0] == bal[8] == max(real[0], real[8])  # the rare class topped up by noise variants
        assert by[("balanced", f, 0)]["made"]["noise"] == bal[8] - real[8]
        assert sum(by[("symmetries", f, 0)]["train_counts"]) == 8 * sum(real)
        assert 0 <= by[("real", f, 0)]["macro_f1"] <= 1
    assert len(list((tmp_path / "autoencoders").iterdir())) == 2  # one per fold, only for the generating arm

    import training.classifier as clf

    def boom(*_a, **_k):
        raise AssertionError("a cached result was retrained")

    monkeypatch.setattr(clf, "train_classifier", boom)
    again = run_protocol(maps, labels, arms, proto)
    assert all(r["cached"] for r in again) and not any(r["cached"] for r in rows)

    def plain(rs):
        return sorted(json.dumps({k: v for k, v in r.items() if k != "cached"}, sort_keys=True) for r in rs)

    assert plain(again) == plain(rows)


@pytest.mark.slow
def test_usefulness_command_writes_report_and_plot(tmp_path):
    from typer.testing import CliRunner

    from training.evaluation.cli import app

    maps, labels = _tiny_data(32)
    np.save(tmp_path / "maps.npy", maps)
    np.save(tmp_path / "labels.npy", labels.reshape(-1, 1))
    args = ["usefulness", "--data", str(tmp_path / "maps.npy"), "--labels", str(tmp_path / "labels.npy"),
            "--set", "symmetries", "--folds", "2", "--steps", "2", "--cache", str(tmp_path / "c"),
            "--out", str(tmp_path / "u.json")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "u.json").read_text())
    assert [a["arm"] for a in doc["arms"]] == ["real", "symmetries"] and doc["wall_seconds"] >= 0
    assert doc["recommended"]["rule"] and (tmp_path / "u.png").stat().st_size > 1000
    assert "wall time" in res.output
    res = CliRunner().invoke(app, args)  # exists, no --force
    assert res.exit_code == 1 and "already exists" in res.output


def test_every_arm_is_consistent():
    for arm in ARMS.values():
        assert isinstance(arm, Arm)
        assert arm.control is None or arm.control in ARMS
        if arm.control not in (None, "real"):
            ctrl = ARMS[arm.control].recipe
            assert ctrl is not None and not ctrl.uses_generator  # controls never generate


class _FlipGenerator:
    """Variants = the source with a share of in-wafer dies flipped that grows with strength."""

    def reconstruct(self, maps, outline_lock=True):
        return np.asarray(maps)

    def augment(self, k, *, maps, labels, seed, strength):
        from edge_infer.generator import Generated
        from edge_infer.wafer import to_states

        rng = np.random.default_rng(seed)
        src = np.repeat(np.arange(len(maps)), k)
        states = to_states(np.asarray(maps))[src]
        flip = (rng.random(states.shape) < 0.5 * strength) & (states != BOUNDARY)
        states[flip] = np.where(states[flip] == NORMAL, DEFECT, NORMAL)
        return Generated(to_onehot(states), np.asarray(labels).reshape(-1)[src].reshape(-1, 1), src)


@pytest.mark.slow
def test_two_reader_fidelity_and_the_rule(tmp_path, monkeypatch):
    from training.evaluation.fidelity import two_reader_fidelity
    from training.evaluation.report import format_fidelity

    monkeypatch.setenv("EDGE_INFER_EVAL_CACHE", str(tmp_path))
    maps, labels = _tiny_data(240, share=0.5)
    res = two_reader_fidelity(_FlipGenerator(), maps, labels, [0.01, 0.05, 1.0], per_source=2, folds=3)
    assert res["real"]["all_maps"] > 0.9  # the readers learnt the two patterns
    assert res["reconstruction"] == res["real"]  # the fake reconstructs exactly
    worst = res["strengths"][-1]
    assert worst["all_maps"] < res["reconstruction"]["all_maps"] - 0.03  # half the dies flipped: unreadable
    c = res["chosen"]
    assert c["both"] == min(c["out_of_fold"], c["all_maps"]) and c["both"] in (0.01, 0.05)
    assert "all-maps reader" in format_fidelity(res)


def test_commands_refuse_bad_lists_with_one_error_line(tmp_path):
    """Through the one entry-point wrapper: exit 1, one error line naming the option, nothing written."""
    from typer.testing import CliRunner

    from training.evaluation.cli import app

    maps, labels = _tiny_data(8)
    np.save(tmp_path / "maps.npy", maps)
    np.save(tmp_path / "labels.npy", labels.reshape(-1, 1))
    common = ["--data", str(tmp_path / "maps.npy"), "--labels", str(tmp_path / "labels.npy")]
    cases = [
        (["usefulness", *common, "--seeds", "0,x", "--out", str(tmp_path / "u.json")], "--seeds must be whole numbers"),
        (["usefulness", *common, "--only-folds", ",", "--out", str(tmp_path / "u.json")], "--only-folds must list"),
        (["fidelity", *common, "--strengths", "0.3,strong", "--out", str(tmp_path / "f.json")], "--strengths must be numbers"),
    ]
    for args, message in cases:
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 1, res.output
        errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], res.output
        assert "Traceback" not in res.output
    assert not list(tmp_path.glob("*.json")) and not list(tmp_path.glob("*.png"))
