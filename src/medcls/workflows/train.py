"""Training: data → model → loss → Lightning fit → test on the best checkpoint → MLflow."""

from __future__ import annotations

import logging
import os
import time

import pytorch_lightning as pl
import timm.data
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor

from medcls.data.datamodule import ClassificationDataModule
from medcls.data.records import DataError
from medcls.losses import create_loss
from medcls.models import Classifier, create_model
from medcls.tasks import ClassificationTask
from medcls.tasks.checkpoint import read_checkpoint
from medcls.tasks.inference import predict_probs
from medcls.tracking.artifacts import write_isic_csv, write_predictions
from medcls.tracking.mlflow_run import (
    config_params,
    find_mlflow,
    git_commit,
    run_location,
    set_tags,
)
from medcls.tracking.sweep import mark_failed
from medcls.utils.console import console, print_config_tree, print_metrics_table
from medcls.utils.hardware import resolve_channels_last, resolve_precision
from medcls.workflows.common import (
    build_datamodule,
    build_loggers,
    log_run_files,
    newest_last_checkpoint,
    positive_index,
    resolved,
    write_test_artifacts,
)

log = logging.getLogger(__name__)


def normalization(mode: str, model: Classifier, dm: ClassificationDataModule):
    """Mean/std (0..1 scale) per channel for ``data.normalize``."""
    if mode == "backbone":
        cfg = model.pretrained_cfg
        return list(cfg.get("mean", timm.data.IMAGENET_DEFAULT_MEAN)), list(
            cfg.get("std", timm.data.IMAGENET_DEFAULT_STD)
        )
    if mode == "imagenet":
        return list(timm.data.IMAGENET_DEFAULT_MEAN), list(timm.data.IMAGENET_DEFAULT_STD)
    if mode == "dataset":
        return dm.mean_std()
    if mode == "none":
        return [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    raise DataError(f"data.normalize={mode!r}: use backbone, dataset, imagenet or none")


def _resume(cfg: DictConfig) -> tuple[str | None, str | None]:
    """(checkpoint to resume from, its MLflow run id)."""
    path = cfg.get("ckpt_path")
    if not path:
        return None, None
    if path == "last":
        path = newest_last_checkpoint(os.path.join(cfg.paths.log_dir, cfg.task_name))
    meta = read_checkpoint(path)["medcls"]
    console.print(f"[bold]resuming[/] from {path}")
    return path, meta.get("mlflow_run_id")


def run_train(cfg: DictConfig) -> dict[str, float]:
    """Train and test one configuration; return the logged metrics (val and test)."""
    started = time.time()
    if cfg.get("print_config"):
        print_config_tree(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    out_dir = cfg.paths.output_dir
    resume_path, resume_run = _resume(cfg)

    dm = build_datamodule(cfg)
    dm.setup()
    model_cfg = resolved(cfg, "model")
    model = create_model(
        **model_cfg, num_classes=dm.num_classes, image_size=dm.preprocess.image_size
    )
    mean, std = normalization(cfg.data.normalize, model, dm)
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    channels_last = resolve_channels_last(cfg.model.get("channels_last", "auto"), precision)
    positive = positive_index(dm.class_names, cfg.data.get("positive_class"))
    meta = {
        "model": {
            k: v
            for k, v in model_cfg.items()
            if k not in ("freeze_backbone_epochs", "channels_last")
        },
        "class_names": list(dm.class_names),
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "preprocess": dm.preprocess.to_dict(),
        "positive_class": positive,
        "dataset": dm.source_name,
    }
    task = ClassificationTask(
        model,
        dm.class_names,
        mean,
        std,
        loss=create_loss(cfg.loss, dm.class_counts),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        freeze_backbone_epochs=cfg.model.get("freeze_backbone_epochs", 0),
        channels_last=channels_last,
        positive_class=positive,
        meta=meta,
    )

    loggers = build_loggers(cfg, run_id=resume_run)
    callbacks_cfg = cfg.get("callbacks") or {}
    if resume_path:  # keep writing next to the resumed checkpoints
        for c in callbacks_cfg.values():
            if c is not None and str(c.get("_target_", "")).endswith(".ModelCheckpoint"):
                c.dirpath = os.path.dirname(os.path.abspath(resume_path))
    callbacks = [
        instantiate(c) for c in callbacks_cfg.values() if c is not None and "_target_" in c
    ]
    if not loggers:  # logger=none: LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: pl.Trainer = instantiate(
        cfg.trainer, precision=precision, logger=loggers or False, callbacks=callbacks
    )

    mlf = find_mlflow(loggers)
    if mlf is not None:
        task.meta["mlflow_run_id"] = mlf.run_id  # the task keeps its own copy of meta
        if resume_run is None:
            mlf.log_hyperparams(config_params(cfg))
        overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
        set_tags(
            mlf,
            {
                "git_commit": git_commit(os.path.dirname(__file__)),
                "overrides": " ".join(overrides),
                "dataset": dm.source_name,
                "model": cfg.model.name,
                "fold": cfg.data.fold,
                "precision": precision,
                **(cfg.get("tags") or {}),
            },
        )
        config_path = os.path.join(out_dir, "resolved_config.yaml")
        os.makedirs(out_dir, exist_ok=True)
        OmegaConf.save(cfg, config_path, resolve=True)
        log_run_files(loggers, [config_path])
        hydra_dir = os.path.join(out_dir, ".hydra")  # Hydra's own record: config + overrides
        if os.path.isdir(hydra_dir):
            log_run_files(loggers, [hydra_dir], "hydra")

    for note in dm.notes:
        log.warning(note)
    try:
        metrics = _fit_and_test(cfg, trainer, task, dm, loggers, resume_path)
    except BaseException as e:
        if mlf is not None:  # Lightning marks the run FAILED; say why
            mark_failed(mlf.experiment, mlf.run_id, e)
            e.medcls_run_logged = True  # the sweep need not record this job again
        raise
    extra = {
        "images train/val/test": "/".join(
            str(len(dm.partitions[k])) for k in ("train", "val", "test")
        ),
        "skipped images": str(len(dm.skipped)),
        "precision": precision,
        "minutes": f"{(time.time() - started) / 60:.1f}",
    }
    if trainer.checkpoint_callback and trainer.checkpoint_callback.best_model_path:
        extra["best checkpoint"] = trainer.checkpoint_callback.best_model_path
        if mlf is not None:  # lets medcls-ensemble run_ids=[...] find the weights
            set_tags(mlf, {"best_checkpoint": os.path.abspath(extra["best checkpoint"])})
    print_metrics_table(metrics, f"{cfg.run_name}: test metrics", extra)
    if mlf is not None:
        console.print(run_location(mlf))
    return metrics


def _fit_and_test(cfg, trainer: pl.Trainer, task: ClassificationTask, dm, loggers, resume_path):
    """Fit, then test the best checkpoint; write predictions (test, and validation = the
    out-of-fold predictions of a cross-validation fold) and log them."""
    out_dir = cfg.paths.output_dir
    if cfg.get("train", True):
        trainer.fit(task, datamodule=dm, ckpt_path=resume_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    tested = cfg.get("test", True) and len(dm.partitions["test"]) > 0
    if tested:  # test() restores the best checkpoint's weights into the task
        trainer.test(task, datamodule=dm, ckpt_path=best or None, verbose=False, weights_only=True)
        metrics.update({f"test/{k}": v for k, v in task.test_results.items()})
        files = write_test_artifacts(
            out_dir,
            dm,
            task.test_outputs,
            task.test_results,
            dm.class_names,
            f"{cfg.run_name} · test",
        )
        files.append(
            write_isic_csv(
                os.path.join(out_dir, "test_set_isic.csv"),
                dm.records_of("test"),
                dm.labels[dm.partitions["test"]],
                dm.class_names,
            )
        )
        log_run_files(loggers, files)

    if cfg.get("train", True) and len(dm.partitions["val"]):
        if best and not tested:
            task.load_state_dict(read_checkpoint(best)["state_dict"], strict=False)
        val = predict_probs([task], dm.val_dataloader())
        path = os.path.join(out_dir, "val_predictions.csv")
        write_predictions(
            path, [dm.records[i] for i in val["index"]], val["probs"], val["labels"], dm.class_names
        )
        log_run_files(loggers, [path])
    return metrics
