"""ISIC-format ground truth: ``image,MEL,NV,...`` one-hot rows (ISIC 2018 Task 3, ISIC 2019).

The CSV's class columns are the declared classes. ISIC 2019's ``UNK`` column is all zeros in the
training data: a declared class without images is an error unless ``data.classes`` narrows the
list (the ``isic2019`` preset does) or ``data.drop_empty_classes`` drops such columns. Its test data does
hold ``UNK`` images: labels outside the class list follow ``data.unknown`` (``error``;
``exclude``: left out; ``reject``: kept with label ``len(classes)``, test-only, and scored as a
rejected class; see :mod:`medcls.metrics.open_set`).

Lesion groups and subgroup attributes (``data.metadata_columns``) come from a metadata CSV
joined on the image id: ``data.metadata_csv`` for the training list, ``data.test_metadata_csv``
for the official test list (ISIC publishes one per set; every test image needs a row). Without
the latter the test images look themselves up in the training metadata, which usually does not
list them, so a subgroup analysis of the test set is refused rather than scored as "unknown".
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
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
    declared_classes,
    known_labels,
    unknown_policy,
)
from medcls.data.sources.tables import metadata_pairs, read_csv_columns
from medcls.errors import DataError

FIX = "Set data.root, data.csv and data.images_dir (ISIC layout: image,MEL,NV,... one-hot CSV)."


def _read_table(
    cfg: DictConfig, csv_key: str, images_key: str
) -> tuple[list[str], np.ndarray, list[str], str]:
    """One ground-truth CSV: image paths (N), label indices (N), its class columns, its path."""
    root = cfg.root or "."
    csv_path = require_file(
        os.path.join(root, cfg[csv_key]), f"ISIC ground-truth CSV (data.{csv_key})", FIX
    )
    images_dir = require_dir(
        os.path.join(root, cfg[images_key]), f"ISIC images folder (data.{images_key})", FIX
    )
    df = read_csv_columns(csv_path, [cfg.image_column])
    class_cols = [
        c for c in df.columns if c != cfg.image_column and c not in cfg.get("ignore_columns", [])
    ]
    if not class_cols:
        raise DataError(f"{csv_path} has no class columns after {cfg.image_column!r}.")
    try:
        onehot = df[class_cols].astype(float).to_numpy()
    except ValueError as e:
        raise DataError(
            f"{csv_path}: class columns {class_cols} must hold numbers 0/1 ({e})."
        ) from e
    bad = np.flatnonzero(np.isclose(onehot, 1.0).sum(axis=1) != 1)
    if bad.size:
        row = int(bad[0])
        raise DataError(
            f"{csv_path}: row {row + 2} (image {df[cfg.image_column].iloc[row]}) is not one-hot "
            f"over {class_cols}; {bad.size} such row(s). Each image needs exactly one 1."
        )
    paths = [os.path.join(images_dir, f"{i}{cfg.image_ext}") for i in df[cfg.image_column]]
    return paths, onehot.argmax(axis=1), class_cols, csv_path


Metadata = tuple[dict[str, str], dict[str, tuple[tuple[str, str], ...]], str]


def _read_metadata(cfg: DictConfig, key: str, group_required: bool = True) -> Metadata:
    """``data.<key>`` (a metadata CSV joined on ``data.image_column``): image id → group id
    (non-empty ``data.group_column`` values), image id → ``data.metadata_columns`` pairs (every
    row, so "has a row" is ``id in attributes``), and the file's path. ``group_required=False``:
    a file without the group column gives no groups (ISIC 2019's test metadata has none)."""
    path = require_file(
        os.path.join(cfg.root or ".", cfg[key]), f"ISIC metadata CSV (data.{key})", FIX
    )
    meta = read_csv_columns(
        path, [cfg.image_column, cfg.group_column] if group_required else [cfg.image_column]
    )
    ids = meta[cfg.image_column]
    groups = {}
    if cfg.group_column in meta.columns:
        groups = {i: g for i, g in zip(ids, meta[cfg.group_column], strict=True) if g}
    pairs = metadata_pairs(meta, cfg.get("metadata_columns"))
    return groups, dict(zip(ids, pairs, strict=True)), path


def _test_metadata(cfg: DictConfig, t_ids: list[str], train_meta: Metadata) -> Metadata:
    """Groups and attributes of the official test images (ids ``t_ids``): from
    ``data.test_metadata_csv``, where every test image needs a row. Without it, the training
    metadata (``train_meta``) as before, which only a file covering both sets describes."""
    if not cfg.get("test_metadata_csv"):
        return train_meta
    groups, attributes, path = _read_metadata(cfg, "test_metadata_csv", group_required=False)
    missing = [i for i in t_ids if i not in attributes]
    if missing:
        raise DataError(
            f"{len(missing)} image(s) of the test list data.test_csv={cfg.test_csv} have no row "
            f"in data.test_metadata_csv={path} (column {cfg.image_column!r}), e.g. image "
            f"{missing[0]!r}. Add their rows, point data.test_metadata_csv at the test set's "
            "metadata file, or set it to null (the test images then carry no groups or "
            "subgroup attributes)."
        )
    return groups, attributes, path


def load_isic_csv(cfg: DictConfig) -> SourceData:
    paths, labels, cols, csv_path = _read_table(cfg, "csv", "images_dir")
    meta = _read_metadata(cfg, "metadata_csv") if cfg.get("metadata_csv") else ({}, {}, "")
    names = [cols[y] for y in labels]
    ids = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    check_unique_ids(ids, names, csv_path)
    notes = []
    counts = Counter(names)
    declared = cols
    if cfg.drop_empty_classes and not cfg.get("classes"):
        declared = [c for c in cols if counts[c] > 0]
        dropped = [c for c in cols if c not in declared]
        if dropped:
            notes.append(f"dropped class(es) with no images in {csv_path}: {dropped}")
    # the CSV's class columns are its declared classes: data.classes narrows them
    classes = declared_classes(declared, cfg.get("classes"), counts, csv_path)
    split = "train" if cfg.get("test_csv") else None
    policy = unknown_policy(cfg.get("unknown"))

    def make(paths, ids, names, split, csv_path, meta: Metadata):
        index, note = known_labels(ids, names, classes, policy, csv_path)
        if note:
            notes.append(note)
        groups, attributes, _ = meta
        return [
            Record(
                p,
                label,
                groups.get(image_id),
                split=split,
                source=cfg.name,
                meta=attributes.get(image_id, ()),
            )
            for p, image_id, label in zip(paths, ids, index, strict=True)
            if label is not None
        ]

    records = make(paths, ids, names, split, csv_path, meta)
    check_files_exist((r.path for r in records), csv_path)
    check_no_empty_class(classes, [r for r in records if r.label < len(classes)], csv_path)
    if cfg.get("test_csv"):
        t_paths, t_labels, t_cols, t_csv = _read_table(cfg, "test_csv", "test_images_dir")
        t_names = [t_cols[y] for y in t_labels]
        t_ids = [os.path.splitext(os.path.basename(p))[0] for p in t_paths]
        check_unique_ids(t_ids, t_names, t_csv)
        both = sorted(set(ids) & set(t_ids))
        if both:
            raise DataError(
                f"{len(both)} image(s) are listed both in {csv_path} and in the test list "
                f"{t_csv}, e.g. {both[:3]}: a test image must not be trained on. Remove them "
                "from one of the two."
            )
        test = make(t_paths, t_ids, t_names, "test", t_csv, _test_metadata(cfg, t_ids, meta))
        if any(r.meta for r in records) and not any(r.meta for r in test):
            notes.append(  # the training metadata describes other images than the test list's
                f"the test images of {t_csv} carry no subgroup attributes: give the test "
                "set's metadata CSV as data.test_metadata_csv"
            )
        check_files_exist((r.path for r in test), t_csv)
        records += test
    return SourceData(cfg.name, classes, records, notes)
