"""Issue 29, item 9: a class with no positive or no negative image in the scored set has no
AUROC. It is NaN (not torchmetrics' 0.0), the macro AUROC averages the classes where it exists,
its interval is NaN, and the per-source table says why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from medcls.data.records import Record
from medcls.evaluation import EvalSettings, Predictions
from medcls.evaluation.report import metric_set
from medcls.metrics import ClassificationMetrics
from medcls.metrics.classification import compute_metrics
from medcls.metrics.sources import source_metrics, write_source_table


def two_sources(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Source ``a``: both classes; source ``b``: every image normal (class 0)."""
    rng = np.random.default_rng(seed)
    labels = np.r_[rng.integers(0, 2, 40), np.zeros(25, int)]
    p_g = np.clip(0.3 * labels + rng.uniform(0, 0.7, len(labels)), 0, 1)
    return np.stack([1 - p_g, p_g], axis=1), labels, ["a"] * 40 + ["b"] * 25


def test_a_source_with_one_class_has_no_auroc_and_says_why(tmp_path) -> None:
    probs, labels, sources = two_sources()
    m = source_metrics(probs, labels, sources, ["normal", "glaucoma"], positive_class=1)
    for key in ("auroc_positive", "auroc_macro", "auroc_glaucoma", "auroc_normal"):
        assert np.isnan(m[f"test/b/{key}"]), key  # torchmetrics' value was 0.0
    a = np.array(sources) == "a"
    expected = roc_auc_score(labels[a], probs[a, 1])  # the other source is unaffected
    assert m["test/a/auroc_positive"] == pytest.approx(expected)
    assert m["test/a/auroc_macro"] == pytest.approx(expected)  # two classes: the same ranking
    assert (m["test/b/images_normal"], m["test/b/images_glaucoma"]) == (25, 0)
    assert m["test/a/images_glaucoma"] == labels[a].sum()

    table = pd.read_csv(write_source_table(str(tmp_path / "t.csv"), m), index_col="source")
    assert np.isnan(table.loc["b", "auroc_positive"]) and np.isnan(table.loc["b", "auroc_macro"])
    assert table.loc["a", "auroc_positive"] == pytest.approx(expected, abs=1e-4)
    assert table.loc["b", "note"] == (
        "AUROC undefined (NaN): class glaucoma has no images in this set (every image is normal)"
    )
    assert pd.isna(table.loc["a", "note"])  # nothing to explain
    assert list(table.columns[:3]) == ["images", "images_normal", "images_glaucoma"]


def test_multiclass_absent_class_is_nan_and_macro_is_over_the_rest() -> None:
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), 30)
    labels = rng.integers(0, 2, 30)  # class c never occurs
    m = ClassificationMetrics(["a", "b", "c"])
    m.update(torch.as_tensor(probs), torch.as_tensor(labels))
    out = m.compute()
    per_class = [roc_auc_score(labels == k, probs[:, k]) for k in (0, 1)]
    assert out["auroc_a"] == pytest.approx(per_class[0])
    assert out["auroc_b"] == pytest.approx(per_class[1])
    assert np.isnan(out["auroc_c"])  # was 0.0
    assert out["auroc_macro"] == pytest.approx(np.mean(per_class))
    from medcls.metrics.classification import auroc_note  # the table's note (new)

    assert auroc_note([20, 10, 0], ["a", "b", "c"]) == (
        "auroc_macro over the 2 of 3 classes where it exists: "
        "class c has no positive images in this set"
    )
    assert auroc_note([12, 18, 5], ["a", "b", "c"]) == ""


def test_every_image_of_one_class_gives_nan_point_and_interval() -> None:
    """All-normal test set: no AUROC at all, and the bootstrap cannot make one up."""
    probs, labels, _ = two_sources()
    keep = slice(40, None)  # source b only
    values, _ = compute_metrics(probs[keep], labels[keep], ["normal", "glaucoma"])
    assert np.isnan(values["auroc_positive"]) and np.isnan(values["auroc_macro"])  # were 0.0
    records = [Record(f"{i}.png", 0, f"p{i // 2}") for i in range(25)]
    pred = Predictions(probs[keep], labels[keep], records, ["normal", "glaucoma"], positive=1)
    out, _ = metric_set(pred, EvalSettings(n_boot=200, curves=False))
    for key in ("auroc_positive", "auroc_macro", "pauc_spec90", "sensitivity_at_spec95"):
        assert np.isnan(out[key]), key
        assert np.isnan(out[f"{key}_ci_low"]) and np.isnan(out[f"{key}_ci_high"]), key
    assert out["accuracy"] == pytest.approx((probs[keep].argmax(1) == 0).mean())  # still scored
