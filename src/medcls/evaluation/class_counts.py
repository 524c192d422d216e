"""Images per class and partition: a CSV and a grouped bar chart (a run artifact, and part of
``medcls-audit``'s output), so class imbalance is visible before the metrics are read."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

PARTITIONS = ("train", "val", "test")


def class_count_table(
    class_names: Sequence[str],
    labels: np.ndarray,
    partitions: Mapping[str, np.ndarray],
) -> pd.DataFrame:
    """One row per class, one column per non-empty partition (+ ``total``).

    Args:
        labels: ``(N,)`` class index per record; indices ≥ ``len(class_names)`` (images of an
            unknown class, test only) are counted in an extra ``unknown`` row.
        partitions: partition name → ``(n,)`` record indices (``train``/``val``/``test``; other
            keys such as ``all`` are ignored).
    """
    k = len(class_names)
    names = list(class_names)
    labels = np.asarray(labels, dtype=np.int64)

    def count(idx: np.ndarray) -> np.ndarray:
        found = labels[idx]
        return np.bincount(np.minimum(found[found >= 0], k), minlength=k + 1)  # -1: unlabelled

    columns = {}
    for part in PARTITIONS:
        idx = np.asarray(partitions.get(part, ()), dtype=np.int64)
        if idx.size:
            columns[part] = count(idx)
    if not columns:  # no split (e.g. medcls-eval split=all): count every record
        columns["all"] = count(np.arange(len(labels)))
    df = pd.DataFrame(columns, index=[*names, "unknown"])
    df.index.name = "class"
    if df.loc["unknown"].sum() == 0:
        df = df.drop(index="unknown")
    df["total"] = df.sum(axis=1)
    return df


def plot_class_counts(path: str, table: pd.DataFrame, title: str = "") -> str:
    """Grouped bars: x = class, one bar per partition, counts written on the bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [c for c in table.columns if c != "total"]
    k, width = len(table), 0.8 / max(len(parts), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.0 + 0.9 * k), 3.6), dpi=120)
    x = np.arange(k)
    for j, part in enumerate(parts):
        bars = ax.bar(x + (j - (len(parts) - 1) / 2) * width, table[part], width, label=part)
        ax.bar_label(bars, fontsize=7)
    rotate = k > 4 or max(len(str(c)) for c in table.index) > 10  # long Kaggle class names
    ax.set_xticks(
        x,
        [str(c) for c in table.index],
        rotation=30 if rotate else 0,
        ha="right" if rotate else "center",
    )
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    ax.set_title(title or "images per class", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_class_counts(
    out_dir: str,
    class_names: Sequence[str],
    labels: np.ndarray,
    partitions: Mapping[str, np.ndarray],
    title: str = "",
) -> list[str]:
    """``class_counts.csv`` and ``class_counts.png`` in ``out_dir``; returns both paths."""
    os.makedirs(out_dir, exist_ok=True)
    table = class_count_table(class_names, labels, partitions)
    csv = os.path.join(out_dir, "class_counts.csv")
    table.to_csv(csv)
    return [csv, plot_class_counts(os.path.join(out_dir, "class_counts.png"), table, title)]
