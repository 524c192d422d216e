"""Matching a dataset's class names to a checkpoint's."""

from __future__ import annotations

import pytest

from medcls.data.class_map import match_classes
from medcls.errors import DataError

MODEL = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def test_exact_names() -> None:
    assert match_classes(["nv", "mel"], MODEL) == [5, 4]


def test_case_insensitive() -> None:
    assert match_classes(["MEL", "Nv", "BCC"], MODEL) == [4, 5, 1]


def test_exact_name_wins_over_case_insensitive() -> None:
    assert match_classes(["A", "a"], ["a", "A"]) == [1, 0]


def test_explicit_map_wins() -> None:
    mapping = {"melanoma": "mel", "NV": "bkl", "SCC": "AKIEC"}
    assert match_classes(["melanoma", "NV", "SCC"], MODEL, mapping) == [4, 2, 0]


def test_unmapped_class_is_an_error_naming_it_and_the_fix() -> None:
    with pytest.raises(DataError) as e:
        match_classes(["MEL", "UNK", "SCC"], MODEL, {"SCC": "akiec"})
    msg = str(e.value)
    assert "dataset class(es) ['UNK']" in msg
    assert "'mel'" in msg and "class_map.UNK=<model class>" in msg


def test_map_to_a_missing_model_class_is_an_error() -> None:
    with pytest.raises(DataError, match=r"\['melanoma'\] match none"):
        match_classes(["melanoma"], MODEL, {"melanoma": "melanocytic"})
