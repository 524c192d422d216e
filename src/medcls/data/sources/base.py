"""What every source returns, and the checks they share."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from medcls.data.records import Record
from medcls.errors import DataError


@dataclass
class SourceData:
    """A dataset as read from its own layout.

    Attributes:
        name: dataset name (cache key, MLflow tag).
        class_names: class index → name.
        records: every labelled image, official split marked in ``Record.split`` when known.
        notes: human-readable remarks (dropped classes, unlisted files) for the run summary.
    """

    name: str
    class_names: list[str]
    records: list[Record]
    notes: list[str] = field(default_factory=list)


def require_dir(path: str, what: str, fix: str) -> str:
    """Return ``path`` if it is a directory, else stop with a message naming it and the fix."""
    if not os.path.isdir(path):
        raise DataError(f"{what} not found: {os.path.abspath(path)} does not exist. {fix}")
    return path


def require_file(path: str, what: str, fix: str) -> str:
    if not os.path.isfile(path):
        raise DataError(f"{what} not found: {os.path.abspath(path)} does not exist. {fix}")
    return path


def check_files_exist(paths: Iterable[str], listed_in: str) -> None:
    """Stop if a file named by a CSV or split list is absent; name the first few."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = "\n  ".join(missing[:5])
        more = f"\n  … and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(
            f"{len(missing)} image(s) listed in {listed_in} are missing:\n  {shown}{more}\n"
            "Restore the files, or remove their rows from the list."
        )


def resolve_classes(
    found: Sequence[str], configured: Sequence[str] | None, where: str
) -> list[str]:
    """Class order: the configured list when given (every found label must be in it), else
    sorted."""
    if not configured:
        return sorted(set(found))
    configured = [str(c) for c in configured]
    unknown = sorted(set(found) - set(configured))
    if unknown:
        raise DataError(
            f"label(s) {unknown} found in {where} are not in data.classes={configured}. "
            "Add them to data.classes, or remove those images."
        )
    return configured


def check_no_empty_class(class_names: Sequence[str], records: Sequence[Record], where: str) -> None:
    counts = Counter(r.label for r in records)
    empty = [c for i, c in enumerate(class_names) if counts.get(i, 0) == 0]
    if empty:
        raise DataError(
            f"class(es) {empty} have no images in {where}. Add images, or drop the class from "
            "data.classes (an explicit class list must only name classes that have images)."
        )


def group_from_name(name: str, pattern: str | None) -> str | None:
    """Group id from a file name via the first capture group of ``pattern`` (None: no groups)."""
    if not pattern:
        return None
    m = re.search(pattern, name)
    return m.group(1) if m else name
