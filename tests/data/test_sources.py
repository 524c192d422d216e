"""Sources: each on-disk layout becomes the right list of records."""

from __future__ import annotations

import os
from collections import Counter, defaultdict

import numpy as np
import pytest

from medcls.data.sources import SOURCES, load_source
from medcls.data.sources.synthetic import read_synthetic
from medcls.errors import DataError


def by_class(src) -> Counter:
    return Counter(src.class_names[r.label] for r in src.records)


def test_every_source_has_a_config(data_cfg) -> None:
    names = {
        *("synthetic", "imagefolder", "ham10000", "isic_csv", "covid_ct", "combined"),
        *("dicom", "nifti"),
    }
    assert set(SOURCES) == names
    for name in names:
        assert data_cfg(name).source == name


def test_unknown_source(data_cfg) -> None:
    with pytest.raises(DataError, match=r"data.source='dcm' is unknown; choose one of"):
        load_source(data_cfg("synthetic", source="dcm"))


# -- imagefolder -------------------------------------------------------------------------------
def test_imagefolder_reads_class_folders(data_cfg, image_folder, image_file, tmp_path) -> None:
    root = tmp_path / "imgs"
    files = image_folder(root, {"benign": 3, "malignant": 2})
    image_file(root / "benign" / "nested" / "deep.png")  # sub-folders belong to their class
    (root / "benign" / "notes.txt").write_text("not an image")
    (root / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes
    src = load_source(data_cfg("imagefolder", root=str(root), name="skin"))
    assert src.name == "skin"
    assert src.class_names == ["benign", "malignant"]
    assert by_class(src) == {"benign": 4, "malignant": 2}
    assert {r.path for r in src.records} >= set(files["malignant"])
    assert all(r.split is None and r.group is None and r.source == "skin" for r in src.records)


def test_imagefolder_explicit_class_order(data_cfg, folder_dataset) -> None:
    src = load_source(data_cfg("imagefolder", root=str(folder_dataset), classes=["c", "a", "b"]))
    assert src.class_names == ["c", "a", "b"]
    for r in src.records:
        assert os.path.basename(os.path.dirname(r.path)) == src.class_names[r.label]


def test_imagefolder_val_and_test_roots(data_cfg, image_folder, tmp_path) -> None:
    image_folder(tmp_path / "train", {"a": 4, "b": 4})
    image_folder(tmp_path / "val", {"a": 2, "b": 1})
    image_folder(tmp_path / "test", {"a": 1, "b": 3})
    cfg = data_cfg(
        "imagefolder",
        root=str(tmp_path / "train"),
        val_root=str(tmp_path / "val"),
        test_root=str(tmp_path / "test"),
    )
    src = load_source(cfg)
    splits = Counter((r.split, src.class_names[r.label]) for r in src.records)
    assert splits == {
        ("train", "a"): 4,
        ("train", "b"): 4,
        ("val", "a"): 2,
        ("val", "b"): 1,
        ("test", "a"): 1,
        ("test", "b"): 3,
    }
    for r in src.records:
        assert f"{os.sep}{r.split}{os.sep}" in r.path


def test_imagefolder_test_root_only_marks_the_rest_train(data_cfg, image_folder, tmp_path) -> None:
    image_folder(tmp_path / "train", {"a": 2, "b": 2})
    image_folder(tmp_path / "test", {"a": 1, "b": 1})
    src = load_source(
        data_cfg("imagefolder", root=str(tmp_path / "train"), test_root=str(tmp_path / "test"))
    )
    assert Counter(r.split for r in src.records) == {"train": 4, "test": 2}


def test_imagefolder_group_regex(data_cfg, image_file, tmp_path) -> None:
    for name in ("P01_left.jpg", "P01_right.jpg", "P02_left.jpg", "loose.jpg"):
        image_file(tmp_path / "x" / name)
    image_file(tmp_path / "y" / "P03_left.jpg")
    src = load_source(data_cfg("imagefolder", root=str(tmp_path), group_regex=r"^(P\d+)_"))
    groups = {os.path.basename(r.path): r.group for r in src.records}
    assert groups == {
        "P01_left.jpg": "P01",
        "P01_right.jpg": "P01",
        "P02_left.jpg": "P02",
        "loose.jpg": "loose.jpg",  # no match: the file is its own group
        "P03_left.jpg": "P03",
    }


# -- HAM10000 ----------------------------------------------------------------------------------
HAM_ROWS = [  # lesion_id, image_id, dx
    ("HAM_1", "ISIC_001", "nv"),
    ("HAM_1", "ISIC_002", "nv"),
    ("HAM_2", "ISIC_003", "mel"),
    ("HAM_3", "ISIC_004", "bkl"),
    ("HAM_3", "ISIC_005", "bkl"),
    ("HAM_3", "ISIC_006", "bkl"),
    ("HAM_4", "ISIC_007", "mel"),
]


@pytest.fixture
def ham_root(tmp_path, image_file):
    root = tmp_path / "ham"
    lines = ["lesion_id,image_id,dx,dx_type,age,sex,localization"]
    for lesion, image_id, dx in HAM_ROWS:
        lines.append(f"{lesion},{image_id},{dx},histo,50.0,male,back")
        image_file(root / "images" / f"{image_id}.jpg")
    (root / "HAM10000_metadata.csv").write_text("\n".join(lines) + "\n")
    for image_id in ("ISIC_001", "ISIC_003"):
        image_file(root / "masks" / f"{image_id}_segmentation.png", value=255, mode="L")
    return root


def test_ham10000_metadata_images_and_masks(data_cfg, ham_root) -> None:
    src = load_source(data_cfg("ham10000", root=str(ham_root), classes=["bkl", "mel", "nv"]))
    assert src.class_names == ["bkl", "mel", "nv"]
    assert len(src.records) == len(HAM_ROWS)
    for r, (lesion, image_id, dx) in zip(src.records, HAM_ROWS, strict=True):
        assert r.path == str(ham_root / "images" / f"{image_id}.jpg")
        assert r.image_id == image_id
        assert src.class_names[r.label] == dx
        assert r.group == lesion
        has_mask = image_id in ("ISIC_001", "ISIC_003")
        assert r.mask == (
            str(ham_root / "masks" / f"{image_id}_segmentation.png") if has_mask else None
        )


def test_ham10000_without_masks_folder(data_cfg, ham_root) -> None:
    for f in (ham_root / "masks").iterdir():
        f.unlink()
    (ham_root / "masks").rmdir()
    src = load_source(data_cfg("ham10000", root=str(ham_root), classes=["bkl", "mel", "nv"]))
    assert all(r.mask is None for r in src.records)


# -- ISIC CSV ----------------------------------------------------------------------------------
@pytest.fixture
def isic_root(tmp_path, image_file):
    root = tmp_path / "isic"
    rows = [("ISIC_0", "MEL"), ("ISIC_1", "NV"), ("ISIC_2", "NV"), ("ISIC_3", "BCC")]
    rows += [("ISIC_4", "MEL"), ("ISIC_5", "BCC")]
    cols = ["MEL", "NV", "BCC", "UNK"]
    lines = ["image," + ",".join(cols)]
    for image_id, label in rows:
        lines.append(image_id + "," + ",".join("1.0" if c == label else "0.0" for c in cols))
        image_file(root / "train" / f"{image_id}.jpg")
    (root / "gt.csv").write_text("\n".join(lines) + "\n")
    meta = ["image,age_approx,lesion_id", "ISIC_0,50,L1", "ISIC_4,55,L1", "ISIC_1,30,"]
    (root / "meta.csv").write_text("\n".join(meta) + "\n")
    test_lines = ["image,MEL,NV,BCC,UNK", "ISIC_T0,0,1,0,0", "ISIC_T1,0,0,1,0"]
    (root / "test_gt.csv").write_text("\n".join(test_lines) + "\n")
    for image_id in ("ISIC_T0", "ISIC_T1"):
        image_file(root / "test" / f"{image_id}.jpg")
    return root


def test_isic_csv_one_hot_and_empty_unk_dropped(data_cfg, isic_root) -> None:
    src = load_source(
        data_cfg(
            "isic_csv",
            root=str(isic_root),
            csv="gt.csv",
            images_dir="train",
            drop_empty_classes=True,
        )
    )
    assert src.class_names == ["MEL", "NV", "BCC"]  # CSV column order, UNK dropped
    assert [src.class_names[r.label] for r in src.records] == [
        "MEL",
        "NV",
        "NV",
        "BCC",
        "MEL",
        "BCC",
    ]
    assert [r.image_id for r in src.records] == [f"ISIC_{i}" for i in range(6)]
    assert all(r.group is None and r.split is None for r in src.records)
    assert any("UNK" in n and "dropped" in n for n in src.notes)


def test_isic_csv_a_declared_column_without_images_is_refused(data_cfg, isic_root) -> None:
    """The default: a class column without images is named, with the narrowed list to give."""
    cfg = data_cfg("isic_csv", root=str(isic_root), csv="gt.csv", images_dir="train")
    with pytest.raises(
        DataError, match=r"\['UNK'\] have no images in .*gt.csv.*data\.classes=\[MEL,NV,BCC\]"
    ):
        load_source(cfg)
    cfg.classes = ["MEL", "NV", "BCC"]
    assert load_source(cfg).class_names == ["MEL", "NV", "BCC"]
    cfg.classes = ["MEL", "NVV"]
    with pytest.raises(DataError, match=r"data\.classes names \['NVV'\], which .*gt\.csv does not"):
        load_source(cfg)


def test_isic_csv_ignore_columns(data_cfg, isic_root) -> None:
    cfg = data_cfg(
        "isic_csv",
        root=str(isic_root),
        csv="gt.csv",
        images_dir="train",
        ignore_columns=["UNK"],
        drop_empty_classes=False,
    )
    assert load_source(cfg).class_names == ["MEL", "NV", "BCC"]


def test_isic_csv_test_csv_and_metadata_groups(data_cfg, isic_root) -> None:
    cfg = data_cfg(
        "isic_csv",
        root=str(isic_root),
        csv="gt.csv",
        images_dir="train",
        test_csv="test_gt.csv",
        test_images_dir="test",
        metadata_csv="meta.csv",
        classes=["MEL", "NV", "BCC"],
    )
    src = load_source(cfg)
    assert Counter(r.split for r in src.records) == {"train": 6, "test": 2}
    test = [r for r in src.records if r.split == "test"]
    assert [(r.image_id, src.class_names[r.label]) for r in test] == [
        ("ISIC_T0", "NV"),
        ("ISIC_T1", "BCC"),
    ]
    assert all(os.sep + "test" + os.sep in r.path for r in test)
    groups = {r.image_id: r.group for r in src.records}
    assert groups["ISIC_0"] == groups["ISIC_4"] == "L1"
    assert groups["ISIC_1"] is None  # empty lesion_id: its own group
    assert groups["ISIC_2"] is None


def test_isic_csv_rejects_rows_that_are_not_one_hot(data_cfg, isic_root) -> None:
    text = (isic_root / "gt.csv").read_text().replace("ISIC_2,0.0,1.0", "ISIC_2,1.0,1.0")
    (isic_root / "gt.csv").write_text(text)
    cfg = data_cfg("isic_csv", root=str(isic_root), csv="gt.csv", images_dir="train")
    with pytest.raises(DataError, match=r"gt.csv: row 4 \(image ISIC_2\) is not one-hot"):
        load_source(cfg)


# -- COVID-CT ----------------------------------------------------------------------------------
@pytest.fixture
def covid_root(tmp_path, image_folder):
    root = tmp_path / "covid"
    files = image_folder(root, {"CT_COVID": 5, "CT_NonCOVID": 6}, ext=".png", prefix="2020.01-p")
    split_dir = root / "Data-split"
    split_dir.mkdir()
    lists = {
        "trainCT_COVID.txt": files["CT_COVID"][:3],
        "valCT_COVID.txt": files["CT_COVID"][3:4],  # one COVID slice is in no list
        "trainCT_NonCOVID.txt": files["CT_NonCOVID"][:4],
        "valCT_NonCOVID.txt": files["CT_NonCOVID"][4:],
    }
    for name, paths in lists.items():
        (split_dir / name).write_text("".join(os.path.basename(p) + "\r\n" for p in paths))
    return root


def test_covid_ct_official_lists(data_cfg, covid_root) -> None:
    src = load_source(data_cfg("covid_ct", root=str(covid_root)))
    assert src.class_names == ["CT_NonCOVID", "CT_COVID"]  # conf order: COVID is positive
    counts = Counter((r.split, src.class_names[r.label]) for r in src.records)
    assert counts == {
        ("train", "CT_COVID"): 3,
        ("val", "CT_COVID"): 1,
        ("train", "CT_NonCOVID"): 4,
        ("val", "CT_NonCOVID"): 2,
    }
    assert str(covid_root / "CT_COVID" / "2020.01-p004.png") not in {r.path for r in src.records}
    assert src.notes == ["1 image(s) in CT_COVID/ are in no official split list and were left out"]


def test_covid_ct_without_official_split_uses_every_file(data_cfg, covid_root) -> None:
    src = load_source(data_cfg("covid_ct", root=str(covid_root), use_official_split=False))
    assert len(src.records) == 11
    assert all(r.split is None for r in src.records)
    assert src.notes == []


def test_covid_ct_default_classes_skip_the_split_folder(data_cfg, covid_root) -> None:
    src = load_source(data_cfg("covid_ct", root=str(covid_root), classes=None))
    assert src.class_names == ["CT_COVID", "CT_NonCOVID"]
    assert len(src.records) == 10


def test_covid_ct_groups_slices_by_paper_and_page(data_cfg, tmp_path, image_file) -> None:
    for name in ("2020.03.13.2003-p23-1.png", "2020.03.13.2003-p23-2%0.png", "2020.04-p4-7.png"):
        image_file(tmp_path / "CT_COVID" / name)
    image_file(tmp_path / "CT_NonCOVID" / "17.png")
    src = load_source(data_cfg("covid_ct", root=str(tmp_path)))  # no Data-split: all files
    groups = sorted(r.group for r in src.records)
    assert groups == ["17.png", "2020.03.13.2003-p23", "2020.03.13.2003-p23", "2020.04-p4"]


# -- synthetic ---------------------------------------------------------------------------------
def test_synthetic_is_deterministic_with_masks_and_groups(data_cfg) -> None:
    cfg = data_cfg("synthetic", num_samples=180, num_classes=4, images_per_group=3)
    a, b = load_source(cfg), load_source(cfg)
    assert a.records == b.records
    assert a.class_names == ["nevus", "melanoma", "bcc", "keratosis"]
    assert len(a.records) == 180 and len({r.path for r in a.records}) == 180
    assert np.bincount([r.label for r in a.records]).tolist() == [45, 45, 45, 45]
    members = defaultdict(set)
    for r in a.records:
        members[r.group].add(r.label)
        assert r.mask is not None
    assert all(len(labels) == 1 for labels in members.values())  # a lesion has one class
    sizes = Counter(r.group for r in a.records)
    assert set(sizes.values()) == {3}  # 180 samples: 60 lesions of 3 photos
    img1, mask1 = read_synthetic(a.records[5].path)
    img2, mask2 = read_synthetic(a.records[5].mask)  # the mask address decodes the same sample
    assert img1.shape == (128, 128, 3) and mask1.shape == (128, 128)
    np.testing.assert_array_equal(img1, img2)
    np.testing.assert_array_equal(mask1, mask2)


def test_synthetic_generator_seed_changes_images_not_labels(data_cfg) -> None:
    a = load_source(data_cfg("synthetic", num_samples=6, native_size=32))
    b = load_source(data_cfg("synthetic", num_samples=6, native_size=32, generator_seed=1))
    assert [r.label for r in a.records] == [r.label for r in b.records]
    assert not np.array_equal(
        read_synthetic(a.records[0].path)[0], read_synthetic(b.records[0].path)[0]
    )
