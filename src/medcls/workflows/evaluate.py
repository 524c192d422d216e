"""Evaluation: a checkpoint on any configured dataset, with class names matched by name; the
evaluation report (intervals, curves, calibration; group level; per source of a combined
dataset), and Grad-CAM overlays of a few images (``cam.num_images``)."""

from __future__ import annotations

import logging
import os

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from medcls.evaluation import EvalSettings
from medcls.evaluation.calibration import Calibration
from medcls.evaluation.report import calibration_summary, level_summary, source_summary
from medcls.evaluation.subgroups import check_subgroup_attributes
from medcls.explain.cams import run_test_cams
from medcls.tasks.checkpoint import load_task
from medcls.tasks.tta import tta_views
from medcls.tracking.fetch import checkpoint_to_evaluate
from medcls.utils.console import print_config_tree
from medcls.utils.hardware import resolve_channels_last, resolve_precision
from medcls.workflows.common import (
    build_loggers,
    datamodule_for_checkpoint,
    log_run_files,
    report_test,
)
from medcls.workflows.run import end_run, start_run

log = logging.getLogger(__name__)


def run_eval(cfg: DictConfig) -> dict[str, float]:
    """Test ``cfg.ckpt_path`` on ``cfg.split`` of ``cfg.data``; return ``test/*`` metrics."""
    pl.seed_everything(cfg.seed, workers=True)
    settings = EvalSettings.from_cfg(cfg.get("eval"))
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    ckpt_path = checkpoint_to_evaluate(cfg)
    task, meta = load_task(ckpt_path, channels_last=resolve_channels_last("auto", precision))
    if settings.tta is not None:  # eval.tta replaces the checkpoint's views (said, not hidden)
        if list(settings.tta) != list(meta.get("tta") or []):
            log.warning(
                "eval.tta=%s replaces the checkpoint's views %s, on which its temperature and "
                "threshold were fitted", list(settings.tta), list(meta.get("tta") or []),
            )  # fmt: skip
        task.tta = tta_views(settings.tta)
    dm = datamodule_for_checkpoint(cfg, meta, ckpt_path)
    check_subgroup_attributes(dm.records_of(cfg.split), settings.subgroups, cfg.data)
    if cfg.get("print_config"):  # after the checkpoint set the image size, crops and colour
        print_config_tree(cfg)

    loggers = build_loggers(cfg)
    trainer: pl.Trainer = instantiate(
        cfg.trainer, precision=precision, logger=loggers or False, callbacks=[]
    )
    tags = {
        "checkpoint": os.path.abspath(ckpt_path),
        "trained_run_id": meta.get("mlflow_run_id", ""),
        "dataset": dm.source_name,
    }
    mlf = start_run(cfg, loggers, tags, dm, {cfg.split: dm.partitions[cfg.split]})
    trainer.test(task, datamodule=dm, verbose=False)
    metrics = {f"test/{k}": v for k, v in task.test_results.items()}
    out_dir, out = cfg.paths.output_dir, task.test_outputs
    calibration = Calibration.from_meta(meta.get("calibration"))  # fitted by medcls-train
    report_title = f"{cfg.run_name} · {cfg.split}"
    files = report_test(task, dm, settings, out_dir, report_title, loggers, metrics, calibration)
    log_run_files(loggers, files)
    cam_dir = os.path.join(out_dir, "gradcam")  # cam.num_images > 0: as medcls-train does
    if run_test_cams(cfg.get("cam"), task, dm, out, cam_dir):
        log_run_files(loggers, [cam_dir], "gradcam")
    title = (
        f"{os.path.basename(ckpt_path)} on {dm.source_name} ({cfg.split}, "
        f"{len(dm.partitions[cfg.split])} images)"
    )
    extra = {
        "skipped images": str(len(dm.skipped)),
        "predictions": os.path.join(out_dir, "test_predictions.csv"),
        **source_summary(metrics),
        **level_summary(metrics),
        **calibration_summary(metrics),
    }
    end_run(mlf, [(metrics, title, extra)], settings.level)
    return metrics
