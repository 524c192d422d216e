"""A training run's checkpoint wherever the caller is: the local file the run recorded when it
is there, else the copy in the run's artifact store (``logger.mlflow.log_checkpoints``), so that
medcls-eval and medcls-ensemble work from another machine through a tracking server."""

from __future__ import annotations

import logging
import os

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from medcls.errors import DataError

log = logging.getLogger(__name__)


def run_checkpoint(tracking_uri: str | None, run_id: str, cache_dir: str) -> str:
    """The best checkpoint of MLflow run ``run_id``: its ``best_checkpoint`` file if this
    machine has it, else downloaded into ``<cache_dir>/<run_id>/`` (reused on the next call)."""
    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        raise DataError(
            f"MLflow run {run_id} not found in {tracking_uri or 'the default store'} "
            f"({e.error_code}); check the id, and logger.mlflow.tracking_uri (or "
            "MLFLOW_TRACKING_URI) for the store it was logged to."
        ) from None
    local = run.data.tags.get("best_checkpoint")
    if local and os.path.isfile(local):
        return local
    artifact = run.data.tags.get("medcls.checkpoint_artifact")
    if not artifact:
        raise DataError(
            f"MLflow run {run_id}: its checkpoint ({local or 'no best_checkpoint tag'}) is not on "
            "this machine and the run holds no copy (trained with "
            "logger.mlflow.log_checkpoints=false, or not a medcls-train run); give ckpt_path= "
            "or checkpoints=[...] with the file instead."
        )
    dst = os.path.join(cache_dir, run_id)
    path = os.path.join(dst, artifact)
    if not os.path.isfile(path):
        os.makedirs(dst, exist_ok=True)
        part = client.download_artifacts(run_id, artifact, dst)
        log.info("fetched %s of MLflow run %s into %s", artifact, run_id, part)
        path = part
    return path


def fetch_dir(cfg) -> str:
    """Where fetched checkpoints are kept: beside the decode cache (``paths.cache_dir``)."""
    return os.path.join(str(cfg.paths.cache_dir), "mlflow_checkpoints")


def checkpoint_to_evaluate(cfg) -> str:
    """``ckpt_path=`` (a file), or the best checkpoint of ``run_id=`` (see run_checkpoint)."""
    if cfg.get("run_id"):
        return run_checkpoint(cfg.logger.mlflow.tracking_uri, str(cfg.run_id), fetch_dir(cfg))
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    raise DataError(
        "which model? give ckpt_path=<run dir>/checkpoints/best.ckpt, or run_id=<MLflow run of "
        "medcls-train> (its checkpoint is fetched from the tracking server when not local)."
    )
