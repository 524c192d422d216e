"""ClassificationDataModule: source → decode cache → splits → datasets and loaders."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import medcls.data.cache as cache_mod
from medcls.data.datamodule import ClassificationDataModule
from medcls.data.splits import group_ids
from medcls.errors import DataError


def build(cfg, cache_dir, **kw) -> ClassificationDataModule:
    dm = ClassificationDataModule(cfg, cache_dir=str(cache_dir), **kw)
    dm.setup("fit")
    return dm


@pytest.fixture
def folder_dm(data_cfg, folder_dataset, tmp_path) -> ClassificationDataModule:
    cfg = data_cfg("imagefolder", root=str(folder_dataset), image_size=16, batch_size=4)
    return build(cfg, tmp_path / "cache")


def test_partitions_cover_the_dataset_once(folder_dm) -> None:
    p = folder_dm.partitions
    together = np.concatenate([p["train"], p["val"], p["test"]])
    assert sorted(together.tolist()) == list(range(18)) == p["all"].tolist()
    for name in ("val", "test"):
        assert sorted({folder_dm.records[i].label for i in p[name]}) == [0, 1, 2]


def test_facts(folder_dm) -> None:
    dm = folder_dm
    assert dm.num_classes == 3 and dm.class_names == ["a", "b", "c"]
    assert dm.source_name == "imagefolder" and dm.skipped == [] and dm.notes == []
    train_labels = [r.label for r in dm.records_of("train")]
    assert dm.class_counts.tolist() == np.bincount(train_labels, minlength=3).tolist()
    assert dm.class_counts.sum() == len(dm.partitions["train"])
    mean, std = dm.mean_std()
    assert len(mean) == len(std) == 3
    assert all(0 < m < 1 for m in mean) and all(0 < s < 0.5 for s in std)
    # class k is brighter (60 + 40k): the train mean lies between the darkest and brightest
    assert 60 / 255 < mean[0] < 140 / 255


def test_loaders_yield_uint8_batches_with_labels(folder_dm) -> None:
    dm = folder_dm
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape[1:] == (3, 16, 16)
    for j, y in zip(batch["index"].tolist(), batch["label"].tolist(), strict=True):
        assert dm.records[j].label == y and j in dm.partitions["val"]
    train = list(dm.train_dataloader())
    assert all(len(b["label"]) == 4 for b in train)  # drop_last keeps batch norm happy
    seen = [j for b in dm.test_dataloader() for j in b["index"].tolist()]
    assert sorted(seen) == dm.partitions["test"].tolist()


def test_setup_is_idempotent(folder_dm, monkeypatch) -> None:
    before = {k: v.copy() for k, v in folder_dm.partitions.items()}
    monkeypatch.setattr(cache_mod, "_decode_records", lambda *a: pytest.fail("decoded again"))
    folder_dm.setup("test")
    for k, v in before.items():
        np.testing.assert_array_equal(folder_dm.partitions[k], v)


def test_second_datamodule_uses_the_disk_cache(data_cfg, folder_dataset, tmp_path, monkeypatch):
    cfg = data_cfg("imagefolder", root=str(folder_dataset), image_size=16)
    first = build(cfg, tmp_path / "cache")
    assert len(os.listdir(tmp_path / "cache")) == 1
    monkeypatch.setattr(cache_mod, "_decode_records", lambda *a: pytest.fail("decoded again"))
    second = build(cfg, tmp_path / "cache")
    np.testing.assert_array_equal(np.asarray(second.decoded.images), first.decoded.images)
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(second.partitions[k], first.partitions[k])


def test_memory_cache_leaves_cache_dir_alone(data_cfg, folder_dataset, tmp_path) -> None:
    cfg = data_cfg("imagefolder", root=str(folder_dataset), image_size=16, cache="memory")
    build(cfg, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_k_fold_datamodules(data_cfg, image_folder, tmp_path) -> None:
    root = tmp_path / "imgs"
    image_folder(root, {"a": 10, "b": 10})
    parts = []
    for fold in range(3):
        cfg = data_cfg(
            "imagefolder", root=str(root), image_size=8, cache="memory", fold=fold, num_folds=3
        )
        parts.append(build(cfg, tmp_path / "cache").partitions)
    for p in parts[1:]:
        np.testing.assert_array_equal(p["test"], parts[0]["test"])
    vals = np.sort(np.concatenate([p["val"] for p in parts]))
    np.testing.assert_array_equal(vals, np.setdiff1d(np.arange(20), parts[0]["test"]))


def test_fold_out_of_range(data_cfg, folder_dataset, tmp_path) -> None:
    cfg = data_cfg("imagefolder", root=str(folder_dataset), image_size=8, fold=3, num_folds=3)
    with pytest.raises(DataError, match=r"data\.fold=3 is outside 0\.\.2"):
        build(cfg, tmp_path / "cache")


def test_synthetic_with_masks(data_cfg, tmp_path) -> None:
    cfg = data_cfg(
        "synthetic", num_samples=60, native_size=32, image_size=24, load_masks=True, batch_size=8
    )
    dm = build(cfg, tmp_path / "cache", train_ops=[{"HorizontalFlip": {"p": 0.5}}])
    assert dm.num_classes == 5 and dm.decoded.has_mask.all()
    batch = next(iter(dm.train_dataloader()))
    assert batch["mask"].shape == (8, 1, 24, 24) and batch["has_mask"].all()
    assert set(torch.unique(batch["mask"]).tolist()) <= {0, 255}
    groups = group_ids(dm.records)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not set(groups[dm.partitions[a]]) & set(groups[dm.partitions[b]])


def test_split_seed_comes_from_the_run_seed(train_cfg, tmp_path) -> None:
    def parts(seed):
        cfg = train_cfg("data=synthetic", f"seed={seed}", "data.num_samples=60")
        assert cfg.data.split_seed == seed
        return build(cfg.data, tmp_path / "cache").partitions  # memory cache: never decoded twice

    a, b, c = parts(1), parts(1), parts(2)
    np.testing.assert_array_equal(a["test"], b["test"])
    assert not np.array_equal(a["test"], c["test"])


def test_ham10000_groups_and_masks(data_cfg, image_file, tmp_path) -> None:
    root = tmp_path / "ham"
    rows = ["lesion_id,image_id,dx"]
    for i in range(60):
        dx = ("nv", "mel", "bkl")[i % 3]
        lesion = f"HAM_{i % 30:03d}"  # two images per lesion, same class
        rows.append(f"{lesion},I{i:03d},{dx}")
        image_file(root / "images" / f"I{i:03d}.jpg", value=100, seed=i)
        if i % 2 == 0:
            image_file(root / "masks" / f"I{i:03d}_segmentation.png", mode="L", value=255)
    (root / "HAM10000_metadata.csv").write_text("\n".join(rows) + "\n")
    cfg = data_cfg(
        "ham10000",
        root=str(root),
        classes=["bkl", "mel", "nv"],
        image_size=8,
        load_masks=True,
        cache="memory",
    )
    dm = build(cfg, tmp_path / "cache")
    assert dm.decoded.has_mask.tolist() == [i % 2 == 0 for i in range(60)]
    assert (dm.decoded.masks[dm.decoded.has_mask] == 255).all()
    assert (dm.decoded.masks[~dm.decoded.has_mask] == 0).all()
    lesion_of = {}
    for name in ("train", "val", "test"):
        for r in dm.records_of(name):
            assert lesion_of.setdefault(r.group, name) == name, f"{r.group} crosses partitions"


def test_covid_official_val_is_the_val_partition(data_cfg, image_folder, tmp_path) -> None:
    root = tmp_path / "covid"
    files = image_folder(root, {"CT_COVID": 10, "CT_NonCOVID": 10}, ext=".png")
    (root / "Data-split").mkdir()
    for c, names in files.items():
        base = [os.path.basename(p) for p in names]
        (root / "Data-split" / f"train{c}.txt").write_text("\n".join(base[:7]))
        (root / "Data-split" / f"val{c}.txt").write_text("\n".join(base[7:]))
    cfg = data_cfg("covid_ct", root=str(root), image_size=8, cache="memory", test_fraction=0.3)
    dm = build(cfg, tmp_path / "cache")
    assert {r.split for r in dm.records_of("val")} == {"val"}
    assert len(dm.partitions["val"]) == 6
    assert {r.split for r in dm.records_of("test")} == {"train"}
    assert len(dm.partitions["test"]) > 0


def test_test_partition_option(data_cfg, folder_dataset, tmp_path) -> None:
    cfg = data_cfg("imagefolder", root=str(folder_dataset), image_size=8, test_partition="val")
    dm = build(cfg, tmp_path / "cache")
    seen = sorted(j for b in dm.test_dataloader() for j in b["index"].tolist())
    assert seen == dm.partitions["val"].tolist()


def test_evaluating_all_images_of_a_set_too_small_to_split(data_cfg, image_folder, tmp_path):
    root = tmp_path / "small"
    image_folder(root, {"a": 3, "b": 3, "c": 3})
    cfg = data_cfg("imagefolder", root=str(root), image_size=8, cache="memory")
    with pytest.raises(DataError, match=r"cannot split 9 images into 5 stratified folds"):
        build(cfg, tmp_path / "cache")
    cfg = data_cfg("imagefolder", root=str(root), image_size=8, test_partition="all")
    dm = build(cfg, tmp_path / "cache")
    seen = sorted(j for b in dm.test_dataloader() for j in b["index"].tolist())
    assert seen == list(range(9))


def test_remap_to_a_checkpoint_class_list(folder_dm) -> None:
    dm = folder_dm
    before = dm.labels.copy()
    dm.remap_to(["C", "x", "A", "B"])
    assert dm.class_names == ["C", "x", "A", "B"] and dm.num_classes == 4
    np.testing.assert_array_equal(dm.labels, np.array([2, 3, 0])[before])
    assert dm.class_counts[1] == 0
    batch = next(iter(dm.val_dataloader()))
    assert batch["label"].tolist() == dm.labels[batch["index"].numpy()].tolist()


def test_remap_to_with_an_unmatched_class(folder_dm) -> None:
    with pytest.raises(DataError, match=r"\['c'\] match none"):
        folder_dm.remap_to(["A", "B"])
    folder_dm.remap_to(["A", "B"], class_map={"c": "B"})
    assert folder_dm.labels.max() == 1
