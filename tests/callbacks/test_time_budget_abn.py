"""The scheduled ABN loss's α and ``trainer.max_time``'s plan agree on the run's epochs: α
reaches its end value in the last epoch the budget trains, and a run killed and resumed from
its ``last.ckpt`` trains the same epochs with the same α as one that was never stopped.

A fake clock makes the plan exact: 1 s per training batch, 0.01 s per validation image.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medcls.callbacks import time_budget
from medcls.losses.abn import ScheduledABNLoss
from medcls.losses.schedules import WeightSchedule
from medcls.models.abn import ABNOutput
from medcls.tasks.abn import ABNTask

START, END = 0.9, 0.1
BUDGET_S = 44.0  # 4 batches + 20 validation images = 4.2 s an epoch: 10 whole, 1 step more


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now


class _Tick(pl.Callback):
    def __init__(self, clock: _Clock) -> None:
        self.clock = clock

    def on_train_batch_end(self, *args) -> None:
        self.clock.now += 1.0

    def on_validation_batch_end(self, trainer, module, outputs, batch, *args) -> None:
        self.clock.now += 0.01 * len(batch["label"])


class _Alphas(pl.Callback):
    """α of each epoch, as the loss used it (read at the epoch's first batch)."""

    def __init__(self) -> None:
        self.by_epoch: dict[int, float] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.by_epoch[trainer.current_epoch] = float(module.loss.alpha)


class _Killed(Exception):
    pass


class _KillAfter(pl.Callback):
    """The session dies at the end of epoch ``epoch`` (after its validation)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, module) -> None:
        if trainer.current_epoch == self.epoch:
            raise _Killed


class _TinyABN(nn.Module):
    """``(B, 3, 8, 8)`` → :class:`ABNOutput` (logits ``(B, 2)`` twice, map ``(B, 1, 2, 2)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.perception, self.attention = nn.Linear(3, 2), nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> ABNOutput:
        f = x.mean(dim=(2, 3))
        return ABNOutput(self.perception(f), self.attention(f), torch.sigmoid(x[:, :1, ::4, ::4]))


class _Images(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {
            "image": torch.full((3, 8, 8), i * 5, dtype=torch.uint8),
            "label": i % 2,
            "mask": torch.zeros(1, 8, 8, dtype=torch.uint8),
            "has_mask": True,
            "index": i,
        }


def _fit(clock: _Clock, ckpt_dir: Path, kill_after: int | None = None, resume: bool = False):
    """One session of a run with a BUDGET_S budget (trainer.max_epochs=100 is only the cap);
    returns (α by epoch, the TimeBudget)."""
    torch.manual_seed(0)
    task = ABNTask(
        _TinyABN(),
        ["a", "b"],
        [0.5] * 3,
        [0.25] * 3,
        loss=ScheduledABNLoss(WeightSchedule("linear", START, END)),
        optimizer=functools.partial(torch.optim.SGD, lr=0.01),
    )
    budget = time_budget.TimeBudget(BUDGET_S, started=clock.time(), report_s=0, first_plan_step=2)
    alphas = _Alphas()
    extra = [_KillAfter(kill_after)] if kill_after is not None else []
    trainer = pl.Trainer(
        max_epochs=100,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[budget, _Tick(clock), alphas, ModelCheckpoint(ckpt_dir, save_last=True), *extra],
    )
    train, val = DataLoader(_Images(40), batch_size=10), DataLoader(_Images(20), batch_size=20)
    ckpt = str(ckpt_dir / "last.ckpt") if resume else None
    with warnings.catch_warnings(), contextlib.suppress(_Killed):
        warnings.simplefilter("ignore")  # Lightning's notes on tiny loaders
        trainer.fit(task, train, val, ckpt_path=ckpt)
    return alphas.by_epoch, budget


@pytest.fixture
def clock(monkeypatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(time_budget, "time", clock)
    return clock


def _linear(epoch: int, epochs: int) -> float:
    """The linear schedule written out: START at the first epoch, END at the last."""
    return START + (END - START) * epoch / (epochs - 1)


def test_alpha_ends_with_the_epochs_the_budget_plans_also_after_a_resume(clock, tmp_path) -> None:
    whole, budget = _fit(clock, tmp_path / "whole")
    epochs = len(whole)
    assert sorted(whole) == list(range(epochs)) and epochs == budget.planned == 11
    assert whole[epochs - 1] == pytest.approx(END)
    for epoch, alpha in whole.items():
        assert alpha == pytest.approx(_linear(epoch, epochs)), epoch
    # the same run, killed after epoch 4 and resumed from its last.ckpt (the end of epoch 3)
    clock.now = 1000.0
    first, _ = _fit(clock, tmp_path / "killed", kill_after=4)
    assert sorted(first) == [0, 1, 2, 3, 4]
    resumed, budget = _fit(clock, tmp_path / "killed", resume=True)
    assert min(resumed) == 4
    assert {**first, **resumed} == pytest.approx(whole)  # α(k) of every epoch, k ≥ 4 too
    assert budget.planned == epochs
