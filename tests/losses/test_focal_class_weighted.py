"""Class-weighted focal loss as the HAM10000 ablation uses it (what tests/losses/test_losses.py
does not cover yet): the relative down-weighting of easy examples, class weights as the α term,
and inverse weights from counts making every class count alike."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medcls.losses import FocalLoss, class_weights


def logits_for(p_true: float, k: int = 4) -> torch.Tensor:
    """One sample's logits ``(1, k)`` whose softmax gives class 0 probability ``p_true``."""
    rest = (1 - p_true) / (k - 1)
    return torch.log(torch.tensor([[p_true] + [rest] * (k - 1)]))


@pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
def test_focal_over_ce_is_the_modulating_factor(gamma: float) -> None:
    """Per example, focal / CE = (1 - p)^γ: an easy example keeps far less of its loss."""
    target = torch.tensor([0])
    ratios = {}
    for p in (0.1, 0.5, 0.9, 0.99):
        logits = logits_for(p)
        ratio = FocalLoss(gamma=gamma)(logits, target) / F.cross_entropy(logits, target)
        assert ratio.item() == pytest.approx((1 - p) ** gamma, rel=1e-4)
        ratios[p] = ratio.item()
    assert ratios[0.1] > ratios[0.5] > ratios[0.9] > ratios[0.99]
    # γ = 2: a 99%-sure example keeps 1/10,000 of its cross-entropy, a 10%-sure one 81%
    if gamma == 2.0:
        assert ratios[0.99] < 1e-3 < 0.8 < ratios[0.1]


def test_class_weighted_focal_by_hand() -> None:
    """``Σ α_y (1-p)^γ (-log p) / Σ α_y`` over the batch (the weighted mean, as weighted CE)."""
    logits = torch.cat([logits_for(0.8, 2), logits_for(0.3, 2)])
    target = torch.tensor([0, 1])  # p_true = 0.8 and 0.7
    alpha = torch.tensor([0.25, 1.75])
    terms = [0.25 * 0.2**2 * -math.log(0.8), 1.75 * 0.3**2 * -math.log(0.7)]
    expected = sum(terms) / (0.25 + 1.75)
    assert FocalLoss(gamma=2.0, weight=alpha)(logits, target).item() == pytest.approx(
        expected, rel=1e-5
    )


def test_inverse_weights_make_every_class_count_alike() -> None:
    """HAM10000-like counts: with inverse weights each class's total weight is the same."""
    counts = [262, 411, 879, 92, 890, 5364, 114]  # akiec bcc bkl df mel nv vasc (≈ 80 %)
    w = class_weights(counts, "inverse")
    totals = torch.tensor(counts, dtype=torch.float32) * w
    assert torch.allclose(totals, totals[0].expand_as(totals), rtol=1e-5)
    assert w.mean().item() == pytest.approx(1.0)
    assert w.argmax().item() == 3 and w.argmin().item() == 5  # df up, nv down


def test_weighted_loss_balances_a_skewed_batch() -> None:
    """A batch of 9 majority and 1 minority examples, all equally wrong: with inverse weights
    from those counts, the minority example carries half of the loss."""
    target = torch.tensor([0] * 9 + [1])
    logits = torch.zeros(10, 2)  # p = 0.5 for every example
    w = class_weights([9, 1], "inverse")
    per = FocalLoss(gamma=2.0, weight=w)
    full = per(logits, target)
    majority_only = (w[0] * 9 * 0.25 * math.log(2)) / (w[0] * 9 + w[1])
    assert majority_only / full.item() == pytest.approx(0.5, rel=1e-5)
