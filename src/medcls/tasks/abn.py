"""The Attention Branch Network task: two outputs, a mask-aware loss, attention metrics.

Predictions, checkpoints, evaluation, TTA and ensembles see an ordinary classifier: ``forward``
returns the perception branch's logits. Training and validation use :meth:`forward_all` for the
attention branch's logits and the attention map as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medcls.errors import DataError
from medcls.losses.abn import ABNLoss, ABNLossTerms
from medcls.metrics.attention import AttentionMetrics
from medcls.models.abn import ABNOutput
from medcls.tasks.classification import ClassificationTask


class ABNTask(ClassificationTask):
    """:class:`ClassificationTask` for an :class:`~medcls.models.abn.AttentionBranchNetwork`.

    Args:
        model: ``(B, 3, S, S)`` float → :class:`ABNOutput`.
        loss: an :class:`~medcls.losses.abn.ABNLoss` (``loss=abn|abn_map|abn_scheduled``).
        iou_threshold: attention value above which a map cell counts as "attended" for the
            IoU against the mask.
        other arguments: as for :class:`ClassificationTask`.

    Logs, besides the classification metrics of the perception branch: the loss terms
    (``*/loss_perception``, ``*/loss_attention``, ``*/loss_map``), ``train/alpha`` (scheduled
    loss), and ``val|test/attention_*`` (attention-branch accuracy, IoU, pointing game).
    """

    def __init__(
        self,
        model: nn.Module,
        class_names: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        loss: nn.Module | None = None,
        iou_threshold: float = 0.5,
        **kwargs,
    ) -> None:
        if loss is not None and not isinstance(loss, ABNLoss):
            raise DataError(
                f"task=abn trains with an ABN loss (loss=abn, abn_map or abn_scheduled), not "
                f"{type(loss).__name__}."
            )
        if kwargs.get("mixup") is not None or kwargs.get("resize_schedule"):
            raise DataError(
                "task=abn supervises its attention map with region masks, which mixup/cutmix "
                "and data.progressive_resize would not carry along: turn them off for task=abn."
            )
        super().__init__(model, class_names, mean, std, loss=loss, **kwargs)
        k = len(self.class_names)
        self.val_attention = AttentionMetrics(k, iou_threshold)
        self.test_attention = AttentionMetrics(k, iou_threshold)
        self._alpha: float | None = None

    # -- forward ------------------------------------------------------------------------------
    def raw_logits(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, S, S)`` → perception logits ``(B, K)`` (the prediction)."""
        return self.forward_all(images).logits

    def forward_all(self, images: torch.Tensor) -> ABNOutput:
        """uint8 ``(B, 3, S, S)`` → logits, attention-branch logits, map ``(B, 1, S/16, S/16)``
        (all float32, also under bf16 autocast)."""
        return ABNOutput(*(t.float() for t in self.model(self.normalize(images))))

    # -- steps --------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.loss is not None:
            # trainer.max_epochs is the run's planned length: with trainer.max_time, TimeBudget
            # sets it to the epochs it plans (also before a resumed run's first epoch), so α
            # ends with the last epoch the budget trains
            self._alpha = self.loss.set_epoch(self.current_epoch, self.trainer.max_epochs)

    def _terms(self, out: ABNOutput, batch: dict) -> ABNLossTerms:
        if "mask" not in batch and self.loss.uses_mask:
            raise DataError(
                f"{type(self.loss).__name__} trains the attention map on region masks, but the "
                "batches carry none: set data.load_masks=true (and data.mask.source for data "
                "without mask files, e.g. lung_threshold for CT)."
            )
        return self.loss(out, batch["label"], batch.get("mask"), batch.get("has_mask"))

    def _log_terms(self, stage: str, terms: ABNLossTerms) -> None:
        self.log_dict(
            {
                f"{stage}/loss": terms.total,
                f"{stage}/loss_perception": terms.perception,
                f"{stage}/loss_attention": terms.attention,
                f"{stage}/loss_map": terms.map,
            },
            on_step=False,
            on_epoch=True,
            sync_dist=True,  # under DDP: averaged over the processes (a no-op otherwise)
        )

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self.forward_all(batch["image"])
        terms = self._terms(out, batch)
        self.train_accuracy(out.logits, batch["label"])
        self.log("loss", terms.total, prog_bar=True, logger=False)
        self._log_terms("train", terms)
        self.log("train/accuracy", self.train_accuracy, on_step=False, on_epoch=True)
        if self._alpha is not None:
            self.log("train/alpha", self._alpha, on_step=False, on_epoch=True)
        return terms.total

    def _update_attention(self, metrics: AttentionMetrics, out: ABNOutput, batch: dict) -> None:
        metrics.update(
            out.attention_logits,
            out.attention,
            batch["label"],
            batch.get("mask"),
            batch.get("has_mask"),
        )

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self.forward_all(batch["image"])
        if self.loss is not None:
            self._log_terms("val", self._terms(out, batch))
        self.val_metrics.update(F.softmax(out.logits, dim=1), batch["label"])
        self._update_attention(self.val_attention, out, batch)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        values = self.val_attention.compute()
        self.val_attention.reset()
        self.log_dict({f"val/{k}": v for k, v in values.items()})

    def test_step(self, batch: dict, batch_idx: int) -> None:
        # the classification metrics and predictions exactly as for any model (a second,
        # cheap forward: test runs once)
        super().test_step(batch, batch_idx)
        self._update_attention(self.test_attention, self.forward_all(batch["image"]), batch)

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        values = self.test_attention.compute()
        self.test_attention.reset()
        self.log_dict({f"test/{k}": v for k, v in values.items()})
        self.test_results.update(values)
