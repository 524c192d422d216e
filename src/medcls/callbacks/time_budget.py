"""``trainer.max_time``: a wall-clock budget the run is planned for, not cut off by.

Lightning's own ``max_time`` stops training where the clock runs out, in the middle of a
learning-rate schedule planned for ``max_epochs``. :class:`TimeBudget` instead measures how long
an epoch takes (training + validation) and plans how many fit in the budget, counted from the
run's start (decoding and setup included) with room kept for the test and its report: the whole
epochs that fit, then the steps of a last, partial one that still fit with its validation (so
no budget is left unused); a step-planned schedule (``scheduler=onecycle``) is stretched or
shortened to end with the last planned step, so the learning rate still anneals when time ends
training.

The plan is the run's epoch count for everything that reads ``trainer.max_epochs``: the per-epoch
loss weights (the scheduled ABN loss's α) end with it. A resumed run continues the budget, as
Lightning's own ``max_time`` timer does: the checkpoint carries the time spent and the epoch
timings, and the run is planned again from them before its first epoch, counting the epochs
already done.
"""

from __future__ import annotations

import logging
import math
import time

import pytorch_lightning as pl

log = logging.getLogger(__name__)


def parse_duration(value) -> float | None:
    """Seconds of ``trainer.max_time``: ``"DD:HH:MM:SS"`` (Lightning's form), a number of
    seconds, or ``None``."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):  # Lightning also takes {"hours": 1, "minutes": 30}
        units = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
        return float(sum(units[k] * float(v) for k, v in value.items()))
    parts = [float(p) for p in str(value).split(":")]
    if len(parts) != 4:
        raise ValueError(f"trainer.max_time={value!r}: write DD:HH:MM:SS, e.g. 00:00:06:00")
    d, h, m, s = parts
    return d * 86400 + h * 3600 + m * 60 + s


class TimeBudget(pl.Callback):
    """Plan the number of epochs (and a step-planned LR schedule) for ``budget_s`` seconds.

    Args:
        budget_s: the whole run's budget, from ``started`` (a ``time.time()``) to the end of its
            test report.
        test_images: images the test will score (its time is kept in reserve).
        report_s: seconds kept for the evaluation report after the test (and the MLflow
            logging; 20 s left a 6.5-minute HAM10000 run 2 s over its budget), at most a fifth
            of the budget.
        first_plan_step: the first plan is made after this many training steps (from their
            speed); every epoch's end plans again from the measured epochs.
    """

    def __init__(
        self,
        budget_s: float,
        started: float,
        test_images: int = 0,
        report_s: float = 30.0,
        first_plan_step: int = 20,
    ) -> None:
        self.budget_s, self.started = float(budget_s), float(started)
        self.test_images, self.report_s = int(test_images), float(report_s)
        self.first_plan_step = int(first_plan_step)
        self.planned: int | None = None  # epochs (the last may be partial)
        self.planned_steps: int | None = None
        self._val_s = self._val_images = 0.0
        self._session_started = self.started  # this process's start (``started``: the run's)
        self._earlier: dict = {}  # what a resumed checkpoint carried (see :meth:`state_dict`)

    # -- resuming -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """What a resumed run needs to continue the budget (saved in every checkpoint):
        seconds since the run's start, training seconds and the training batches they timed,
        the last validation's timing and the plan."""
        if not hasattr(self, "fit_start"):
            return {}
        return {
            "elapsed_s": time.time() - self.started,
            "train_s": self._train_s(),
            "timed_steps": self._done - self._untimed,
            "val_s": self._val_s,
            "val_images": self._val_images,
            "planned": self.planned,
            "planned_steps": self.planned_steps,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """A resumed run: the budget counts the earlier sessions' time (as Lightning's own
        ``max_time`` timer does, which would otherwise stop the run mid-plan)."""
        self._earlier = dict(state_dict or {})
        if self._earlier:
            self.started = self._session_started - float(self._earlier["elapsed_s"])
            self._val_s = float(self._earlier["val_s"])
            self._val_images = float(self._earlier["val_images"])
            self.planned = self._earlier["planned"]
            self.planned_steps = self._earlier["planned_steps"]

    def _train_s(self) -> float:
        """Training seconds (validation included) of the timed batches, earlier sessions'
        too."""
        return float(self._earlier.get("train_s", 0.0)) + time.time() - self.fit_start

    # -- measuring ----------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.cap = (
            int(trainer.max_epochs) if trainer.max_epochs and trainer.max_epochs > 0 else 10**6
        )
        self.fit_start = time.time()
        self._step_start: float | None = None
        self._first_epoch: int | None = None  # this session's first (> 0 when resumed)
        batches = max(1, trainer.num_training_batches)
        # training batches so far (a resumed run's from its checkpoint: at the start, its
        # current_epoch may still be that of the epoch the checkpoint ended)
        self._done = _batches_done(trainer)
        # batches done before this session whose time no checkpoint carried
        self._untimed = max(0, self._done - int(self._earlier.get("timed_steps", 0)))
        if self._earlier.get("timed_steps") and self._done > self._untimed:
            # resumed: plan before the first epoch starts, so that whatever reads
            # trainer.max_epochs at its start (the ABN α) sees the plan, not the cap
            epoch_s = self._train_s() * batches / (self._done - self._untimed)
            self._plan(trainer, epoch_s, self._done / batches, self._per_image_eval())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._first_epoch is None:
            self._first_epoch = trainer.current_epoch
        if trainer.current_epoch == self._first_epoch and batch_idx == 1:
            self._step_start = time.time()  # the first step carries warm-up

    def _first_plan(self, trainer, batch, batch_idx: int) -> None:
        """A plan from the speed of this session's first steps, when there is none yet (a
        new run, or one resumed from a checkpoint that carried no timings)."""
        if (
            self.planned is None
            and trainer.current_epoch == self._first_epoch
            and batch_idx == self.first_plan_step
            and self._step_start
        ):
            per_step = (time.time() - self._step_start) / batch_idx  # steps 1..batch_idx
            batches = max(1, trainer.num_training_batches)
            val_images = _val_images(trainer)
            per_image_eval = per_step / max(1, _batch_size(batch)) / 3  # forward only
            epoch_s = per_step * batches + per_image_eval * val_images
            progress = trainer.current_epoch + (batch_idx + 1) / batches
            self._plan(trainer, epoch_s, progress, per_image_eval)

    def _per_image_eval(self) -> float | None:
        return self._val_s / self._val_images if self._val_images else None

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._val_start = time.time()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._val_s = time.time() - self._val_start
            self._val_images = float(_val_images(trainer))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._first_plan(trainer, batch, batch_idx)
        self._done = trainer.current_epoch * max(1, trainer.num_training_batches) + batch_idx + 1
        if self.planned_steps is not None and self._done >= self.planned_steps:
            trainer.should_stop = True  # mid-epoch: Lightning still validates before it stops

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.planned_steps is not None and self._done >= self.planned_steps:
            return  # the plan's last (maybe partial) epoch: nothing left to plan
        batches = max(1, trainer.num_training_batches)
        timed = (self._done - self._untimed) / batches  # epochs whose time was measured
        epoch_s = self._train_s() / max(timed, 1e-9)
        self._plan(trainer, epoch_s, self._done / batches, self._per_image_eval())

    # -- planning -----------------------------------------------------------------------------
    def _plan(self, trainer, epoch_s: float, progress: float, per_image_eval) -> None:
        """Plan the run's training steps from ``epoch_s`` (one epoch with its validation) at
        ``progress`` epochs done: the whole epochs that fit, then the steps of one more
        (partial) epoch that still fit with its validation, so no budget is left unused."""
        batches = max(1, trainer.num_training_batches)
        # a fixed reserve, but never most of a short budget (a 25-second smoke run)
        report_s = min(self.report_s, 0.2 * self.budget_s)
        reserve = report_s + (per_image_eval or 0.0) * self.test_images
        left = max(0.0, self.budget_s - (time.time() - self.started) - reserve)
        epoch_s = max(epoch_s, 1e-9)
        val_s = min((per_image_eval or 0.0) * _val_images(trainer), 0.9 * epoch_s)
        whole = math.floor(progress + left / epoch_s)
        spare = left - (whole - progress) * epoch_s  # < one epoch
        extra = math.floor(max(0.0, spare - val_s) / ((epoch_s - val_s) / batches))
        steps = min(self.cap * batches, whole * batches + min(extra, batches - 1))
        done = math.ceil(progress * batches - 1e-6)
        steps = max(steps, done, 1)
        planned = math.ceil(steps / batches)
        if planned != self.planned:
            log.info(
                "time budget %.0f s: %.1f s per epoch, %.2f epoch(s) planned (%d steps; %.0f s "
                "kept for the test and its report)",
                self.budget_s, epoch_s, steps / batches, steps, reserve,
            )  # fmt: skip
        if self.planned_steps is not None and steps < self.planned_steps and steps <= done:
            # epochs ran slower than measured before: no step is left for the LR to finish
            # annealing in (a busy machine); say so, the run's metrics are those of a cut cycle
            log.warning(
                "time budget: epochs slowed down, training ends after epoch %d of the %d "
                "planned; the learning rate did not finish its cycle", planned, self.planned,
            )  # fmt: skip
        self.planned, self.planned_steps = planned, steps
        trainer.fit_loop.max_epochs = planned
        if steps <= done:
            trainer.should_stop = True
        for config in trainer.lr_scheduler_configs:
            if hasattr(config.scheduler, "replan"):
                config.scheduler.replan(steps)


def _batches_done(trainer) -> int:
    return int(trainer.fit_loop.epoch_loop.batch_progress.total.completed)


def _val_images(trainer) -> int:
    return sum(len(d.dataset) for d in _loaders(getattr(trainer, "val_dataloaders", None)))


def _loaders(loaders):
    if loaders is None:
        return []
    return loaders if isinstance(loaders, list | tuple) else [loaders]


def _batch_size(batch) -> int:
    return len(batch["label"]) if isinstance(batch, dict) else 1
