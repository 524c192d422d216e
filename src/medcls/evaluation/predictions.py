"""What the evaluation report takes: a model's (or an ensemble's) softmax on evaluated images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medcls.data.records import Record


@dataclass
class Predictions:
    """A model's (or an ensemble's) softmax on evaluated images.

    Shapes: ``probs (N, K)``, ``labels (N,)`` (indices into ``class_names``), ``records [N]``
    (path, group, source of each image). ``positive``: the positive class of a binary task.
    """

    probs: np.ndarray
    labels: np.ndarray
    records: Sequence[Record]
    class_names: Sequence[str]
    positive: int = 1

    @property
    def groups(self) -> list[str | None]:
        return [r.group for r in self.records]
