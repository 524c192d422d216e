"""One MLflow parent run per Hydra multirun; every job becomes its child.

``MLflowSweepCallback`` (registered in ``conf/hydra/default.yaml``) opens the parent run when a
multirun starts, writes its id to ``<sweep dir>/mlflow_parent_run_id`` and hands it to every job
in the job's own config (``hydra.job.env_set.MEDCLS_MLFLOW_PARENT_RUN_ID``, added to the sweep's
Hydra overrides, which every launcher re-composes each job from: joblib and submitit processes,
SLURM nodes, Ray workers without the sweep directory). Each job tags its own run with
``mlflow.parentRunId``, which is how the MLflow UI nests runs.

For launchers that run jobs in parallel on this machine (joblib, submitit_local) a local SQLite
store is switched to WAL mode; for launchers that leave the machine (SLURM, Ray) a SQLite store
gets a warning: an MLflow server is the safer choice there.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, read_write

from medcls.tracking.sweep_folder import parent_run_id, write_parent_run_id

log = logging.getLogger(__name__)
PARENT_ENV = "MEDCLS_MLFLOW_PARENT_RUN_ID"
NAMED_BY_USER = {"run_name", "logger.mlflow.run_name", "experiment"}
SWEPT_ENV = "MEDCLS_SWEPT_KEYS"  # what the sweep varies, space-separated: names its child runs
# Launchers whose jobs all run on this machine / may run on other machines.
LOCAL_PARALLEL_LAUNCHERS = ("hydra_joblib_launcher", "submitit_launcher.LocalLauncher")
REMOTE_LAUNCHERS = ("submitit_launcher.SlurmLauncher", "hydra_ray_launcher")


def _tracking(config: DictConfig) -> tuple[str | None, str]:
    mlf = (config.get("logger") or {}).get("mlflow") or {}
    return mlf.get("tracking_uri"), mlf.get("experiment_name") or config.get(
        "experiment_name", "medcls"
    )


def _client(uri: str | None):
    from medcls.tracking.store import RetryingMlflowClient

    return RetryingMlflowClient(uri)


def _launcher(config: DictConfig) -> str:
    return str(((config.get("hydra") or {}).get("launcher") or {}).get("_target_", ""))


class MLflowSweepCallback(Callback):
    """Parent run per multirun (named ``<experiment>-<sweep time>``, tagged with the sweep id).

    Args:
        sqlite_wal: switch a local SQLite store to WAL mode when the launcher runs jobs in
            parallel on this machine (``hydra.callbacks.mlflow_sweep.sqlite_wal=false``: don't).
    """

    def __init__(self, sqlite_wal: bool = True) -> None:
        self.sqlite_wal = sqlite_wal

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not (config.get("logger") or {}).get("mlflow"):
            return
        uri, experiment = _tracking(config)
        sweep_dir = config.hydra.sweep.dir
        sweep_id = (
            os.path.relpath(sweep_dir, "multirun") if not os.path.isabs(sweep_dir) else sweep_dir
        )
        client = _client(uri)
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
        write_parent_run_id(sweep_dir, run.info.run_id)
        # Every launcher builds each job's config from the sweep's Hydra overrides: the parent
        # id travels with it to any process or machine (Hydra sets it in the job's environment).
        with read_write(config.hydra.overrides):
            config.hydra.overrides.hydra.append(
                f"++hydra.job.env_set.{PARENT_ENV}='{run.info.run_id}'"
            )
            swept = swept_keys(config)
            if swept:
                config.hydra.overrides.hydra.append(
                    f"++hydra.job.env_set.{SWEPT_ENV}='{' '.join(swept)}'"
                )
        log.info("MLflow parent run %s for sweep %s", run.info.run_id, sweep_dir)
        self._prepare_store(config, uri)

    def _prepare_store(self, config: DictConfig, uri: str | None) -> None:
        from medcls.tracking.store import enable_wal, sqlite_path

        path = sqlite_path(uri)
        if path is None:
            return
        launcher = _launcher(config)
        if self.sqlite_wal and any(k in launcher for k in LOCAL_PARALLEL_LAUNCHERS):
            if enable_wal(uri):
                log.info("SQLite store %s in WAL mode for parallel jobs", path)
        elif any(k in launcher for k in REMOTE_LAUNCHERS):
            log.warning(
                "Jobs of this sweep may run on other machines but MLflow writes to the SQLite "
                "file %s: every job must see that path on a shared file system, and SQLite "
                "locking over network file systems is fragile. An MLflow server is safer: "
                "mlflow server --backend-store-uri sqlite:///%s --host 0.0.0.0, then "
                "MLFLOW_TRACKING_URI=http://<host>:5000.",
                path,
                path,
            )

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        # Hydra's sweeper raises as soon as a batch holds a failed job, so on_multirun_end never
        # runs then: keep the parent's counts current after every job (in the job's process).
        if config.hydra.mode == RunMode.MULTIRUN and is_global_zero():
            self._update_parent(config, final=False)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._update_parent(config, final=True)

    def _update_parent(self, config: DictConfig, final: bool) -> None:
        env_set = config.hydra.job.get("env_set") or {}
        run_id = env_set.get(PARENT_ENV) or parent_run_id(config.hydra.sweep.dir)
        if run_id is None or not (config.get("logger") or {}).get("mlflow"):
            return
        uri, _ = _tracking(config)
        client = _client(uri)
        run = client.get_run(run_id)
        children = client.search_runs(
            [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'"
        )
        failed = sum(c.info.status == "FAILED" for c in children)
        client.set_tag(run_id, "medcls.jobs", str(len(children)))
        client.set_tag(run_id, "medcls.failed_jobs", str(failed))
        if failed or final:
            client.set_terminated(run_id, "FAILED" if failed else "FINISHED")


def is_global_zero() -> bool:
    """False in the other processes of a distributed (DDP) job; only rank 0 talks to MLflow."""
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def is_multirun() -> bool:
    """True inside a Hydra multirun job (False for single runs and plain ``compose``)."""
    if not HydraConfig.initialized():
        return False
    mode = HydraConfig.get().mode
    return mode is not None and mode.name == "MULTIRUN"


def swept_keys(config: DictConfig) -> list[str]:
    """The config keys a multirun varies: its sweep overrides on the command line
    (``optimizer.lr=1e-3,3e-3``, ``loss=glob(*)``) and in ``hydra.sweeper.params`` (an
    experiment's lists, an Optuna search space), in that order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = list(config.hydra.overrides.get("task") or [])
    params = (config.hydra.get("sweeper") or {}).get("params") or {}
    lines += [f"{k}={v}" for k, v in params.items()]
    keys: list[str] = []
    for o in OverridesParser.create().parse_overrides(lines):
        if o.is_sweep_override() and o.key_or_group not in keys:
            keys.append(o.key_or_group)
    return keys


def swept_run_name(default: str) -> str:
    """A sweep job's MLflow run name: the values it was given for what the sweep varies
    (``lr=0.001 loss=focal``); ``default`` outside a multirun, for an unvaried sweep, or when
    ``run_name=`` or an ``experiment=`` (whose config names its runs) is given."""
    if not is_multirun():
        return default
    hc = HydraConfig.get()
    swept = ((hc.job.get("env_set") or {}).get(SWEPT_ENV) or "").split()
    given = {}
    for line in hc.overrides.task:
        key, _, value = str(line).partition("=")
        given[key.lstrip("+~")] = value
    if NAMED_BY_USER & given.keys():  # an experiment or run_name= names its runs itself
        return default
    short = [k.rsplit(".", 1)[-1] for k in swept]
    parts = [
        f"{name if short.count(name) == 1 else key}={_short_value(given[key])}"
        for key, name in zip(swept, short, strict=True)
        if key in given
    ]
    return " ".join(parts) or default


def _short_value(value: str) -> str:
    """``0.0012345678`` → ``0.001235``: a sampled float is read, not parsed."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if len(value) <= 8 or number.is_integer() else f"{number:.4g}"


def job_tags() -> dict[str, str]:
    """Tags that make this job a child of its sweep's parent run (empty outside a multirun)."""
    if not is_multirun():
        return {}
    hc = HydraConfig.get()
    tags = {
        "medcls.sweep_id": os.path.relpath(hc.sweep.dir, "multirun"),
        "medcls.job_num": str(hc.job.num),
    }
    env_set = hc.job.get("env_set") or {}
    parent = env_set.get(PARENT_ENV) or parent_run_id(hc.sweep.dir)
    if parent:
        tags["mlflow.parentRunId"] = parent
    return tags


def mark_failed(client, run_id: str, error: BaseException) -> None:
    """Record why a run failed (Lightning itself sets the FAILED status inside fit/test). An
    interruption (Ctrl-C, or SLURM preemption/timeout: submitit exits the job to requeue it)
    leaves the run KILLED, not FAILED: a requeued job continues it (see ``ckpt_path``)."""
    interrupted = isinstance(error, KeyboardInterrupt | SystemExit)
    what = "interrupted" if interrupted else "error"
    client.set_tag(run_id, f"medcls.{what}", f"{type(error).__name__}: {error}"[:5000])
    client.set_terminated(run_id, "KILLED" if interrupted else "FAILED")


def record_failed_job(cfg: DictConfig, error: BaseException) -> None:
    """A sweep job that failed before its MLflow run existed (bad data, bad config) still gets
    a FAILED child run carrying the error, so the sweep's table shows every job."""
    if not (cfg.get("logger") or {}).get("mlflow") or not is_global_zero():
        return
    uri, experiment = _tracking(cfg)
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    overrides = " ".join(HydraConfig.get().overrides.task) if HydraConfig.initialized() else ""
    run = client.create_run(
        exp_id,
        run_name=swept_run_name(str(cfg.get("run_name", "job"))),
        tags={**job_tags(), "overrides": overrides},
    )
    mark_failed(client, run.info.run_id, error)
