"""isic_csv: an official test list (data.test_csv) takes its images' groups and subgroup
attributes from data.test_metadata_csv, not from the training metadata (issue 29, item 10)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from medcls.data.sources import load_source
from medcls.errors import DataError

CLASSES = ["MEL", "NV", "BCC"]
COLUMNS = ["sex", "age_approx", "anatom_site_general"]  # conf/data/isic_csv.yaml's default


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def read_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def read_ids(path: Path) -> list[str]:
    return [row["image"] for row in read_rows(path)]


@pytest.fixture
def isic(tmp_path, helpers) -> Path:
    """Training list (3 × 4 images) with metadata, test list (3 × 2) with its own metadata:
    other sexes, ages and sites than the training images, a shared lesion, no value for one."""
    helpers.make_isic_csv(tmp_path, CLASSES, per_class=4, empty_classes=())
    helpers.make_isic_csv(
        tmp_path, CLASSES, 2, (), csv_name="Test.csv", images_dir="test_images", seed=1
    )
    train = read_ids(tmp_path / "GroundTruth.csv")
    write_csv(
        tmp_path / "Meta.csv",
        [{"image": i, "sex": "male", "age_approx": "70", "lesion_id": f"L{k}"}
         for k, i in enumerate(train)],
    )  # fmt: skip
    test = read_ids(tmp_path / "Test.csv")
    rows = [
        {
            "image": i,
            "age_approx": str(20 + 5 * k),
            "anatom_site_general": ["back", "face"][k % 2],
            "sex": "female" if k % 3 else "",  # empty: no value
            "lesion_id": "T_SAME" if k < 2 else "",
        }
        for k, i in enumerate(test)
    ]
    write_csv(tmp_path / "TestMeta.csv", rows)
    return tmp_path


def cfg_for(data_cfg, root: Path, **extra):
    return data_cfg(
        "isic_csv",
        root=str(root),
        csv="GroundTruth.csv",
        images_dir="images",
        metadata_csv="Meta.csv",
        test_csv="Test.csv",
        test_images_dir="test_images",
        **extra,
    )


def test_test_images_carry_the_test_metadata(data_cfg, isic) -> None:
    src = load_source(cfg_for(data_cfg, isic, test_metadata_csv="TestMeta.csv"))
    expected = {
        row["image"]: {c: row[c] for c in COLUMNS if row[c]}
        for row in read_rows(isic / "TestMeta.csv")
    }
    test = [r for r in src.records if r.split == "test"]
    assert len(test) == len(expected) == 6
    assert {r.image_id: r.attributes for r in test} == expected
    groups = {r.image_id: r.group for r in test}
    first, second, *rest = read_ids(isic / "Test.csv")
    assert groups[first] == groups[second] == "T_SAME"
    assert all(groups[i] is None for i in rest)  # no lesion id: its own group
    # the training images keep theirs
    assert {r.attributes["sex"] for r in src.records if r.split == "train"} == {"male"}


def test_without_test_metadata_the_test_images_carry_nothing_and_a_note_says_so(
    data_cfg, isic
) -> None:
    """The negative control: the training metadata does not list the test images."""
    src = load_source(cfg_for(data_cfg, isic))
    assert not any(r.meta for r in src.records if r.split == "test")
    assert all(r.group is None for r in src.records if r.split == "test")
    assert any("data.test_metadata_csv" in n for n in src.notes)


def test_a_test_image_missing_from_the_test_metadata_is_named(data_cfg, isic) -> None:
    rows = read_rows(isic / "TestMeta.csv")
    gone = rows.pop(3)["image"]
    write_csv(isic / "TestMeta.csv", rows)
    with pytest.raises(DataError) as e:
        load_source(cfg_for(data_cfg, isic, test_metadata_csv="TestMeta.csv"))
    msg = str(e.value)
    assert "1 image(s)" in msg and repr(gone) in msg
    assert str(isic / "TestMeta.csv") in msg and "data.test_metadata_csv" in msg


def test_the_isic_presets_have_the_key(helpers) -> None:
    for preset in ("isic_csv", "isic2019"):
        data = helpers.compose_cfg([f"data={preset}"]).data
        assert "test_metadata_csv" in data and data.test_metadata_csv is None
