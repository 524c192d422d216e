"""Bootstrap intervals, McNemar's test, the paired bootstrap and balanced accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import balanced_accuracy_score

from medcls.studies.stats import (
    accuracy,
    balanced_accuracy,
    bootstrap_ci,
    mcnemar,
    paired_bootstrap,
)


def noisy_predictions(n: int, k: int = 3, p_correct: float = 0.8, seed: int = 0):
    """``(y_true, y_pred)``: each prediction is right with probability ``p_correct``."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    wrong = (y_true + rng.integers(1, k, n)) % k
    return y_true, np.where(rng.random(n) < p_correct, y_true, wrong)


# ------------------------------------------------------------------------- balanced accuracy
@pytest.mark.parametrize("seed", range(5))
def test_balanced_accuracy_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6))
    y_true = rng.integers(0, k, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, k, 200))
    assert balanced_accuracy(y_true, y_pred) == pytest.approx(
        balanced_accuracy_score(y_true, y_pred), abs=1e-12
    )


def test_balanced_accuracy_ignores_classes_only_predicted() -> None:
    """A class that is predicted but absent from ``y_true`` has no recall to average."""
    y_true = np.array([0, 0, 0, 1, 1, 1, 1])
    y_pred = np.array([0, 2, 0, 1, 1, 2, 2])
    expected = (2 / 3 + 2 / 4) / 2
    assert balanced_accuracy(y_true, y_pred) == pytest.approx(expected)
    with pytest.warns(UserWarning):
        assert balanced_accuracy_score(y_true, y_pred) == pytest.approx(expected)


def test_balanced_accuracy_differs_from_accuracy_on_imbalanced_data() -> None:
    y_true = np.array([0] * 90 + [1] * 10)
    y_pred = np.zeros(100, int)  # always the majority class
    assert accuracy(y_true, y_pred) == pytest.approx(0.9)
    assert balanced_accuracy(y_true, y_pred) == pytest.approx(0.5)


# ------------------------------------------------------------------------------ bootstrap CI
def test_bootstrap_ci_contains_the_point_estimate() -> None:
    y_true, y_pred = noisy_predictions(300)
    point, lo, hi = bootstrap_ci(y_true, y_pred, n_boot=300)
    assert point == pytest.approx(balanced_accuracy(y_true, y_pred))
    assert lo < point < hi
    assert lo >= 0.0 and hi <= 1.0
    assert 0.6 < point < 0.95


def test_bootstrap_ci_is_reproducible_with_a_seed_and_varies_without() -> None:
    y_true, y_pred = noisy_predictions(200)
    a = bootstrap_ci(y_true, y_pred, n_boot=200, seed=3)
    assert bootstrap_ci(y_true, y_pred, n_boot=200, seed=3) == a
    assert bootstrap_ci(y_true, y_pred, n_boot=200, seed=4) != a


def test_bootstrap_ci_narrows_with_more_samples() -> None:
    small = bootstrap_ci(*noisy_predictions(60, seed=1), n_boot=300)
    large = bootstrap_ci(*noisy_predictions(3000, seed=1), n_boot=300)
    width_small, width_large = small[2] - small[1], large[2] - large[1]
    # the width shrinks like 1/sqrt(n): 50x the images, ~7x narrower
    assert width_large < width_small / 3


def test_bootstrap_ci_level_controls_the_width() -> None:
    y_true, y_pred = noisy_predictions(300)
    _, lo80, hi80 = bootstrap_ci(y_true, y_pred, n_boot=400, level=0.8)
    _, lo99, hi99 = bootstrap_ci(y_true, y_pred, n_boot=400, level=0.99)
    assert lo99 < lo80 < hi80 < hi99


def test_bootstrap_ci_accepts_another_metric_and_lists() -> None:
    y_true, y_pred = noisy_predictions(100)
    point, lo, hi = bootstrap_ci(list(y_true), list(y_pred), metric=accuracy, n_boot=100)
    assert point == pytest.approx((y_true == y_pred).mean())
    assert lo <= point <= hi


