"""Learning-rate schedules that are planned in optimiser steps (``conf/scheduler/onecycle``).

A schedule stepped every batch needs the run's total number of steps, which only the trainer
knows (epochs × batches per epoch, or what a time budget leaves, see
:class:`~medcls.callbacks.TimeBudget`): the task passes ``total_steps`` when it builds one.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import OneCycleLR


class PlannedOneCycleLR(OneCycleLR):
    """torch's :class:`OneCycleLR` (Smith & Topin 2019: warm up to ``max_lr`` over
    ``pct_start`` of the steps, then anneal by cosine to ``max_lr / div_factor /
    final_div_factor``) whose length can be planned again mid-run (:meth:`replan`).

    Steps beyond the plan hold the final learning rate instead of raising.
    """

    per_step = True  # stepped every optimiser step, built with the run's total_steps

    def __init__(self, optimizer: Optimizer, total_steps: int, pct_start: float = 0.3, **kw):
        self.pct_start = float(pct_start)
        super().__init__(optimizer, total_steps=int(total_steps), pct_start=self.pct_start, **kw)

    def replan(self, total_steps: int) -> None:
        """End the cycle after ``total_steps`` steps in all (at least the ones already taken):
        the warm-up and annealing phases are stretched or shortened around the current step."""
        total = max(int(total_steps), self.last_epoch, 1)  # last_epoch: steps taken
        self.total_steps = total
        self._schedule_phases[0]["end_step"] = float(self.pct_start * total) - 1
        self._schedule_phases[-1]["end_step"] = total - 1

    def get_lr(self) -> list[float]:
        if self.last_epoch >= self.total_steps:  # past the plan: stay at the end of the cycle
            return [group["min_lr"] for group in self.optimizer.param_groups]
        # torch divides by each phase's length, 0 in a short run (4 steps × pct_start 0.25:
        # the warm-up ends at step 0, where it starts): give each phase at least half a step
        first, last = self._schedule_phases[0], self._schedule_phases[-1]
        first["end_step"] = max(first["end_step"], 0.5)
        last["end_step"] = max(last["end_step"], first["end_step"] + 0.5)
        return super().get_lr()
