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


def _gather(models, loader: DataLoader, score, key: str) -> dict[str, np.ndarray]:
    """``score(images)`` of every batch as ``key`` (float64), with ``labels (N,)`` and
    ``index (N,)``, the models in eval mode."""
    out, labels, index = [], [], []
    with _evaluating(models):
        for batch in loader:
            out.append(score(batch["image"]).double().cpu().numpy())
            labels.append(batch["label"].cpu().numpy())
            index.append(batch["index"].cpu().numpy())
    if not out:
        return {key: np.zeros((0, 0)), "labels": np.zeros(0, int), "index": np.zeros(0, int)}
    return {
        key: np.concatenate(out),
        "labels": np.concatenate(labels),
        "index": np.concatenate(index),
    }


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

    def mean_prob(x: torch.Tensor) -> torch.Tensor:
        each = [
            mean_view_log_proba(m, x, v).double().exp() for m, v in zip(models, views, strict=True)
        ]
        return sum(each) / len(models)

    return _gather(models, loader, mean_prob, "probs")


@torch.no_grad()
def predict_view_logits(task: nn.Module, loader: DataLoader) -> dict[str, np.ndarray]:
    """The network's own logits per test-time view, before any logit bias: ``logits (N, V, K)``
    float64, ``labels (N,)``, ``index (N,)``. What post-hoc fitting starts from."""
    return _gather([task], loader, task.view_logits, "logits")
