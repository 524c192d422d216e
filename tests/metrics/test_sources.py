"""Per-source metrics of a combined dataset, and their CSV table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medcls.metrics.classification import compute_metrics
from medcls.metrics.sources import source_metrics, write_source_table


def test_metrics_per_source(tmp_path) -> None:
    labels = np.array([0, 1, 0, 1, 0, 1])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])
    sources = ["a", "a", "a", "a", "b c", "b c"]
    m = source_metrics(probs, labels, sources, ["n", "g"], positive_class=1)
    assert m["test/a/accuracy"] == 1.0 and m["test/a/images"] == 4
    assert m["test/b_c/accuracy"] == 0.0 and m["test/b_c/images"] == 2  # MLflow-safe key
    assert m["test/a/auroc_macro"] == pytest.approx(1.0)
    whole, _ = compute_metrics(probs[:4], labels[:4], ["n", "g"], 1)
    assert m["test/a/balanced_accuracy"] == pytest.approx(whole["balanced_accuracy"])
    assert source_metrics(probs, labels, ["a"] * 6, ["n", "g"]) == {}  # one source: nothing

    table = pd.read_csv(write_source_table(str(tmp_path / "t.csv"), m), index_col="source")
    assert list(table.index) == ["a", "b_c"]
    assert table.loc["a", "accuracy"] == 1.0 and table.loc["b_c", "images"] == 2
    assert {"balanced_accuracy", "auroc_macro", "sensitivity"} <= set(table.columns)
