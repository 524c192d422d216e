"""Reading CT DICOM files: headers for grouping and ordering a series, pixels as HU.

A hospital export is a folder tree of ``.dcm`` files (often without an extension), mixed with
README, DICOMDIR and viewer files. :func:`list_series` walks it and groups the image files by
series, ordered along the patient axis; :func:`series_slices` picks the slices to train on;
:func:`read_slice_rgb` turns one into an ``(H, W, 3)`` uint8 image through a CT window.

Privacy: a header is reduced to :class:`DicomSlice`, which keeps the patient id (the group id
of the splits) and the UIDs needed to group, but no name, birth date or other identifying
field, so none of them can reach a record, a log or a prediction file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from medcls.data.medical.windows import apply_window
from medcls.errors import DataError

PREAMBLE = 128  # bytes before the "DICM" magic (DICOM PS3.10 §7.1)
MAGIC = b"DICM"
PLUGINS_HINT = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True)
class DicomSlice:
    """What is kept of one DICOM image file's header (and nothing else, by design).

    Attributes:
        path: the file.
        patient_id: (0010,0020) PatientID, the group id; None when absent or empty.
        study_uid: (0020,000D) StudyInstanceUID ("" when absent).
        series_uid: (0020,000E) SeriesInstanceUID.
        instance_number: (0020,0013) InstanceNumber, or None.
        z: position of the slice along its normal in mm (ImagePositionPatient projected on
            the cross product of ImageOrientationPatient's row and column directions, which is
            its z for an axial slice), else SliceLocation, else None. Sorting by it orders
            an axial series from feet to head.
        rows: (0028,0010) Rows, the image height.
        columns: (0028,0011) Columns, the image width.
        number_of_frames: (0028,0008) NumberOfFrames, 1 for a single-frame file.
        modality: (0008,0060) Modality ("CT", "MR", ...; "" when absent).
    """

    path: str
    patient_id: str | None
    study_uid: str
    series_uid: str
    instance_number: int | None
    z: float | None
    rows: int
    columns: int
    number_of_frames: int
    modality: str


def is_dicom(path: str | os.PathLike) -> bool:
    """True when ``path`` starts with the 128-byte preamble and the ``DICM`` magic of a DICOM
    file (PS3.10). Reads 132 bytes, parses nothing. Bare datasets without the preamble (old
    ACR-NEMA files) count as not DICOM. A missing or unreadable file raises OSError."""
    with open(path, "rb") as f:
        head = f.read(PREAMBLE + len(MAGIC))
    return head[PREAMBLE:] == MAGIC


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _position(ds: Dataset) -> float | None:
    """Slice position along its normal (mm), for ordering; see :attr:`DicomSlice.z`."""
    ipp = ds.get("ImagePositionPatient")
    iop = ds.get("ImageOrientationPatient")
    if ipp is not None and len(ipp) == 3:
        pos = [_float(v) for v in ipp]
        if all(p is not None for p in pos):
            if iop is not None and len(iop) == 6 and all(_float(v) is not None for v in iop):
                normal = np.cross([float(v) for v in iop[:3]], [float(v) for v in iop[3:]])
                if np.linalg.norm(normal) > 0:  # a degenerate orientation: fall back to z
                    return float(np.dot(pos, normal / np.linalg.norm(normal)))
            return pos[2]
    return _float(ds.get("SliceLocation"))


def _str(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def read_header(path: str | os.PathLike) -> DicomSlice:
    """The :class:`DicomSlice` of a DICOM image file, read without its pixel data (fast).

    Raises:
        DataError: the file has no SeriesInstanceUID, or no Rows/Columns (not an image: a
            structured report, a presentation state ...); the message names the file.
        pydicom.errors.InvalidDicomError, OSError, ...: the file cannot be parsed.
    """
    path = os.fspath(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    series_uid = _str(ds, "SeriesInstanceUID")
    if not series_uid:
        raise DataError(f"{path}: no SeriesInstanceUID (0020,000E), cannot group it in a series")
    rows, columns = ds.get("Rows"), ds.get("Columns")
    if not rows or not columns:
        kind = _str(ds, "Modality") or "unknown modality"
        raise DataError(f"{path}: not an image (no Rows/Columns; {kind})")
    number = ds.get("InstanceNumber")
    frames = ds.get("NumberOfFrames")
    return DicomSlice(
        path=path,
        patient_id=_str(ds, "PatientID") or None,
        study_uid=_str(ds, "StudyInstanceUID"),
        series_uid=series_uid,
        instance_number=int(number) if number not in (None, "") else None,
        z=_position(ds),
        rows=int(rows),
        columns=int(columns),
        number_of_frames=int(frames) if frames not in (None, "") and int(frames) > 0 else 1,
        modality=_str(ds, "Modality"),
    )


def _sort_key(s: DicomSlice, by_z: bool) -> tuple:
    inf = math.inf
    primary = s.z if by_z else (s.instance_number if s.instance_number is not None else inf)
    secondary = s.instance_number if s.instance_number is not None else inf
    return (primary, secondary, s.path)


def list_series(
    root: str | os.PathLike, odd_sizes: str = "error"
) -> tuple[dict[str, list[DicomSlice]], list[tuple[str, str]]]:
    """Every DICOM image file under ``root`` (any depth), grouped by SeriesInstanceUID.

    Returns:
        ``(series, skipped)``: ``series`` maps each series uid (in the order first met, walking
        the tree sorted) to its slices, sorted by :attr:`DicomSlice.z` when every slice has
        one, else by InstanceNumber (then path); ``skipped`` lists ``(path, reason)`` for each
        file that is not DICOM (reason ``"not DICOM"``) or whose header cannot be read.

    A series whose slices disagree in size is not one volume: ``odd_sizes="error"`` stops with
    a :class:`DataError` naming two of its files with their sizes (not the UID: no header field
    but the patient id reaches a log); ``"skip"`` leaves
    the series out, its files in ``skipped`` with that message.
    """
    series: dict[str, list[DicomSlice]] = {}
    skipped: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()  # a deterministic order, whatever the file system returns
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                if not is_dicom(path):
                    skipped.append((path, "not DICOM"))
                    continue
                s = read_header(path)
            # pydicom raises a zoo of exceptions on damaged files (InvalidDicomError, EOFError,
            # struct.error, ValueError ...): each one skips that file, with its reason
            except DataError as e:  # our own message already names the file
                skipped.append((path, str(e).removeprefix(f"{path}: ")))
                continue
            except Exception as e:
                skipped.append((path, f"{type(e).__name__}: {e}"))
                continue
            series.setdefault(s.series_uid, []).append(s)
    for uid, slices in list(series.items()):
        first = slices[0]
        odd = next((s for s in slices if (s.rows, s.columns) != (first.rows, first.columns)), None)
        if odd is not None:
            message = (
                f"slices of different sizes in one series, e.g. {first.path} "
                f"({first.rows}x{first.columns}) and {odd.path} ({odd.rows}x{odd.columns}) "
                "(rows x columns); a series must be one volume: move the odd files out "
                "(a scout or a reformat exported with the same SeriesInstanceUID)"
            )
            if odd_sizes == "error":
                raise DataError(f"DICOM series of {first.path}: {message}")
            skipped += [(s.path, message) for s in slices]
            del series[uid]
            continue
        by_z = all(s.z is not None for s in slices)
        slices.sort(key=lambda s: _sort_key(s, by_z))
    return series, skipped


def select_indices(n: int, step: int = 1, central_fraction: float = 1.0) -> list[int]:
    """Indices into ``n`` ordered slices: the central ``central_fraction`` of them (0.6 keeps
    the middle 60 %, at least one slice), then every ``step``-th of those, starting with the
    first kept.

    Raises:
        DataError: ``step`` < 1 or ``central_fraction`` outside (0, 1].
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise DataError(f"slice step={step!r}: must be an integer >= 1 (1 keeps every slice)")
    if not 0 < central_fraction <= 1:
        raise DataError(
            f"central_fraction={central_fraction!r}: must be in (0, 1] (1 keeps the whole series, "
            "0.6 its middle 60 %)"
        )
    if n <= 0:
        return []
    keep = min(n, max(1, round(n * central_fraction)))
    start = (n - keep) // 2
    return list(range(start, start + keep, int(step)))


