"""``data=dicom``: CT series in a folder tree of DICOM files, one record per slice.

Labels come from class folders (``root/<class>/…``, any depth below) or from a CSV keyed by each
series' PatientID, StudyInstanceUID or SeriesInstanceUID (``data.labels_csv``,
``data.label_key``). The group of every slice is its PatientID, so a patient never crosses
partitions; its series is named ``<PatientID>/series<k>`` (``Record.meta``), for series-level
metrics. Files that are not DICOM are counted and ignored.

Privacy: only the PatientID (the group id) leaves the headers; series are numbered per
patient rather than named by their UID (see :class:`~medcls.data.medical.dicom.DicomSlice`).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from omegaconf import DictConfig

from medcls.data.medical.address import DICOM, slice_address
from medcls.data.medical.dicom import DicomSlice, list_series, series_slices
from medcls.data.records import Record
from medcls.data.sources.base import (
    SourceData,
    check_no_empty_class,
)
from medcls.data.sources.ct_labels import SliceSelection, ct_root, label_units, skipped_note
from medcls.errors import DataError

LABEL_KEYS = {  # data.label_key → the header field it matches
    "PatientID": lambda s: s.patient_id or "",
    "StudyInstanceUID": lambda s: s.study_uid,
    "SeriesInstanceUID": lambda s: s.series_uid,
}
NO_PATIENT = "no-patient-id"


def series_records(
    series: dict[str, list[DicomSlice]],
    label_of: Callable[[DicomSlice], int | None],
    selection: SliceSelection,
    source: str,
) -> tuple[list[Record], list[str]]:
    """Records of the selected slices of each series (``label_of`` its first slice → class
    index; None leaves the series out), and notes.

    A series without a PatientID is its own group (``no-patient-id-<k>``), with a note: its
    patient's other series could then fall into another partition.
    """
    records: list[Record] = []
    per_patient: dict[str, int] = {}
    anonymous = 0
    for slices in series.values():
        label = label_of(slices[0])
        if label is None:
            continue
        patient = slices[0].patient_id
        if patient is None:
            anonymous += 1
            patient = f"{NO_PATIENT}-{anonymous}"
        per_patient[patient] = per_patient.get(patient, 0) + 1
        name = f"{patient}/series{per_patient[patient]}"
        records += [
            Record(
                slice_address(DICOM, s.path, frame),
                label,
                group=patient,
                source=source,
                meta=(("series", name),),
            )
            for s, frame in series_slices(slices, selection.step, selection.central_fraction)
        ]
    notes = []
    if anonymous:
        notes.append(
            f"{anonymous} series have no PatientID: each is its own group, so another series of "
            "the same patient may land in another partition; export them with PatientID set"
        )
    return records, notes


def _check_one_folder(series: dict[str, list[DicomSlice]], root: str) -> None:
    """Class folders give the labels: each series' files must lie in one of them."""
    for slices in series.values():
        folders = {os.path.relpath(s.path, root).split(os.sep)[0] for s in slices}
        if len(folders) > 1:
            raise DataError(
                f"one DICOM series has files in several class folders ({sorted(folders)}), e.g. "
                f"{slices[0].path}: a series has one label; move its files into one folder"
            )


def load_dicom(cfg: DictConfig) -> SourceData:
    root = ct_root(cfg, "of DICOM files")
    selection = SliceSelection.from_cfg(cfg)
    odd = "error" if cfg.get("on_bad_image") == "error" else "skip"
    series, skipped = list_series(root, odd_sizes=odd)
    notes = skipped_note(skipped, "DICOM", os.path.abspath(root))
    if not series:
        raise DataError(
            f"no DICOM image series under {os.path.abspath(root)} ({len(skipped)} file(s) "
            "looked at, none a readable DICOM image). Point data.root at the exported series."
        )
    if not cfg.get("labels_csv"):
        _check_one_folder(series, root)
    labelled = label_units(
        cfg,
        {uid: slices[0].path for uid, slices in series.items()},
        lambda uid, key: LABEL_KEYS[key](series[uid][0]),
        list(LABEL_KEYS),
        "series",
    )
    index = {c: i for i, c in enumerate(labelled.classes)}
    label = {uid: index[name] for uid, name in labelled.label_of.items()}
    records, more = series_records(series, lambda s: label.get(s.series_uid), selection, cfg.name)
    check_no_empty_class(labelled.classes, records, labelled.where)
    return SourceData(cfg.name, labelled.classes, records, [*notes, *labelled.notes, *more])
