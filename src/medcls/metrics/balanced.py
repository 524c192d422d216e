"""Balanced accuracy, defined once for every layer (training metrics, per-source and group
metrics, bootstrap intervals, reports): numpy only, on a confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _counts(cm) -> np.ndarray:
    return np.asarray(cm.cpu() if hasattr(cm, "cpu") else cm, dtype=np.float64)


def balanced_accuracy_of_confusion(cm) -> float:
    """medcls's one balanced accuracy: the mean recall over the classes present in the targets
    (scikit-learn's ``balanced_accuracy_score``). A class with no true images has no recall, so
    predicting it only lowers the recall of the classes it was taken from. ``cm``: ``(K, K)``
    counts, rows = true class (numpy or torch). NaN when there are no images."""
    cm = _counts(cm)
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    return float(np.mean(np.diag(cm)[present] / support[present]))


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (medcls's one definition,
    :func:`balanced_accuracy_of_confusion`; NaN without images). Shapes: ``(N,)``
    int, ``(N,)`` int."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    k = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    return balanced_accuracy_of_confusion(cm)


def predicted_absent_classes(cm, class_names: Sequence[str]) -> list[str]:
    """Classes that are predicted although no target has them (their columns hold counts
    while their rows are empty)."""
    cm = _counts(cm)
    return [
        c for c, row, col in zip(class_names, cm.sum(1), cm.sum(0), strict=True) if not row and col
    ]
