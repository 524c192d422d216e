"""What a finished training run uploads to MLflow besides metrics: its checkpoints as
artifacts (``logger.mlflow.log_checkpoints``, ``log_last_checkpoint``), so that the model can be
evaluated and ensembled from another machine without the training folder. (The MLflow Model is
:mod:`medcls.deploy.mlflow_model`'s; the training workflow logs it.)"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pytorch_lightning.loggers import MLFlowLogger

CHECKPOINT_DIR = "checkpoints"  # run artifacts: checkpoints/best.ckpt, checkpoints/last.ckpt


def log_checkpoints(logger: MLFlowLogger, settings: Mapping[str, Any], best: str) -> dict[str, str]:
    """Upload ``best`` (and ``last.ckpt`` beside it) as ``settings`` (``cfg.logger.mlflow``)
    say; returns the tags that say where (for the caller to set)."""
    client, run_id = logger.experiment, logger.run_id
    tags: dict[str, str] = {}
    if settings.get("log_checkpoints", True):
        client.log_artifact(run_id, best, CHECKPOINT_DIR)
        tags["medcls.checkpoint_artifact"] = f"{CHECKPOINT_DIR}/{os.path.basename(best)}"
        last = os.path.join(os.path.dirname(best), "last.ckpt")
        if settings.get("log_last_checkpoint", False) and os.path.isfile(last):
            client.log_artifact(run_id, last, CHECKPOINT_DIR)
    return tags
