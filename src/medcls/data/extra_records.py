"""``data.extra_records``: a CSV of extra labelled images (``path,label``) that join the training
partition of every run and fold (never validation or test), e.g. the pseudo-labels written by
``medcls-pseudo``. The dataset's own records and splits are untouched, so data flows one way:
the workflow writes a CSV, the data config names it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from medcls.data.cache import DecodedImages
from medcls.data.records import Record
from medcls.data.sources.base import check_files_exist
from medcls.errors import DataError

COLUMNS = ("path", "label")
SOURCE = "extra_records"


def read_extra_records(path: str, class_names: Sequence[str]) -> list[Record]:
    """Records of a ``path,label`` CSV (``label``: a class name; relative paths are relative to
    the CSV's folder). An empty CSV (header only) gives no records."""
    where = f"data.extra_records={path}"
    if not os.path.isfile(path):
        raise DataError(
            f"{where}: {os.path.abspath(path)} does not exist. Give a CSV with columns "
            "path,label, or data.extra_records=null."
        )
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as e:
        raise DataError(f"{where}: the file is empty; it needs a header line 'path,label'.") from e
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(
            f"{where}: column(s) {missing} missing (found {list(table.columns)}); "
            "write a header line 'path,label'."
        )
    names = [str(c) for c in class_names]
    unknown = sorted(set(table["label"]) - set(names))
    if unknown:
        raise DataError(
            f"{where}: label(s) {unknown} are not classes of this dataset ({names}); "
            "write class names in the label column."
        )
    folder = os.path.dirname(os.path.abspath(path))
    paths = [p if os.path.isabs(p) else os.path.join(folder, p) for p in table["path"]]
    check_files_exist(paths, where)
    return [
        Record(p, names.index(label), source=SOURCE)
        for p, label in zip(paths, table["label"], strict=True)
    ]


def write_extra_records(path: str, paths: Sequence[str], labels: Sequence[str]) -> str:
    """Write a ``path,label`` CSV (absolute paths) that :func:`read_extra_records` reads back."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    table = pd.DataFrame({"path": [os.path.abspath(p) for p in paths], "label": list(labels)})
    table.to_csv(path, index=False)
    return path


def same_files(a: Sequence[Record], b: Sequence[Record]) -> list[str]:
    """Paths of ``a`` that are also images of ``b`` (compared as real paths), sorted."""
    b_files = {os.path.realpath(r.path) for r in b}
    return sorted({r.path for r in a if os.path.realpath(r.path) in b_files})


def check_no_overlap(extra: Sequence[Record], held_out: Sequence[Record], where: str) -> None:
    """Stop if an extra training image is also a validation image (it would be scored on a
    label the model was trained towards)."""
    clash = same_files(extra, held_out)
    if clash:
        shown = "\n  ".join(clash[:5])
        raise DataError(
            f"{where}: {len(clash)} image(s) are also in the validation partition:\n  {shown}\n"
            "Extra training records must not be validation images; pseudo-label an unlabelled "
            "pool or the test partition instead."
        )


def append_decoded(a: DecodedImages, b: DecodedImages) -> DecodedImages:
    """``a`` followed by ``b`` (``b`` without masks gets empty ones when ``a`` has masks).

    The result is in memory: a disk cache's memory map is read in full."""
    masks = None
    if a.masks is not None:
        b_masks = b.masks if b.masks is not None else np.zeros(b.images.shape[:3], np.uint8)
        masks = np.concatenate([a.masks, b_masks])
    return DecodedImages(
        images=np.concatenate([a.images, b.images]),
        masks=masks,
        has_mask=np.concatenate([a.has_mask, b.has_mask]),
        ok=np.concatenate([a.ok, b.ok]),
        bad=[*a.bad, *b.bad],
    )