def series_slices(
    slices: Sequence[DicomSlice], step: int = 1, central_fraction: float = 1.0
) -> list[tuple[DicomSlice, int | None]]:
    """The ``(slice, frame)`` entries to read from an ordered series (:func:`list_series`).

    A multi-frame file expands to one entry per frame (``frame`` 0..n-1, in file order); a
    single-frame file gives ``frame=None``. Then :func:`select_indices` keeps the central
    fraction and every ``step``-th entry of the expanded list.
    """
    entries: list[tuple[DicomSlice, int | None]] = []
    for s in slices:
        if s.number_of_frames > 1:
            entries.extend((s, f) for f in range(s.number_of_frames))
        else:
            entries.append((s, None))
    return [entries[i] for i in select_indices(len(entries), step, central_fraction)]


def _is_ct(ds: Dataset) -> bool:
    """CT, or no Modality at all (an image without one is treated as the CT this reader is for)."""
    return _str(ds, "Modality").upper() in ("", "CT")


def _rescale_item(ds: Dataset, frame: int) -> Dataset | None:
    """The item holding RescaleSlope/Intercept: this frame's functional group, else the shared
    one (enhanced multi-frame CT keeps them there), else the dataset itself."""
    places = (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0))
    for keyword, index in places:
        groups = ds.get(keyword)
        if groups is not None and len(groups) > index:
            transform = groups[index].get("PixelValueTransformationSequence")
            if transform and "RescaleSlope" in transform[0]:
                return transform[0]
    return ds if "RescaleSlope" in ds or "RescaleIntercept" in ds else None


