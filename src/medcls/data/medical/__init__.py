"""Clinical CT formats: DICOM series and NIfTI volumes, read as HU and shown through CT
windows as the ``(H, W, 3)`` uint8 slices every medcls source hands on.

Pure reading functions; the data sources, the decode cache and the configs build on them.
"""

from medcls.data.medical.dicom import (
    DicomSlice,
    is_dicom,
    list_series,
    read_header,
    read_hu,
    select_indices,
    series_slices,
)
from medcls.data.medical.dicom import read_slice_rgb as read_dicom_slice_rgb
from medcls.data.medical.nifti import (
    axial_slices,
    display_slice,
    read_mask_slice,
    read_volume,
)
from medcls.data.medical.nifti import read_slice_rgb as read_nifti_slice_rgb
from medcls.data.medical.windows import WINDOWS, Window, apply_window, parse_window

__all__ = [
    "WINDOWS",
    "DicomSlice",
    "Window",
    "apply_window",
    "axial_slices",
    "display_slice",
    "is_dicom",
    "list_series",
    "parse_window",
    "read_dicom_slice_rgb",
    "read_header",
    "read_hu",
    "read_mask_slice",
    "read_nifti_slice_rgb",
    "read_volume",
    "select_indices",
    "series_slices",
]
