"""``conf/task`` → the network and the LightningModule that trains it.

A task decides which kind of network the ``conf/model`` backbone becomes (``classification``:
backbone + head; ``abn``: an Attention Branch Network over the ResNet) and which
LightningModule trains it. Checkpoints keep the task config (``meta["task"]``) so evaluation
rebuilds the same pair.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from medcls.errors import DataError
from medcls.losses.abn import ABNLoss
from medcls.models import create_model
from medcls.models.abn import create_abn
from medcls.tasks.abn import ABNTask
from medcls.tasks.classification import ClassificationTask
from medcls.tasks.probes import PROBES

DEFAULT_TASK = {"name": "classification"}

# name → (network builder taking the conf/model keys, task class, task-config keys it takes)
TASKS: dict[str, tuple[Callable[..., nn.Module], type[ClassificationTask], tuple[str, ...]]] = {
    "classification": (create_model, ClassificationTask, ()),
    "abn": (create_abn, ABNTask, ("iou_threshold",)),
}


def _entry(task_cfg: Mapping[str, Any] | None):
    name = str((task_cfg or DEFAULT_TASK).get("name", "classification"))
    if name in PROBES:  # no network to train: medcls-train fits a scikit-learn head instead
        raise ValueError(
            f"task={name} is a frozen-feature probe: medcls-train runs it on cached backbone "
            "features (medcls.workflows.probe); it has no LightningModule or checkpoint."
        )
    if name not in TASKS:
        raise ValueError(f"task.name={name!r}: use one of {sorted(TASKS) + sorted(PROBES)}")
    return TASKS[name]


def create_task_model(
    task_cfg: Mapping[str, Any] | None,
    model_cfg: Mapping[str, Any],
    num_classes: int,
    image_size: int,
) -> nn.Module:
    """The network for ``task_cfg`` from a resolved ``conf/model`` dict."""
    build, _, _ = _entry(task_cfg)
    return build(**model_cfg, num_classes=num_classes, image_size=image_size)


def create_task(
    task_cfg: Mapping[str, Any] | None,
    model: nn.Module,
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    **kwargs: Any,
) -> ClassificationTask:
    """The LightningModule for ``task_cfg`` around ``model``; ``kwargs`` as for
    :class:`ClassificationTask` (loss, optimizer, scheduler, meta, …)."""
    _, cls, keys = _entry(task_cfg)
    if isinstance(kwargs.get("loss"), ABNLoss) and not issubclass(cls, ABNTask):
        raise DataError(
            "the ABN losses (loss=abn, abn_map, abn_scheduled) train an Attention Branch "
            "Network: add task=abn."
        )
    extra = {k: task_cfg[k] for k in keys if task_cfg and k in task_cfg}
    return cls(model, class_names, mean, std, **kwargs, **extra)
