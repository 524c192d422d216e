"""make_splits: grouped, stratified, seeded holdout / K-fold / official partitions."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from medcls.data.records import Record
from medcls.data.splits import group_ids, make_splits
from medcls.errors import DataError

CLASSES = ["a", "b", "c"]


def grouped_records(n_groups: int = 300, seed: int = 0, props=(0.55, 0.32, 0.13)) -> list[Record]:
    """1-3 images per group, one label per group, imbalanced classes."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(props), size=n_groups, p=props)
    sizes = rng.integers(1, 4, size=n_groups)
    return [
        Record(f"/d/g{g:03d}_{j}.png", int(labels[g]), group=f"g{g:03d}")
        for g in range(n_groups)
        for j in range(sizes[g])
    ]


RECORDS = grouped_records()
LABELS = np.array([r.label for r in RECORDS])
GROUPS = group_ids(RECORDS)


def assert_no_shared_group(parts: dict[str, np.ndarray], groups: np.ndarray = GROUPS) -> None:
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = set(groups[parts[a]]) & set(groups[parts[b]])
            assert not shared, f"groups {sorted(shared)[:3]} in both {a} and {b}"


def assert_partition_of(parts: dict[str, np.ndarray], n: int) -> None:
    together = np.concatenate(list(parts.values()))
    assert len(together) == n, "partitions overlap or lose samples"
    assert set(together.tolist()) == set(range(n))


def test_group_ids_give_ungrouped_records_their_own_group() -> None:
    recs = [Record("a.png", 0, "p1"), Record("b.png", 0), Record("c.png", 1), Record("d", 1, "p1")]
    g = group_ids(recs)
    assert g[0] == g[3]
    assert len({g[1], g[2], g[0]}) == 3


def test_holdout_partitions_are_disjoint_grouped_and_sized() -> None:
    parts = make_splits(RECORDS, CLASSES, seed=1)
    assert_partition_of(parts, len(RECORDS))
    assert_no_shared_group(parts)
    n = len(RECORDS)
    assert abs(len(parts["test"]) / n - 0.2) < 0.03
    # val_fraction is a share of what is left after the test part
    assert abs(len(parts["val"]) / (n - len(parts["test"])) - 0.2) < 0.03


@pytest.mark.parametrize("fold", [None, 0, 1, 2, 3, 4])
def test_every_partition_keeps_class_proportions_and_groups(fold) -> None:
    parts = make_splits(RECORDS, CLASSES, fold=fold, num_folds=5, seed=3)
    assert_no_shared_group(parts)
    overall = np.bincount(LABELS) / len(LABELS)
    for name, idx in parts.items():
        share = np.bincount(LABELS[idx], minlength=3) / len(idx)
        # a random grouped 20% split is off by ~0.06 here; stratified stays within 0.01
        assert np.abs(share - overall).max() < 0.02, (name, share, overall)


def test_folds_cover_every_non_test_sample_once_and_share_the_test_set() -> None:
    k = 4
    folds = [make_splits(RECORDS, CLASSES, fold=f, num_folds=k, seed=7) for f in range(k)]
    test = folds[0]["test"]
    for parts in folds:
        np.testing.assert_array_equal(parts["test"], test)
        assert_partition_of(parts, len(RECORDS))
    vals = np.concatenate([p["val"] for p in folds])
    non_test = np.setdiff1d(np.arange(len(RECORDS)), test)
    assert len(vals) == len(non_test)  # nobody validated twice
    np.testing.assert_array_equal(np.sort(vals), non_test)  # nobody left out
    # the fold's training set is everything else that is not test
    for parts in folds:
        np.testing.assert_array_equal(parts["train"], np.setdiff1d(non_test, parts["val"]))


def test_same_seed_same_split_other_seed_other_split() -> None:
    for fold in (None, 2):
        a = make_splits(RECORDS, CLASSES, fold=fold, seed=11)
        b = make_splits(RECORDS, CLASSES, fold=fold, seed=11)
        c = make_splits(RECORDS, CLASSES, fold=fold, seed=12)
        for name in ("train", "val", "test"):
            np.testing.assert_array_equal(a[name], b[name])
        assert not np.array_equal(a["test"], c["test"])
        assert not np.array_equal(a["val"], c["val"])


def test_test_fraction_zero_means_no_test_partition() -> None:
    parts = make_splits(RECORDS, CLASSES, test_fraction=0.0, seed=1)
    assert parts["test"].size == 0
    assert_partition_of(parts, len(RECORDS))


