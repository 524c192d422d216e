"""Optuna pruning inside a training job: report the monitored val metric per epoch, stop early.

Optuna's own Lightning integration lives in a separate package (optuna-integration) and stops
a run by raising ``TrialPruned``, which would end the job as failed; here a pruned job stops
like an early-stopped one, keeps its best checkpoint and ends normally, and the sweeper reads
``pruned_at_epoch`` from the trial to store it as PRUNED.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl

log = logging.getLogger(__name__)


class OptunaPruning(pl.Callback):
    """After every validation (not the sanity check) report ``monitor`` to ``trial`` at the
    epoch's number; when the study's pruner prunes it, stop training.

    Args:
        trial: an ``optuna.Trial`` of a stored study (``medcls.search.study.job_trial``).
        monitor: the logged metric, e.g. ``val/balanced_accuracy``.
    """

    def __init__(self, trial, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.pruned_at is not None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        prune = False
        if trainer.is_global_zero and value is not None:
            epoch = trainer.current_epoch
            self.trial.report(float(value), step=epoch)
            prune = self.trial.should_prune()
            if prune:
                self.trial.set_user_attr("pruned_at_epoch", epoch)
        if trainer.strategy.broadcast(prune):  # every DDP process stops together
            self.pruned_at = trainer.current_epoch
            trainer.should_stop = True
            log.info(
                "Optuna pruned trial %d at epoch %d (%s = %s)",
                self.trial.number, self.pruned_at, self.monitor, value,
            )  # fmt: skip


def pruned_epoch(trainer: pl.Trainer) -> int | None:
    """The epoch at which this run's trial was pruned, or None."""
    for c in trainer.callbacks:
        if isinstance(c, OptunaPruning) and c.pruned_at is not None:
            return c.pruned_at
    return None
