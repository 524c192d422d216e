"""NIfTI reading: volumes, slice selection, the display orientation (against the axial DICOM
slice the volume was made from and an asymmetric marker), masks and the bad-input messages."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medcls.data.medical.dicom import read_slice_rgb as read_dicom_slice_rgb
from medcls.data.medical.nifti import (
    axial_slices,
    read_mask_slice,
    read_slice_rgb,
    read_volume,
)
from medcls.data.medical.windows import apply_window
from medcls.errors import DataError

SPACING, DZ = 0.7, 2.5
X0, Y0, Z0 = -160.0, -150.0, -40.0  # ImagePositionPatient (LPS) of the first voxel


def as_dcm2niix(slices: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Axial DICOM slices ``(rows, columns)`` (ImageOrientationPatient [1,0,0,0,1,0], feet to
    head) → the NIfTI data and RAS affine of the same voxels, stored as a DICOM → NIfTI
    converter without reorientation would: ``data[i, j, k] = slice_k[j, i]``, voxel ``(i, j)``
    at LPS ``(X0 + i·s, Y0 + j·s)``, i.e. RAS ``(-X0 - i·s, -Y0 - j·s)``."""
    data = np.stack([s.T for s in slices], axis=-1)
    affine = np.array(
        [[-SPACING, 0, 0, -X0], [0, -SPACING, 0, -Y0], [0, 0, DZ, Z0], [0, 0, 0, 1]], float
    )
    return data, affine


def save(path, data, affine, slope=None, inter=None) -> str:
    img = nib.Nifti1Image(data, affine)
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    nib.save(img, str(path))
    return str(path)


@pytest.fixture(scope="module")
def ct_volume(tmp_path_factory, covid_grey, ct_writer):
    """6 real CT slices as HU, written (a) as axial DICOM files and (b) as one int16 NIfTI
    volume with scl_slope 1 / scl_inter -1024 in the converter's LPS-flipped layout, (c) the
    same voxels stored in RAS order with z descending."""
    d = tmp_path_factory.mktemp("nifti")
    hus = [np.round(ct_writer.grey_to_hu(g)) for g in covid_grey[6:12]]
    dicoms = [
        ct_writer.write_ct(d / f"slice{k}.dcm", ct_writer.hu_to_stored(hu), z=Z0 + k * DZ)
        for k, hu in enumerate(hus)
    ]
    data, affine = as_dcm2niix(hus)
    stored = (data + 1024).astype(np.int16)
    volume = save(d / "ct.nii.gz", stored, affine, 1.0, -1024.0)
    # (c): RAS axes, the slices stored head to feet
    ras = stored[::-1, ::-1, ::-1]
    flipped = np.diag([SPACING, SPACING, -DZ, 1.0])
    flipped[:3, 3] = [
        -X0 - (ras.shape[0] - 1) * SPACING,
        -Y0 - (ras.shape[1] - 1) * SPACING,
        Z0 + (ras.shape[2] - 1) * DZ,
    ]
    other = save(d / "ct_ras.nii", ras, flipped, 1.0, -1024.0)
    return {"hus": hus, "dicoms": dicoms, "volume": volume, "other": other, "dir": d}


def test_read_volume(ct_volume):
    vol = read_volume(ct_volume["volume"])
    assert vol.shape == (64, 64, 6) and vol.dtype == np.float32
    # RAS+: the converter's x and y axes (LPS) are flipped, z kept; scl_inter applied
    expected = np.stack([hu.T for hu in ct_volume["hus"]], axis=-1)[::-1, ::-1, :]
    np.testing.assert_array_equal(vol, expected)
    assert nib.aff2axcodes(nib.load(ct_volume["volume"]).affine) == ("L", "P", "S")
    with pytest.raises(ValueError, match="read-only"):
        vol[0, 0, 0] = 0  # the cached volume is shared: nobody may change it


def test_slices_look_like_the_dicom_slices(ct_volume):
    for k, (hu, dcm) in enumerate(zip(ct_volume["hus"], ct_volume["dicoms"], strict=True)):
        rgb = read_slice_rgb(ct_volume["volume"], k, ["lung", "mediastinum", "bone"])
        assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
        np.testing.assert_array_equal(rgb, apply_window(hu.astype(np.float32), rgb_windows()))
        np.testing.assert_array_equal(rgb, read_dicom_slice_rgb(dcm, None, rgb_windows()))
        # another storage order of the same voxels gives the same picture at the same z
        np.testing.assert_array_equal(read_slice_rgb(ct_volume["other"], k, rgb_windows()), rgb)
    # negative control: the raw (un-oriented) slice is a different picture
    raw = np.asarray(nib.load(ct_volume["volume"]).dataobj[:, :, 0], np.float32)
    assert not np.array_equal(
        apply_window(raw, "lung"), read_slice_rgb(ct_volume["volume"], 0, "lung")
    )


def rgb_windows():
    return ["lung", "mediastinum", "bone"]