@pytest.mark.parametrize("fold", [5, -1, 9])
def test_fold_out_of_range_is_a_data_error(fold) -> None:
    with pytest.raises(DataError, match=rf"data.fold={fold} is outside 0..4"):
        make_splits(RECORDS, CLASSES, fold=fold, num_folds=5)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"fold": 0, "num_folds": 1}, r"data\.num_folds=1: cross-validation needs 2 or more"),
        ({"val_fraction": 0.0}, r"data\.val_fraction=0\.0: use a share in \(0, 1\)"),
        ({"val_fraction": 1.0}, r"data\.val_fraction=1\.0"),
        ({"test_fraction": -0.1}, r"data\.test_fraction=-0\.1: use a share in \[0, 1\)"),
        ({"test_fraction": 1.0}, r"data\.test_fraction=1\.0"),
    ],
)
def test_bad_fractions_and_fold_counts(kwargs, pattern) -> None:
    with pytest.raises(DataError, match=pattern):
        make_splits(RECORDS, CLASSES, **kwargs)


def test_too_few_groups_for_the_folds() -> None:
    recs = [Record(f"{i}.png", i % 2, group=f"p{i % 4}") for i in range(16)]
    with pytest.raises(DataError, match=r"cannot make 5 grouped folds from \d group\(s\)"):
        make_splits(recs, ["x", "y"], fold=0, num_folds=5, test_fraction=0.0)


def test_too_few_images_per_class_is_a_data_error() -> None:
    recs = [Record(f"{i}.png", i % 3) for i in range(9)]  # 3 per class, 5 folds wanted
    with pytest.raises(
        DataError, match=r"cannot split 9 images into 5 stratified folds .*num_folds"
    ):
        make_splits(recs, CLASSES, seed=0)


def test_class_too_small_for_a_partition_names_class_and_partition() -> None:
    # class "rare" has 2 images: a 5-fold validation fold cannot always hold one
    recs = [Record(f"c{i}.png", i % 2) for i in range(60)]
    recs += [Record("r0.png", 2), Record("r1.png", 2)]
    with pytest.raises(DataError, match=r"\['rare'\] have no images in the (val|test) partition"):
        for fold in range(5):
            make_splits(recs, ["x", "y", "rare"], fold=fold, num_folds=5, seed=0)


# -- official splits ---------------------------------------------------------------------------
def official_records(with_val: bool, with_test: bool) -> list[Record]:
    """Grouped records; every 5th group officially val, every 7th officially test."""
    out = []
    for r in RECORDS:
        g = int(r.group[1:])
        split = "train"
        if with_val and g % 5 == 0:
            split = "val"
        elif with_test and g % 7 == 0:
            split = "test"
        out.append(Record(r.path, r.label, r.group, split=split))
    return out


def official_idx(recs: list[Record], split: str) -> np.ndarray:
    return np.array([i for i, r in enumerate(recs) if r.split == split])


def test_official_train_val_test_used_as_given() -> None:
    recs = official_records(with_val=True, with_test=True)
    parts = make_splits(recs, CLASSES, seed=0)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(parts[name], official_idx(recs, name))


