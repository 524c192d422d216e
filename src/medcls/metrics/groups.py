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


def group_metrics(
    probs: np.ndarray,
    labels: np.ndarray,
    groups: Sequence[str | None],
    class_names: Sequence[str],
    positive_class: int = 1,
) -> dict[str, float]:
    """The full metric set of the group-mean softmax (:func:`group_mean`), keys ``group/<name>``;
    empty when no image has a group (every image would be its own "patient")."""
    if not any(g is not None for g in groups):
        return {}
    from medcls.metrics.classification import compute_metrics  # torch only when needed

    gp, gl, _ = group_mean(probs, labels, groups)
    return {
        f"group/{k}": v for k, v in compute_metrics(gp, gl, class_names, positive_class)[0].items()
    }
