"""Match a dataset's class names to a checkpoint's (case-insensitive, or by explicit map)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from medcls.errors import DataError


def match_classes(
    dataset_classes: Sequence[str],
    model_classes: Sequence[str],
    class_map: Mapping[str, str] | None = None,
    unmatched: int | None = None,
) -> list[int]:
    """For each dataset class, the index of the model class it means.

    ``class_map`` maps dataset names to model names (``{"MEL": "mel"}``) and wins over the
    case-insensitive name match. A dataset class that matches nothing is an error (evaluating it
    as some other class would silently mislabel images), unless ``unmatched`` gives the index
    to use for it.
    """
    class_map = dict(class_map or {})
    lower = {}
    for i, c in enumerate(model_classes):
        lower.setdefault(c.lower(), i)
    out, unmapped = [], []
    for c in dataset_classes:
        target = class_map.get(c, c)
        if target in model_classes:
            out.append(list(model_classes).index(target))
        elif str(target).lower() in lower:
            out.append(lower[str(target).lower()])
        elif unmatched is not None:  # the caller handles classes the model lacks
            out.append(unmatched)
        else:
            unmapped.append(c)
    if unmapped:
        raise DataError(
            f"dataset class(es) {unmapped} match none of the checkpoint's classes "
            f"{list(model_classes)}. Map them explicitly, "
            f"e.g. class_map.{unmapped[0]}=<model class>, "
            "or leave those images out of the evaluation data."
        )
    return out
