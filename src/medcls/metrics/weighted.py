"""Classification metrics of weighted images, many weightings at once (numpy only).

A bootstrap draw is a weighting: how often each image was drawn. Computing every draw as a row of
one ``(B, N)`` weight matrix makes a 1000-draw interval of AUROC, sensitivity at a fixed
specificity or the calibration error cost a few array operations, not 1000 library calls. With
``weights = ones((1, N))`` the functions give the plain point estimates, and those equal
torchmetrics' and scikit-learn's (tests/metrics/test_weighted.py): an interval and its point
estimate measure one quantity.

Shapes throughout: ``probs (N, K)``, ``labels (N,)`` int, ``weights (B, N)`` → ``(B,)`` per metric.
"""

from __future__ import annotations

import numpy as np


def confusion(labels: np.ndarray, preds: np.ndarray, k: int, weights: np.ndarray) -> np.ndarray:
    """``(B, K, K)`` weighted counts, rows = true class."""
    cell = np.zeros((len(labels), k * k))
    cell[np.arange(len(labels)), labels * k + preds] = 1.0
    return (weights @ cell).reshape(-1, k, k)


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, empty, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def confusion_scores(cm: np.ndarray, positive: int | None = None) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy (= ``recall_macro``: mean recall over the classes present
    in the targets, as :func:`~medcls.metrics.balanced.balanced_accuracy_of_confusion`), macro
    F1 and precision (over classes that are true or predicted, as torchmetrics), support-
    weighted F1 and precision and, with ``positive`` (two classes), sensitivity and
    specificity. ``cm (B, K, K)``."""
    support, predicted = cm.sum(2), cm.sum(1)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    total = support.sum(1)
    present = support > 0
    recall = _ratio(tp, support, np.nan)
    out = {
        "accuracy": _ratio(tp.sum(1), total, np.nan),
        "balanced_accuracy": _ratio(np.nansum(recall, 1), present.sum(1), np.nan),
    }
    seen = (support + predicted) > 0
    f1 = _ratio(2 * tp, support + predicted, 0.0)
    precision = _ratio(tp, predicted, 0.0)
    out["f1_macro"] = _ratio((f1 * seen).sum(1), seen.sum(1), np.nan)
    out["precision_macro"] = _ratio((precision * seen).sum(1), seen.sum(1), np.nan)
    out["recall_macro"] = out["balanced_accuracy"]  # one definition: the classes present
    out["f1_weighted"] = _ratio((f1 * support).sum(1), total, np.nan)
    out["precision_weighted"] = _ratio((precision * support).sum(1), total, np.nan)
    if positive is not None and cm.shape[1] == 2:
        out["sensitivity"] = recall[:, positive]
        out["specificity"] = recall[:, 1 - positive]
    return out


def roc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray):
    """Weighted ROC curve of ``scores (N,)`` for ``positive (N,)`` bool: ``fpr, tpr (B, T+1)``
    from (0, 0), one point per distinct score (ties form one step, as scikit-learn's
    ``roc_curve(drop_intermediate=False)``), and the thresholds ``(T,)``. Rows without a
    positive or a negative weight are NaN."""
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each tie block
    w = weights[:, order]
    pos = positive[order].astype(np.float64)
    tp = np.cumsum(w * pos, axis=1)[:, ends]
    fp = np.cumsum(w * (1.0 - pos), axis=1)[:, ends]
    zero = np.zeros((len(w), 1))
    tp, fp = np.hstack([zero, tp]), np.hstack([zero, fp])
    return _ratio(fp, fp[:, -1:], np.nan), _ratio(tp, tp[:, -1:], np.nan), s[ends]


def area(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float | None = None) -> np.ndarray:
    """AUROC by the trapezoid rule; with ``max_fpr``, the partial AUC over ``[0, max_fpr]``
    standardised as McClish (0.5: chance, 1: perfect), as ``roc_auc_score(max_fpr=...)``."""
    f0, f1, t0, t1 = fpr[:, :-1], fpr[:, 1:], tpr[:, :-1], tpr[:, 1:]
    if max_fpr is None or max_fpr >= 1:
        return np.sum((f1 - f0) * (t0 + t1) / 2, axis=1)
    right = np.minimum(f1, max_fpr)
    # tpr where a segment crosses max_fpr (linear interpolation, as scikit-learn)
    t_right = t0 + (t1 - t0) * _ratio(right - f0, f1 - f0, 0.0)
    width = np.clip(right - f0, 0, None)
    partial = np.sum(width * (t0 + t_right) / 2, axis=1)
    lo, hi = max_fpr**2 / 2, max_fpr
    return 0.5 * (1 + (partial - lo) / (hi - lo))


def sensitivity_at_specificity(fpr: np.ndarray, tpr: np.ndarray, specificity: float):
    """The highest sensitivity of a threshold whose specificity is at least ``specificity``."""
    ok = fpr <= 1 - specificity + 1e-12
    return np.where(np.isnan(fpr[:, -1]), np.nan, np.max(np.where(ok, tpr, 0.0), axis=1))


def calibration_error(
    probs: np.ndarray, labels: np.ndarray, weights: np.ndarray, n_bins: int = 15
) -> np.ndarray:
    """Expected calibration error of the top-label confidence over ``n_bins`` equal-width bins
    (as torchmetrics' ``MulticlassCalibrationError(norm="l1")``): Σ_bins |Σ (confidence −
    correct)| / Σ weight."""
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    bins = confidence_bins(conf, n_bins)
    member = np.zeros((len(conf), n_bins))
    member[np.arange(len(conf)), bins] = 1.0
    gap = (weights * (conf - correct)) @ member  # (B, bins)
    return _ratio(np.abs(gap).sum(1), weights.sum(1), np.nan)


def confidence_bins(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each confidence: ``[i/n, (i+1)/n)``, 1.0 in the last bin (torchmetrics' binning)."""
    edges = np.linspace(0, 1, n_bins + 1)
    return np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)


