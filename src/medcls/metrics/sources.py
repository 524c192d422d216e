"""Per-source metrics of a combined dataset (``data=combined``): the overall numbers can hide
that a model works on one source and fails on another."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medcls.metrics.classification import auroc_note, metric_safe


def source_metrics(
    probs: np.ndarray,
    labels: np.ndarray,
    sources: Sequence[str],
    class_names: Sequence[str],
    positive_class: int = 1,
    prefix: str = "test",
) -> dict[str, float]:
    """The full metric set of each source's images, keys ``<prefix>/<source>/<metric>``
    (e.g. ``test/airogs/auroc_macro``); empty when all images come from one source.

    Shapes: ``probs (N, K)``, ``labels (N,)``, ``sources [N]``. ``images_<class>``: the
    source's images of each class, so a reader sees why a figure is missing. A class's AUROC
    is NaN where the source has no image of it or only images of it (an all-normal source:
    no glaucoma AUROC), and the macro AUROC averages the classes where it exists (see
    :class:`~medcls.metrics.ClassificationMetrics`); recall of an absent class is 0, as
    torchmetrics defines it.
    """
    names = sorted(set(sources))
    if len(names) < 2:
        return {}
    from medcls.metrics.classification import compute_metrics  # torch only when needed

    src = np.asarray(sources, dtype=object)
    out: dict[str, float] = {}
    for name in names:
        keep = src == name
        values, _ = compute_metrics(probs[keep], labels[keep], class_names, positive_class)
        out.update({f"{prefix}/{metric_safe(name)}/{k}": v for k, v in values.items()})
        out[f"{prefix}/{metric_safe(name)}/images"] = float(keep.sum())
        counts = np.bincount(np.asarray(labels)[keep], minlength=len(class_names))
        for c, n in zip(class_names, counts, strict=True):
            out[f"{prefix}/{metric_safe(name)}/images_{metric_safe(c)}"] = float(n)
    return out


# The columns of per_source_metrics.csv (any that a run has).
TABLE_METRICS = (
    "images",
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "auroc_macro",
    "sensitivity",
    "specificity",
    "auroc_positive",
)


def write_source_table(path: str, metrics: dict[str, float], prefix: str = "test") -> str:
    """``per_source_metrics.csv``: one row per source, from :func:`source_metrics`' keys:
    ``images``, ``images_<class>``, the main metrics, and ``note``: why an AUROC is NaN (e.g.
    "class glaucoma has no images in this set (every image is normal)"), empty where every
    AUROC exists (:func:`~medcls.metrics.classification.auroc_note`).
    NaN is written as an empty cell (pandas reads it back as NaN)."""
    import pandas as pd

    rows: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        shown = len(parts) == 3 and (parts[2] in TABLE_METRICS or parts[2].startswith("images_"))
        if shown and parts[0] == prefix:
            rows.setdefault(parts[1], {})[parts[2]] = value
    df = pd.DataFrame.from_dict(rows, orient="index")
    per_class = [c for c in df.columns if c.startswith("images_")]  # source_metrics' class order
    df = df[[c for c in ("images", *per_class, *TABLE_METRICS[1:]) if c in df.columns]]
    for c in ("images", *per_class):
        if c in df.columns:
            df[c] = df[c].astype(int)
    if per_class:
        names = [c.removeprefix("images_") for c in per_class]
        df["note"] = [auroc_note(df.loc[s, per_class].tolist(), names) for s in df.index]
    df.index.name = "source"
    df.to_csv(path, float_format="%.4f")
    return path
