"""Bad input stops early with a DataError that names the file or value and says how to fix it."""

from __future__ import annotations

import os

import numpy as np
import pytest

from medcls.data.cache import decode_all
from medcls.data.datamodule import ClassificationDataModule
from medcls.data.preprocess import Preprocess
from medcls.data.sources import load_source
from medcls.errors import DataError


def datamodule(cfg, tmp_path, **kw) -> ClassificationDataModule:
    dm = ClassificationDataModule(cfg, cache_dir=str(tmp_path / "cache"), **kw)
    dm.setup()
    return dm


# -- missing folders and files -----------------------------------------------------------------
@pytest.mark.parametrize("config", ["imagefolder", "ham10000", "covid_ct"])
def test_missing_root_names_the_folder(data_cfg, tmp_path, config) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(DataError, match=r"data\.root\)? not found: .*no/such does not exist\. \w"):
        load_source(data_cfg(config, root=str(missing)))


@pytest.mark.parametrize("config", ["imagefolder", "ham10000", "covid_ct"])
def test_unset_root_says_what_to_set(data_cfg, config) -> None:
    with pytest.raises(DataError, match=r"data\.root is not set"):
        load_source(data_cfg(config, root=None))


def test_root_without_class_folders(data_cfg, tmp_path, image_file) -> None:
    image_file(tmp_path / "loose.jpg")
    with pytest.raises(DataError, match=r"has no class sub-folders \(expected root/<class>/"):
        load_source(data_cfg("imagefolder", root=str(tmp_path)))


def test_isic_missing_csv_and_images_folder(data_cfg, tmp_path, image_file) -> None:
    cfg = data_cfg("isic_csv", root=str(tmp_path), csv="gt.csv", images_dir="imgs")
    with pytest.raises(
        DataError, match=r"ISIC ground-truth CSV \(data\.csv\) not found: .*gt\.csv"
    ):
        load_source(cfg)
    (tmp_path / "gt.csv").write_text("image,MEL,NV\nA,1,0\n")
    with pytest.raises(
        DataError, match=r"ISIC images folder \(data\.images_dir\) not found: .*imgs"
    ):
        load_source(cfg)


# -- CSV problems ------------------------------------------------------------------------------
def write_ham(root, rows, image_file, header="lesion_id,image_id,dx", with_images=True):
    lines = [header] + [",".join(r) for r in rows]
    os.makedirs(root / "images", exist_ok=True)
    (root / "HAM10000_metadata.csv").write_text("\n".join(lines) + "\n")
    if with_images:
        for r in rows:
            image_file(root / "images" / f"{r[1]}.jpg")


HAM = [("L1", "I1", "nv"), ("L2", "I2", "mel"), ("L3", "I3", "nv"), ("L4", "I4", "bkl")]
HAM_CLASSES = ["bkl", "mel", "nv"]  # a subset of the seven: it says so


def test_missing_csv_column_names_file_column_and_option(data_cfg, tmp_path, image_file) -> None:
    write_ham(tmp_path, HAM, image_file, header="lesion_id,image_id,diagnosis")
    with pytest.raises(DataError) as e:
        load_source(data_cfg("ham10000", root=str(tmp_path), classes=HAM_CLASSES))
    msg = str(e.value)
    assert "HAM10000_metadata.csv has no column(s) ['dx']" in msg
    assert "'diagnosis'" in msg and "data.*_column" in msg
    # the fix it names works
    assert (
        len(
            load_source(
                data_cfg(
                    "ham10000", root=str(tmp_path), label_column="diagnosis", classes=HAM_CLASSES
                )
            ).records
        )
        == 4
    )


def test_isic_csv_with_text_in_class_columns(data_cfg, tmp_path, image_file) -> None:
    image_file(tmp_path / "imgs" / "A.jpg")
    (tmp_path / "gt.csv").write_text("image,MEL,NV\nA,yes,no\n")
    cfg = data_cfg("isic_csv", root=str(tmp_path), csv="gt.csv", images_dir="imgs")
    with pytest.raises(
        DataError, match=r"gt\.csv: class columns \['MEL', 'NV'\] must hold numbers"
    ):
        load_source(cfg)


def test_unreadable_csv(data_cfg, tmp_path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "HAM10000_metadata.csv").write_bytes(b"\xff\xfe\x00\x81\x00binary\x00\xff")
    with pytest.raises(DataError, match=r"cannot read CSV .*HAM10000_metadata\.csv"):
        load_source(data_cfg("ham10000", root=str(tmp_path), classes=HAM_CLASSES))


