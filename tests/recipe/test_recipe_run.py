"""The recipe's pieces inside a real training run: EMA weights are what is kept and tested, the
logit adjustment travels in the checkpoint, a time budget ends a OneCycle schedule at its floor,
and a final fit trains on train + val."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch

from medcls.data.datamodule import ClassificationDataModule
from medcls.evaluation.logit_adjustment import log_prior
from medcls.tasks.checkpoint import load_task
from medcls.tasks.inference import predict_probs
from medcls.workflows.common import build_datamodule
from medcls.workflows.train import run_train


def test_ema_logit_adjustment_and_time_budget(helpers, workdir, caplog) -> None:
    cfg = helpers.compose_cfg(
        helpers.train_overrides(
            "data.num_samples=160",
            "ema_decay=0.9",
            "eval.logit_adjustment=0.8",
            "data.sampler=sqrt",
            "scheduler=onecycle",
            "optimizer.lr=0.01",
            "trainer.max_epochs=200",  # the cap: the budget decides
            "trainer.max_time=00:00:00:25",
            "callbacks.early_stopping=null",
        )
    )
    started = time.perf_counter()
    metrics = run_train(cfg)
    wall = time.perf_counter() - started
    out = workdir / cfg.paths.output_dir
    best = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)

    # EMA: the kept weights are the average, not the raw ones, and they are what was tested
    w = "model.head.fc.weight" if "model.head.fc.weight" in best["state_dict"] else None
    w = w or next(k for k in best["state_dict"] if k.endswith("weight"))
    assert not torch.allclose(best["state_dict"][w], best["current_model_state"][w])
    task, meta = load_task(str(out / "checkpoints" / "best.ckpt"))
    dm: ClassificationDataModule = build_datamodule(cfg)
    dm.setup()
    tested = pd.read_csv(out / "test_predictions.csv")
    probs = predict_probs([task], dm.test_dataloader())["probs"]
    np.testing.assert_allclose(tested[[f"p_{c}" for c in dm.class_names]], probs, atol=1e-4)
    raw = {**best["state_dict"], **{k: v for k, v in best["current_model_state"].items()}}
    task.load_state_dict(raw, strict=False)  # the control: the raw weights predict otherwise
    assert np.abs(predict_probs([task], dm.test_dataloader())["probs"] - probs).max() > 1e-3

    # the logit adjustment: τ = 0.8 of the training prior, in the weights and in the metadata
    expected = -0.8 * log_prior(dm.class_counts)
    np.testing.assert_allclose(best["state_dict"]["logit_bias"].numpy(), expected, rtol=1e-5)
    assert meta["logit_adjustment"]["tau"] == 0.8 and metrics["logit_adjustment_tau"] == 0.8

    # the time budget planned the epochs and OneCycle ended at its floor with the last one
    epochs = last["epoch"] + 1
    assert 1 <= epochs < 200
    (sched,) = last["lr_schedulers"]
    assert sched["total_steps"] == sched["last_epoch"]  # the plan ended where training did
    lr = last["optimizer_states"][0]["param_groups"][0]["lr"]
    cut = "did not finish its cycle" in caplog.text  # a busy machine slowed the last epochs
    assert cut or lr < 0.01 / 25 / 10  # annealed: far below the start (lr/25), not mid-cycle

    # training speed: the epochs trained (the last may be partial) over the fit's seconds
    batches = len(dm.train_dataloader())
    assert metrics["epochs_trained"] == pytest.approx(sched["last_epoch"] / batches)
    assert epochs - 1 < metrics["epochs_trained"] <= epochs
    fit_s = metrics["epochs_trained"] * len(dm.partitions["train"]) / metrics["fit_images_per_s"]
    assert 0.3 * wall < fit_s < wall


def test_final_fit_trains_on_train_and_val(helpers, workdir) -> None:
    base = helpers.train_overrides("trainer.max_epochs=1")
    holdout = build_datamodule(helpers.compose_cfg(base))
    holdout.setup()
    cfg = helpers.compose_cfg([*base, "train_on=train+val"])
    metrics = run_train(cfg)
    out = workdir / cfg.paths.output_dir
    counts = pd.read_csv(out / "class_counts.csv")
    n_train = len(holdout.partitions["train"]) + len(holdout.partitions["val"])
    ckpt = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    assert ckpt["epoch"] == 0 and not any(k.startswith("val/") for k in metrics)
    assert "test/balanced_accuracy" in metrics
    assert counts["train"].sum() == n_train and counts.get("val", pd.Series([0])).sum() == 0
