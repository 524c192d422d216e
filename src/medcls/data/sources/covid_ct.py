"""UCSD COVID-CT: class folders ``CT_COVID/`` + ``CT_NonCOVID/`` and official split lists.

With ``data.split_dir`` present, ``<split><class folder>.txt`` (e.g. ``trainCT_COVID.txt``) assign
each slice to its official partition; slices in no list are left out and counted in the notes.
"""

from __future__ import annotations

import os

from omegaconf import DictConfig

from medcls.data.records import Record
from medcls.data.sources.base import (
    SourceData,
    check_files_exist,
    check_no_empty_class,
    group_from_name,
)
from medcls.data.sources.imagefolder import list_class_folders
from medcls.errors import DataError

SPLITS = ("train", "val", "test")


def load_covid_ct(cfg: DictConfig) -> SourceData:
    root = cfg.root
    if root is None:
        raise DataError(
            "data.root is not set: give the COVID-CT folder (CT_COVID/, CT_NonCOVID/, Data-split/)."
        )
    folders = list_class_folders(root, "COVID-CT root (data.root)")
    if cfg.get("split_dir"):
        folders.pop(os.path.normpath(cfg.split_dir), None)  # Data-split/ holds lists, not a class
    class_folders = [str(c) for c in (cfg.get("classes") or sorted(folders))]
    for c in class_folders:
        if c not in folders:
            raise DataError(
                f"class folder {os.path.join(root, c)} not found; data.classes={class_folders}. "
                f"Name only folders that exist in data.root ({sorted(folders)})."
            )
    split_dir = os.path.join(root, cfg.split_dir) if cfg.get("split_dir") else None
    use_lists = bool(cfg.use_official_split and split_dir and os.path.isdir(split_dir))
    records: list[Record] = []
    notes: list[str] = []
    for label, c in enumerate(class_folders):
        if not use_lists:
            records += [_record(p, label, None, cfg) for p in folders[c]]
            continue
        listed: dict[str, str] = {}  # slice → the list that names it
        for split in SPLITS:
            list_file = os.path.join(split_dir, f"{split}{c}.txt")
            if not os.path.isfile(list_file):
                continue
            with open(list_file) as f:
                names = [ln.strip() for ln in f if ln.strip()]
            paths = [os.path.join(root, c, n) for n in names]
            check_files_exist(paths, list_file)
            for p in paths:
                if p in listed:  # twice in one list, or in two partitions' lists
                    raise DataError(
                        f"{p} is listed twice: in {listed[p]} and in {list_file}. List each "
                        "slice once, in one partition's list."
                    )
                listed[p] = list_file
            records += [_record(p, label, split, cfg) for p in paths]
        unlisted = len(set(folders[c]) - set(listed))
        if unlisted:
            notes.append(
                f"{unlisted} image(s) in {c}/ are in no official split list and were left out"
            )
    check_no_empty_class(class_folders, records, os.path.abspath(root))
    return SourceData(cfg.name, class_folders, records, notes)


def _record(path: str, label: int, split: str | None, cfg: DictConfig) -> Record:
    group = group_from_name(os.path.basename(path), cfg.get("group_regex"))
    return Record(path, label, group, split=split, source=cfg.name)
