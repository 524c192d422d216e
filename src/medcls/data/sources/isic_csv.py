"""ISIC-format ground truth: ``image,MEL,NV,...`` one-hot rows (ISIC 2018 Task 3, ISIC 2019).

ISIC 2019's ``UNK`` column is all zeros in the training data; such empty classes are dropped
(``data.drop_empty_classes``) rather than becoming a class no image can teach. Its test data does
hold ``UNK`` images: labels outside the class list follow ``data.unknown`` (``error``;
``exclude``: left out; ``reject``: kept with label ``len(classes)``, test-only, and scored as a
rejected class; see :mod:`medcls.metrics.open_set`).
"""

from __future__ import annotations

import os

import numpy as np
from omegaconf import DictConfig

from medcls.data.records import DataError, Record
from medcls.data.sources.base import (
    SourceData,
    check_files_exist,
    check_no_empty_class,
    require_dir,
    require_file,
)
from medcls.data.sources.tables import read_csv_columns

UNKNOWN_POLICIES = ("error", "exclude", "reject")
FIX = "Set data.root, data.csv and data.images_dir (ISIC layout: image,MEL,NV,... one-hot CSV)."


def _read_table(
    cfg: DictConfig, csv_key: str, images_key: str
) -> tuple[list[str], np.ndarray, list[str], str, dict]:
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
    groups = {}
    if cfg.get("metadata_csv"):
        meta_path = require_file(
            os.path.join(root, cfg.metadata_csv), "ISIC metadata CSV (data.metadata_csv)", FIX
        )
        meta = read_csv_columns(meta_path, [cfg.image_column, cfg.group_column])
        groups = {
            i: g for i, g in zip(meta[cfg.image_column], meta[cfg.group_column], strict=True) if g
        }
    return paths, onehot.argmax(axis=1), class_cols, csv_path, groups


def load_isic_csv(cfg: DictConfig) -> SourceData:
    paths, labels, cols, csv_path, groups = _read_table(cfg, "csv", "images_dir")
    notes = []
    counts = np.bincount(labels, minlength=len(cols))
    keep = list(range(len(cols)))
    if cfg.drop_empty_classes:
        keep = [i for i in keep if counts[i] > 0]
        dropped = [cols[i] for i in range(len(cols)) if i not in keep]
        if dropped:
            notes.append(f"dropped class(es) with no images in {csv_path}: {dropped}")
    classes = [cols[i] for i in keep]
    if cfg.get("classes"):
        classes = [str(c) for c in cfg.classes]
    split = "train" if cfg.get("test_csv") else None

    policy = cfg.get("unknown", "error")
    if policy not in UNKNOWN_POLICIES:
        raise DataError(f"data.unknown={policy!r}: use one of {UNKNOWN_POLICIES}")

    def make(paths, labels, cols, split, csv_path):
        out, unknown = [], []
        for p, y in zip(paths, labels, strict=True):
            name = cols[y]
            if name not in classes:
                if policy == "error":
                    raise DataError(
                        f"{csv_path}: image {p} has label {name!r}, not in data.classes="
                        f"{classes}. Add it to data.classes, remove that row, or set "
                        "data.unknown=exclude (leave such images out) or reject (score them "
                        "as a rejected class)."
                    )
                unknown.append(name)
                if policy == "exclude":
                    continue
            image_id = os.path.splitext(os.path.basename(p))[0]
            label = classes.index(name) if name in classes else len(classes)
            out.append(Record(p, label, groups.get(image_id), split=split, source=cfg.name))
        if unknown:
            what = "left out" if policy == "exclude" else "kept for testing as a rejected class"
            notes.append(
                f"{csv_path}: {len(unknown)} image(s) of class(es) {sorted(set(unknown))} "
                f"outside {classes}, {what} (data.unknown={policy})"
            )
        return out

    records = make(paths, labels, cols, split, csv_path)
    check_files_exist((r.path for r in records), csv_path)
    check_no_empty_class(classes, records, csv_path)
    if cfg.get("test_csv"):
        t_paths, t_labels, t_cols, t_csv, _ = _read_table(cfg, "test_csv", "test_images_dir")
        test = make(t_paths, t_labels, t_cols, "test", t_csv)
        check_files_exist((r.path for r in test), t_csv)
        records += test
    return SourceData(cfg.name, classes, records, notes)
