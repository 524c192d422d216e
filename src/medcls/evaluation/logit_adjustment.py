"""Post-hoc logit adjustment by the training prior (Menon et al., ICLR 2021).

A classifier trained on imbalanced data learns ``p(y | x) ∝ p(x | y) · π_y``: its argmax
favours the frequent classes. Subtracting ``τ · log π`` from the logits (``π``: the training
partition's class frequencies) removes that pull; ``τ = 1`` is the Bayes-optimal rule for the
balanced error, and ``τ`` chosen on validation adapts it to a model that is not calibrated.
The adjustment is a bias on the logits (``ClassificationTask.logit_bias``), so it travels in
the checkpoint's weights to every consumer.
"""

from __future__ import annotations

import numpy as np

from medcls.errors import DataError
from medcls.evaluation.probability import safe_log, view_probs
from medcls.metrics.balanced import balanced_accuracy

TAU_GRID = tuple(np.round(np.arange(0.0, 2.0001, 0.1), 2))
FALLBACK_TAU = 1.0  # `tuned` without validation images: Menon et al.'s balanced-error rule


def parse_logit_adjustment(value) -> tuple[str, float | None]:
    """``"tuned"`` → (tuned, None); ``"none"`` → (fixed, 0.0); ``"0.8"`` → (fixed, 0.8)."""
    text = str(value).strip().lower()
    if text == "tuned":
        return "tuned", None
    if text in ("none", "null", "false", "0"):
        return "fixed", 0.0
    try:
        tau = float(text)
    except ValueError:
        tau = -1.0
    if not 0 <= tau <= 10:
        raise DataError(
            f"eval.logit_adjustment={value!r}: use tuned (τ chosen on validation), none, or a "
            "number τ in [0, 10] (1: subtract the log training prior)."
        )
    return "fixed", tau


def log_prior(class_counts) -> np.ndarray:
    """``log π (K,)`` of the training class counts (a class without images counts as ½)."""
    counts = np.maximum(np.asarray(class_counts, np.float64), 0.5)
    return np.log(counts / counts.sum())


def adjust(probs: np.ndarray, logp_prior: np.ndarray, tau: float) -> np.ndarray:
    """``softmax(log p − τ · log π)`` of one view's probabilities: the same as adjusting its
    logits, since ``log p`` is the logits less a per-row constant. ``probs (N, K)`` → ``(N, K)``.
    (With several test-time views the bias enters each view: :func:`adjusted_probs`.)"""
    return adjusted_probs(safe_log(probs), logp_prior, tau)


def adjusted_probs(view_logits: np.ndarray, logp_prior: np.ndarray, tau: float) -> np.ndarray:
    """The model's probability (:mod:`medcls.evaluation.probability`) with the bias
    ``-τ · log π``: ``view_logits (N, V, K)`` or ``(N, K)`` → ``(N, K)``."""
    return view_probs(view_logits, -tau * np.asarray(logp_prior))


def choose_tau(view_logits: np.ndarray, labels: np.ndarray, logp_prior: np.ndarray) -> float:
    """The τ of :data:`TAU_GRID` with the best validation balanced accuracy of the model's
    probability with bias ``-τ · log π`` (``view_logits (N, V, K)`` or ``(N, K)``: the network's
    own logits, without any bias, so fitting twice gives the same τ); ties go to the τ nearest
    1 (the rule with a reason), so a flat curve does not pick an extreme."""
    labels = np.asarray(labels)
    scores = [
        balanced_accuracy(labels, adjusted_probs(view_logits, logp_prior, t).argmax(1))
        for t in TAU_GRID
    ]
    best = max(scores)
    tied = [t for t, s in zip(TAU_GRID, scores, strict=True) if s >= best - 1e-12]
    return float(min(tied, key=lambda t: abs(t - 1.0)))


def fit_tau(
    setting: str, logp_prior: np.ndarray, view_logits: np.ndarray | None, labels
) -> tuple[float, str]:
    """``(τ, how)`` for ``eval.logit_adjustment=setting``: tuned on the validation logits
    ``(N, V, K)`` (no bias) and ``labels (N,)`` with the training prior ``logp_prior``
    ``(K,)`` or ``(N, K)`` (one per image: pooled folds), else the fallback τ = 1."""
    kind, tau = parse_logit_adjustment(setting)
    if kind == "fixed":
        return float(tau), "set"
    if view_logits is None or labels is None or not len(labels):
        return FALLBACK_TAU, "no validation images: τ = 1"
    return choose_tau(view_logits, labels, logp_prior), "tuned on validation"


def fit_logit_adjustment(
    setting: str, class_counts, view_logits: np.ndarray | None, labels: np.ndarray | None
) -> tuple[float, str]:
    """:func:`fit_tau` with the prior of the training ``class_counts (K,)``."""
    return fit_tau(setting, log_prior(class_counts), view_logits, labels)
