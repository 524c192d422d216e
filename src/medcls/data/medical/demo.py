"""A small CT study to try ``data=dicom`` / ``data=nifti`` on without hospital data: real CT
slices of the public COVID-CT set (8-bit PNG/JPEG) mapped to Hounsfield units and written as
16-bit DICOM series (several patients, one or two series each) and as NIfTI volumes.

    python -m medcls.data.medical.demo ct_demo --covid-ct ../shared/data/covid_ct
    medcls-train data=dicom data.root=ct_demo/dicom

Every DICOM header carries a made-up PatientName and BirthDate, as a hospital export would: the
privacy tests check that neither comes out of medcls. The grey levels map linearly to
[-1000, +400] HU, so the windows and the HU lung masks act on plausible values; the CT itself is
what the COVID-CT papers printed, not a scanner's original.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medcls.errors import DataError

PATIENT_NAME = "Doe^Janet"  # written into every file: it must never come out of the reader
BIRTH_DATE = "19610203"  # (the privacy tests write their own: these two lie in medcls's code)


def uid(*parts: object) -> str:
    """A deterministic UID (the same tree every session)."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def grey_to_hu(grey: np.ndarray) -> np.ndarray:
    """8-bit grey → HU: 0 is air (-1000), 255 is dense bone (+400)."""
    return grey.astype(np.float64) / 255.0 * 1400.0 - 1000.0


def hu_to_stored(hu: np.ndarray, slope: float = 1.0, intercept: float = -1024.0) -> np.ndarray:
    """HU → unsigned 16-bit stored values (what a scanner writes)."""
    return np.round((np.asarray(hu, np.float64) - intercept) / slope).astype(np.uint16)


