"""Rebuild a task from a medcls checkpoint (for evaluation and prediction)."""

from __future__ import annotations

import os

import torch

from medcls.data.records import DataError
from medcls.tasks.classification import ClassificationTask
from medcls.tasks.factory import create_task, create_task_model


def read_checkpoint(path: str) -> dict:
    """Load a checkpoint safely (``weights_only=True``: tensors and plain containers only)."""
    if not os.path.isfile(path):
        raise DataError(
            f"checkpoint not found: {os.path.abspath(path)}. Give ckpt_path=<run dir>/checkpoints/best.ckpt"
        )
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if "medcls" not in ckpt:
        raise DataError(
            f"{path} is not a medcls checkpoint (no 'medcls' section); train it with medcls-train."
        )
    return ckpt


def load_task(path: str, channels_last: bool = False) -> tuple[ClassificationTask, dict]:
    """The task with its trained weights, and the checkpoint's ``medcls`` metadata."""
    ckpt = read_checkpoint(path)
    meta = ckpt["medcls"]
    model_cfg = {**meta["model"], "pretrained": False, "pretrained_file": None}
    task_cfg = meta.get("task")  # absent in checkpoints from before tasks: classification
    model = create_task_model(
        task_cfg,
        model_cfg,
        num_classes=len(meta["class_names"]),
        image_size=meta["preprocess"]["image_size"],
    )
    task = create_task(
        task_cfg,
        model,
        meta["class_names"],
        meta["mean"],
        meta["std"],
        channels_last=channels_last,
        positive_class=meta.get("positive_class", 1),
        meta=meta,
    )
    missing, unexpected = task.load_state_dict(ckpt["state_dict"], strict=False)
    weights_missing = [
        k for k in missing if not k.startswith(("train_accuracy", "val_metrics", "test_metrics"))
    ]
    unexpected = [k for k in unexpected if not k.startswith("loss.")]  # e.g. class weights
    if weights_missing or unexpected:
        raise DataError(
            f"{path}: weights do not fit the model (missing {weights_missing[:5]}, unexpected {unexpected[:5]})."
        )
    task.eval()
    return task, meta
