"""Which checkpoint a training run continues from, and where a continued run writes.

``ckpt_path``: a checkpoint file; ``last``: the newest ``last.ckpt`` under ``outputs/`` and
``multirun/`` (inside a multirun: the newest one of an earlier job with this job's overrides);
``auto``: this run's own ``last.ckpt`` if it has one, else a fresh start. A job its scheduler
requeued (SLURM, submitit_local) behaves as ``auto`` when ``ckpt_path`` is unset.

A continued run keeps writing in the folder of the run it continues (checkpoints, predictions,
reports of one run in one folder; Lightning also restores which checkpoint was best only when
the checkpoint folder is unchanged). The restart's own Hydra folder keeps Hydra's record and a
``resumed_into.txt`` pointing there.
"""

from __future__ import annotations

import glob
import os

import yaml
from omegaconf import DictConfig, open_dict

from medcls.errors import DataError
from medcls.tasks.checkpoint import read_checkpoint
from medcls.tracking.sweep import is_global_zero, is_multirun
from medcls.utils.console import console

JOB_MARKER = ".scheduler_job_id"
RESUMED_INTO = "resumed_into.txt"
# Overrides a continued job may change without becoming another job: what to resume from and
# when to stop.
RESUME_KEYS = ("ckpt_path", "trainer.max_epochs", "trainer.max_steps", "trainer.max_time")


def resume_point(cfg: DictConfig) -> tuple[str | None, str | None]:
    """(checkpoint to continue from, its MLflow run id), or ``(None, None)``: a fresh start."""
    path = cfg.get("ckpt_path")
    if not path and is_requeued(cfg):
        path = "auto"
        console.print("[bold]requeued job[/]: continuing from its own last.ckpt")
    if not path:
        return None, None
    if path == "auto":
        path = own_last_checkpoint(cfg)
        if path is None:
            console.print("ckpt_path=auto: no last.ckpt in this run's output dir; starting fresh")
            return None, None
    elif path == "last" and is_multirun():
        path = earlier_job_checkpoint(cfg)
        if path is None:
            console.print(
                "ckpt_path=last: no earlier job with this job's overrides left a last.ckpt "
                "under multirun/ or outputs/; starting this job fresh"
            )
            return None, None
    elif path == "last":
        path = newest_last_checkpoint(os.path.join(cfg.paths.log_dir, cfg.task_name))
    ckpt = read_checkpoint(path)
    if "optimizer_states" not in ckpt:  # best.ckpt keeps the weights only (one copy of a run)
        raise DataError(
            f"ckpt_path={path} holds the model's weights only (no optimizer or schedule state): "
            "training cannot continue from it. Resume from the run's checkpoints/last.ckpt "
            "(ckpt_path=last or auto); evaluate this one with medcls-eval ckpt_path=..."
        )
    meta = ckpt["medcls"]
    console.print(f"[bold]resuming[/] from {path}")
    return path, meta.get("mlflow_run_id")


def continue_in_run_folder(cfg: DictConfig, resume_path: str) -> str:
    """Point ``cfg.paths.output_dir`` at the folder of the run ``resume_path`` belongs to
    (``<run>/checkpoints/<name>.ckpt``) and return it; a checkpoint kept anywhere else leaves
    the output dir as it is."""
    ckpt_dir = os.path.dirname(os.path.abspath(resume_path))
    here = os.path.abspath(cfg.paths.output_dir)
    if os.path.basename(ckpt_dir) != "checkpoints" or os.path.dirname(ckpt_dir) == here:
        return cfg.paths.output_dir
    folder = os.path.dirname(ckpt_dir)
    if is_global_zero():
        os.makedirs(here, exist_ok=True)
        with open(os.path.join(here, RESUMED_INTO), "w") as f:
            f.write(folder + "\n")
    console.print(f"continuing in the resumed run's folder {folder}")
    with open_dict(cfg):
        cfg.paths.output_dir = folder
    return folder


def _run_folder(output_dir: str) -> str:
    """``output_dir``, or the folder it continued into (``resumed_into.txt``)."""
    pointer = os.path.join(output_dir, RESUMED_INTO)
    if os.path.isfile(pointer):
        with open(pointer) as f:
            return f.read().strip() or output_dir
    return output_dir


