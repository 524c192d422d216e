"""``data=nifti``: CT volumes (``.nii`` / ``.nii.gz``), one record per axial slice.

Labels come from class folders (``root/<class>/…``) or from a CSV keyed by the volume's file
name without extension (``data.label_key=volume``) or by its patient (``patient``). The patient
(the group) is taken from the file name by ``data.group_regex`` (its first capture group; none:
each volume is its own patient). Optional mask volumes of the same file name in
``data.mask_dir`` become the slices' masks (the ABN attention loss).
"""

from __future__ import annotations

import os

import nibabel as nib
from omegaconf import DictConfig

from medcls.data.medical.address import NIFTI, is_nifti_file, slice_address, volume_stem
from medcls.data.medical.dicom import select_indices
from medcls.data.records import Record
from medcls.data.sources.base import (
    SourceData,
    check_no_empty_class,
    group_from_name,
    require_dir,
)
from medcls.data.sources.ct_labels import SliceSelection, ct_root, label_units, skipped_note
from medcls.errors import DataError

LABEL_KEYS = ("volume", "patient")


def list_volumes(root: str) -> list[str]:
    """Every ``.nii`` / ``.nii.gz`` file under ``root`` (any depth), sorted."""
    found = []
    for d, _, names in os.walk(root):
        found += [os.path.join(d, n) for n in names if is_nifti_file(n)]
    return sorted(found)


def volume_shape(path: str) -> tuple[int, ...]:
    """The ``(X, Y, Z)`` shape from the header (no pixel data read); a 4-d file with one
    volume counts as 3-d.

    Raises:
        DataError: not a NIfTI file, or not one 3-d volume; the message names the file.
    """
    try:
        shape = tuple(int(n) for n in nib.load(path).shape)
    except Exception as e:  # nibabel's ImageFileError, gzip and header errors
        raise DataError(f"{path}: cannot read NIfTI header ({type(e).__name__}: {e})") from e
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3:
        raise DataError(f"{path}: volume of shape {shape}; only 3-d CT volumes can be sliced")
    return shape


def volume_records(
    path: str,
    depth: int,
    label: int,
    patient: str,
    selection: SliceSelection,
    source: str,
    mask: str | None = None,
) -> list[Record]:
    """One record per selected axial slice of the volume at ``path`` (``depth`` slices; and
    of its mask)."""
    return [
        Record(
            slice_address(NIFTI, path, z),
            label,
            group=patient,
            mask=slice_address(NIFTI, mask, z) if mask else None,
            source=source,
            meta=(("series", volume_stem(path)),),
        )
        for z in select_indices(depth, selection.step, selection.central_fraction)
    ]


def _mask_for(path: str, shape: tuple[int, ...], mask_dir: str | None) -> str | None:
    """The mask volume of the same file name in ``mask_dir``, checked for the same shape."""
    if not mask_dir:
        return None
    mask = os.path.join(mask_dir, os.path.basename(path))
    if not os.path.isfile(mask):
        return None
    if (mask_shape := volume_shape(mask)) != shape:
        raise DataError(
            f"mask volume {mask} has shape {mask_shape} but {path} has {shape}: a mask must "
            "cover its volume voxel for voxel. Replace the mask, or move it out of data.mask_dir."
        )
    return mask


def load_nifti(cfg: DictConfig) -> SourceData:
    root = ct_root(cfg, "of NIfTI volumes (.nii, .nii.gz)")
    selection = SliceSelection.from_cfg(cfg)
    mask_dir = cfg.get("mask_dir")
    if mask_dir:
        require_dir(mask_dir, "data.mask_dir", "Give the folder of mask volumes, or null.")
    readable: dict[str, tuple[int, ...]] = {}  # path → shape
    skipped = []
    for path in list_volumes(root):
        try:
            readable[path] = volume_shape(path)
        except DataError as e:
            if cfg.get("on_bad_image") == "error":
                raise
            skipped.append((path, str(e).removeprefix(f"{path}: ")))
    notes = skipped_note(skipped, "NIfTI", os.path.abspath(root))
    if not readable:
        raise DataError(
            f"no readable NIfTI volume (.nii, .nii.gz) under {os.path.abspath(root)}. Point "
            "data.root at the volumes."
        )
    patient_of = {
        p: group_from_name(volume_stem(p), cfg.get("group_regex")) or volume_stem(p)
        for p in readable
    }
    labelled = label_units(
        cfg,
        {p: p for p in readable},
        lambda p, key: volume_stem(p) if key == "volume" else patient_of[p],
        LABEL_KEYS,
        "volumes",
    )
    classes, where = labelled.classes, labelled.where
    notes += labelled.notes
    index = {c: i for i, c in enumerate(classes)}
    records: list[Record] = []
    masks = 0
    for path, name in labelled.label_of.items():
        shape = readable[path]
        mask = _mask_for(path, shape, mask_dir)
        masks += mask is not None
        records += volume_records(
            path, shape[2], index[name], patient_of[path], selection, cfg.name, mask
        )
    if mask_dir and masks < len(labelled.label_of):
        missing = len(labelled.label_of) - masks
        notes.append(f"{missing} volume(s) have no mask of the same name in {mask_dir}")
    check_no_empty_class(classes, records, where)
    return SourceData(cfg.name, classes, records, notes)
