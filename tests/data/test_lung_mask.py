"""The classical lung-field extractor (``data.mask.source: lung_threshold``) on synthetic
CT-like slices, and masks reaching the batches through the data module."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from medcls.data.lung_mask import lung_field_mask

SIZE = 256


def ct_slice(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A lung-window slice: air around a bright body, two dark lungs with bright vessels, a dark
    trachea between them. Returns the image, the true lungs and the trachea."""
    rng = np.random.default_rng(seed)
    img = np.full((SIZE, SIZE), 15, np.uint8)
    cv2.ellipse(img, (128, 132), (115, 90), 0, 0, 360, 185, -1)  # body
    lungs = np.zeros_like(img)
    cv2.ellipse(lungs, (78, 128), (38, 62), 8, 0, 360, 1, -1)
    cv2.ellipse(lungs, (178, 128), (38, 62), -8, 0, 360, 1, -1)
    img[lungs > 0] = 45
    for _ in range(25):  # vessels: bright dots inside the lungs
        y, x = rng.integers(70, 190), rng.integers(45, 215)
        if lungs[y, x]:
            cv2.circle(img, (int(x), int(y)), 2, 200, -1)
    trachea = np.zeros_like(img)
    cv2.circle(trachea, (128, 95), 8, 1, -1)
    img[trachea > 0] = 20
    noisy = img.astype(np.int16) + rng.normal(0, 6, img.shape).astype(np.int16)
    return np.clip(noisy, 0, 255).astype(np.uint8), lungs > 0, trachea > 0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_finds_both_lungs_without_air_or_trachea() -> None:
    img, lungs, trachea = ct_slice()
    mask = lung_field_mask(np.repeat(img[..., None], 3, axis=2))  # RGB in, like read_rgb
    assert mask is not None and mask.shape == img.shape and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    found = mask > 0
    assert iou(found, lungs) > 0.9  # vessels inside the lungs are filled in
    assert not (found & trachea).any()
    assert not found[:10].any() and not found[:, :10].any()  # the air around the body


def test_lungs_cut_by_a_tight_crop() -> None:
    img, lungs, _ = ct_slice(seed=1)
    crop = (slice(75, 185), slice(50, 206))  # the image edge cuts through both lungs
    mask = lung_field_mask(img[crop])
    assert mask is not None and iou(mask > 0, lungs[crop]) > 0.85


def test_works_at_any_resolution() -> None:
    img, lungs, _ = ct_slice()
    big = cv2.resize(img, (700, 600), interpolation=cv2.INTER_LINEAR)
    mask = lung_field_mask(big)
    truth = cv2.resize(lungs.astype(np.uint8), (700, 600), interpolation=cv2.INTER_NEAREST) > 0
    assert mask.shape == (600, 700) and iou(mask > 0, truth) > 0.9


def test_no_lungs_no_mask() -> None:
    assert lung_field_mask(np.full((64, 64), 120, np.uint8)) is None  # flat
    bright = np.full((64, 64), 200, np.uint8)
    bright[:8] = 10  # only air at the edge, nothing dark inside the body
    assert lung_field_mask(bright) is None


@pytest.mark.parametrize("source", ["lung_threshold", "file"])
def test_lung_masks_reach_the_batches(source: str, tmp_path, data_cfg) -> None:
    from medcls.data.datamodule import ClassificationDataModule

    root = tmp_path / "ct"
    for label, c in enumerate(("CT_NonCOVID", "CT_COVID")):
        (root / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(ct_slice(seed=10 * label + i)[0]).save(root / c / f"{i}.png")
    cfg = data_cfg(
        "covid_ct",
        root=str(root),
        load_masks=True,
        image_size=64,
        cache="memory",
        test_fraction=0.0,
        val_fraction=0.5,
        split_dir=None,
        mask={"source": source, "dir": None, "pattern": "{stem}_mask.png"},
    )
    dm = ClassificationDataModule(cfg, train_ops=[{"HorizontalFlip": {"p": 1.0}}], seed=0)
    dm.setup()
    assert dm.decoded.masks is not None
    if source == "file":  # COVID-CT ships no masks: every image goes without
        assert not dm.decoded.has_mask.any()
        return
    assert dm.decoded.has_mask.all()
    assert (
        iou(dm.decoded.masks[0] > 0, cv2.resize(ct_slice(0)[1].astype(np.uint8), (64, 64)) > 0)
        > 0.8
    )
    i = int(dm.partitions["train"][0])
    item = dm.dataset("train", train=True)[0]
    assert item["has_mask"] and item["mask"].shape == (1, 64, 64)
    # the mask went through the image's flip
    np.testing.assert_array_equal(item["mask"][0].numpy(), dm.decoded.masks[i][:, ::-1])
