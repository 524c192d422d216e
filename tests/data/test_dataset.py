"""CachedDataset: items over the decoded uint8 arrays."""

from __future__ import annotations

import numpy as np
import torch

from medcls.data.dataset import CachedDataset
from medcls.data.transforms import create_transform


def arrays(n: int = 5, s: int = 8):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8)
    masks = np.zeros((n, s, s), np.uint8)
    masks[:, :, : s // 2] = 255
    return images, masks, np.arange(n) % 2, np.array([True, False, True, True, False])


def test_items_without_masks() -> None:
    images, _, labels, _ = arrays()
    ds = CachedDataset(images, labels, np.array([3, 1]))
    assert len(ds) == 2
    item = ds[0]
    assert set(item) == {"image", "label", "index"}
    assert item["index"] == 3 and item["label"] == 1
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 8, 8)
    np.testing.assert_array_equal(item["image"].numpy(), images[3].transpose(2, 0, 1))


def test_items_with_masks_and_transform() -> None:
    images, masks, labels, has_mask = arrays()
    t = create_transform([{"HorizontalFlip": {"p": 1.0}}])
    ds = CachedDataset(images, labels, np.array([0, 1]), t, masks, has_mask)
    a, b = ds[0], ds[1]
    assert a["mask"].shape == (1, 8, 8) and a["mask"].dtype == torch.uint8
    assert a["has_mask"] is True and b["has_mask"] is False
    np.testing.assert_array_equal(a["image"].numpy(), images[0][:, ::-1].transpose(2, 0, 1))
    np.testing.assert_array_equal(a["mask"][0].numpy(), masks[0][:, ::-1])  # flipped alike
    assert (a["mask"][0, :, :4] == 0).all() and (a["mask"][0, :, 4:] == 255).all()


def test_items_do_not_share_memory_with_a_read_only_cache(tmp_path) -> None:
    images, masks, labels, has_mask = arrays()
    np.save(tmp_path / "i.npy", images)
    np.save(tmp_path / "m.npy", masks)
    images_map = np.load(tmp_path / "i.npy", mmap_mode="r")
    masks_map = np.load(tmp_path / "m.npy", mmap_mode="r")
    ds = CachedDataset(images_map, labels, np.arange(5), masks=masks_map, has_mask=has_mask)
    for i in range(5):
        item = ds[i]
        # writing into a tensor backed by a read-only map would crash the process
        assert not np.shares_memory(item["image"].numpy(), images_map)
        assert not np.shares_memory(item["mask"].numpy(), masks_map)
        np.testing.assert_array_equal(item["mask"][0].numpy(), masks[i])
    batch = torch.utils.data.default_collate([ds[i] for i in range(5)])
    assert batch["image"].shape == (5, 3, 8, 8) and batch["mask"].shape == (5, 1, 8, 8)
    assert batch["label"].tolist() == [0, 1, 0, 1, 0]
