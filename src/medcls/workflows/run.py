"""The one run lifecycle of the commands that record a run (medcls-train, -eval, -ensemble and
the frozen-feature probes): :func:`start_run` opens the MLflow run with the settings, the tags
every run carries plus the command's own, and the images it used; :func:`end_run` prints the
metrics tables and where the run is. Between them each command does its own work and logs its
own files (:func:`medcls.workflows.common.log_run_files`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, MLFlowLogger

from medcls.data.datamodule import ClassificationDataModule
from medcls.evaluation.class_counts import write_class_counts
from medcls.tracking.datasets import log_partitions
from medcls.tracking.mlflow_run import (
    config_locations,
    config_params,
    find_mlflow,
    git_commit,
    reopen_run,
    run_location,
    set_tags,
)
from medcls.utils.console import console, print_metrics_table
from medcls.workflows.common import log_run_files

# (metrics, title, extra rows): one printed table
Table = tuple[Mapping[str, float], str, Mapping[str, str] | None]


def start_run(
    cfg: DictConfig,
    loggers: Sequence[Logger],
    tags: Mapping[str, Any],
    dm: ClassificationDataModule | None = None,
    parts: Mapping[str, Any] | None = None,
    resumed_from: str | None = None,
    parent: str | None = None,
) -> MLFlowLogger | None:
    """The MLflow logger among ``loggers`` (``None``: the run is not tracked), started.

    Every run gets its settings as params (a continued run, ``resumed_from`` its checkpoint, is
    reopened instead: its params stay those it started with), the tags where its config and data
    live, the git commit, the Hydra overrides, the command's ``tags`` and ``cfg.tags`` (which
    win); with ``dm``, the images of ``parts`` (``{name: indices}``) as MLflow datasets (the UI's
    Dataset column); with ``parent``, the sweep's run it belongs under.
    """
    mlf = find_mlflow(loggers)
    if mlf is None:
        return None
    if parent:
        set_tags(mlf, {"mlflow.parentRunId": parent})
    if resumed_from is None:
        mlf.log_hyperparams(config_params(cfg))
    else:  # RUNNING again, in the same MLflow run
        reopen_run(mlf.experiment, mlf.run_id, resumed_from)
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    common = {
        **config_locations(cfg),  # paths and URIs: tags, not params
        "git_commit": git_commit(os.path.dirname(__file__)),
        "overrides": " ".join(overrides),
    }
    set_tags(mlf, {**common, **tags, **(cfg.get("tags") or {})})
    if dm is not None and parts:
        log_partitions(mlf.experiment, mlf.run_id, dm.source_name, dm.data_uri, dm.records,
                       dict(parts), dm.class_names)  # fmt: skip
    return mlf


def end_run(mlf: MLFlowLogger | None, tables: Sequence[Table], level: float) -> None:
    """The run's metrics tables (intervals at ``level``), then where the run is in MLflow."""
    for metrics, title, extra in tables:
        print_metrics_table(metrics, title, extra, level)
    if mlf is not None:
        console.print(run_location(mlf))


def start_training_run(
    cfg: DictConfig,
    loggers: Sequence[Logger],
    dm: ClassificationDataModule,
    tags: Mapping[str, Any],
    out_dir: str,
    resumed_from: str | None = None,
) -> MLFlowLogger | None:
    """:func:`start_run` as every training run (and probe) starts: tagged with its dataset,
    network and fold, with its train/val/test images; the resolved config (a continued run
    adds ``resolved_config_resumed.yaml``) and Hydra's own record logged; then the images per
    class and partition (table and figure), the data before the metrics. Main process only."""
    tags = {"dataset": dm.source_name, "model": cfg.model.name, "fold": cfg.data.fold, **tags}
    parts = {k: dm.partitions[k] for k in ("train", "val", "test")}
    mlf = start_run(cfg, loggers, tags, dm, parts, resumed_from=resumed_from)
    os.makedirs(out_dir, exist_ok=True)
    if mlf is not None:
        name = "resolved_config_resumed.yaml" if resumed_from else "resolved_config.yaml"
        OmegaConf.save(cfg, os.path.join(out_dir, name), resolve=True)
        log_run_files(loggers, [os.path.join(out_dir, name)])
        hydra_dir = os.path.join(out_dir, ".hydra")  # Hydra's own record: config + overrides
        if os.path.isdir(hydra_dir):
            log_run_files(loggers, [hydra_dir], "hydra")
    title = f"{cfg.run_name}: images per class"
    counts = write_class_counts(out_dir, dm.class_names, dm.labels, dm.partitions, title)
    log_run_files(loggers, counts)
    return mlf
