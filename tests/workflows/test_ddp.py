"""``trainer=ddp``: one run on several devices (two CPU processes over gloo here) logs one MLflow
run from rank 0, and its test predictions hold every test image exactly once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from mlflow.tracking import MlflowClient
from omegaconf import open_dict, read_write

from medcls.errors import DataError
from medcls.workflows.train import _check_distributed, _strategy_override


@pytest.mark.slow
def test_ddp_two_processes_one_run(helpers, workdir: Path, mlflow_uri: str) -> None:
    experiment = "ddp-cpu"
    proc = helpers.run_cli(
        "medcls-train",
        [
            "trainer=ddp",
            "trainer.accelerator=cpu",  # two processes on the CPU (gloo) stand in for two GPUs
            "trainer.devices=2",
            "trainer.sync_batchnorm=false",  # SyncBatchNorm needs GPUs
            *[o for o in helpers.train_overrides() if o != "logger=none"],
            "data.num_samples=64",
            "trainer.max_epochs=2",
            *helpers.mlflow_overrides(mlflow_uri, experiment),
        ],
        cwd=workdir,
    )
    log = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, log
    assert "GLOBAL_RANK: 1" in proc.stdout + proc.stderr, log  # a second process trained
    (run_dir,) = workdir.glob("outputs/train/runs/*")
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    client = MlflowClient(tracking_uri=mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1  # rank 1 created no run of its own
    run = runs[0]
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val/balanced_accuracy")
    assert len(history) == 2

    # every test image once (DistributedSampler padding removed), metrics from exactly those
    preds = pd.read_csv(run_dir / "test_predictions.csv")
    per_class = pd.read_csv(run_dir / "per_class_metrics.csv")
    assert preds["image_id"].is_unique
    assert len(preds) == per_class["support"].sum() > 0
    accuracy = (preds["label"] == preds["prediction"]).mean()
    assert run.data.metrics["test/accuracy"] == pytest.approx(accuracy, abs=1e-6)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"test_predictions.csv", "resolved_config.yaml", "val_predictions.csv"} <= artifacts


@pytest.fixture
def hydra_state():
    saved = HydraConfig.instance().cfg
    yield
    HydraConfig.instance().cfg = saved


def test_ddp_spawned_by_lightning_is_refused_in_a_multirun(helpers, workdir, hydra_state) -> None:
    """Lightning would start rank 1 by re-running the command line: the whole sweep again."""
    import pytorch_lightning as pl

    helpers.compose_cfg(["print_config=false", "logger=none"])
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_checkpointing=False
    )
    _check_distributed(trainer)  # a single run: fine
    hydra_node = HydraConfig.get()
    with read_write(hydra_node), open_dict(hydra_node):
        hydra_node.mode = RunMode.MULTIRUN
    with pytest.raises(DataError, match="tasks_per_node"):
        _check_distributed(trainer)
    single = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    _check_distributed(single)  # one device per job: fine in a sweep


def test_ddp_with_frozen_backbone_finds_unused_parameters(helpers, workdir) -> None:
    cfg = helpers.compose_cfg(["print_config=false", "trainer=ddp"])
    assert _strategy_override(cfg) == {}
    with open_dict(cfg):
        cfg.model.freeze_backbone_epochs = 2
    assert _strategy_override(cfg) == {"strategy": "ddp_find_unused_parameters_true"}
