"""Data cleaning: find unreadable images, exact duplicates, duplicates with different labels,
and the same image in two partitions (``medcls-audit``, :mod:`medcls.workflows.audit`).

Duplicates are images with the same *decoded pixels* (a hash of the RGB array and its shape),
so a copy saved under another name, or re-saved losslessly in another format, is found, while
file-byte hashing would miss it. (A copy re-compressed as JPEG has other pixels and is not an
exact duplicate.)

The findings are a table with one row per (image, issue) and an ``exclude`` column that, fed
back as ``data.exclude=<csv>``, removes unreadable images, every copy of a duplicate set with
conflicting labels (its label cannot be trusted) and all but one copy of every other duplicate
set (the test copy if there is one, else the first by path), which also ends every leak between
partitions.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from medcls.data.readers import read_image
from medcls.data.records import Record
from medcls.data.sources.synthetic import SCHEME, read_synthetic
from medcls.errors import BadImageError

UNREADABLE, DUPLICATE, CONFLICT, LEAK = (
    "unreadable",
    "duplicate",
    "conflicting_labels",
    "split_leak",
)
ISSUES = (UNREADABLE, DUPLICATE, CONFLICT, LEAK)
KEEP_FIRST = {"test": 0, "val": 1, "train": 2}  # which copy of a duplicate set stays
COLUMNS = [
    "issue",
    "path",
    "label",
    "partition",
    "duplicate_set",
    "copies",
    "exclude",
    "detail",
]


def pixel_digest(image: np.ndarray) -> str:
    """Hash of a decoded ``(H, W, C)`` uint8 array: equal iff shape and pixels are equal."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def _scan_one(path: str) -> tuple[str | None, str | None]:
    """``(digest, None)`` for a decodable image, ``(None, reason)`` otherwise."""
    try:
        image = (read_synthetic if path.startswith(SCHEME) else read_image)(path)[0]
    except FileNotFoundError:
        return None, f"{path}: file not found"
    except BadImageError as e:
        return None, str(e)
    return pixel_digest(image), None


def scan_images(
    paths: Sequence[str], workers: int | None = None, progress: bool = True
) -> list[tuple[str | None, str | None]]:
    """``(digest, error)`` per path, in order; decoded with ``workers`` threads (default: one
    per core; PIL releases the GIL while decoding, as in :mod:`medcls.data.cache`)."""
    workers = workers or min(os.cpu_count() or 1, 8)
    with ThreadPoolExecutor(workers) as pool:
        results: Iterator = pool.map(_scan_one, paths, chunksize=16)
        if progress and len(paths) >= 256:
            from rich.progress import track

            results = track(results, total=len(paths), description=f"hashing {len(paths)} images")
        return list(results)


def find_issues(
    records: Sequence[Record],
    class_names: Sequence[str],
    scans: Sequence[tuple[str | None, str | None]],
    partitions: Sequence[str | None] | None = None,
) -> pd.DataFrame:
    """The findings as a table (columns :data:`COLUMNS`, one row per image and issue).

    Args:
        scans: :func:`scan_images` of the records' paths.
        partitions: the partition (``train``/``val``/``test``, ``None``: none) of every record,
            for the leak check; ``None`` skips it.
    """
    names = [*class_names, "unknown"]  # label == len(class_names): an unknown-class image

    def label(i: int) -> str:
        return names[records[i].label] if records[i].label >= 0 else ""

    def part(i: int) -> str:
        return (partitions[i] or "") if partitions is not None else ""

    rows: list[dict] = []
    for i, (_, error) in enumerate(scans):
        if error is not None:
            rows.append(_row(UNREADABLE, records[i].path, label(i), part(i), "", 1, True, error))

    sets: dict[str, list[int]] = defaultdict(list)
    for i, (digest, _) in enumerate(scans):
        if digest is not None:
            sets[digest].append(i)
    for digest, members in sorted(sets.items(), key=lambda kv: records[min(kv[1])].path):
        if len(members) < 2:
            continue
        # the copy kept: an (official) test set stays whole, the training copy goes
        members = sorted(members, key=lambda i: (KEEP_FIRST.get(part(i), 3), records[i].path))
        keeper, n, set_id = members[0], len(members), digest[:12]
        # (a file listed twice, e.g. by two merged sources, is one path: it stays)
        copy = {i: records[i].path != records[keeper].path for i in members}
        labels = sorted({label(i) for i in members})
        conflicting = len(labels) > 1
        for i in members:
            path = records[i].path
            if conflicting:
                detail = f"{n} copies labelled {', '.join(labels)}"
                rows.append(_row(CONFLICT, path, label(i), part(i), set_id, n, True, detail))
            else:
                detail = "kept" if i == keeper else f"same pixels as {records[keeper].path}"
                rows.append(_row(DUPLICATE, path, label(i), part(i), set_id, n, copy[i], detail))
        seen = sorted({part(i) for i in members} - {""})
        if len(seen) > 1:
            detail = f"same image in {' and '.join(seen)}"
            for i in members:
                exclude = conflicting or copy[i]
                rows.append(
                    _row(LEAK, records[i].path, label(i), part(i), set_id, n, exclude, detail)
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def _row(
    issue: str,
    path: str,
    label: str,
    partition: str,
    set_id: str,
    copies: int,
    exclude: bool,
    detail: str,
) -> dict:
    values = (issue, path, label, partition, set_id, copies, exclude, detail)
    return dict(zip(COLUMNS, values, strict=True))


def summarize(issues: pd.DataFrame) -> pd.DataFrame:
    """Per issue: images, duplicate sets and images the ``exclude`` column would drop."""
    out = []
    for issue in ISSUES:
        rows = issues[issues["issue"] == issue]
        sets = rows.loc[rows["duplicate_set"] != "", "duplicate_set"].nunique()
        out.append(
            {
                "issue": issue,
                "images": int(rows["path"].nunique()),
                "sets": int(sets),
                "excluded": int(rows.loc[rows["exclude"].astype(bool), "path"].nunique()),
            }
        )
    return pd.DataFrame(out)
