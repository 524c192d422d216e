"""Attention-map agreement with masks (IoU, pointing game) and patient-level test metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medcls.data.records import Record
from medcls.evaluation import EvalSettings, Predictions
from medcls.evaluation.report import group_level
from medcls.metrics.attention import AttentionMetrics, attention_iou, pointing_game


def left_half(b: int = 1, size: int = 8) -> torch.Tensor:
    m = torch.zeros(b, 1, size, size, dtype=torch.uint8)
    m[..., : size // 2] = 255
    return m


def test_iou_of_the_thresholded_map() -> None:
    att = torch.zeros(3, 1, 2, 2)
    att[0, 0, :, 0] = 1.0  # exactly the left half
    att[1] = 1.0  # everything: IoU 1/2
    att[2, 0, :, 1] = 1.0  # the right half: no overlap
    iou = attention_iou(att, left_half(3), threshold=0.5)
    torch.testing.assert_close(iou, torch.tensor([1.0, 0.5, 0.0]))


def test_pointing_game_hits_where_the_peak_lies_inside() -> None:
    att = torch.zeros(2, 1, 2, 2)
    att[0, 0, 1, 0] = 0.9  # peak bottom-left: inside the left half
    att[1, 0, 0, 1] = 0.9  # peak top-right: outside
    torch.testing.assert_close(pointing_game(att, left_half(2)), torch.tensor([1.0, 0.0]))


def test_attention_metrics_count_only_masked_samples() -> None:
    m = AttentionMetrics(num_classes=2, threshold=0.5)
    att = torch.zeros(2, 1, 2, 2)
    att[:, 0, :, 0] = 1.0  # both perfect on the left half …
    masks = left_half(2)
    masks[1] = 0  # … but the second has an empty mask, flagged as "no mask"
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    m.update(logits, att, torch.tensor([0, 0]), masks, torch.tensor([True, False]))
    out = m.compute()
    assert out["attention_iou"] == 1.0 and out["attention_pointing_game"] == 1.0
    assert out["attention_branch_accuracy"] == 0.5
    assert out["attention_mean"] == pytest.approx(0.5)
    m.reset()
    m.update(logits, att, torch.tensor([0, 1]))  # no masks at all: no IoU reported
    assert "attention_iou" not in m.compute()


def test_group_metrics_average_a_patients_slices() -> None:
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.9, 0.1]])
    labels = np.array([1, 1, 0, 0])

    # patient p1 (two slices, one wrong): mean [0.55, 0.45] → wrong; p2, p3: one slice each
    def group_metrics(probs, labels, groups, names, positive=1):  # the evaluation report's
        records = [
            Record(f"{i}.png", int(y), g)
            for i, (y, g) in enumerate(zip(labels, groups, strict=True))
        ]
        return group_level(Predictions(probs, labels, records, names, positive), EvalSettings(0))

    out = group_metrics(probs, labels, ["p1", "p1", "p2", "p3"], ["neg", "pos"], 1)
    assert out["group/accuracy"] == pytest.approx(1 / 3)
    assert out["group/sensitivity"] == 0.0 and out["group/specificity"] == 0.5
    assert group_metrics(probs, labels, [None] * 4, ["neg", "pos"]) == {}
