"""Issue 29, item 12: McNemar's test counts a patient (lesion) once, not once per image:
Durkalski's clustered statistic, with its exact sign-flip p-value for few discordant groups,
checked against the per-group computation and a brute-force enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from medcls.studies import report
from medcls.studies.stats import mcnemar

CLASSES = ["a", "b", "c"]


class FakeClient:
    """Serves prediction CSVs as MLflow artifacts: ``{run_id: path}``."""

    def __init__(self, files: dict) -> None:
        self.files = files

    def download_artifacts(self, run_id: str, name: str) -> str:
        if name != "test_predictions.csv":
            raise OSError(f"no artifact {name} in {run_id}")
        return str(self.files[run_id])


def predictions(path, labels: np.ndarray, preds: np.ndarray, groups: list[str]):
    """A test_predictions.csv: confident predictions ``preds`` of ``labels``."""
    probs = np.full((len(labels), len(CLASSES)), 0.1)
    probs[np.arange(len(labels)), preds] = 0.8
    pd.DataFrame(
        {
            "path": [f"img{i:03d}.png" for i in range(len(labels))],
            "group": groups,
            "label": [CLASSES[i] for i in labels],
            **{f"p_{c}": probs[:, j] for j, c in enumerate(CLASSES)},
        }
    ).to_csv(path, index=False)
    return path


def copies_of(only_a: int, only_b: int, both: int, copies: int):
    """Groups of ``copies`` identical images: ``only_a`` groups only A gets right, ``only_b``
    only B, ``both`` both. Returns image-level ``y, pred_a, pred_b, groups``."""
    y = np.zeros(only_a + only_b + both, int)
    a = np.r_[np.zeros(only_a, int), np.ones(only_b, int), np.zeros(both, int)]
    b = np.r_[np.ones(only_a, int), np.zeros(only_b, int), np.zeros(both, int)]
    rep = np.repeat(np.arange(len(y)), copies)
    return y[rep], a[rep], b[rep], np.array([f"g{g}" for g in rep])


def test_ten_copies_of_each_image_are_one_observation_exact_branch() -> None:
    y, a, b, groups = copies_of(only_a=3, only_b=9, both=20, copies=10)
    naive = mcnemar(y, a, b)  # 30 vs 90 discordant "images"
    grouped = mcnemar(y, a, b, groups=groups)
    per_group = mcnemar(*(v[::10] for v in (y, a, b)))  # one image per group, by hand
    assert (grouped["only_a_correct"], grouped["only_b_correct"]) == (30, 90)
    assert naive["p_value"] < 1e-7
    assert grouped["p_value"] == pytest.approx(stats.binomtest(3, 12, 0.5).pvalue)
    assert grouped["p_value"] == pytest.approx(per_group["p_value"])
    assert grouped["p_value"] > 1e5 * naive["p_value"]
    assert (grouped["unit"], grouped["units"], grouped["discordant_units"]) == ("group", 32, 12)
    assert "Durkalski" in grouped["method"] and naive["unit"] == "image"


def test_ten_copies_chi_square_branch_is_the_group_level_statistic() -> None:
    y, a, b, groups = copies_of(only_a=15, only_b=25, both=10, copies=10)
    grouped = mcnemar(y, a, b, groups=groups)
    by_hand = (25 - 15) ** 2 / (25 + 15)  # McNemar of the 40 discordant groups (no correction)
    assert grouped["statistic"] == pytest.approx(by_hand)
    assert grouped["p_value"] == pytest.approx(stats.chi2.sf(by_hand, 1))
    assert grouped["p_value"] > 100 * mcnemar(y, a, b)["p_value"]


def test_unequal_groups_against_the_formula_and_brute_force() -> None:
    """Groups of different sizes with mixed discordance: statistic (Σ d)² / Σ d² of the
    per-group ``d = b - c``, p-value enumerated over every sign pattern of the 8 groups."""
    # per group: (images only A right, only B right, both right)
    spec = [(3, 0, 1), (0, 1, 0), (2, 0, 2), (0, 4, 0), (1, 1, 3), (2, 0, 0), (0, 0, 5), (5, 1, 0)]
    spec += [(1, 0, 0), (0, 2, 1)]
    y, a, b, groups = [], [], [], []
    for g, (only_a, only_b, both) in enumerate(spec):
        n = only_a + only_b + both
        y += [0] * n
        a += [0] * only_a + [1] * only_b + [0] * both
        b += [1] * only_a + [0] * only_b + [0] * both
        groups += [f"g{g}"] * n
    out = mcnemar(np.array(y), np.array(a), np.array(b), groups=np.array(groups))
    d = np.array([oa - ob for oa, ob, _ in spec])
    assert out["statistic"] == pytest.approx(d.sum() ** 2 / (d**2).sum())
    nonzero = d[d != 0]
    flips = [abs(np.dot(s, nonzero)) for s in itertools.product((1, -1), repeat=len(nonzero))]
    expected = np.mean(np.array(flips) >= abs(d.sum()))
    assert out["p_value"] == pytest.approx(expected)
    assert out["discordant_units"] == len(nonzero)  # (1, 1, 3): b = c, no discordance


def test_groups_of_one_image_keep_the_classical_test() -> None:
    y, a, b, _ = copies_of(only_a=4, only_b=30, both=10, copies=1)
    alone = mcnemar(y, a, b, groups=np.array([f"g{i}" for i in range(len(y))]))
    classical = mcnemar(y, a, b)
    assert {k: v for k, v in alone.items() if k != "method"} == {
        k: v for k, v in classical.items() if k != "method"
    }
    assert alone["unit"] == "image" and "every group is one image" in alone["method"]
    assert alone["statistic"] == pytest.approx((abs(4 - 30) - 1) ** 2 / 34)  # continuity


def test_compare_configs_counts_patients_once(tmp_path) -> None:
    """medcls-report compare=[A, B]: predictions with a group column get the clustered test."""
    labels = np.arange(60) % 3
    worse = labels.copy()
    worse[:20] = (labels[:20] + 1) % 3  # A misses the 20 images of 4 patients that B gets right
    groups = [f"p{i // 5}" for i in range(60)]  # 12 patients of 5 images
    files = {
        "a": predictions(tmp_path / "a.csv", labels, worse, groups),
        "b": predictions(tmp_path / "b.csv", labels, labels, groups),
    }
    table = pd.DataFrame({"config": ["A", "B"], "run_id": ["a", "b"]})
    m = report.compare_configs(table, FakeClient(files), "A", "B", "accuracy", 100)["mcnemar"]
    assert (m["only_a_correct"], m["only_b_correct"]) == (0, 20)
    assert (m["unit"], m["units"], m["discordant_units"]) == ("group", 12, 4)
    assert m["p_value"] == pytest.approx(stats.binomtest(0, 4, 0.5).pvalue)  # 0.125, not 2e-6
