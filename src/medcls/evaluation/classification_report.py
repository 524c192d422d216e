"""scikit-learn's classification report (per-class precision/recall/F1/support, accuracy,
macro and weighted averages) as text and CSV: the table the skin-disease study publishes."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report


def write_classification_report(
    out_dir: str, probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> list[str]:
    """``classification_report.txt`` and ``.csv`` in ``out_dir``; returns both paths.

    Args:
        probs: ``(N, K)`` class probabilities (prediction = argmax).
        labels: ``(N,)`` true class indices into ``class_names``.

    Every class is listed, even one without test images (support 0; undefined precision or
    recall count as 0, as sklearn's ``zero_division=0``).
    """
    os.makedirs(out_dir, exist_ok=True)
    names = [str(c) for c in class_names]
    kwargs = dict(labels=list(range(len(names))), target_names=names, zero_division=0)
    pred = np.asarray(probs).argmax(axis=1)
    txt = os.path.join(out_dir, "classification_report.txt")
    with open(txt, "w") as f:
        f.write(classification_report(labels, pred, digits=4, **kwargs))
    table = classification_report(labels, pred, output_dict=True, **kwargs)
    # sklearn reports "accuracy" as a bare float (or, when some class is absent, "micro avg")
    accuracy = table.pop("accuracy", None)
    df = pd.DataFrame(table).T
    df.index.name = "class"
    if accuracy is not None:  # as in the text: the classes, accuracy, then the averages
        df.loc["accuracy"] = [np.nan, np.nan, accuracy, df.loc["macro avg", "support"]]
        df = df.reindex([*names, "accuracy", *[r for r in df.index if r.endswith(" avg")]])
    df["support"] = df["support"].astype(int)
    csv = os.path.join(out_dir, "classification_report.csv")
    df.to_csv(csv, float_format="%.4f")
    return [txt, csv]
