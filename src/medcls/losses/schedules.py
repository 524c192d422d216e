"""Per-epoch weight schedules, e.g. the α of the scheduled ABN loss (Funatsu et al., eq. 5)."""

from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("step", "linear", "cosine", "constant")


@dataclass(frozen=True)
class WeightSchedule:
    """A weight that moves from ``start`` to ``end`` over ``max_epochs`` epochs.

    ``epoch`` counts from 0 (Lightning's ``current_epoch``); ``E`` = ``max_epochs``:

    * ``step``: ``start`` while ``epoch < E/2``, then ``end`` (the paper: 0.9, then 0.1);
    * ``linear``: straight from ``start`` (first epoch) to ``end`` (last epoch);
    * ``cosine``: half a cosine from ``start`` to ``end``, flat at both ends;
    * ``constant``: always ``start``.
    """

    kind: str = "step"
    start: float = 0.9
    end: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"schedule {self.kind!r}: use one of {', '.join(KINDS)}")

    def __call__(self, epoch: int, max_epochs: int | None) -> float:
        if self.kind == "constant":
            return float(self.start)
        if not max_epochs or max_epochs < 1:
            raise ValueError(
                f"a {self.kind} weight schedule needs the number of epochs: set "
                f"trainer.max_epochs (got {max_epochs})."
            )
        if self.kind == "step":
            return float(self.start if epoch < max_epochs / 2 else self.end)
        t = min(
            max(epoch / max(max_epochs - 1, 1), 0.0), 1.0
        )  # 0 at the first epoch, 1 at the last
        if self.kind == "cosine":
            t = (1 - math.cos(math.pi * t)) / 2
        return float(self.start + (self.end - self.start) * t)
