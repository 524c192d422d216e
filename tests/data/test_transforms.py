"""Albumentations pipelines from conf/augmentation."""

from __future__ import annotations

import os

import albumentations as A
import numpy as np
import pytest
from omegaconf import OmegaConf

from medcls.config import CONFIG_DIR
from medcls.data.transforms import create_transform
from medcls.errors import DataError

AUGMENTATIONS = sorted(
    n[:-5] for n in os.listdir(os.path.join(CONFIG_DIR, "augmentation")) if n.endswith(".yaml")
)


def sample(size: int = 32):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), np.uint8)
    mask[4:12, 2:20] = 255
    return img, mask


@pytest.mark.parametrize("ops", [None, [], OmegaConf.create([])])
def test_no_ops_no_transform(ops) -> None:
    assert create_transform(ops) is None


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_every_augmentation_config_builds_and_keeps_geometry(train_cfg, name) -> None:
    cfg = train_cfg(f"augmentation={name}", "data.image_size=48")
    for key in ("train", "eval"):
        t = create_transform(cfg.augmentation[key])
        if not cfg.augmentation[key]:
            assert t is None
            continue
        assert isinstance(t, A.Compose) and len(t.transforms) == len(cfg.augmentation[key])
        img, mask = sample(48)
        out = t(image=img, mask=mask)
        assert out["image"].shape == (48, 48, 3) and out["image"].dtype == np.uint8
        assert out["mask"].shape == (48, 48)


def test_ops_are_built_in_order_with_their_arguments() -> None:
    t = create_transform(
        [{"HorizontalFlip": {"p": 0.25}}, {"Rotate": {"limit": 10}}, {"Blur": None}]
    )
    assert [type(x).__name__ for x in t.transforms] == ["HorizontalFlip", "Rotate", "Blur"]
    assert t.transforms[0].p == 0.25


def test_masks_follow_geometric_ops() -> None:
    img, mask = sample()
    out = create_transform([{"HorizontalFlip": {"p": 1.0}}])(image=img, mask=mask)
    np.testing.assert_array_equal(out["image"], img[:, ::-1])
    np.testing.assert_array_equal(out["mask"], mask[:, ::-1])
    # colour ops leave the mask alone
    out = create_transform([{"ColorJitter": {"brightness": 0.5, "p": 1.0}}])(image=img, mask=mask)
    np.testing.assert_array_equal(out["mask"], mask)
    assert not np.array_equal(out["image"], img)


def test_unknown_op() -> None:
    with pytest.raises(DataError, match=r"augmentation 'RandomFlipz' is not an albumentations"):
        create_transform([{"HorizontalFlip": {}}, {"RandomFlipz": {"p": 1}}])


@pytest.mark.parametrize(
    "ops",
    [
        ["HorizontalFlip"],
        [{"HorizontalFlip": {}, "VerticalFlip": {}}],
        {"HorizontalFlip": {}},
        OmegaConf.create({"HorizontalFlip": {}}),  # a mapping instead of a list in the YAML
    ],
)
def test_malformed_entries(ops) -> None:
    with pytest.raises(DataError, match=r"write each step as \{OpName: \{kwargs\}\}"):
        create_transform(ops)


def test_bad_arguments_name_the_op() -> None:
    with pytest.raises(DataError, match=r"augmentation Rotate\(\{'limit': 'lots'\}\)"):
        create_transform([{"Rotate": {"limit": "lots"}}])


def test_misspelt_argument_is_an_error_not_a_silent_default() -> None:
    with pytest.raises(DataError, match=r"HorizontalFlip\(\{'prob': 1\.0\}\).*'prob'"):
        create_transform([{"HorizontalFlip": {"prob": 1.0}}])
