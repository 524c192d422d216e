"""Audit building blocks: pixel hashing (decoded pixels, not file bytes), scanning unreadable
and missing files, and the findings table with its exclusion decisions."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from medcls.data.audit import (
    CONFLICT,
    DUPLICATE,
    LEAK,
    UNREADABLE,
    find_issues,
    pixel_digest,
    scan_images,
    summarize,
)
from medcls.data.records import Record


def test_digest_is_of_pixels_and_shape() -> None:
    a = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    assert pixel_digest(a) == pixel_digest(a.copy())
    assert pixel_digest(a) != pixel_digest(a.reshape(4, 2, 3))  # same bytes, other shape
    b = a.copy()
    b[0, 0, 0] += 1
    assert pixel_digest(a) != pixel_digest(b)


def test_scan_finds_lossless_copies_and_bad_files(tmp_path: Path, image_file) -> None:
    png = image_file(tmp_path / "a.png", seed=1)
    shutil.copy(png, tmp_path / "copy.png")
    Image.open(png).save(tmp_path / "resaved.bmp")  # other bytes, same pixels
    other = image_file(tmp_path / "b.png", seed=2)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    paths = [png, str(tmp_path / "copy.png"), str(tmp_path / "resaved.bmp"), other]
    paths += [str(tmp_path / "bad.jpg"), str(tmp_path / "gone.png")]
    scans = scan_images(paths, workers=2)
    digests = [d for d, _ in scans]
    assert digests[0] == digests[1] == digests[2] != digests[3]
    assert (tmp_path / "resaved.bmp").read_bytes() != Path(png).read_bytes()
    assert digests[4] is None and "cannot decode" in scans[4][1]
    assert digests[5] is None and "file not found" in scans[5][1]
    assert all(e is None for _, e in scans[:4])


def rec(path: str, label: int) -> Record:
    return Record(path=path, label=label)


def test_findings_and_what_to_exclude() -> None:
    records = [
        rec("/d/a/1.png", 0),  # 0  duplicate set X, train: a copy
        rec("/d/a/2.png", 0),  # 1  X, val: kept (val before train)
        rec("/d/b/3.png", 1),  # 2  set Y (labels a, b): conflicting
        rec("/d/a/4.png", 0),  # 3  Y
        rec("/d/a/5.png", 0),  # 4  unreadable
        rec("/d/b/6.png", 1),  # 5  set Z: train (a copy) and test (kept: sorts last, but test)
        rec("/t/b/6.png", 1),  # 6  Z
        rec("/d/b/7.png", 1),  # 7  unique
    ]
    scans = [("X", None), ("X", None), ("Y", None), ("Y", None), (None, "broken")]
    scans += [("Z", None), ("Z", None), ("U", None)]
    parts = ["train", "val", "train", "train", None, "train", "test", "test"]
    issues = find_issues(records, ["a", "b"], scans, parts)

    def rows(issue: str) -> dict[str, bool]:
        sel = issues[issues["issue"] == issue]
        return dict(zip(sel["path"], sel["exclude"], strict=True))

    assert rows(UNREADABLE) == {"/d/a/5.png": True}
    assert rows(DUPLICATE) == {
        "/d/a/1.png": True,
        "/d/a/2.png": False,
        "/d/b/6.png": True,
        "/t/b/6.png": False,
    }
    assert rows(CONFLICT) == {"/d/a/4.png": True, "/d/b/3.png": True}
    # X spans train and val (the val copy stays: 2.png), Z train and test (the test copy stays)
    assert rows(LEAK) == {
        "/d/a/1.png": True,
        "/d/a/2.png": False,
        "/d/b/6.png": True,
        "/t/b/6.png": False,
    }
    leak = issues[(issues["issue"] == LEAK) & (issues["path"] == "/d/b/6.png")].iloc[0]
    assert leak["detail"] == "same image in test and train" and leak["partition"] == "train"
    conflict = issues[issues["issue"] == CONFLICT].iloc[0]
    assert conflict["detail"] == "2 copies labelled a, b" and conflict["copies"] == 2
    assert "/d/b/7.png" not in set(issues["path"])

    summary = summarize(issues).set_index("issue")
    assert summary.loc[DUPLICATE].to_dict() == {"images": 4, "sets": 2, "excluded": 2}
    assert summary.loc[CONFLICT].to_dict() == {"images": 2, "sets": 1, "excluded": 2}
    assert summary.loc[UNREADABLE].to_dict() == {"images": 1, "sets": 0, "excluded": 1}


def test_no_partitions_no_leak_check_and_clean_data() -> None:
    records = [rec("/b.png", 0), rec("/a.png", 0)]
    assert find_issues(records, ["a"], [("X", None), ("Y", None)]).empty
    dup = find_issues(records, ["a"], [("X", None), ("X", None)])
    assert set(dup["issue"]) == {DUPLICATE}  # without partitions the first path stays
    assert dict(zip(dup["path"], dup["exclude"], strict=True)) == {"/a.png": False, "/b.png": True}