def _rescale(ds: Dataset, frame: int, path: str) -> tuple[float, float]:
    """``(slope, intercept)`` turning stored values into HU.

    A CT image without them is refused: its stored values are offset by an unknown amount
    (often 1024), so every window would show the wrong tissue. Another modality (MR, PT ...) has
    no HU and defaults to slope 1, intercept 0; a file without a Modality counts as CT.
    """
    item = _rescale_item(ds, frame)
    slope = _float(item.get("RescaleSlope")) if item is not None else None
    intercept = _float(item.get("RescaleIntercept")) if item is not None else None
    if slope is not None and intercept is not None and slope != 0:
        return slope, intercept
    if _is_ct(ds):
        missing = " and ".join(
            k for k, v in (("RescaleSlope", slope), ("RescaleIntercept", intercept)) if v is None
        )
        what = f"no {missing}" if missing else f"RescaleSlope {slope}"
        raise DataError(
            f"{path}: CT image with {what} (0028,1053/1052), so its pixel values cannot be turned "
            "into Hounsfield units; re-export the series from the PACS with the rescale tags "
            "(a secondary capture or an anonymiser may have dropped them)"
        )
    return 1.0, 0.0


def _decode(ds: Dataset, frame: int | None, path: str) -> np.ndarray:
    """Pixel data of one frame (or the only one) as stored values; decoder problems become
    DataError naming the file and the transfer syntax."""
    meta = getattr(ds, "file_meta", None)
    tsyntax = UID(str(meta.get("TransferSyntaxUID", "")) if meta is not None else "")
    name = tsyntax.name if tsyntax else "no transfer syntax"
    try:
        if frame is None:
            return pydicom.pixels.pixel_array(ds)
        # one frame of many: pydicom reads just that frame's bytes from the file, not the
        # whole (often hundreds of MB) enhanced CT volume once per frame
        return pydicom.pixels.pixel_array(path, index=frame)
    except NotImplementedError as e:
        # get_decoder(): pydicom has no decoder for this syntax at all (MPEG, private ...)
        raise DataError(
            f"{path}: pixel data in transfer syntax '{name}' ({tsyntax}), which pydicom cannot "
            f"decode ({e}); convert the file to an uncompressed syntax (gdcmconv --raw, dcmdjpeg)"
        ) from e
    except RuntimeError as e:
        if "missing dependencies" in str(e):
            # Decoder._validate_plugins(): a compressed syntax (JPEG, JPEG 2000, JPEG-LS ...)
            # whose decoding plugins are not installed
            raise DataError(
                f"{path}: pixel data compressed as '{name}' ({tsyntax}) and no decoder for it is "
                f"installed: {PLUGINS_HINT}\n({e})"
            ) from e
        raise DataError(f"{path}: cannot decode pixel data in '{name}' ({e})") from e
    except (ValueError, AttributeError, TypeError, KeyError, EOFError) as e:
        # truncated or inconsistent pixel data (buffer shorter than Rows x Columns x frames,
        # a missing Bits Allocated ...)
        raise DataError(f"{path}: cannot decode pixel data ({type(e).__name__}: {e})") from e


