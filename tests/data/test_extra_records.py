"""``data.extra_records``: extra labelled images (pseudo-labels) join training only."""

from __future__ import annotations

import numpy as np
import pytest

from medcls.data.datamodule import ClassificationDataModule
from medcls.data.extra_records import read_extra_records, write_extra_records
from medcls.errors import DataError


def build(cfg, cache_dir) -> ClassificationDataModule:
    dm = ClassificationDataModule(cfg, cache_dir=str(cache_dir))
    dm.setup("fit")
    return dm


@pytest.fixture
def pool(tmp_path, image_folder) -> dict[str, list[str]]:
    """Unlabelled images elsewhere: 3 look like class a, 2 like class c."""
    return image_folder(tmp_path / "pool", {"a": 3, "c": 2}, prefix="pool")


@pytest.fixture
def cfg(data_cfg, folder_dataset):
    return lambda **kw: data_cfg(
        "imagefolder", root=str(folder_dataset), image_size=16, batch_size=4, **kw
    )


def test_extra_records_join_training_of_every_fold_only(cfg, pool, tmp_path) -> None:
    csv = write_extra_records(
        str(tmp_path / "pseudo.csv"), [*pool["a"], *pool["c"]], ["a", "a", "a", "c", "c"]
    )
    for fold in (0, 1):
        plain = build(cfg(fold=fold, num_folds=2), tmp_path / "cache")
        dm = build(cfg(fold=fold, num_folds=2, extra_records=csv), tmp_path / "cache")
        for name in ("val", "test"):  # untouched
            assert dm.partitions[name].tolist() == plain.partitions[name].tolist()
        added = np.setdiff1d(dm.partitions["train"], plain.partitions["train"])
        assert [dm.records[i].path for i in added] == [*pool["a"], *pool["c"]]
        assert dm.labels[added].tolist() == [0, 0, 0, 2, 2]
        assert dm.class_counts.tolist() == (plain.class_counts + [3, 0, 2]).tolist()
        # the decoded arrays grew with the records: a training item is the pool image
        item = dm.dataset("train")[len(dm.partitions["train"]) - 1]
        assert item["index"] == len(dm.records) - 1 and item["label"] == 2
        assert item["image"].shape == (3, 16, 16)
        assert len(dm.decoded.images) == len(dm.records) == len(dm.labels)


def test_relative_paths_and_an_empty_csv(cfg, pool, tmp_path) -> None:
    csv = tmp_path / "pool" / "rel.csv"
    csv.write_text("path,label\na/pool000.jpg,a\n")
    (record,) = read_extra_records(str(csv), ["a", "b", "c"])
    assert record.path == pool["a"][0] and record.label == 0
    empty = tmp_path / "empty.csv"
    empty.write_text("path,label\n")
    plain = build(cfg(), tmp_path / "cache")
    dm = build(cfg(extra_records=str(empty)), tmp_path / "cache")
    assert dm.partitions["train"].tolist() == plain.partitions["train"].tolist()


def test_a_validation_image_cannot_be_an_extra_training_image(cfg, tmp_path) -> None:
    plain = build(cfg(), tmp_path / "cache")
    val = plain.records_of("val")[0]
    csv = write_extra_records(str(tmp_path / "x.csv"), [val.path], ["a"])
    with pytest.raises(DataError, match=r"also in the validation partition"):
        build(cfg(extra_records=csv), tmp_path / "cache")


def test_test_images_as_extra_records_are_flagged(cfg, tmp_path) -> None:
    plain = build(cfg(), tmp_path / "cache")
    test = plain.records_of("test")
    csv = write_extra_records(str(tmp_path / "t.csv"), [r.path for r in test], ["a"] * len(test))
    dm = build(cfg(extra_records=csv), tmp_path / "cache")
    assert any("are test images" in n for n in dm.notes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,class\nx.jpg,a\n", r"column\(s\) \['path', 'label'\] missing"),
        ("path,label\n{img},zebra\n", r"label\(s\) \['zebra'\] are not classes"),
        ("path,label\n/nowhere/x.jpg,a\n", r"missing:\n  /nowhere/x.jpg"),
        ("", r"the file is empty"),
    ],
)
def test_bad_csv_names_the_file_and_the_fix(cfg, pool, tmp_path, text, message) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(text.format(img=pool["a"][0]))
    with pytest.raises(DataError, match=message) as e:
        build(cfg(extra_records=str(csv)), tmp_path / "cache")
    assert "data.extra_records=" in str(e.value)


def test_missing_csv(cfg, tmp_path) -> None:
    with pytest.raises(DataError, match=r"does not exist.*path,label"):
        build(cfg(extra_records=str(tmp_path / "nope.csv")), tmp_path / "cache")