def write_ct(
    path: str | os.PathLike,
    stored: np.ndarray | None,
    *,
    patient_id: str = "P000",
    study_uid: str | None = None,
    series_uid: str | None = None,
    instance: int | None = 1,
    z: float | None = 0.0,
    slope: float | None = 1.0,
    intercept: float | None = -1024.0,
    modality: str = "CT",
    photometric: str = "MONOCHROME2",
    shape: tuple[int, int] = (64, 64),
    patient_name: str = PATIENT_NAME,
    birth_date: str = BIRTH_DATE,
) -> Path:
    """One DICOM file (with preamble and file meta) of ``stored`` values: ``(H, W)`` uint16, or
    ``(F, H, W)`` for a multi-frame file; ``stored=None`` writes a header without pixel data
    (``shape`` gives its Rows/Columns); ``slope``/``intercept`` None leave the tag out."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = uid(path)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = patient_name
    ds.PatientBirthDate = birth_date
    ds.PatientSex = "F"
    ds.PatientID = patient_id
    ds.StudyInstanceUID = study_uid or uid("study", patient_id)
    ds.SeriesInstanceUID = series_uid or uid("series", patient_id)
    if instance is not None:
        ds.InstanceNumber = instance
    if z is not None:
        ds.ImagePositionPatient = [-160.0, -160.0, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = z
    ds.PixelSpacing = [0.7, 0.7]
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if stored is None:
        ds.Rows, ds.Columns = shape
    else:
        stored = np.ascontiguousarray(stored, dtype=np.uint16)
        ds.Rows, ds.Columns = stored.shape[-2:]
        if stored.ndim == 3:
            ds.NumberOfFrames = stored.shape[0]
        ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# ------------------------------------------------------------------ a small CT study to train on
CLASSES = ("CT_NonCOVID", "CT_COVID")  # the COVID-CT folders the slices come from
SLICES = 3  # per series


@dataclass
class CtStudy:
    """The same patients written three ways (see :func:`write_demo_study`)."""

    dicom_folders: Path  # <class>/<patient>/series_<k>/img_<i>: class folders
    dicom_flat: Path  # <patient>/series_<k>/img_<i>, labelled by labels_csv (PatientID, label)
    labels_csv: Path
    nifti_folders: Path  # <class>/<patient>_s<k>.nii.gz
    patient_name: str = PATIENT_NAME  # in every header
    birth_date: str = BIRTH_DATE
    label_of: dict[str, str] = field(default_factory=dict)  # patient → class
    series_uids: list[str] = field(default_factory=list)
    study_uids: list[str] = field(default_factory=list)


def covid_ct_slices(covid_ct: str | os.PathLike) -> dict[str, list[Path]]:
    """Class folder → its slice files (sorted) in a COVID-CT copy."""
    root = Path(covid_ct)
    pools = {
        c: sorted(p for p in (root / c).iterdir() if p.suffix.lower() in (".png", ".jpg"))
        for c in CLASSES
        if (root / c).is_dir()
    }
    if len(pools) < len(CLASSES):
        raise DataError(
            f"{root}: no {' and '.join(CLASSES)} folders; give the COVID-CT folder (--covid-ct)"
        )
    return pools


def write_demo_study(
    out: str | os.PathLike,
    covid_ct: str | os.PathLike,
    per_class: int = 8,
    size: int = 64,
    patient_name: str = PATIENT_NAME,
    birth_date: str = BIRTH_DATE,
) -> CtStudy:
    """``per_class`` patients per class, one or two series each (every third patient has
    two), :data:`SLICES` slices per series of ``size`` px, written under ``out`` as DICOM class
    folders (``dicom/``), a flat DICOM tree with ``labels.csv`` by PatientID, and NIfTI volumes
    (``nifti/``). A COVID patient's slices are CT_COVID slices."""
    import nibabel as nib

    base = Path(out)
    pools = covid_ct_slices(covid_ct)
    needed = (per_class + (per_class + 2) // 3) * SLICES
    if min(len(v) for v in pools.values()) < needed:
        raise DataError(
            f"{covid_ct}: fewer than {needed} slices per class for {per_class} patients"
        )
    study = CtStudy(
        base / "dicom",
        base / "dicom_flat",
        base / "labels.csv",
        base / "nifti",
        patient_name,
        birth_date,
    )
    rows = ["PatientID,label"]
    for label in CLASSES:
        files = iter(pools[label])
        for p in range(per_class):
            patient = f"{label[3:6].upper()}{p:02d}"  # NON00 …, COV00 …
            study.label_of[patient] = label
            rows.append(f"{patient},{label}")
            study_uid = uid("study", patient)
            study.study_uids.append(study_uid)
            for s in range(2 if p % 3 == 0 else 1):
                series_uid = uid("series", patient, s)
                study.series_uids.append(series_uid)
                hus = []
                for i in range(SLICES):
                    with Image.open(next(files)) as im:
                        grey = np.asarray(im.convert("L").resize((size, size), Image.BILINEAR))
                    hu = np.round(grey_to_hu(grey))
                    hus.append(hu)
                    for tree in (study.dicom_folders / label, study.dicom_flat):
                        write_ct(
                            tree / patient / f"series_{s}" / f"img_{i}",
                            hu_to_stored(hu),
                            patient_id=patient,
                            study_uid=study_uid,
                            series_uid=series_uid,
                            instance=i + 1,
                            z=2.5 * i,
                            patient_name=patient_name,
                            birth_date=birth_date,
                        )
                # RAS+ voxels whose axial display slice (nifti.display_slice) is the DICOM slice
                volume = np.stack([h.T[::-1, ::-1] for h in hus], axis=-1).astype(np.int16)
                path = study.nifti_folders / label / f"{patient}_s{s}.nii.gz"
                path.parent.mkdir(parents=True, exist_ok=True)
                nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))
    (study.dicom_flat / "README.txt").write_text("exported for the medcls CT demo\n")
    study.labels_csv.write_text("\n".join(rows) + "\n")
    return study


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder to write the study into")
    parser.add_argument("--covid-ct", default="../shared/data/covid_ct", help="COVID-CT folder")
    parser.add_argument("--per-class", type=int, default=8, help="patients per class")
    args = parser.parse_args(argv)
    try:
        study = write_demo_study(args.out, args.covid_ct, args.per_class)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"{len(study.label_of)} patients, {len(study.series_uids)} series:\n"
        f"  DICOM class folders  {study.dicom_folders}\n"
        f"  DICOM + labels CSV   {study.dicom_flat} + {study.labels_csv}\n"
        f"  NIfTI class folders  {study.nifti_folders}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
