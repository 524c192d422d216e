"""Launchers for leaving one machine: medcls' presets compose on the plugins' schemas
(``parallel`` → joblib, ``slurm_gpu`` → submitit_slurm, ``ray_cluster`` → ray), and a real
``submitit_local`` multirun lands its jobs as children of one MLflow parent run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from medcls.config import CONFIG_DIR


def hydra_launcher(*overrides: str) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    GlobalHydra.instance().clear()
    return cfg.hydra.launcher


def test_parallel_preset_is_joblib() -> None:
    launcher = hydra_launcher("hydra/launcher=parallel", "hydra.launcher.n_jobs=4")
    assert launcher._target_.endswith("JoblibLauncher")
    assert launcher.n_jobs == 4
    assert str(launcher.batch_size) == "1"


def test_slurm_gpu_composes_on_submitit_schema() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    launcher = hydra_launcher(
        "hydra/launcher=slurm_gpu", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=60"
    )
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert OmegaConf.get_type(launcher).__name__ == "SlurmQueueConf"  # typed: typos fail
    assert (launcher.gpus_per_node, launcher.tasks_per_node) == (1, 1)
    assert launcher.partition == "gpu" and launcher.timeout_min == 60
    assert launcher.max_num_timeout > 0  # requeued on timeout (the job resumes its last.ckpt)
    assert launcher.signal_delay_s > 0
    assert launcher.additional_parameters == {"requeue": True}  # preempted jobs come back
    with pytest.raises(Exception, match="gpus_per_nod"):
        hydra_launcher("hydra/launcher=slurm_gpu", "hydra.launcher.gpus_per_nod=2")


def test_slurm_gpu_ddp_job_composes() -> None:
    """One job on 4 GPUs of a node: SLURM starts one task per GPU, Lightning joins them."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "hydra/launcher=slurm_gpu",
                "hydra.launcher.gpus_per_node=4",
                "hydra.launcher.tasks_per_node=4",
                "trainer=ddp",
                "trainer.devices=4",
            ],
            return_hydra_config=True,
        )
    GlobalHydra.instance().clear()
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == 4
    assert cfg.trainer.sync_batchnorm is True and cfg.trainer.num_nodes == 1
    assert cfg.hydra.launcher.tasks_per_node == cfg.hydra.launcher.gpus_per_node == 4


def test_ray_cluster_composes_on_ray_schema() -> None:
    if importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None:
        pytest.skip('hydra-ray-launcher is not installed (optional: pip install -e ".[ray]")')
    launcher = hydra_launcher("hydra/launcher=ray_cluster", "hydra.launcher.ray.remote.num_gpus=2")
    assert launcher._target_.endswith("RayLauncher")
    assert launcher.ray.init.address == "auto"
    assert launcher.ray.init.object_store_memory is None  # joining a cluster refuses a value
    assert launcher.ray.remote.num_gpus == 2


@pytest.mark.slow
def test_submitit_local_multirun_two_child_runs(helpers, workdir: Path) -> None:
    pytest.importorskip("submitit")
    uri = helpers.sqlite_uri(workdir / "submitit.db")
    proc = helpers.run_cli(
        "medcls-train",
        [
            "-m",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10",
            "optimizer.lr=1e-3,3e-3",
            *[o for o in helpers.train_overrides() if o != "logger=none"],
            "data.num_samples=64",
            "trainer.max_epochs=1",
            "++trainer.limit_train_batches=2",
            f"logger.mlflow.tracking_uri={uri}",
            "experiment_name=submitit",
        ],
        cwd=workdir,
    )
    log = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, log
    (sweep,) = workdir.glob("multirun/*/*")
    assert (sweep / ".submitit").is_dir(), log  # the jobs really went through submitit
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "best.ckpt").is_file()
        hydra_cfg = OmegaConf.load(sweep / job / ".hydra" / "hydra.yaml").hydra
        assert hydra_cfg.job.id.isdigit()  # submitit's job id (not Hydra's job_id_for_<n>)

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("submitit")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("medcls.role") == "sweep"]
    assert len(parents) == 1 and len(runs) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["medcls.jobs"] == "2"
    children = [r for r in runs if r is not parent]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    assert sorted(r.data.tags["medcls.job_num"] for r in children) == ["0", "1"]
    for run in children:
        assert run.info.status == "FINISHED"
        job_dir = sweep / run.data.tags["medcls.job_num"]
        helpers.assert_metrics_match_predictions(run.data.metrics, job_dir / "test_predictions.csv")
