"""How well an attention map agrees with a region mask, and how its own branch classifies.

* IoU: the attention map, upsampled to the mask's size and thresholded, against the mask;
* pointing game (Zhang et al. 2016): a hit when the map's maximum lies inside the mask.

Only samples that have a mask count toward either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from medcls.metrics.balanced import balanced_accuracy_of_confusion


def _upsampled(attention: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(attention.float(), size=size, mode="bilinear", align_corners=False)


def _binary(mask: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` uint8 0/255 or float 0..1 → bool."""
    return mask > (127 if mask.dtype == torch.uint8 else 0.5)


def attention_iou(attention: torch.Tensor, mask: torch.Tensor, threshold: float) -> torch.Tensor:
    """``attention (B, 1, h, w)`` in [0, 1], ``mask (B, 1, H, W)`` → IoU per sample ``(B,)``
    (1 where both the thresholded map and the mask are empty)."""
    a = _upsampled(attention, tuple(mask.shape[-2:])) >= threshold
    m = _binary(mask)
    inter = (a & m).flatten(1).sum(1).float()
    union = (a | m).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def pointing_game(attention: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1.0 per sample ``(B,)`` where the upsampled map's maximum falls inside the mask."""
    a = _upsampled(attention, tuple(mask.shape[-2:])).flatten(1)
    peak = a.argmax(dim=1)
    return _binary(mask).flatten(1).gather(1, peak[:, None]).squeeze(1).float()


class AttentionMetrics(nn.Module):
    """Attention-branch accuracy / balanced accuracy, mean map value, and IoU / pointing game
    against masks.

    ``update(attention_logits (B, K), attention (B, 1, h, w), target (B,), mask, has_mask)``;
    ``compute()`` → ``{name: float}`` (IoU and pointing game only once a mask was seen).
    """

    def __init__(self, num_classes: int, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = float(threshold)
        self.num_classes = int(num_classes)
        self.branch_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.branch_confusion = MulticlassConfusionMatrix(num_classes)
        self.mean_map = MeanMetric()
        self.iou = MeanMetric()
        self.pointing = MeanMetric()

    def update(
        self,
        attention_logits: torch.Tensor,
        attention: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
        has_mask: torch.Tensor | None = None,
    ) -> None:
        # images of an unknown class (data.unknown=reject: label K) have no class the attention
        # branch could name; their maps still meet their masks below
        known = target < self.num_classes
        if known.any():
            self.branch_accuracy.update(attention_logits[known].float(), target[known])
            self.branch_confusion.update(attention_logits[known].float(), target[known])
        self.mean_map.update(attention.float().mean(dim=(1, 2, 3)))
        if mask is None:
            return
        keep = (
            has_mask.bool() if has_mask is not None else torch.ones_like(target, dtype=torch.bool)
        )
        if keep.any():
            self.iou.update(attention_iou(attention[keep], mask[keep], self.threshold))
            self.pointing.update(pointing_game(attention[keep], mask[keep]))

    def compute(self) -> dict[str, float]:
        out = {
            "attention_branch_accuracy": float(self.branch_accuracy.compute()),
            "attention_branch_balanced_accuracy": balanced_accuracy_of_confusion(
                self.branch_confusion.compute()
            ),
            "attention_mean": float(self.mean_map.compute()),
        }
        if float(self.iou.weight) > 0:
            out["attention_iou"] = float(self.iou.compute())
            out["attention_pointing_game"] = float(self.pointing.compute())
        return out

    def reset(self) -> None:
        for m in (self.branch_accuracy, self.branch_confusion, self.mean_map, self.iou):
            m.reset()
        self.pointing.reset()
