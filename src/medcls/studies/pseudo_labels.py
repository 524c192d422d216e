"""Which unlabelled images become pseudo-labelled training images: a pure function of the
predicted probabilities (no training, no files)."""

from __future__ import annotations

import numpy as np


def select_pseudo_labels(
    probs: np.ndarray, threshold: float = 0.98
) -> tuple[np.ndarray, np.ndarray]:
    """Confident predictions as hard labels.

    An image is kept when its top class probability is at least ``threshold``; its label is
    that class. For two classes this is the glaucoma study's rule: ``p(positive) >= 0.98``
    → positive, ``p(positive) <= 0.02`` → negative, everything in between left out.

    Args:
        probs: ``(N, K)`` class probabilities (rows sum to 1), e.g. averaged fold models.
        threshold: in ``(0.5, 1]``, so at most one class can qualify.

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
    top = probs.max(axis=1) if probs.size else np.zeros(0)
    # a tolerance: an average of float32 softmaxes can land a hair below an exact threshold
    index = np.flatnonzero(top >= threshold - 1e-9)
    return index, probs[index].argmax(axis=1)
