"""One MLflow parent run per Hydra multirun; every job becomes its child.

``MLflowSweepCallback`` (registered in ``conf/hydra/default.yaml``) opens the parent run when a
multirun starts and writes its id to ``<sweep dir>/mlflow_parent_run_id``; each job reads that
file (it works across processes and machines: joblib, submitit, SLURM) and tags its own run with
``mlflow.parentRunId``, which is how the MLflow UI nests runs.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger(__name__)
PARENT_FILE = "mlflow_parent_run_id"


def _tracking(config: DictConfig) -> tuple[str | None, str]:
    mlf = (config.get("logger") or {}).get("mlflow") or {}
    return mlf.get("tracking_uri"), mlf.get("experiment_name") or config.get(
        "experiment_name", "medcls"
    )


class MLflowSweepCallback(Callback):
    """Parent run per multirun (named ``<experiment>-<sweep time>``, tagged with the sweep id)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not (config.get("logger") or {}).get("mlflow"):
            return
        import mlflow

        uri, experiment = _tracking(config)
        sweep_dir = config.hydra.sweep.dir
        sweep_id = (
            os.path.relpath(sweep_dir, "multirun") if not os.path.isabs(sweep_dir) else sweep_dir
        )
        client = mlflow.MlflowClient(uri)
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
        run = client.create_run(
            exp_id,
            run_name=f"{experiment}-{sweep_id.replace(os.sep, '_')}",
            tags={
                "medcls.role": "sweep",
                "medcls.sweep_id": sweep_id,
                "medcls.sweep_dir": os.path.abspath(sweep_dir),
            },
        )
        os.makedirs(sweep_dir, exist_ok=True)
        with open(os.path.join(sweep_dir, PARENT_FILE), "w") as f:
            f.write(run.info.run_id)
        log.info("MLflow parent run %s for sweep %s", run.info.run_id, sweep_dir)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        # Hydra's sweeper raises as soon as a batch holds a failed job, so on_multirun_end never
        # runs then: keep the parent's counts current after every job (in the job's process).
        if config.hydra.mode == RunMode.MULTIRUN:
            self._update_parent(config, final=False)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._update_parent(config, final=True)

    def _update_parent(self, config: DictConfig, final: bool) -> None:
        run_id = parent_run_id(config.hydra.sweep.dir)
        if run_id is None:
            return
        import mlflow

        uri, _ = _tracking(config)
        client = mlflow.MlflowClient(uri)
        run = client.get_run(run_id)
        children = client.search_runs(
            [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'"
        )
        failed = sum(c.info.status == "FAILED" for c in children)
        client.set_tag(run_id, "medcls.jobs", str(len(children)))
        client.set_tag(run_id, "medcls.failed_jobs", str(failed))
        if failed or final:
            client.set_terminated(run_id, "FAILED" if failed else "FINISHED")


def is_multirun() -> bool:
    """True inside a Hydra multirun job (False for single runs and plain ``compose``)."""
    if not HydraConfig.initialized():
        return False
    mode = HydraConfig.get().mode
    return mode is not None and mode.name == "MULTIRUN"


def parent_run_id(sweep_dir: str) -> str | None:
    path = os.path.join(sweep_dir, PARENT_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip() or None


def job_tags() -> dict[str, str]:
    """Tags that make this job a child of its sweep's parent run (empty outside a multirun)."""
    if not is_multirun():
        return {}
    hc = HydraConfig.get()
    tags = {
        "medcls.sweep_id": os.path.relpath(hc.sweep.dir, "multirun"),
        "medcls.job_num": str(hc.job.num),
    }
    parent = parent_run_id(hc.sweep.dir)
    if parent:
        tags["mlflow.parentRunId"] = parent
    return tags


def mark_failed(client, run_id: str, error: BaseException) -> None:
    """Record why a run failed (Lightning itself sets the FAILED status inside fit/test)."""
    client.set_tag(run_id, "medcls.error", f"{type(error).__name__}: {error}"[:5000])
    client.set_terminated(run_id, "FAILED")


def record_failed_job(cfg: DictConfig, error: BaseException) -> None:
    """A sweep job that failed before its MLflow run existed (bad data, bad config) still gets
    a FAILED child run carrying the error, so the sweep's table shows every job."""
    if not (cfg.get("logger") or {}).get("mlflow"):
        return
    import mlflow

    uri, experiment = _tracking(cfg)
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    overrides = " ".join(HydraConfig.get().overrides.task) if HydraConfig.initialized() else ""
    run = client.create_run(
        exp_id,
        run_name=str(cfg.get("run_name", "job")),
        tags={**job_tags(), "overrides": overrides},
    )
    mark_failed(client, run.info.run_id, error)
