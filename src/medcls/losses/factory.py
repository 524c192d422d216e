"""``create_loss``: a ``conf/loss`` config + training class counts → loss module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from medcls.losses.abn import ABNLoss, ABNMapLoss, ScheduledABNLoss
from medcls.losses.class_weights import class_weights
from medcls.losses.focal import FocalLoss
from medcls.losses.schedules import WeightSchedule


def create_loss(cfg: Any, class_counts: Sequence[int]) -> nn.Module:
    """``cfg.name``: ``ce``, ``focal`` or an ABN loss (``abn``, ``abn_map``, ``abn_scheduled``,
    for ``task=abn``); ``class_weights``: null, inverse, inverse_sqrt or a list."""
    weights = class_weights(class_counts, cfg.class_weights) if cfg.get("class_weights") else None
    smoothing = float(cfg.get("label_smoothing", 0.0))
    if cfg.name == "ce":
        return nn.CrossEntropyLoss(weight=weights, label_smoothing=smoothing)
    if cfg.name == "focal":
        return FocalLoss(gamma=float(cfg.gamma), weight=weights, label_smoothing=smoothing)
    if cfg.name == "abn":
        return ABNLoss(weight=weights, label_smoothing=smoothing)
    if cfg.name == "abn_map":
        return ABNMapLoss(gamma=float(cfg.gamma), weight=weights, label_smoothing=smoothing)
    if cfg.name == "abn_scheduled":
        a = cfg.alpha
        schedule = WeightSchedule(str(a.schedule), float(a.start), float(a.end))
        return ScheduledABNLoss(schedule, weight=weights, label_smoothing=smoothing)
    raise ValueError(
        f"loss.name={cfg.name!r}: use ce, focal, or (task=abn) abn, abn_map, abn_scheduled"
    )