def score_draws(
    probs: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    positive: int | None = None,
    specificities: tuple[float, ...] = (),
    pauc_max_fpr: float | None = None,
    calibration_bins: int = 15,
    threshold: float | None = None,
) -> dict[str, np.ndarray]:
    """Every headline metric of each weighting: accuracy, balanced accuracy, macro and
    weighted F1 and precision, top-2/3 accuracy, macro AUROC (one-vs-rest, averaged over the
    classes whose AUROC exists in that weighting: a positive and a negative image drawn; NaN
    if none, as :class:`ClassificationMetrics`), ECE;
    with two classes and ``positive``, also sensitivity, specificity, the positive class's
    AUROC (NaN, as every ROC figure, where a class has no positive or no negative image),
    the sensitivity at each of ``specificities`` (key ``sensitivity_at_spec95`` for
    0.95) and the standardised partial AUC above specificity ``1 - pauc_max_fpr``
    (``pauc_spec90`` for 0.1), and with ``threshold`` (the positive class predicted where its
    probability reaches it) accuracy, balanced accuracy, sensitivity and specificity at it
    (``<metric>_at_threshold``). ``nll``: the mean negative log-likelihood of the labels."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    k = probs.shape[1]
    binary = positive is not None and k == 2
    cm = confusion(labels, probs.argmax(1), k, weights)
    out = confusion_scores(cm, positive if binary else None)
    rank = np.argsort(-probs, axis=1, kind="stable")
    for top in (2, 3):
        if top < k:  # as ClassificationMetrics: top-k accuracy where k is below the classes
            hit = (rank[:, :top] == labels[:, None]).any(1).astype(np.float64)
            out[f"top{top}_accuracy"] = _ratio(weights @ hit, weights.sum(1), np.nan)
    aurocs = []
    for c in range(k):
        fpr, tpr, _ = roc(probs[:, c], labels == c, weights)
        aurocs.append(area(fpr, tpr))
        if binary and c == positive:
            out["auroc_positive"] = aurocs[-1]
            for s in specificities:
                out[f"sensitivity_at_spec{round(100 * s)}"] = sensitivity_at_specificity(
                    fpr, tpr, s
                )
            if pauc_max_fpr:
                out[f"pauc_spec{round(100 * (1 - pauc_max_fpr))}"] = area(fpr, tpr, pauc_max_fpr)
    stacked = np.stack(aurocs, axis=1)
    has = ~np.isnan(stacked)
    out["auroc_macro"] = _ratio(np.where(has, stacked, 0).sum(1), has.sum(1), np.nan)
    out["ece"] = calibration_error(probs, labels, weights, calibration_bins)
    nll = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))
    out["nll"] = _ratio(weights @ nll, weights.sum(1), np.nan)
    if binary and threshold is not None:
        preds = np.where(probs[:, positive] >= threshold, positive, 1 - positive)
        at = confusion_scores(confusion(labels, preds, k, weights), positive)
        for name in ("accuracy", "balanced_accuracy", "sensitivity", "specificity"):
            out[f"{name}_at_threshold"] = at[name]
    return out
