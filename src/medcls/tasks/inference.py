"""Batch inference outside the Trainer: one or several models, optional test-time augmentation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from medcls.tasks.tta import tta_views


@torch.no_grad()
def predict_probs(
    models: Sequence[nn.Module], loader: DataLoader, tta: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    """Mean softmax over ``models`` × TTA views.

    Each model maps uint8 ``(B, 3, H, W)`` → logits ``(B, K)`` (a ``ClassificationTask``).
    Returns ``probs (N, K)``, ``labels (N,)``, ``index (N,)`` (record positions).
    """
    views = tta_views(tta)
    was_training = [m.training for m in models]
    for m in models:
        m.eval()
    probs, labels, index = [], [], []
    for batch in loader:
        x = batch["image"]
        p = sum(F.softmax(m(view(x)).float(), dim=1) for m in models for view in views)
        probs.append((p / (len(models) * len(views))).cpu().numpy())
        labels.append(batch["label"].cpu().numpy())
        index.append(batch["index"].cpu().numpy())
    for m, t in zip(models, was_training, strict=True):
        m.train(t)
    if not probs:
        return {"probs": np.zeros((0, 0)), "labels": np.zeros(0, int), "index": np.zeros(0, int)}
    return {
        "probs": np.concatenate(probs),
        "labels": np.concatenate(labels),
        "index": np.concatenate(index),
    }
