"""Temperature scaling and decision thresholds: each against an independent computation (torch's
softmax, a grid search, a brute force over every threshold)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import recall_score

from medcls.data.records import Record
from medcls.errors import DataError
from medcls.evaluation import EvalSettings, Predictions, evaluate
from medcls.evaluation.calibration import (
    Calibration,
    apply_temperature,
    choose_threshold,
    fit_calibration,
    fit_temperature,
    parse_threshold_rule,
)


def overconfident(n: int = 2000, k: int = 3, sharpen: float = 2.5, seed: int = 0):
    """Labels drawn from softmax(z); the "model" reports softmax(sharpen · z): its best
    temperature is ``sharpen``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 1.5
    true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    labels = np.array([rng.choice(k, p=p) for p in true])
    model = np.exp(sharpen * z) / np.exp(sharpen * z).sum(1, keepdims=True)
    return model, labels


def test_temperature_on_probabilities_is_softmax_of_logits_over_t() -> None:
    logits = torch.randn(50, 4, dtype=torch.float64) * 3
    probs = torch.softmax(logits, 1).numpy()
    np.testing.assert_allclose(
        apply_temperature(probs, 2.3), torch.softmax(logits / 2.3, 1).numpy(), atol=1e-9
    )


def test_fitted_temperature_undoes_overconfidence() -> None:
    probs, labels = overconfident()
    t = fit_temperature(probs, labels)
    grid = np.linspace(0.5, 5, 451)  # independent: the NLL on a grid
    nll = [
        -np.log(apply_temperature(probs, g)[np.arange(len(labels)), labels]).mean() for g in grid
    ]
    assert t == pytest.approx(grid[int(np.argmin(nll))], abs=0.011)
    assert t == pytest.approx(2.5, rel=0.12)


def binary_val(n: int = 400, seed: int = 1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    score = 1 / (1 + np.exp(-(labels * 1.5 + rng.normal(size=n) - 0.75)))
    return score, labels == 1


def test_youden_threshold_maximises_sensitivity_plus_specificity() -> None:
    score, y = binary_val()
    t = choose_threshold(score, y, "youden")
    j = lambda c: (score[y] >= c).mean() + (score[~y] < c).mean() - 1  # noqa: E731
    assert j(t) == pytest.approx(max(j(c) for c in np.unique(score)))


@pytest.mark.parametrize("x", [0.8, 0.95])
def test_sensitivity_rule_is_the_most_specific_threshold_reaching_it(x: float) -> None:
    score, y = binary_val()
    t = choose_threshold(score, y, f"sensitivity@{x}")
    assert (score[y] >= t).mean() >= x
    higher = np.unique(score[score > t])
    assert all((score[y] >= c).mean() < x for c in higher[:5])  # the next thresholds miss it


@pytest.mark.parametrize("x", [0.8, 0.95])
def test_specificity_rule_is_the_most_sensitive_threshold_reaching_it(x: float) -> None:
    score, y = binary_val()
    t = choose_threshold(score, y, f"specificity@{x}")
    assert (score[~y] < t).mean() >= x
    lower = np.unique(score[score < t])[::-1]
    assert all((score[~y] < c).mean() < x for c in lower[:5])


@pytest.mark.parametrize("rule", ["sensitivity@95", "median", "specificity@", "1.5", "sens@0.9"])
def test_a_bad_threshold_rule_names_the_rules(rule: str) -> None:
    with pytest.raises(DataError, match=r"eval.threshold=.*youden"):
        parse_threshold_rule(rule)


def test_a_fixed_number_is_kept() -> None:
    assert choose_threshold(*binary_val(), 0.3) == 0.3
    assert parse_threshold_rule("argmax") == ("argmax", None)


def test_test_metrics_at_the_validation_threshold(tmp_path) -> None:
    """Fit on one half, score the other: the reported sensitivity and specificity at the
    threshold are those of the thresholded calibrated test probabilities."""
    probs, labels = overconfident(n=1200, k=2, seed=3)
    val, test = slice(0, 600), slice(600, 1200)
    cal = fit_calibration(probs[val], labels[val], 1, "temperature", "sensitivity@0.9")
    assert cal.temperature == pytest.approx(2.5, rel=0.25) and cal.threshold is not None
    pred = Predictions(
        probs[test], labels[test], [Record(f"{i}", 0) for i in range(600)], ["a", "b"], 1
    )
    m = evaluate(pred, EvalSettings(n_boot=100), str(tmp_path), "t", calibration=cal).metrics
    p = apply_temperature(probs[test], cal.temperature)
    called = (p[:, 1] >= cal.threshold).astype(int)
    assert m["test/sensitivity_at_threshold"] == pytest.approx(recall_score(labels[test], called))
    assert m["test/specificity_at_threshold"] == pytest.approx(
        recall_score(1 - labels[test], 1 - called)
    )
    assert (
        m["test/decision_threshold"] == cal.threshold and m["test/temperature"] == cal.temperature
    )
    assert m["test/ece_calibrated"] < 0.5 * m["test/ece"]  # the overconfidence is gone
    assert m["test/nll_calibrated"] < m["test/nll"]
    assert m["test/sensitivity_at_threshold_ci_low"] <= m["test/sensitivity_at_threshold"]
    assert (tmp_path / "reliability_calibrated.png").is_file()
    # the argmax metrics stay those of the uncalibrated softmax (comparable across runs)
    assert m["test/accuracy"] == pytest.approx((probs[test].argmax(1) == labels[test]).mean())


def test_calibration_round_trips_through_checkpoint_metadata() -> None:
    cal = Calibration(1.7, 0.31, "youden")
    assert Calibration.from_meta(cal.to_meta()) == cal
    assert Calibration.from_meta(None) == Calibration()
    probs = np.array([[0.6, 0.4], [0.75, 0.25]])
    np.testing.assert_array_equal(Calibration(None, 0.3).predict(probs, 1), [1, 0])
