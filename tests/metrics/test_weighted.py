"""The weighted metric engine of the intervals: with unit weights it must give the numbers
torchmetrics (ClassificationMetrics) and scikit-learn give, and a weight of 2 must count as
the image listed twice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from torchmetrics.classification import MulticlassCalibrationError

from medcls.metrics.classification import compute_metrics
from medcls.metrics.weighted import score_draws


def noisy_predictions(n: int, k: int, seed: int, ties: bool = False):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    if ties:  # coarse scores: many tied thresholds
        probs = np.round(probs, 1) + 1e-9
        probs = probs / probs.sum(1, keepdims=True)
    # float32 values: torchmetrics scores in float32, so both must see the same ties
    return probs.astype(np.float32).astype(np.float64), labels


def unit(probs, labels, positive=None, **kw):
    return {
        k: float(v[0])
        for k, v in score_draws(probs, labels, np.ones((1, len(labels))), positive, **kw).items()
    }


@pytest.mark.parametrize(("k", "ties"), [(2, False), (2, True), (4, False), (7, True)])
def test_unit_weights_give_classification_metrics_values(k: int, ties: bool) -> None:
    probs, labels = noisy_predictions(300, k, seed=k, ties=ties)
    expected, _ = compute_metrics(probs, labels, [f"c{i}" for i in range(k)], positive_class=1)
    got = unit(probs, labels, positive=1)
    names = ["accuracy", "balanced_accuracy", "recall_macro", "f1_macro", "auroc_macro",
             "precision_macro", "f1_weighted", "precision_weighted"]  # fmt: skip
    if not ties:  # torch.topk orders tied scores its own way
        names += [f"top{t}_accuracy" for t in (2, 3) if t < k]
    if k == 2:
        names += ["sensitivity", "specificity", "auroc_positive"]
    for name in names:
        assert got[name] == pytest.approx(expected[name], abs=1e-6), name


def test_an_absent_class_is_left_out_as_classification_metrics_does() -> None:
    probs, labels = noisy_predictions(200, 4, seed=3)
    labels = np.where(labels == 3, 0, labels)  # class 3: predicted sometimes, never true
    expected, _ = compute_metrics(probs, labels, list("abcd"))
    got = unit(probs, labels)
    for name in ("balanced_accuracy", "f1_macro", "auroc_macro", "precision_macro", "f1_weighted"):
        assert got[name] == pytest.approx(expected[name], abs=1e-6), name


@pytest.mark.parametrize("ties", [False, True])
def test_auc_partial_auc_and_sensitivity_at_specificity_match_scikit_learn(ties: bool) -> None:
    probs, labels = noisy_predictions(400, 2, seed=11, ties=ties)
    got = unit(probs, labels, positive=1, specificities=(0.9, 0.95), pauc_max_fpr=0.1)
    score, y = probs[:, 1], labels == 1
    assert got["auroc_positive"] == pytest.approx(roc_auc_score(y, score))
    assert got["pauc_spec90"] == pytest.approx(roc_auc_score(y, score, max_fpr=0.1))
    for spec in (0.9, 0.95):  # brute force: every threshold, the best sensitivity meeting spec
        best = max(
            (score[y] >= t).mean() for t in np.unique(score) if (score[~y] < t).mean() >= spec
        )
        assert got[f"sensitivity_at_spec{round(100 * spec)}"] == pytest.approx(best)
    fpr, tpr, _ = roc_curve(y, score)  # and on scikit-learn's curve
    assert got["sensitivity_at_spec95"] == pytest.approx(tpr[fpr <= 0.05].max())


def test_positive_class_zero_scores_the_first_column() -> None:
    probs, labels = noisy_predictions(300, 2, seed=5)
    got = unit(probs, labels, positive=0, specificities=(0.9,), pauc_max_fpr=0.1)
    assert got["auroc_positive"] == pytest.approx(roc_auc_score(labels == 0, probs[:, 0]))
    assert got["sensitivity"] == pytest.approx(
        ((probs.argmax(1) == 0) & (labels == 0)).sum() / (labels == 0).sum()
    )


@pytest.mark.parametrize("k", [2, 5])
def test_ece_matches_torchmetrics(k: int) -> None:
    probs, labels = noisy_predictions(500, k, seed=k)
    probs[:5] = np.eye(k)[labels[:5]]  # confidence exactly 1.0: the last bin
    ece = MulticlassCalibrationError(k, n_bins=15, norm="l1")(
        torch.tensor(probs, dtype=torch.float64), torch.tensor(labels)
    )
    assert unit(probs, labels)["ece"] == pytest.approx(float(ece), abs=1e-6)


def test_ece_by_hand() -> None:
    # two bins used: confidence 0.95 (2 images, 1 right) and 0.55 (2 images, both right)
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.45, 0.55], [0.45, 0.55]])
    labels = np.array([0, 1, 1, 1])
    expected = (abs(2 * 0.95 - 1) + abs(2 * 0.55 - 2)) / 4
    assert unit(probs, labels)["ece"] == pytest.approx(expected)


def test_a_weight_of_two_counts_as_the_image_listed_twice() -> None:
    probs, labels = noisy_predictions(120, 3, seed=2)
    w = np.random.default_rng(0).integers(0, 3, size=120)
    idx = np.repeat(np.arange(120), w)
    weighted = {
        k: float(v[0]) for k, v in score_draws(probs, labels, w[None].astype(float)).items()
    }
    repeated = unit(probs[idx], labels[idx])
    assert weighted == pytest.approx(repeated)


def test_a_draw_without_positives_is_nan_not_a_number_made_up() -> None:
    probs, labels = noisy_predictions(50, 2, seed=1)
    w = (labels == 0).astype(float)[None]  # only negatives drawn
    got = score_draws(probs, labels, w, positive=1, specificities=(0.9,), pauc_max_fpr=0.1)
    for name in ("auroc_positive", "sensitivity", "sensitivity_at_spec90", "pauc_spec90"):
        assert np.isnan(got[name][0]), name
    assert got["specificity"][0] == pytest.approx((probs[labels == 0].argmax(1) == 0).mean())


def test_nll_is_scikit_learns_log_loss() -> None:
    from sklearn.metrics import log_loss

    probs, labels = noisy_predictions(300, 4, seed=9)
    assert unit(probs, labels)["nll"] == pytest.approx(log_loss(labels, probs, labels=range(4)))
