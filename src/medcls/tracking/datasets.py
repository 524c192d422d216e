"""Each partition a run trained, validated or tested on, as an MLflow dataset input: the UI's
Dataset column then says what a run saw (name, digest of its record list, images per class)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import numpy as np
from mlflow.entities import Dataset, DatasetInput, InputTag

from medcls.data.records import Record
from medcls.tracking.store import caused_by

CONTEXT_TAG = "mlflow.data.context"  # what MLflow's UI shows beside a dataset: train/val/test


def record_digest(records: Sequence[Record]) -> str:
    """10 hex digits over the partition's sorted (path, label) pairs: equal for the same images
    and labels, whatever their order; any added, dropped or relabelled image changes it."""
    h = hashlib.sha256()
    for path, label in sorted((r.path, int(r.label)) for r in records):
        h.update(f"{path}\t{label}\n".encode())
    return h.hexdigest()[:10]


def partition_dataset(
    source: str, uri: str, partition: str, records: Sequence[Record], class_names: Sequence[str]
) -> Dataset:
    """One partition as an MLflow :class:`Dataset`: ``<source>-<partition>``, its digest, where
    it was read from (``uri``), and a profile of images per class."""
    counts = np.bincount(
        [r.label for r in records if 0 <= r.label < len(class_names)], minlength=len(class_names)
    )
    profile = {
        "images": len(records),
        "per_class": {c: int(n) for c, n in zip(class_names, counts, strict=True)},
    }
    return Dataset(
        name=f"{source}-{partition}",
        digest=record_digest(records),
        source_type="local",
        source=json.dumps({"uri": uri}),
        profile=json.dumps(profile),
    )


def log_partitions(
    client,
    run_id: str,
    source: str,
    uri: str,
    records: Sequence[Record],
    partitions: Mapping[str, np.ndarray],
    class_names: Sequence[str],
) -> None:
    """``mlflow.log_input`` for every non-empty partition of ``partitions`` (name → record
    indices; the name is the dataset's context)."""
    inputs = [
        DatasetInput(
            partition_dataset(source, uri, part, [records[i] for i in idx], class_names),
            tags=[InputTag(CONTEXT_TAG, part)],
        )
        for part, idx in partitions.items()
        if len(idx)
    ]
    if not inputs:
        return
    try:
        client.log_inputs(run_id, datasets=inputs)
    except Exception as e:
        if not _is_integrity_error(e):
            raise
        # Parallel jobs of a sweep log the same dataset (same name and digest) to one
        # experiment: MLflow looks it up, finds nothing, and inserts it, so the slower job's
        # insert breaks the unique key. Its transaction was rolled back; now the lookup finds
        # the other job's row and only the run's link to it is written.
        client.log_inputs(run_id, datasets=inputs)


def _is_integrity_error(error: BaseException) -> bool:
    """True when a unique key broke somewhere in ``error``'s chain (SQLAlchemy's
    ``IntegrityError``, however MLflow wrapped it)."""
    from sqlalchemy.exc import IntegrityError

    return caused_by(error, lambda e: isinstance(e, IntegrityError))
