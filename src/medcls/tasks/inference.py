"""Batch inference outside the Trainer: one or several models, each with its test-time views."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from medcls.tasks.tta import View, mean_view_log_proba, tta_views


@contextlib.contextmanager
def _evaluating(models: Sequence[nn.Module]) -> Iterator[None]:
    """Models in eval mode, restored afterwards."""
    training = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        yield
    finally:
        for m, t in zip(models, training, strict=True):
            m.train(t)


def views_of(model: nn.Module, tta: Sequence[str] | None) -> list[View]:
    """``tta`` when given, else the model's own views (a task's, from its checkpoint), else
    the image as it is."""
    if tta is not None:
        return tta_views(tta)
    return list(getattr(model, "tta", None) or tta_views(()))


def _empty() -> dict[str, np.ndarray]:
    return {"probs": np.zeros((0, 0)), "labels": np.zeros(0, int), "index": np.zeros(0, int)}


@torch.no_grad()
def predict_probs(
    models: Sequence[nn.Module], loader: DataLoader, tta: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """The mean over ``models`` of each model's probability (``ClassificationTask.log_proba``:
    the mean softmax over its own test-time views, which a checkpoint records; ``tta`` replaces
    them). Batches carry uint8 ``(B, 3, H, W)`` images.

    Returns ``probs (N, K)`` float64, ``labels (N,)``, ``index (N,)`` (record positions).
    """
    views = [views_of(m, tta) for m in models]
    probs, labels, index = [], [], []
    with _evaluating(models):
        for batch in loader:
            x = batch["image"]
            p = sum(
                mean_view_log_proba(m, x, v).double().exp()
                for m, v in zip(models, views, strict=True)
            ) / len(models)
            probs.append(p.cpu().numpy())
            labels.append(batch["label"].cpu().numpy())
            index.append(batch["index"].cpu().numpy())
    if not probs:
        return _empty()
    return {
        "probs": np.concatenate(probs),
        "labels": np.concatenate(labels),
        "index": np.concatenate(index),
    }


@torch.no_grad()
def predict_view_logits(task: nn.Module, loader: DataLoader) -> dict[str, np.ndarray]:
    """The network's own logits per test-time view, before any logit bias: ``logits (N, V, K)``
    float64, ``labels (N,)``, ``index (N,)``. What post-hoc fitting starts from."""
    logits, labels, index = [], [], []
    with _evaluating([task]):
        for batch in loader:
            logits.append(task.view_logits(batch["image"]).double().cpu().numpy())
            labels.append(batch["label"].cpu().numpy())
            index.append(batch["index"].cpu().numpy())
    if not logits:
        return {
            "logits": np.zeros((0, 1, 0)),
            **{k: v for k, v in _empty().items() if k != "probs"},
        }
    return {
        "logits": np.concatenate(logits),
        "labels": np.concatenate(labels),
        "index": np.concatenate(index),
    }
