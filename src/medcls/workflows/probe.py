"""Frozen-feature probes (``task=knn``, ``task=linear_probe``; the MedMNIST+ protocol).

records → the frozen backbone's features of every image (cached: :mod:`medcls.data.features`;
on a hit nothing is decoded and nothing is embedded, only the records are listed) → partitions
→ a scikit-learn head on the training features (a grid chosen on validation) → its
probabilities on the test images → the evaluation report every run writes
(:func:`medcls.evaluation.report.evaluate`), printed and logged to MLflow. No Lightning fit and
no checkpoint: the head is saved as ``probe_head.joblib``.

Why the features cover every record rather than a partition: the split (fold, seed, fractions,
``train_on``) then only picks rows, so CV folds and sweeps over the head share one cache entry,
and the datamodule splits from the records alone (:meth:`ClassificationDataModule.split`), with
the decoded/undecodable flags the cache keeps.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import joblib
import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger
from torch import nn

from medcls.data.datamodule import ClassificationDataModule
from medcls.data.features import (
    Features,
    feature_key,
    feature_path,
    features_of,
    load_features,
    save_features,
    weights_digest,
)
from medcls.errors import DataError
from medcls.evaluation import EvalSettings, Predictions, evaluate
from medcls.evaluation.report import level_summary, source_summary
from medcls.evaluation.subgroups import check_subgroup_attributes
from medcls.tasks.factory import create_task_model
from medcls.tasks.probes import ProbeFit, describe, fit_probe, probe_grid, probe_proba
from medcls.tracking.mlflow_run import (
    find_mlflow,
)
from medcls.tracking.sweep import mark_failed
from medcls.utils.console import print_config_tree
from medcls.workflows.common import (
    build_datamodule,
    build_loggers,
    in_sample_tag,
    log_run_files,
    normalization,
    positive_index,
    scored_partition_title,
)
from medcls.workflows.common import resolved as resolved_node
from medcls.workflows.recipe import train_on
from medcls.workflows.run import Table, end_run, start_training_run

log = logging.getLogger(__name__)

# conf/model keys that shape the head or the training, not the backbone's features (a key
# missing here only costs a recomputation when it changes, never a wrong cache hit)
HEAD_KEYS = (
    "dropout",
    "hidden",
    "freeze_backbone_epochs",
    "unfreeze_lr_factor",
    "channels_last",
    "backbone_lr_factor",
    "freeze_bn",
)


def run_probe(cfg: DictConfig) -> dict[str, float]:
    """Fit and test one frozen-feature probe; return its metrics (``val/*`` of the kept grid
    point, ``test/*``, ``group/*``, ``probe/*``)."""
    started = time.time()
    if cfg.get("print_config"):
        print_config_tree(cfg)
    pl.seed_everything(cfg.seed, workers=True)  # a backbone without weights: its random init
    settings = EvalSettings.from_cfg(cfg.get("eval"))
    task_cfg = resolved_node(cfg, "task")
    grid = probe_grid(task_cfg)  # bad options stop the run before any image is read
    _check_supported(cfg)
    dm = build_datamodule(cfg)
    dm.load_records()
    backbone, mean, std = _frozen_backbone(cfg, dm)
    feats, source = cached_features(cfg, dm, backbone, mean, std)
    dm.split(feats.ok, feats.bad)
    train_on(cfg, dm)  # train+val: the head fits on both (a single grid point)
    part = _scored_partition(dm)
    scored = in_sample_tag(dm)
    check_subgroup_attributes(dm.records_of(part), settings.subgroups, dm.cfg)
    positive = positive_index(dm.class_names, cfg.data.get("positive_class"))
    fit = fit_probe(
        str(task_cfg["name"]), grid, _rows(feats, dm, "train"), _rows(feats, dm, "val"),
        dm.class_names, positive, *_monitor(cfg),
    )  # fmt: skip
    loggers = build_loggers(cfg)
    mlf = find_mlflow(loggers)
    try:
        tags = {
            "probe.features": source["path"],
            "probe.features_cached": str(source["cached"]).lower(),
            **scored,
        }
        start_training_run(cfg, loggers, dm, tags, cfg.paths.output_dir)
        metrics = _report(cfg, dm, feats, fit, part, positive, settings, loggers)
    except BaseException as e:
        if mlf is not None:
            mark_failed(mlf.experiment, mlf.run_id, e)
            e.medcls_run_logged = True  # the sweep need not record this job again
        raise
    for lg in loggers:  # no Trainer closes the run here
        lg.finalize("success")
    table = _table(cfg, dm, task_cfg, grid, fit, feats, source, metrics, started)
    end_run(mlf, [table], settings.level)
    return metrics


def _check_supported(cfg: DictConfig) -> None:
    """What a probe cannot honour stops the run with the reason, before any work."""
    if str(cfg.data.get("normalize")) == "dataset":
        raise DataError(
            "data.normalize=dataset is measured on the training partition's pixels, so cached "
            "features would depend on the split: use backbone (its own), imagenet or none."
        )
    if cfg.data.get("extra_records"):
        raise DataError("data.extra_records (pseudo-labels) are not used by a frozen-feature probe")
    if str(cfg.data.get("test_partition", "test")) == "all":
        raise DataError("data.test_partition=all leaves no training images to fit a probe on")
    if list((cfg.get("augmentation") or {}).get("eval") or []):
        raise DataError(
            "augmentation.eval steps: a probe embeds the cached images as they are; use "
            "augmentation=none or an augmentation config whose eval list is empty."
        )
    if cfg.get("ckpt_path"):
        log.warning("ckpt_path=%s: a frozen-feature probe has nothing to resume", cfg.ckpt_path)
    log.info(
        "frozen-feature probe: the head's probabilities as they are (no post-hoc logit "
        "adjustment, temperature, threshold or test-time views from eval.*)"
    )


def _frozen_backbone(
    cfg: DictConfig, dm: ClassificationDataModule
) -> tuple[nn.Module, list[float], list[float]]:
    """The ``conf/model`` backbone built as training builds it (same factory, weights, image
    size), and its normalisation (``data.normalize``)."""
    model = create_task_model(
        None, resolved_node(cfg, "model"), dm.num_classes, dm.preprocess.image_size
    )
    mean, std = normalization(str(cfg.data.normalize), model, dm)
    return model.backbone.eval(), list(mean), list(std)


def _device(cfg: DictConfig) -> str:
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    gpu = accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    return "cuda" if gpu else "cpu"


def cached_features(
    cfg: DictConfig,
    dm: ClassificationDataModule,
    backbone: nn.Module,
    mean: Sequence[float],
    std: Sequence[float],
) -> tuple[Features, dict[str, Any]]:
    """Every record's features ``(N, D)``: from the cache when its key matches, else decoded
    (``dm.decoded``), embedded and cached. Also returns where they came from (``path``,
    ``cached``, ``seconds`` spent computing them)."""
    arch = {k: v for k, v in resolved_node(cfg, "model").items() if k not in HEAD_KEYS}
    key = feature_key(
        dm.source_name, dm.records, dm.preprocess, arch, weights_digest(backbone), mean, std
    )
    path = feature_path(
        cfg.paths.cache_dir, dm.source_name, str(cfg.model.name), dm.preprocess.image_size, key
    )
    cached = load_features(path, len(dm.records))
    if cached is not None:
        log.info("feature cache hit: %s", path)
        return cached, {"path": path, "cached": True, "seconds": 0.0}
    start = time.time()
    dm.decoded = dm.decode()
    feats = features_of(
        backbone, dm.decoded, mean, std, int(cfg.data.batch_size), device=_device(cfg)
    )
    if not np.isfinite(feats.features).all():
        raise DataError(f"model.name={cfg.model.name}: the backbone's features are not finite")
    save_features(path, feats)
    seconds = time.time() - start
    log.info("features of %d images computed in %.1f s: %s", len(feats.ok), seconds, path)
    return feats, {"path": path, "cached": False, "seconds": seconds}


def _rows(
    feats: Features, dm: ClassificationDataModule, part: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(x (n, D), y (n,))`` of a partition."""
    idx = dm.partitions[part]
    return feats.features[idx], dm.labels[idx]


def _scored_partition(dm: ClassificationDataModule) -> str:
    part = str(dm.cfg.get("test_partition", "test"))
    if (dm.labels[dm.partitions[part]] >= dm.num_classes).any():
        raise DataError(
            "data.unknown=reject: a probe scores the classes it was fitted on; its test images "
            "of an unknown class need a trained model (medcls-train task=classification)."
        )
    return part


def _monitor(cfg: DictConfig) -> tuple[str, str]:
    """``monitor`` (``val/balanced_accuracy``) → the validation metric that picks the grid
    point, and its direction."""
    name = str(cfg.get("monitor") or "val/balanced_accuracy").removeprefix("val/")
    return name, str(cfg.get("monitor_mode") or "max")


def _report(
    cfg: DictConfig,
    dm: ClassificationDataModule,
    feats: Features,
    fit: ProbeFit,
    part: str,
    positive: int,
    settings: EvalSettings,
    loggers: Sequence[Logger],
) -> dict[str, float]:
    """Validation metrics of the kept head, its test report (files + metrics), the head saved;
    all logged."""
    out_dir = cfg.paths.output_dir
    metrics = {f"val/{k}": float(v) for k, v in fit.val_metrics.items()}
    metrics.update(
        {f"probe/{k}": float(v) for k, v in fit.options.items() if isinstance(v, int | float)}
    )
    files = [_save_head(out_dir, fit, cfg, dm)]
    idx = dm.partitions[part]
    if cfg.get("test", True) and len(idx):
        x, y = _rows(feats, dm, part)
        pred = Predictions(
            probe_proba(fit.head, x, dm.num_classes), y, dm.records_of(part),
            dm.class_names, positive,
        )  # fmt: skip
        title = f"{cfg.run_name} · {scored_partition_title(dm)}"
        ev = evaluate(pred, settings, out_dir, title, dm.skipped)
        metrics.update(ev.metrics)
        files += ev.files
    for lg in loggers:
        lg.log_metrics(metrics)
    log_run_files(loggers, files)
    return metrics


def _save_head(out_dir: str, fit: ProbeFit, cfg: DictConfig, dm: ClassificationDataModule) -> str:
    """``probe_head.joblib``: the fitted head with what its features need (a pickle: load
    only your own)."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "probe_head.joblib")
    joblib.dump(
        {
            "head": fit.head,
            "options": fit.options,
            "task": resolved_node(cfg, "task"),
            "model": resolved_node(cfg, "model"),
            "preprocess": dm.preprocess.to_dict(),
            "normalize": str(cfg.data.normalize),
            "class_names": list(dm.class_names),
        },
        path,
    )
    return path


def _table(
    cfg: DictConfig,
    dm: ClassificationDataModule,
    task_cfg: dict[str, Any],
    grid: Sequence[dict[str, Any]],
    fit: ProbeFit,
    feats: Features,
    source: dict[str, Any],
    metrics: dict[str, float],
    started: float,
) -> Table:
    """The metrics table every run prints, with the probe's own lines."""
    name = str(task_cfg["name"])
    chosen = describe(name, fit.options)
    if len(grid) > 1:  # every grid point's validation score
        tried = ", ".join(f"{_short(o, grid)} {v:.4f}" for o, v in fit.scores)
        chosen += f" · chosen on validation ({_monitor(cfg)[0]}: {tried})"
    how = "cached" if source["cached"] else f"computed in {source['seconds']:.1f} s"
    extra = {
        "probe": chosen,
        "features": f"{feats.features.shape[1]} per image · {how} · {source['path']}",
        "images train/val/test": "/".join(
            str(len(dm.partitions[k])) for k in ("train", "val", "test")
        ),
        "skipped images": str(len(dm.skipped)),
        "checkpoint": "none (a frozen-feature probe); its head: probe_head.joblib",
        "seconds": f"{time.time() - started:.1f}",
        **source_summary(metrics),
        **level_summary(metrics),
    }
    title = f"{cfg.run_name} · {name}: {scored_partition_title(dm)} metrics"
    return metrics, title, extra


def _short(options: dict[str, Any], grid: Sequence[dict[str, Any]]) -> str:
    """The options that vary across the grid: ``k=10``."""
    varying = [k for k in options if len({str(g[k]) for g in grid}) > 1]
    return ",".join(f"{k}={options[k]}" for k in varying)
