"""``data=dicom`` and ``data=nifti``: records, labels (class folders or a CSV by key), slice
selection, patient grouping across partitions, the window in the decode cache, and the bad
inputs, each with its message."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pydicom
import pytest
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import JPEG2000Lossless

from medcls.data.datamodule import ClassificationDataModule
from medcls.data.medical.address import parse_address
from medcls.data.medical.windows import apply_window
from medcls.data.sources import load_source
from medcls.errors import DataError

CLASSES = ["CT_COVID", "CT_NonCOVID"]  # sorted: the order class folders give


def data_cfg(helpers, *overrides: str):
    return helpers.compose_cfg(list(overrides)).data


def dicom_cfg(helpers, root, *overrides: str):
    return data_cfg(helpers, "data=dicom", f"data.root={root}", *overrides)


def nifti_cfg(helpers, root, *overrides: str):
    return data_cfg(helpers, "data=nifti", f"data.root={root}", *overrides)


def series_count(study) -> int:
    return len(study.series_uids)


# ------------------------------------------------------------------------------------ DICOM
def test_dicom_class_folders(helpers, ct_study):
    src = load_source(dicom_cfg(helpers, ct_study.dicom_folders))
    assert src.class_names == CLASSES
    assert len(src.records) == 3 * series_count(ct_study)
    for r in src.records:
        address = parse_address(r.path)
        assert address.kind == "dicom" and address.index is None
        assert src.class_names[r.label] == ct_study.label_of[r.group]  # the folder's class
        assert r.attributes["series"].startswith(f"{r.group}/series")
    # a patient with two series: two series names, three slices each
    per_series = Counter(r.attributes["series"] for r in src.records if r.group == "NON00")
    assert per_series == {"NON00/series1": 3, "NON00/series2": 3}


def test_dicom_labels_csv_by_patient(helpers, ct_study):
    src = load_source(
        dicom_cfg(helpers, ct_study.dicom_flat, f"data.labels_csv={ct_study.labels_csv}")
    )
    assert sorted(src.class_names) == CLASSES
    assert len(src.records) == 3 * series_count(ct_study)
    assert all(src.class_names[r.label] == ct_study.label_of[r.group] for r in src.records)
    assert any("1 file(s)" in n and "README.txt" in n and "not DICOM" in n for n in src.notes)


def test_dicom_labels_csv_by_study_with_unmatched_rows(helpers, ct_study, tmp_path):
    """A study-keyed CSV: the rows that match no study are counted by row (never by UID), the
    series of a study without a row are left out and counted."""
    rows = ["StudyInstanceUID,diagnosis"]
    patients = list(ct_study.label_of)
    for patient, study in zip(patients[1:], ct_study.study_uids[1:], strict=True):
        rows.append(f"{study},{ct_study.label_of[patient]}")
    rows.append("1.2.3.999,CT_COVID")  # a study that is not there
    csv = tmp_path / "by_study.csv"
    csv.write_text("\n".join(rows) + "\n")
    src = load_source(
        dicom_cfg(
            helpers,
            ct_study.dicom_flat,
            f"data.labels_csv={csv}",
            "data.label_key=StudyInstanceUID",
            "data.label_column=diagnosis",
        )
    )
    assert {r.group for r in src.records} == set(patients[1:])  # the first patient: no row
    assert any(f"1 row(s) of {csv} match no StudyInstanceUID" in n and "rows 17" in n
               for n in src.notes)  # fmt: skip
    assert any("have no row in" in n for n in src.notes)
    assert not any("1.2.3.999" in n for n in src.notes)


def test_dicom_csv_that_matches_nothing(helpers, ct_study, tmp_path):
    csv = tmp_path / "wrong_key.csv"
    csv.write_text("SeriesInstanceUID,label\n" + "".join(f"{p},CT_COVID\n" for p in "ABC"))
    cfg = dicom_cfg(
        helpers,
        ct_study.dicom_flat,
        f"data.labels_csv={csv}",
        "data.label_key=SeriesInstanceUID",
    )
    with pytest.raises(DataError, match=r"none of the 3 row\(s\) of .*wrong_key.csv matches"):
        load_source(cfg)
    bad = dicom_cfg(helpers, ct_study.dicom_flat, f"data.labels_csv={csv}", "data.label_key=id")
    with pytest.raises(DataError, match="data.label_key='id': use one of"):
        load_source(bad)
    missing = dicom_cfg(helpers, ct_study.dicom_flat, f"data.labels_csv={csv}")
    with pytest.raises(DataError, match=r"has no column\(s\) \['PatientID'\]"):
        load_source(missing)


@pytest.mark.parametrize(
    ("overrides", "kept"),
    [(["data.slice_step=2"], [0, 2]), (["data.slice_range=0.34"], [1]), ([], [0, 1, 2])],
)
def test_dicom_slice_selection(helpers, ct_study, overrides, kept):
    src = load_source(dicom_cfg(helpers, ct_study.dicom_folders, *overrides))
    one = sorted(r.path for r in src.records if r.attributes["series"] == "COV01/series1")
    assert [p.rsplit("img_", 1)[1] for p in one] == [str(k) for k in kept]


def test_bad_selection_is_named(helpers, ct_study):
    with pytest.raises(DataError, match="data.slice_step=0"):
        load_source(dicom_cfg(helpers, ct_study.dicom_folders, "data.slice_step=0"))
    with pytest.raises(DataError, match="data.slice_range=1.5"):
        load_source(dicom_cfg(helpers, ct_study.dicom_folders, "data.slice_range=1.5"))


def test_dicom_without_class_folders_or_csv(helpers, ct_study, tmp_path, ct_writer):
    ct_writer.write_ct(tmp_path / "loose.dcm", np.zeros((8, 8)))
    with pytest.raises(DataError, match="lies directly in data.root"):
        load_source(dicom_cfg(helpers, tmp_path))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.txt").write_text("no images\n")
    with pytest.raises(DataError, match=r"no DICOM image series under .*empty \(1 file"):
        load_source(dicom_cfg(helpers, tmp_path / "empty"))


# ---------------------------------------------------------------------- grouping and partitions
@pytest.mark.parametrize("source", ["dicom", "nifti"])
def test_patients_never_cross_partitions(helpers, ct_study, source, cache_dir):
    root = ct_study.dicom_folders if source == "dicom" else ct_study.nifti_folders
    extra = ["data.group_regex='^([A-Z]+\\d+)_s'"] if source == "nifti" else []
    cfg = data_cfg(helpers, f"data={source}", f"data.root={root}", "data.image_size=32", *extra)
    dm = ClassificationDataModule(cfg, cache_dir=str(cache_dir))
    dm.setup()
    groups = {k: {r.group for r in dm.records_of(k)} for k in ("train", "val", "test")}
    assert all(groups.values())  # each partition holds patients …
    assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]  # … and none is in two
    # a patient with two series (two NIfTI volumes: the regex joins them) is one group
    assert {r.group for r in dm.records} == set(ct_study.label_of)


def test_window_is_in_the_cache_key_and_the_images(helpers, ct_study, tmp_path):
    """Two windows: two caches, and each image is its slice's HU through that window."""
    images = {}
    for window in ("lung", "mediastinum"):
        cfg = dicom_cfg(
            helpers, ct_study.dicom_folders, "data.image_size=64", f"data.window={window}"
        )
        dm = ClassificationDataModule(cfg, cache_dir=str(tmp_path))
        dm.setup()
        images[window] = (dm.records, np.asarray(dm.decoded.images))
    assert len(list(tmp_path.glob("dicom-64px-*"))) == 2
    from medcls.data.readers import read_slice_hu

    records, lung = images["lung"]
    for i in (0, len(records) - 1):
        hu = read_slice_hu(parse_address(records[i].path))  # 64 x 64: no resize
        np.testing.assert_array_equal(lung[i], apply_window(hu, "lung"))
        np.testing.assert_array_equal(images["mediastinum"][1][i], apply_window(hu, "mediastinum"))
    assert not np.array_equal(lung, images["mediastinum"][1])


