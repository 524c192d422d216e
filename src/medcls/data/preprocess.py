"""Deterministic preprocessing applied once, before caching: crops, resize, colour mode."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np

from medcls.data.records import DataError


@dataclass(frozen=True)
class Preprocess:
    """Geometry and colour normalisation every image goes through before augmentation.

    The checkpoint stores these fields, so evaluation and prediction see images exactly as
    training did.
    """

    image_size: int = 128
    resize_mode: str = "center_crop"  # center_crop: shorter side → size, then centre square crop
    grayscale: bool = False
    crop_black_border: bool = False  # fundus photos: cut the black frame around the retina
    black_threshold: int = 10
    center_crop_fraction: float = 1.0  # keep this central fraction (after black-border crop)

    @classmethod
    def from_cfg(cls, cfg: Any) -> Preprocess:
        """Pick this class's fields from a data config (DictConfig or dict); ignore the rest."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: cfg[k] for k in names if k in cfg and cfg[k] is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __post_init__(self) -> None:
        if self.resize_mode not in ("center_crop", "stretch", "pad"):
            raise DataError(
                f"data.resize_mode={self.resize_mode!r}: use center_crop, stretch or pad"
            )
        if not 0.0 < self.center_crop_fraction <= 1.0:
            raise DataError(
                f"data.center_crop_fraction={self.center_crop_fraction}: must be in (0, 1]"
            )

    def __call__(self, img: np.ndarray, mask: np.ndarray | None = None):
        """Apply to an ``(H, W, 3)`` uint8 image (and its ``(H, W)`` mask, cut identically)."""
        if self.crop_black_border:
            img, mask = _crop_black_border(img, mask, self.black_threshold)
        if self.center_crop_fraction < 1.0:
            img, mask = _central_fraction(img, mask, self.center_crop_fraction)
        img = _resize(img, self.image_size, self.resize_mode, cv2.INTER_AREA)
        if mask is not None:
            mask = _resize(mask, self.image_size, self.resize_mode, cv2.INTER_NEAREST)
        return img, mask


def _crop_black_border(img: np.ndarray, mask: np.ndarray | None, threshold: int):
    bright = img.max(axis=2) > threshold
    rows, cols = np.flatnonzero(bright.any(axis=1)), np.flatnonzero(bright.any(axis=0))
    if rows.size == 0 or cols.size == 0:  # all black: nothing sensible to crop to
        return img, mask
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return img[sl], (mask[sl] if mask is not None else None)


def _central_fraction(img: np.ndarray, mask: np.ndarray | None, fraction: float):
    h, w = img.shape[:2]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    sl = (slice(top, top + ch), slice(left, left + cw))
    return img[sl], (mask[sl] if mask is not None else None)


def _resize(arr: np.ndarray, size: int, mode: str, interpolation: int) -> np.ndarray:
    h, w = arr.shape[:2]
    if mode == "stretch":
        return cv2.resize(arr, (size, size), interpolation=interpolation)
    if mode == "pad":  # longer side → size, pad the rest with zeros (keeps the whole view)
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        small = cv2.resize(arr, (nw, nh), interpolation=interpolation)
        out = np.zeros((size, size, *arr.shape[2:]), dtype=arr.dtype)
        top, left = (size - nh) // 2, (size - nw) // 2
        out[top : top + nh, left : left + nw] = small
        return out
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    # INTER_AREA only helps when shrinking; enlarging small CT slices wants INTER_LINEAR.
    if scale > 1 and interpolation == cv2.INTER_AREA:
        interpolation = cv2.INTER_LINEAR
    big = cv2.resize(arr, (nw, nh), interpolation=interpolation)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(big[top : top + size, left : left + size])
