"""DICOM reading: HU against pydicom's own numbers, series grouping and ordering, multi-frame,
the bad-input messages, the missing-decoder message, and that no name or birth date leaks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import MPEG2MPML, JPEG2000Lossless

from medcls.data.medical import dicom
from medcls.data.medical.dicom import (
    PLUGINS_HINT,
    DicomSlice,
    is_dicom,
    list_series,
    read_header,
    read_hu,
    read_slice_rgb,
    select_indices,
    series_slices,
)
from medcls.errors import DataError

CT_SMALL = get_testdata_file("CT_small.dcm")


def window_by_hand(hu: float, width: float, level: float) -> int:
    lo = level - width / 2
    return int(min(255, max(0, round((hu - lo) / width * 255))))


# ------------------------------------------------------------------------ pydicom's CT_small
def test_is_dicom(tmp_path):
    assert is_dicom(CT_SMALL)
    (tmp_path / "readme.txt").write_text("x" * 130 + "DICM" * 10)  # the magic misplaced
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "fake.dcm").write_bytes(b"\0" * 128 + b"DICX" + b"\0" * 64)
    assert not is_dicom(tmp_path / "readme.txt")
    assert not is_dicom(tmp_path / "empty")
    assert not is_dicom(tmp_path / "fake.dcm")
    assert not is_dicom(get_testdata_file("no_meta.dcm"))  # a bare dataset, no preamble
    with pytest.raises(FileNotFoundError):
        is_dicom(tmp_path / "missing.dcm")


def test_ct_small_hu():
    ds = pydicom.dcmread(CT_SMALL)
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(
        ds.RescaleIntercept
    )
    hu = read_hu(CT_SMALL)
    assert hu.shape == (128, 128) and hu.dtype == np.float32
    np.testing.assert_array_equal(hu, expected)
    assert float(ds.RescaleIntercept) == -1024  # so the check above is not the identity
    assert read_hu(CT_SMALL, frame=0).tolist() == hu.tolist()


def test_ct_small_windows_by_hand():
    ds = pydicom.dcmread(CT_SMALL)
    raw = ds.pixel_array
    hu_of = {  # a few pixels: the darkest, the brightest, and two in between
        "min": np.unravel_index(raw.argmin(), raw.shape),
        "max": np.unravel_index(raw.argmax(), raw.shape),
        "a": (64, 64),
        "b": (20, 100),
    }
    lung = read_slice_rgb(CT_SMALL, None, "lung")
    three = read_slice_rgb(CT_SMALL, None, ["lung", "mediastinum", [1800, 400]])
    for r, c in hu_of.values():
        hu = int(raw[r, c]) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert lung[r, c].tolist() == [window_by_hand(hu, 1500, -600)] * 3
        assert three[r, c].tolist() == [
            window_by_hand(hu, 1500, -600),
            window_by_hand(hu, 350, 50),
            window_by_hand(hu, 1800, 400),
        ]
    assert len(np.unique(lung[..., 0])) > 50  # a real image, not a flat one


def test_ct_small_header():
    ds = pydicom.dcmread(CT_SMALL, stop_before_pixels=True)
    h = read_header(CT_SMALL)
    assert h == DicomSlice(
        path=CT_SMALL,
        patient_id=str(ds.PatientID),
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        instance_number=int(ds.InstanceNumber),
        z=float(ds.ImagePositionPatient[2]),  # axial: the position along the normal is z
        rows=128,
        columns=128,
        number_of_frames=1,
        modality="CT",
    )
    assert h.patient_id == "1CT1" and h.z == pytest.approx(-75.699997)


# ---------------------------------------------------------------- series of real CT pixels
def test_list_series_groups_and_orders(ct_tree):
    series, skipped = list_series(ct_tree.root)
    assert set(series) == set(ct_tree.series)
    for uid, expected in ct_tree.series.items():
        got = series[uid]
        assert [s.path for s in got] == [str(p) for p, _ in expected]  # feet to head
        assert [s.z for s in got] == sorted(s.z for s in got)
        assert {s.patient_id for s in got} == {ct_tree.patient_of[uid]}
        assert len({s.study_uid for s in got}) == 1
        assert all((s.rows, s.columns, s.number_of_frames) == (64, 64, 1) for s in got)
    # series B of each patient was written with its z shuffled against the instance numbers
    b = [uid for uid in series if series[uid][0].z > 0]
    assert b and all([s.instance_number for s in series[uid]] == [2, 3, 1] for uid in b)
    assert sorted(skipped) == sorted((str(p), "not DICOM") for p in ct_tree.junk)
    assert len(skipped) == 3


def test_list_series_orders_by_instance_without_position(tmp_path, ct_writer):
    series = ct_writer.uid("no-position")
    for i, instance in enumerate((2, 3, 1)):
        ct_writer.write_ct(
            tmp_path / f"s{i}.dcm", np.zeros((8, 8)), series_uid=series, instance=instance, z=None
        )
    got, _ = list_series(tmp_path)
    assert [s.instance_number for s in got[series]] == [1, 2, 3]
    assert all(s.z is None for s in got[series])


def test_position_along_the_slice_normal(tmp_path, ct_writer):
    # coronal slices (rows run feet-ward): the normal is the patient's y axis, z is constant
    coronal = ct_writer.uid("coronal")
    for i, y in enumerate((-20.0, 10.0, -50.0)):
        path = ct_writer.write_ct(
            tmp_path / "cor" / f"c{i}.dcm", np.zeros((8, 8)), series_uid=coronal, instance=i + 1
        )
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.ImagePositionPatient = [-100.0, y, 30.0]
        ds.save_as(path)
    got, _ = list_series(tmp_path / "cor")
    assert [s.z for s in got[coronal]] == [-50.0, -20.0, 10.0]
    assert [s.instance_number for s in got[coronal]] == [3, 1, 2]
    # a position without an orientation: its z, no projection
    path = ct_writer.write_ct(tmp_path / "z.dcm", np.zeros((8, 8)), z=12.5)
    ds = pydicom.dcmread(path)
    del ds.ImageOrientationPatient
    ds.SliceLocation = 99.0
    ds.save_as(path)
    assert read_header(path).z == 12.5
    del ds.ImagePositionPatient  # then SliceLocation
    ds.save_as(path)
    assert read_header(path).z == 99.0


def test_read_hu_round_trip(ct_tree):
    for expected in ct_tree.series.values():
        for path, hu in expected:
            got = read_hu(path)
            assert got.dtype == np.float32 and got.shape == hu.shape
            assert np.abs(got - hu).max() <= 0.5  # slope 1: stored values are whole HU
            # and exactly the stored values, rescaled: nothing else was done to them
            stored = pydicom.dcmread(path).pixel_array.astype(np.float64)
            np.testing.assert_array_equal(got, stored - 1024)


def test_read_hu_round_trip_fractional_slope(tmp_path, ct_writer):
    hu = ct_writer.grey_to_hu(ct_writer.phantom(0))
    path = ct_writer.write_ct(
        tmp_path / "half.dcm", ct_writer.hu_to_stored(hu, 0.5, -1024), slope=0.5, intercept=-1024
    )
    got = read_hu(path)
    assert np.abs(got - hu).max() <= 0.25 + 1e-4
    assert np.abs(got - hu).max() > 0  # the grey → HU map is not on the 0.5 grid everywhere


def test_read_slice_rgb_real_pixels(ct_tree):
    path, hu = next(iter(ct_tree.series.values()))[1]
    rgb = read_slice_rgb(path, None, ["lung", "mediastinum"])
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    for r, c in [(0, 0), (32, 32), (10, 50), (50, 20)]:
        stored_hu = float(np.round(hu[r, c] + 1024) - 1024)
        assert rgb[r, c].tolist() == [
            window_by_hand(stored_hu, 1500, -600),
            window_by_hand(stored_hu, 350, 50),
            window_by_hand(stored_hu, 1500, -600),
        ]


# ------------------------------------------------------------------- photometric, frames
def test_monochrome1(tmp_path, ct_writer):
    stored = ct_writer.hu_to_stored(ct_writer.grey_to_hu(ct_writer.phantom(1)))
    m2 = ct_writer.write_ct(tmp_path / "m2.dcm", stored)
    m1 = ct_writer.write_ct(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1")
    # a CT's HU are physical values: MONOCHROME1 only inverts a viewer's display, after the
    # window, so the HU (and the windowed image: dense = bright) equal the MONOCHROME2 file's
    np.testing.assert_array_equal(read_hu(m1), read_hu(m2))
    np.testing.assert_array_equal(
        read_slice_rgb(m1, None, "lung"), read_slice_rgb(m2, None, "lung")
    )
    # other modalities have no physical scale: MONOCHROME1 values are mirrored (16 bits)
    mr1 = ct_writer.write_ct(
        tmp_path / "mr1.dcm", stored, modality="MR", photometric="MONOCHROME1", slope=None,
        intercept=None,
    )  # fmt: skip
    mr2 = ct_writer.write_ct(
        tmp_path / "mr2.dcm", stored, modality="MR", slope=None, intercept=None
    )
    np.testing.assert_array_equal(read_hu(mr2), stored.astype(np.float64))
    np.testing.assert_array_equal(read_hu(mr1), 65535.0 - stored)
    darkest = np.unravel_index(stored.argmax(), stored.shape)  # displayed black in MONOCHROME1
    assert read_hu(mr1)[darkest] == read_hu(mr1).min()


def test_multi_frame(tmp_path, ct_writer):
    hus = [ct_writer.grey_to_hu(ct_writer.phantom(i)) for i in range(3)]
    stored = np.stack([ct_writer.hu_to_stored(h) for h in hus])
    path = ct_writer.write_ct(tmp_path / "mf" / "multi.dcm", stored)
    for f, hu in enumerate(hus):
        got = read_hu(path, f)
        assert got.shape == (64, 64)
        np.testing.assert_array_equal(got, stored[f].astype(np.float64) - 1024)
        assert np.abs(got - hu).max() <= 0.5
    assert not np.array_equal(read_hu(path, 0), read_hu(path, 1))
    with pytest.raises(DataError, match=r"multi.dcm: multi-frame file with 3 frames, pass frame"):
        read_hu(path)
    with pytest.raises(DataError, match=r"multi.dcm: frame 3 out of range, the file has 3"):
        read_hu(path, 3)
    with pytest.raises(DataError, match=r"frame 1 out of range, the file has 1"):
        read_hu(CT_SMALL, 1)
    series, _ = list_series(tmp_path / "mf")
    (slices,) = series.values()
    assert slices[0].number_of_frames == 3
    entries = series_slices(slices)
    assert [(s.path, f) for s, f in entries] == [(str(path), f) for f in range(3)]
    np.testing.assert_array_equal(
        read_slice_rgb(path, 2, "lung"), read_slice_rgb(path, 2, ["lung"] * 3)
    )


def test_enhanced_ct_rescale_in_functional_groups(tmp_path, ct_writer):
    stored = np.arange(2 * 4 * 4, dtype=np.uint16).reshape(2, 4, 4) * 100
    path = ct_writer.write_ct(tmp_path / "enh.dcm", stored, slope=None, intercept=None)
    ds = pydicom.dcmread(path)
    shared, frame1 = Dataset(), Dataset()
    shared.PixelValueTransformationSequence = Sequence([Dataset()])
    shared.PixelValueTransformationSequence[0].RescaleSlope = 2
    shared.PixelValueTransformationSequence[0].RescaleIntercept = -1000
    frame1.PixelValueTransformationSequence = Sequence([Dataset()])
    frame1.PixelValueTransformationSequence[0].RescaleSlope = 1
    frame1.PixelValueTransformationSequence[0].RescaleIntercept = -1024
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence([Dataset(), frame1])
    ds.save_as(path)
    np.testing.assert_array_equal(read_hu(path, 0), stored[0] * 2.0 - 1000)  # shared group
    np.testing.assert_array_equal(read_hu(path, 1), stored[1] - 1024.0)  # its own group


# ---------------------------------------------------------------------------- bad input
def test_mismatched_series(tmp_path, ct_writer):
    series = ct_writer.uid("mixed")
    a = ct_writer.write_ct(tmp_path / "a.dcm", np.zeros((8, 8)), series_uid=series, z=0)
    b = ct_writer.write_ct(tmp_path / "b.dcm", np.zeros((8, 6)), series_uid=series, z=1)
    with pytest.raises(DataError) as err:
        list_series(tmp_path)
    text = str(err.value)
    assert f"{a} (8x8)" in text and f"{b} (8x6)" in text
    assert ct_writer.PATIENT_NAME not in text and series not in text  # files named, no UID
    # skip: the series is left out, each of its files listed with the same message
    series_found, skipped = list_series(tmp_path, odd_sizes="skip")
    assert series_found == {}
    assert sorted(p for p, _ in skipped) == [str(a), str(b)]
    assert all(f"{b} (8x6)" in why for _, why in skipped)


def test_no_pixel_data(tmp_path, ct_writer):
    path = ct_writer.write_ct(tmp_path / "header_only.dcm", None)
    assert read_header(path).rows == 64  # the header alone is fine
    with pytest.raises(DataError, match=r"header_only.dcm: no pixel data"):
        read_hu(path)


def test_missing_rescale_on_ct(tmp_path, ct_writer):
    stored = np.full((8, 8), 1000, np.uint16)
    no_slope = ct_writer.write_ct(tmp_path / "no_slope.dcm", stored, slope=None)
    with pytest.raises(DataError, match=r"no_slope.dcm: CT image with no RescaleSlope \("):
        read_hu(no_slope)
    neither = ct_writer.write_ct(tmp_path / "neither.dcm", stored, slope=None, intercept=None)
    with pytest.raises(DataError, match=r"neither.dcm: .*no RescaleSlope and RescaleIntercept"):
        read_hu(neither)
    with pytest.raises(DataError, match=r"no_slope.dcm: CT image"):
        read_slice_rgb(no_slope, None, "lung")
    # another modality has no HU to get wrong: slope 1, intercept 0
    mr = ct_writer.write_ct(tmp_path / "mr.dcm", stored, modality="MR", slope=None, intercept=None)
    np.testing.assert_array_equal(read_hu(mr), np.full((8, 8), 1000.0))


def test_unreadable_files_are_skipped(tmp_path, ct_writer):
    good = ct_writer.write_ct(tmp_path / "good.dcm", np.zeros((8, 8)))
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + b"\x01" * 7)
    no_series = tmp_path / "no_series.dcm"
    ds = pydicom.dcmread(good)
    del ds.SeriesInstanceUID
    ds.save_as(no_series)
    series, skipped = list_series(tmp_path)
    assert [s.path for s in sum(series.values(), [])] == [str(good)]
    reasons = dict(skipped)
    assert set(reasons) == {str(broken), str(no_series)}
    assert reasons[str(broken)] != "not DICOM" and reasons[str(broken)]
    assert "no SeriesInstanceUID" in reasons[str(no_series)]
    assert reasons[str(no_series)].startswith("no SeriesInstanceUID")  # no path repeated
    with pytest.raises(DataError, match=r"broken.dcm: "):
        read_hu(broken)


def test_truncated_pixel_data(tmp_path):
    raw = Path(CT_SMALL).read_bytes()
    path = tmp_path / "truncated.dcm"
    path.write_bytes(raw[:-2000])  # the end of the pixel data is gone
    with pytest.raises(DataError, match=r"truncated.dcm: cannot decode pixel data \(ValueError"):
        read_hu(path)


def _compressed(tmp_path, ct_writer):
    stored = ct_writer.hu_to_stored(ct_writer.grey_to_hu(ct_writer.phantom(5)))
    plain = ct_writer.write_ct(tmp_path / "plain.dcm", stored)
    ds = pydicom.dcmread(plain)
    ds.compress(JPEG2000Lossless)
    path = tmp_path / "j2k.dcm"
    ds.save_as(path)
    return plain, path


def test_compressed_decodes(tmp_path, ct_writer):
    plain, path = _compressed(tmp_path, ct_writer)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == JPEG2000Lossless
    np.testing.assert_array_equal(read_hu(path), read_hu(plain))  # the plugins are installed


def test_missing_decoder_plugin(tmp_path, ct_writer, monkeypatch):
    _, path = _compressed(tmp_path, ct_writer)
    decoder = get_decoder(JPEG2000Lossless)
    # the state pydicom's Decoder is in when no plugin's dependencies import
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(
        decoder,
        "_unavailable",
        {
            "gdcm": ("gdcm>=3.0.10",),
            "pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-openjpeg>=2.0"),
            "pillow": ("pillow>=10.0",),
        },
    )
    with pytest.raises(RuntimeError, match="all plugins are missing dependencies"):
        _ = pydicom.dcmread(path).pixel_array  # what pydicom raises, unwrapped
    with pytest.raises(DataError) as err:
        read_hu(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ")
    assert "JPEG 2000 Image Compression (Lossless Only)" in text and PLUGINS_HINT in text


def test_transfer_syntax_without_decoder(tmp_path, ct_writer):
    _, path = _compressed(tmp_path, ct_writer)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = MPEG2MPML  # video: pydicom has no decoder at all
    ds.save_as(path)
    with pytest.raises(DataError, match=r"j2k.dcm: pixel data in transfer syntax 'MPEG2 Main"):
        read_hu(path)


def test_not_an_image(tmp_path, ct_writer):
    path = ct_writer.write_ct(tmp_path / "sr.dcm", None)
    ds = pydicom.dcmread(path)
    del ds.Rows, ds.Columns
    ds.Modality = "SR"
    ds.save_as(path)
    with pytest.raises(DataError, match=r"sr.dcm: not an image \(no Rows/Columns; SR\)"):
        read_header(path)
    series, skipped = list_series(tmp_path)
    assert not series and "not an image" in skipped[0][1]


# ------------------------------------------------------------------------------- privacy
def test_no_identifying_fields(ct_tree, ct_writer):
    assert {f.name for f in dataclasses.fields(DicomSlice)} == {
        "path",
        "patient_id",
        "study_uid",
        "series_uid",
        "instance_number",
        "z",
        "rows",
        "columns",
        "number_of_frames",
        "modality",
    }
    path = next(iter(ct_tree.series.values()))[0][0]
    ds = pydicom.dcmread(path)
    assert str(ds.PatientName) == ct_writer.PATIENT_NAME  # the files do carry a name …
    assert ds.PatientBirthDate == ct_writer.BIRTH_DATE
    out = repr(list_series(ct_tree.root)) + repr(read_header(path))
    for secret in (ct_writer.PATIENT_NAME, "Janet", ct_writer.BIRTH_DATE):
        assert secret not in out  # … that never comes out of the reader
    assert "P001" in out and "P002" in out  # the group id does


# ----------------------------------------------------------------------- slice selection
def _fake_series(n: int, frames: int = 1) -> list[DicomSlice]:
    return [
        DicomSlice(f"s{i}", "P", "st", "se", i + 1, float(i), 8, 8, frames, "CT") for i in range(n)
    ]


def test_series_slices_step_and_central_fraction():
    slices = _fake_series(10)
    names = lambda entries: [s.path for s, _ in entries]  # noqa: E731
    assert names(series_slices(slices)) == [f"s{i}" for i in range(10)]
    assert names(series_slices(slices, step=3)) == ["s0", "s3", "s6", "s9"]
    assert names(series_slices(slices, central_fraction=0.6)) == [f"s{i}" for i in range(2, 8)]
    assert names(series_slices(slices, step=2, central_fraction=0.6)) == ["s2", "s4", "s6"]
    assert names(series_slices(slices, central_fraction=0.01)) == ["s4"]  # at least one
    assert all(f is None for _, f in series_slices(slices))
    assert series_slices([]) == []
    # multi-frame files expand first: 2 files × 4 frames = 8 entries
    entries = series_slices(_fake_series(2, frames=4), central_fraction=0.5)
    assert [(s.path, f) for s, f in entries] == [("s0", 2), ("s0", 3), ("s1", 0), ("s1", 1)]


@pytest.mark.parametrize(
    "step, fraction, message",
    [
        (0, 1.0, "step=0"),
        (1.5, 1.0, "step=1.5"),
        (True, 1.0, "step=True"),
        (1, 0.0, "fraction=0.0"),
        (1, 1.2, "fraction=1.2"),
    ],  # fmt: skip
)
def test_bad_selection(step, fraction, message):
    with pytest.raises(DataError, match=message):
        select_indices(10, step, fraction)
    with pytest.raises(DataError, match=message):
        series_slices(_fake_series(3), step, fraction)


def test_module_constants():
    assert dicom.PREAMBLE == 128 and dicom.MAGIC == b"DICM"
