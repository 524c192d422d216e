"""Train/val/test partitions: stratified by label, grouped by group id, seeded.

The test partition is carved first and does not depend on the fold, so every fold model of a
cross-validation is tested on the same images. An official split (``Record.split``) is used as
given; partitions it lacks are carved by whole groups, and no group of an official validation
list reaches a carved test part. Groups that the published lists themselves put in two
partitions are reported, and refused under cross-validation folds.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from medcls.data.records import Record
from medcls.errors import DataError

log = logging.getLogger(__name__)
PARTITIONS = ("train", "val", "test")


def group_ids(records: Sequence[Record]) -> np.ndarray:
    """Group id per record; a record without one is its own group."""
    return np.array(
        [r.group if r.group is not None else f"__rec{i}" for i, r in enumerate(records)]
    )


def strata(records: Sequence[Record]) -> np.ndarray:
    """What splits stratify on: the label, or label × source when the records come from
    several sources (``data=combined``), so every partition holds each source's classes in
    proportion. With one source this is the label itself (splits stay as they were)."""
    labels = np.array([r.label for r in records], dtype=np.int64)
    names = sorted({r.source for r in records})
    if len(names) < 2:
        return labels
    source_idx = np.array([names.index(r.source) for r in records], dtype=np.int64)
    return labels * len(names) + source_idx


def _kfold(idx: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int, seed: int):
    n_groups = len(set(groups[idx]))
    if n_groups < k:
        raise DataError(
            f"cannot make {k} grouped folds from {n_groups} group(s); lower data.num_folds "
            "or the validation/test fraction."
        )
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has only n members": checked below
        warnings.simplefilter("ignore", UserWarning)
        try:
            return [(idx[a], idx[b]) for a, b in cv.split(idx, labels[idx], groups[idx])]
        except ValueError as e:  # e.g. every class has fewer than k images
            raise DataError(
                f"cannot split {idx.size} images into {k} stratified folds ({e}). Use fewer "
                "folds (data.num_folds), a larger data.val_fraction / data.test_fraction, "
                "or add images."
            ) from e


def _carve(idx, labels, groups, fraction: float, seed: int):
    """Hold out about ``fraction`` of ``idx`` (whole groups, stratified)."""
    k = max(2, round(1.0 / fraction))
    return _kfold(idx, labels, groups, k, seed)[0]


def splits_for(
    records: Sequence[Record], class_names: Sequence[str], cfg: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """:func:`make_splits` with the split keys of a ``conf/data`` config (``fold``,
    ``num_folds``, ``val_fraction``, ``test_fraction``, ``split_seed``, ``use_official_split``),
    so every caller partitions a dataset exactly as training does."""
    return make_splits(
        records,
        class_names,
        fold=cfg["fold"],
        num_folds=cfg["num_folds"],
        val_fraction=cfg["val_fraction"],
        test_fraction=cfg["test_fraction"],
        seed=cfg["split_seed"],
        use_official_split=cfg["use_official_split"],
    )


def make_splits(
    records: Sequence[Record],
    class_names: Sequence[str],
    *,
    fold: int | None = None,
    num_folds: int = 5,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 42,
    use_official_split: bool = True,
) -> dict[str, np.ndarray]:
    """Indices into ``records`` for ``train``, ``val`` and ``test``.

    Args:
        fold: ``None`` for a holdout validation split, else the validation fold of ``num_folds``.
        test_fraction: share held out for test when the source has no official test set
            (0 disables the test partition).
    """
    labels = np.array([r.label for r in records])
    strat = strata(records)  # label (× source for combined data): what the folds balance
    groups = group_ids(records)
    splits = np.array([r.split for r in records], dtype=object)
    official = use_official_split and any(s is not None for s in splits)
    all_idx = np.arange(len(records))
    if fold is not None and num_folds < 2:
        raise DataError(f"data.num_folds={num_folds}: cross-validation needs 2 or more folds.")
    if fold is not None and not 0 <= fold < num_folds:
        raise DataError(
            f"data.fold={fold} is outside 0..{num_folds - 1} (data.num_folds={num_folds})."
        )
    if not 0 <= test_fraction < 1:
        raise DataError(
            f"data.test_fraction={test_fraction}: use a share in [0, 1), e.g. 0.2 (0: no test)."
        )
    if fold is None and not 0 < val_fraction < 1:
        raise DataError(f"data.val_fraction={val_fraction}: use a share in (0, 1), e.g. 0.2.")

    if official and (splits == "test").any():
        test = all_idx[splits == "test"]
        pool = all_idx[splits != "test"]
    elif test_fraction > 0:
        # The test part is carved by whole groups over every record. An official validation
        # set holds its groups back, so none of them reaches test even where the published
        # lists put one group in both train and val; with or without folds, so that the test
        # partition is the same for fold=None and every fold=k (an ensemble of the folds and
        # medcls-eval score exactly the images each fold model held out).
        held = all_idx[:0]
        if official and (splits == "val").any():
            held = all_idx[np.isin(groups, groups[splits == "val"])]
        rest, test = _carve(np.setdiff1d(all_idx, held), strat, groups, test_fraction, seed)
        pool = np.union1d(rest, held)
    else:
        pool, test = all_idx, all_idx[:0]

    if fold is not None:
        train, val = _kfold(pool, strat, groups, num_folds, seed)[fold]
    elif official and (splits[pool] == "val").any():
        val, train = pool[splits[pool] == "val"], pool[splits[pool] != "val"]
    else:
        train, val = _carve(pool, strat, groups, val_fraction, seed)

    out = {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}
    check_partitions(out, labels, groups, class_names, official=official, folds=fold is not None)
    return out


def check_partitions(
    parts, labels, groups, class_names, official: bool = False, folds: bool = False
) -> None:
    """Every class in every non-empty partition; no group in two partitions.

    An official split used as published may itself put a group in two partitions: that is
    reported. Cross-validation folds on top of such a split would score fold models on images
    of patients they trained on, so it is refused.
    """
    for name, idx in parts.items():
        if name != "train" and idx.size == 0:
            continue
        present = set(labels[idx].tolist())
        missing = [c for i, c in enumerate(class_names) if i not in present]
        if missing:
            raise DataError(
                f"class(es) {missing} have no images in the {name} partition "
                f"({idx.size} images). Use fewer folds (data.num_folds), a larger "
                "data.val_fraction / data.test_fraction, or add images of those classes."
            )
    seen: dict[str, str] = {}
    crossing = []
    for name, idx in parts.items():
        for g in set(groups[idx].tolist()):
            if g in seen and seen[g] != name:
                crossing.append(f"{g} ({seen[g]}/{name})")
            seen[g] = name
    if crossing and not official:
        raise DataError(f"group(s) in two partitions: {crossing[:5]}; this is a medcls bug.")
    if crossing and folds:
        raise DataError(
            f"the official split puts {len(crossing)} group(s) in two partitions, e.g. "
            f"{crossing[:3]}, so cross-validation folds on top of it would leak. Set "
            "data.use_official_split=false to carve every partition by group, or fix the "
            "split lists."
        )
    if crossing:
        log.warning(
            "official split puts %d group(s) in two partitions, e.g. %s",
            len(crossing),
            crossing[:3],
        )
