"""data=combined: several sources as one dataset — class mapping onto a shared list, seeded
caps, the source of each record, label × source stratified splits, files listed twice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from medcls.data.records import DataError, Record
from medcls.data.sources import load_source
from medcls.data.sources.combined import cap_records
from medcls.data.splits import make_splits, strata

SHARED = ["normal", "glaucoma"]


@pytest.fixture(scope="module")
def roots(tmp_path_factory, helpers) -> dict[str, Path]:
    """Source ``a``: NRG 30 / RG 6 (AIROGS-style names); source ``b``: healthy 10 / Glaucoma 10."""
    base = tmp_path_factory.mktemp("combined")
    rng = np.random.default_rng(0)
    layout = {"a": [("NRG", 30), ("RG", 6)], "b": [("healthy", 10), ("Glaucoma", 10)]}
    for src, classes in layout.items():
        for label, (c, n) in enumerate(classes):
            for i in range(n):
                helpers.write_image(base / src / c / f"{src}_{c}_{i:03d}.jpg", rng, label)
    return {k: base / k for k in layout}


def combined(helpers, roots, *extra: str):
    """``cfg.data`` for the documented command line: two imagefolder presets, A mapped and
    capped at 12 per class, B mapped by one explicit entry + a case-insensitive name match."""
    return helpers.compose_cfg(
        [
            "data=combined",
            f"data.classes=[{','.join(SHARED)}]",
            "+data@data.sources.a=imagefolder",
            f"data.sources.a.root={roots['a']}",
            "+data.sources.a.class_map={NRG: normal, RG: glaucoma}",
            "+data.sources.a.max_per_class=12",
            "+data@data.sources.b=imagefolder",
            f"data.sources.b.root={roots['b']}",
            "+data.sources.b.class_map={healthy: normal}",
            *extra,
        ]
    ).data


def folder_class(r: Record) -> str:
    return Path(r.path).parent.name


def test_mapping_caps_and_source(helpers, roots) -> None:
    src = load_source(combined(helpers, roots))
    assert src.class_names == SHARED
    counts = Counter((r.source, src.class_names[r.label]) for r in src.records)
    assert counts == {
        ("a", "normal"): 12,  # capped from 30
        ("a", "glaucoma"): 6,  # under the cap: all kept
        ("b", "normal"): 10,
        ("b", "glaucoma"): 10,
    }
    expected = {"NRG": "normal", "RG": "glaucoma", "healthy": "normal", "Glaucoma": "glaucoma"}
    for r in src.records:
        assert src.class_names[r.label] == expected[folder_class(r)]
        assert Path(r.path).parts[-3] == r.source  # the folder it came from
    assert any("capped to 18 of 36" in n for n in src.notes)


def test_caps_are_seeded(helpers, roots) -> None:
    def picked(*extra: str) -> set[str]:
        src = load_source(combined(helpers, roots, *extra))
        return {r.path for r in src.records if r.source == "a"}

    assert picked() == picked()
    assert picked() != picked("data.split_seed=7")
    # data.max_per_class is the default; a source's own value (null: no cap) wins
    src = load_source(combined(helpers, roots, "data.max_per_class=3"))
    assert Counter(r.source for r in src.records) == {"a": 12 + 6, "b": 3 + 3}
    src = load_source(
        combined(helpers, roots, "data.sources.a.max_per_class=null", "data.max_per_class=3")
    )
    assert Counter(r.source for r in src.records) == {"a": 30 + 6, "b": 3 + 3}


def test_total_cap_keeps_class_proportions() -> None:
    records = [Record(f"{i}.png", 0 if i < 90 else 1) for i in range(100)]
    kept = cap_records(records, None, 20, seed=0)
    assert Counter(r.label for r in kept) == {0: 18, 1: 2}
    assert [r.path for r in kept] == sorted((r.path for r in kept), key=lambda p: int(p[:-4]))
    assert Counter(r.label for r in cap_records(records, None, 5, seed=0)) == {0: 4, 1: 1}


def test_list_form_and_default_classes(helpers, roots) -> None:
    cfg = helpers.compose_cfg(
        [
            "data=combined",
            f"data.sources=[{{name: x, source: imagefolder, root: '{roots['b']}'}}, "
            f"{{name: y, source: imagefolder, root: '{roots['a']}', max_images: 9}}]",
        ]
    ).data
    src = load_source(cfg)
    assert src.class_names == ["Glaucoma", "NRG", "RG", "healthy"]  # sorted union, unmapped
    assert Counter(r.source for r in src.records) == {"x": 20, "y": 9}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["~data.sources.b.class_map"],
            r"class 'healthy' of source 'b' matches none.*class_map\.healthy=",
        ),
        (["+data.sources.b.class_map.suspect=normal"], r"b\.class_map names \['suspect'\]"),
        (["data.sources.a.max_per_class=0"], r"max_per_class=0: give a positive number"),
        (
            ["data.sources.a.max_per_class=abc"],
            r"data\.sources\.a\.max_per_class=abc: give a positive number.*or null for no cap",
        ),
        (["+data.sources.b.max_images=2.5"], r"data\.sources\.b\.max_images=2\.5: give a positive"),
        (["data.max_per_class=many"], r"^data\.max_per_class=many: give a positive number"),
        (["data.sources.a.source=null"], r"data\.sources\.a has no reader"),
        (["data.sources.a.root=/nonexistent/a"], r"/nonexistent/a"),
    ],
)
def test_bad_input_names_source_and_fix(helpers, roots, extra, message) -> None:
    with pytest.raises(DataError, match=message):
        load_source(combined(helpers, roots, *extra))


def test_no_sources_is_a_clear_error(helpers) -> None:
    with pytest.raises(DataError, match=r"needs at least one entry in data\.sources"):
        load_source(helpers.compose_cfg(["data=combined"]).data)


def test_a_class_mapped_to_null_is_left_out(helpers, roots) -> None:
    src = load_source(combined(helpers, roots, "data.sources.a.class_map.RG=null"))
    assert not any(folder_class(r) == "RG" for r in src.records)
    assert Counter(r.source for r in src.records) == {"a": 12, "b": 20}


def test_the_same_files_in_two_sources_never_cross_partitions(helpers, roots) -> None:
    """A second view of one dataset (the real-data smoke test does this with AIROGS)."""
    view = f"source: imagefolder, root: '{roots['a']}', class_map: {{NRG: normal, RG: glaucoma}}"
    src = load_source(
        helpers.compose_cfg(
            ["data=combined", f"data.sources=[{{name: v1, {view}}}, {{name: v2, {view}}}]"]
        ).data
    )
    paths = Counter(r.path for r in src.records)
    assert max(paths.values()) == 2 and any("more than one source" in n for n in src.notes)
    parts = make_splits(src.records, src.class_names, val_fraction=0.25, test_fraction=0.25, seed=0)
    where = {}
    for name, idx in parts.items():
        for i in idx:
            assert where.setdefault(src.records[i].path, name) == name, src.records[i].path


def test_strata_are_label_by_source() -> None:
    one = [Record("a.png", 1, source="x"), Record("b.png", 0, source="x")]
    assert strata(one).tolist() == [1, 0]  # one source: the labels (splits unchanged)
    two = [Record(f"{i}.png", i % 2, source="xy"[i // 2]) for i in range(4)]
    assert len(set(strata(two).tolist())) == 4


def test_splits_keep_each_source_class_in_proportion() -> None:
    """Source x is mostly class 0, source y mostly class 1: every partition gets each
    (source, class) cell in proportion, not just each class."""
    cells = {("x", 0): 60, ("x", 1): 12, ("y", 0): 12, ("y", 1): 60}
    records = [
        Record(f"/{s}/{c}/{i}.png", c, source=s) for (s, c), n in cells.items() for i in range(n)
    ]
    for seed in range(3):
        parts = make_splits(records, ["0", "1"], val_fraction=0.25, test_fraction=0.25, seed=seed)
        for name, share in (("test", 0.25), ("val", 0.25 * 0.75)):
            got = Counter((records[i].source, records[i].label) for i in parts[name])
            for cell, n in cells.items():
                assert abs(got[cell] - n * share) <= 1.5, (seed, name, cell, got)