# ------------------------------------------------------------------------------------- NIfTI
def test_nifti_class_folders(helpers, ct_study):
    src = load_source(nifti_cfg(helpers, ct_study.nifti_folders))
    assert src.class_names == CLASSES
    assert len(src.records) == 3 * series_count(ct_study)
    address = parse_address(src.records[0].path)
    assert address.kind == "nifti" and address.index == 0
    assert src.records[0].image_id.endswith("_s0_z0")
    assert all(src.class_names[r.label] == ct_study.label_of[r.group.split("_")[0]]
               for r in src.records)  # fmt: skip


def test_nifti_slices_equal_the_dicom_slices(helpers, ct_study, cache_dir):
    """The volume written from a series reads back as the series' own slices."""
    decoded = {}
    for source, root in (("dicom", ct_study.dicom_folders), ("nifti", ct_study.nifti_folders)):
        cfg = data_cfg(helpers, f"data={source}", f"data.root={root}", "data.image_size=64")
        dm = ClassificationDataModule(cfg, cache_dir=str(cache_dir))
        dm.setup()
        decoded[source] = np.asarray(dm.decoded.images)
    np.testing.assert_array_equal(decoded["dicom"], decoded["nifti"])


def test_nifti_labels_csv_by_patient_and_masks(helpers, ct_study, tmp_path):
    import nibabel as nib

    masks = tmp_path / "masks"
    masks.mkdir()
    first = sorted(ct_study.nifti_folders.rglob("*.nii.gz"))[0]
    shape = nib.load(first).shape
    nib.save(nib.Nifti1Image(np.ones(shape, np.uint8), np.eye(4)), str(masks / first.name))
    csv = tmp_path / "patients.csv"
    csv.write_text("patient,label\n" + "".join(f"{p},{c}\n" for p, c in ct_study.label_of.items()))
    cfg = nifti_cfg(
        helpers,
        ct_study.nifti_folders,
        f"data.labels_csv={csv}",
        "data.label_key=patient",
        "data.group_regex='^([A-Z]+\\d+)_s'",
        f"data.mask_dir={masks}",
    )
    src = load_source(cfg)
    assert all(src.class_names[r.label] == ct_study.label_of[r.group] for r in src.records)
    with_mask = [r for r in src.records if r.mask]
    assert len(with_mask) == 3 and all(first.name in r.mask for r in with_mask)
    assert any("have no mask of the same name" in n for n in src.notes)
    # a mask of another shape: named with both files
    nib.save(nib.Nifti1Image(np.ones((4, 4, 2), np.uint8), np.eye(4)), str(masks / first.name))
    with pytest.raises(DataError, match=r"mask volume .* has shape \(4, 4, 2\)"):
        load_source(cfg)