def test_image_listed_in_csv_but_absent(data_cfg, tmp_path, image_file) -> None:
    write_ham(tmp_path, HAM, image_file)
    os.remove(tmp_path / "images" / "I3.jpg")
    with pytest.raises(DataError) as e:
        load_source(data_cfg("ham10000", root=str(tmp_path), classes=HAM_CLASSES))
    msg = str(e.value)
    assert "1 image(s) listed in" in msg and "HAM10000_metadata.csv are missing" in msg
    assert str(tmp_path / "images" / "I3.jpg") in msg
    assert "Restore the files, or remove their rows" in msg


def test_many_missing_images_are_counted_not_all_listed(data_cfg, tmp_path, image_file) -> None:
    rows = [(f"L{i}", f"I{i}", "nv") for i in range(9)]
    write_ham(tmp_path, rows, image_file, with_images=False)
    with pytest.raises(DataError, match=r"(?s)9 image\(s\) listed .*I4\.jpg\n  … and 4 more"):
        load_source(data_cfg("ham10000", root=str(tmp_path), classes=HAM_CLASSES))


def test_isic_image_absent(data_cfg, tmp_path, image_file) -> None:
    image_file(tmp_path / "imgs" / "A.jpg")
    (tmp_path / "gt.csv").write_text("image,MEL,NV\nA,1,0\nB,0,1\n")
    cfg = data_cfg("isic_csv", root=str(tmp_path), csv="gt.csv", images_dir="imgs")
    with pytest.raises(DataError, match=r"listed in .*gt\.csv are missing:\n  .*imgs/B\.jpg"):
        load_source(cfg)


def test_image_in_split_list_but_absent(data_cfg, tmp_path, image_file) -> None:
    image_file(tmp_path / "CT_COVID" / "a.png")
    image_file(tmp_path / "CT_NonCOVID" / "b.png")
    (tmp_path / "Data-split").mkdir()
    (tmp_path / "Data-split" / "trainCT_COVID.txt").write_text("a.png\nghost.png\n")
    (tmp_path / "Data-split" / "trainCT_NonCOVID.txt").write_text("b.png\n")
    with pytest.raises(DataError) as e:
        load_source(data_cfg("covid_ct", root=str(tmp_path)))
    assert "trainCT_COVID.txt are missing" in str(e.value)
    assert str(tmp_path / "CT_COVID" / "ghost.png") in str(e.value)


# -- classes -----------------------------------------------------------------------------------
def test_misspelt_ham_label_names_value_and_row(data_cfg, tmp_path, image_file) -> None:
    """Not "no images in the val partition" later: the misspelt dx, its row and the nearest
    class of the seven."""
    write_ham(tmp_path, [*HAM, ("L5", "I5", "mell")], image_file)
    with pytest.raises(DataError) as e:
        load_source(data_cfg("ham10000", root=str(tmp_path), classes=HAM_CLASSES))
    msg = str(e.value)
    assert "HAM10000_metadata.csv: row 6 has dx='mell' (did you mean 'mel'?)" in msg
    assert "['akiec', 'bcc', 'bkl', 'df', 'mel', 'nv', 'vasc']" in msg


def test_ham_subset_without_narrowed_classes_names_the_missing_ones(
    data_cfg, tmp_path, image_file
) -> None:
    write_ham(tmp_path, HAM, image_file)
    with pytest.raises(DataError) as e:
        load_source(data_cfg("ham10000", root=str(tmp_path)))
    msg = str(e.value)
    assert "declared class(es) ['akiec', 'bcc', 'df', 'vasc'] have no images" in msg
    assert "data.classes=[bkl,mel,nv]" in msg
    assert (
        load_source(data_cfg("ham10000", root=str(tmp_path), classes=HAM_CLASSES)).class_names
        == HAM_CLASSES
    )


def test_ham_classes_outside_the_vocabulary(data_cfg, tmp_path, image_file) -> None:
    write_ham(tmp_path, HAM, image_file)
    with pytest.raises(
        DataError, match=r"data\.classes names \['melanoma'\], which .* does not declare"
    ):
        load_source(data_cfg("ham10000", root=str(tmp_path), classes=["nv", "melanoma"]))