def test_official_val_kept_whole_and_test_carved_from_train() -> None:
    recs = official_records(with_val=True, with_test=False)
    parts = make_splits(recs, CLASSES, test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(parts["val"], official_idx(recs, "val"))
    official_train = official_idx(recs, "train")
    assert set(parts["test"]) <= set(official_train)
    assert abs(len(parts["test"]) / len(official_train) - 0.2) < 0.03
    assert_partition_of(parts, len(recs))
    assert_no_shared_group(parts)


def test_official_test_kept_and_val_carved_from_train() -> None:
    recs = official_records(with_val=False, with_test=True)
    parts = make_splits(recs, CLASSES, seed=0)
    np.testing.assert_array_equal(parts["test"], official_idx(recs, "test"))
    assert set(parts["val"]) <= set(official_idx(recs, "train"))
    assert len(parts["val"]) > 0
    assert_partition_of(parts, len(recs))
    assert_no_shared_group(parts)


def test_official_test_is_fixed_across_folds() -> None:
    recs = official_records(with_val=False, with_test=True)
    folds = [make_splits(recs, CLASSES, fold=f, num_folds=3, seed=0) for f in range(3)]
    for parts in folds:
        np.testing.assert_array_equal(parts["test"], official_idx(recs, "test"))
        assert_no_shared_group(parts)
    vals = np.sort(np.concatenate([p["val"] for p in folds]))
    np.testing.assert_array_equal(vals, official_idx(recs, "train"))


def test_official_split_ignored_when_switched_off() -> None:
    recs = official_records(with_val=True, with_test=True)
    parts = make_splits(recs, CLASSES, seed=0, use_official_split=False)
    assert not np.array_equal(parts["test"], official_idx(recs, "test"))
    assert_no_shared_group(parts)


def test_official_split_crossing_groups_is_reported_not_refused(caplog) -> None:
    recs = [Record(f"{i}.png", i % 2, group=f"p{i // 2}", split="train") for i in range(20)]
    recs += [Record("x.png", 0, group="p0", split="val"), Record("y.png", 1, "p1", split="val")]
    with caplog.at_level(logging.WARNING, logger="medcls.data.splits"):
        parts = make_splits(recs, ["x", "y"], test_fraction=0.0, seed=0)
    assert parts["val"].tolist() == [20, 21]
    assert "official split puts 2 group(s) in two partitions" in caplog.text


def crossing_val_records() -> list[Record]:
    """Published train/val lists that put one patient in both: every 5th group has its first
    image in official val and the rest in official train (one group, two partitions)."""
    out = []
    for r in RECORDS:
        g = int(r.group[1:])
        split = "val" if g % 5 == 0 and r.path.endswith("_0.png") else "train"
        out.append(Record(r.path, r.label, r.group, split=split))
    return out


def test_official_val_groups_never_reach_the_carved_test_part(caplog) -> None:
    """A patient in both published lists stays out of the test part medcls carves (train and
    val share it as published, and that is reported)."""
    recs = crossing_val_records()
    groups = group_ids(recs)
    with caplog.at_level(logging.WARNING, logger="medcls.data.splits"):
        parts = make_splits(recs, CLASSES, test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(parts["val"], official_idx(recs, "val"))
    assert not set(groups[parts["test"]]) & set(groups[parts["val"]])
    assert not set(groups[parts["test"]]) & set(groups[parts["train"]])
    assert len(parts["test"]) > 0.15 * len(recs)
    assert "official split puts" in caplog.text  # the published train/val crossing


@pytest.mark.parametrize("fold", [0, 1, 2])
def test_official_val_with_folds_is_carved_by_group_over_everything(fold) -> None:
    """With data.fold the official val joins the CV pool: the test part and the folds are carved
    by whole groups over all records, so no patient sits in train and test."""
    recs = crossing_val_records()
    parts = make_splits(recs, CLASSES, fold=fold, num_folds=3, test_fraction=0.2, seed=0)
    assert_partition_of(parts, len(recs))
    assert_no_shared_group(parts, group_ids(recs))


def test_folds_on_an_official_split_that_crosses_are_refused() -> None:
    recs = [Record(f"{i}.png", i % 2, group=f"p{i // 2}", split="train") for i in range(40)]
    recs += [Record("x.png", 0, group="p0", split="test"), Record("y.png", 1, "p1", split="test")]
    make_splits(recs, ["x", "y"], seed=0)  # used as published: reported only
    with pytest.raises(
        DataError,
        match=r"official split puts 2 group\(s\) in two partitions.*"
        r"data\.use_official_split=false",
    ):
        make_splits(recs, ["x", "y"], fold=0, num_folds=2, seed=0)
    parts = make_splits(recs, ["x", "y"], fold=0, num_folds=2, seed=0, use_official_split=False)
    assert_no_shared_group(parts, group_ids(recs))


def test_carved_test_part_is_the_same_with_and_without_folds() -> None:
    """An official val list and no test list (COVID-CT-like): the test part medcls carves is the
    same for fold=None and every fold=k, so a fold ensemble and medcls-eval score exactly the
    images each fold model held out (it once depended on the fold)."""
    recs = official_records(with_val=True, with_test=False)
    holdout = make_splits(recs, CLASSES, test_fraction=0.2, seed=3)["test"]
    assert len(holdout) > 0
    for fold in range(3):
        parts = make_splits(recs, CLASSES, fold=fold, num_folds=3, test_fraction=0.2, seed=3)
        np.testing.assert_array_equal(parts["test"], holdout)
        assert_partition_of(parts, len(recs))