def _invert_stored(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Mirror stored values within their range (BitsStored, signed or not): min ↔ max."""
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if int(ds.get("PixelRepresentation") or 0) == 1:  # signed: [-2^(b-1), 2^(b-1) - 1]
        return -1.0 - arr
    return float(2**bits - 1) - arr


def read_hu(path: str | os.PathLike, frame: int | None = None) -> np.ndarray:
    """One greyscale DICOM image → ``(H, W)`` float32 modality values: Hounsfield units for
    CT (stored values × RescaleSlope + RescaleIntercept, from the frame's functional groups
    for enhanced multi-frame files).

    Photometric interpretation: a CT's HU are physical values whatever the file says
    (MONOCHROME1 only asks the viewer to invert its *display* after the window), so a
    MONOCHROME1 CT keeps its HU and the windows show it as any MONOCHROME2 CT: dense = bright.
    For other modalities, whose values have no such meaning, MONOCHROME1 stored values are
    mirrored within their range (BitsStored) before the rescale, so there too high = bright.

    Args:
        path: the file.
        frame: the frame of a multi-frame file (0-based; required there); None or 0 for a
            single-frame file.

    Raises:
        DataError (naming the file): no pixel data; not greyscale; a frame out of range or
            missing for a multi-frame file; a CT without RescaleSlope/Intercept; compressed
            pixel data whose decoder is missing (with the ``pip install`` that adds one).
    """
    path = os.fspath(path)
    try:
        # large values (the pixel data) are read when used: a multi-frame file's frame alone
        ds = pydicom.dcmread(path, defer_size="1 MB")
    except Exception as e:  # pydicom's parse errors are many (see list_series)
        raise DataError(f"{path}: cannot read DICOM file ({type(e).__name__}: {e})") from e
    if not any(tag in ds for tag in _PIXEL_TAGS):
        raise DataError(f"{path}: no pixel data (not an image: {_str(ds, 'Modality') or '?'})")
    if int(ds.get("SamplesPerPixel") or 1) != 1:
        raise DataError(
            f"{path}: {ds.get('PhotometricInterpretation')} colour image, not a greyscale CT slice"
        )
    frames = int(ds.get("NumberOfFrames") or 1)
    if frame is None and frames > 1:
        raise DataError(
            f"{path}: multi-frame file with {frames} frames, pass frame=0..{frames - 1}"
        )
    if frame is not None and not 0 <= frame < frames:
        raise DataError(f"{path}: frame {frame} out of range, the file has {frames} frame(s)")
    stored = _decode(ds, frame if frames > 1 else None, path).astype(np.float32)
    if stored.ndim != 2:  # a single-frame file decodes to (H, W), one frame of many too
        raise DataError(f"{path}: pixel data of shape {stored.shape}, expected (rows, columns)")
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1" and not _is_ct(ds):
        stored = _invert_stored(stored, ds)
    if "PixelData" not in ds:  # float pixel data carries real values: no rescale applies
        return stored
    slope, intercept = _rescale(ds, frame or 0, path)
    return (stored * np.float32(slope) + np.float32(intercept)).astype(np.float32)


def read_slice_rgb(path: str | os.PathLike, frame: int | None, windows: Any) -> np.ndarray:
    """One DICOM slice → ``(H, W, 3)`` uint8 RGB through ``windows`` (a spec for
    :func:`~medcls.data.medical.windows.parse_window`): :func:`read_hu` +
    :func:`~medcls.data.medical.windows.apply_window`."""
    return apply_window(read_hu(path, frame), windows)
