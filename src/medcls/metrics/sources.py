"""Per-source metrics of a combined dataset (``data=combined``): the overall numbers can hide
that a model works on one source and fails on another."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medcls.metrics.classification import metric_safe


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

    Shapes: ``probs (N, K)``, ``labels (N,)``, ``sources [N]``. Metrics of a class a source has
    no images of (its AUROC, recall) are NaN or 0, as torchmetrics defines them.
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
    """``per_source_metrics.csv``: one row per source, the main metrics as columns, from
    :func:`source_metrics`' keys."""
    import pandas as pd

    rows: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == prefix and parts[2] in TABLE_METRICS:
            rows.setdefault(parts[1], {})[parts[2]] = value
    df = pd.DataFrame.from_dict(rows, orient="index")
    df = df[[c for c in TABLE_METRICS if c in df.columns]]
    if "images" in df.columns:
        df["images"] = df["images"].astype(int)
    df.index.name = "source"
    df.to_csv(path, float_format="%.4f")
    return path
