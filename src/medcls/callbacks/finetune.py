"""Two-stage fine-tuning: train the head on a frozen backbone, then everything at a lower LR.

The standard pretrain → fine-tune recipe (Ruder et al., 2019) the skin-disease study
(``conf/experiment/skin_folders_finetune.yaml``) uses with EfficientNet-B5: a new head learns
on top of fixed ImageNet features first, so its random gradients never reach (and wreck) the
pretrained backbone; then the whole network adapts, with the learning rate dropped so the
backbone moves gently.
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
from torch import nn

from medcls.errors import DataError

log = logging.getLogger(__name__)


class HeadFirstFinetuning(pl.Callback):
    """Freeze ``pl_module.model.backbone`` for the first ``unfreeze_at_epoch`` epochs; from
    epoch ``unfreeze_at_epoch`` on it trains, and the learning rate of every optimizer parameter
    group is multiplied by ``lr_factor``.

    While frozen the backbone also stays in eval mode, so its BatchNorm layers keep their
    (pretrained) running statistics instead of drifting towards the new data with no weight
    update to match. (Lightning restores each submodule's own mode after validation.)

    The LR drop is applied to the optimizer's groups (``lr`` and ``initial_lr``) and to every
    LR scheduler's ``base_lrs``: recursive schedules (cosine annealing) continue from the dropped
    LR, closed-form ones (step, lambda) compute from the dropped base, so the schedule keeps its
    shape one level lower. A run resumed after the unfreeze restores the dropped LRs from its
    checkpoint and does not drop them again.

    Args:
        unfreeze_at_epoch: epochs of head-only training (0: never frozen, nothing happens).
        lr_factor: LR multiplier at the unfreeze (1.0: keep the LR).
    """

    def __init__(self, unfreeze_at_epoch: int, lr_factor: float = 0.1) -> None:
        super().__init__()
        if unfreeze_at_epoch < 0:
            raise ValueError(f"freeze_backbone_epochs={unfreeze_at_epoch} must be >= 0")
        if not lr_factor > 0:
            raise ValueError(f"unfreeze_lr_factor={lr_factor} must be > 0")
        self.unfreeze_at_epoch = int(unfreeze_at_epoch)
        self.lr_factor = float(lr_factor)
        self.frozen = False
        self.lr_dropped = False  # saved in checkpoints: a resumed run must not drop twice

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def backbone(pl_module: pl.LightningModule) -> nn.Module:
        net = getattr(pl_module, "model", pl_module)
        backbone = getattr(net, "backbone", None)
        if backbone is None:
            raise DataError(
                f"model.freeze_backbone_epochs needs a network with a `backbone` attribute; "
                f"{type(net).__name__} has none. Set model.freeze_backbone_epochs=0."
            )
        return backbone

    def _set_frozen(self, pl_module: pl.LightningModule, frozen: bool) -> None:
        backbone = self.backbone(pl_module)
        for p in backbone.parameters():
            p.requires_grad_(not frozen)
        self.frozen = frozen
        if frozen:
            backbone.eval()
        elif pl_module.training:
            backbone.train()

    def _drop_lr(self, trainer: pl.Trainer) -> None:
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] *= self.lr_factor
                if "initial_lr" in group:
                    group["initial_lr"] *= self.lr_factor
        for cfg in trainer.lr_scheduler_configs:
            sched = cfg.scheduler
            if hasattr(sched, "base_lrs"):
                sched.base_lrs = [lr * self.lr_factor for lr in sched.base_lrs]
            if hasattr(sched, "_last_lr"):  # what get_last_lr() / LearningRateMonitor report
                sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]
        self.lr_dropped = True

    # -- hooks ----------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after a checkpoint is restored (current_epoch: where training continues) and after
        # Lightning's warning about modules in eval mode, which would flag the frozen backbone
        if trainer.current_epoch < self.unfreeze_at_epoch:
            self._set_frozen(pl_module, True)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Switch at the end of the last head-only epoch: the epoch's scheduler step has run, so
        # the next epoch starts at the dropped LR, and LearningRateMonitor logs that LR.
        if trainer.current_epoch + 1 >= self.unfreeze_at_epoch:
            self._unfreeze(trainer, pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a run resumed from a checkpoint written before the switch
        if trainer.current_epoch >= self.unfreeze_at_epoch:
            self._unfreeze(trainer, pl_module)

    def _unfreeze(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.unfreeze_at_epoch == 0:
            return
        if self.frozen:
            self._set_frozen(pl_module, False)
            log.info("backbone unfrozen from epoch %d", self.unfreeze_at_epoch)
        if not self.lr_dropped and self.lr_factor != 1.0:
            self._drop_lr(trainer)
            lrs = [g["lr"] for opt in trainer.optimizers for g in opt.param_groups]
            log.info(
                "learning rate × %g → %s", self.lr_factor, ", ".join(f"{lr:.3g}" for lr in lrs)
            )

    def state_dict(self) -> dict[str, Any]:
        return {"lr_dropped": self.lr_dropped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.lr_dropped = bool(state_dict.get("lr_dropped", False))
