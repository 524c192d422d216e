"""Grad-CAM overlays as PNG files: image | image with the heat map, under a caption line
(true class, predicted class and its probability).

Also picks which test images to show: per class, correct and wrong predictions in turn, the
most confident first (a confident mistake is the most telling one).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

TILE = 160  # px per tile, as the ABN attention overlays: 64 px images would be too small to judge
CAPTION = 22  # px of the caption line above the two tiles


def pick_examples(labels: np.ndarray, probs: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` row indices: for each class in turn, its next correct and next wrong
    prediction (each list ordered by the predicted class's probability, highest first).

    Shapes: ``labels (N,)``, ``probs (N, K)`` → ``(≤ n,)`` in the order picked.
    """
    pred, conf = probs.argmax(axis=1), probs.max(axis=1)
    queues: list[list[int]] = []
    for c in np.unique(labels):
        for correct in (True, False):
            rows = np.flatnonzero((labels == c) & ((pred == c) == correct))
            queues.append(rows[np.argsort(-conf[rows], kind="stable")].tolist())
    picked: list[int] = []
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return np.array(picked, dtype=np.int64)


def overlay(image: np.ndarray, heatmap: np.ndarray, caption: str = "") -> np.ndarray:
    """``image (S, S, 3)`` uint8 and ``heatmap (h, w)`` in [0, 1] →
    ``(CAPTION + TILE, 2·TILE, 3)`` uint8: the image, and the image half-blended with the map
    in the JET colour map (red: where the evidence for the explained class is)."""
    base = cv2.resize(np.ascontiguousarray(image), (TILE, TILE), interpolation=cv2.INTER_LINEAR)
    h = cv2.resize(heatmap.astype(np.float32), (TILE, TILE), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap((np.clip(h, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    tiles = np.concatenate([base, (0.5 * base + 0.5 * heat).astype(np.uint8)], axis=1)
    bar = np.full((CAPTION, 2 * TILE, 3), 255, dtype=np.uint8)
    # Hershey fonts draw ASCII only: anything else would come out as '?'
    text = caption.encode("ascii", "replace").decode()
    cv2.putText(bar, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, tiles], axis=0)


def caption_for(
    class_names: Sequence[str], probs: np.ndarray, label: int | None = None
) -> tuple[str, str]:
    """Caption and a file-name part for one image's ``probs (K,)`` and optional true label."""
    pred = int(np.argmax(probs))
    said = f"pred {class_names[pred]} {probs[pred]:.2f}"
    if label is None or label < 0:
        return said, f"pred-{class_names[pred]}"
    true = class_names[label] if label < len(class_names) else "unknown"
    mark = "ok" if pred == label else "WRONG"
    return f"{mark}: true {true}, {said}", f"true-{true}_pred-{class_names[pred]}"


def safe_name(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.\-]", "_", text)


def write_overlays(
    dirpath: str,
    images: np.ndarray,
    heatmaps: np.ndarray,
    captions: Sequence[str],
    names: Sequence[str],
    grid: str | None = "overview.png",
) -> list[str]:
    """One ``<name>.png`` per image in ``dirpath`` (+ all of them stacked in ``grid``).

    Shapes: ``images (N, S, S, 3)`` uint8, ``heatmaps (N, S, S)`` in [0, 1]. Returns the paths.
    """
    os.makedirs(dirpath, exist_ok=True)
    tiles = [overlay(im, h, c) for im, h, c in zip(images, heatmaps, captions, strict=True)]
    paths = []
    for tile, name in zip(tiles, names, strict=True):
        path = os.path.join(dirpath, f"{safe_name(name)}.png")
        Image.fromarray(tile).save(path)
        paths.append(path)
    if grid and tiles:
        path = os.path.join(dirpath, grid)
        Image.fromarray(np.concatenate(tiles, axis=0)).save(path)
        paths.append(path)
    return paths
