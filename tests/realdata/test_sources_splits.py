"""The real datasets in ../shared/data (see its README): sources and splits, no decoding."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from medcls.data.sources import load_source
from medcls.data.splits import group_ids, make_splits

pytestmark = pytest.mark.realdata

HAM_COUNTS = {
    "akiec": 327,
    "bcc": 514,
    "bkl": 1099,
    "df": 115,
    "mel": 1113,
    "nv": 6705,
    "vasc": 142,
}


def real_source(helpers, config: str, folder: str):
    """What ``data=<config>`` reads in ``../shared/data/<folder>`` (skips when it is absent)."""
    root = helpers.shared_data(folder)
    return load_source(helpers.compose_cfg([f"data={config}", f"data.root={root}"]).data)


def test_ham10000_metadata(helpers) -> None:
    src = real_source(helpers, "ham10000", "ham10000")
    assert len(src.records) == 10_015
    assert src.class_names == sorted(HAM_COUNTS)
    assert Counter(src.class_names[r.label] for r in src.records) == HAM_COUNTS
    assert len({r.group for r in src.records}) == 7_470
    assert all(r.mask is not None for r in src.records)
    assert src.records[0].image_id == "ISIC_0024306" and src.records[0].group == "HAM_0000550"

    groups = group_ids(src.records)
    labels = np.array([r.label for r in src.records])
    for fold in (None, 3):
        parts = make_splits(src.records, src.class_names, fold=fold, num_folds=5, seed=42)
        lesions = {k: set(groups[v]) for k, v in parts.items()}
        assert not lesions["train"] & lesions["val"]
        assert not lesions["train"] & lesions["test"]
        assert not lesions["val"] & lesions["test"]
        assert sum(len(v) for v in parts.values()) == 10_015
        overall = np.bincount(labels) / len(labels)
        for idx in parts.values():
            share = np.bincount(labels[idx], minlength=7) / len(idx)
            assert np.abs(share - overall).max() < 0.01


def test_covid_ct_official_split(helpers) -> None:
    src = real_source(helpers, "covid_ct", "covid_ct")
    assert src.class_names == ["CT_NonCOVID", "CT_COVID"]
    counts = Counter((r.split, src.class_names[r.label]) for r in src.records)
    assert counts == {
        ("train", "CT_COVID"): 191,
        ("train", "CT_NonCOVID"): 234,
        ("val", "CT_COVID"): 60,
        ("val", "CT_NonCOVID"): 58,
    }
    assert src.notes == []  # every slice is in a list
    parts = make_splits(src.records, src.class_names, seed=42)
    assert len(parts["val"]) == 118  # the official validation set, whole
    assert {src.records[i].split for i in parts["test"]} == {"train"}
    assert len(parts["train"]) + len(parts["test"]) == 425


def test_glaucoma_folders(helpers) -> None:
    src = real_source(helpers, "glaucoma", "glaucoma_airogs")
    assert src.name == "glaucoma_airogs"
    assert src.class_names == ["NRG", "RG"]
    assert Counter(src.class_names[r.label] for r in src.records) == {"NRG": 270, "RG": 270}
    parts = make_splits(src.records, src.class_names, seed=42)
    assert sum(len(v) for v in parts.values()) == 540
