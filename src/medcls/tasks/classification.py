"""The generic classification task: serves every single-output model."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from medcls.callbacks import HeadFirstFinetuning
from medcls.errors import DataError
from medcls.metrics import ClassificationMetrics
from medcls.metrics.classification import compute_metrics
from medcls.metrics.open_set import RejectUnknown
from medcls.tasks.tta import mean_view_log_proba, tta_views


class ClassificationTask(pl.LightningModule):
    """Train/evaluate ``model`` on uint8 image batches.

    Batches arrive as uint8 ``(B, 3, S, S)``; normalisation (``mean``/``std`` on the 0..1 scale)
    happens here, on the device, so loaders move 4× fewer bytes.

    Args:
        model: ``(B, 3, S, S)`` float → ``(B, K)`` logits; a ``backbone`` attribute enables
            ``freeze_backbone_epochs``.
        freeze_backbone_epochs / unfreeze_lr_factor: train only the head for that many
            epochs, then everything with the LR × ``unfreeze_lr_factor``
            (:class:`~medcls.callbacks.HeadFirstFinetuning`, which the task brings along).
        loss: ``(logits, target) → scalar``; ``None`` for evaluation-only use.
        optimizer / scheduler: factories (``functools.partial``) taking params / optimizer.
        meta: plain-python facts saved in every checkpoint (model config, classes,
            preprocessing, MLflow run id) so evaluation can rebuild everything.
        mixup: timm ``Mixup`` on normalised training batches (soft targets), or ``None``.
        resize_schedule: progressive resizing, ``{first epoch: size}``: training batches are
            resized to that size from that epoch on (validation and test stay at the cached
            size).
        tta: test-time augmentation views (:mod:`medcls.tasks.tta`) the test step averages.
        backbone_lr_factor: the backbone's learning rate is the optimizer's × this (the head
            keeps the optimizer's): pretrained features move gently while a new head learns.
        freeze_bn: keep the backbone's BatchNorm layers in eval mode while training, so their
            pretrained running statistics stay (small batches of one dataset would drift them).

    ``logit_bias (K,)`` is added to every prediction's logits (zero unless a post-hoc logit
    adjustment was fitted: ``-τ · log prior``); it is a buffer, so checkpoints carry it to
    medcls-eval, medcls-predict and exports.
    """

    def __init__(
        self,
        model: nn.Module,
        class_names: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        loss: nn.Module | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        freeze_backbone_epochs: int = 0,
        unfreeze_lr_factor: float = 0.1,
        channels_last: bool = False,
        positive_class: int = 1,
        meta: dict | None = None,
        mixup: Callable | None = None,
        resize_schedule: Mapping[int, int] | None = None,
        tta: Sequence[str] = (),
        backbone_lr_factor: float = 1.0,
        freeze_bn: bool = False,
    ) -> None:
        super().__init__()
        self.model, self.loss = model, loss
        self.class_names = list(class_names)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.freeze_backbone_epochs = int(freeze_backbone_epochs)
        self.unfreeze_lr_factor = float(unfreeze_lr_factor)
        self.channels_last = channels_last
        self.meta = dict(meta or {})
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255
        )
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255)
        self.register_buffer("logit_bias", torch.zeros(len(class_names)))
        self.mixup = mixup
        self.resize_schedule = {int(k): int(v) for k, v in (resize_schedule or {}).items()}
        self.tta = tta_views(tta)
        if not backbone_lr_factor > 0:
            raise DataError(
                f"model.backbone_lr_factor={backbone_lr_factor}: a factor > 0, e.g. 0.1"
            )
        self.backbone_lr_factor, self.freeze_bn = float(backbone_lr_factor), bool(freeze_bn)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        k = len(self.class_names)
        self.train_accuracy = MulticlassAccuracy(k, average="micro")
        self.val_metrics = ClassificationMetrics(self.class_names, positive_class)
        self.test_metrics = ClassificationMetrics(self.class_names, positive_class)
        self.test_results: dict[str, float] = {}
        self.test_outputs: dict[str, np.ndarray] = {}
        self._test_buffer: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    # -- forward ------------------------------------------------------------------------------
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, S, S)`` → logits ``(B, K)``, logit adjustment included."""
        return self.raw_logits(images) + self.logit_bias

    def raw_logits(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, S, S)`` → the network's own logits ``(B, K)``."""
        return self.model(self.normalize(images))

    def train_size(self, epoch: int) -> int | None:
        """The training image size of ``epoch`` under ``resize_schedule`` (``None``: cached)."""
        started = [e for e in self.resize_schedule if e <= epoch]
        return self.resize_schedule[max(started)] if started else None

    def training_inputs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised training images (resized by the schedule, mixed by ``mixup``) and their
        targets: class indices ``(B,)``, or soft targets ``(B, K)`` when mixed."""
        x, y = self.normalize(batch["image"]), batch["label"]
        size = self.train_size(self.current_epoch)
        if size is not None and size != x.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        if self.mixup is not None and len(x) % 2 == 0:  # timm mixes the batch with its reverse
            x, y = self.mixup(x, y)
        return x, y

    # -- two-stage fine-tuning ----------------------------------------------------------------
    def configure_callbacks(self) -> list[pl.Callback]:
        """Head first, then everything at a lower LR, when ``freeze_backbone_epochs`` > 0."""
        if self.freeze_backbone_epochs <= 0:
            return []
        return [HeadFirstFinetuning(self.freeze_backbone_epochs, self.unfreeze_lr_factor)]

    # -- steps --------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x, target = self.training_inputs(batch)
        logits = self.model(x).float()
        loss = self.loss(logits, target)
        self.train_accuracy(logits, batch["label"])
        self.log("loss", loss, prog_bar=True, logger=False)
        # sync_dist: under DDP epoch values are averaged over the processes (a no-op otherwise)
        self.log("train/loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        self.log("train/accuracy", self.train_accuracy, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self(batch["image"]).float()
        if self.loss is not None:
            loss = self.loss(logits, batch["label"])
            self.log("val/loss", loss, on_epoch=True, prog_bar=False, sync_dist=True)
        self.val_metrics.update(F.softmax(logits, dim=1), batch["label"])

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        self.log_dict({f"val/{k}": v for k, v in values.items()}, sync_dist=True)
        self.log(
            "val/bacc", values["balanced_accuracy"], prog_bar=True, logger=False, sync_dist=True
        )

    def on_test_epoch_start(self) -> None:
        self._test_buffer = []
        # Test images of classes outside the model's (ISIC 2019's UNK) come with a reject
        # option from the datamodule (data.unknown=reject): they are scored as one extra class.
        self._reject: RejectUnknown | None = getattr(
            getattr(self.trainer, "datamodule", None), "unknown", None
        )
        self._test_class_names = list(self.class_names)
        if self._reject is not None:
            self._test_class_names.append(self._reject.name)
        if self.test_metrics.class_names != self._test_class_names:
            self.test_metrics = ClassificationMetrics(
                self._test_class_names, self.test_metrics.positive
            ).to(self.device)

    def log_proba(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, S, S)`` → ``log p (B, K)`` float32: the model's probability, the mean
        over the test-time views of ``softmax(logits + logit_bias)``.

        medcls's one definition (:func:`medcls.evaluation.probability.view_probs` is the same in
        numpy): validation fitting, test, medcls-predict and exports all use it. Kept as a log
        (``logsumexp`` over views) so a confident model's small probabilities survive float32
        and a temperature can divide it exactly as it divides logits."""
        return mean_view_log_proba(self, images, self.tta)

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, S, S)`` → the model's probabilities ``(B, K)`` (:meth:`log_proba`)."""
        return self.log_proba(images).exp()

    def view_logits(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, S, S)`` → the network's own logits per test-time view ``(B, V, K)``
        (no logit bias): what post-hoc fitting starts from, so fitting twice gives the same."""
        return torch.stack([self.raw_logits(v(images)).float() for v in self.tta], dim=1)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        logp = self.log_proba(batch["image"])
        probs = logp.exp()
        if self._reject is not None:
            probs = self._reject.extend(probs)  # (B, K+1)
        self.test_metrics.update(probs, batch["label"])
        self._test_buffer.append((logp.cpu(), batch["label"].cpu(), batch["index"].cpu()))

    def on_test_epoch_end(self) -> None:
        logp, labels, index = (torch.cat(t) for t in zip(*self._test_buffer, strict=True))
        probs = logp.double().exp()  # float64: tiny probabilities stay > 0 for a temperature
        if self._reject is not None:
            probs = self._reject.extend(probs)  # (B, K+1)
        if self.trainer.world_size > 1:
            # DDP: every process saw a shard, which DistributedSampler pads with repeats. Gather
            # all shards and score each image once (the predictions file lists every image).
            probs, labels, index = _gather_once(self, probs, labels, index)
            self.test_results, cm = compute_metrics(
                probs, labels, self._test_class_names, self.test_metrics.positive
            )
        else:
            self.test_results = self.test_metrics.compute()
            cm = self.test_metrics.confusion_matrix()
        self.test_metrics.reset()
        self.log_dict({f"test/{k}": v for k, v in self.test_results.items()}, sync_dist=True)
        self.test_outputs = {
            "probs": probs.numpy(),
            "labels": labels.numpy(),
            "index": index.numpy(),
            "confusion": cm.cpu().numpy(),
            "class_names": self._test_class_names,  # the model's, + the rejected class if any
        }

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        return {
            "probs": self.predict_proba(batch["image"]).cpu(),
            "index": batch["index"].cpu(),
        }

    # -- optimisation and checkpoints -----------------------------------------------------------
    def parameter_groups(self) -> list:
        """The parameters, in two groups (backbone, the rest) when the backbone learns at its
        own rate (``backbone_lr_factor`` != 1), else one list."""
        if self.backbone_lr_factor == 1.0:
            return list(self.parameters())
        backbone = getattr(self.model, "backbone", None)
        if backbone is None:
            raise DataError(
                f"model.backbone_lr_factor needs a network with a `backbone`; "
                f"{type(self.model).__name__} has none. Set model.backbone_lr_factor=1."
            )
        inside = {id(p) for p in backbone.parameters()}
        base = float(getattr(self.optimizer_factory, "keywords", {}).get("lr", 1e-3))
        return [
            {"params": [p for p in backbone.parameters()], "lr": base * self.backbone_lr_factor},
            {"params": [p for p in self.parameters() if id(p) not in inside], "lr": base},
        ]

    def train(self, mode: bool = True):
        """``freeze_bn``: the backbone's BatchNorm layers stay in eval mode in training."""
        super().train(mode)
        if mode and self.freeze_bn and hasattr(self.model, "backbone"):
            for m in self.model.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def _per_group(self, value):
        """A scheduler's peak LR for each parameter group (scaled like the groups' LRs)."""
        if self.backbone_lr_factor == 1.0 or value is None:
            return value
        return [float(value) * self.backbone_lr_factor, float(value)]

    def configure_optimizers(self):
        opt = self.optimizer_factory(params=self.parameter_groups())
        if self.scheduler_factory is None:
            return opt
        if getattr(getattr(self.scheduler_factory, "func", None), "per_step", False):
            # planned in steps (OneCycle): the trainer knows how many this run takes
            total = self.trainer.estimated_stepping_batches
            if not math.isfinite(total):
                raise DataError(
                    "scheduler=onecycle needs the run's length: set trainer.max_epochs "
                    "(with trainer.max_time it is the most the time budget may plan)."
                )
            peak = self._per_group(getattr(self.scheduler_factory, "keywords", {}).get("max_lr"))
            extra = {} if peak is None else {"max_lr": peak}
            scheduler = self.scheduler_factory(optimizer=opt, total_steps=int(total), **extra)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        return {
            "optimizer": opt,
            "lr_scheduler": {
                "scheduler": self.scheduler_factory(optimizer=opt),
                "interval": "epoch",
            },
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["medcls"] = self.meta


def _gather_once(module: pl.LightningModule, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """All processes' ``(probs, labels, index)``, each image once (first occurrence, by index)."""
    gathered = [module.all_gather(t.to(module.device)).flatten(0, 1).cpu() for t in tensors]
    index = gathered[-1]
    order = torch.argsort(index, stable=True)
    first = torch.ones(len(order), dtype=torch.bool)
    first[1:] = index[order][1:] != index[order][:-1]
    keep = order[first]
    return [t[keep] for t in gathered]
