"""Several datasets as one (``data=combined``): each source is read by its own reader, its labels
are mapped onto one shared class list, optionally capped per class, and every record keeps the
name of the source it came from (``Record.source``) so splits can stratify by label × source and
the test metrics can be reported per source.

Preprocessing (image size, crops, colour mode) is shared: the combined config's ``data.*`` keys
apply to every source, because the decode cache and the checkpoint hold one preprocessing.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from medcls.data.preprocess import Preprocess
from medcls.data.records import Record
from medcls.data.sources.base import SourceData, check_no_empty_class
from medcls.data.sources.joins import join_across_sources
from medcls.errors import DataError

# Keys of a source entry that belong to the combination, not to the source's own reader.
COMBINE_KEYS = ("class_map", "max_per_class", "max_images")
EXAMPLE = (
    "e.g. +data@data.sources.airogs=glaucoma data.sources.airogs.root=/data/airogs, or "
    "'data.sources=[{name: a, source: imagefolder, root: /data/a}, ...]'"
)


def source_entries(sources: Any) -> list[tuple[str, DictConfig]]:
    """``data.sources`` as ``(name, config)`` pairs.

    A mapping is keyed by source name (what ``+data@data.sources.<name>=<preset>`` builds); a
    list needs a ``name`` in each entry.
    """
    if sources is None or len(sources) == 0:
        raise DataError(f"data=combined needs at least one entry in data.sources; {EXAMPLE}.")
    if OmegaConf.is_dict(sources) or isinstance(sources, Mapping):
        pairs = [(str(k), v) for k, v in sources.items()]
    else:
        pairs = []
        for i, entry in enumerate(sources):
            if not (OmegaConf.is_dict(entry) or isinstance(entry, Mapping)) or not entry.get(
                "name"
            ):
                raise DataError(
                    f"data.sources[{i}] needs a name (and source, root, …): "
                    "'{name: airogs, source: imagefolder, root: /data/airogs}'."
                )
            pairs.append((str(entry["name"]), entry))
    names = [n for n, _ in pairs]
    dupes = sorted(n for n, c in Counter(names).items() if c > 1)
    if dupes:
        raise DataError(f"data.sources: name(s) {dupes} used twice; give each source its own.")
    out = []
    for name, entry in pairs:
        if "/" in name:  # the name becomes part of MLflow keys test/<source>/<metric>
            raise DataError(f"data.sources: source name {name!r} must not contain '/'.")
        cfg = OmegaConf.create(
            OmegaConf.to_container(entry, resolve=True)
            if OmegaConf.is_config(entry)
            else dict(entry)
        )
        if not cfg.get("source"):
            raise DataError(
                f"data.sources.{name} has no reader: set data.sources.{name}.source "
                "(imagefolder, ham10000, isic_csv, covid_ct, synthetic) or start it from a "
                f"preset with +data@data.sources.{name}=<preset>."
            )
        if cfg.source == "combined":
            raise DataError(f"data.sources.{name}: a combined source cannot contain another one.")
        cfg.name = name
        out.append((name, cfg))
    return out


def map_labels(
    name: str,
    source_classes: Sequence[str],
    shared: Sequence[str] | None,
    class_map: Mapping[str, str | None] | None,
) -> list[str | None]:
    """Shared class name for each of a source's classes (``None``: its images are dropped).

    ``class_map`` (source class → shared class, ``null`` to drop) wins; other classes match a
    shared class by name, case-insensitively. Without a shared list every (mapped) name stands.
    """
    class_map = dict(class_map or {})
    unknown_keys = sorted(set(class_map) - set(source_classes))
    if unknown_keys:
        raise DataError(
            f"data.sources.{name}.class_map names {unknown_keys}, which source {name!r} does "
            f"not have (its classes: {list(source_classes)})."
        )
    lower = {str(c).lower(): str(c) for c in shared or ()}
    out: list[str | None] = []
    for c in source_classes:
        target = class_map.get(c, c)
        if target is None or shared is None:
            out.append(None if target is None else str(target))
        elif str(target).lower() in lower:
            out.append(lower[str(target).lower()])
        else:
            raise DataError(
                f"class {c!r} of source {name!r} matches none of data.classes={list(shared)}. "
                f"Map it with data.sources.{name}.class_map.{c}=<shared class> "
                f"(or data.sources.{name}.class_map.{c}=null to leave its images out)."
            )
    return out


def cap_records(
    records: Sequence[Record],
    max_per_class: int | None,
    max_images: int | None,
    seed: int,
) -> list[Record]:
    """At most ``max_per_class`` images of each label, then ``max_images`` in all, drawn
    without replacement with ``seed``; the kept records stay in their original order.

    A total cap keeps the class proportions (largest remainders), so a cap never empties a class
    that had images.
    """
    idx = np.arange(len(records))
    labels = np.array([r.label for r in records], dtype=np.int64)
    rng = np.random.default_rng(seed)
    if max_per_class is not None:
        kept = []
        for c in np.unique(labels):
            members = idx[labels == c]
            if members.size > max_per_class:
                members = rng.choice(members, int(max_per_class), replace=False)
            kept.append(members)
        idx = np.sort(np.concatenate(kept)) if kept else idx
    if max_images is not None and idx.size > max_images:
        classes, counts = np.unique(labels[idx], return_counts=True)
        share = counts * (int(max_images) / idx.size)
        quota = np.maximum(np.floor(share).astype(int), 1)
        for j in np.argsort(-(share - np.floor(share))):  # hand out what flooring left over
            if quota.sum() >= max_images:
                break
            quota[j] += 1
        kept = [
            rng.choice(idx[labels[idx] == c], min(q, n), replace=False)
            for c, q, n in zip(classes, quota, counts, strict=True)
        ]
        idx = np.sort(np.concatenate(kept))
    return [records[i] for i in idx]


def _positive_int(value: Any, key: str) -> int | None:
    """A cap on images: a whole number >= 1 (``300``, ``"300"``, ``3e2``), or None (no cap)."""
    if value is None:
        return None
    n = None
    if isinstance(value, float) and value.is_integer():
        n = int(value)
    elif isinstance(value, int | str) and not isinstance(value, bool):
        try:
            n = int(str(value).strip())
        except ValueError:
            n = None
    if n is None or n < 1:
        raise DataError(
            f"{key}={value}: give a positive number of images (a whole number such as "
            f"{key}=300), or null for no cap."
        )
    return n


def _cap(scfg: DictConfig, cfg: DictConfig, key: str, name: str) -> int | None:
    """Source ``name``'s ``key`` (max_per_class / max_images), else the ``data.*`` default;
    an error names whichever key the value came from."""
    if key in scfg:
        return _positive_int(scfg.get(key), f"data.sources.{name}.{key}")
    return _positive_int(cfg.get(key), f"data.{key}")


def load_combined(
    cfg: DictConfig, load: Callable[[DictConfig], SourceData] | None = None
) -> SourceData:
    """Read every ``cfg.sources`` entry with its own reader and merge them.

    Per source: ``class_map`` (source class → shared class, ``null`` drops it),
    ``max_per_class`` and ``max_images`` (seeded caps, default ``cfg.max_per_class`` /
    ``cfg.max_images``). Group ids are prefixed with the source name, and records of one image
    or lesion in several sources are joined into one group (``cfg.dedupe``, see
    :mod:`medcls.data.sources.joins`) so it never lands in two partitions; an image several
    sources hold is then one record, the first source's (the notes count the copies dropped),
    so it is trained on and scored once. Caps apply per source, before that.
    """
    if load is None:
        from medcls.data.sources import load_source as load
    shared = [str(c) for c in cfg.classes] if cfg.get("classes") else None
    seed = int(cfg.get("split_seed") if cfg.get("split_seed") is not None else 0)
    shared_pre = Preprocess.from_cfg(cfg).to_dict()
    merged: list[tuple[str, list[Record], list[str | None]]] = []
    notes: list[str] = []
    for name, scfg in source_entries(cfg.get("sources")):
        reader_cfg = OmegaConf.create(
            {k: v for k, v in OmegaConf.to_container(scfg).items() if k not in COMBINE_KEYS}
        )
        src = load(reader_cfg)
        targets = map_labels(name, src.class_names, shared, scfg.get("class_map"))
        notes += [f"{name}: {n}" for n in src.notes]
        dropped = [c for c, t in zip(src.class_names, targets, strict=True) if t is None]
        if dropped:
            notes.append(f"{name}: class(es) {dropped} left out (class_map → null)")
        differs = {
            k: scfg[k]
            for k, v in shared_pre.items()
            if k in scfg and scfg[k] is not None and scfg[k] != v
        }
        if differs:
            notes.append(
                f"{name}: its preprocessing {differs} is not used; every source gets the "
                f"combined data.* preprocessing {shared_pre}"
            )
        records = [r for r in src.records if r.label < 0 or targets[r.label] is not None]
        before = len(records)
        records = cap_records(
            records,
            _cap(scfg, cfg, "max_per_class", name),
            _cap(scfg, cfg, "max_images", name),
            seed,
        )
        if len(records) < before:
            notes.append(f"{name}: capped to {len(records)} of {before} images")
        merged.append((name, records, targets))

    class_names = shared or sorted({t for _, _, ts in merged for t in ts if t is not None})
    out = [
        dataclasses.replace(
            r,
            label=class_names.index(targets[r.label]) if r.label >= 0 else r.label,
            source=name,
        )
        for name, records, targets in merged
        for r in records
    ]
    out, join_notes = join_across_sources(out, class_names, str(cfg.get("dedupe") or "ids"))
    notes += join_notes
    check_no_empty_class(class_names, out, f"data.sources ({', '.join(n for n, _, _ in merged)})")
    counts = Counter((r.source, class_names[r.label]) for r in out if r.label >= 0)
    notes.append("combined: " + "; ".join(f"{s}/{c} {n}" for (s, c), n in sorted(counts.items())))
    return SourceData(str(cfg.name), class_names, out, notes)
