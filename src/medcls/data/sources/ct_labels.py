"""What the CT sources (``data=dicom``, ``data=nifti``) share: labels from a CSV keyed by a
series' patient, study or series (or a volume), the slice selection settings, and the notes
that count what was left out.

Privacy: a CSV key may be a DICOM UID. Messages and notes name CSV *rows*, never key values,
so no header field reaches a log through them (the PatientID, the group id, excepted).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from omegaconf import DictConfig

from medcls.data.sources.base import require_dir, require_file, resolve_classes
from medcls.errors import DataError


def ct_root(cfg: DictConfig, what: str) -> str:
    """``data.root`` of a CT source, which must be a folder (``what``: of DICOM files, of
    volumes), else a message naming it and the fix."""
    if cfg.root is None:
        raise DataError(f"data.root is not set: give the folder {what}, data.root=/data/ct")
    return require_dir(str(cfg.root), f"the folder {what} (data.root)", "Point data.root at it.")


def _row(i: int) -> int:
    return i + 2  # 0-based data row → spreadsheet row under a header


@dataclass
class LabelTable:
    """``labels``: key → class name, from ``path``; ``rows``: key → its spreadsheet row."""

    path: str
    key: str
    labels: dict[str, str]
    rows: dict[str, int]

    def unmatched_note(self, matched: Iterable[str]) -> str | None:
        """A note on the CSV rows whose key matches nothing read (rows, not keys: see module)."""
        left = sorted(self.rows[k] for k in set(self.labels) - set(matched))
        if not left:
            return None
        shown = ", ".join(map(str, left[:10])) + (" …" if len(left) > 10 else "")
        return (
            f"{len(left)} row(s) of {self.path} match no {self.key} under data.root (rows "
            f"{shown}): those labels were not used"
        )

    def require_match(self, matched: Iterable[str], found: int, what: str) -> None:
        """Stop when not one row matched: a wrong ``data.label_key`` or ``data.root``."""
        if not set(matched) & set(self.labels):
            raise DataError(
                f"none of the {len(self.labels)} row(s) of {self.path} matches one of the "
                f"{found} {what} under data.root by data.label_key={self.key}. Check that "
                f"column {self.key!r} holds the {self.key} of your files, or choose another "
                "data.label_key, or point data.root at the files the CSV lists."
            )


def read_label_table(path: str, key: str, label_column: str, keys: Sequence[str]) -> LabelTable:
    """Read ``path``: column ``key`` (one of ``keys``) → column ``label_column``.

    Raises:
        DataError: a missing file or column, an unknown key, an empty key or label, a key
            listed twice with different labels; each names the file, the row and the fix.
    """
    if key not in keys:
        raise DataError(f"data.label_key={key!r}: use one of {list(keys)}")
    require_file(path, "data.labels_csv", "Give a CSV with a key column and a label column.")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise DataError(f"{path}: cannot read it as CSV ({e})") from e
    missing = [c for c in (key, label_column) if c not in df.columns]
    if missing:
        raise DataError(
            f"{path} has no column(s) {missing} (columns: {list(df.columns)}). Name the key "
            "column data.label_key and the label column data.label_column."
        )
    labels: dict[str, str] = {}
    rows: dict[str, int] = {}
    pairs = zip(df[key].str.strip(), df[label_column].str.strip(), strict=True)
    for i, (k, label) in enumerate(pairs):
        if not k or not label:
            column = key if not k else label_column
            raise DataError(f"{path}: row {_row(i)} has an empty {column}. Fill it or drop it.")
        if k in labels and labels[k] != label:
            raise DataError(
                f"{path}: rows {rows[k]} and {_row(i)} give the same {key} different labels "
                f"({labels[k]!r}, {label!r}). Keep the row with the right label."
            )
        labels.setdefault(k, label)
        rows.setdefault(k, _row(i))
    if not labels:
        raise DataError(f"{path} has no rows: list one {key} and its label per row.")
    return LabelTable(os.path.abspath(path), key, labels, rows)


@dataclass
class Labelled:
    """What :func:`label_units` found: the class order, each labelled unit's class name, notes
    on what was left out, and where the labels came from (for messages)."""

    classes: list[str]
    label_of: dict[str, str]
    notes: list[str]
    where: str


def label_units(
    cfg: DictConfig,
    first_path: Mapping[str, str],
    key_of: Callable[[str, str], str],
    label_keys: Sequence[str],
    what: str,
) -> Labelled:
    """Label each unit (a DICOM series, a NIfTI volume) from ``data.labels_csv`` or, without
    one, from the class folder its file ``first_path[unit]`` lies in under ``data.root``.

    ``key_of(unit, label_key)`` is the unit's value in the CSV's key column. Units without a
    row are left out (noted); rows that match no unit are noted by row number; a CSV that
    matches nothing stops with a message, as do files lying directly in ``data.root`` when
    the class folders give the labels.
    """
    root, notes = str(cfg.root), []
    if cfg.get("labels_csv"):
        key = str(cfg.get("label_key") or label_keys[0])
        label_column = str(cfg.get("label_column") or "label")
        table = read_label_table(cfg.labels_csv, key, label_column, label_keys)
        keys = {u: key_of(u, key) for u in first_path}
        table.require_match(keys.values(), len(keys), what)
        label_of = {u: table.labels[k] for u, k in keys.items() if k in table.labels}
        if unlabelled := len(keys) - len(label_of):
            notes.append(f"{unlabelled} {what} have no row in {table.path}: left out")
        if note := table.unmatched_note(keys.values()):
            notes.append(note)
        classes = resolve_classes(list(label_of.values()), cfg.get("classes"), table.path)
        return Labelled(classes, label_of, notes, table.path)
    label_of = {u: os.path.relpath(p, root).split(os.sep)[0] for u, p in first_path.items()}
    loose = sorted(p for u, p in first_path.items() if label_of[u] == os.path.basename(p))
    if loose:
        raise DataError(
            f"{loose[0]} lies directly in data.root: with no data.labels_csv, data.root needs "
            f"one sub-folder per class. Move the {what} into class folders, or give "
            "data.labels_csv."
        )
    classes = resolve_classes(list(label_of.values()), cfg.get("classes"), root)
    return Labelled(classes, label_of, notes, os.path.abspath(root))


@dataclass(frozen=True)
class SliceSelection:
    """``data.slice_step`` (every k-th slice) and ``data.slice_range`` (the central fraction of
    each series or volume, 1 = all of it)."""

    step: int = 1
    central_fraction: float = 1.0

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> SliceSelection:
        from medcls.data.medical.dicom import select_indices  # its checks, once

        step, fraction = cfg.get("slice_step", 1), cfg.get("slice_range", 1.0)
        try:
            select_indices(1, step, float(fraction))
        except (TypeError, ValueError) as e:  # DataError is a ValueError
            raise DataError(f"data.slice_step={step!r}, data.slice_range={fraction!r}: {e}") from e
        return cls(int(step), float(fraction))


def skipped_note(skipped: Sequence[tuple[str, str]], what: str, root: str) -> list[str]:
    """Notes counting the files under ``root`` that were left out: ``(path, reason)`` pairs,
    the plain non-image files in one count, the unreadable ones with their reasons."""
    notes = []
    plain = [p for p, why in skipped if why == f"not {what}"]
    if plain:
        shown = ", ".join(os.path.relpath(p, root) for p in plain[:3])
        more = " …" if len(plain) > 3 else ""
        notes.append(f"{len(plain)} file(s) under {root} are not {what} and were ignored "
                     f"({shown}{more})")  # fmt: skip
    bad = [(p, why) for p, why in skipped if why != f"not {what}"]
    for path, why in bad[:5]:
        notes.append(f"{path}: left out ({why})")
    if len(bad) > 5:
        notes.append(f"… and {len(bad) - 5} more unreadable {what} file(s) left out")
    return notes
