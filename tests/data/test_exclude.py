"""``data.exclude=<csv>``: every source leaves the listed images out in the records stage,
the count is reported, and a bad list is a clear error."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from medcls.data.datamodule import ClassificationDataModule
from medcls.data.sources import load_source
from medcls.errors import DataError

# each on-disk layout of the session's tiny datasets (tests/conftest.py), as its source reads it
LAYOUTS = {
    "imagefolder": lambda d: {"root": str(d["imagefolder"])},
    "ham10000": lambda d: {"root": str(d["ham10000"]), "classes": ["bkl", "mel", "nv"]},
    "isic_csv": lambda d: {
        "root": str(d["isic_csv"]),
        "csv": "GroundTruth.csv",
        "images_dir": "images",
        "classes": ["MEL", "NV", "BCC"],
    },
    "covid_ct": lambda d: {"root": str(d["covid_ct"]), "use_official_split": True},
    "synthetic": lambda d: {"num_samples": 60, "native_size": 32},
}


def write_list(path: Path, paths: list[str], **columns) -> str:
    pd.DataFrame({"path": paths, **columns}).to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_source_honours_the_list(layout, data_cfg, datasets, tmp_path, caplog) -> None:
    cfg = data_cfg(layout, **LAYOUTS[layout](datasets))
    full = load_source(cfg)
    dropped = [full.records[0].path, full.records[-1].path]
    cfg.exclude = write_list(tmp_path / "exclude.csv", dropped)
    with caplog.at_level(logging.INFO, logger="medcls.data.sources.exclude"):
        src = load_source(cfg)
    assert len(src.records) == len(full.records) - 2
    assert not {r.path for r in src.records} & set(dropped)
    assert src.class_names == full.class_names
    note = f"2 of {len(full.records)} record(s) excluded"
    assert any(note in n for n in src.notes) and note in caplog.text


def test_audit_report_rows_marked_false_stay(data_cfg, folder_dataset, tmp_path) -> None:
    cfg = data_cfg("imagefolder", root=str(folder_dataset))
    paths = [r.path for r in load_source(cfg).records[:3]]
    cfg.exclude = write_list(
        tmp_path / "audit.csv", paths, exclude=["True", "False", "true"], issue=["duplicate"] * 3
    )
    kept = {r.path for r in load_source(cfg).records}
    assert paths[1] in kept and paths[0] not in kept and paths[2] not in kept


def test_relative_paths_and_paths_of_another_dataset(
    data_cfg, folder_dataset, tmp_path, monkeypatch
) -> None:
    cfg = data_cfg("imagefolder", root=str(folder_dataset))
    first = load_source(cfg).records[0].path
    monkeypatch.chdir(folder_dataset.parent)
    relative = str(Path(first).relative_to(folder_dataset.parent))
    cfg.exclude = write_list(tmp_path / "x.csv", [relative, "/elsewhere/a/img.jpg"])
    src = load_source(cfg)
    assert first not in {r.path for r in src.records}
    assert any("1 listed path(s) are not in this dataset" in n for n in src.notes)


def test_a_list_that_matches_nothing_is_an_error(
    data_cfg, folder_dataset, tmp_path, monkeypatch
) -> None:
    """Relative paths written in another directory (an audit run elsewhere) name files that
    are not these: nothing would be excluded, so say why instead."""
    cfg = data_cfg("imagefolder", root=str(folder_dataset))
    first = load_source(cfg).records[0].path
    relative = str(Path(first).relative_to(folder_dataset.parent))
    cfg.exclude = write_list(tmp_path / "x.csv", [relative])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not where the relative paths were written
    with pytest.raises(DataError) as err:
        load_source(cfg)
    message = str(err.value)
    for part in (f"data.exclude={tmp_path / 'x.csv'}", str(elsewhere / relative), "medcls-audit"):
        assert part in message, part
    assert str(folder_dataset) in message  # one of the dataset's own paths
    monkeypatch.chdir(folder_dataset.parent)  # where they were written: a plain exclusion
    assert first not in {r.path for r in load_source(cfg).records}


def test_a_list_with_no_rows_marked_is_no_error(data_cfg, folder_dataset, tmp_path) -> None:
    cfg = data_cfg("imagefolder", root=str(folder_dataset))
    n = len(load_source(cfg).records)
    cfg.exclude = write_list(tmp_path / "x.csv", ["/elsewhere/a.jpg"], exclude=["False"])
    assert len(load_source(cfg).records) == n


def test_datamodule_trains_without_the_excluded(data_cfg, folder_dataset, tmp_path) -> None:
    cfg = data_cfg("imagefolder", root=str(folder_dataset), cache="memory", test_fraction=0.0)
    dropped = sorted(str(p) for p in (folder_dataset / "a").glob("*.jpg"))[:2]
    cfg.exclude = write_list(tmp_path / "x.csv", dropped)
    dm = ClassificationDataModule(cfg)
    dm.setup()
    assert len(dm.records) == 16 and not {r.path for r in dm.records} & set(dropped)
    assert sum(len(dm.partitions[k]) for k in ("train", "val", "test")) == 16
    assert any("2 of 18 record(s) excluded" in n for n in dm.notes)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        ("image,label\nx.jpg,a\n", "has no `path` column"),
    ],
)
def test_bad_lists_are_clear_errors(data_cfg, folder_dataset, tmp_path, content, message) -> None:
    path = tmp_path / "exclude.csv"
    if content is not None:
        path.write_text(content)
    cfg = data_cfg("imagefolder", root=str(folder_dataset), exclude=str(path))
    with pytest.raises(DataError, match=message) as err:
        load_source(cfg)
    assert str(path) in str(err.value)


def test_excluding_a_whole_class_is_refused(data_cfg, folder_dataset, tmp_path) -> None:
    cfg = data_cfg("imagefolder", root=str(folder_dataset))
    every_c = [str(p) for p in (folder_dataset / "c").glob("*.jpg")]
    cfg.exclude = write_list(tmp_path / "x.csv", every_c)
    with pytest.raises(DataError, match=r"\['c'\] have no images .*data.exclude"):
        load_source(cfg)
