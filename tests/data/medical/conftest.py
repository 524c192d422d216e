"""Fixtures of the CT reader tests: real CT pixels (COVID-CT slices mapped to HU) written as
small DICOM series and NIfTI volumes, plus the writer for one-off DICOM files.

Test modules reach the writer through the ``ct_writer`` fixture (a namespace of functions),
never by importing this module.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medcls.data.medical.demo import (
    BIRTH_DATE,
    PATIENT_NAME,
    CtStudy,
    grey_to_hu,
    hu_to_stored,
    uid,
    write_ct,
    write_demo_study,
)

SIZE = 64  # slices are resized to SIZE x SIZE: small files, one size per series


def phantom(seed: int = 0) -> np.ndarray:
    """A synthetic ``(SIZE, SIZE)`` uint8 grey chest slice (body ellipse, two dark lungs, a
    bright spine, noise), for the tests that need pixels but not real ones."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE] / SIZE
    img = np.full((SIZE, SIZE), 5.0)
    img[((xx - 0.5) / 0.45) ** 2 + ((yy - 0.5) / 0.35) ** 2 < 1] = 150  # soft tissue
    for cx in (0.3, 0.68):  # lungs, the left one a little larger
        img[((xx - cx) / 0.15) ** 2 + ((yy - 0.48) / 0.22) ** 2 < 1] = 40
    img[((xx - 0.5) / 0.06) ** 2 + ((yy - 0.75) / 0.06) ** 2 < 1] = 240  # spine
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def ct_writer():
    """``ct_writer.write_ct(...)``, ``.hu_to_stored``, ``.grey_to_hu``, ``.phantom``, ``.uid``,
    and the patient name and birth date written into every file."""
    return types.SimpleNamespace(
        write_ct=write_ct,
        hu_to_stored=hu_to_stored,
        phantom=phantom,
        grey_to_hu=grey_to_hu,
        uid=uid,
        PATIENT_NAME=PATIENT_NAME,
        BIRTH_DATE=BIRTH_DATE,
        SIZE=SIZE,
    )


@pytest.fixture(scope="session")
def covid_grey(helpers) -> list[np.ndarray]:
    """14 real CT slices of ../shared/data/covid_ct as ``(SIZE, SIZE)`` uint8 grey (sorted
    file names, both classes); skips when the data set is absent."""
    root = helpers.shared_data("covid_ct")
    files = (
        sorted((root / "CT_COVID").glob("*.png"))[:7]
        + sorted((root / "CT_NonCOVID").glob("*.*"))[:7]
    )
    if len(files) < 14:
        pytest.skip(f"COVID-CT slices not found at {root} (the real-pixel CT fixtures need them)")
    out = []
    for f in files:
        with Image.open(f) as im:
            out.append(np.asarray(im.convert("L").resize((SIZE, SIZE), Image.BILINEAR)))
    return out


@dataclass
class CtTree:
    """The series written by :func:`ct_tree`: uid → HU slices and paths, feet to head."""

    root: Path
    series: dict[str, list[tuple[Path, np.ndarray]]] = field(default_factory=dict)
    patient_of: dict[str, str] = field(default_factory=dict)
    junk: list[Path] = field(default_factory=list)


@pytest.fixture(scope="session")
def ct_tree(tmp_path_factory: pytest.TempPathFactory, covid_grey: list[np.ndarray]) -> CtTree:
    """2 patients × 2 series × 3 slices of real CT pixels, in nested folders whose file order
    is not the slice order (instance numbers and z run backwards through the names, and
    series B lists its z in a shuffled order), with a README.txt, a junk file and a
    DICOMDIR-like text file mixed in."""
    root = tmp_path_factory.mktemp("dicom_tree")
    tree = CtTree(root)
    k = 0
    for p, patient in enumerate(("P001", "P002")):
        study = uid("study", patient)
        for s, series_name in enumerate(("A", "B")):
            series = uid("series", patient, series_name)
            tree.patient_of[series] = patient
            zs = [-10.0, -7.5, -5.0] if s == 0 else [32.5, 30.0, 35.0]  # B: shuffled z
            slices = []
            for i in range(3):
                hu = grey_to_hu(covid_grey[k])
                k += 1
                # file name order: img_00 has the highest instance number in series A
                path = root / patient / f"study_{p}" / f"series_{series_name}" / f"img_{i:02d}"
                write_ct(
                    path,
                    hu_to_stored(hu),
                    patient_id=patient,
                    study_uid=study,
                    series_uid=series,
                    instance=3 - i,
                    z=zs[i] if s == 1 else zs[2 - i],
                )
                slices.append((path, hu, zs[i] if s == 1 else zs[2 - i]))
            slices.sort(key=lambda t: t[2])
            tree.series[series] = [(path, hu) for path, hu, _ in slices]
    readme = root / "README.txt"
    readme.write_text("Exported by a PACS. Contains DICOM files.\n")
    junk = root / "P001" / "study_0" / "Thumbs.db"
    junk.write_bytes(b"\x00" * 300)
    short = root / "P002" / "LOCKFILE"
    short.write_bytes(b"")
    tree.junk = [readme, junk, short]
    return tree


@pytest.fixture(scope="session")
def ct_study(tmp_path_factory, helpers) -> CtStudy:
    """16 patients (8 per class), 22 series of 3 real COVID-CT slices as 16-bit HU DICOM with
    PatientName and BirthDate in every header, and the same series as NIfTI volumes
    (:func:`medcls.data.medical.demo.write_demo_study`). Skips when COVID-CT is absent."""
    root = helpers.shared_data("covid_ct", "CT_COVID")
    # a name and date of its own: medcls's code (bundled in every MLflow Model) holds the
    # demo's defaults, and the privacy test searches everything a run writes for these
    return write_demo_study(
        tmp_path_factory.mktemp("ct_study"), root, patient_name="Roe^Ottilie", birth_date="19470315"
    )