def test_nifti_bad_volume_is_skipped_and_named(helpers, ct_study, tmp_path):
    root = tmp_path / "vols"
    shutil.copytree(ct_study.nifti_folders, root)
    bad = root / "CT_COVID" / "broken.nii.gz"
    bad.write_bytes(b"not a volume")
    src = load_source(nifti_cfg(helpers, root))
    assert any(str(bad) in n and "cannot read NIfTI header" in n for n in src.notes)
    with pytest.raises(DataError, match="broken.nii.gz: cannot read NIfTI header"):
        load_source(nifti_cfg(helpers, root, "data.on_bad_image=error"))


# ---------------------------------------------------------------------------------- bad input
def test_bad_dicom_files_are_skipped_with_their_message(
    helpers, ct_study, ct_writer, tmp_path, monkeypatch
):
    """A slice without RescaleSlope, one without pixel data, a JPEG 2000 slice whose decoder
    is missing, and a series whose slices disagree in size: the run goes on without them, and
    each is listed with a message naming the file and the fix."""
    root = tmp_path / "ct"
    shutil.copytree(ct_study.dicom_folders, root)
    folder = root / "CT_COVID" / "COV01" / "series_0"
    no_rescale = ct_writer.write_ct(folder / "img_1", np.zeros((64, 64)), patient_id="COV01",
                                    series_uid=ct_writer.uid("series", "COV01", 0), slope=None,
                                    intercept=None, z=2.5, instance=2)  # fmt: skip
    no_pixels = ct_writer.write_ct(folder / "img_2", None, patient_id="COV01",
                                   series_uid=ct_writer.uid("series", "COV01", 0), z=5.0,
                                   instance=3)  # fmt: skip
    odd = root / "CT_COVID" / "COV02" / "series_0"
    odd_file = ct_writer.write_ct(odd / "img_0", np.zeros((32, 32)), patient_id="COV02",
                                  series_uid=ct_writer.uid("series", "COV02", 0))  # fmt: skip
    cfg = dicom_cfg(helpers, root, "data.image_size=32", "data.cache=memory")
    dm = ClassificationDataModule(cfg)
    dm.setup()
    reasons = {parse_address(p).file: why for p, why in dm.skipped}  # keyed by slice address
    assert "RescaleSlope" in reasons[str(no_rescale)] and "re-export" in reasons[str(no_rescale)]
    assert "no pixel data" in reasons[str(no_pixels)]
    assert any(str(odd_file) in n and "slices of different sizes" in n for n in dm.notes)
    assert not any("COV02/series" in r.attributes["series"] for r in dm.records)
    # on_bad_image=error: the same files stop the run, named
    with pytest.raises(DataError, match="slices of different sizes"):
        load_source(dicom_cfg(helpers, root, "data.on_bad_image=error"))

    # a compressed slice whose decoder plugin is missing
    jp = root / "CT_NonCOVID" / "NON01" / "series_0" / "img_0"
    ds = pydicom.dcmread(jp)
    ds.compress(JPEG2000Lossless)
    ds.save_as(jp)
    decoder = get_decoder(JPEG2000Lossless)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg-openjpeg>=2.0",)})
    dm = ClassificationDataModule(cfg)
    dm.setup()
    assert "pip install pylibjpeg" in dict(dm.skipped)[f"dicom:{jp}"]


