"""Preprocess: resize modes, grayscale, black-border and central crops (masks cut alike)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medcls.data.io import read_rgb
from medcls.data.preprocess import Preprocess

RED, GREEN, BLUE = (200, 0, 0), (0, 200, 0), (0, 0, 200)


def stripes(h: int = 30, w: int = 90) -> np.ndarray:
    """Three vertical stripes: red | green | blue."""
    img = np.zeros((h, w, 3), np.uint8)
    third = w // 3
    img[:, :third], img[:, third : 2 * third], img[:, 2 * third :] = RED, GREEN, BLUE
    return img


def framed(size=(60, 80), inner=(20, 30), frame_value=0, inner_value=180) -> np.ndarray:
    """A bright rectangle of ``inner`` (h, w) in a frame of ``frame_value``, off centre."""
    img = np.full((*size, 3), frame_value, np.uint8)
    img[5 : 5 + inner[0], 40 : 40 + inner[1]] = inner_value
    return img


@pytest.mark.parametrize("shape", [(30, 40), (40, 30), (7, 200), (500, 300), (12, 12)])
@pytest.mark.parametrize("mode", ["center_crop", "stretch", "pad"])
def test_output_is_square_uint8(shape, mode) -> None:
    img = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    mask = np.zeros(shape, np.uint8)
    out, m = Preprocess(image_size=24, resize_mode=mode)(img, mask)
    assert out.shape == (24, 24, 3) and out.dtype == np.uint8
    assert m.shape == (24, 24) and m.dtype == np.uint8
    assert out.flags["C_CONTIGUOUS"]


def test_center_crop_keeps_the_middle() -> None:
    out, _ = Preprocess(image_size=16)(stripes())
    assert (np.abs(out.astype(int) - GREEN).max(axis=2) <= 2).all()


def test_stretch_keeps_everything() -> None:
    out, _ = Preprocess(image_size=18, resize_mode="stretch")(stripes())
    np.testing.assert_array_equal(out[:, 1], np.tile(RED, (18, 1)))
    np.testing.assert_array_equal(out[:, 9], np.tile(GREEN, (18, 1)))
    np.testing.assert_array_equal(out[:, -2], np.tile(BLUE, (18, 1)))


def test_pad_letterboxes_with_zeros() -> None:
    out, _ = Preprocess(image_size=18, resize_mode="pad")(stripes())
    assert (out[:6] == 0).all() and (out[-6:] == 0).all()  # 90x30 → 18x6 band in the middle
    np.testing.assert_array_equal(out[9, 0], RED)
    np.testing.assert_array_equal(out[9, -1], BLUE)


def test_mask_is_cut_like_the_image_and_stays_binary() -> None:
    img = stripes()
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[:, 30:60] = 255  # marks the green stripe
    for mode in ("center_crop", "stretch", "pad"):
        out, m = Preprocess(image_size=18, resize_mode=mode)(img, mask)
        assert set(np.unique(m).tolist()) <= {0, 255}
        green = (out[..., 1] > 150) & (out[..., 0] < 50)
        np.testing.assert_array_equal(m == 255, green)


def test_small_images_are_enlarged() -> None:
    img = np.random.default_rng(1).integers(0, 256, (10, 20, 3), dtype=np.uint8)
    out, _ = Preprocess(image_size=64)(img)
    assert out.shape == (64, 64, 3)
    assert out.std() > 10  # real content, not a blank


# -- black border and central crop -------------------------------------------------------------
def test_black_border_crop_removes_the_frame() -> None:
    img = framed()
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[img[..., 0] > 0] = 255
    out, m = Preprocess(image_size=8, resize_mode="stretch", crop_black_border=True)(img, mask)
    assert (out == 180).all()
    assert (m == 255).all()
    plain, _ = Preprocess(image_size=8, resize_mode="stretch")(img)
    assert plain.min() == 0  # without the option the frame stays


def test_black_threshold() -> None:
    img = framed(frame_value=30)  # a dark-grey, not black, frame
    kept, _ = Preprocess(8, "stretch", crop_black_border=True, black_threshold=10)(img)
    cut, _ = Preprocess(8, "stretch", crop_black_border=True, black_threshold=40)(img)
    assert kept.min() == 30
    assert (cut == 180).all()


def test_black_border_crop_of_an_all_black_image_keeps_it() -> None:
    img = np.zeros((30, 40, 3), np.uint8)
    out, _ = Preprocess(image_size=8, crop_black_border=True)(img)
    assert out.shape == (8, 8, 3) and (out == 0).all()


def test_center_crop_fraction() -> None:
    img = np.zeros((40, 60, 3), np.uint8)
    img[10:30, 15:45] = 220  # the central half in both directions
    out, _ = Preprocess(8, "stretch", center_crop_fraction=0.5)(img)
    assert (out == 220).all()
    wide, _ = Preprocess(8, "stretch", center_crop_fraction=0.9)(img)
    assert wide.min() == 0


def test_center_crop_fraction_applies_after_black_border_crop() -> None:
    img = np.zeros((100, 100, 3), np.uint8)
    img[20:60, 20:60] = 90  # retina
    img[35:45, 35:45] = 250  # its centre
    pre = Preprocess(8, "stretch", crop_black_border=True, center_crop_fraction=0.25)
    out, _ = pre(img)
    assert (out == 250).all()


# -- colour modes ------------------------------------------------------------------------------
def save(tmp_path, name: str, im: Image.Image) -> str:
    path = str(tmp_path / name)
    im.save(path)
    return path


@pytest.fixture
def colour_images(tmp_path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    ramp16 = (np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 40 + 1000).astype(np.uint16)
    return {
        "RGB": save(tmp_path, "rgb.png", Image.fromarray(rgb)),
        "L": save(tmp_path, "l.png", Image.fromarray(rgb[..., 0])),
        "RGBA": save(tmp_path, "rgba.png", Image.fromarray(rgb).convert("RGBA")),
        "I;16": save(tmp_path, "i16.png", Image.fromarray(ramp16)),
        "P": save(tmp_path, "p.png", Image.fromarray(rgb).convert("P")),
        "LA": save(tmp_path, "la.png", Image.fromarray(rgb).convert("LA")),
        "CMYK": save(tmp_path, "cmyk.jpg", Image.fromarray(rgb).convert("CMYK")),
    }


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "I;16", "P", "LA", "CMYK"])
def test_grayscale_gives_three_identical_channels(colour_images, mode) -> None:
    path = colour_images[mode]
    if mode == "I;16":
        with Image.open(path) as im:
            assert im.mode.startswith("I"), im.mode  # really a 16-bit PNG
    img = read_rgb(path, grayscale=True)
    assert img.shape == (30, 40, 3) and img.dtype == np.uint8
    out, _ = Preprocess(image_size=16, grayscale=True)(img)
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    assert out.std() > 5


def test_colour_kept_without_grayscale(colour_images) -> None:
    img = read_rgb(colour_images["RGBA"])
    assert not np.array_equal(img[..., 0], img[..., 1])


def test_16bit_png_is_stretched_to_the_full_8bit_range(colour_images) -> None:
    img = read_rgb(colour_images["I;16"])
    assert img.min() == 0 and img.max() == 255
    assert img[0, 0, 0] < img[-1, -1, 0]  # the ramp keeps its direction
    np.testing.assert_array_equal(img[..., 0], img[..., 2])


def test_from_cfg_reads_the_real_data_configs(data_cfg) -> None:
    glaucoma = Preprocess.from_cfg(data_cfg("glaucoma"))
    assert glaucoma.crop_black_border and not glaucoma.grayscale
    covid = Preprocess.from_cfg(data_cfg("covid_ct", image_size=96))
    assert covid.grayscale and covid.image_size == 96
    assert Preprocess.from_cfg(data_cfg("synthetic")).image_size == 64
    assert Preprocess.from_cfg({"image_size": 32, "batch_size": 8}) == Preprocess(image_size=32)
