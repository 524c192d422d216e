"""Test-time augmentation views of uint8 image batches ``(B, 3, H, W)``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from medcls.errors import DataError

View = Callable[[torch.Tensor], torch.Tensor]

VIEWS: dict[str, View] = {
    "identity": lambda x: x,
    "hflip": lambda x: x.flip(-1),
    "vflip": lambda x: x.flip(-2),
    "rot90": lambda x: torch.rot90(x, 1, dims=(-2, -1)),
    "rot180": lambda x: torch.rot90(x, 2, dims=(-2, -1)),
    "rot270": lambda x: torch.rot90(x, 3, dims=(-2, -1)),
}


def tta_views(names: Sequence[str]) -> list[View]:
    """The original image plus one view per name (``hflip``, ``vflip``, ``rot90`` …)."""
    unknown = [n for n in names if n not in VIEWS]
    if unknown:
        raise DataError(
            f"tta={list(names)}: unknown view(s) {unknown}; choose from {sorted(VIEWS)}"
        )
    return [VIEWS["identity"]] + [VIEWS[n] for n in names if n != "identity"]


def mean_view_log_proba(
    forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, views: Sequence[View]
) -> torch.Tensor:
    """``log`` of the mean over ``views`` of ``softmax(forward(view(images)))``: ``(B, K)``
    float32, by ``logsumexp`` so that small probabilities survive. ``forward``: uint8
    ``(B, 3, H, W)`` → logits ``(B, K)`` (a task's includes its logit bias)."""
    logps = [F.log_softmax(forward(v(images)).float(), dim=1) for v in views]
    return torch.logsumexp(torch.stack(logps), dim=0) - math.log(len(logps))
