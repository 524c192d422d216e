"""Subgroup evaluation: age groups from ages, each subgroup's figures against scikit-learn on
that subgroup's images, the largest gap, and the sources' metadata reaching the records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from medcls.data.records import Record
from medcls.errors import DataError
from medcls.evaluation import EvalSettings, Predictions, evaluate
from medcls.evaluation.subgroups import age_group, check_subgroup_attributes


@pytest.mark.parametrize(
    ("age", "group"),
    [("12", "<30"), ("30.0", "30–45"), ("44.9", "30–45"), ("45", "45–60"), ("75", "≥75"),
     ("", None), ("unknown", None), (None, None)],
)  # fmt: skip
def test_age_group_bins(age, group) -> None:
    assert age_group(age, (30, 45, 60, 75)) == group


def people(n: int = 300, seed: int = 0) -> Predictions:
    """Binary predictions that are better for women; sex unknown for every tenth image, a
    tiny 'other' subgroup of 4 images."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    sex = np.array(["female", "male"] * (n // 2), dtype=object)
    sex[::10] = None
    sex[1:9:2] = "other"
    strength = np.where(sex == "female", 2.0, 0.7)
    score = labels * strength + rng.normal(size=n)
    p = 1 / (1 + np.exp(-(score - strength / 2)))
    probs = np.stack([1 - p, p], axis=1)
    records = [
        Record(
            f"i/{i}.png", int(y), f"p{i}", meta=(("sex", s),) if s else (("age", str(20 + i % 60)),)
        )
        for i, (y, s) in enumerate(zip(labels, sex, strict=True))
    ]
    return Predictions(probs, labels, records, ["benign", "malignant"], positive=1)


def test_each_subgroup_is_scored_on_its_own_images(tmp_path) -> None:
    pred = people()
    settings = EvalSettings(n_boot=200, subgroups=("sex",), curves=False)
    m = evaluate(pred, settings, str(tmp_path), "t").metrics
    table = pd.read_csv(tmp_path / "subgroups.csv", keep_default_na=False)
    sex = np.array([r.attributes.get("sex", "unknown") for r in pred.records])
    assert list(table["subgroup"]) == ["female", "male", "other", "unknown"]
    for value in ("female", "male"):
        keep = sex == value
        row = table[table["subgroup"] == value].iloc[0]
        ba = balanced_accuracy_score(pred.labels[keep], pred.probs[keep].argmax(1))
        auc = roc_auc_score(pred.labels[keep], pred.probs[keep, 1])
        assert row["images"] == keep.sum()
        assert row["balanced_accuracy"] == pytest.approx(ba)
        assert row["auroc"] == pytest.approx(auc)
        assert row["auroc_ci_low"] <= auc <= row["auroc_ci_high"]
        assert m[f"subgroup/sex/{value}/auroc"] == pytest.approx(auc)
    # the gap: female vs male only ('other' has 4 < 10 images, 'unknown' is no subgroup)
    female, male = (table[table["subgroup"] == v].iloc[0] for v in ("female", "male"))
    assert m["subgroup/sex/gap_auroc"] == pytest.approx(female["auroc"] - male["auroc"], abs=1e-5)
    gaps = pd.read_csv(tmp_path / "subgroup_gaps.csv")
    auc_gap = gaps[gaps["metric"] == "auroc"].iloc[0]
    assert (auc_gap["best"], auc_gap["worst"]) == ("female", "male")
    assert (tmp_path / "subgroups.png").stat().st_size > 1000


def test_age_group_is_derived_from_the_age_column(tmp_path) -> None:
    pred = people()
    settings = EvalSettings(n_boot=0, subgroups=("age_group",), age_bins=(30, 50), curves=False)
    evaluate(pred, settings, str(tmp_path), "t")
    table = pd.read_csv(tmp_path / "subgroups.csv", keep_default_na=False)
    ages = [int(r.attributes["age"]) for r in pred.records if "age" in r.attributes]
    expected = {"<30": sum(a < 30 for a in ages), "30–50": sum(30 <= a < 50 for a in ages),
                "≥50": sum(a >= 50 for a in ages)}  # fmt: skip
    got = dict(zip(table["subgroup"], table["images"], strict=True))
    assert {k: got[k] for k in expected} == expected
    assert got["unknown"] == len(pred.records) - len(ages)


def test_an_attribute_no_image_carries_is_named_with_the_ones_they_do() -> None:
    records = people().records
    check_subgroup_attributes(records, ["sex", "age_group"])
    with pytest.raises(DataError, match=r"'localisation'.*\['age', 'age_group', 'sex'\]"):
        check_subgroup_attributes(records, ["localisation"])


def test_ham10000_records_carry_their_metadata(helpers, datasets) -> None:
    from medcls.data.sources import load_source

    cfg = helpers.compose_cfg(["data=ham10000", f"data.root={datasets['ham10000']}",
                               "data.classes=[bkl,mel,nv]"]).data  # fmt: skip
    src = load_source(cfg)
    meta = pd.read_csv(datasets["ham10000"] / "HAM10000_metadata.csv", dtype=str)
    by_id = meta.set_index("image_id")
    for r in src.records:
        row = by_id.loc[r.image_id]
        attrs = r.attributes
        assert attrs["age"] == row["age"] and attrs["localization"] == row["localization"]
        assert attrs.get("sex", "unknown") == row["sex"]  # "unknown" is no value