@pytest.mark.parametrize(
    ("second", "pattern"),
    [
        (
            "mel",
            r"image I1 is listed twice with different labels: 'nv' \(row 2\) and 'mel' \(row 6\)",
        ),
        ("nv", r"image I1 is listed twice \(rows 2 and 6, both 'nv'\)\. Remove one"),
    ],
)
def test_image_listed_twice_in_ham(data_cfg, tmp_path, image_file, second, pattern) -> None:
    write_ham(tmp_path, [*HAM, ("L1", "I1", second)], image_file)
    with pytest.raises(DataError, match=pattern):
        load_source(data_cfg("ham10000", root=str(tmp_path), classes=HAM_CLASSES))


def test_label_not_in_explicit_classes_imagefolder(data_cfg, folder_dataset) -> None:
    with pytest.raises(DataError) as e:
        load_source(data_cfg("imagefolder", root=str(folder_dataset), classes=["a", "b"]))
    msg = str(e.value)
    assert "label(s) ['c']" in msg and "data.classes=['a', 'b']" in msg
    assert "Add them to data.classes" in msg


def test_label_not_in_explicit_classes_ham(data_cfg, tmp_path, image_file) -> None:
    write_ham(tmp_path, HAM, image_file)
    with pytest.raises(
        DataError, match=r"HAM10000_metadata\.csv: image I4 has label 'bkl', not in data\.classes"
    ):
        load_source(data_cfg("ham10000", root=str(tmp_path), classes=["nv", "mel"]))
    # the fix it names works: bkl left out
    cfg = data_cfg("ham10000", root=str(tmp_path), classes=["nv", "mel"], unknown="exclude")
    assert [r.path.rsplit("/", 1)[1] for r in load_source(cfg).records] == [
        "I1.jpg",
        "I2.jpg",
        "I3.jpg",
    ]


def test_label_not_in_explicit_classes_isic(data_cfg, tmp_path, image_file) -> None:
    image_file(tmp_path / "imgs" / "A.jpg")
    image_file(tmp_path / "imgs" / "B.jpg")
    (tmp_path / "gt.csv").write_text("image,MEL,NV\nA,1,0\nB,0,1\n")
    cfg = data_cfg("isic_csv", root=str(tmp_path), csv="gt.csv", images_dir="imgs", classes=["MEL"])
    with pytest.raises(
        DataError, match=r"gt\.csv: image B has label 'NV', not in data\.classes=\['MEL'\]\. Add"
    ):
        load_source(cfg)


def test_class_in_val_root_but_not_train(data_cfg, image_folder, tmp_path) -> None:
    image_folder(tmp_path / "train", {"a": 3, "b": 3})
    image_folder(tmp_path / "val", {"a": 1, "zzz": 1})
    cfg = data_cfg("imagefolder", root=str(tmp_path / "train"), val_root=str(tmp_path / "val"))
    with pytest.raises(DataError) as e:
        load_source(cfg)
    msg = str(e.value)
    assert f"data.val_root {tmp_path / 'val'} has class folder(s) ['zzz']" in msg
    assert "not in the classes ['a', 'b'] of data.root" in msg and "move those folders" in msg


def test_empty_class_folder(data_cfg, folder_dataset) -> None:
    (folder_dataset / "d").mkdir()
    with pytest.raises(DataError) as e:
        load_source(data_cfg("imagefolder", root=str(folder_dataset)))
    assert "class(es) ['d'] have no images in" in str(e.value)
    assert str(folder_dataset) in str(e.value)


def test_explicit_class_without_images(data_cfg, folder_dataset) -> None:
    cfg = data_cfg("imagefolder", root=str(folder_dataset), classes=["a", "b", "c", "d"])
    with pytest.raises(
        DataError, match=r"\['d'\] have no images .*drop the class from data.classes"
    ):
        load_source(cfg)


def test_explicit_class_without_images_ham(data_cfg, tmp_path, image_file) -> None:
    write_ham(tmp_path, HAM, image_file)
    cfg = data_cfg("ham10000", root=str(tmp_path), classes=["nv", "mel", "bkl", "df"])
    with pytest.raises(DataError, match=r"\['df'\] have no images"):
        load_source(cfg)


def test_covid_class_folder_missing(data_cfg, tmp_path, image_file) -> None:
    image_file(tmp_path / "CT_COVID" / "a.png")
    with pytest.raises(DataError, match=r"class folder .*CT_NonCOVID not found.*\['CT_COVID'\]"):
        load_source(data_cfg("covid_ct", root=str(tmp_path)))


