"""Issue 29, items 9 and 12: a subgroup's undefined AUROC says why, and the largest subgroup
gap gets a bootstrap interval that resamples whole groups (patients, lesions), checked against
a hand-rolled group bootstrap scored with scikit-learn."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from medcls.data.records import Record
from medcls.evaluation import EvalSettings, Predictions
from medcls.evaluation.report import headline_metrics
from medcls.evaluation.subgroups import subgroup_metrics, write_subgroup_files
from medcls.studies import report


def patients(n_groups: int = 80, copies: int = 10, grouped: bool = True, seed: int = 0):
    """``n_groups`` patients of ``copies`` identical images each (one label, one score, one
    sex); the model is better for women. ``grouped=False``: the same images, no group ids."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_groups)
    sex = np.array(["female", "male"] * (n_groups // 2), dtype=object)
    strength = np.where(sex == "female", 2.0, 0.6)
    p = 1 / (1 + np.exp(-(labels * strength + rng.normal(size=n_groups) - strength / 2)))
    rep = np.repeat(np.arange(n_groups), copies)
    records = [
        Record(f"{i}.png", int(labels[g]), f"p{g}" if grouped else None, meta=(("sex", sex[g]),))
        for i, g in enumerate(rep)
    ]
    probs = np.stack([1 - p[rep], p[rep]], axis=1)
    return Predictions(probs, labels[rep], records, ["benign", "malignant"], positive=1)


def score(settings: EvalSettings):
    return lambda sub: headline_metrics(sub, settings, sub.groups)


def hand_rolled_gaps(pred: Predictions, n_boot: int, seed: int = 0, chunk: int = 200):
    """The group bootstrap of female − male, written out: draw G of the G patients with
    replacement (the engine's generator and order of draws), repeat each drawn patient's
    images, score each sex with scikit-learn, 2.5/97.5 percentiles of the defined draws."""
    keys, group_of = np.unique([r.group for r in pred.records], return_inverse=True)
    sex = np.array([r.attributes["sex"] for r in pred.records])
    rng, gaps = np.random.default_rng(seed), {"balanced_accuracy": [], "auroc": []}
    left = n_boot
    while left > 0:
        b = min(chunk, left)
        for counts in rng.multinomial(len(keys), np.full(len(keys), 1 / len(keys)), size=b):
            idx = np.repeat(np.arange(len(group_of)), counts[group_of])
            value = {}
            for s in ("female", "male"):
                i = idx[sex[idx] == s]
                y, p = pred.labels[i], pred.probs[i]
                both = len(np.unique(y)) == 2
                value[s] = (
                    balanced_accuracy_score(y, p.argmax(1)),
                    roc_auc_score(y, p[:, 1]) if both else np.nan,
                )
            gaps["balanced_accuracy"].append(value["female"][0] - value["male"][0])
            gaps["auroc"].append(value["female"][1] - value["male"][1])
        left -= b
    return {k: np.nanpercentile(v, [2.5, 97.5]) for k, v in gaps.items()}


def gap_row(gaps: pd.DataFrame, metric: str) -> pd.Series:
    return gaps[gaps["metric"] == metric].iloc[0]


def test_gap_interval_matches_a_hand_rolled_group_bootstrap(tmp_path) -> None:
    pred = patients()
    settings = EvalSettings(n_boot=300, subgroups=("sex",), curves=False)
    table, flat = subgroup_metrics(pred, settings, score(settings))
    files = write_subgroup_files(str(tmp_path), table, settings.subgroup_min_images, "t")
    gaps = pd.read_csv(files[1])
    expected = hand_rolled_gaps(pred, 300)
    for metric in ("balanced_accuracy", "auroc"):
        row = gap_row(gaps, metric)
        assert (row["best"], row["worst"]) == ("female", "male")
        assert row["gap_ci_low"] == pytest.approx(expected[metric][0], abs=1e-6)
        assert row["gap_ci_high"] == pytest.approx(expected[metric][1], abs=1e-6)
        assert row["gap_ci_low"] < row["gap"] < row["gap_ci_high"]
        stem = f"subgroup/sex/gap_{metric}"
        assert flat[f"{stem}_ci_low"] == pytest.approx(row["gap_ci_low"], abs=1e-6)
        assert flat[f"{stem}_ci_high"] == pytest.approx(row["gap_ci_high"], abs=1e-6)
        assert flat[stem] == pytest.approx(row["gap"], abs=1e-6)


def test_gap_interval_counts_a_patient_once_however_many_copies() -> None:
    """Ten identical photos of a patient are one observation: grouped, the interval is the one
    of one photo per patient; ungrouped (the negative control) it is much too narrow."""
    settings = EvalSettings(n_boot=300, subgroups=("sex",), curves=False, subgroup_min_images=5)
    width = {}
    for name, pred in {
        "grouped": patients(copies=10),
        "one photo each": patients(copies=1),
        "ungrouped": patients(copies=10, grouped=False),
    }.items():
        _, flat = subgroup_metrics(pred, settings, score(settings))
        lo, hi = flat["subgroup/sex/gap_auroc_ci_low"], flat["subgroup/sex/gap_auroc_ci_high"]
        width[name] = (lo, hi)
    assert width["grouped"] == pytest.approx(width["one photo each"], abs=1e-9)
    narrow = np.diff(width["ungrouped"])[0] / np.diff(width["grouped"])[0]
    assert narrow < 0.5  # ≈ 1/√10 when copies count as new patients


def test_a_subgroup_of_one_class_has_no_auroc_says_why_and_is_no_gap_end(tmp_path) -> None:
    pred = patients(copies=2)
    sex = np.array([r.attributes["sex"] for r in pred.records], dtype=object)
    only_benign = (sex == "male") & (pred.labels == 0)
    only_benign[np.flatnonzero(only_benign)[12:]] = False  # 12 benign men become 'other'
    records = [
        Record(r.path, r.label, r.group, meta=(("sex", "other"),)) if ob else r
        for r, ob in zip(pred.records, only_benign, strict=True)
    ]
    pred = Predictions(pred.probs, pred.labels, records, pred.class_names, pred.positive)
    settings = EvalSettings(n_boot=100, subgroups=("sex",), curves=False)
    table, flat = subgroup_metrics(pred, settings, score(settings))
    write_subgroup_files(str(tmp_path), table, settings.subgroup_min_images, "t")
    written = pd.read_csv(tmp_path / "subgroups.csv").set_index("subgroup")
    assert np.isnan(written.loc["other", "auroc"]) and np.isnan(
        written.loc["other", "auroc_ci_low"]
    )
    assert written.loc["other", "note"] == (
        "AUROC undefined (NaN): class malignant has no images in this set (every image is benign)"
    )
    female = sex == "female"
    assert written.loc["female", "auroc"] == pytest.approx(
        roc_auc_score(pred.labels[female], pred.probs[female, 1]), abs=1e-6
    )
    assert pd.isna(written.loc["female", "note"])
    gaps = pd.read_csv(tmp_path / "subgroup_gaps.csv")
    auc = gap_row(gaps, "auroc")  # 'other' (12 images, no AUROC) is left out
    assert {auc["best"], auc["worst"]} == {"female", "male"}
    assert np.isnan(flat["subgroup/sex/other/auroc"])


def test_study_report_shows_the_gap_with_its_interval() -> None:
    pred = patients()
    settings = EvalSettings(n_boot=200, subgroups=("sex",), curves=False)
    _, flat = subgroup_metrics(pred, settings, score(settings))
    run = SimpleNamespace(info=SimpleNamespace(run_id="1"), data=SimpleNamespace(metrics=flat))
    sub = report.subgroup_summary([run], pd.DataFrame({"config": ["A"], "run_id": ["1"]}))
    shown = report.format_subgroups(sub).set_index("subgroup")
    gap, lo, hi = (flat[f"subgroup/sex/gap_auroc{s}"] for s in ("", "_ci_low", "_ci_high"))
    assert shown.loc["largest gap", "auroc"] == f"{gap:.4f} [{lo:.4f}, {hi:.4f}]"
