"""What a user points a command at (``input=`` of medcls-predict, ``check_input=`` of
medcls-export, a pseudo-labelling pool): one image file, or the image files under a folder."""

from __future__ import annotations

import os

from medcls.data.io import IMAGE_EXTENSIONS
from medcls.errors import DataError


def list_inputs(path: str) -> list[str]:
    """One image file, or every image under a folder (recursively, sorted)."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise DataError(
            f"input={path} does not exist: give an image file, a folder of images, a DICOM "
            "folder or a NIfTI volume (.nii, .nii.gz)."
        )
    found = sorted(
        os.path.join(d, n)
        for d, _, names in os.walk(path)
        for n in names
        if n.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not found:
        raise DataError(
            f"input={path} holds no images ({', '.join(IMAGE_EXTENSIONS)}), no DICOM series "
            "and no NIfTI volumes."
        )
    return found
