"""data=combined: several sources as one dataset — class mapping onto a shared list, seeded
caps, the source of each record, label × source stratified splits, files listed twice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from medcls.data.records import Record
from medcls.data.sources import load_source
from medcls.data.sources.combined import cap_records
from medcls.data.splits import make_splits, strata
from medcls.errors import DataError

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
    files = {str(p) for p in roots["a"].rglob("*.jpg")}
    assert sorted(r.path for r in src.records) == sorted(files)  # each file once, not twice
    assert {r.source for r in src.records} == {"v1"}  # the first source's copy is kept
    assert any("more than one source" in n for n in src.notes)
    assert any(f"{len(files)} image(s) of source 'v2' are copies" in n for n in src.notes)
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


# -- one lesion, one group across sources (HAM10000 is part of ISIC 2019) ----------------------
HAM_CLASSES = ["bkl", "mel", "nv"]
ISIC2019_COLUMNS = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


@pytest.fixture(scope="module")
def ham(tmp_path_factory, helpers) -> Path:
    """30 lesions of 2 images each."""
    return helpers.make_ham10000(
        tmp_path_factory.mktemp("ham") / "ham10000", HAM_CLASSES, lesions_per_class=10
    )


def ham_rows(ham: Path):
    import pandas as pd

    return pd.read_csv(ham / "HAM10000_metadata.csv")


def isic2019_copy(ham: Path, dst: Path, *, rename: bool, metadata: bool, relabel=None) -> dict:
    """An ISIC-2019-layout copy (``GroundTruth.csv`` one-hot over ISIC 2019's columns,
    ``images/``, optional metadata CSV with ``lesion_id``) of one image of every lesion; with
    ``rename`` the copies get new ids. Returns copy path → HAM lesion id."""
    import shutil

    rows = ham_rows(ham).groupby("lesion_id").head(1)
    (dst / "images").mkdir(parents=True, exist_ok=True)
    truth, meta, lesion_of = [",".join(["image", *ISIC2019_COLUMNS])], ["image,lesion_id"], {}
    for k, r in enumerate(rows.itertuples()):
        new_id = f"COPY_{k:04d}" if rename else r.image_id
        dx = (relabel or {}).get(r.image_id, r.dx)
        path = dst / "images" / f"{new_id}.jpg"
        shutil.copy(ham / "images" / f"{r.image_id}.jpg", path)
        lesion_of[str(path)] = r.lesion_id
        truth.append(
            ",".join([new_id, *("1.0" if c == dx.upper() else "0.0" for c in ISIC2019_COLUMNS)])
        )
        meta.append(f"{new_id},{r.lesion_id}")
    (dst / "GroundTruth.csv").write_text("\n".join(truth) + "\n")
    if metadata:
        (dst / "Metadata.csv").write_text("\n".join(meta) + "\n")
    return lesion_of


def ham_plus_isic(helpers, ham: Path, isic: Path, *extra: str):
    meta = "metadata_csv: Metadata.csv, " if (isic / "Metadata.csv").is_file() else ""
    return load_source(
        helpers.compose_cfg(
            [
                "data=combined",
                f"data.classes=[{','.join(HAM_CLASSES)}]",
                f"data.sources=[{{name: ham10000, source: ham10000, root: '{ham}', "
                "metadata_csv: HAM10000_metadata.csv, images_dir: images, masks_dir: null, "
                "image_ext: .jpg, mask_suffix: _segmentation.png, image_column: image_id, "
                "label_column: dx, group_column: lesion_id}, "
                f"{{name: isic2019, source: isic_csv, root: '{isic}', csv: GroundTruth.csv, "
                f"images_dir: images, {meta}image_ext: .jpg, image_column: image, "
                "ignore_columns: [], drop_empty_classes: true, group_column: lesion_id, "
                "test_csv: null, test_images_dir: images}]",
                *extra,
            ]
        ).data
    )


def lesions_crossing(src, lesion_of: dict, seeds=range(4), **split) -> list[str]:
    """HAM lesions whose images (originals and copies) land in two partitions, any seed."""
    crossing = []
    for seed in seeds:
        parts = make_splits(src.records, src.class_names, seed=seed, **split)
        where: dict[str, str] = {}
        for name, idx in parts.items():
            for i in idx:
                lesion = lesion_of[src.records[i].path]
                if where.setdefault(lesion, name) != name:
                    crossing.append(lesion)
    return crossing


def ham_lesions(ham: Path) -> dict:
    return {
        str(ham / "images" / f"{r.image_id}.jpg"): r.lesion_id for r in ham_rows(ham).itertuples()
    }


@pytest.mark.parametrize("metadata", [True, False])
def test_ham10000_and_its_isic2019_copy_keep_each_lesion_in_one_partition(
    helpers, ham, tmp_path, metadata
) -> None:
    """Joined by image id (and lesion id where the ISIC metadata gives it): the HAM image that
    was not copied goes with its lesion too. ``data.dedupe=paths`` (the old behaviour) is the
    negative control: it lets lesions cross."""
    lesion_of = ham_lesions(ham) | isic2019_copy(ham, tmp_path, rename=False, metadata=metadata)
    src = ham_plus_isic(helpers, ham, tmp_path)
    # the 30 copies are the same images as 30 HAM records: one record each (HAM's, listed first)
    assert Counter(r.source for r in src.records) == {"ham10000": 60}
    assert any("30 image(s) or lesion(s) appear in more than one source" in n for n in src.notes)
    for split in ({}, {"fold": 1, "num_folds": 3}):
        assert not lesions_crossing(src, lesion_of, **split)
    leaky = ham_plus_isic(helpers, ham, tmp_path, "data.dedupe=paths")
    assert Counter(r.source for r in leaky.records) == {"ham10000": 60, "isic2019": 30}
    assert lesions_crossing(leaky, lesion_of)


def test_renamed_copies_are_joined_by_their_pixels(helpers, ham, tmp_path) -> None:
    lesion_of = ham_lesions(ham) | isic2019_copy(ham, tmp_path, rename=True, metadata=False)
    assert lesions_crossing(ham_plus_isic(helpers, ham, tmp_path), lesion_of)  # ids cannot see it
    src = ham_plus_isic(helpers, ham, tmp_path, "data.dedupe=pixels")
    assert not lesions_crossing(src, lesion_of)
    assert Counter(r.source for r in src.records) == {"ham10000": 60}  # renamed copies dropped


def test_every_image_is_one_record_in_one_partition(helpers, ham, tmp_path) -> None:
    """HAM10000 + an ISIC 2019 copy of one image per lesion and 3 ISIC-only images: the
    records are the union of the two sources' image ids, each once, and no partition (holdout or
    a fold's) holds an image twice."""
    import shutil

    isic2019_copy(ham, tmp_path, rename=False, metadata=False)
    truth = (tmp_path / "GroundTruth.csv").read_text().splitlines()
    for k in range(3):  # images only ISIC has
        shutil.copy(next((ham / "images").glob("*.jpg")), tmp_path / "images" / f"ONLY_{k}.jpg")
        truth.append(
            ",".join([f"ONLY_{k}", *("1.0" if c == "NV" else "0.0" for c in ISIC2019_COLUMNS)])
        )
    (tmp_path / "GroundTruth.csv").write_text("\n".join(truth) + "\n")
    ham_ids = set(ham_rows(ham)["image_id"])
    isic_ids = {line.split(",")[0] for line in truth[1:]}
    src = ham_plus_isic(helpers, ham, tmp_path)
    ids = [r.image_id for r in src.records]
    assert len(ids) == len(ham_ids | isic_ids) == len(ham_ids) + 3
    assert set(ids) == ham_ids | isic_ids
    assert {r.image_id for r in src.records if r.source == "isic2019"} == isic_ids - ham_ids
    for split in ({}, {"fold": 0, "num_folds": 3}):
        parts = make_splits(src.records, src.class_names, seed=0, **split)
        seen = [src.records[i].image_id for idx in parts.values() for i in idx]
        assert len(seen) == len(set(seen)) == len(ids)


def test_one_image_with_two_labels_across_sources_names_both(helpers, ham, tmp_path) -> None:
    first = ham_rows(ham).iloc[0]
    other = next(c for c in HAM_CLASSES if c != first.dx)
    isic2019_copy(ham, tmp_path, rename=False, metadata=False, relabel={first.image_id: other})
    with pytest.raises(DataError) as e:
        ham_plus_isic(helpers, ham, tmp_path)
    msg = str(e.value)
    assert f"image {first.image_id} is {first.dx!r} in source 'ham10000'" in msg
    assert f"{other!r} in source 'isic2019'" in msg and "data.dedupe=paths" in msg


def test_unknown_dedupe_is_a_data_error(helpers, ham, tmp_path) -> None:
    isic2019_copy(ham, tmp_path, rename=False, metadata=False)
    with pytest.raises(DataError, match=r"data.dedupe='pixel': use one of \['ids', 'pixels'"):
        ham_plus_isic(helpers, ham, tmp_path, "data.dedupe=pixel")
