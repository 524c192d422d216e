"""Focal loss, class weights and the loss factory (fed by the real conf/loss configs)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from medcls.losses import FocalLoss, class_weights, create_loss


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 4, generator=g) * 3, torch.randint(0, 4, (32,), generator=g)


def test_focal_gamma0_is_cross_entropy(batch) -> None:
    logits, target = batch
    assert FocalLoss(gamma=0.0)(logits, target) == pytest.approx(
        F.cross_entropy(logits, target).item(), rel=1e-6
    )


def test_focal_gamma0_weighted_is_weighted_cross_entropy(batch) -> None:
    logits, target = batch
    w = torch.tensor([0.5, 1.0, 2.0, 4.0])
    assert FocalLoss(gamma=0.0, weight=w)(logits, target) == pytest.approx(
        F.cross_entropy(logits, target, weight=w).item(), rel=1e-6
    )


def test_focal_gamma0_label_smoothing_is_smoothed_cross_entropy(batch) -> None:
    logits, target = batch
    assert FocalLoss(gamma=0.0, label_smoothing=0.1)(logits, target) == pytest.approx(
        F.cross_entropy(logits, target, label_smoothing=0.1).item(), rel=1e-6
    )


def test_focal_value_by_hand() -> None:
    logits = torch.tensor([[math.log(0.8), math.log(0.2)], [math.log(0.4), math.log(0.6)]])
    target = torch.tensor([0, 0])
    # -(1-p)^2 log p for p = 0.8 and p = 0.4, averaged
    expected = (0.2**2 * -math.log(0.8) + 0.6**2 * -math.log(0.4)) / 2
    assert FocalLoss(gamma=2.0)(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_focal_down_weights_easy_examples(batch) -> None:
    logits, target = batch
    assert FocalLoss(gamma=2.0)(logits, target) < F.cross_entropy(logits, target)
    easy = torch.tensor([[10.0, -10.0]])
    assert FocalLoss(gamma=2.0)(easy, torch.tensor([0])).item() < 1e-10


def test_focal_gradients_flow(batch) -> None:
    logits, target = batch
    logits = logits.clone().requires_grad_(True)
    FocalLoss(gamma=2.0)(logits, target).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_class_weights_inverse() -> None:
    w = class_weights([10, 20, 70], "inverse")
    raw = torch.tensor([1 / 10, 1 / 20, 1 / 70])
    assert torch.allclose(w, raw / raw.mean())
    assert w.mean().item() == pytest.approx(1.0)
    assert w[0] / w[1] == pytest.approx(2.0)


def test_class_weights_inverse_sqrt() -> None:
    w = class_weights([4, 16, 64], "inverse_sqrt")
    assert torch.allclose(w, torch.tensor([4.0, 2.0, 1.0]) / (7 / 3))
    assert w[0] / w[2] == pytest.approx(4.0)


def test_class_weights_explicit_and_errors() -> None:
    assert torch.allclose(class_weights([5, 5], [1.0, 3.0]), torch.tensor([0.5, 1.5]))
    assert torch.isfinite(class_weights([0, 10], "inverse")).all()  # empty class: no inf
    with pytest.raises(ValueError, match="2 values for 3 classes"):
        class_weights([1, 2, 3], [1.0, 2.0])
    with pytest.raises(ValueError, match="inverse"):
        class_weights([1, 2], "balanced")


def _loss_cfg(option: str, **over):
    cfg = OmegaConf.load(f"{_conf()}/loss/{option}.yaml")
    return OmegaConf.merge(cfg, over)


def _conf() -> str:
    from medcls.config import CONFIG_DIR

    return CONFIG_DIR


def test_create_loss_from_configs(batch) -> None:
    logits, target = batch
    counts = [10, 20, 30, 40]
    ce = create_loss(_loss_cfg("ce"), counts)
    assert isinstance(ce, nn.CrossEntropyLoss) and ce.weight is None
    assert ce(logits, target).item() == pytest.approx(F.cross_entropy(logits, target).item())

    ls = create_loss(_loss_cfg("label_smoothing"), counts)
    assert isinstance(ls, nn.CrossEntropyLoss) and ls.label_smoothing == 0.1

    cw = create_loss(_loss_cfg("class_weighted"), counts)
    assert torch.allclose(cw.weight, class_weights(counts, "inverse"))

    focal = create_loss(_loss_cfg("focal"), counts)
    assert isinstance(focal, FocalLoss) and focal.gamma == 2.0 and focal.weight is None

    focal_w = create_loss(_loss_cfg("focal", class_weights="inverse_sqrt"), counts)
    assert torch.allclose(focal_w.weight, class_weights(counts, "inverse_sqrt"))
    assert "weight" in focal_w.state_dict()  # moves with the module (GPU) and is checkpointed

    with pytest.raises(ValueError, match="loss.name"):
        create_loss(_loss_cfg("ce", name="hinge"), counts)
