"""HeadFirstFinetuning: the backbone is frozen (and its BatchNorm statistics fixed) for the
first epochs, then trains; the learning rate drops by the configured factor at the unfreeze and
the schedule continues from there; a resumed run does not drop it twice."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from medcls.callbacks import HeadFirstFinetuning
from medcls.errors import DataError
from medcls.models import create_model
from medcls.tasks import ClassificationTask

LR, EPOCHS = 0.1, 4


class RandomImages(Dataset):
    def __init__(self, n: int = 16, size: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
        self.labels = torch.arange(n) % 2

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": self.labels[i], "index": torch.tensor(i)}


def make_task(freeze: int, factor: float, scheduler: bool = True) -> ClassificationTask:
    torch.manual_seed(0)
    return ClassificationTask(
        create_model("test_efficientnet", num_classes=2, image_size=32),
        ["a", "b"],
        [0.5] * 3,
        [0.25] * 3,
        loss=torch.nn.CrossEntropyLoss(),
        optimizer=functools.partial(torch.optim.SGD, lr=LR),
        scheduler=(
            functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=EPOCHS)
            if scheduler
            else None
        ),
        freeze_backbone_epochs=freeze,
        unfreeze_lr_factor=factor,
    )


class Record(pl.Callback):
    """Per training epoch, after the epoch-start hooks ran (i.e. at the first batch): whether
    backbone and head train, the LR, and the backbone's mode and weights."""

    def __init__(self) -> None:
        self.backbone_grad: list[bool] = []
        self.head_grad: list[bool] = []
        self.backbone_training: list[bool] = []
        self.lr: list[float] = []
        self.weights: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, task, batch, batch_idx) -> None:
        if batch_idx:
            return
        bb = task.model.backbone
        self.backbone_grad.append(all(p.requires_grad for p in bb.parameters()))
        self.head_grad.append(all(p.requires_grad for p in task.model.head.parameters()))
        self.lr.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx) -> None:
        if batch_idx == 0:  # the finetuning callback runs first: its eval() is in place here
            self.backbone_training.append(task.model.backbone.training)

    def on_train_epoch_end(self, trainer, task) -> None:
        self.weights.append(task.model.backbone.conv_stem.weight.detach().clone())


def fit(task: ClassificationTask, tmp_path: Path, epochs: int = EPOCHS, **kw) -> Record:
    rec = Record()
    ds = RandomImages()
    pl.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=kw.pop("checkpointing", False),
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[rec, *kw.pop("callbacks", [])],
    ).fit(task, DataLoader(ds, batch_size=8, shuffle=True), DataLoader(ds, batch_size=8), **kw)
    return rec


def cosine(epoch: int) -> float:
    return LR * (1 + math.cos(math.pi * epoch / EPOCHS)) / 2


def test_backbone_frozen_then_trained_at_a_lower_lr(tmp_path: Path) -> None:
    task = make_task(freeze=2, factor=0.1)
    before = task.model.backbone.conv_stem.weight.detach().clone()
    rec = fit(task, tmp_path)

    # requires_grad flips at the start of epoch 2, the head always trains
    assert rec.backbone_grad == [False, False, True, True]
    assert rec.head_grad == [True] * EPOCHS
    # frozen: eval mode (BatchNorm statistics fixed; also after the validation of epoch 0)
    assert rec.backbone_training == [False, False, True, True]
    assert torch.equal(rec.weights[1], before)
    assert not torch.equal(rec.weights[2], before)
    # the cosine schedule, dropped × 0.1 from the unfreeze on
    expected = [cosine(0), cosine(1), 0.1 * cosine(2), 0.1 * cosine(3)]
    assert rec.lr == pytest.approx(expected, rel=1e-6)


def test_factor_one_keeps_the_schedule(tmp_path: Path) -> None:
    rec = fit(make_task(freeze=1, factor=1.0), tmp_path, epochs=2)
    assert rec.backbone_grad == [False, True]
    assert rec.lr == pytest.approx([cosine(0), cosine(1)], rel=1e-6)


def test_no_freeze_no_callback(tmp_path: Path) -> None:
    task = make_task(freeze=0, factor=0.1, scheduler=False)
    assert task.configure_callbacks() == []
    rec = fit(task, tmp_path, epochs=1)
    assert rec.backbone_grad == [True] and rec.lr == [LR]


def test_resume_after_unfreeze_does_not_drop_again(tmp_path: Path) -> None:
    ckpt = tmp_path / "last.ckpt"
    saver = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="last", save_top_k=-1)
    fit(make_task(freeze=1, factor=0.1), tmp_path, epochs=3, callbacks=[saver], checkpointing=True)
    assert ckpt.is_file()
    # resumed at epoch 3 (unfrozen at 1): the checkpoint already holds the dropped LR
    rec = fit(make_task(freeze=1, factor=0.1), tmp_path, epochs=4, ckpt_path=str(ckpt))
    assert rec.backbone_grad == [True]
    assert rec.lr == pytest.approx([0.1 * cosine(3)], rel=1e-6)


def test_resume_just_before_unfreeze_drops_once(tmp_path: Path) -> None:
    saver = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="last", save_top_k=-1)
    fit(make_task(freeze=2, factor=0.1), tmp_path, epochs=2, callbacks=[saver], checkpointing=True)
    rec = fit(
        make_task(freeze=2, factor=0.1), tmp_path, epochs=4, ckpt_path=str(tmp_path / "last.ckpt")
    )
    assert rec.backbone_grad == [True, True]
    assert rec.lr == pytest.approx([0.1 * cosine(2), 0.1 * cosine(3)], rel=1e-6)


def test_network_without_backbone_is_a_clear_error(tmp_path: Path) -> None:
    task = make_task(freeze=1, factor=0.1)
    task.model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(2))
    with pytest.raises(DataError, match="freeze_backbone_epochs=0"):
        fit(task, tmp_path, epochs=1)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        HeadFirstFinetuning(1, lr_factor=0.0)
    with pytest.raises(ValueError, match=">= 0"):
        HeadFirstFinetuning(-1)
