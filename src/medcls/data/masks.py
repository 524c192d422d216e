"""Where region masks come from (``data.mask``), for the records a source hands on.

* ``source: file``: each record's own mask file: HAM10000's lesion masks, the synthetic set's
  masks, or, for any source, ``<mask.dir>/<mask.pattern>`` matched to the image's file name;
* ``source: lung_threshold``: computed from the image by the classical lung-field extractor
  (:mod:`medcls.data.lung_mask`), for CT slices without masks.

Images without a mask stay usable: they are flagged ``has_mask = False``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

from medcls.data.records import Record
from medcls.errors import DataError

MASK_SOURCES = ("file", "lung_threshold")


def mask_source(cfg: Mapping[str, Any] | None) -> str:
    """``data.mask.source`` (``file`` when the data config has no ``mask`` section)."""
    source = str((cfg or {}).get("source") or "file")
    if source not in MASK_SOURCES:
        raise DataError(f"data.mask.source={source!r}: use one of {', '.join(MASK_SOURCES)}")
    return source


def mask_file_for(path: str, mask_dir: str, pattern: str) -> str:
    """``<mask_dir>/<pattern>`` for image ``path``; the pattern may use ``{stem}`` (file name
    without extension), ``{name}`` (with it) and ``{parent}`` (the image's folder, e.g. its
    class)."""
    name = os.path.basename(path)
    stem = name.rsplit(".", 1)[0] if "." in name else name
    parent = os.path.basename(os.path.dirname(path))
    try:
        return os.path.join(mask_dir, pattern.format(stem=stem, name=name, parent=parent))
    except (KeyError, IndexError) as e:
        raise DataError(
            f"data.mask.pattern={pattern!r}: use {{stem}}, {{name}} or {{parent}} ({e})"
        ) from e


def attach_mask_files(
    records: Sequence[Record], mask_dir: str, pattern: str
) -> tuple[list[Record], int]:
    """Records without a mask get ``<mask_dir>/<pattern>`` where that file exists; returns the
    records and how many masks were found."""
    if not os.path.isdir(mask_dir):
        raise DataError(
            f"data.mask.dir={os.path.abspath(mask_dir)} is not a folder; point it at the masks."
        )
    out, found = [], 0
    for r in records:
        if r.mask is None:
            candidate = mask_file_for(r.path, mask_dir, pattern)
            if os.path.isfile(candidate):
                r = dataclasses.replace(r, mask=candidate)
                found += 1
        out.append(r)
    return out, found