def test_class_missing_from_a_partition(data_cfg, image_folder, tmp_path) -> None:
    image_folder(tmp_path / "train", {"a": 4, "b": 4})
    image_folder(tmp_path / "val", {"a": 2})  # no b in the official validation set
    cfg = data_cfg(
        "imagefolder",
        root=str(tmp_path / "train"),
        val_root=str(tmp_path / "val"),
        test_fraction=0.0,
        cache="memory",
        image_size=16,
    )
    with pytest.raises(DataError) as e:
        datamodule(cfg, tmp_path)
    msg = str(e.value)
    assert "['b'] have no images in the val partition (2 images)" in msg
    assert "data.num_folds" in msg


# -- undecodable images and masks --------------------------------------------------------------
@pytest.fixture
def corrupt_dataset(folder_dataset):
    bad = folder_dataset / "b" / "img002.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    return folder_dataset, str(bad)


def test_corrupt_image_skipped(data_cfg, tmp_path, corrupt_dataset) -> None:
    root, bad = corrupt_dataset
    cfg = data_cfg("imagefolder", root=str(root), on_bad_image="skip", image_size=16)
    dm = datamodule(cfg, tmp_path)
    assert [p for p, _ in dm.skipped] == [bad]
    assert "cannot decode image" in dm.skipped[0][1]
    i = [r.path for r in dm.records].index(bad)
    assert len(dm.records) == 18 and len(dm.partitions["all"]) == 17
    for name in ("train", "val", "test", "all"):
        assert i not in dm.partitions[name]
    seen = [int(j) for batch in dm.train_dataloader() for j in batch["index"]]
    seen += [int(j) for batch in dm.val_dataloader() for j in batch["index"]]
    seen += [int(j) for batch in dm.test_dataloader() for j in batch["index"]]
    assert sorted(seen) == dm.partitions["all"].tolist()  # every readable image, once
    assert i not in seen


def test_truncated_image_skipped(data_cfg, tmp_path, folder_dataset) -> None:
    path = folder_dataset / "a" / "img001.jpg"
    path.write_bytes(path.read_bytes()[:200])
    cfg = data_cfg("imagefolder", root=str(folder_dataset), cache="memory", image_size=16)
    dm = datamodule(cfg, tmp_path)
    assert [p for p, _ in dm.skipped] == [str(path)]


def test_corrupt_image_error(data_cfg, tmp_path, corrupt_dataset) -> None:
    root, bad = corrupt_dataset
    cfg = data_cfg("imagefolder", root=str(root), on_bad_image="error", image_size=16)
    with pytest.raises(DataError) as e:
        datamodule(cfg, tmp_path)
    msg = str(e.value)
    assert "1 image(s) cannot be decoded" in msg and bad in msg
    assert "data.on_bad_image=skip" in msg


def test_mask_size_mismatch_names_both_files(data_cfg, tmp_path, image_file) -> None:
    write_ham(tmp_path, HAM, image_file)
    os.makedirs(tmp_path / "masks")
    for _, image_id, _ in HAM:
        size = (20, 20) if image_id == "I2" else (40, 30)
        image_file(tmp_path / "masks" / f"{image_id}_segmentation.png", size=size, mode="L")
    cfg = data_cfg(
        "ham10000", root=str(tmp_path), load_masks=True, image_size=16, classes=HAM_CLASSES
    )
    with pytest.raises(DataError) as e:
        datamodule(cfg, tmp_path)
    msg = str(e.value)
    assert "1 mask(s) do not match" in msg
    assert f"{tmp_path / 'masks' / 'I2_segmentation.png'} is 20x20" in msg
    assert f"{tmp_path / 'images' / 'I2.jpg'} is 40x30" in msg
    assert "data.load_masks=false" in msg
    assert not (tmp_path / "cache").exists() or os.listdir(tmp_path / "cache") == []
    # without masks the same data decodes
    src = load_source(cfg)
    out = decode_all("ham", src.records, Preprocess(image_size=16), cache="memory")
    assert out.ok.all() and out.masks is None


