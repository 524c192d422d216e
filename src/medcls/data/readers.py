"""One record path → its pixels, whatever it points at: an image file, or one CT slice of a
DICOM file or a NIfTI volume (:mod:`medcls.data.medical.address`).

The decode cache, the predictor and the audit read through here, so a CT slice is windowed the
same way in training, evaluation and prediction.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from medcls.data.io import IMAGE_EXTENSIONS, read_mask, read_rgb
from medcls.data.medical.address import DICOM, SliceAddress, parse_address
from medcls.errors import BadImageError, DataError

# A CT slice read with no window stated (a checkpoint trained on 8-bit slices, given DICOM):
# the lung window, the one COVID-19 and pneumonia CT is read in.
DEFAULT_WINDOW = "lung"


def read_slice_hu(address: SliceAddress) -> np.ndarray:
    """A CT slice → ``(H, W)`` float32 Hounsfield units (DICOM rescaled, NIfTI scaled)."""
    from medcls.data.medical import dicom, nifti  # pydicom / nibabel only when CT is read

    if address.kind == DICOM:
        return dicom.read_hu(address.file, address.index)
    return nifti.read_slice_hu(address.file, address.index)


def _bare_dicom(path: str) -> SliceAddress | None:
    """A plain path to a single-frame DICOM file (``medcls.load(...).predict(["IM0001"])``)
    read as the slice it is; None for anything else (image files are not opened here)."""
    from medcls.data.medical.dicom import is_dicom

    if path.lower().endswith(IMAGE_EXTENSIONS) or not os.path.isfile(path):
        return None
    try:
        return SliceAddress(DICOM, path) if is_dicom(path) else None
    except OSError:
        return None


def read_image(
    path: str, grayscale: bool = False, window: Sequence | str | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``path`` → ``(rgb, hu)``: ``(H, W, 3)`` uint8, and for a CT slice its ``(H, W)`` HU
    (None for an image file).

    Args:
        grayscale: image files only: luminance repeated on three channels (see ``read_rgb``).
        window: CT slices only: the window spec (``data.window``); None: the lung window.

    Raises:
        BadImageError: the file cannot be decoded (a CT slice's message names the file and the
            fix: a missing rescale, a decoder to install ...).
        FileNotFoundError: no such file.
    """
    address = parse_address(path) or _bare_dicom(path)
    if address is None:
        return read_rgb(path, grayscale=grayscale), None
    from medcls.data.medical.windows import apply_window

    try:
        hu = read_slice_hu(address)
        return apply_window(hu, window if window is not None else DEFAULT_WINDOW), hu
    except DataError as e:  # one unreadable slice: skipped and listed like any bad image
        raise BadImageError(str(e)) from e


def read_mask_image(path: str) -> np.ndarray:
    """A mask path → ``(H, W)`` uint8 (0/255): a mask image file, or a slice of a NIfTI mask
    volume (``nifti:<mask volume>#z=k``, any label > 0.5 counts)."""
    address = parse_address(path)
    if address is None:
        return read_mask(path)
    if address.kind == DICOM:
        raise BadImageError(f"{address.file}: DICOM masks are not supported; give NIfTI masks")
    from medcls.data.medical.nifti import read_mask_slice

    try:
        return read_mask_slice(address.file, address.index)
    except DataError as e:
        raise BadImageError(str(e)) from e