def test_grouped_bootstrap_draws_whole_groups() -> None:
    """With ``groups``, every drawn group comes with all of its images."""
    sizes = [1, 2, 3, 4, 5, 6]
    groups = np.repeat([f"patient{i}" for i in range(len(sizes))], sizes)
    group_of = np.repeat(np.arange(len(sizes)), sizes)  # passed as y_true to see what was drawn
    seen: list[np.ndarray] = []

    def record(y_t: np.ndarray, y_p: np.ndarray) -> float:
        seen.append(y_t)
        return 0.0

    bootstrap_ci(group_of, np.arange(len(groups)), metric=record, n_boot=50, groups=groups)
    assert len(seen) == 51  # 50 resamples + the point estimate
    for drawn in seen[:-1]:
        counts = np.bincount(drawn, minlength=len(sizes))
        assert all(c % s == 0 for c, s in zip(counts, sizes, strict=True)), counts
        # as many groups drawn as there are groups
        assert sum(c // s for c, s in zip(counts, sizes, strict=True)) == len(sizes)


def test_grouped_bootstrap_is_wider_for_correlated_groups() -> None:
    """When a patient's images are all right or all wrong, resampling images pretends to have
    more independent evidence than there is: the grouped interval must be wider."""
    rng = np.random.default_rng(0)
    n_groups, per_group = 40, 10
    groups = np.repeat(np.arange(n_groups), per_group)
    y_true = np.repeat(rng.integers(0, 2, n_groups), per_group)
    right = np.repeat(rng.random(n_groups) < 0.7, per_group)
    y_pred = np.where(right, y_true, 1 - y_true)
    _, lo_i, hi_i = bootstrap_ci(y_true, y_pred, metric=accuracy, n_boot=400)
    point, lo_g, hi_g = bootstrap_ci(y_true, y_pred, metric=accuracy, n_boot=400, groups=groups)
    assert lo_g <= point <= hi_g
    assert (hi_g - lo_g) > 2 * (hi_i - lo_i)


# ---------------------------------------------------------------------------------- McNemar
def test_mcnemar_identical_predictions() -> None:
    y_true, y_pred = noisy_predictions(100)
    out = mcnemar(y_true, y_pred, y_pred.copy())
    assert out["p_value"] == 1.0
    assert out["statistic"] == 0.0
    assert out["only_a_correct"] == out["only_b_correct"] == 0


def test_mcnemar_same_accuracy_different_images_is_not_significant() -> None:
    y_true = np.zeros(40, int)
    pred_a = np.r_[np.zeros(20, int), np.ones(20, int)]
    pred_b = np.r_[np.ones(20, int), np.zeros(20, int)]  # 20 each way: b = c
    out = mcnemar(y_true, pred_a, pred_b)
    assert (out["only_a_correct"], out["only_b_correct"]) == (20, 20)
    assert out["p_value"] > 0.8


def test_mcnemar_strongly_different_chi_square_branch() -> None:
    y_true = np.zeros(200, int)
    pred_a = np.zeros(200, int)  # all right
    pred_b = np.r_[np.ones(40, int), np.zeros(160, int)]  # 40 wrong: b=40, c=0
    out = mcnemar(y_true, pred_a, pred_b)
    assert (out["only_a_correct"], out["only_b_correct"]) == (40, 0)
    assert out["statistic"] == pytest.approx((40 - 1) ** 2 / 40)
    assert out["p_value"] == pytest.approx(sps.chi2.sf(39**2 / 40, 1))
    assert out["p_value"] < 1e-8
    swapped = mcnemar(y_true, pred_b, pred_a)
    assert (swapped["only_a_correct"], swapped["only_b_correct"]) == (0, 40)
    assert swapped["p_value"] == pytest.approx(out["p_value"])


def test_mcnemar_exact_branch_for_few_discordant_pairs() -> None:
    y_true = np.zeros(50, int)
    pred_a = np.zeros(50, int)
    pred_b = np.r_[np.ones(10, int), np.zeros(40, int)]  # b=10, c=0
    out = mcnemar(y_true, pred_a, pred_b)
    assert out["statistic"] == 0.0  # min(b, c)
    assert out["p_value"] == pytest.approx(2 * 0.5**10)  # two-sided exact binomial


@pytest.mark.parametrize(("b", "c", "exact"), [(20, 4, True), (21, 4, False)])
def test_mcnemar_switches_to_chi_square_at_25_discordant_pairs(b: int, c: int, exact: bool):
    y_true = np.zeros(100, int)
    # A right / B wrong on b images, A wrong / B right on c, both right on the rest
    pred_a = np.r_[np.zeros(b, int), np.ones(c, int), np.zeros(100 - b - c, int)]
    pred_b = np.r_[np.ones(b, int), np.zeros(c, int), np.zeros(100 - b - c, int)]
    out = mcnemar(y_true, pred_a, pred_b)
    assert (out["only_a_correct"], out["only_b_correct"]) == (b, c)
    expected = (
        sps.binomtest(b, b + c, 0.5).pvalue
        if exact
        else sps.chi2.sf((abs(b - c) - 1) ** 2 / (b + c), 1)
    )
    assert out["p_value"] == pytest.approx(expected)


# -------------------------------------------------------------------------- paired bootstrap
def test_paired_bootstrap_sign_follows_the_better_model() -> None:
    y_true, good = noisy_predictions(400, p_correct=0.9, seed=2)
    _, bad = noisy_predictions(400, p_correct=0.5, seed=2)  # same labels (same seed)
    better = paired_bootstrap(y_true, bad, good, n_boot=400)  # metric(B) - metric(A)
    assert better["difference"] == pytest.approx(
        balanced_accuracy(y_true, good) - balanced_accuracy(y_true, bad)
    )
    assert better["difference"] > 0.2
    assert 0 < better["ci_low"] <= better["difference"] <= better["ci_high"]
    assert better["p_value"] < 0.01
    worse = paired_bootstrap(y_true, good, bad, n_boot=400)
    assert worse["difference"] == pytest.approx(-better["difference"])
    assert worse["ci_high"] < 0
    assert worse["p_value"] < 0.01


def test_paired_bootstrap_identical_models() -> None:
    y_true, y_pred = noisy_predictions(100)
    out = paired_bootstrap(y_true, y_pred, y_pred, n_boot=100)
    assert out["difference"] == 0.0
    assert out["ci_low"] == out["ci_high"] == 0.0
    assert out["p_value"] == 1.0


def test_paired_bootstrap_close_models_are_not_significant() -> None:
    y_true, a = noisy_predictions(300, p_correct=0.8, seed=5)
    b = a.copy()
    b[:3] = (y_true[:3] + 1) % 3  # three more mistakes at most
    out = paired_bootstrap(y_true, a, b, n_boot=400)
    assert out["ci_low"] <= 0.0 <= out["ci_high"]
    assert out["p_value"] > 0.05


def test_paired_bootstrap_with_groups() -> None:
    y_true, good = noisy_predictions(200, p_correct=0.9, seed=7)
    _, bad = noisy_predictions(200, p_correct=0.4, seed=7)
    groups = np.repeat(np.arange(50), 4)
    out = paired_bootstrap(y_true, bad, good, n_boot=200, groups=groups)
    assert out["difference"] > 0
    assert out["ci_low"] > 0