def test_demo_study_command(tmp_path, capsys):
    """``python -m medcls.data.medical.demo``: a missing COVID-CT folder is one message and
    exit code 2 (the study it writes is the ``ct_study`` fixture these tests use)."""
    from medcls.data.medical.demo import main

    assert main([str(tmp_path / "out"), "--covid-ct", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere: no CT_NonCOVID and CT_COVID folders" in err and "--covid-ct" in err


def test_multi_frame_file_gives_one_record_per_frame(helpers, ct_writer, tmp_path):
    """A multi-frame DICOM file in a class folder: a record per frame (``#frame=k``), each
    decoded to its own frame's HU through the window."""
    hus = [ct_writer.grey_to_hu(ct_writer.phantom(k)) for k in range(3)]
    stored = np.stack([ct_writer.hu_to_stored(h) for h in hus])
    path = ct_writer.write_ct(tmp_path / "ct" / "a" / "mf.dcm", stored, patient_id="P1")
    ct_writer.write_ct(tmp_path / "ct" / "b" / "one.dcm", stored[0], patient_id="P2",
                       series_uid=ct_writer.uid("other"))  # fmt: skip
    cfg = dicom_cfg(
        helpers,
        tmp_path / "ct",
        "data.image_size=64",
        "data.cache=memory",
        "data.test_partition=all",
    )
    src = load_source(cfg)
    frames = [r.path for r in src.records if r.group == "P1"]
    assert frames == [f"dicom:{path}#frame={k}" for k in range(3)]
    dm = ClassificationDataModule(cfg)
    dm.setup()
    for k in range(3):
        expected = apply_window(np.asarray(stored[k], np.float32) - 1024.0, "lung")
        np.testing.assert_array_equal(dm.decoded.images[k], expected)
