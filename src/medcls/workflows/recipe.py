"""The training recipe's pieces that are not a config group of their own (docs/configuration.md "The
training recipe"): mixup/cutmix, progressive resizing, test-time views, weight EMA, the time
budget and the final fit on train+val. Each is off unless its key says otherwise."""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning import Callback
from pytorch_lightning.callbacks import EMAWeightAveraging

from medcls.callbacks import TimeBudget
from medcls.callbacks.time_budget import parse_duration
from medcls.data.datamodule import ClassificationDataModule
from medcls.errors import DataError
from medcls.evaluation import EvalSettings

TRAIN_ON = ("train", "train+val")


def recipe_options(cfg: DictConfig, dm: ClassificationDataModule, settings: EvalSettings) -> dict:
    """Keyword arguments of the task: ``mixup``, ``resize_schedule``, ``tta``."""
    return {
        "mixup": build_mixup(cfg.get("mixup"), dm.num_classes, cfg.loss),
        "resize_schedule": resize_schedule(cfg.data.get("progressive_resize"), dm),
        "tta": settings.views,
    }


def build_mixup(node, num_classes: int, loss_cfg):
    """timm's ``Mixup`` (mixup and/or CutMix) from the ``mixup`` node, or ``None`` when both
    alphas are 0. Labels become soft targets, which ``loss=ce`` (class weights and label
    smoothing included) takes; the other losses want class indices."""
    node = dict(
        OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node or {}
    )
    mix, cut = float(node.get("mixup_alpha", 0.0)), float(node.get("cutmix_alpha", 0.0))
    if mix <= 0 and cut <= 0:
        return None
    if loss_cfg.get("name") != "ce":
        raise DataError(
            f"mixup.mixup_alpha / mixup.cutmix_alpha train on soft targets, which "
            f"loss={loss_cfg.get('name')} does not take: use loss=ce (or class_weighted, "
            "label_smoothing), or set both alphas to 0."
        )
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=mix,
        cutmix_alpha=cut,
        prob=float(node.get("prob", 1.0)),
        switch_prob=float(node.get("switch_prob", 0.5)),
        label_smoothing=0.0,  # the loss's own label_smoothing applies
        num_classes=num_classes,
    )


def resize_schedule(node, dm: ClassificationDataModule) -> dict[int, int] | None:
    """``data.progressive_resize`` ``{first epoch: size}`` checked against the cached size."""
    if not node:
        return None
    try:
        schedule = {int(k): int(v) for k, v in dict(node).items()}
    except (TypeError, ValueError):
        schedule = {}
    size = dm.preprocess.image_size
    if not schedule or any(e < 0 or not 8 <= s <= size for e, s in schedule.items()):
        raise DataError(
            f"data.progressive_resize={dict(node)}: give {{first epoch: size}} with sizes from 8 "
            f"to data.image_size ({size}), e.g. {{0: {max(8, size * 3 // 4)}, 3: {size}}}."
        )
    return schedule


def recipe_callbacks(
    cfg: DictConfig, dm: ClassificationDataModule, settings: EvalSettings, started: float
) -> list[Callback]:
    """Weight EMA (``ema_decay``) and the time budget (``trainer.max_time``)."""
    out: list[Callback] = []
    decay = cfg.get("ema_decay")
    if decay is not None:
        if not 0 < float(decay) < 1:
            raise DataError(f"ema_decay={decay}: a decay in (0, 1), e.g. 0.998, or null (off)")
        out.append(EMAWeightAveraging(decay=float(decay)))
    try:
        budget = parse_duration(cfg.trainer.get("max_time"))
    except ValueError as e:
        raise DataError(str(e)) from None
    if budget is not None:
        tested = dm.partitions.get(str(cfg.data.get("test_partition", "test")), ())
        test = len(tested) if cfg.get("test", True) else 0  # (data.test_partition=val: val's)
        views = 1 + len(settings.views)  # test-time views: one pass each
        out.append(TimeBudget(budget, started, test_images=test * views))
    return out


def train_on(cfg: DictConfig, dm: ClassificationDataModule) -> bool:
    """``train_on=train+val``: the final fit, on every image but the test's, for
    ``trainer.max_epochs`` (the epoch count an earlier CV or holdout run picked: its
    ``best_epoch`` + 1). Returns whether this run has no validation."""
    mode = str(cfg.get("train_on") or "train")
    if mode not in TRAIN_ON:
        raise DataError(f"train_on={mode!r}: use train or train+val")
    if mode == "train":
        return False
    parts = dm.partitions
    parts["train"] = np.union1d(parts["train"], parts["val"])
    parts["val"] = np.arange(0, dtype=parts["train"].dtype)
    return True
