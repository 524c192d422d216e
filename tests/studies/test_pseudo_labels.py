"""Pseudo-label selection: only confident predictions, as hard labels (p >= 0.98 or <= 0.02)."""

from __future__ import annotations

import numpy as np
import pytest

from medcls.studies.pseudo_labels import select_pseudo_labels


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
