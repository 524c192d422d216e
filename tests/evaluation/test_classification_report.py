"""sklearn's classification report as a text and CSV artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medcls.evaluation.classification_report import write_classification_report


def test_report_rows_and_values(tmp_path: Path) -> None:
    labels = np.array([0, 1, 1, 1, 2, 0])
    probs = np.eye(3)[[0, 1, 2, 1, 2, 1]]  # predictions 0 1 2 1 2 1
    txt, csv = write_classification_report(str(tmp_path), probs, labels, ["mel", "nv", "bcc"])
    df = pd.read_csv(csv, index_col="class")
    assert list(df.index) == ["mel", "nv", "bcc", "accuracy", "macro avg", "weighted avg"]
    assert list(df.columns) == ["precision", "recall", "f1-score", "support"]
    assert df.loc["mel"].tolist() == pytest.approx([1.0, 0.5, 2 / 3, 2], abs=1e-4)
    assert df.loc["nv", ["precision", "recall"]].tolist() == pytest.approx([2 / 3, 2 / 3], abs=1e-4)
    assert df.loc["accuracy", "f1-score"] == pytest.approx(4 / 6, abs=1e-4)
    assert df.loc["weighted avg", "support"] == 6
    text = Path(txt).read_text()
    assert "macro avg" in text and "weighted avg" in text and "bcc" in text


def test_class_without_test_images_is_listed(tmp_path: Path) -> None:
    labels = np.array([0, 0, 1])
    probs = np.eye(3)[[0, 1, 1]]
    _, csv = write_classification_report(str(tmp_path), probs, labels, ["a", "b", "c"])
    df = pd.read_csv(csv, index_col="class")
    assert df.loc["c"].tolist() == [0.0, 0.0, 0.0, 0]
    assert "accuracy" in df.index
