"""Reading images and masks from disk."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medcls.data.io import BadImageError, read_mask, read_rgb


def test_read_rgb_shape_and_values(tmp_path) -> None:
    arr = np.zeros((30, 40, 3), np.uint8)
    arr[..., 0], arr[..., 2] = 10, 250
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = read_rgb(str(tmp_path / "a.png"))
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize(
    "content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40]
)
def test_undecodable_image_names_the_file(tmp_path, content) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(BadImageError, match=r"broken\.png: cannot decode image"):
        read_rgb(str(path))


def test_truncated_jpeg_is_a_bad_image(tmp_path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "t.jpg", quality=95)
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match=r"t\.jpg"):
        read_rgb(str(tmp_path / "t.jpg"))


def test_missing_file_is_not_a_bad_image(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        read_rgb(str(tmp_path / "nope.jpg"))
    with pytest.raises(FileNotFoundError):
        read_mask(str(tmp_path / "nope.png"))


def test_read_mask_binarises(tmp_path) -> None:
    m = np.array([[0, 100, 127], [128, 200, 255]], np.uint8)
    Image.fromarray(m).save(tmp_path / "m.png")
    Image.fromarray(np.stack([m] * 3, axis=-1)).save(tmp_path / "rgb_m.png")
    expected = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
    np.testing.assert_array_equal(read_mask(str(tmp_path / "m.png")), expected)
    np.testing.assert_array_equal(read_mask(str(tmp_path / "rgb_m.png")), expected)


def test_undecodable_mask(tmp_path) -> None:
    (tmp_path / "m.png").write_bytes(b"junk")
    with pytest.raises(BadImageError, match=r"m\.png: cannot decode mask"):
        read_mask(str(tmp_path / "m.png"))
