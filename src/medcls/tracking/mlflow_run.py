"""Helpers around Lightning's MLFlowLogger: params once, tags, artifacts, where the run is."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, MLFlowLogger

log = logging.getLogger(__name__)


def find_mlflow(loggers: Iterable[Logger]) -> MLFlowLogger | None:
    return next((lg for lg in loggers if isinstance(lg, MLFlowLogger)), None)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` → ``{"a.b": "1"}``; lists stay one value."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)
    return out


def config_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config's settings (without Hydra's own node), flattened for MLflow params;
    where things are (:func:`is_location`) goes to :func:`config_locations` instead, so that
    runs compared in the UI differ only in what was set differently."""
    return {k: v for k, v in _flat_config(cfg).items() if not is_location(k, v)}


def config_locations(cfg: DictConfig) -> dict[str, str]:
    """The config's paths, URIs and per-job identities: tags, not params (unset ones left
    out: a tag ``ckpt_path: None`` says nothing)."""
    return {k: v for k, v in _flat_config(cfg).items() if is_location(k, v) and v != "None"}


def _flat_config(cfg: DictConfig) -> dict[str, str]:
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    container.pop("hydra", None)
    return flatten(container)


# config groups that only say where things are, or which trial a job is
LOCATION_GROUPS = ("paths.", "optuna.")
LOCATION_NAMES = ("dirpath", "root", "tracking_uri", "ckpt_path", "filename")
LOCATION_SUFFIXES = ("_dir", "_path", "_file", "_csv", "_uri")


def is_location(key: str, value: str) -> bool:
    """A path, a store URI or a per-job identity (``callbacks.model_checkpoint.dirpath``,
    ``paths.output_dir``, ``data.root``, ``logger.mlflow.tracking_uri``, ``optuna.trial``)."""
    name = key.rsplit(".", 1)[-1]
    if key.startswith(LOCATION_GROUPS) or name in LOCATION_NAMES:
        return True
    if name.endswith(LOCATION_SUFFIXES):
        return True
    return value.startswith(("/", "~/", "./", "../")) or "://" in value


def git_commit(path: str = ".") -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def set_tags(logger: MLFlowLogger, tags: Mapping[str, Any]) -> None:
    for k, v in tags.items():
        logger.experiment.set_tag(logger.run_id, k, str(v)[:5000])


def reopen_run(client, run_id: str, checkpoint: str) -> None:
    """A resumed run (``ckpt_path``, a requeued job) is RUNNING again: the error or
    interruption recorded when it stopped goes, ``medcls.resumes`` counts the restarts."""
    run = client.get_run(run_id)
    tags = run.data.tags
    for key in ("medcls.error", "medcls.interrupted"):
        if key in tags:
            client.delete_tag(run_id, key)
    client.set_tag(run_id, "medcls.resumes", str(int(tags.get("medcls.resumes", 0)) + 1))
    client.set_tag(run_id, "medcls.resumed_from", os.path.abspath(checkpoint))
    if run.info.status != "RUNNING":
        client.update_run(run_id, status="RUNNING")


def log_artifacts(
    logger: MLFlowLogger, paths: Iterable[str], artifact_path: str | None = None
) -> None:
    for p in paths:
        if p and os.path.exists(p):
            if os.path.isdir(p):
                logger.experiment.log_artifacts(logger.run_id, p, artifact_path)
            else:
                logger.experiment.log_artifact(logger.run_id, p, artifact_path)


def run_location(logger: MLFlowLogger) -> str:
    uri = logger._tracking_uri or "(default)"
    # a tracking server is its own UI; a local store is opened with medcls-ui (MLflow UI on it)
    view = (
        uri if uri.startswith(("http://", "https://")) else f"medcls-ui --backend-store-uri {uri}"
    )
    return (
        f"MLflow run {logger.run_id} (experiment '{logger._experiment_name}') in {uri}\n"
        f"  view it: {view}"
    )
