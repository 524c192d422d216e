"""medcls-train returns (to its sweeper) the monitored score of the checkpoint it keeps and
tests, not the last epoch's, and logs which epoch that was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from medcls.cli.train import optimized_value
from medcls.workflows.train import run_train


def test_returned_score_is_the_kept_checkpoints(helpers, workdir, mlflow_uri) -> None:
    # a large learning rate makes the validation score jump about from epoch to epoch
    overrides = [o for o in helpers.train_overrides() if o != "logger=none"]
    cfg = helpers.compose_cfg(
        [
            *overrides,
            "trainer.max_epochs=4",
            "optimizer.lr=0.05",
            "callbacks.early_stopping=null",
            *helpers.mlflow_overrides(mlflow_uri, "kept-score"),
        ]
    )
    metrics = run_train(cfg)

    client = MlflowClient(mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("kept-score").experiment_id])
    history = [h.value for h in client.get_metric_history(run.info.run_id, "val/balanced_accuracy")]
    assert len(history) == 4  # one value per epoch
    best_epoch = int(np.argmax(history))  # the first best: a tie does not replace a checkpoint
    assert metrics["val/balanced_accuracy"] == pytest.approx(max(history), abs=1e-6)
    assert metrics["best_epoch"] == best_epoch
    assert run.data.metrics["best_epoch"] == best_epoch
    best = torch.load(
        workdir / cfg.paths.output_dir / "checkpoints" / "best.ckpt", weights_only=True
    )
    assert best["epoch"] == best_epoch
    # what an Optuna trial gets back (hparams_search=optuna: optimized_metric=${monitor})
    assert optimized_value(metrics, cfg.monitor) == pytest.approx(max(history), abs=1e-6)