# -- bad option values -------------------------------------------------------------------------
def test_unknown_augmentation_op(data_cfg, folder_dataset) -> None:
    cfg = data_cfg("imagefolder", root=str(folder_dataset))
    with pytest.raises(DataError, match=r"augmentation 'HorizontalFlop' is not an albumentations"):
        ClassificationDataModule(cfg, train_ops=[{"HorizontalFlop": {"p": 0.5}}])


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [
        ("on_bad_image", "ignore", r"data\.on_bad_image='ignore': use skip or error"),
        ("cache", "ram", r"data\.cache='ram': use disk or memory"),
        ("resize_mode", "crop", r"data\.resize_mode='crop': use center_crop, stretch or pad"),
        ("center_crop_fraction", 1.5, r"data\.center_crop_fraction=1\.5: must be in \(0, 1\]"),
        ("optic_disc_crop", -0.2, r"data\.optic_disc_crop=-0\.2: a fraction in \(0, 1\], or 0"),
    ],
)
def test_bad_option_values(data_cfg, tmp_path, folder_dataset, key, value, pattern) -> None:
    cfg = data_cfg("imagefolder", root=str(folder_dataset), image_size=16, **{key: value})
    with pytest.raises(DataError, match=pattern):
        datamodule(cfg, tmp_path)


def test_skipped_images_can_empty_a_class(data_cfg, tmp_path, image_folder) -> None:
    files = image_folder(tmp_path / "imgs", {"a": 12, "b": 2})
    for p in files["b"]:
        with open(p, "wb") as f:
            f.write(np.zeros(10, np.uint8).tobytes())
    cfg = data_cfg("imagefolder", root=str(tmp_path / "imgs"), cache="memory", image_size=16)
    with pytest.raises(DataError, match=r"\['b'\] have no images in imagefolder once 2 unread"):
        datamodule(cfg, tmp_path)


def test_image_listed_twice_in_an_isic_csv(data_cfg, tmp_path, image_file) -> None:
    for name in ("A", "B"):
        image_file(tmp_path / "imgs" / f"{name}.jpg")
    (tmp_path / "gt.csv").write_text("image,MEL,NV\nA,1,0\nB,0,1\nA,0,1\n")
    cfg = data_cfg("isic_csv", root=str(tmp_path), csv="gt.csv", images_dir="imgs")
    with pytest.raises(
        DataError,
        match=r"gt\.csv: image A is listed twice with different labels: 'MEL' \(row 2\) and "
        r"'NV' \(row 4\)",
    ):
        load_source(cfg)


def test_image_in_both_the_training_and_the_test_csv(data_cfg, tmp_path, image_file) -> None:
    for name in ("A", "B", "C"):
        image_file(tmp_path / "imgs" / f"{name}.jpg")
    (tmp_path / "gt.csv").write_text("image,MEL,NV\nA,1,0\nB,0,1\n")
    (tmp_path / "test.csv").write_text("image,MEL,NV\nB,0,1\nC,1,0\n")
    cfg = data_cfg(
        "isic_csv", root=str(tmp_path), csv="gt.csv", images_dir="imgs", test_csv="test.csv"
    )
    with pytest.raises(
        DataError, match=r"1 image\(s\) are listed both in .*gt\.csv and in the test list .*\['B'\]"
    ):
        load_source(cfg)


def test_slice_in_two_official_lists(data_cfg, tmp_path, image_file) -> None:
    for name in ("a.png", "b.png"):
        image_file(tmp_path / "CT_COVID" / name)
    image_file(tmp_path / "CT_NonCOVID" / "c.png")
    (tmp_path / "Data-split").mkdir()
    (tmp_path / "Data-split" / "trainCT_COVID.txt").write_text("a.png\nb.png\n")
    (tmp_path / "Data-split" / "valCT_COVID.txt").write_text("b.png\n")
    (tmp_path / "Data-split" / "trainCT_NonCOVID.txt").write_text("c.png\n")
    with pytest.raises(
        DataError, match=r"CT_COVID/b\.png is listed twice: in .*trainCT_COVID\.txt and in .*valCT"
    ):
        load_source(data_cfg("covid_ct", root=str(tmp_path)))


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([*HAM, ("L5", "I5", "mell")], "row 6 has dx='mell' (did you mean 'mel'?)"),
        ([*HAM, ("L1", "I1", "mel")], "image I1 is listed twice with different labels"),
    ],
)
def test_medcls_train_exits_2_with_one_line(helpers, tmp_path, image_file, rows, message) -> None:
    """Through the command line: exit code 2, the message, no traceback, nothing trained."""
    write_ham(tmp_path / "ham", rows, image_file)
    proc = helpers.run_cli(
        "medcls-train",
        ["data=ham10000", f"data.root={tmp_path / 'ham'}", "logger=none", "print_config=false"],
        cwd=tmp_path,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert message in " ".join(text.split()) and "Traceback" not in text
    assert not list(tmp_path.glob("outputs/**/*.ckpt"))
