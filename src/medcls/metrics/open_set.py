"""Test images of classes the model never saw (ISIC 2019's ``UNK``), scored as a rejected class.

A K-class model cannot predict an unknown class; with a reject option it answers "unknown"
whenever it is unsure, i.e. its highest probability is below a threshold. The ``(B, K)``
probabilities become ``(B, K+1)`` ones whose argmax is exactly that decision, so every metric,
confusion matrix and prediction file treats "unknown" as one more class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RejectUnknown:
    """Reject option by maximum softmax probability.

    Args:
        name: the extra class's name (``UNK``).
        threshold: predict ``name`` when ``max_k p_k < threshold``; in ``[0, 1)``.
    """

    name: str = "UNK"
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.threshold < 1:
            raise ValueError(f"data.unknown_threshold={self.threshold}: use a value in [0, 1)")

    def extend(self, probs: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` probabilities → ``(B, K+1)``, rows summing to 1.

        The unknown score ``s = t·(1 − m) / (1 − t)`` (``m`` = max probability, ``t`` =
        threshold) exceeds ``m`` exactly when ``m < t``, and falls as the model grows surer, so
        it also ranks images for the unknown class's AUROC.
        """
        top = probs.max(dim=1, keepdim=True).values
        score = self.threshold * (1 - top) / (1 - self.threshold)
        return torch.cat([probs, score], dim=1) / (1 + score)
