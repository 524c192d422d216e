"""recipe=finetune's pieces: the backbone at its own learning rate, BatchNorm kept."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from medcls.models import create_model
from medcls.tasks.classification import ClassificationTask
from medcls.tasks.schedules import PlannedOneCycleLR


def task(**kw) -> ClassificationTask:
    model = create_model("resnet10t", num_classes=2, image_size=32)
    opt = functools.partial(torch.optim.AdamW, lr=2e-3)
    return ClassificationTask(model, ["a", "b"], [0.5] * 3, [0.25] * 3, optimizer=opt, **kw)


def test_backbone_and_head_get_their_own_learning_rates() -> None:
    t = task(backbone_lr_factor=0.1)
    groups = t.configure_optimizers().param_groups
    assert [g["lr"] for g in groups] == pytest.approx([2e-4, 2e-3])
    backbone = {id(p) for p in t.model.backbone.parameters()}
    assert {id(p) for p in groups[0]["params"]} == backbone
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in t.model.head.parameters()}
    # one group, the optimizer's LR, without the option (negative control)
    (only,) = task().configure_optimizers().param_groups
    assert only["lr"] == pytest.approx(2e-3)


def test_onecycle_peaks_scale_with_the_groups() -> None:
    t = task(backbone_lr_factor=0.25)
    t.scheduler_factory = functools.partial(PlannedOneCycleLR, max_lr=1e-2, pct_start=0.5)
    t.trainer = type("T", (), {"estimated_stepping_batches": 10})()  # what configure reads
    sched = t.configure_optimizers()["lr_scheduler"]["scheduler"]
    peaks = [g["max_lr"] for g in sched.optimizer.param_groups]
    assert peaks == pytest.approx([2.5e-3, 1e-2])


def test_freeze_bn_keeps_the_backbones_running_statistics() -> None:
    t = task(freeze_bn=True).train()
    bns = [m for m in t.model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    before = [m.running_mean.clone() for m in bns]
    t.model(torch.randn(4, 3, 32, 32) * 3 + 1)
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, bns, strict=True))
    plain = task().train()  # negative control: statistics move
    bn = next(m for m in plain.model.backbone.modules() if isinstance(m, nn.BatchNorm2d))
    old = bn.running_mean.clone()
    plain.model(torch.randn(4, 3, 32, 32) * 3 + 1)
    assert not torch.equal(old, bn.running_mean)
