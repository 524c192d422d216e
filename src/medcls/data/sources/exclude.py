"""``data.exclude``: leave listed images out of any source (records stage).

The list is a CSV with a ``path`` column, e.g. the report ``medcls-audit`` writes; when it has
an ``exclude`` column only the rows marked true are excluded (the audit marks the copies to
drop and keeps one image of each duplicate set, by absolute path). Paths match after
``os.path.abspath`` (relative entries are taken relative to the working directory); generated
``synthetic://`` addresses match as written. A list none of whose paths is in the dataset is an
error (it was made for other files, or its relative paths for another working directory); one
that matches some records only is noted (a list made on a larger set).
"""

from __future__ import annotations

import logging
import os

import pandas as pd

from medcls.data.records import Record
from medcls.data.sources.base import SourceData, check_no_empty_class
from medcls.errors import DataError

log = logging.getLogger(__name__)

TRUE = {"1", "true", "yes", "y", "t"}


def absolute(path: str) -> str:
    """``path`` made absolute (against the working directory); ``synthetic://…`` as written."""
    return path if "://" in path else os.path.abspath(path)


def _key(path: str) -> str:
    return os.path.normcase(absolute(path))


def read_exclusion_list(csv_path: str) -> set[str]:
    """The paths to exclude from ``csv_path`` (normalised for matching)."""
    if not os.path.isfile(csv_path):
        raise DataError(
            f"data.exclude={csv_path}: file not found. Give a CSV with a `path` column "
            "(e.g. the audit.csv written by medcls-audit), or data.exclude=null."
        )
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"data.exclude={csv_path}: cannot read it as CSV ({e}).") from e
    if "path" not in df.columns:
        raise DataError(
            f"data.exclude={csv_path} has no `path` column (columns: {list(df.columns)}). "
            "Name the column of image paths `path`."
        )
    if "exclude" in df.columns:
        df = df[df["exclude"].str.strip().str.lower().isin(TRUE)]
    return {_key(p) for p in df["path"] if p.strip()}


def apply_exclusions(src: SourceData, csv_path: str | None) -> SourceData:
    """``src`` without the records listed in ``csv_path`` (unchanged when it is None).

    The count of excluded records (and of listed paths this dataset does not have) is logged
    and added to ``src.notes``; a class left without images stops with a :class:`DataError`.
    """
    if not csv_path:
        return src
    listed = read_exclusion_list(str(csv_path))
    kept: list[Record] = [r for r in src.records if _key(r.path) not in listed]
    excluded = len(src.records) - len(kept)
    if listed and src.records and not excluded:
        raise DataError(
            f"data.exclude={csv_path}: none of its {len(listed)} path(s) is an image of "
            f"{src.name} (e.g. it lists {min(listed)}, the dataset has "
            f"{_key(src.records[0].path)}); relative paths are read against the working "
            f"directory {os.getcwd()}. Use the list medcls-audit writes (absolute paths) for "
            "these files: rerun medcls-audit with the same data.root and data options, and pass "
            "its audit.csv."
        )
    note = f"data.exclude={csv_path}: {excluded} of {len(src.records)} record(s) excluded"
    if len(listed) > excluded:  # fine for a list made on a larger set, suspicious otherwise
        note += f" ({len(listed) - excluded} listed path(s) are not in this dataset)"
    log.info(note)
    check_no_empty_class(src.class_names, kept, f"{src.name} after data.exclude={csv_path}")
    return SourceData(src.name, src.class_names, kept, [*src.notes, note])
