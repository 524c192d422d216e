"""Which images a checkpoint was tested on, carried in the checkpoint (``medcls.split``).

medcls-eval, -ensemble and -pseudo rebuild a run's partitions from the data. The config they
are given need not be the run's (``seed: 42`` in conf/eval.yaml after a run with ``seed=7``
gives other partitions: the "test" images would then be mostly training images). So training
stores the split settings and the sorted ids of its test partition; a later command takes the
settings from the checkpoint, rebuilds, and stops when the data no longer gives the same test
images, naming what changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, MutableMapping, Sequence

from medcls.data.records import Record
from medcls.errors import DataError

# The data keys that decide which images fall in which partition (besides the images).
SPLIT_KEYS = (
    "split_seed",
    "val_fraction",
    "test_fraction",
    "use_official_split",
    "num_folds",
    "fold",
    "exclude",
)
SHOWN = 5  # ids named in a mismatch message


def record_key(record: Record) -> str:
    """A record's id in the provenance: its image id (file stem; a CT slice's volume + slice),
    so a dataset moved to another folder or machine gives the same ids."""
    return record.image_id


def test_ids(test_records: Sequence[Record], num_classes: int) -> list[str]:
    """Sorted ids of the test images of the model's classes. Images of an unknown class
    (``data.unknown=reject``) are an evaluation choice, not part of the split."""
    return sorted(record_key(r) for r in test_records if 0 <= r.label < num_classes)


def digest(ids: Sequence[str]) -> str:
    """sha256 (hex, 16 characters) of the sorted ids, one per line."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def split_provenance(data_cfg: Mapping, test_records: Sequence[Record], num_classes: int) -> dict:
    """What a checkpoint keeps of its split: the data name, the split settings and the test
    partition's sorted ids with their digest."""
    ids = test_ids(test_records, num_classes)
    return {
        "data_name": str(data_cfg.get("name")),
        "settings": {k: _plain(data_cfg.get(k)) for k in SPLIT_KEYS},
        "test_ids": ids,
        "test_digest": digest(ids),
    }


def _plain(value):
    return value if value is None or isinstance(value, bool | int | float) else str(value)


def applies(provenance: Mapping | None, data_cfg: Mapping, split: str) -> bool:
    """Whether a checkpoint's split governs ``split`` of ``data_cfg``: the same dataset (by
    name) and a partition of it (``split=all`` and other datasets are external data)."""
    return (
        bool(provenance)
        and split != "all"
        and str(data_cfg.get("name")) == provenance.get("data_name")
    )


def apply_split_settings(data_cfg: MutableMapping, provenance: Mapping) -> list[str]:
    """Set the checkpoint's split settings in ``data_cfg``; return a note per key that differed
    from the config (``data.split_seed: 42 → 7 (the checkpoint's)``)."""
    notes = []
    for key, value in provenance["settings"].items():
        if _plain(data_cfg.get(key)) != value:
            notes.append(f"data.{key}: {data_cfg.get(key)} → {value} (the checkpoint's)")
        data_cfg[key] = value
    return notes


def check_test_partition(
    provenance: Mapping, test_records: Sequence[Record], num_classes: int, ckpt: str
) -> None:
    """Stop (:class:`DataError`) when the rebuilt test partition is not the checkpoint's."""
    ids = test_ids(test_records, num_classes)
    if digest(ids) == provenance["test_digest"]:
        return
    kept = set(provenance.get("test_ids") or ())
    missing = sorted(kept - set(ids))
    added = sorted(set(ids) - kept)
    what = [f"{len(ids)} test images now, {len(kept)} when {ckpt} was trained"]
    if missing:
        what.append(f"{len(missing)} of its test images are gone (e.g. {missing[:SHOWN]})")
    if added:
        what.append(f"{len(added)} images are new to the test partition (e.g. {added[:SHOWN]})")
    raise DataError(
        f"the data no longer gives the test partition {ckpt} was tested on ({'; '.join(what)}). "
        "Images were added, removed or renamed in data.root, or data.exclude / the source's "
        "lists changed since training. Score it on the data it was trained with, or evaluate "
        "every image of a new set with split=all."
    )
