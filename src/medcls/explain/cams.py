"""Grad-CAM overlays where the workflows need them: a few test images at the end of training
(``cam.num_images``) and every image of ``medcls-predict … cam=true``."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from medcls.explain.gradcam import task_heatmaps
from medcls.explain.overlays import caption_for, pick_examples, write_overlays

log = logging.getLogger(__name__)


def write_test_cams(
    dirpath: str,
    task: nn.Module,
    images: np.ndarray,
    outputs: dict,
    image_ids: Sequence[str],
    class_names: Sequence[str],
    num_images: int,
    target_layer: str | None = None,
) -> list[str]:
    """Overlays of ``num_images`` test images (per class, correct and wrong ones in turn; see
    :func:`~medcls.explain.overlays.pick_examples`), each explaining the predicted class.

    Args:
        images: the decoded images ``(R, S, S, 3)`` uint8, indexed by record (``outputs["index"]``).
        outputs: the task's ``test_outputs``: ``probs (N, K)``, ``labels (N,)``, ``index (N,)``.
        image_ids: one per record (file stems), for the PNG names.
    Returns the PNG paths (one per image, ``<rank>_true-<c>_pred-<c>_<id>.png``, + overview.png).
    """
    probs, labels, index = outputs["probs"], outputs["labels"], outputs["index"]
    rows = pick_examples(labels, probs, num_images)
    if rows.size == 0:
        return []
    k = probs.shape[1]
    # a rejected "unknown" column (data.unknown=reject) is not a model output to explain
    model_k = len(getattr(task, "class_names", class_names))
    pred = probs[rows].argmax(axis=1)
    explained = np.where(pred < model_k, pred, probs[rows, :model_k].argmax(axis=1))
    picked = np.asarray(images[np.asarray(index[rows])])  # (n, S, S, 3)
    batch = torch.from_numpy(picked).permute(0, 3, 1, 2).contiguous()
    maps, layer = task_heatmaps(task, batch, explained.tolist(), target_layer)
    captions, names = [], []
    for j, r in enumerate(rows):
        caption, part = caption_for(list(class_names)[:k], probs[r], int(labels[r]))
        captions.append(caption)
        names.append(f"{j:02d}_{part}_{image_ids[int(index[r])]}")
    log.info("Grad-CAM of %d test images at layer %s", len(rows), layer)
    return write_overlays(dirpath, picked, maps, captions, names)


def write_predict_cams(
    dirpath: str,
    task: nn.Module,
    images: np.ndarray,
    probs: np.ndarray,
    image_ids: Sequence[str],
    class_names: Sequence[str],
    target_layer: str | None = None,
    batch_size: int = 32,
) -> list[str]:
    """One overlay per predicted image (``<id>.png``, explaining its predicted class).

    Shapes: ``images (N, S, S, 3)`` uint8, ``probs (N, K)``; ``image_ids`` ``[N]``.
    """
    paths: list[str] = []
    seen: dict[str, int] = {}
    for start in range(0, len(images), batch_size):
        chunk = np.asarray(images[start : start + batch_size])
        p = probs[start : start + batch_size]
        batch = torch.from_numpy(chunk).permute(0, 3, 1, 2).contiguous()
        maps, _ = task_heatmaps(task, batch, p.argmax(axis=1).tolist(), target_layer)
        names = []
        for image_id in image_ids[start : start + batch_size]:
            n = seen.get(image_id, 0)  # the same file name in two sub-folders
            seen[image_id] = n + 1
            names.append(image_id if n == 0 else f"{image_id}_{n}")
        captions = [caption_for(class_names, row)[0] for row in p]
        paths += write_overlays(dirpath, chunk, maps, captions, names, grid=None)
    return paths


def run_test_cams(cam_cfg, task: nn.Module, dm, outputs: dict, dirpath: str) -> list[str]:
    """``cam.num_images`` test-image overlays for a finished run, in ``dirpath``; nothing when
    ``cam.num_images`` is 0. A model Grad-CAM cannot explain (an ABN, a transformer) gets a
    warning, not an error: the trained model and its metrics matter more than the pictures."""
    from medcls.errors import DataError

    n = int((cam_cfg or {}).get("num_images") or 0)
    if n <= 0 or not len(outputs.get("index", ())):
        return []
    try:
        return write_test_cams(
            dirpath,
            task,
            dm.decoded.images,
            outputs,
            [r.image_id for r in dm.records],
            outputs.get("class_names", dm.class_names),
            n,
            (cam_cfg or {}).get("target_layer"),
        )
    except DataError as e:
        log.warning("cam.num_images=%d: no Grad-CAM overlays: %s", n, e)
        return []
