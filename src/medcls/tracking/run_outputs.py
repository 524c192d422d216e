"""What a finished training run leaves in MLflow besides metrics: its checkpoints as artifacts
and its best model as an MLflow Model (``logger.mlflow.log_checkpoints``, ``log_last_checkpoint``,
``mlflow_model``, ``register_as``), so that the model can be served, registered, evaluated and
ensembled from another machine without the training folder."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image
from pytorch_lightning.loggers import MLFlowLogger

from medcls.data.records import Record
from medcls.tracking.mlflow_run import set_tags

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"  # run artifacts: checkpoints/best.ckpt, checkpoints/last.ckpt


def example_image(record: Record, decoded: np.ndarray) -> bytes:
    """An input example for the model: the record's own file, or (generated data) its decoded
    ``(S, S, 3)`` uint8 image as PNG."""
    if os.path.isfile(record.path):
        with open(record.path, "rb") as f:
            return f.read()
    buf = io.BytesIO()
    Image.fromarray(np.asarray(decoded)).save(buf, format="PNG")
    return buf.getvalue()


def log_run_outputs(
    logger: MLFlowLogger, settings: Mapping[str, Any], best: str, example: bytes | None
) -> dict[str, str]:
    """Upload ``best`` (and ``last.ckpt`` beside it) and log the MLflow Model, as ``settings``
    (``cfg.logger.mlflow``) say; returns the tags set. A failure here is reported and tagged,
    not raised: the run's training and test are done and stay logged."""
    client, run_id = logger.experiment, logger.run_id
    tags: dict[str, str] = {}
    if settings.get("log_checkpoints", True):
        client.log_artifact(run_id, best, CHECKPOINT_DIR)
        tags["medcls.checkpoint_artifact"] = f"{CHECKPOINT_DIR}/{os.path.basename(best)}"
        last = os.path.join(os.path.dirname(best), "last.ckpt")
        if settings.get("log_last_checkpoint", False) and os.path.isfile(last):
            client.log_artifact(run_id, last, CHECKPOINT_DIR)
    if settings.get("mlflow_model", True) and example is not None:
        from medcls.deploy.mlflow_model import log_model

        try:
            tags["medcls.model_uri"] = log_model(
                logger._tracking_uri, run_id, best, example, settings.get("register_as")
            )
        except Exception as e:  # noqa: BLE001 - the trained run must not be lost to this
            log.warning("the MLflow Model was not logged: %s: %s", type(e).__name__, e)
            tags["medcls.model_error"] = f"{type(e).__name__}: {e}"
    set_tags(logger, tags)
    return tags
