"""The intervals' coverage on simulated data whose true metrics are known in closed form, and
the group resampling against its negative control (resampling images of clustered data)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from medcls.metrics.bootstrap import bootstrap_intervals, group_index, weight_draws
from medcls.metrics.weighted import score_draws


def binary_probs(score: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(-score))
    return np.stack([1 - p, p], axis=1)


def coverage(datasets, truth: dict[str, float], grouped: bool, n_boot: int = 300) -> dict:
    hits = dict.fromkeys(truth, 0)
    for probs, labels, groups in datasets:
        ci = bootstrap_intervals(
            lambda w, p=probs, y=labels: score_draws(p, y, w, positive=1),
            group_index(groups if grouped else None, len(labels)),
            n_boot=n_boot,
            seed=len(hits),
        )
        for name, value in truth.items():
            hits[name] += ci[name][0] <= value <= ci[name][1]
    return {k: v / len(datasets) for k, v in hits.items()}


def test_95_percent_intervals_cover_the_true_auc_and_accuracy() -> None:
    """Positives score N(1, 1), negatives N(0, 1), half of each: AUROC = Φ(1/√2); at
    threshold 0 sensitivity Φ(1), specificity Φ(0), accuracy their mean."""
    rng = np.random.default_rng(0)
    datasets = []
    for _ in range(200):
        labels = rng.permutation(np.repeat([0, 1], 100))
        datasets.append((binary_probs(labels + rng.normal(size=200)), labels, None))
    truth = {
        "auroc_positive": norm.cdf(1 / np.sqrt(2)),
        "sensitivity": norm.cdf(1),
        "accuracy": (norm.cdf(1) + 0.5) / 2,
    }
    for name, cov in coverage(datasets, truth, grouped=False).items():
        assert 0.89 <= cov <= 0.99, (name, cov)


def clustered(rng, n_groups: int = 60, per_group: int = 5):
    """A patient's images share its label and most of its score (a random effect of SD 1.5
    beside image noise of SD 0.3): AUROC = Φ(1 / √(2 (1.5² + 0.3²)))."""
    glabel = rng.permutation(np.repeat([0, 1], n_groups // 2))
    effect = rng.normal(0, 1.5, n_groups)
    g = np.repeat(np.arange(n_groups), per_group)
    labels = glabel[g]
    score = labels + effect[g] + rng.normal(0, 0.3, len(g))
    return binary_probs(score), labels, [f"patient{i}" for i in g]


def test_resampling_patients_covers_where_resampling_images_does_not() -> None:
    rng = np.random.default_rng(1)
    datasets = [clustered(rng) for _ in range(150)]
    truth = {"auroc_positive": norm.cdf(1 / np.sqrt(2 * (1.5**2 + 0.3**2)))}
    by_patient = coverage(datasets, truth, grouped=True)["auroc_positive"]
    by_image = coverage(datasets, truth, grouped=False)["auroc_positive"]
    assert by_patient >= 0.89, by_patient
    assert by_image < 0.80, by_image  # the negative control: five images are not five patients


def test_a_draw_takes_whole_groups_as_many_images_as_groups_drawn() -> None:
    group_of = group_index(["a", "a", "a", "b", None, None], 6)
    assert len(set(group_of)) == 4  # images without a group are groups of their own
    for w in weight_draws(group_of, n_boot=50, seed=0, chunk=16):
        assert (w[:, 0] == w[:, 1]).all() and (w[:, 1] == w[:, 2]).all()
        # the draw counts 4 groups: a group of three weighs three images per draw
        per_group = w[:, [0, 3, 4, 5]]
        assert (per_group.sum(1) == 4).all()


def test_intervals_skip_draws_where_a_metric_is_undefined() -> None:
    labels = np.array([0] * 30 + [1])  # one positive: most draws have none
    probs = binary_probs(np.linspace(-1, 1, 31))
    ci = bootstrap_intervals(
        lambda w: score_draws(probs, labels, w, positive=1), group_index(None, 31), 200
    )
    lo, hi = ci["auroc_positive"]
    assert 0 <= lo <= hi <= 1
    assert ci["accuracy"][0] <= (probs.argmax(1) == labels).mean() <= ci["accuracy"][1]


@pytest.mark.parametrize("level", [0.8, 0.95])
def test_a_wider_level_gives_a_wider_interval(level: float) -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 150)
    probs = binary_probs(labels + rng.normal(size=150))
    lo, hi = bootstrap_intervals(
        lambda w: score_draws(probs, labels, w, positive=1), group_index(None, 150), 400, level
    )["auroc_positive"]
    lo95, hi95 = bootstrap_intervals(
        lambda w: score_draws(probs, labels, w, positive=1), group_index(None, 150), 400, 0.99
    )["auroc_positive"]
    assert lo95 <= lo < hi <= hi95