def own_last_checkpoint(cfg: DictConfig) -> str | None:
    """This run's own ``last.ckpt`` (where ``callbacks.last_checkpoint`` writes it, by default
    ``<output dir>/checkpoints``, following ``resumed_into.txt``), if it exists: what a requeued
    job continues from."""
    last_cb = (cfg.get("callbacks") or {}).get("last_checkpoint") or {}
    folder = _run_folder(cfg.paths.output_dir)
    default = os.path.join(cfg.paths.output_dir, "checkpoints")
    ckpt_dir = last_cb.get("dirpath") or default
    if os.path.abspath(ckpt_dir) == os.path.abspath(default):
        ckpt_dir = os.path.join(folder, "checkpoints")
    path = os.path.join(ckpt_dir, f"{last_cb.get('filename') or 'last'}.ckpt")
    return path if os.path.isfile(path) else None


def newest_last_checkpoint(log_dir: str) -> str:
    found = glob.glob(os.path.join(log_dir, "**", "checkpoints", "last.ckpt"), recursive=True)
    found += glob.glob(os.path.join("multirun", "**", "checkpoints", "last.ckpt"), recursive=True)
    if not found:
        raise DataError(
            f"ckpt_path=last: no last.ckpt under {log_dir} or multirun/. Give the path explicitly."
        )
    return max(found, key=os.path.getmtime)


def job_identity(overrides: list[str]) -> tuple[str, ...]:
    """What makes a job itself across reruns of a sweep: its overrides, without Hydra's own and
    without :data:`RESUME_KEYS`, in a fixed order."""
    kept = []
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key.startswith("hydra.") or key in RESUME_KEYS:
            continue
        kept.append(o.lstrip("+"))
    return tuple(sorted(kept))


def earlier_job_checkpoint(cfg: DictConfig) -> str | None:
    """The newest ``last.ckpt`` of an earlier job (``multirun/`` and ``outputs/``) whose
    overrides (``.hydra/overrides.yaml``) are this job's, apart from :data:`RESUME_KEYS`."""
    from hydra.core.hydra_config import HydraConfig

    mine = job_identity(list(HydraConfig.get().overrides.task))
    here = os.path.abspath(cfg.paths.output_dir)
    found = []
    for root in ("multirun", cfg.paths.log_dir):
        pattern = os.path.join(root, "**", ".hydra", "overrides.yaml")
        for record in glob.glob(pattern, recursive=True):
            job_dir = os.path.dirname(os.path.dirname(record))
            last = os.path.join(_run_folder(job_dir), "checkpoints", "last.ckpt")
            if os.path.abspath(job_dir) == here or not os.path.isfile(last):
                continue
            with open(record) as f:
                if job_identity(yaml.safe_load(f) or []) == mine:
                    found.append(last)
    return max(found, key=os.path.getmtime) if found else None


def scheduler_job_id() -> str | None:
    """The id of the SLURM or submitit-local job this process belongs to: a requeued job keeps
    its id (``scontrol requeue``; submitit_local restarts the job under the same controller)."""
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID") or None


def is_requeued(cfg: DictConfig) -> bool:
    """True when this job runs again after its scheduler stopped and requeued it (preemption,
    or a timeout with ``hydra.launcher.max_num_timeout`` > 0): its output dir was started by
    this very job before (see :func:`mark_scheduler_job`), or SLURM counts a restart."""
    try:
        if int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0:
            return True
    except ValueError:
        pass
    job = scheduler_job_id()
    marker = os.path.join(cfg.paths.output_dir, JOB_MARKER)
    if job is None or not os.path.isfile(marker):
        return False
    with open(marker) as f:
        return f.read().strip() == job


def mark_scheduler_job(cfg: DictConfig) -> None:
    """Note the scheduler's job id in the output dir, for :func:`is_requeued`."""
    job = scheduler_job_id()
    if job is not None:
        os.makedirs(cfg.paths.output_dir, exist_ok=True)
        with open(os.path.join(cfg.paths.output_dir, JOB_MARKER), "w") as f:
            f.write(job)
