"""Files written at the end of a run (and logged to MLflow): predictions, per-class metrics,
confusion matrix, skipped images."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from medcls.data.records import Record
from medcls.metrics.classification import metric_safe
from medcls.metrics.groups import group_mean


def write_predictions(
    path: str,
    records: Sequence[Record],
    probs: np.ndarray,
    labels: np.ndarray | None,
    class_names: Sequence[str],
    preds: np.ndarray | None = None,
) -> str:
    """One row per image: path, image id, group, (source,) (series,) true and predicted class,
    p(class) columns. ``source`` is there when the images come from several sources
    (``data=combined``), ``series`` for CT slices (``data=dicom``, ``data=nifti``). ``preds``: the predicted classes (default: the argmax; a decision
    threshold's otherwise)."""
    pred = probs.argmax(axis=1) if preds is None else preds
    df = pd.DataFrame(
        {
            "path": [r.path for r in records],
            "image_id": [r.image_id for r in records],
            "group": [r.group for r in records],
        }
    )
    if len({r.source for r in records}) > 1:
        df["source"] = [r.source for r in records]
    if any("series" in r.attributes for r in records):  # CT slices: their series
        df["series"] = [r.attributes.get("series") for r in records]
    if labels is not None:
        df["label"] = [class_names[i] for i in labels]
    df["prediction"] = [class_names[i] for i in pred]
    for i, c in enumerate(class_names):
        df[f"p_{c}"] = probs[:, i]
    df.to_csv(path, index=False, float_format="%.6f")
    return path


def write_unit_predictions(
    path: str,
    unit: str,
    records: Sequence[Record],
    probs: np.ndarray,
    class_names: Sequence[str],
    predict: Callable[[np.ndarray], np.ndarray],
) -> str:
    """One row per unit (``unit="series"``: each CT series, with its patient; ``"group"``: each
    patient): its slices' mean probabilities, the class ``predict`` gives them, the number of
    slices. Shapes: ``records [N]``, ``probs (N, K)``."""
    keys = [r.attributes.get("series") if unit == "series" else r.group for r in records]
    mean, _, ids = group_mean(probs, np.zeros(len(records), np.int64), keys)
    counts = Counter(str(k) for k in keys)
    df = pd.DataFrame({unit: ids, "slices": [counts[i] for i in ids]})
    if unit == "series":
        patient_of = {str(k): r.group for k, r in zip(keys, records, strict=True)}
        df.insert(1, "group", [patient_of[i] for i in ids])
    df["prediction"] = [class_names[i] for i in predict(mean)]
    for i, c in enumerate(class_names):
        df[f"p_{c}"] = mean[:, i]
    df.to_csv(path, index=False, float_format="%.6f")
    return path


# read back as text: ids like 000123 and class names like "0" must not become numbers
TEXT_COLUMNS = dict.fromkeys(
    ("path", "image_id", "group", "source", "series", "label", "prediction"), str
)


def read_predictions(path: str) -> pd.DataFrame:
    """A predictions CSV written by :func:`write_predictions`, with its text columns as text."""
    return pd.read_csv(path, dtype=TEXT_COLUMNS, keep_default_na=False)


def write_per_class(
    path: str, metrics: Mapping[str, float], class_names: Sequence[str], counts: Sequence[int]
) -> str:
    rows = []
    for c, n in zip(class_names, counts, strict=True):
        s = metric_safe(c)
        rows.append(
            {
                "class": c,
                "support": int(n),
                **{
                    m: metrics.get(f"{m}_{s}")
                    for m in ("accuracy", "precision", "recall", "f1", "auroc")
                },
            }
        )
    pd.DataFrame(rows).to_csv(path, index=False, float_format="%.4f")
    return path


# The paper layout (Zhao & Yoshino's Table 1): one row per metric, one column per class.
TABLE1_ROWS = {"accuracy": "Acc", "precision": "Precision", "recall": "Recall", "f1": "F1-score"}


def write_per_class_markdown(
    path: str,
    metrics: Mapping[str, float],
    class_names: Sequence[str],
    counts: Sequence[int],
    title: str = "",
) -> str:
    """Per-class Acc (one-vs-rest), Precision, Recall, F1 in % as a Markdown table: rows are
    metrics, columns classes (with their test support)."""
    header = [""] + [f"{c} (n={int(n)})" for c, n in zip(class_names, counts, strict=True)]
    lines = [
        *([f"**{title}**", ""] if title else []),
        "| " + " | ".join(header) + " |",
        "|---" + "|---:" * len(class_names) + "|",
    ]
    for key, label in TABLE1_ROWS.items():
        cells = []
        for c in class_names:
            value = metrics.get(f"{key}_{metric_safe(c)}")
            cells.append("—" if value is None or value != value else f"{100 * value:.1f}%")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def plot_confusion_matrix(
    path: str, cm: np.ndarray, class_names: Sequence[str], title: str = ""
) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * k, 1.0 + 0.6 * k), dpi=120)
    rownorm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(rownorm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(int(cm[i, j])),
                ha="center",
                va="center",
                color="white" if rownorm[i, j] > 0.5 else "black",
                fontsize=8,
            )
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (colour: row-normalised)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_skipped(path: str, skipped: Sequence[tuple[str, str]]) -> str | None:
    if not skipped:
        return None
    pd.DataFrame(skipped, columns=["path", "reason"]).to_csv(path, index=False)
    return path


def write_isic_csv(
    path: str,
    records: Sequence[Record],
    labels: np.ndarray,
    class_names: Sequence[str],
    unknown_name: str = "UNK",
) -> str:
    """The records as an ISIC-format ground truth (``image,<CLASS>...`` one-hot, upper-case).

    Labels beyond ``class_names`` (images of an unknown class, ``data.unknown=reject``) go to
    an ``unknown_name`` column, as in ISIC 2019's test ground truth."""
    columns = [c.upper() for c in class_names]
    if len(labels) and int(np.max(labels)) >= len(class_names):
        columns.append(unknown_name.upper())
    onehot = np.eye(len(columns), dtype=np.float64)[labels]
    df = pd.DataFrame(onehot, columns=columns)
    df.insert(0, "image", [r.image_id for r in records])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    df.to_csv(path, index=False, float_format="%.1f")
    return path
