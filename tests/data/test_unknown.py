"""Images of a class outside the model's (ISIC 2019's UNK test images): data.unknown=error |
exclude | reject, in the ISIC source, the datamodule's partitions and a checkpoint's relabelling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medcls.data.datamodule import ClassificationDataModule
from medcls.data.sources import load_source
from medcls.errors import DataError

TRAIN = ["MEL", "NV", "BCC"]


@pytest.fixture(scope="module")
def isic(tmp_path_factory, helpers) -> Path:
    """Train CSV: 3 classes × 8 (UNK column all zeros); test CSV: 3 classes + UNK, × 3 each."""
    root = tmp_path_factory.mktemp("isic_unk")
    helpers.make_isic_csv(root, TRAIN, per_class=8)
    helpers.make_isic_csv(
        root, [*TRAIN, "UNK"], 3, (), csv_name="Test.csv", images_dir="test_images", seed=1
    )
    return root


def _cfg(data_cfg, root: Path, **kw):
    return data_cfg(
        "isic_csv",
        root=str(root),
        csv="GroundTruth.csv",
        images_dir="images",
        test_csv="Test.csv",
        test_images_dir="test_images",
        image_size=16,
        **{"classes": TRAIN, **kw},  # the training CSV's UNK column has no images
    )


def _dm(cfg, tmp_path: Path) -> ClassificationDataModule:
    dm = ClassificationDataModule(cfg, cache_dir=str(tmp_path / "cache"))
    dm.setup()
    return dm


def test_error_is_the_default(data_cfg, isic) -> None:
    with pytest.raises(DataError, match="label 'UNK'.*data.unknown=exclude"):
        load_source(_cfg(data_cfg, isic))


def test_exclude_leaves_them_out(data_cfg, isic) -> None:
    src = load_source(_cfg(data_cfg, isic, unknown="exclude"))
    assert src.class_names == TRAIN
    assert len(src.records) == 24 + 9
    assert all(r.label < 3 for r in src.records)
    assert any("3 image(s)" in n and "'UNK'" in n and "left out" in n for n in src.notes)


def test_reject_keeps_them_for_testing_only(data_cfg, isic, tmp_path) -> None:
    cfg = _cfg(data_cfg, isic, unknown="reject", unknown_threshold=0.7)
    src = load_source(cfg)
    assert src.class_names == TRAIN  # the model still has 3 classes
    assert sum(r.label == 3 for r in src.records) == 3
    dm = _dm(cfg, tmp_path)
    unknown = np.flatnonzero(dm.labels == 3)
    assert set(unknown) <= set(dm.partitions["test"].tolist())
    assert not set(unknown) & set(dm.partitions["train"].tolist() + dm.partitions["val"].tolist())
    assert len(dm.class_counts) == 3 and dm.num_classes == 3
    assert dm.unknown is not None and dm.unknown.name == "UNK" and dm.unknown.threshold == 0.7


def test_unknown_taken_out_of_the_split_even_without_an_official_test(data_cfg, isic, tmp_path):
    """UNK rows in the one CSV (no test_csv): they never train, and join the carved test part."""
    cfg = data_cfg(
        "isic_csv",
        root=str(isic),
        csv="Test.csv",
        images_dir="test_images",
        image_size=16,
        unknown="reject",
        classes=TRAIN,
        test_fraction=0.34,
        val_fraction=0.5,
    )
    dm = _dm(cfg, tmp_path)
    unknown = set(np.flatnonzero(dm.labels == 3).tolist())
    assert len(unknown) == 3 and unknown <= set(dm.partitions["test"].tolist())
    assert dm.unknown is not None


def test_no_reject_option_without_unknown_test_images(data_cfg, isic, tmp_path) -> None:
    cfg = data_cfg(
        "isic_csv",
        root=str(isic),
        csv="GroundTruth.csv",
        images_dir="images",
        image_size=16,
        classes=TRAIN,
    )
    cfg.unknown = "reject"
    assert _dm(cfg, tmp_path).unknown is None


@pytest.mark.parametrize("policy", ["error", "exclude", "reject"])
def test_checkpoint_relabelling(data_cfg, isic, tmp_path, policy: str) -> None:
    """Evaluating a MEL/NV model on data with BCC (and UNK) too: what the model lacks is an
    error, left out, or a rejected class."""
    cfg = _cfg(data_cfg, isic, unknown="reject" if policy == "reject" else "exclude")
    cfg.test_partition = "all"
    dm = _dm(cfg, tmp_path)
    cfg.unknown = policy
    if policy == "error":
        with pytest.raises(DataError, match=r"\['BCC'\] match none"):
            dm.remap_to(["mel", "nv"])
        return
    dm.remap_to(["mel", "nv"])
    labels = dm.labels[dm.partitions["all"]]
    if policy == "exclude":
        assert set(labels.tolist()) == {0, 1} and len(labels) == 2 * 8 + 2 * 3
        assert dm.unknown is None
    else:  # BCC and UNK both become the rejected class 2
        assert np.bincount(labels).tolist() == [11, 11, 8 + 3 + 3]
        assert dm.unknown is not None
