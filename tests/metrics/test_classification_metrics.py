"""ClassificationMetrics: known confusions give known numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medcls.metrics import ClassificationMetrics
from medcls.metrics.classification import metric_safe


def onehot_probs(pred: list[int], k: int, confidence: float = 0.9) -> torch.Tensor:
    p = torch.full((len(pred), k), (1 - confidence) / (k - 1))
    p[torch.arange(len(pred)), torch.tensor(pred)] = confidence
    return p


def known_3class() -> tuple[list[int], list[int]]:
    # class 0: 8/10 right (2 → class 1); class 1: 5/5 right; class 2: 1/5 right (4 → class 0)
    target = [0] * 10 + [1] * 5 + [2] * 5
    pred = [0] * 8 + [1] * 2 + [1] * 5 + [2] + [0] * 4
    return target, pred


def test_known_confusion_gives_known_metrics() -> None:
    target, pred = known_3class()
    m = ClassificationMetrics(["a", "b", "c"])
    # two updates: metrics accumulate over batches
    m.update(onehot_probs(pred[:7], 3), torch.tensor(target[:7]))
    m.update(onehot_probs(pred[7:], 3), torch.tensor(target[7:]))
    out = m.compute()
    assert torch.equal(m.confusion_matrix().cpu(), torch.tensor([[8, 2, 0], [0, 5, 0], [4, 0, 1]]))
    assert out["accuracy"] == pytest.approx(14 / 20)
    assert out["balanced_accuracy"] == pytest.approx((0.8 + 1.0 + 0.2) / 3)
    assert out["recall_macro"] == pytest.approx(out["balanced_accuracy"])
    assert out["recall_a"] == pytest.approx(0.8)
    assert out["recall_c"] == pytest.approx(0.2)
    assert out["precision_a"] == pytest.approx(8 / 12)
    assert out["precision_b"] == pytest.approx(5 / 7)
    assert out["precision_c"] == pytest.approx(1.0)
    assert out["f1_b"] == pytest.approx(2 * (5 / 7) / (5 / 7 + 1))
    # one-vs-rest accuracy of a: tp 8 + tn (5 + 1 + 0 + 0 = 6 not-a rows predicted not-a) / 20
    assert out["accuracy_a"] == pytest.approx((8 + 6) / 20)
    assert "top2_accuracy" in out and "top3_accuracy" not in out  # top-k only below k
    assert "sensitivity" not in out
    assert all(math.isfinite(v) for v in out.values())


def test_reset_forgets() -> None:
    m = ClassificationMetrics(["a", "b", "c"])
    target, pred = known_3class()
    m.update(onehot_probs(pred, 3), torch.tensor(target))
    m.reset()
    m.update(onehot_probs([0, 1, 2], 3), torch.tensor([0, 1, 2]))
    assert m.compute()["balanced_accuracy"] == pytest.approx(1.0)


@pytest.mark.parametrize("positive", [1, 0])
def test_binary_sensitivity_specificity(positive: int) -> None:
    # class 1 ("disease"): 6/8 found; class 0: 9/12 correctly negative
    target = [1] * 8 + [0] * 12
    pred = [1] * 6 + [0] * 2 + [0] * 9 + [1] * 3
    m = ClassificationMetrics(["healthy", "disease"], positive_class=positive)
    m.update(onehot_probs(pred, 2), torch.tensor(target))
    out = m.compute()
    sens, spec = (6 / 8, 9 / 12) if positive == 1 else (9 / 12, 6 / 8)
    assert out["sensitivity"] == pytest.approx(sens)
    assert out["specificity"] == pytest.approx(spec)
    assert out["balanced_accuracy"] == pytest.approx((6 / 8 + 9 / 12) / 2)
    assert "top2_accuracy" not in out


def test_auroc_perfect_ranking_and_absent_class() -> None:
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])
    m = ClassificationMetrics(["a", "b", "c"])
    m.update(probs, torch.tensor([0, 0, 1, 1]))  # class c never occurs
    out = m.compute()
    assert out["auroc_a"] == pytest.approx(1.0)
    assert out["auroc_b"] == pytest.approx(1.0)
    assert out["auroc_macro"] == pytest.approx(1.0)  # the absent class does not drag it down


def test_metric_safe_names() -> None:
    assert metric_safe("CT_COVID") == "CT_COVID"
    assert metric_safe("basal cell/carcinoma (BCC)") == "basal_cell_carcinoma__BCC_"
    m = ClassificationMetrics(["a b", "c"])
    m.update(onehot_probs([0, 1], 2), torch.tensor([0, 1]))
    assert "recall_a_b" in m.compute()


def test_balanced_accuracy_is_over_the_classes_present_everywhere(caplog) -> None:
    """One definition (scikit-learn's): class c has no true image but is predicted twice. Its
    recall does not exist, so it is not averaged in as 0; the training metrics, the bootstrap's
    metric and the attention branch agree, and the run says that c was predicted."""
    from sklearn.metrics import balanced_accuracy_score

    from medcls.metrics.attention import AttentionMetrics
    from medcls.metrics.balanced import balanced_accuracy

    target = [0] * 6 + [1] * 4
    pred = [0, 0, 0, 0, 2, 2, 1, 1, 1, 0]  # a: 4/6 (2 → c), b: 3/4
    expected = (4 / 6 + 3 / 4) / 2
    assert balanced_accuracy_score(target, pred) == pytest.approx(expected)
    m = ClassificationMetrics(["a", "b", "c"])
    m.update(onehot_probs(pred, 3), torch.tensor(target))
    with caplog.at_level("WARNING"):
        out = m.compute()
    assert out["balanced_accuracy"] == pytest.approx(expected)
    assert out["recall_macro"] == pytest.approx(expected)
    assert "class(es) c that no target has" in caplog.text
    assert balanced_accuracy(np.array(target), np.array(pred)) == pytest.approx(expected)
    att = AttentionMetrics(3)
    att.update(onehot_probs(pred, 3), torch.rand(10, 1, 2, 2), torch.tensor(target))
    assert att.compute()["attention_branch_balanced_accuracy"] == pytest.approx(expected)


def test_no_warning_when_every_predicted_class_has_targets(caplog) -> None:
    target, pred = known_3class()
    m = ClassificationMetrics(["a", "b", "c"])
    m.update(onehot_probs(pred, 3), torch.tensor(target))
    with caplog.at_level("WARNING"):
        m.compute()
    assert "no target has" not in caplog.text
