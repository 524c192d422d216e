"""Confidence intervals and paired tests on per-image predictions (numpy only, fast)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from medcls.metrics.balanced import balanced_accuracy_of_confusion

Metric = Callable[[np.ndarray, np.ndarray], float]


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (medcls's one definition,
    :func:`~medcls.metrics.balanced.balanced_accuracy_of_confusion`). Shapes: ``(N,)``
    int, ``(N,)`` int."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    k = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    return balanced_accuracy_of_confusion(cm)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float((y_true == y_pred).mean())


METRICS: dict[str, Metric] = {"balanced_accuracy": balanced_accuracy, "accuracy": accuracy}


def _resampler(n: int, groups: np.ndarray | None) -> Callable[[np.random.Generator], np.ndarray]:
    """Draws bootstrap indices; with ``groups``, whole groups (patients, lesions, or one image
    predicted by several models) are drawn together. Group members are found once, not per draw."""
    if groups is None:
        return lambda rng: rng.integers(0, n, n)
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    members = np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)
    return lambda rng: np.concatenate(
        [members[g] for g in rng.integers(0, len(members), len(members))]
    )


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    metric: Metric = balanced_accuracy,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """(point estimate, low, high) percentile bootstrap interval of ``metric``."""
    rng = np.random.default_rng(seed)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    draw = _resampler(len(y_true), groups)
    values = []
    for _ in range(n_boot):
        idx = draw(rng)
        values.append(metric(y_true[idx], y_pred[idx]))
    lo, hi = np.percentile(values, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return metric(y_true, y_pred), float(lo), float(hi)


def mcnemar(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict[str, float]:
    """McNemar's test on paired predictions of the same images.

    ``b``: images only A gets right; ``c``: only B. Exact binomial p-value when ``b + c < 25``,
    else the chi-square with continuity correction.
    """
    a_ok, b_ok = np.asarray(pred_a) == y_true, np.asarray(pred_b) == y_true
    b, c = int((a_ok & ~b_ok).sum()), int((~a_ok & b_ok).sum())
    if b + c == 0:
        return {"only_a_correct": b, "only_b_correct": c, "statistic": 0.0, "p_value": 1.0}
    if b + c < 25:
        p = stats.binomtest(b, b + c, 0.5).pvalue
        stat = float(min(b, c))
    else:
        stat = (abs(b - c) - 1) ** 2 / (b + c)
        p = stats.chi2.sf(stat, 1)
    return {"only_a_correct": b, "only_b_correct": c, "statistic": float(stat), "p_value": float(p)}


def paired_bootstrap(
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    metric: Metric = balanced_accuracy,
    n_boot: int = 2000,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, float]:
    """Difference ``metric(B) - metric(A)`` with a 95% interval and a two-sided p-value,
    resampling the same images for both."""
    rng = np.random.default_rng(seed)
    y_true, pred_a, pred_b = (np.asarray(v) for v in (y_true, pred_a, pred_b))
    draw = _resampler(len(y_true), groups)
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        idx = draw(rng)
        diffs[i] = metric(y_true[idx], pred_b[idx]) - metric(y_true[idx], pred_a[idx])
    observed = metric(y_true, pred_b) - metric(y_true, pred_a)
    # two-sided: how often the resampled difference falls on the other side of zero
    p = 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {
        "difference": float(observed),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "p_value": float(min(1.0, p)),
    }
