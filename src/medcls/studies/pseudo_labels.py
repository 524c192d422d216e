"""Which unlabelled images become pseudo-labelled training images: a pure function of the
predicted probabilities (no training, no files).

The threshold is read on the scale the model was trained towards. Label smoothing α over K
classes trains the true class towards ``1 - α(K-1)/K`` and every other class towards ``α/K``,
so a smoothed model is never "98 % sure" (α=0.05, K=2: it aims at 0.975). A threshold ``t``
therefore means ``t`` of the way from the smoothed 0 to the smoothed 1:
``α/K + t·(1 - α)`` (:func:`effective_threshold`); without smoothing that is ``t`` itself.
"""

from __future__ import annotations

import numpy as np


def effective_threshold(threshold: float, label_smoothing: float = 0.0, k: int = 2) -> float:
    """``threshold`` mapped onto the probabilities a model trained with ``label_smoothing`` α
    over ``k`` classes reaches: ``α/k + threshold·(1 - α)``.

    E.g. 0.98 with α=0.05, k=2 → 0.956 (p >= 0.956 or <= 0.044), as 0.98 is to plain softmax
    outputs; α=0 → ``threshold`` unchanged.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing={label_smoothing}: must be in [0, 1)")
    if k < 2:
        raise ValueError(f"k={k}: pseudo-labels need at least 2 classes")
    return label_smoothing / k + threshold * (1.0 - label_smoothing)


def select_pseudo_labels(
    probs: np.ndarray, threshold: float = 0.98, label_smoothing: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Confident predictions as hard labels.

    An image is kept when its top class probability is at least ``threshold`` (on the
    smoothing-corrected scale, see :func:`effective_threshold`); its label is that class. For
    two classes and no smoothing this is the glaucoma study's rule: ``p(positive) >= 0.98`` →
    positive, ``p(positive) <= 0.02`` → negative, everything in between left out.

    Args:
        probs: ``(N, K)`` class probabilities (rows sum to 1), e.g. averaged fold models.
        threshold: in ``(0.5, 1]``, so at most one class can qualify.
        label_smoothing: the α the model was trained with (``loss.label_smoothing``).

    Returns:
        ``index (M,)`` rows of ``probs`` kept (ascending) and ``labels (M,)`` their classes.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must be (N, K) with K >= 2 classes, got shape {probs.shape}")
    if not 0.5 < threshold <= 1.0:
        raise ValueError(
            f"pseudo-label threshold={threshold}: must be in (0.5, 1] (0.98 keeps p >= 0.98 "
            "or <= 0.02 for two classes)"
        )
    if probs.size and (
        not np.isfinite(probs).all() or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)
    ):
        raise ValueError("probs must be finite and each row must sum to 1 (softmax outputs)")
    cut = effective_threshold(threshold, label_smoothing, probs.shape[1])
    top = probs.max(axis=1) if probs.size else np.zeros(0)
    # a tolerance: an average of float32 softmaxes can land a hair below an exact threshold
    index = np.flatnonzero(top >= cut - 1e-9)
    return index, probs[index].argmax(axis=1)
