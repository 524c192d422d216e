"""Attention Branch Network losses, with and without mask supervision of the attention map.

With ``L_att``, ``L_per`` the cross-entropies of the attention and perception branches and
``L_map`` the mean squared error between the attention map ``M(x)`` and the region mask
``M'(x)`` (resized to the map):

* :class:`ABNLoss` (``loss=abn``): ``L_att + L_per`` (Fukui et al. 2019, no mask);
* :class:`ABNMapLoss` (``loss=abn_map``): ``L_att + L_per + γ·L_map`` (Funatsu et al. eq. 3,
  after Mitsuhara et al.);
* :class:`ScheduledABNLoss` (``loss=abn_scheduled``): ``(1−α)·L_per + α·(L_map + L_att)`` with α
  from a per-epoch :class:`~medcls.losses.schedules.WeightSchedule` (Funatsu et al. eqs. 4–5).

Samples without a mask (``has_mask`` false) add nothing to ``L_map``: it is the mean over the
samples that have one, and 0 when none has.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from medcls.losses.schedules import WeightSchedule
from medcls.models.abn import ABNOutput


class ABNLossTerms(NamedTuple):
    """Scalars: the weighted ``total`` to minimise and its parts (unweighted)."""

    total: torch.Tensor
    perception: torch.Tensor
    attention: torch.Tensor
    map: torch.Tensor


def mask_to_map(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Region mask ``(B, 1, H, W)`` (uint8 0/255, or float 0..1) → ``(B, 1, h, w)`` float in
    [0, 1]: the share of each attention cell the region covers (area averaging)."""
    m = mask.float()
    if mask.dtype == torch.uint8:
        m = m / 255.0
    return F.adaptive_avg_pool2d(m, size)


def masked_map_mse(
    attention: torch.Tensor, mask: torch.Tensor, has_mask: torch.Tensor
) -> torch.Tensor:
    """Mean squared error of ``attention (B, 1, h, w)`` against ``mask (B, 1, H, W)``, averaged
    over the samples whose ``has_mask (B,)`` is true (0 when none is)."""
    target = mask_to_map(mask, tuple(attention.shape[-2:]))
    per_sample = (attention.float() - target).pow(2).mean(dim=(1, 2, 3))
    w = has_mask.to(per_sample.dtype)
    return (per_sample * w).sum() / w.sum().clamp(min=1.0)


class ABNLoss(nn.Module):
    """``L_att + L_per``; the map error is computed (for logging) but not trained on.

    Args:
        weight: optional ``(K,)`` class weights for both cross-entropies.
        label_smoothing: as in ``nn.CrossEntropyLoss``.

    ``forward(out, target, mask=None, has_mask=None)``: ``out`` an :class:`ABNOutput`,
    ``target (B,)``, ``mask (B, 1, H, W)``, ``has_mask (B,)`` → :class:`ABNLossTerms`.
    """

    uses_mask = False

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.ce = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)

    def set_epoch(self, epoch: int, max_epochs: int | None) -> float | None:
        """Called at each training epoch's start; returns the epoch's α (None: no schedule)."""
        return None

    def combine(self, per: torch.Tensor, att: torch.Tensor, map_: torch.Tensor) -> torch.Tensor:
        return att + per

    def forward(
        self,
        out: ABNOutput,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
        has_mask: torch.Tensor | None = None,
    ) -> ABNLossTerms:
        per = self.ce(out.logits.float(), target)
        att = self.ce(out.attention_logits.float(), target)
        if mask is None:
            map_ = out.attention.new_zeros((), dtype=torch.float32)
        else:
            if has_mask is None:
                has_mask = torch.ones(len(mask), dtype=torch.bool, device=mask.device)
            map_ = masked_map_mse(out.attention, mask, has_mask)
        return ABNLossTerms(self.combine(per, att, map_), per, att, map_)


class ABNMapLoss(ABNLoss):
    """``L_att + L_per + γ·L_map``: the mask-supervised ABN with a fixed weight (eq. 3)."""

    uses_mask = True

    def __init__(self, gamma: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gamma = float(gamma)

    def combine(self, per: torch.Tensor, att: torch.Tensor, map_: torch.Tensor) -> torch.Tensor:
        return att + per + self.gamma * map_


class ScheduledABNLoss(ABNLoss):
    """``(1−α)·L_per + α·(L_map + L_att)`` with α set per epoch by ``schedule`` (eqs. 4–5):
    early epochs weight the attention map, later ones the classification."""

    uses_mask = True

    def __init__(self, schedule: WeightSchedule | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.schedule = schedule or WeightSchedule("step", 0.9, 0.1)
        self.alpha = float(self.schedule.start)

    def set_epoch(self, epoch: int, max_epochs: int | None) -> float:
        self.alpha = self.schedule(epoch, max_epochs)
        return self.alpha

    def combine(self, per: torch.Tensor, att: torch.Tensor, map_: torch.Tensor) -> torch.Tensor:
        return (1 - self.alpha) * per + self.alpha * (map_ + att)
