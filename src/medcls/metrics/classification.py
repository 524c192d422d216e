"""The full classification metric set, computed with torchmetrics and flattened to floats."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from medcls.metrics.balanced import balanced_accuracy_of_confusion, predicted_absent_classes

log = logging.getLogger(__name__)


def metric_safe(name: str) -> str:
    """A class name usable in an MLflow metric key."""
    return re.sub(r"[^0-9A-Za-z_.\-]", "_", name)


class ClassificationMetrics(nn.Module):
    """Accuracy, balanced accuracy, macro/weighted P/R/F1, per-class metrics, top-k, AUROC.

    Balanced accuracy (= ``recall_macro``) is :func:`balanced_accuracy_of_confusion`: over the
    classes present in the targets; predictions of a class the targets lack are warned about.

    AUROC is one-vs-rest: class ``c`` against the rest. It needs a positive and a negative
    image of ``c``; where one is missing (:func:`auroc_undefined`) ``auroc_<c>`` is NaN, not
    torchmetrics' 0.0, and ``auroc_macro`` averages the classes whose AUROC exists (NaN if
    none does; a missing class does not drag the mean down, nor is a 0.0 made up for it).

    For two classes it adds sensitivity, specificity and AUROC of ``positive_class``.
    ``update`` takes probabilities ``(B, K)`` and targets ``(B,)``; ``compute`` returns a flat
    ``{name: float}``.
    """

    def __init__(
        self, class_names: Sequence[str], positive_class: int = 1, sync: bool = True
    ) -> None:
        super().__init__()
        k = len(class_names)
        kw = {"sync_on_compute": sync}  # False: the data is complete here, don't sync (DDP)
        self.class_names, self.positive = list(class_names), positive_class
        metrics: dict[str, nn.Module] = {
            "accuracy": MulticlassAccuracy(k, average="micro", **kw),
            "precision_macro": MulticlassPrecision(k, average="macro", **kw),
            "f1_macro": MulticlassF1Score(k, average="macro", **kw),
            "precision_weighted": MulticlassPrecision(k, average="weighted", **kw),
            "recall_weighted": MulticlassRecall(k, average="weighted", **kw),
            "f1_weighted": MulticlassF1Score(k, average="weighted", **kw),
            "precision": MulticlassPrecision(k, average=None, **kw),
            "recall": MulticlassRecall(k, average=None, **kw),
            "f1": MulticlassF1Score(k, average=None, **kw),
            "auroc": MulticlassAUROC(k, average=None, **kw),
        }
        for top in (2, 3):
            if top < k:
                metrics[f"top{top}_accuracy"] = MulticlassAccuracy(
                    k, top_k=top, average="micro", **kw
                )
        self.collection = MetricCollection(metrics, compute_groups=False)
        self.confmat = MulticlassConfusionMatrix(k, **kw)

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        probs = probs.float()
        self.collection.update(probs, target)
        self.confmat.update(probs, target)

    def reset(self) -> None:
        self.collection.reset()
        self.confmat.reset()

    def confusion_matrix(self) -> torch.Tensor:
        """``(K, K)`` counts, rows = true class."""
        return self.confmat.compute()

    def compute(self) -> dict[str, float]:
        raw = self.collection.compute()
        cm = self.confmat.compute().double()
        out: dict[str, float] = {}
        for name, value in raw.items():
            if value.ndim == 0:
                out[name] = float(value)
        present = cm.sum(dim=1) > 0  # classes with targets: their recall exists
        out["balanced_accuracy"] = out["recall_macro"] = balanced_accuracy_of_confusion(cm)
        absent = predicted_absent_classes(cm, self.class_names)
        if absent:
            log.warning(
                "predictions name class(es) %s that no target has: balanced accuracy averages "
                "the recall of the %d classes present only",
                ", ".join(absent),
                int(present.sum()),
            )
        auroc = raw["auroc"].double().clone()
        for i in auroc_undefined(cm.sum(dim=1).tolist(), self.class_names):
            auroc[i] = float("nan")  # torchmetrics reports 0.0: a number no ranking earned
        defined = ~torch.isnan(auroc)
        out["auroc_macro"] = float(auroc[defined].mean()) if defined.any() else float("nan")
        total = cm.sum()
        tp = cm.diag()
        tn = total - cm.sum(0) - cm.sum(1) + tp
        ovr_accuracy = (tp + tn) / total.clamp(min=1)  # one-vs-rest accuracy of each class
        for i, c in enumerate(self.class_names):
            c = metric_safe(c)
            out[f"accuracy_{c}"] = float(ovr_accuracy[i])
            for name in ("precision", "recall", "f1"):
                out[f"{name}_{c}"] = float(raw[name][i])
            out[f"auroc_{c}"] = float(auroc[i])
        if len(self.class_names) == 2:
            pos, neg = self.positive, 1 - self.positive
            out["sensitivity"] = float(raw["recall"][pos])
            out["specificity"] = float(raw["recall"][neg])
            out["auroc_positive"] = float(auroc[pos])
        return out


def auroc_undefined(support: Sequence[float], class_names: Sequence[str]) -> dict[int, str]:
    """The classes whose one-vs-rest AUROC (or any ranking metric) does not exist, with why.

    ``support (K,)``: true images per class in the scored set. Class ``c`` needs an image of
    ``c`` (a positive) and one of another class (a negative). Returns ``{index: reason}``.
    """
    total = float(sum(support))
    out = {}
    for i, (n, name) in enumerate(zip(support, class_names, strict=True)):
        if n <= 0:
            out[i] = f"class {name} has no positive images in this set"
        elif n >= total:
            out[i] = f"class {name} has no negative images in this set (every image is {name})"
    return out


def auroc_note(support: Sequence[float], class_names: Sequence[str]) -> str:
    """One line for a table's ``note`` column: why its AUROC is NaN, or that the macro AUROC
    averages fewer classes than there are; ``""`` when every class's AUROC exists.
    ``support (K,)``: true images per class. Two classes: either class's AUROC exists or
    neither, so the note names the class with no image, whichever is positive."""
    why = auroc_undefined(support, class_names)
    if not why:
        return ""
    k = len(class_names)
    if k == 2 and sum(support) > 0:
        absent, present = (0, 1) if support[0] <= 0 else (1, 0)
        return (
            f"AUROC undefined (NaN): class {class_names[absent]} has no images in this set "
            f"(every image is {class_names[present]})"
        )
    defined = k - len(why)
    head = (
        "AUROC undefined (NaN)"
        if defined == 0
        else f"auroc_macro over the {defined} of {k} classes where it exists"
    )
    return f"{head}: {'; '.join(why.values())}"


def compute_metrics(
    probs, labels, class_names: Sequence[str], positive_class: int = 1
) -> tuple[dict[str, float], torch.Tensor]:
    """Full metric set and confusion matrix of ``probs (N, K)`` against ``labels (N,)`` (all of
    them, in this process: nothing is synchronised with other DDP processes)."""
    m = ClassificationMetrics(class_names, positive_class, sync=False)
    m.update(torch.as_tensor(probs), torch.as_tensor(labels))
    return m.compute(), m.confusion_matrix()
