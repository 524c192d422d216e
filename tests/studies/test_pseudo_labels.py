"""Pseudo-label selection: only confident predictions, as hard labels (p >= 0.98 or <= 0.02),
the threshold read on the scale a label-smoothed model is trained towards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medcls.studies.pseudo_labels import effective_threshold, select_pseudo_labels


def binary(p_positive: list[float]) -> np.ndarray:
    p = np.array(p_positive)
    return np.stack([1 - p, p], axis=1)


def test_two_classes_keep_both_tails_only() -> None:
    probs = binary([0.99, 0.98, 0.979, 0.5, 0.021, 0.02, 0.001, 1.0, 0.0])
    index, labels = select_pseudo_labels(probs, threshold=0.98)
    assert index.tolist() == [0, 1, 5, 6, 7, 8]
    assert labels.tolist() == [1, 1, 0, 0, 1, 0]


def test_threshold_is_configurable() -> None:
    probs = binary([0.95, 0.9, 0.05, 0.5])
    assert select_pseudo_labels(probs, 0.9)[0].tolist() == [0, 1, 2]
    assert select_pseudo_labels(probs, 0.95)[0].tolist() == [0, 2]
    assert select_pseudo_labels(probs, 1.0)[0].tolist() == []


def test_float32_averages_at_the_threshold_still_count() -> None:
    # the mean of float32 softmaxes lands a hair off the exact value
    probs = binary([np.float32(0.98)]).astype(np.float32)
    assert select_pseudo_labels(probs, 0.98)[0].tolist() == [0]


def test_several_classes_use_the_top_class() -> None:
    probs = np.array([[0.01, 0.98, 0.01], [0.4, 0.3, 0.3], [0.0, 0.005, 0.995]])
    index, labels = select_pseudo_labels(probs, 0.98)
    assert index.tolist() == [0, 2] and labels.tolist() == [1, 2]


def test_nothing_confident_gives_empty_arrays() -> None:
    index, labels = select_pseudo_labels(binary([0.5, 0.6]), 0.98)
    assert index.shape == (0,) and labels.shape == (0,)
    index, labels = select_pseudo_labels(np.zeros((0, 2)), 0.98)
    assert index.shape == (0,) and labels.shape == (0,)


@pytest.mark.parametrize("threshold", [0.5, 0.3, 1.01])
def test_threshold_must_leave_one_class(threshold) -> None:
    with pytest.raises(ValueError, match="threshold"):
        select_pseudo_labels(binary([0.99]), threshold)


@pytest.mark.parametrize(
    "probs",
    [np.array([0.99, 0.01]), np.array([[1.0]]), np.array([[0.7, 0.7]]), np.array([[np.nan, 1]])],
)
def test_not_probabilities_is_an_error(probs) -> None:
    with pytest.raises(ValueError, match="probs"):
        select_pseudo_labels(probs, 0.98)


def smoothed_optimum(alpha: float, k: int, target: int = 0) -> np.ndarray:
    """The softmax a model trained with ``nn.CrossEntropyLoss(label_smoothing=alpha)`` ends at
    for a sample of class ``target``, found by minimising the loss over free logits."""
    logits = torch.zeros(1, k, requires_grad=True)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=alpha)
    opt = torch.optim.LBFGS([logits], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn(logits, torch.tensor([target]))
        loss.backward()
        return loss

    opt.step(closure)
    return torch.softmax(logits, 1).detach().numpy().astype(np.float64)


def test_a_smoothed_models_confident_outputs_pass_the_default_threshold() -> None:
    # glaucoma_cv: α=0.05, two classes; training aims at 0.975, below the raw 0.98
    best = smoothed_optimum(0.05, 2)
    assert best[0, 0] == pytest.approx(0.975, abs=1e-3)
    assert select_pseudo_labels(best)[0].tolist() == []  # raw scale: nothing ever qualifies
    assert select_pseudo_labels(best, label_smoothing=0.05)[0].tolist() == [0]
    probs = binary([0.97, 0.96, 0.95, 0.5, 0.045, 0.04, 0.03])
    index, labels = select_pseudo_labels(probs, label_smoothing=0.05)  # p >= 0.956 or <= 0.044
    assert index.tolist() == [0, 1, 5, 6] and labels.tolist() == [1, 1, 0, 0]


def top_class(p: float, k: int) -> np.ndarray:
    """One ``(1, k)`` row: the last class at ``p``, the rest sharing ``1 - p``."""
    return np.array([[(1 - p) / (k - 1)] * (k - 1) + [p]])


@pytest.mark.parametrize(("alpha", "k"), [(0.05, 2), (0.15, 2), (0.1, 3), (0.1, 7)])
def test_the_threshold_runs_from_the_smoothed_zero_to_the_smoothed_one(alpha, k) -> None:
    assert effective_threshold(0.0, alpha, k) == pytest.approx(alpha / k)
    target = effective_threshold(1.0, alpha, k)
    assert target == pytest.approx(1 - alpha * (k - 1) / k)
    # what training with this smoothing converges to is that "1"
    assert smoothed_optimum(alpha, k).max() == pytest.approx(target, abs=1e-3)
    assert select_pseudo_labels(top_class(target, k), 1.0, alpha)[0].tolist() == [0]
    assert select_pseudo_labels(top_class(target - 0.01, k), 1.0, alpha)[0].tolist() == []


def test_no_smoothing_leaves_the_threshold_alone() -> None:
    assert effective_threshold(0.98) == 0.98
    assert effective_threshold(0.98, 0.05, 2) == pytest.approx(0.956)
    probs = binary([0.97, 0.98])
    assert select_pseudo_labels(probs)[0].tolist() == [1]  # the default: 0.98, α = 0


@pytest.mark.parametrize("alpha", [-0.1, 1.0])
def test_impossible_smoothing_is_an_error(alpha) -> None:
    with pytest.raises(ValueError, match="label_smoothing"):
        select_pseudo_labels(binary([0.99]), 0.98, alpha)
