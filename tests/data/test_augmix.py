"""AugMix as an albumentations step on the uint8 cache: shape, range, dtype, seeding, config."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from medcls.data.augmix import AugMix
from medcls.data.records import DataError
from medcls.data.transforms import create_transform


def fundus_like(size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 2.2) ** 2
    img = np.zeros((size, size, 3), np.uint8)
    img[disc] = (180, 90, 40)
    return np.clip(img + rng.integers(0, 30, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("severity", [0, 3, 10])
@pytest.mark.parametrize("shape", [(48, 48, 3), (40, 56, 3)])
def test_output_shape_range_and_dtype(severity, shape) -> None:
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    out = create_transform([{"AugMix": {"severity": severity}}], seed=0)(image=img)["image"]
    assert out.shape == shape and out.dtype == np.uint8
    assert out.min() >= 0 and out.max() <= 255


def test_it_changes_the_image_and_stronger_changes_it_more() -> None:
    img = fundus_like()
    diffs = {}
    for severity in (1, 10):
        t = create_transform([{"AugMix": {"severity": severity}}], seed=0)
        outs = [t(image=img)["image"].astype(int) for _ in range(20)]
        diffs[severity] = np.mean([np.abs(o - img).mean() for o in outs])
    assert diffs[1] > 0
    assert diffs[10] > diffs[1]


def test_follows_the_albumentations_seed_and_leaves_global_generators_alone() -> None:
    img = fundus_like()
    a = create_transform([{"AugMix": {}}], seed=7)
    b = create_transform([{"AugMix": {}}], seed=7)
    np.random.seed(123)
    first = [a(image=img)["image"] for _ in range(3)]
    after = np.random.random()
    np.random.seed(123)
    assert all((x == b(image=img)["image"]).all() for x in first)
    assert np.random.random() == after  # AugMix restored numpy's global state
    assert not (first[0] == first[1]).all()  # and draws anew for every image


def test_masks_pass_untouched() -> None:
    img, mask = fundus_like(), np.zeros((48, 48), np.uint8)
    mask[10:20, 5:30] = 255
    out = create_transform([{"AugMix": {"severity": 5}}], seed=0)(image=img, mask=mask)
    assert (out["mask"] == mask).all()


def test_probability_zero_is_identity() -> None:
    img = fundus_like()
    assert (A.Compose([AugMix(p=0.0)], seed=0)(image=img)["image"] == img).all()


def test_float_images_are_refused_with_the_fix() -> None:
    t = A.Compose([AugMix()], seed=0)
    with pytest.raises(DataError, match="uint8"):
        t(image=np.zeros((16, 16, 3), np.float32))


@pytest.mark.parametrize("kwargs", [{"severity": 11}, {"width": 0}, {"depth": 0}, {"alpha": 0}])
def test_bad_settings_name_the_op(kwargs) -> None:
    with pytest.raises(DataError, match="AugMix"):
        create_transform([{"AugMix": kwargs}])


def test_augmix_config(train_cfg) -> None:
    cfg = train_cfg("augmentation=augmix", "data.image_size=32")
    t = create_transform(cfg.augmentation.train, seed=0)
    names = [type(op).__name__ for op in t.transforms]
    assert names == ["HorizontalFlip", "VerticalFlip", "AugMix"]
    out = t(image=fundus_like(32))["image"]
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
