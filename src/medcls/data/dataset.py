"""A torch Dataset over cached uint8 arrays."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class CachedDataset(Dataset):
    """Items ``{"image": uint8 (3, S, S), "label": int, "index": int[, "mask", "has_mask"]}``.

    ``index`` is the record's position in the source, so predictions can be written back to
    file names. Images stay uint8 until the task normalises the whole batch.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        indices: np.ndarray,
        transform=None,
        masks: np.ndarray | None = None,
        has_mask: np.ndarray | None = None,
    ) -> None:
        self.images, self.labels, self.indices = images, labels, indices
        self.transform, self.masks, self.has_mask = transform, masks, has_mask

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        j = int(self.indices[i])
        img = np.asarray(self.images[j])
        # a copy: the disk cache is a read-only memory map, and tensors must be writable
        mask = np.array(self.masks[j]) if self.masks is not None else None
        if self.transform is not None:
            out = (
                self.transform(image=img, mask=mask)
                if mask is not None
                else self.transform(image=img)
            )
            img, mask = out["image"], out.get("mask", mask)
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
            "label": int(self.labels[j]),
            "index": j,
        }
        if mask is not None:
            item["mask"] = torch.from_numpy(np.ascontiguousarray(mask))[None]
            item["has_mask"] = bool(self.has_mask[j])
        return item
