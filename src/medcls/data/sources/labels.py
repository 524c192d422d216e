"""Labels as a CSV-driven source lists them: fixed class vocabularies, one label per image, and
labels outside the run's classes (``data.unknown``).

Row numbers in messages are those a spreadsheet shows (the header is row 1).
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence

from medcls.errors import DataError

UNKNOWN_POLICIES = ("error", "exclude", "reject")


def _row(i: int) -> int:
    return i + 2  # 0-based data row → spreadsheet row under a header


def check_vocabulary(
    values: Sequence[str], vocabulary: Sequence[str], csv_path: str, column: str
) -> None:
    """Every label is one of the source's declared classes; a misspelt one is named with its
    row (and the nearest class), so it does not surface later as an empty partition."""
    vocab = set(vocabulary)
    bad = [i for i, v in enumerate(values) if v not in vocab]
    if not bad:
        return
    value = values[bad[0]]
    near = difflib.get_close_matches(value, list(vocabulary), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    more = f"; {len(bad)} row(s) in all, values {sorted({values[i] for i in bad})[:5]}"
    raise DataError(
        f"{csv_path}: row {_row(bad[0])} has {column}={value!r}{hint}, which is not one of the "
        f"declared classes {list(vocabulary)}{more if len(bad) > 1 else ''}. Correct the label, "
        "or declare other classes with data.vocabulary=[...] (null: the names found)."
    )


def declared_classes(
    vocabulary: Sequence[str], configured: Sequence[str] | None, counts: Counter, where: str
) -> list[str]:
    """The run's classes: ``configured`` (``data.classes``, a subset of the vocabulary), else
    the whole vocabulary, every class of which must have images."""
    vocabulary = [str(c) for c in vocabulary]
    if configured:
        configured = [str(c) for c in configured]
        foreign = [c for c in configured if c not in vocabulary]
        if foreign:
            raise DataError(
                f"data.classes names {foreign}, which {where} does not declare (its classes: "
                f"{vocabulary}). Use those names, or data.vocabulary=[...] for other ones."
            )
        return configured
    empty = [c for c in vocabulary if counts.get(c, 0) == 0]
    if empty:
        present = ",".join(c for c in vocabulary if counts.get(c, 0))
        raise DataError(
            f"declared class(es) {empty} have no images in {where}. If these images are a "
            f"subset, narrow the class list: data.classes=[{present}]."
        )
    return vocabulary


def check_unique_ids(ids: Sequence[str], labels: Sequence[str], csv_path: str) -> None:
    """Each image once: an id listed twice is an error naming it, its rows and both labels."""
    first: dict[str, int] = {}
    for i, image_id in enumerate(ids):
        j = first.setdefault(image_id, i)
        if j == i:
            continue
        if labels[j] != labels[i]:
            raise DataError(
                f"{csv_path}: image {image_id} is listed twice with different labels: "
                f"{labels[j]!r} (row {_row(j)}) and {labels[i]!r} (row {_row(i)}). Keep the row "
                "with the right label."
            )
        raise DataError(
            f"{csv_path}: image {image_id} is listed twice (rows {_row(j)} and {_row(i)}, both "
            f"{labels[i]!r}). Remove one of the rows: each image is listed once."
        )


def unknown_policy(policy: str | None) -> str:
    policy = policy or "error"
    if policy not in UNKNOWN_POLICIES:
        raise DataError(f"data.unknown={policy!r}: use one of {list(UNKNOWN_POLICIES)}.")
    return policy


def known_labels(
    ids: Sequence[str], names: Sequence[str], classes: Sequence[str], policy: str, where: str
) -> tuple[list[int | None], str | None]:
    """Class index per image; names outside ``classes`` follow ``policy`` (``data.unknown``):
    ``error`` stops naming the image, ``exclude`` gives ``None`` (left out), ``reject``
    ``len(classes)`` (test-only, scored as a rejected class). Returns the indices and a note."""
    index = {c: k for k, c in enumerate(classes)}
    out: list[int | None] = []
    unknown: list[str] = []
    for image_id, name in zip(ids, names, strict=True):
        if name in index:
            out.append(index[name])
            continue
        if policy == "error":
            raise DataError(
                f"{where}: image {image_id} has label {name!r}, not in data.classes="
                f"{list(classes)}. Add it to data.classes, remove that row, or set "
                "data.unknown=exclude (leave such images out) or reject (score them as a "
                "rejected class)."
            )
        unknown.append(name)
        out.append(None if policy == "exclude" else len(classes))
    note = None
    if unknown:
        what = "left out" if policy == "exclude" else "kept for testing as a rejected class"
        note = (
            f"{where}: {len(unknown)} image(s) of class(es) {sorted(set(unknown))} outside "
            f"{list(classes)}, {what} (data.unknown={policy})"
        )
    return out, note
