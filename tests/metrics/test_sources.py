"""Per-source metrics of a combined dataset, and their CSV table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medcls.metrics.sources import source_metrics, write_source_table


def test_metrics_per_source(tmp_path) -> None:
    """Per-source figures against values worked out by hand (not by the metric code itself)."""
    # source a: true n n n g g, predicted n n g g n -> recall(n) 2/3, recall(g) 1/2
    # p(g) of the n images 0.1 0.2 0.6, of the g images 0.7 0.45: 5 of 6 pairs ordered -> AUC 5/6
    # source "b c": true n g, predicted g g -> accuracy 1/2, balanced accuracy (0 + 1) / 2
    labels = np.array([0, 0, 0, 1, 1, 0, 1])
    p_g = np.array([0.1, 0.2, 0.6, 0.7, 0.45, 0.6, 0.8])
    probs = np.stack([1 - p_g, p_g], axis=1)
    sources = ["a"] * 5 + ["b c"] * 2
    m = source_metrics(probs, labels, sources, ["n", "g"], positive_class=1)
    assert m["test/a/images"] == 5 and m["test/b_c/images"] == 2  # MLflow-safe key
    assert m["test/a/accuracy"] == pytest.approx(3 / 5)
    assert m["test/a/balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["test/a/sensitivity"] == pytest.approx(1 / 2)
    assert m["test/a/specificity"] == pytest.approx(2 / 3)
    assert m["test/a/auroc_macro"] == pytest.approx(5 / 6)
    assert m["test/b_c/accuracy"] == pytest.approx(1 / 2)
    assert m["test/b_c/balanced_accuracy"] == pytest.approx(1 / 2)
    assert m["test/b_c/auroc_macro"] == pytest.approx(1.0)
    assert source_metrics(probs, labels, ["a"] * 7, ["n", "g"]) == {}  # one source: nothing

    table = pd.read_csv(write_source_table(str(tmp_path / "t.csv"), m), index_col="source")
    assert list(table.index) == ["a", "b_c"]
    assert table.loc["a", "accuracy"] == pytest.approx(0.6) and table.loc["b_c", "images"] == 2
    assert {"balanced_accuracy", "auroc_macro", "sensitivity"} <= set(table.columns)
