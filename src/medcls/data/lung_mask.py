"""A classical lung-field extractor for CT slices without lung masks (``data.mask.source:
lung_threshold``): threshold + morphology + the largest dark components inside the body.

On a lung-window CT slice the lungs are the large dark regions enclosed by brighter tissue (chest
wall, mediastinum). The steps, at a working size of 256 px:

1. smooth, then split dark from bright with Otsu's threshold;
2. the body: the convex hull of the largest bright component (chest wall and mediastinum);
3. dark components lying mostly (≥ 60 %) inside that hull are lung candidates. So is a dark
   component only partly inside it whose own convex hull covers little of the bright body: a
   lung running off the edge of a tightly cropped slice. Air around the body wraps the body
   (its hull covers it) and is dropped;
4. keep the largest candidate and a second one of at least 15 % its size (the other lung);
   small ones (trachea, bowel gas specks) go;
5. close and fill holes in each lung, so vessels and bright lesions inside it stay in the mask.

It is a fallback, not a segmentation model (Funatsu et al. used the U-Net of Hofmanninger et al.
2020): dense consolidations touching the chest wall can be cut off, and slices without a clear
dark lung field give no mask at all (those images then add nothing to the map loss).

A slice read from DICOM or NIfTI keeps its Hounsfield units, and there step 1 splits at a
physical value instead (:func:`lung_field_mask_hu`: air and aerated lung are below -400 HU).
"""

from __future__ import annotations

import cv2
import numpy as np

VERSION = 1  # part of the decode-cache key: bump when the masks it draws change
WORK_SIZE = 256
INSIDE_BODY = 0.6  # share of a dark component that must lie inside the body hull …
PARTLY_INSIDE = 0.1  # … or at least this share, for a lung cut by the image edge, if
WRAPS_BODY = 0.3  # its own hull covers less than this share of the bright body
MIN_AREA = 0.005  # of the image: smaller dark components are noise
SECOND_LUNG = 0.15  # of the largest lung: smaller components are not the other lung
AIR_HU = -400.0  # HU slices: lung parenchyma and air lie below, every tissue above
HU_RANGE = (-1000.0, 400.0)  # HU slices are put on 0..255 over this range before the steps


def _largest(mask: np.ndarray, connectivity: int = 8) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity)
    if n <= 1:
        return np.zeros_like(mask, dtype=bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a binary mask: everything not reachable from the border."""
    padded = np.pad(mask.astype(np.uint8), 1)
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((flood.shape[0] + 2, flood.shape[1] + 2), np.uint8), (0, 0), 1)
    return (mask | (flood[1:-1, 1:-1] == 0)).astype(bool)


def _wraps(component: np.ndarray, body: np.ndarray) -> bool:
    """True when the component's convex hull covers much of the body (air around it)."""
    hull = np.zeros(component.shape, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(cv2.findNonZero(component.astype(np.uint8))), 1)
    return bool((hull[body] > 0).sum() >= WRAPS_BODY * body.sum())


def _ellipse(size: int) -> np.ndarray:
    size = max(3, size | 1)  # odd, at least 3
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def lung_field_mask_hu(hu: np.ndarray) -> np.ndarray | None:
    """``(H, W)`` CT slice in Hounsfield units → ``(H, W)`` uint8 lung mask (0/255), or None.

    The same steps as :func:`lung_field_mask`, but dark means air-filled (below
    :data:`AIR_HU`), a physical threshold, instead of Otsu's split of an 8-bit slice, which
    moves with the window, the scanner and how much of the slice is lung."""
    lo, hi = HU_RANGE
    scaled = (np.nan_to_num(np.asarray(hu, np.float64), nan=lo) - lo) / (hi - lo) * 255.0
    gray = np.rint(np.clip(scaled, 0, 255)).astype(np.uint8)
    return lung_field_mask(gray, threshold=(AIR_HU - lo) / (hi - lo) * 255.0)


def lung_field_mask(image: np.ndarray, threshold: float | None = None) -> np.ndarray | None:
    """``(H, W)`` or ``(H, W, 3)`` uint8 CT slice → ``(H, W)`` uint8 lung mask (0/255), or None
    when no lung-like dark region is found. ``threshold``: grey values at or below it are dark
    (default: Otsu's threshold of the slice)."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    scale = WORK_SIZE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    g = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    g = cv2.GaussianBlur(g, (5, 5), 0)
    if int(g.max()) - int(g.min()) < 10:  # a flat image has no lungs to find
        return None
    if threshold is None:
        t, _ = cv2.threshold(g, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    else:
        t = threshold
    dark = cv2.morphologyEx((g <= t).astype(np.uint8), cv2.MORPH_OPEN, _ellipse(5)) > 0

    body = _largest(~dark)
    hull = np.zeros(g.shape, np.uint8)
    points = cv2.findNonZero(body.astype(np.uint8))
    if points is None:
        return None
    cv2.fillConvexPoly(hull, cv2.convexHull(points), 1)

    n, labels, stats, _ = cv2.connectedComponentsWithStats(dark.astype(np.uint8), 4)
    inside = np.bincount(labels[hull > 0].ravel(), minlength=n)
    areas = stats[:, cv2.CC_STAT_AREA]
    candidates = [
        i
        for i in range(1, n)
        if areas[i] >= MIN_AREA * g.size
        and (
            inside[i] >= INSIDE_BODY * areas[i]
            or (inside[i] >= PARTLY_INSIDE * areas[i] and not _wraps(labels == i, body))
        )
    ]
    if not candidates:
        return None
    candidates.sort(key=lambda i: -areas[i])
    keep = [c for c in candidates[:2] if areas[c] >= SECOND_LUNG * areas[candidates[0]]]
    close = _ellipse(round(0.04 * max(g.shape)))
    lungs = np.zeros(g.shape, bool)
    for c in keep:  # one lung at a time: closing both at once would bridge the mediastinum
        lung = cv2.morphologyEx((labels == c).astype(np.uint8), cv2.MORPH_CLOSE, close) > 0
        lungs |= _fill_holes(lung)
    out = cv2.resize(lungs.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.where(out > 127, 255, 0).astype(np.uint8)
