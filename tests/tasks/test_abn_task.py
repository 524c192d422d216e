"""task=abn end to end on masked synthetic data: the scheduled α per epoch, attention metrics,
overlay artifacts in MLflow, patient-level (group) test metrics, and the checkpoint evaluated
through the ordinary medcls-eval path (perception branch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from medcls.errors import DataError
from medcls.models import Classifier
from medcls.models.abn import AttentionBranchNetwork
from medcls.tasks.abn import ABNTask
from medcls.tasks.checkpoint import load_task
from medcls.tasks.factory import create_task, create_task_model
from medcls.workflows.evaluate import run_eval
from medcls.workflows.train import run_train

ABN = ["task=abn", "model.name=resnet10t", "data.image_size=32"]


@pytest.fixture(scope="module")
def abn_run(tmp_path_factory, helpers, mlflow_uri) -> dict:
    """Two epochs of loss=abn_scheduled on the synthetic set (every image has a mask)."""
    work = tmp_path_factory.mktemp("abn")
    with helpers.chdir(work):
        cfg = helpers.compose_cfg(
            helpers.train_overrides(
                *ABN,
                "trainer.max_epochs=2",
                "recipe=classic",  # the ABN study's (two epochs of OneCycle barely leave warm-up)
                "callbacks.attention_overlays.num_images=3",
                *helpers.mlflow_overrides(mlflow_uri, "abn-task"),
            )
        )
        metrics = run_train(cfg)
    out = Path(cfg.paths.output_dir)
    return {"cfg": cfg, "metrics": metrics, "out": out, "ckpt": out / "checkpoints" / "best.ckpt"}


def test_task_config_builds_an_abn(abn_run) -> None:
    cfg = abn_run["cfg"]
    assert cfg.task.name == "abn" and cfg.loss.name == "abn_scheduled"  # task=abn's default loss
    assert cfg.data.load_masks
    assert "model_checkpoint" in cfg.callbacks and "attention_overlays" in cfg.callbacks


def test_metrics_alpha_and_overlays_in_mlflow(abn_run, mlflow_uri, helpers) -> None:
    from mlflow.tracking import MlflowClient

    m = abn_run["metrics"]
    for key in (
        "val/attention_iou",
        "val/attention_pointing_game",
        "val/attention_branch_accuracy",
        "val/loss_map",
        "test/attention_iou",
        "test/accuracy",
        "group/accuracy",  # synthetic images come in lesion groups
    ):
        assert key in m, sorted(m)
    # the test figures are those of the perception branch's written predictions
    helpers.assert_metrics_match_predictions(m, abn_run["out"] / "test_predictions.csv")
    assert 0.0 < m["test/attention_iou"] < 1.0  # the masks reached the metric, and overlap

    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("abn-task")
    (run,) = client.search_runs([exp.experiment_id])
    alpha = [h.value for h in client.get_metric_history(run.info.run_id, "train/alpha")]
    assert alpha == pytest.approx([0.9, 0.1])  # eq. 5 with E = 2
    assert "group/accuracy" in run.data.metrics and "test/attention_iou" in run.data.metrics
    pngs = {a.path for a in client.list_artifacts(run.info.run_id, "attention")}
    assert pngs == {"attention/epoch_000.png", "attention/epoch_001.png", "attention/final.png"}
    from PIL import Image

    with Image.open(abn_run["out"] / "attention" / "final.png") as im:
        assert im.size == (3 * 160, 3 * 160)  # 3 images × (image | mask | map)


def test_checkpoint_predicts_like_the_test_run(abn_run, helpers, workdir) -> None:
    task, meta = load_task(str(abn_run["ckpt"]))
    assert isinstance(task, ABNTask) and isinstance(task.model, AttentionBranchNetwork)
    assert meta["task"] == {"name": "abn", "iou_threshold": 0.5}
    cfg = helpers.compose_cfg(
        [
            f"ckpt_path={abn_run['ckpt']}",
            *helpers.TINY_SYNTHETIC,
            "print_config=false",
            "logger=none",
            "trainer.precision=32-true",
            "++trainer.enable_progress_bar=false",
        ],
        config_name="eval",
    )
    metrics = run_eval(cfg)
    assert metrics["test/accuracy"] == pytest.approx(abn_run["metrics"]["test/accuracy"])
    ours = pd.read_csv(Path(cfg.paths.output_dir) / "test_predictions.csv")
    theirs = pd.read_csv(abn_run["out"] / "test_predictions.csv")
    cols = [c for c in theirs.columns if c.startswith("p_")]
    np.testing.assert_allclose(ours[cols].to_numpy(), theirs[cols].to_numpy(), atol=1e-5)


def test_task_and_loss_must_match(workdir, helpers) -> None:
    cfg = helpers.compose_cfg(helpers.train_overrides("loss=abn_map", "data.image_size=32"))
    with pytest.raises(DataError, match="add task=abn"):
        run_train(cfg)
    model = create_task_model({"name": "abn"}, {"name": "resnet10t"}, 2, 32)
    with pytest.raises(DataError, match="ABN loss"):
        create_task(
            {"name": "abn"},
            model,
            ["a", "b"],
            [0.5] * 3,
            [0.5] * 3,
            loss=torch.nn.CrossEntropyLoss(),
        )
    plain = create_task_model(None, {"name": "resnet10t"}, 2, 32)
    assert isinstance(plain, Classifier)


def test_mask_losses_need_masks(workdir, helpers) -> None:
    cfg = helpers.compose_cfg(
        helpers.train_overrides(*ABN, "data.load_masks=false", "++trainer.fast_dev_run=true")
    )
    with pytest.raises(DataError, match="data.load_masks=true"):
        run_train(cfg)


def test_abn_without_mask_loss_trains_without_masks(workdir, helpers) -> None:
    cfg = helpers.compose_cfg(
        helpers.train_overrides(
            *ABN, "loss=abn", "data.load_masks=false", "++trainer.fast_dev_run=true"
        )
    )
    metrics = run_train(cfg)
    assert "val/attention_branch_accuracy" in metrics and "val/attention_iou" not in metrics
    assert OmegaConf.select(cfg, "loss.name") == "abn"


def test_abn_with_rejected_unknown_test_images(workdir, helpers) -> None:
    """data.unknown=reject brings test images labelled K (ISIC's UNK) to the attention metrics
    too: they are scored as the rejected class, the attention branch only on known classes."""
    data = [*helpers.isic_with_unknown(workdir / "isic"), "data.load_masks=false"]
    cfg = helpers.compose_cfg(
        helpers.train_overrides(*ABN, "loss=abn", *data, "trainer.max_epochs=1")
    )
    metrics = run_train(cfg)
    preds = pd.read_csv(Path(cfg.paths.output_dir) / "test_predictions.csv")
    assert (preds["label"] == "UNK").sum() == 4 and len(preds) == 16
    helpers.assert_metrics_match_predictions(
        metrics, Path(cfg.paths.output_dir) / "test_predictions.csv"
    )
    assert "test/recall_UNK" in metrics and "test/attention_branch_accuracy" in metrics
