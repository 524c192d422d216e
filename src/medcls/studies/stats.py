"""Confidence intervals and paired tests on per-image predictions (numpy only, fast)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from medcls.metrics.balanced import balanced_accuracy
from medcls.metrics.bootstrap import group_index, index_draws

Metric = Callable[[np.ndarray, np.ndarray], float]


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float((y_true == y_pred).mean())


METRICS: dict[str, Metric] = {"balanced_accuracy": balanced_accuracy, "accuracy": accuracy}


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
    draw = index_draws(group_index(groups, len(y_true)))
    values = []
    for _ in range(n_boot):
        idx = draw(rng)
        values.append(metric(y_true[idx], y_pred[idx]))
    lo, hi = np.percentile(values, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return metric(y_true, y_pred), float(lo), float(hi)


def mcnemar(
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    groups: np.ndarray | None = None,
) -> dict[str, float | int | str]:
    """McNemar's test on paired predictions of the same images, group-aware.

    Shapes: ``y_true``, ``pred_a``, ``pred_b``, ``groups`` all ``(N,)``. ``only_a_correct``
    (b) / ``only_b_correct`` (c): images only A / only B gets right.

    Images of one patient or lesion are not independent: counting them as separate pairs
    makes the p-value too small. With ``groups`` where some group has several images, the
    test is the clustered McNemar of Durkalski et al. (Stat Med 2003): per group
    ``d_k = b_k - c_k``, statistic ``(Σ d_k)² / Σ d_k²`` (χ², 1 df), and with fewer than 25
    discordant groups its exact randomisation p-value (each ``d_k``'s sign a fair coin under
    H0; for one-image groups this is the exact binomial McNemar). Without groups, or when
    every group is one image: the classical test (exact binomial when b + c < 25, else χ²
    with continuity correction). ``unit`` says which (``"image"`` / ``"group"``),
    ``units`` how many there were, ``discordant_units`` how many have ``d ≠ 0``, ``method``
    in words.
    """
    a_ok, b_ok = np.asarray(pred_a) == y_true, np.asarray(pred_b) == y_true
    b, c = int((a_ok & ~b_ok).sum()), int((~a_ok & b_ok).sum())
    counts = {"only_a_correct": b, "only_b_correct": c}
    if groups is not None:
        inverse = np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)
        if np.bincount(inverse).max(initial=0) > 1:
            d = np.bincount(inverse, weights=a_ok.astype(int) - b_ok.astype(int)).astype(int)
            return {**counts, **_clustered_mcnemar(d)}
    out = {"unit": "image", "units": len(a_ok), "discordant_units": b + c}
    why = "no group ids" if groups is None else "every group is one image"
    out["method"] = f"McNemar over images ({why})"
    if b + c == 0:
        return {**counts, "statistic": 0.0, "p_value": 1.0, **out}
    if b + c < 25:
        p = stats.binomtest(b, b + c, 0.5).pvalue
        stat = float(min(b, c))
    else:
        stat = (abs(b - c) - 1) ** 2 / (b + c)
        p = stats.chi2.sf(stat, 1)
    return {**counts, "statistic": float(stat), "p_value": float(p), **out}


def _clustered_mcnemar(d: np.ndarray) -> dict[str, float | int | str]:
    """Durkalski's clustered McNemar of the per-group differences ``d (G,)`` (int,
    ``b_k - c_k``); exact sign-flip p-value under 25 discordant groups."""
    discordant = d[d != 0]
    out: dict[str, float | int | str] = {
        "unit": "group",
        "units": len(d),
        "discordant_units": len(discordant),
        "method": f"clustered McNemar (Durkalski 2003) over {len(d)} groups",
    }
    if not len(discordant):
        return {"statistic": 0.0, "p_value": 1.0, **out}
    stat = float(discordant.sum()) ** 2 / float((discordant**2).sum())
    if len(discordant) < 25:
        p = _sign_flip_p(discordant)
        out["method"] += ", exact"
    else:
        p = float(stats.chi2.sf(stat, 1))
    return {"statistic": stat, "p_value": p, **out}


def _sign_flip_p(d: np.ndarray) -> float:
    """``P(|Σ ε_k d_k| ≥ |Σ d_k|)`` with independent fair signs ``ε_k`` (``d (G,)`` int):
    the exact null distribution of the sum, built one group at a time (G × Σ|d| steps)."""
    size = np.abs(d).astype(int)
    total = int(size.sum())
    dist = np.zeros(2 * total + 1)
    dist[total] = 1.0
    for v in size:  # the mass never reaches past ±total, so np.roll never wraps any of it
        dist = 0.5 * (np.roll(dist, v) + np.roll(dist, -v))
    extreme = np.abs(np.arange(-total, total + 1)) >= abs(int(d.sum()))
    return float(min(1.0, dist[extreme].sum()))


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
    draw = index_draws(group_index(groups, len(y_true)))
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
