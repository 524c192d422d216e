"""Per-class loss weights from training-set counts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def class_weights(counts: Sequence[int], mode: str | Sequence[float]) -> torch.Tensor:
    """Weights ``(K,)`` normalised to mean 1.

    Args:
        counts: training images per class.
        mode: ``inverse`` (1/n), ``inverse_sqrt`` (1/√n), or explicit weights (one per class).
    """
    counts = np.asarray(counts, dtype=np.float64)
    if isinstance(mode, str):
        safe = np.maximum(counts, 1.0)
        if mode == "inverse":
            w = 1.0 / safe
        elif mode == "inverse_sqrt":
            w = 1.0 / np.sqrt(safe)
        else:
            raise ValueError(f"loss.class_weights={mode!r}: use inverse, inverse_sqrt or a list")
    else:
        w = np.asarray(list(mode), dtype=np.float64)
        if w.shape != counts.shape:
            raise ValueError(f"loss.class_weights has {w.size} values for {counts.size} classes")
    return torch.tensor(w / w.mean(), dtype=torch.float32)
