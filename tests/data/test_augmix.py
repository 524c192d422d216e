"""AugMix as an albumentations step on the uint8 cache: shape and dtype, that it changes images
(severity 0: no geometry), seeding, that its settings reach timm's transform, config."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from medcls.data.augmix import AugMix
from medcls.data.transforms import create_transform
from medcls.errors import DataError


def fundus_like(size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 2.2) ** 2
    img = np.zeros((size, size, 3), np.uint8)
    img[disc] = (180, 90, 40)
    return np.clip(img + rng.integers(0, 30, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("severity", [0, 3, 10])
@pytest.mark.parametrize("shape", [(48, 48, 3), (40, 56, 3)])
def test_shape_and_dtype_kept_and_the_image_changes(severity, shape) -> None:
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    t = create_transform([{"AugMix": {"severity": severity, "p": 1.0}}], seed=0)
    outs = [t(image=img)["image"] for _ in range(5)]
    assert all(o.shape == shape and o.dtype == np.uint8 for o in outs)
    if severity:  # some draw mixes in a visible change (one alone may weigh ~0)
        assert any(np.abs(o.astype(int) - img).mean() > 1 for o in outs)


def square() -> np.ndarray:
    img = np.zeros((48, 48, 3), np.uint8)
    img[8:20, 10:30] = 255
    return img


def test_severity_zero_moves_nothing() -> None:
    """Severity 0: no rotation, shear or shift (each op's strength is drawn in 0..severity),
    so the square stays where it was; severity 1 already moves it in most draws."""
    img, outside = square(), square() == 0
    moved = {}
    for severity in (0, 1):
        t = create_transform([{"AugMix": {"severity": severity}}], seed=0)
        outs = [t(image=img)["image"] for _ in range(20)]
        moved[severity] = sum(int(o[outside].max() > 0) for o in outs)
        if severity == 0:  # intensity-only ops (posterize to 4 bits) at most dim the square
            assert min(int(o[~outside].min()) for o in outs) >= 240
    assert moved[0] == 0 and moved[1] >= 10


def test_settings_reach_timms_transform() -> None:
    mix = AugMix(width=5, depth=2, alpha=0.5, blended=True, translate_fraction=0.2)._augmix()
    assert (mix.width, mix.depth, mix.alpha, mix.blended) == (5, 2, 0.5, True)
    assert {op.magnitude for op in mix.ops} == {3}  # severity's default
    shifts = [op for op in mix.ops if op.name.startswith("Translate")]
    assert shifts and all(op.hparams["translate_pct"] == 0.2 for op in shifts)
    default = AugMix(severity=7)._augmix()
    assert (default.width, default.depth, default.alpha) == (3, -1, 1.0)  # depth 1–3 per chain
    assert {op.magnitude for op in default.ops} == {7}


def test_a_wider_shift_moves_the_square_further() -> None:
    """translate_fraction bounds the shift: only shift ops, at full strength."""
    img = square()

    def spread(fraction: float) -> float:
        t = AugMix(severity=10, width=1, depth=1, translate_fraction=fraction)
        mix = t._augmix()
        mix.ops = [op for op in mix.ops if op.name.startswith("Translate")]
        comp = A.Compose([t], seed=0)
        return float(
            np.mean([np.abs(comp(image=img)["image"].astype(int) - img).mean() for _ in range(20)])
        )

    assert spread(0.4) > spread(0.05) > 0


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
