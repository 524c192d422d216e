"""HAM10000: ``HAM10000_metadata.csv`` + ``images/<image_id>.jpg`` + optional ``masks/``.

Several images show the same lesion, so every record carries ``lesion_id`` as its group. The
preset declares the seven diagnoses (``data.vocabulary``): a misspelt ``dx`` is an error naming
its row, and a subset without some of them must say so with ``data.classes``.
"""

from __future__ import annotations

import os
from collections import Counter

from omegaconf import DictConfig

from medcls.data.records import Record
from medcls.data.sources.base import (
    SourceData,
    check_files_exist,
    check_no_empty_class,
    require_dir,
    require_file,
)
from medcls.data.sources.labels import (
    check_unique_ids,
    check_vocabulary,
    declared_classes,
    known_labels,
    unknown_policy,
)
from medcls.data.sources.tables import metadata_pairs, read_csv_columns
from medcls.errors import DataError


def load_ham10000(cfg: DictConfig) -> SourceData:
    root = cfg.root
    fix = "Set data.root to the HAM10000 folder (HAM10000_metadata.csv, images/, optional masks/)."
    if root is None:
        raise DataError(f"data.root is not set. {fix}")
    require_dir(root, "HAM10000 root (data.root)", fix)
    csv_path = require_file(os.path.join(root, cfg.metadata_csv), "HAM10000 metadata CSV", fix)
    images_dir = require_dir(os.path.join(root, cfg.images_dir), "HAM10000 images folder", fix)
    cols = read_csv_columns(csv_path, [cfg.image_column, cfg.label_column, cfg.group_column])
    ids = [str(v) for v in cols[cfg.image_column]]
    labels = [str(v) for v in cols[cfg.label_column]]
    check_unique_ids(ids, labels, csv_path)
    vocabulary = cfg.get("vocabulary")
    if vocabulary:  # the preset's seven diagnoses: a misspelt dx is named with its row
        check_vocabulary(labels, vocabulary, csv_path, cfg.label_column)
        classes = declared_classes(vocabulary, cfg.get("classes"), Counter(labels), csv_path)
    else:
        classes = [str(c) for c in cfg.get("classes") or sorted(set(labels))]
    index, note = known_labels(ids, labels, classes, unknown_policy(cfg.get("unknown")), csv_path)
    masks_dir = os.path.join(root, cfg.masks_dir) if cfg.get("masks_dir") else None
    if masks_dir and not os.path.isdir(masks_dir):
        masks_dir = None
    metas = metadata_pairs(cols, cfg.get("metadata_columns"))
    records = []
    for image_id, label, lesion, meta in zip(
        ids, index, cols[cfg.group_column], metas, strict=True
    ):
        if label is None:  # outside data.classes, data.unknown=exclude
            continue
        mask = None
        if masks_dir:
            candidate = os.path.join(masks_dir, f"{image_id}{cfg.mask_suffix}")
            mask = candidate if os.path.isfile(candidate) else None
        records.append(
            Record(
                path=os.path.join(images_dir, f"{image_id}{cfg.image_ext}"),
                label=label,
                group=str(lesion),
                mask=mask,
                source=cfg.name,
                meta=meta,
            )
        )
    check_files_exist((r.path for r in records), csv_path)
    check_no_empty_class(classes, [r for r in records if r.label < len(classes)], csv_path)
    return SourceData(cfg.name, classes, records, [note] if note else [])
