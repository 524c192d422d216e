"""Rebuild a task from a medcls checkpoint (for evaluation and prediction)."""

from __future__ import annotations

import os

import torch

from medcls.errors import DataError
from medcls.tasks.classification import ClassificationTask
from medcls.tasks.factory import create_task, create_task_model

# What medcls-eval, -predict and -ensemble need from a checkpoint's ``medcls`` section.
REQUIRED_META = ("class_names", "preprocess", "model", "mean", "std")
WHERE = "give a medcls checkpoint such as <run dir>/checkpoints/best.ckpt"


def read_checkpoint(path: str) -> dict:
    """Load a checkpoint safely (``weights_only=True``: tensors and plain containers only).

    Anything else (not a file, not a PyTorch file, one holding objects, weights without medcls's
    metadata) is a :class:`DataError` naming the file: torch's own message would advise loading
    with ``weights_only=False``, which runs whatever code the file holds.
    """
    if not os.path.isfile(path):
        raise DataError(f"checkpoint not found: {os.path.abspath(path)}; {WHERE}.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure: not a checkpoint we can read safely
        raise DataError(
            f"{path} is not a checkpoint that can be read safely ({type(e).__name__}: not a "
            f"PyTorch file of tensors and plain values); {WHERE}."
        ) from None
    if not isinstance(ckpt, dict) or "medcls" not in ckpt:
        what = (
            "a Lightning checkpoint"
            if isinstance(ckpt, dict) and "state_dict" in ckpt
            else (f"a PyTorch file holding a {type(ckpt).__name__}")
        )
        raise DataError(
            f"{path} is not a medcls checkpoint: it is {what} without medcls's metadata (no "
            f"'medcls' section); {WHERE} (pretrained weights go in model.weights)."
        )
    meta = ckpt["medcls"]
    missing = [k for k in REQUIRED_META if not isinstance(meta, dict) or k not in meta]
    if missing or "state_dict" not in ckpt:
        missing += [] if "state_dict" in ckpt else ["state_dict"]
        raise DataError(
            f"{path} is a damaged or incomplete medcls checkpoint (missing {missing}); {WHERE}."
        )
    return ckpt


def load_task(path: str, channels_last: bool = False) -> tuple[ClassificationTask, dict]:
    """The task with its trained weights, and the checkpoint's ``medcls`` metadata."""
    ckpt = read_checkpoint(path)
    meta = ckpt["medcls"]
    # the trained weights follow: no download, no weights package, no file needed
    model_cfg = {**meta["model"], "pretrained": False, "pretrained_file": None, "weights": None}
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
        tta=tuple(meta.get("tta") or ()),  # the test-time views its test and calibration used
    )
    missing, unexpected = task.load_state_dict(ckpt["state_dict"], strict=False)
    weights_missing = [
        k
        for k in missing
        # logit_bias: checkpoints from before the logit adjustment (zero: none)
        if not k.startswith(("train_accuracy", "val_metrics", "test_metrics", "logit_bias"))
    ]
    unexpected = [k for k in unexpected if not k.startswith("loss.")]  # e.g. class weights
    if weights_missing or unexpected:
        raise DataError(
            f"{path}: weights do not fit the model (missing {weights_missing[:5]}, unexpected {unexpected[:5]})."
        )
    task.eval()
    return task, meta


# what only a resume needs (last.ckpt keeps it): the optimizer's moments (two more copies of the
# weights for AdamW) and the LR schedules; the small callback and loop states stay (they say,
# e.g., which score made this checkpoint the best)
RESUME_ONLY = ("optimizer_states", "lr_schedulers")


def update_checkpoint(
    path: str, state: dict | None = None, meta: dict | None = None, weights_only: bool = False
) -> None:
    """Replace tensors of the checkpoint's ``state_dict`` (``state``) and entries of its
    ``medcls`` section (``meta``, plain Python) at ``path``, in one step (a crash leaves the
    old file, never half a new one); ``weights_only``: also drop :data:`RESUME_ONLY`."""
    ckpt = read_checkpoint(path)
    for key in RESUME_ONLY if weights_only else ():
        ckpt.pop(key, None)
    ckpt["state_dict"].update(state or {})
    if "current_model_state" in ckpt:  # an EMA run keeps the raw weights too
        ckpt["current_model_state"].update(state or {})
    ckpt["medcls"].update(meta or {})
    tmp = f"{path}.tmp"
    torch.save(ckpt, tmp)
    os.replace(tmp, path)
