"""A CT slice's address: the ``Record.path`` of one slice of a DICOM file or a NIfTI volume.

``dicom:<file>`` is a single-frame DICOM file, ``dicom:<file>#frame=<k>`` frame ``k`` of a
multi-frame one, ``nifti:<file>#z=<k>`` axial slice ``k`` of a volume (see
:func:`~medcls.data.medical.nifti.display_slice`). One string, so a slice travels through the
splits, the decode cache, the prediction files and the ensembles like any image path, and the
readers know what to open from it alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from medcls.data.records import SLICE_FRAGMENT

DICOM, NIFTI = "dicom", "nifti"
_INDEX = {DICOM: "frame", NIFTI: "z"}  # what the number after '#' counts
NIFTI_EXTENSIONS = (".nii.gz", ".nii")


@dataclass(frozen=True)
class SliceAddress:
    """``kind`` (``dicom`` | ``nifti``), the ``file`` it lives in and its ``index`` (a DICOM
    frame or a NIfTI z; None for a single-frame DICOM file)."""

    kind: str
    file: str
    index: int | None = None

    def __str__(self) -> str:
        tail = "" if self.index is None else f"#{_INDEX[self.kind]}={self.index}"
        return f"{self.kind}:{self.file}{tail}"


def slice_address(kind: str, file: str | os.PathLike, index: int | None = None) -> str:
    """The address string of one slice (``index`` required for NIfTI)."""
    if kind == NIFTI and index is None:
        raise ValueError("a NIfTI slice needs its z index")
    return str(SliceAddress(kind, os.path.abspath(os.fspath(file)), index))


def parse_address(path: str) -> SliceAddress | None:
    """The :class:`SliceAddress` of ``path``, or None for any other path (an image file, a
    ``synthetic://`` address)."""
    kind, sep, rest = path.partition(":")
    if not sep or kind not in _INDEX or rest.startswith("//"):
        return None
    m = SLICE_FRAGMENT.search(rest)
    if m and m.group(1) == _INDEX[kind]:
        return SliceAddress(kind, rest[: m.start()], int(m.group(2)))
    return SliceAddress(kind, rest, None)


def file_of(path: str) -> str:
    """The file on disk behind a record path (the path itself unless it is a slice address)."""
    address = parse_address(path)
    return address.file if address is not None else path


def is_nifti_file(name: str) -> bool:
    return name.lower().endswith(NIFTI_EXTENSIONS)


def volume_stem(path: str | os.PathLike) -> str:
    """A volume's file name without ``.nii.gz`` / ``.nii``."""
    name = os.path.basename(os.fspath(path))
    for ext in NIFTI_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name