def test_orientation_with_marker(tmp_path):
    """An asymmetric volume in RAS: a bright voxel at the patient's right-anterior corner and a
    dimmer one at the left-posterior corner of slice 1. Radiological display: anterior at the
    top, the patient's right on the left of the image."""
    vol = np.full((8, 6, 3), -1000.0, np.float32)  # X (R) = 8, Y (A) = 6, Z (S) = 3
    vol[7, 5, 1] = 2000.0  # most Right, most Anterior
    vol[0, 0, 1] = 0.0  # most Left, most Posterior
    vol[7, 0, 2] = 2000.0  # right-posterior, on the top slice
    path = save(tmp_path / "marker.nii.gz", vol, np.eye(4))
    img = read_slice_rgb(path, 1, "bone")[..., 0]
    assert img.shape == (6, 8)  # (H, W) = (Y, X)
    assert img[0, 0] == 255  # right-anterior → top-left
    assert img[5, 7] == window(0.0)  # left-posterior → bottom-right
    assert (img > 0).sum() == 2
    top = read_slice_rgb(path, 2, "bone")[..., 0]
    assert top[5, 0] == 255 and (top > 0).sum() == 1  # right-posterior → bottom-left
    # the same patient stored LPS (x and y flipped, affine saying so) looks the same
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps[:2, 3] = [7, 5]
    other = save(tmp_path / "marker_lps.nii.gz", vol[::-1, ::-1, :], lps)
    np.testing.assert_array_equal(read_slice_rgb(other, 1, "bone")[..., 0], img)


def window(hu: float, width: float = 1800, level: float = 400) -> int:
    return round(min(max((hu - (level - width / 2)) / width, 0), 1) * 255)


def test_axial_slices():
    vol = np.zeros((4, 4, 10), np.float32)
    assert axial_slices(vol) == list(range(10))
    assert axial_slices(vol, step=3) == [0, 3, 6, 9]
    assert axial_slices(vol, central_fraction=0.6) == [2, 3, 4, 5, 6, 7]
    assert axial_slices(vol, step=2, central_fraction=0.6) == [2, 4, 6]
    with pytest.raises(DataError, match="step=0"):
        axial_slices(vol, step=0)
    with pytest.raises(DataError, match="central_fraction=1.5"):
        axial_slices(vol, central_fraction=1.5)


def test_mask_slices(ct_volume):
    """A label map (1 = right-ish tissue, 2 = the rest above -500 HU) in the image's geometry
    comes out as 0/255 in the image's orientation."""
    hus = ct_volume["hus"]
    masks = [np.where(hu > -500, 1 + (np.arange(64) >= 32)[None, :], 0) for hu in hus]
    data, affine = as_dcm2niix(masks)
    path = save(ct_volume["dir"] / "mask.nii.gz", data.astype(np.uint8), affine)
    for k, hu in enumerate(hus):
        m = read_mask_slice(path, k)
        assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255}
        np.testing.assert_array_equal(m, np.where(hu > -500, 255, 0))
        assert 0 < (m == 255).mean() < 1


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(gzip.compress(b"not a nifti header" * 20))
    with pytest.raises(DataError, match=r"bad.nii.gz: cannot read NIfTI volume"):
        read_volume(bad)
    text = tmp_path / "notes.nii"
    text.write_text("hello")
    with pytest.raises(DataError, match=r"notes.nii: cannot read NIfTI volume"):
        read_slice_rgb(text, 0, "lung")
    good = save(tmp_path / "t.nii", np.zeros((8, 8, 4), np.int16), np.eye(4))
    truncated = tmp_path / "truncated.nii"
    truncated.write_bytes(Path(good).read_bytes()[:400])  # header, half the voxels
    with pytest.raises(DataError, match=r"truncated.nii: cannot read NIfTI volume"):
        read_volume(truncated)
    with pytest.raises(FileNotFoundError):
        read_volume(tmp_path / "missing.nii.gz")


def test_four_d(tmp_path):
    path = save(tmp_path / "t2.nii.gz", np.zeros((4, 4, 3, 2), np.float32), np.eye(4))
    with pytest.raises(DataError, match=r"t2.nii.gz: 4-d volume of shape \(4, 4, 3, 2\)"):
        read_volume(path)
    one = np.arange(48, dtype=np.float32).reshape(4, 4, 3, 1)
    path = save(tmp_path / "t1.nii.gz", one, np.eye(4))
    np.testing.assert_array_equal(read_volume(path), one[..., 0])


def test_z_out_of_range(ct_volume):
    with pytest.raises(DataError, match=r"ct.nii.gz: slice z=6 out of range, the volume has 6"):
        read_slice_rgb(ct_volume["volume"], 6, "lung")
    with pytest.raises(DataError, match=r"z=-1 out of range"):
        read_mask_slice(ct_volume["volume"], -1)


def test_cache_sees_a_rewritten_file(tmp_path):
    path = save(tmp_path / "v.nii", np.zeros((4, 4, 2), np.float32), np.eye(4))
    assert read_volume(path).max() == 0
    assert read_volume(path) is read_volume(path)  # decoded once
    save(path, np.ones((4, 4, 2), np.float32), np.eye(4))
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a coarse-clock file system
    assert read_volume(path).min() == 1
