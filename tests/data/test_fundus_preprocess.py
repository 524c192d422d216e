"""Black-border crop, then a central crop of a fraction (or a crop around the optic disc), then
resize, on a synthetic fundus photo (a vignetted retina disc off-centre on a noisy black frame,
as in EyePACS/AIROGS)."""

from __future__ import annotations

import numpy as np
import pytest

from medcls.data.preprocess import Preprocess, find_optic_disc

H, W, CY, CX, R = 300, 420, 160, 250, 120  # frame, retina centre and radius
THRESHOLD = 10


def synthetic_fundus() -> np.ndarray:
    """Retina: orange, darker towards the rim (vignetting), a bright optic disc at its
    centre; the frame: dark noise below the black threshold (JPEG-like)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:H, :W]
    r = np.hypot(yy - CY, xx - CX) / R
    img = rng.integers(0, THRESHOLD - 2, (H, W, 3)).astype(np.float64)
    retina = r <= 1.0
    shade = 1.0 - 0.6 * r[retina] ** 2
    img[retina] = np.stack([200 * shade, 100 * shade, 40 * shade], axis=1)
    img[r <= 0.12] = (250, 240, 200)  # optic disc
    return img.astype(np.uint8)


def is_black(img: np.ndarray) -> np.ndarray:
    return img.max(axis=2) <= THRESHOLD


def is_disc(img: np.ndarray) -> np.ndarray:
    return img[..., 1] > 220  # only the optic disc is this green


def test_border_crop_fits_the_retina_and_centres_the_disc() -> None:
    out, _ = Preprocess(64, "stretch", crop_black_border=True, black_threshold=THRESHOLD)(
        synthetic_fundus()
    )
    black = is_black(out)
    # the disc touches all four sides (the crop is its bounding box) …
    for side in (out[0], out[-1], out[:, 0], out[:, -1]):
        assert not is_black(side[None]).all()
    # … so only the four corners outside the circle stay black
    assert black[0, 0] and black[0, -1] and black[-1, 0] and black[-1, -1]
    assert 0.15 < black.mean() < 0.25  # 1 - π/4 ≈ 0.21 of the square
    assert is_disc(out[30:34, 30:34]).all()  # optic disc in the middle


def test_without_the_crop_the_frame_dominates_and_the_disc_is_off_centre() -> None:
    out, _ = Preprocess(64, "stretch")(synthetic_fundus())
    assert is_black(out).mean() > 0.5
    assert not is_disc(out[30:34, 30:34]).all()


@pytest.mark.parametrize(("fraction", "black_left"), [(1.0, True), (0.9, True), (0.7, False)])
def test_central_fraction_removes_what_the_threshold_leaves(fraction, black_left) -> None:
    pre = Preprocess(
        64,
        "stretch",
        crop_black_border=True,
        black_threshold=THRESHOLD,
        center_crop_fraction=fraction,
    )
    out, _ = pre(synthetic_fundus())
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert is_black(out).any() == black_left  # 0.7 < 1/√2: inside the inscribed square
    assert is_disc(out[30:34, 30:34]).all()


def test_center_crop_resize_mode_keeps_the_disc_central() -> None:
    pre = Preprocess(48, crop_black_border=True, center_crop_fraction=0.9)  # center_crop resize
    out, _ = pre(synthetic_fundus())
    assert out.shape == (48, 48, 3)
    assert is_disc(out[22:26, 22:26]).all()


def fundus_with_an_offset_disc_and_glare() -> tuple[np.ndarray, tuple[int, int]]:
    """The retina above with its disc moved to 0.45 R right of centre (where AIROGS photos
    have it), and a white glare larger and brighter than the disc on the rim at the lower left
    (its centre at 0.95 R)."""
    img = synthetic_fundus()
    yy, xx = np.mgrid[:H, :W]
    retina = np.hypot(yy - CY, xx - CX) <= R
    shade = 1.0 - 0.6 * (np.hypot(yy - CY, xx - CX) / R) ** 2
    img[retina] = np.stack([200 * shade, 100 * shade, 40 * shade], axis=-1)[retina].astype(np.uint8)
    disc = (CY, CX + int(0.45 * R))
    img[np.hypot(yy - disc[0], xx - disc[1]) <= 0.12 * R] = (250, 240, 200)
    glare = retina & (np.hypot(yy - (CY + 0.76 * R), xx - (CX - 0.57 * R)) <= 0.2 * R)
    img[glare] = 255
    return img, disc


def test_the_optic_disc_is_found_not_the_glare_on_the_rim() -> None:
    img, (dy, dx) = fundus_with_an_offset_disc_and_glare()
    row, col = find_optic_disc(img)
    assert abs(row - dy) <= 6 and abs(col - dx) <= 6, ((row, col), (dy, dx))


def test_the_disc_crop_fills_the_image_with_the_disc_and_a_central_crop_does_not() -> None:
    img, _ = fundus_with_an_offset_disc_and_glare()
    kw = {"crop_black_border": True, "black_threshold": THRESHOLD}
    disc_crop, _ = Preprocess(64, "stretch", optic_disc_crop=0.3, **kw)(img)
    central, _ = Preprocess(64, "stretch", center_crop_fraction=0.3, **kw)(img)
    assert disc_crop.shape == (64, 64, 3)
    # the disc (radius 0.12 R of a 0.3 × 2R square: 0.2 of its side) fills the middle …
    assert is_disc(disc_crop[24:40, 24:40]).all()
    assert 0.08 < is_disc(disc_crop).mean() < 0.2  # π·0.2² ≈ 0.13 of the square
    # … and is nowhere in a central crop of the same size (the negative control)
    assert not is_disc(central).any()


def test_the_disc_crop_cuts_the_mask_the_same_way() -> None:
    img, _ = fundus_with_an_offset_disc_and_glare()
    mask = (is_disc(img) * 255).astype(np.uint8)
    out, out_mask = Preprocess(64, "stretch", crop_black_border=True, optic_disc_crop=0.3)(
        img, mask
    )
    assert out_mask.shape == (64, 64)
    assert ((out_mask > 127) == is_disc(out)).mean() > 0.97
