"""One image, one lesion, one group — across the sources of ``data=combined``.

Public skin sets overlap: HAM10000 is part of ISIC 2019 (same image ids and lesion ids under
other paths), and a glaucoma study may list one folder twice. Before any split, records that are
the same image or the same lesion get one group id, so no lesion sits in train and test.

What links two records (``data.dedupe``):

- ``paths``: the same file;
- ``ids`` (default): also the same image id (file stem, ``ISIC_0024306``) or the same group id as
  the source reads it (``lesion_id`` ``HAM_0000118``, a patient id);
- ``pixels``: also the same decoded pixels (renamed copies with no shared id).

Then each image is kept once: copies that a later source holds of an image an earlier source
already has are dropped (the run notes count them per source), so no image is trained on or scored
twice. Copies of one image with two labels stop the run, naming the image, both labels and the fix:
which label is right is the user's call, not the reader's.

Linking merges groups, so a false link within a source costs split balance, never a leak; a false
*image* link across sources (``1.png`` in two unrelated sets, same label) also drops one of the two
images. Sources whose file names repeat by chance can use ``paths``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from medcls.data.readers import read_image
from medcls.data.records import Record
from medcls.errors import DataError

DEDUPE = ("ids", "pixels", "paths")
HELD_OUT = {None: 0, "train": 1, "val": 2, "test": 3}  # which copy's official split wins
log = logging.getLogger(__name__)


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
    """One group id per linked set, then one record per image.

    ``records`` (N, in the configured source order) carry the group ids their sources read
    (unprefixed) and ``Record.source``. A record's own group is ``<source>:<group>`` (``None``
    when it has none and is linked to nothing); a linked set takes the group of its first record.
    Two copies of one image with different labels stop the run: the message names the image and
    both labels. Copies of one image in several sources then become one record (see
    :func:`one_record_per_image`), so no image is trained on or scored twice.

    Returns the kept records (M <= N, input order) and notes for the run summary.
    """
    if dedupe not in DEDUPE:
        raise DataError(f"data.dedupe={dedupe!r}: use one of {list(DEDUPE)}.")
    links = _links(records, dedupe)
    _check_labels(records, links, class_names)
    groups = _linked_groups(records, links)
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
    out, dedupe_notes = one_record_per_image(out, links)
    return out, notes + dedupe_notes


def _check_labels(
    records: Sequence[Record], links: Sequence[Sequence[str]], class_names: Sequence[str]
) -> None:
    """Stop at the first image whose copies carry two labels (unlabelled copies agree with any);
    copies of one lesion (``group:`` links) may differ."""
    first: dict[str, int] = {}  # link key → first record holding it
    for i, keys in enumerate(links):
        for key in keys:
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


def _linked_groups(records: Sequence[Record], links: Sequence[Sequence[str]]) -> list[str]:
    """Group id of each record (N): its own ``<source>:<group>`` (or ``<source>:file:<path>``),
    merged over every shared link key; a merged set takes its earliest record's group."""
    own = [
        f"{r.source}:{r.group}" if r.group is not None else f"{r.source}:file:{r.path}"
        for r in records
    ]
    order: dict[str, int] = {}
    for i, k in enumerate(own):
        order.setdefault(k, i)
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        while parent.setdefault(k, k) != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for i, keys in enumerate(links):
        for key in keys:
            order.setdefault(key, len(records) + len(order))
            ra, rb = find(own[i]), find(key)
            if ra != rb:  # the earlier record's group names the set
                parent[max(ra, rb, key=order.__getitem__)] = min(ra, rb, key=order.__getitem__)
    return [find(k) for k in own]


def _same_image(links: Sequence[Sequence[str]]) -> list[int]:
    """For each record (N), the index of the earliest record that is the same image: linked
    through a chain of file, image-id or pixel keys (not lesion/patient ``group:`` keys)."""
    parent = list(range(len(links)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, keys in enumerate(links):
        for key in keys:
            if not key.startswith("group:"):
                a, b = find(i), find(first.setdefault(key, i))
                parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(len(links))]


def one_record_per_image(
    records: Sequence[Record], links: Sequence[Sequence[str]]
) -> tuple[list[Record], list[str]]:
    """Drop the copies that later sources hold of an image an earlier source already has.

    ``records`` (N, configured source order) and their ``links`` (N lists of keys, as from
    :func:`_links`). Of each set of copies the source of its first labelled record (else of its
    first record) keeps its records, label and group; the other sources' copies go. Labels
    already agree (:func:`_check_labels`). What only a dropped copy knows is kept: metadata
    columns the kept record lacks (subgroup attributes), a mask, and a more held-out official
    split (a copy listed as ``test`` anywhere stays a test image, so it is never trained on).
    Within one source nothing is dropped: a reader's own records are distinct images.

    Returns the kept records (input order) and a note per source that lost copies.
    """
    roots = _same_image(links)
    copies: dict[int, list[int]] = {}
    for i, root in enumerate(roots):
        copies.setdefault(root, []).append(i)
    keeper: dict[int, str] = {}  # set → the source whose records stay
    for root, idx in copies.items():
        labelled = [i for i in idx if records[i].label >= 0]
        keeper[root] = records[(labelled or idx)[0]].source
    out, dropped = [], Counter()
    for i, r in enumerate(records):
        if r.source != keeper[roots[i]]:
            dropped[(r.source, keeper[roots[i]])] += 1
            continue
        others = [records[j] for j in copies[roots[i]] if records[j].source != r.source]
        out.append(_merged(r, others) if others else r)
    notes = [
        f"{n} image(s) of source {src!r} are copies of images of source {kept!r} and were "
        f"dropped (one record per image: the copy from {kept!r} is kept)"
        for (src, kept), n in sorted(dropped.items())
    ]
    for note in notes:
        log.info("data.dedupe: %s", note)
    return out, notes


def _merged(kept: Record, dropped: Sequence[Record]) -> Record:
    """``kept`` with the dropped copies' metadata columns it lacks, their mask if it has none,
    and the most held-out official split among them all."""
    meta = dict(kept.meta)
    for r in dropped:
        for column, value in r.meta:
            meta.setdefault(column, value)
    split = max([kept.split, *(r.split for r in dropped)], key=lambda s: HELD_OUT.get(s, 0))
    mask = kept.mask or next((r.mask for r in dropped if r.mask), None)
    return dataclasses.replace(kept, meta=tuple(meta.items()), split=split, mask=mask)


def _name(class_names: Sequence[str], label: int) -> str:
    """Class name of a label; ``len(class_names)`` is the rejected-unknown class."""
    return class_names[label] if label < len(class_names) else "unknown"
