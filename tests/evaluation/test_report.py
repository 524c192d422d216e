"""The evaluation report on hand-made predictions: its metrics against scikit-learn, its
intervals around its point estimates, its files against the numbers they claim to show."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score, roc_curve

from medcls.data.records import Record
from medcls.errors import DataError
from medcls.evaluation import EvalSettings, Predictions, evaluate


def predictions(
    n: int = 240, k: int = 3, seed: int = 0, per_group: int = 3, shared: float = 0.0
) -> Predictions:
    """``per_group`` images per patient, in order; ``shared``: the part of an image's logits
    its patient's other images have too (their correlation)."""
    rng = np.random.default_rng(seed)
    glabel = rng.integers(0, k, n // per_group)
    labels = np.repeat(glabel, per_group)
    patient = np.repeat(rng.normal(size=(n // per_group, k)), per_group, axis=0)
    noise = shared * patient + (1 - shared) * rng.normal(size=(n, k))
    logits = noise + 1.2 * np.eye(k)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    records = [
        Record(f"img/{i}.png", int(y), f"patient{i // per_group}") for i, y in enumerate(labels)
    ]
    return Predictions(probs, labels, records, [f"c{i}" for i in range(k)], positive=1)


def test_every_headline_metric_has_an_interval_around_it(tmp_path) -> None:
    ev = evaluate(predictions(), EvalSettings(n_boot=300), str(tmp_path), "t")
    m = ev.metrics
    for name in ("accuracy", "balanced_accuracy", "f1_macro", "auroc_macro", "ece"):
        for level in ("test", "group"):
            key = f"{level}/{name}"
            assert m[f"{key}_ci_low"] <= m[key] <= m[f"{key}_ci_high"], key
            assert m[f"{key}_ci_low"] < m[f"{key}_ci_high"], key
    summary = pd.read_csv(tmp_path / "metrics_summary.csv")
    row = summary[(summary["level"] == "test") & (summary["metric"] == "auroc_macro")].iloc[0]
    assert row["value"] == pytest.approx(m["test/auroc_macro"], abs=1e-6)
    assert row["ci_low"] == pytest.approx(m["test/auroc_macro_ci_low"], abs=1e-6)


def test_group_level_scores_each_patients_mean_softmax(tmp_path) -> None:
    pred = predictions()
    ev = evaluate(pred, EvalSettings(n_boot=0), str(tmp_path), "t")
    mean = pred.probs.reshape(-1, 3, 3).mean(1)  # three images per patient, in order
    y = pred.labels[::3]
    expected = np.mean([roc_auc_score(y == c, mean[:, c]) for c in range(3)])
    assert ev.metrics["group/auroc_macro"] == pytest.approx(expected, abs=1e-6)
    assert "test/accuracy_ci_low" not in ev.metrics  # n_boot=0: no intervals


def test_patients_widen_the_interval_over_images(tmp_path) -> None:
    """The same predictions (a patient's three images alike), once with each patient's images
    as one group and once as independent images: the grouped interval is wider (fewer
    independent units)."""
    pred = predictions(n=300, per_group=3, shared=0.9)
    alone = Predictions(
        pred.probs, pred.labels, [Record(r.path, r.label) for r in pred.records], pred.class_names
    )
    grouped = evaluate(pred, EvalSettings(n_boot=400), str(tmp_path / "g"), "t").metrics
    single = evaluate(alone, EvalSettings(n_boot=400), str(tmp_path / "s"), "t").metrics
    width = lambda m: m["test/auroc_macro_ci_high"] - m["test/auroc_macro_ci_low"]  # noqa: E731
    assert width(grouped) > 1.2 * width(single)


def test_binary_operating_points_and_curves(tmp_path) -> None:
    pred = predictions(k=2, seed=4)
    settings = EvalSettings(n_boot=200, specificities=(0.9, 0.95), pauc_min_specificity=0.9)
    m = evaluate(pred, settings, str(tmp_path), "t").metrics
    y, s = pred.labels == 1, pred.probs[:, 1]
    assert m["test/pauc_spec90"] == pytest.approx(roc_auc_score(y, s, max_fpr=0.1))
    fpr, tpr, _ = roc_curve(y, s)
    assert m["test/sensitivity_at_spec95"] == pytest.approx(tpr[fpr <= 0.05].max())
    assert m["test/sensitivity_at_spec90"] >= m["test/sensitivity_at_spec95"]
    roc = pd.read_csv(tmp_path / "roc_curves.csv")
    assert set(roc["class"]) == {"c1"}  # binary: the positive class's curve
    np.testing.assert_allclose(roc["tpr"], tpr, atol=1e-6)
    for name in ("roc_curves.png", "pr_curves.png", "reliability.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_multiclass_curves_per_class_and_macro(tmp_path) -> None:
    pred = predictions(k=4, seed=2)
    evaluate(pred, EvalSettings(n_boot=0), str(tmp_path), "t")
    roc = pd.read_csv(tmp_path / "roc_curves.csv")
    assert list(dict.fromkeys(roc["class"])) == ["c0", "c1", "c2", "c3", "macro"]
    fpr, tpr, _ = roc_curve(pred.labels == 2, pred.probs[:, 2])
    np.testing.assert_allclose(roc.loc[roc["class"] == "c2", "tpr"], tpr, atol=1e-6)
    pr = pd.read_csv(tmp_path / "pr_curves.csv")
    assert pr.loc[pr["class"] == "c0", "recall"].max() == pytest.approx(1.0)


def test_reliability_table_is_scikit_learns_calibration_curve(tmp_path) -> None:
    pred = predictions(n=600, seed=7)
    ev = evaluate(pred, EvalSettings(n_boot=0, calibration_bins=10), str(tmp_path), "t")
    table = pd.read_csv(tmp_path / "reliability.csv")
    conf, correct = pred.probs.max(1), pred.probs.argmax(1) == pred.labels
    accuracy, confidence = calibration_curve(correct, conf, n_bins=10)
    np.testing.assert_allclose(table["accuracy"], accuracy, atol=1e-6)
    np.testing.assert_allclose(table["confidence"], confidence, atol=1e-6)
    assert table["images"].sum() == 600
    # the ECE is the reliability diagram's gaps weighted by bin size
    gaps = (table["images"] * (table["confidence"] - table["accuracy"]).abs()).sum() / 600
    assert ev.metrics["test/ece"] == pytest.approx(gaps, abs=1e-6)


def test_unknown_or_bad_eval_settings_are_refused() -> None:
    with pytest.raises(DataError, match="eval.n_boots"):
        EvalSettings.from_cfg({"n_boots": 10})
    with pytest.raises(DataError, match="specificity 95"):
        EvalSettings.from_cfg({"specificities": [95]})
    assert EvalSettings.from_cfg({"specificities": [0.8]}).specificities == (0.8,)
