"""Reading CT NIfTI volumes (``.nii``, ``.nii.gz``) as axial slices.

Orientation: a volume is first brought to nibabel's closest canonical orientation, RAS+
(``nib.as_closest_canonical``: array axis 0 runs to the patient's Right, 1 to Anterior, 2 to
Superior), whatever axis order and flips the file was stored with. An axial slice
``volume[:, :, z]`` is then shown in the radiological convention of an axial DICOM slice
(ImageOrientationPatient ``[1, 0, 0, 0, 1, 0]``): anterior at the top, the patient's right on
the image's left, i.e. ``slice.T[::-1, ::-1]`` (rows = A→P, columns = R→L). A series converted
to NIfTI (dcm2niix) thus gives the same picture as its DICOM slices.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import nibabel as nib
import numpy as np

from medcls.data.medical.dicom import select_indices
from medcls.data.medical.windows import apply_window
from medcls.errors import DataError

# Volumes kept decoded per process (a CT volume is ~300 MB as float32; every DataLoader worker
# has its own cache). Slices are read volume by volume, so two suffice to avoid re-reading.
CACHE_VOLUMES = 2


@functools.lru_cache(maxsize=CACHE_VOLUMES)
def _canonical(path: str, mtime_ns: int, size: int) -> np.ndarray:
    """The volume at ``path`` in RAS+ as read-only float32 ``(X, Y, Z)``; ``mtime_ns`` and
    ``size`` are part of the cache key only, so a rewritten file is read again."""
    try:
        img = nib.load(path)
        shape = img.shape
        if len(shape) == 4 and shape[3] != 1:
            raise DataError(
                f"{path}: 4-d volume of shape {tuple(shape)} (a time series or several "
                "channels); only 3-d CT volumes (or 4-d with one volume) can be sliced"
            )
        if not 2 <= len(shape) <= 4:
            raise DataError(f"{path}: volume of shape {tuple(shape)}, expected (X, Y, Z)")
        # header scaling (scl_slope / scl_inter) is applied by get_fdata
        data = nib.as_closest_canonical(img).get_fdata(dtype=np.float32)
    except (DataError, FileNotFoundError):
        raise
    # nibabel raises ImageFileError, EOFError, zlib/gzip errors, ValueError on damaged files
    except Exception as e:
        raise DataError(f"{path}: cannot read NIfTI volume ({type(e).__name__}: {e})") from e
    if data.ndim == 4:
        data = data[..., 0]
    elif data.ndim == 2:  # a single slice stored as a 2-d image
        data = data[..., np.newaxis]
    data.setflags(write=False)  # shared by every caller of the cache
    return data


def read_volume(path: str | os.PathLike) -> np.ndarray:
    """A NIfTI volume → read-only ``(X, Y, Z)`` float32 array in RAS+ (see the module
    docstring), scaled by the header's scl_slope/scl_inter (HU for a CT).

    The last few volumes read are cached (keyed by path, mtime and size), so reading its slices
    one by one decodes a volume once.

    Raises:
        FileNotFoundError: no such file.
        DataError: the file cannot be read as NIfTI, or it is 4-d with more than one volume;
            the message names the file.
    """
    path = os.fspath(path)
    st = os.stat(path)
    return _canonical(os.path.abspath(path), st.st_mtime_ns, st.st_size)


def axial_slices(volume: np.ndarray, step: int = 1, central_fraction: float = 1.0) -> list[int]:
    """The z indices of ``volume`` (``(X, Y, Z)`` from :func:`read_volume`) to read: the
    central ``central_fraction`` of them, every ``step``-th (see
    :func:`~medcls.data.medical.dicom.select_indices`)."""
    return select_indices(volume.shape[2], step, central_fraction)


def display_slice(volume: np.ndarray, z: int) -> np.ndarray:
    """Axial slice ``z`` of a RAS+ ``(X, Y, Z)`` volume → ``(H, W) = (Y, X)`` in radiological
    display: row 0 is the most anterior, column 0 the patient's right."""
    return volume[:, :, z].T[::-1, ::-1]


def read_slice_hu(path: str | os.PathLike, z: int) -> np.ndarray:
    """Axial slice ``z`` of a volume → ``(H, W)`` float32 values (HU for a CT), oriented for
    display (module docstring)."""
    volume = read_volume(path)
    depth = volume.shape[2]
    if isinstance(z, bool) or not isinstance(z, (int, np.integer)) or not 0 <= z < depth:
        raise DataError(f"{os.fspath(path)}: slice z={z!r} out of range, the volume has {depth}")
    return display_slice(volume, int(z))


def read_slice_rgb(path: str | os.PathLike, z: int, windows: Any) -> np.ndarray:
    """Axial slice ``z`` of a CT volume → ``(H, W, 3)`` uint8 RGB through ``windows`` (a spec
    for :func:`~medcls.data.medical.windows.parse_window`), oriented for display (module
    docstring); ``H, W`` are the volume's Y and X sizes."""
    return apply_window(read_slice_hu(path, z), windows)


def read_mask_slice(path: str | os.PathLike, z: int) -> np.ndarray:
    """Axial slice ``z`` of a mask volume → ``(H, W)`` uint8, 255 where the mask is > 0.5 (any
    label of a label map), 0 elsewhere; same orientation as :func:`read_slice_rgb`."""
    return np.where(read_slice_hu(path, z) > 0.5, 255, 0).astype(np.uint8)
