"""The layout of a multirun's folder, known here and nowhere else.

::

    <sweep dir>/                      hydra.sweep.dir (conf/hydra/default.yaml)
        mlflow_parent_run_id          the sweep's MLflow parent run (tracking.sweep)
        <job>/                        hydra.sweep.subdir: the job number
            .hydra/overrides.yaml     the job's task overrides (Hydra)
            resolved_config.yaml      the job's whole config (medcls-train)
            checkpoints/best.ckpt     the kept model
            val_predictions.csv       its validation predictions (a CV fold: out-of-fold)
            val_logits.npz            its network's logits on them, per view (cross-fitting)

medcls-ensemble (``sweep_dir=``, ``per_config=true``), medcls-report (``sweep_dir=``),
medcls-pseudo (its rounds are sweeps) and the sweep callback read sweeps through these functions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from medcls.errors import DataError

PARENT_FILE = "mlflow_parent_run_id"
OVERRIDES = os.path.join(".hydra", "overrides.yaml")
RESOLVED_CONFIG = "resolved_config.yaml"
CHECKPOINT = os.path.join("checkpoints", "best.ckpt")
VAL_PREDICTIONS = "val_predictions.csv"
VAL_LOGITS = "val_logits.npz"


def _job_order(name: str) -> tuple[int, str]:
    return (int(name), name) if name.isdigit() else (10**9, name)


def job_dirs(sweep_dir: str, jobs: Sequence[str] | None = None) -> list[str]:
    """The job folders of ``sweep_dir`` (only those named in ``jobs``, if given), in job
    number order."""
    if not os.path.isdir(sweep_dir):
        raise DataError(f"sweep_dir={sweep_dir} is not a folder: give a multirun/<date>/<time>.")
    names = [
        n
        for n in os.listdir(sweep_dir)
        if os.path.isdir(os.path.join(sweep_dir, n)) and not n.startswith(".")
    ]
    if jobs:
        names = [n for n in names if n in set(jobs)]
    return [os.path.join(sweep_dir, n) for n in sorted(names, key=_job_order)]


def job_name(job_dir: str) -> str:
    return os.path.basename(os.path.normpath(job_dir))


def checkpoint(job_dir: str) -> str:
    return os.path.join(job_dir, CHECKPOINT)


def resolved_config_path(job_dir: str) -> str:
    return os.path.join(job_dir, RESOLVED_CONFIG)


def val_predictions_path(job_dir: str) -> str:
    return os.path.join(job_dir, VAL_PREDICTIONS)


def val_logits_path(job_dir: str) -> str:
    return os.path.join(job_dir, VAL_LOGITS)


def trained_jobs(sweep_dir: str, jobs: Sequence[str] | None = None) -> list[str]:
    """The job folders holding a kept model; none is an error naming the sweep."""
    found = [d for d in job_dirs(sweep_dir, jobs) if os.path.isfile(checkpoint(d))]
    if not found:
        raise DataError(f"sweep_dir={sweep_dir}: no <job>/{CHECKPOINT} found; did the sweep train?")
    return found


def configured_jobs(sweep_dir: str, jobs: Sequence[str] | None = None) -> list[str]:
    """The job folders that wrote their resolved config (the job started training)."""
    return [d for d in job_dirs(sweep_dir, jobs) if os.path.isfile(resolved_config_path(d))]


def resolved_config(job_dir: str) -> DictConfig:
    return OmegaConf.load(resolved_config_path(job_dir))


def job_overrides(job_dir: str) -> list[str]:
    """The task overrides of one sweep job."""
    path = os.path.join(job_dir, OVERRIDES)
    if not os.path.isfile(path):
        raise DataError(
            f"{path} not found: per_config=true groups a sweep's jobs by the overrides Hydra "
            "records there (hydra.output_subdir must not be null); or give checkpoints=[...]."
        )
    return [str(o) for o in OmegaConf.load(path)]


def parent_run_id(sweep_dir: str) -> str | None:
    """The sweep's MLflow parent run id, or None (no MLflow logger, or not a medcls sweep)."""
    path = os.path.join(sweep_dir, PARENT_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip() or None


def write_parent_run_id(sweep_dir: str, run_id: str) -> None:
    os.makedirs(sweep_dir, exist_ok=True)
    with open(os.path.join(sweep_dir, PARENT_FILE), "w") as f:
        f.write(run_id)
