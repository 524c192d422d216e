"""Group-level (patient / lesion) aggregation of per-image predictions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def group_mean(
    probs: np.ndarray, labels: np.ndarray, groups: Sequence[str | None]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Average the softmax over each group's images.

    Shapes: ``probs (N, K)``, ``labels (N,)`` → ``probs_g (G, K)``, ``labels_g (G,)``, ids ``[G]``.
    A group's label is its most frequent image label; an image without a group is its own group.
    """
    keys = np.array(
        [g if g is not None else f"__img{i}" for i, g in enumerate(groups)], dtype=object
    )
    uniq, inverse = np.unique(keys, return_inverse=True)
    sums = np.zeros((len(uniq), probs.shape[1]))
    np.add.at(sums, inverse, probs)
    counts = np.bincount(inverse, minlength=len(uniq))[:, None]
    votes = np.zeros((len(uniq), probs.shape[1]), dtype=np.int64)
    np.add.at(votes, (inverse, labels), 1)
    return sums / counts, votes.argmax(axis=1), [str(u) for u in uniq]
