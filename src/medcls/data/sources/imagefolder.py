"""One folder per class (Kaggle skin-disease sets, glaucoma ``RG/`` + ``NRG/``)."""

from __future__ import annotations

import os

from omegaconf import DictConfig

from medcls.data.io import IMAGE_EXTENSIONS
from medcls.data.records import Record
from medcls.data.sources.base import (
    SourceData,
    check_no_empty_class,
    group_from_name,
    require_dir,
    resolve_classes,
)
from medcls.errors import DataError


def list_class_folders(root: str, what: str) -> dict[str, list[str]]:
    """Map class name → sorted image paths for ``root/<class>/*.<image ext>`` (recursive)."""
    require_dir(
        root, what, "Point it at a folder with one sub-folder per class (e.g. RG/ and NRG/)."
    )
    classes = sorted(
        d
        for d in os.listdir(root)
        if os.path.isdir(os.path.join(root, d)) and not d.startswith(".")  # .ipynb_checkpoints
    )
    if not classes:
        raise DataError(
            f"{what} {os.path.abspath(root)} has no class sub-folders "
            "(expected root/<class>/*.jpg)."
        )
    out: dict[str, list[str]] = {}
    for c in classes:
        files = []
        for dirpath, _, names in os.walk(os.path.join(root, c)):
            files += [
                os.path.join(dirpath, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)
            ]
        out[c] = sorted(files)
    return out


def folder_records(
    root: str, classes: list[str], split: str | None, name: str, group_regex: str | None, what: str
) -> list[Record]:
    folders = list_class_folders(root, what)
    unknown = sorted(set(folders) - set(classes))
    if unknown:
        raise DataError(
            f"{what} {os.path.abspath(root)} has class folder(s) {unknown} that are not in "
            f"the classes {classes} of data.root. Add those classes to data.root "
            "(and data.classes), or move those folders out."
        )
    return [
        Record(
            path=p,
            label=classes.index(c),
            group=group_from_name(os.path.basename(p), group_regex),
            split=split,
            source=name,
        )
        for c, files in folders.items()
        for p in files
    ]


def load_imagefolder(cfg: DictConfig) -> SourceData:
    """Read ``cfg.root`` (and optional ``cfg.val_root`` / ``cfg.test_root``, same layout)."""
    root = cfg.root
    if root is None:
        raise DataError(
            "data.root is not set: give the folder with one sub-folder per class, "
            "e.g. data.root=/data/glaucoma"
        )
    folders = list_class_folders(root, "data.root")
    classes = resolve_classes(list(folders), cfg.get("classes"), root)
    has_official = bool(cfg.get("val_root") or cfg.get("test_root"))
    records = folder_records(
        root,
        classes,
        "train" if has_official else None,
        cfg.name,
        cfg.get("group_regex"),
        "data.root",
    )
    check_no_empty_class(classes, records, os.path.abspath(root))
    for key, split in (("val_root", "val"), ("test_root", "test")):
        if cfg.get(key):
            records += folder_records(
                cfg[key], classes, split, cfg.name, cfg.get("group_regex"), f"data.{key}"
            )
    return SourceData(cfg.name, classes, records)
