"""sources/joins.py: copies of one image across sources become one record (issue 29, item 3),
while lesion links still merge groups as before."""

from __future__ import annotations

from collections import Counter

import pytest

from medcls.data.records import Record
from medcls.data.sources.joins import join_across_sources
from medcls.errors import DataError

CLASSES = ["bkl", "mel", "nv"]


def rec(source: str, image_id: str, label: int, group: str | None = None, **kw) -> Record:
    return Record(f"/{source}/images/{image_id}.jpg", label, group, source=source, **kw)


def two_sources() -> tuple[list[Record], list[Record]]:
    """``ham``: 4 images of 3 lesions; ``isic``: copies of two of them (one under another lesion
    id that it shares with an ISIC-only image), and two ISIC-only images."""
    ham = [
        rec("ham", "ISIC_1", 2, "HAM_A"),
        rec("ham", "ISIC_2", 2, "HAM_A"),
        rec("ham", "ISIC_3", 1, "HAM_B", meta=(("sex", "male"),)),
        rec("ham", "ISIC_4", 0, "HAM_C"),
    ]
    isic = [
        rec("isic", "ISIC_1", 2, "HAM_A"),
        rec("isic", "ISIC_3", 1, "IL_9", split="test", meta=(("site", "back"), ("sex", "female"))),
        rec("isic", "ISIC_8", 1, "IL_9"),  # same lesion as ISIC_3, known only to ISIC
        rec("isic", "ISIC_9", 0),
    ]
    return ham, isic


def test_one_record_per_image_the_first_sources_copy() -> None:
    ham, isic = two_sources()
    out, notes = join_across_sources(ham + isic, CLASSES)
    ids = [r.image_id for r in out]
    union = {r.image_id for r in ham} | {r.image_id for r in isic}  # recomputed from the inputs
    assert len(ids) == len(set(ids)) == len(union) == 6
    assert set(ids) == union
    shared = {r.image_id for r in ham} & {r.image_id for r in isic}
    assert all(r.source == "ham" for r in out if r.image_id in shared)
    order = [r.path for r in ham + isic]
    assert [r.path for r in out] == sorted((r.path for r in out), key=order.index)  # input order
    assert any(
        "2 image(s) of source 'isic' are copies of images of source 'ham'" in n for n in notes
    )


def test_a_dropped_copy_still_links_lesions() -> None:
    """ISIC's copy of ISIC_3 names lesion IL_9, which ISIC_8 shares: dropping the copy must not
    drop the link, so ISIC_3 (kept from ham) and ISIC_8 stay in one group."""
    ham, isic = two_sources()
    out, _ = join_across_sources(ham + isic, CLASSES)
    group = {r.image_id: r.group for r in out}
    assert group["ISIC_3"] == group["ISIC_8"] == "ham:HAM_B"
    assert group["ISIC_1"] == group["ISIC_2"] == "ham:HAM_A"
    assert len({group["ISIC_1"], group["ISIC_3"], group["ISIC_4"]}) == 3
    assert group["ISIC_9"] is None  # no group of its own and no copy: ungrouped, as before


def test_the_kept_record_keeps_what_only_the_copy_knew() -> None:
    """Metadata columns the kept record lacks come from the copy (its own values win), and an
    official ``test`` listing anywhere keeps the image out of training."""
    ham, isic = two_sources()
    out, _ = join_across_sources(ham + isic, CLASSES)
    kept = next(r for r in out if r.image_id == "ISIC_3")
    assert kept.attributes == {"sex": "male", "site": "back"}
    assert kept.split == "test" and kept.label == 1


def test_an_unlabelled_first_copy_gives_way_to_a_labelled_one() -> None:
    a = [rec("a", "x", -1), rec("a", "y", 0)]
    b = [rec("b", "x", 1)]
    out, _ = join_across_sources(a + b, CLASSES)
    assert [(r.source, r.image_id, r.label) for r in out] == [("a", "y", 0), ("b", "x", 1)]


def test_images_of_one_source_are_never_dropped() -> None:
    """Two files of one source that share a stem (train and test roots) are the reader's own
    distinct images: grouped, as before, but both kept."""
    one = [
        Record("/s/train/nv/1.jpg", 2, source="s"),
        Record("/s/test/nv/1.jpg", 2, source="s"),
    ]
    out, notes = join_across_sources(one, CLASSES)
    assert Counter(r.path for r in out) == Counter(r.path for r in one)
    assert out[0].group == out[1].group is not None
    assert not any("copies" in n for n in notes)


def test_paths_mode_drops_only_the_same_file() -> None:
    ham, isic = two_sources()
    isic = [*isic, Record(ham[3].path, 0, source="isic")]  # the very same file, listed again
    out, notes = join_across_sources(ham + isic, CLASSES, dedupe="paths")
    assert len(out) == len(ham) + len(isic) - 1
    assert Counter(r.path for r in out)[ham[3].path] == 1
    assert any("1 image(s) of source 'isic' are copies" in n for n in notes)


def test_copies_with_two_labels_still_stop_the_run() -> None:
    ham, isic = two_sources()
    isic[0] = rec("isic", "ISIC_1", 1, "HAM_A")
    with pytest.raises(DataError, match=r"image ISIC_1 is 'nv' in source 'ham'.*'mel' in source"):
        join_across_sources(ham + isic, CLASSES)
