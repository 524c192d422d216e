"""Tests for the procedural dermoscopy-like synthetic source."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from medcls.data.sources.synthetic_render import (
    SYNTHETIC_CLASSES,
    render_synthetic,
    synthetic_group,
    synthetic_label,
)


def test_classes() -> None:
    assert len(SYNTHETIC_CLASSES) == 5
    assert len(set(SYNTHETIC_CLASSES)) == 5


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4, 61])
def test_deterministic(index: int) -> None:
    img1, mask1 = render_synthetic(7, index, 5)
    # Render other samples in between: the output must not depend on call order.
    render_synthetic(7, index + 1, 5)
    render_synthetic(3, index, 5)
    img2, mask2 = render_synthetic(7, index, 5)
    assert img1.tobytes() == img2.tobytes()
    assert mask1.tobytes() == mask2.tobytes()


def test_different_index_or_seed_differs() -> None:
    base, _ = render_synthetic(0, 0, 5)
    assert not np.array_equal(base, render_synthetic(0, 5, 5)[0])  # same class, other lesion
    assert not np.array_equal(base, render_synthetic(0, 60, 5)[0])  # same lesion, other photo
    assert not np.array_equal(base, render_synthetic(1, 0, 5)[0])  # other seed


@pytest.mark.parametrize("size", [16, 64, 128, 97])
def test_shapes_and_dtypes(size: int) -> None:
    for index in range(5):
        img, mask = render_synthetic(0, index, 5, size=size)
        assert img.shape == (size, size, 3)
        assert img.dtype == np.uint8
        assert mask.shape == (size, size)
        assert mask.dtype == np.uint8


def test_mask_binary_nonempty_and_covers_lesion() -> None:
    contrasts = []
    for index in range(25):
        img, mask = render_synthetic(11, index, 5, size=96)
        assert set(np.unique(mask).tolist()) == {0, 255}
        inside = mask == 255
        assert 0.05 < inside.mean() < 0.8
        # Compare with the skin just around the lesion: corners may hold a dark vignette.
        ring = (cv2.dilate(mask, np.ones((9, 9), np.uint8), iterations=2) > 0) & ~inside
        diff = np.abs(img[inside].mean(axis=0) - img[ring].mean(axis=0)).sum()
        assert diff > 10, (index, diff)
        contrasts.append(diff)
    assert np.mean(contrasts) > 50


@pytest.mark.parametrize("images_per_group", [1, 2, 3, 5])
@pytest.mark.parametrize("num_classes", [2, 3, 4, 5])
def test_group_shares_label(images_per_group: int, num_classes: int) -> None:
    groups: dict[str, set[int]] = {}
    members: dict[str, int] = {}
    for index in range(400):
        g = synthetic_group(0, index, images_per_group)
        groups.setdefault(g, set()).add(synthetic_label(0, index, num_classes))
        members[g] = members.get(g, 0) + 1
    assert all(len(labels) == 1 for labels in groups.values())
    assert max(members.values()) == images_per_group
    if images_per_group > 1:
        assert len(groups) < 400  # grouping actually happens


def test_group_images_show_same_lesion() -> None:
    # Index 0 and 60 are two photographs of one lesion; index 5 is another lesion of the class.
    ids = {synthetic_group(0, i, 2) for i in (0, 60)}
    assert len(ids) == 1 and synthetic_group(0, 5, 2) not in ids
    for seed in range(3):
        for first in range(5):
            m0 = render_synthetic(seed, first, 5, size=64)[1] > 0
            m1 = render_synthetic(seed, first + 60, 5, size=64)[1] > 0
            area0, area1 = int(m0.sum()), int(m1.sum())
            assert abs(area0 - area1) < 0.25 * area0  # same lesion: similar size
            assert (m0 & m1).sum() / (m0 | m1).sum() > 0.5  # small shift/rotation only


def test_labels_cover_all_classes() -> None:
    for num_classes in (1, 2, 3, 4, 5):
        labels = [synthetic_label(0, i, num_classes) for i in range(100)]
        assert set(labels) == set(range(num_classes))
        counts = np.bincount(labels, minlength=num_classes)
        assert counts.max() - counts.min() <= 1  # balanced


def test_label_matches_render_class_colours() -> None:
    # Vascular lesions are red/purple: red channel well above green inside the mask.
    img, mask = render_synthetic(0, 4, 5)
    r, g, _ = img[mask > 0].mean(axis=0)
    assert r - g > 40


@pytest.mark.parametrize("num_classes", [0, 6, 10, -1])
def test_invalid_num_classes(num_classes: int) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        render_synthetic(0, 0, num_classes)
    with pytest.raises(ValueError, match="num_classes"):
        synthetic_label(0, 0, num_classes)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="index"):
        render_synthetic(0, -1, 5)
    with pytest.raises(ValueError, match="images_per_group"):
        synthetic_group(0, 0, 0)
    with pytest.raises(ValueError, match="size"):
        render_synthetic(0, 0, 5, size=8)


def test_negative_seed_is_deterministic() -> None:
    a = render_synthetic(-3, 2, 5, size=32)[0]
    b = render_synthetic(-3, 2, 5, size=32)[0]
    assert np.array_equal(a, b)
