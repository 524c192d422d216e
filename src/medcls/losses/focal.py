"""Focal loss (Lin et al. 2017) for multi-class logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """``-α_y (1 - p_y)^γ log p_y``, averaged over the batch.

    Args:
        gamma: focusing parameter; 0 gives (weighted) cross-entropy.
        weight: optional ``(K,)`` class weights (the α of the paper).
        label_smoothing: as in ``nn.CrossEntropyLoss``.

    Shapes: logits ``(B, K)``, target ``(B,)`` int64 → scalar.
    """

    def __init__(
        self, gamma: float = 2.0, weight: torch.Tensor | None = None, label_smoothing: float = 0.0
    ) -> None:
        super().__init__()
        self.gamma, self.label_smoothing = gamma, label_smoothing
        self.register_buffer("weight", weight if weight is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1)
        ce = F.nll_loss(logp, target, reduction="none")
        if self.label_smoothing > 0:
            ce = (1 - self.label_smoothing) * ce - self.label_smoothing * logp.mean(dim=1)
        pt = logp.gather(1, target[:, None]).squeeze(1).exp()
        loss = (1 - pt).pow(self.gamma) * ce
        if self.weight is not None:
            w = self.weight[target]
            return (w * loss).sum() / w.sum()
        return loss.mean()
