"""Deterministic preprocessing applied once, before caching: crops, resize, colour mode."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np

from medcls.data.medical.windows import Window, parse_window
from medcls.errors import DataError


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
    # fundus photos: a square of this fraction of the shorter side, centred on the optic disc
    # (0 = off); the glaucoma signs (cup-to-disc ratio, rim) are a few pixels of a whole-fundus
    # image at 128 px, but fill a disc crop at the same size
    optic_disc_crop: float = 0.0
    # CT sources (data=dicom, data=nifti): the window(s) that turn Hounsfield units into the
    # 8-bit channels, ((width, level), ...) from data.window; None for 8-bit images. Stored here
    # so the decode cache is keyed by it and a checkpoint reads new CT the way it trained.
    window: tuple[Window, ...] | None = None

    @classmethod
    def from_cfg(cls, cfg: Any) -> Preprocess:
        """Pick this class's fields from a data config (DictConfig or dict); ignore the rest."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: cfg[k] for k in names if k in cfg and cfg[k] is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __post_init__(self) -> None:
        if self.window is not None:  # a name, [width, level] or a list of those → pairs
            object.__setattr__(self, "window", parse_window(self.window))
        if self.resize_mode not in ("center_crop", "stretch", "pad"):
            raise DataError(
                f"data.resize_mode={self.resize_mode!r}: use center_crop, stretch or pad"
            )
        if not 0.0 < self.center_crop_fraction <= 1.0:
            raise DataError(
                f"data.center_crop_fraction={self.center_crop_fraction}: must be in (0, 1]"
            )
        if not 0.0 <= self.optic_disc_crop <= 1.0:
            raise DataError(
                f"data.optic_disc_crop={self.optic_disc_crop}: a fraction in (0, 1], or 0 (off)"
            )

    def __call__(self, img: np.ndarray, mask: np.ndarray | None = None):
        """Apply to an ``(H, W, 3)`` uint8 image (and its ``(H, W)`` mask, cut identically)."""
        if self.crop_black_border:
            img, mask = _crop_black_border(img, mask, self.black_threshold)
        if self.center_crop_fraction < 1.0:
            img, mask = _central_fraction(img, mask, self.center_crop_fraction)
        if self.optic_disc_crop > 0.0:
            img, mask = _square_around(img, mask, find_optic_disc(img), self.optic_disc_crop)
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


def find_optic_disc(img: np.ndarray) -> tuple[int, int]:
    """``(row, col)`` of the optic disc in an ``(H, W, 3)`` uint8 fundus photo: the green
    channel's brightest spot at the disc's scale (about a tenth of the image) relative to its
    surround (a difference of Gaussians: broad glare scores low), searched within 0.75 of the
    retina's radius from its centre (the rim's reflections lie outside)."""
    h, w = img.shape[:2]
    scale = 128 / max(h, w)  # the disc is ~13 px at this size: enough to find it, cheap
    small = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA)  # fmt: skip
    green = small[..., 1].astype(np.float32)
    inside = small.max(axis=2) > 10
    if inside.any():  # the black frame as the retina's mean: no false edge for the DoG
        green[~inside] = green[inside].mean()
    # the disc sits within ~0.6 of the retina's radius from its centre; glare hugs the rim
    rows, cols = np.ogrid[: small.shape[0], : small.shape[1]]
    ys, xs = np.nonzero(inside) if inside.any() else np.nonzero(np.ones_like(inside))
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    radius = max(ys.max() - ys.min(), xs.max() - xs.min()) / 2  # photos cut the circle's top
    retina = inside & ((rows - cy) ** 2 + (cols - cx) ** 2 < (0.75 * radius) ** 2)
    spot = cv2.GaussianBlur(green, (0, 0), 4.0) - cv2.GaussianBlur(green, (0, 0), 16.0)
    if retina.any():
        spot[retina == 0] = -np.inf
    r, c = np.unravel_index(int(np.argmax(spot)), spot.shape)
    return min(h - 1, round((r + 0.5) / scale)), min(w - 1, round((c + 0.5) / scale))


def _square_around(
    img: np.ndarray, mask: np.ndarray | None, centre: tuple[int, int], fraction: float
):
    """A square of ``fraction`` × the shorter side centred on ``centre``, shifted inside."""
    h, w = img.shape[:2]
    side = max(1, round(min(h, w) * fraction))
    top = min(max(0, centre[0] - side // 2), h - side)
    left = min(max(0, centre[1] - side // 2), w - side)
    sl = (slice(top, top + side), slice(left, left + side))
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
