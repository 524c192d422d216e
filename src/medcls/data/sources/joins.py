"""One image, one lesion, one group — across the sources of ``data=combined``.

Public skin sets overlap: HAM10000 is part of ISIC 2019 (same image ids and lesion ids under
other paths), and a glaucoma study may list one folder twice. Before any split, records that are
the same image or the same lesion get one group id, so no lesion sits in train and test.

What links two records (``data.dedupe``):

- ``paths``: the same file;
- ``ids`` (default): also the same image id (file stem, ``ISIC_0024306``) or the same group id as
  the source reads it (``lesion_id`` ``HAM_0000118``, a patient id);
- ``pixels``: also the same decoded pixels (renamed copies with no shared id).

Linking only ever merges groups, so a false link costs split balance, never a leak. Sources
whose file names repeat by chance (``1.png`` in two unrelated sets) and clash in label can use
``paths``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from medcls.data.readers import read_image
from medcls.data.records import DataError, Record

DEDUPE = ("ids", "pixels", "paths")


def pixel_digest(path: str) -> str | None:
    """Hash of the decoded RGB pixels and their shape; ``None`` if the file cannot be decoded
    (the decode step reports it later, as for any bad image)."""
    try:
        arr = read_image(path)[0]
    except OSError:
        return None
    h = hashlib.blake2b(repr(arr.shape).encode(), digest_size=16)
    h.update(arr.tobytes())
    return h.hexdigest()


def _links(records: Sequence[Record], dedupe: str) -> list[list[str]]:
    """The keys each record shares with its copies, per ``dedupe``."""
    keys = [[f"path:{os.path.realpath(r.path)}"] for r in records]
    if dedupe in ("ids", "pixels"):
        for k, r in zip(keys, records, strict=True):
            k.append(f"image:{r.image_id}")
            if r.group is not None:
                k.append(f"group:{r.group}")
    if dedupe == "pixels":
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            digests = list(pool.map(pixel_digest, [r.path for r in records]))
        for k, d in zip(keys, digests, strict=True):
            if d is not None:
                k.append(f"pixels:{d}")
    return keys


def join_across_sources(
    records: Sequence[Record], class_names: Sequence[str], dedupe: str = "ids"
) -> tuple[list[Record], list[str]]:
    """Records with one group id per linked set; groups stay prefixed with the source name.

    ``records`` carry the group ids their sources read (unprefixed) and ``Record.source``. A
    record's own group is ``<source>:<group>`` (``None`` when it has none and is linked to
    nothing); a linked set takes the group of its first record. Two copies of one image with
    different labels stop the run: the message names the image and both labels.

    Returns the records (same order) and notes for the run summary.
    """
    if dedupe not in DEDUPE:
        raise DataError(f"data.dedupe={dedupe!r}: use one of {list(DEDUPE)}.")
    own = [
        f"{r.source}:{r.group}" if r.group is not None else f"{r.source}:file:{r.path}"
        for r in records
    ]
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        while parent.setdefault(k, k) != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:  # the earlier record's group names the set
            parent[max(ra, rb, key=order.__getitem__)] = min(ra, rb, key=order.__getitem__)

    order: dict[str, int] = {}
    for i, k in enumerate(own):
        order.setdefault(k, i)
    links = _links(records, dedupe)
    first: dict[str, int] = {}  # link key → first record holding it
    for i, keys in enumerate(links):
        for key in keys:
            order.setdefault(key, len(records) + len(order))
            union(own[i], key)
            j = first.setdefault(key, i)
            if key.startswith("group:") or records[j].label == records[i].label:
                continue
            if min(records[i].label, records[j].label) >= 0:
                a, b = records[j], records[i]
                raise DataError(
                    f"image {a.image_id} is {_name(class_names, a.label)!r} in source "
                    f"{a.source!r} ({a.path}) and {_name(class_names, b.label)!r} in source "
                    f"{b.source!r} ({b.path}). "
                    "Fix the class_map or the label lists; if these are different images that "
                    "share a file name, set data.dedupe=paths."
                )
    groups = [find(k) for k in own]
    members = Counter(groups)
    sources: dict[str, set[str]] = {}
    for g, r in zip(groups, records, strict=True):
        sources.setdefault(g, set()).add(r.source)
    joined = {g for g, s in sources.items() if len(s) > 1}
    out = [  # a record with no group of its own and no copy stays ungrouped
        dataclasses.replace(r, group=g if r.group is not None or members[g] > 1 else None)
        for r, g in zip(records, groups, strict=True)
    ]
    notes = []
    if joined:
        n = sum(1 for g in groups if g in joined)
        notes.append(
            f"{len(joined)} image(s) or lesion(s) appear in more than one source "
            f"({n} records, linked by data.dedupe={dedupe}); each is one group, so it is never "
            "in two partitions"
        )
    return out, notes


def _name(class_names: Sequence[str], label: int) -> str:
    """Class name of a label; ``len(class_names)`` is the rejected-unknown class."""
    return class_names[label] if label < len(class_names) else "unknown"
