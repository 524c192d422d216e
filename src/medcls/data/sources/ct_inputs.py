"""CT given to a trained model (``medcls-predict input=…``): the slices of the DICOM series or
NIfTI volumes at a path, unlabelled, with the same patient and series attributes as
``data=dicom`` / ``data=nifti`` give, so predictions aggregate per series and per patient."""

from __future__ import annotations

import os

from medcls.data.medical.address import is_nifti_file, volume_stem
from medcls.data.medical.dicom import is_dicom, list_series, read_header
from medcls.data.records import Record
from medcls.data.sources.base import group_from_name
from medcls.data.sources.ct_labels import SliceSelection, skipped_note
from medcls.data.sources.dicom import series_records
from medcls.data.sources.nifti import list_volumes, volume_records, volume_shape

SOURCE = "input"


def _volumes(paths: list[str], selection: SliceSelection, group_regex: str | None) -> list[Record]:
    out: list[Record] = []
    for path in paths:
        patient = group_from_name(volume_stem(path), group_regex) or volume_stem(path)
        out += volume_records(path, volume_shape(path)[2], -1, patient, selection, SOURCE)
    return out


def ct_input_records(
    path: str, selection: SliceSelection, group_regex: str | None = None
) -> tuple[list[Record], list[str]]:
    """``(records, notes)`` for the CT at ``path``: a NIfTI volume, a DICOM file, or a folder
    of DICOM series (any depth; other files counted in the notes) or else of NIfTI volumes.
    No records when ``path`` holds no CT (a folder of image files).

    Raises:
        DataError: a DICOM file that is not an image, a NIfTI file that cannot be read; the
            message names the file.
    """
    if os.path.isfile(path):
        if is_nifti_file(path):
            return _volumes([path], selection, group_regex), []
        if not is_dicom(path):
            return [], []
        header = read_header(path)
        series, notes = {header.series_uid: [header]}, []
    elif os.path.isdir(path):
        series, skipped = list_series(path, odd_sizes="skip")
        if not series:
            volumes = list_volumes(path)
            return _volumes(volumes, selection, group_regex), []
        notes = skipped_note(skipped, "DICOM", os.path.abspath(path))
    else:
        return [], []
    records, more = series_records(series, lambda s: -1, selection, SOURCE)
    return records, [*notes, *more]
