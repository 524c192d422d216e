"""Frozen-backbone features of every image, computed once and cached on disk.

The frozen-feature probes (``task=knn``, ``task=linear_probe``) fit a small head on what a
backbone makes of each image; the backbone never changes, so its features are a function of the
images, the backbone's weights and the normalisation only. They are kept in one ``.npz`` per
dataset × preprocessing × backbone × weights × normalisation, aligned with the source's record
list (all records, whatever the split), so folds, split seeds and a sweep over the head's
settings reuse them: on a hit nothing is decoded and nothing is embedded.

The key extends the decode cache's (:func:`medcls.data.cache.cache_key`: source name, records'
files, preprocessing) with the backbone's configuration, a digest of its state dict (pretrained
or seeded random weights alike) and the mean/std. A file that does not hold what its key
promises (truncated, another size, unreadable) is rebuilt, not trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from medcls.data.cache import DecodedImages, cache_key
from medcls.data.preprocess import Preprocess
from medcls.data.records import Record

log = logging.getLogger(__name__)
FEATURES_VERSION = 1


@dataclass
class Features:
    """Arrays aligned with the source's record list.

    Attributes:
        features: ``(N, D)`` float32; rows of images that could not be decoded are 0.
        ok: ``(N,)`` bool, False for images that could not be decoded (skipped).
        bad: ``(path, reason)`` for every skipped image.
    """

    features: np.ndarray
    ok: np.ndarray
    bad: list[tuple[str, str]]


def weights_digest(module: nn.Module) -> str:
    """SHA-1 of a module's state dict (names, dtypes, shapes and bytes of every tensor): the
    same for the same weights, whether loaded from a file or drawn from a seed."""
    h = hashlib.sha1()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def feature_key(
    name: str,
    records: Sequence[Record],
    pre: Preprocess,
    backbone: Mapping[str, Any],
    digest: str,
    mean: Sequence[float],
    std: Sequence[float],
) -> str:
    """What the features depend on: the decode cache's key (source name, the records' files,
    the preprocessing), the backbone's config (``conf/model`` keys that shape its output), the
    digest of its weights and the normalisation."""
    parts = {
        "version": FEATURES_VERSION,
        "images": cache_key(name, records, pre, load_masks=False),
        "backbone": dict(backbone),
        "weights": digest,
        "mean": [round(float(m), 8) for m in mean],
        "std": [round(float(s), 8) for s in std],
    }
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def feature_path(cache_dir: str | None, name: str, model: str, size: int, key: str) -> str:
    """``<cache_dir>/features/<source>-<size>px-<model>-<key[:16]>.npz``."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in model)
    return os.path.join(cache_dir or ".", "features", f"{name}-{size}px-{safe}-{key[:16]}.npz")


def load_features(path: str, n: int) -> Features | None:
    """The cached features of ``n`` records, or None when there are none; a damaged file
    (unreadable, another row count, non-finite values, another version) is removed and None
    returned, so the caller computes them again."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            feats = Features(z["features"], z["ok"].astype(bool), [tuple(b) for b in meta["bad"]])
        problem = _damage(feats, meta, n)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        problem = f"{type(e).__name__}: {e}"
    if problem is None:
        return feats
    log.warning("feature cache %s is damaged (%s); computing the features again", path, problem)
    with contextlib.suppress(OSError):  # (another job may have removed it already)
        os.remove(path)
    return None


def _damage(feats: Features, meta: dict, n: int) -> str | None:
    """Why ``feats`` are not what a cache file of ``n`` records must hold (None: they are)."""
    if meta.get("version") != FEATURES_VERSION:
        return f"version {meta.get('version')}, expected {FEATURES_VERSION}"
    if feats.features.ndim != 2 or len(feats.features) != n or feats.ok.shape != (n,):
        return f"features {feats.features.shape}, ok {feats.ok.shape}, expected {n} rows"
    if not np.isfinite(feats.features).all():
        return "non-finite values"
    return None


def save_features(path: str, feats: Features) -> None:
    """Write ``feats`` to ``path`` through a temporary file renamed into place (an interrupted
    write leaves no half file); a disk that refuses is a warning: this run keeps its features."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                meta = json.dumps({"version": FEATURES_VERSION, "bad": feats.bad})
                np.savez(f, features=feats.features, ok=feats.ok, meta=np.array(meta))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    except OSError as e:
        log.warning("could not write feature cache %s: %s", path, e)


def embed(
    backbone: nn.Module,
    images: np.ndarray,
    rows: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 64,
    device: str = "cpu",
) -> np.ndarray:
    """The backbone's features of ``images[rows]``, in eval mode and without gradients.

    ``images``: ``(N, S, S, 3)`` uint8 (the decode cache; ascending ``rows`` read a memory map
    in order), normalised as the tasks do it: ``(x - 255·mean) / (255·std)``, batch by batch.
    Returns ``(len(rows), D)`` float32 (a ``flatten`` pool's feature map flattened)."""
    was_training = backbone.training
    backbone.eval().to(device)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255
    out = []
    try:
        with torch.inference_mode():
            for start in range(0, len(rows), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(images[rows[start : start + batch_size]]))
                x = (x.to(device).permute(0, 3, 1, 2).float() - m) / s
                out.append(backbone(x).flatten(1).float().cpu().numpy())
    finally:
        backbone.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def features_of(
    backbone: nn.Module,
    decoded: DecodedImages,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 64,
    device: str = "cpu",
) -> Features:
    """:func:`embed` every decoded image; ``(N, D)`` rows aligned with ``decoded``'s records,
    zeros for the images that could not be decoded."""
    rows = np.flatnonzero(decoded.ok)
    x = embed(backbone, decoded.images, rows, mean, std, batch_size, device)
    full = np.zeros((len(decoded.ok), x.shape[1]), np.float32)
    full[rows] = x
    return Features(full, np.asarray(decoded.ok, bool).copy(), list(decoded.bad))
